"""A Linen model written as in Flax's examples (`__call__(x)` returns logits) trains in fit()."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

import flaxfit
from flaxfit.models.outputs import logits, probabilities, takes_get_logits
from flaxfit.tools.predict import predict_probabilities
from helpers import make_digits


class ExamplesCNN(nn.Module):
    """The CNN of Flax's examples/mnist: NHWC input, logits out, no get_logits."""

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(features=8, kernel_size=(3, 3))(x)
        x = nn.relu(x)
        x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        x = nn.Dense(features=32)(x)
        x = nn.relu(x)
        return nn.Dense(features=10)(x)


def nhwc(n, seed):
    images, labels = make_digits(n, seed=seed)
    return images[..., None], labels  # (N, 28, 28, 1), as Flax's example feeds its CNN


def test_which_models_take_get_logits():
    assert takes_get_logits(flaxfit.SingleLayerCNN())
    assert takes_get_logits(flaxfit.SingleLayerCNN().apply)
    assert not takes_get_logits(ExamplesCNN())
    assert not takes_get_logits(ExamplesCNN().apply)
    assert not takes_get_logits(lambda variables, x: x)
    assert not takes_get_logits(len)  # no signature to read: not the deck's kind


def test_an_examples_style_cnn_trains_evaluates_and_predicts():
    train, test = nhwc(600, 0), nhwc(200, 1)
    model = ExamplesCNN()
    state = flaxfit.create_train_state(model, jax.random.key(0), optax.adam(3e-3),
                                       input_shape=(1, 28, 28, 1))  # fmt: skip
    state, history = flaxfit.fit(state, train, test, epochs=3, batch_size=50, verbose=False)
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history.last["test_accuracy"] > 0.9  # random init scores about 0.1
    assert flaxfit.evaluate(state, test)["accuracy"] == history.last["test_accuracy"]
    probs = predict_probabilities(model, state.params, test[0])
    assert probs.shape == (200, 10)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    expected = jax.nn.softmax(model.apply({"params": state.params}, test[0] / 255.0))
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)


def test_the_decks_models_give_exactly_what_they_gave_before():
    model = flaxfit.SingleLayerCNN()
    params = flaxfit.create_train_state(model, jax.random.key(0)).params
    x = jnp.asarray(make_digits(8)[0], jnp.float32) / 255.0
    variables = {"params": params}
    np.testing.assert_array_equal(probabilities(model.apply, variables, x),
                                  model.apply(variables, x))  # fmt: skip
    np.testing.assert_array_equal(logits(model.apply, variables, x),
                                  model.apply(variables, x, get_logits=True))  # fmt: skip


class NeedsColour(nn.Module):
    @nn.compact
    def __call__(self, x):
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected (B, H, W, 3) images, got {x.shape}")
        return nn.Dense(10)(x.reshape((x.shape[0], -1)))


def test_a_model_that_needs_another_input_shape_is_told_to_pass_it():
    with pytest.raises(ValueError, match=r"NeedsColour could not be initialised with a dummy "
                       r"batch of shape \(1, 28, 28\).*pass input_shape="):  # fmt: skip
        flaxfit.create_train_state(NeedsColour(), jax.random.key(0))
    state = flaxfit.create_train_state(NeedsColour(), jax.random.key(0), input_shape=(1, 8, 8, 3))
    assert state.params["Dense_0"]["kernel"].shape == (8 * 8 * 3, 10)


class Flat(nn.Module):
    classes: int = 10

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.classes)(x.reshape((x.shape[0], -1)))


def test_fit_says_which_input_shape_to_create_the_state_with():
    images, labels = make_digits(100)
    colour = (np.repeat(images[..., None], 3, axis=-1), labels)  # (N, 28, 28, 3)
    state = flaxfit.create_train_state(Flat(), jax.random.key(0))  # made for MNIST's (28, 28)
    with pytest.raises(ValueError, match=r"images of shape \(28, 28, 3\).*create the state "
                       r"with input_shape=\(1, 28, 28, 3\)"):  # fmt: skip
        flaxfit.fit(state, colour, epochs=1, batch_size=50, verbose=False)
    state = flaxfit.create_train_state(Flat(), jax.random.key(0), input_shape=(1, 28, 28, 3))
    state, history = flaxfit.fit(state, colour, epochs=1, batch_size=50, verbose=False)
    assert len(history) == 1


def test_fit_says_when_the_model_has_the_wrong_number_of_classes():
    state = flaxfit.create_train_state(Flat(classes=5), jax.random.key(0))
    with pytest.raises(ValueError, match=r"returns \(1, 5\).*10 classes"):
        flaxfit.fit(state, make_digits(100), epochs=1, batch_size=50, verbose=False)
