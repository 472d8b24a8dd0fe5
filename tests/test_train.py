import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState

from flaxfit.models import SingleLayerCNN, SoftmaxRegression
from flaxfit.training import deck
from flaxfit.training.step import (
    create_train_state,
    eval_step,
    loss_fn,
    to_model_inputs,
    train_step,
)
from helpers import make_digits


def batch(n=64, seed=0):
    images, labels = make_digits(n, seed)
    return to_model_inputs(jnp.asarray(images), jnp.asarray(labels))


def test_create_train_state_gives_a_plain_params_dict_at_step_zero():
    state = create_train_state(SoftmaxRegression(), jax.random.key(0))
    assert isinstance(state, TrainState)
    assert int(state.step) == 0
    assert set(state.params) == {"Dense_0"}
    assert state.params["Dense_0"]["kernel"].shape == (784, 10)


def test_model_inputs_are_scaled_pixels_and_one_hot_labels():
    images = jnp.array([[[0, 255]]], jnp.uint8)
    inputs, labels = to_model_inputs(images, jnp.array([3], jnp.uint8))
    assert inputs.dtype == jnp.float32 and labels.dtype == jnp.float32
    # XLA:GPU divides by a constant as a multiply by its reciprocal: 255/255 may be 1 - 2**-24.
    np.testing.assert_allclose(inputs, [[[0.0, 1.0]]], rtol=2**-23, atol=0)
    np.testing.assert_array_equal(labels, [[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]])


def test_loss_decreases_on_a_fixed_batch():
    state = create_train_state(SingleLayerCNN(), jax.random.key(0))
    inputs, labels = batch()
    losses = []
    for _ in range(15):
        state, loss = train_step(state, inputs, labels)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]
    assert int(state.step) == 15


def test_train_step_matches_the_decks_verbatim_code():
    inputs, labels = batch()
    ours = create_train_state(SoftmaxRegression(), jax.random.key(1))
    theirs = create_train_state(SoftmaxRegression(), jax.random.key(1))
    for _ in range(3):
        ours, loss = train_step(ours, inputs, labels)
        theirs, deck_loss = deck.train_step(theirs, inputs, labels)
        np.testing.assert_allclose(loss, deck_loss, rtol=1e-6)
    jax.tree.map(np.testing.assert_allclose, ours.params, theirs.params)
    np.testing.assert_allclose(
        loss_fn(ours.params, ours, inputs, labels), deck.loss_fn(ours.params, ours, inputs, labels)
    )


def test_optimizer_is_pluggable():
    inputs, labels = batch()
    state = create_train_state(SoftmaxRegression(), jax.random.key(0), optax.sgd(0.5))
    grads = jax.grad(loss_fn)(state.params, state, inputs, labels)
    new_state, _ = train_step(state, inputs, labels)
    expected = state.params["Dense_0"]["bias"] - 0.5 * grads["Dense_0"]["bias"]
    np.testing.assert_allclose(new_state.params["Dense_0"]["bias"], expected, rtol=1e-6)


def test_eval_step_sums_only_masked_rows():
    state = create_train_state(SoftmaxRegression(), jax.random.key(0))
    inputs, labels = batch(10)
    mask = jnp.arange(10) < 7
    metrics = eval_step(state, inputs, labels, mask)
    logits = state.apply_fn({"params": state.params}, inputs[:7], get_logits=True)
    expected_correct = int(np.sum(np.argmax(logits, -1) == np.argmax(labels[:7], -1)))
    assert int(metrics["count"]) == 7
    assert int(metrics["correct"]) == expected_correct
    np.testing.assert_allclose(
        metrics["loss_sum"], optax.softmax_cross_entropy(logits, labels[:7]).sum(), rtol=1e-5
    )
    assert int(eval_step(state, inputs, labels)["count"]) == 10
