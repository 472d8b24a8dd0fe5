import jax
import jax.numpy as jnp
import pytest

import flaxfit
from flaxfit.runs.config import TrainConfig
from helpers import make_digits


@pytest.mark.parametrize("name", ["softmax", "cnn1", "cnn2", "mlp"])
def test_bfloat16_computes_in_bf16_with_float32_params_and_logits(name):
    model = flaxfit.create_model(name, dtype=jnp.bfloat16)
    state = flaxfit.create_train_state(model, jax.random.key(0))
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}
    x = jnp.ones((2, 28, 28))
    logits = model.apply({"params": state.params}, x, get_logits=True)
    assert logits.dtype == jnp.float32
    jaxpr = str(
        jax.make_jaxpr(lambda p: model.apply({"params": p}, x, get_logits=True))(state.params)
    )
    assert "dot_general" in jaxpr and "bf16[" in jaxpr  # the products really run in bf16
    # Float32 params give float32 gradients, so the optimizer is unchanged.
    grads = jax.grad(lambda p: flaxfit.loss_fn(p, state, x, jax.nn.one_hot(jnp.arange(2), 10)))(
        state.params
    )
    assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}


def test_bfloat16_cnn1_trains_as_well_as_float32():
    train, test = make_digits(3000, seed=0, noise=300), make_digits(1000, seed=1, noise=300)
    accuracy = {}
    for dtype in (jnp.float32, jnp.bfloat16):
        state = flaxfit.create_train_state(flaxfit.SingleLayerCNN(dtype=dtype), jax.random.key(0))
        _, history = flaxfit.fit(state, train, test, epochs=1, batch_size=64, verbose=False)
        accuracy[dtype] = history.last["test_accuracy"]
    assert accuracy[jnp.float32] > 0.95
    assert abs(accuracy[jnp.bfloat16] - accuracy[jnp.float32]) <= 0.005


def test_the_config_names_the_compute_dtype():
    assert TrainConfig(dtype="bfloat16").make_model().dtype == jnp.bfloat16
    assert TrainConfig().make_model().dtype == jnp.float32
    with pytest.raises(ValueError, match="dtype 'float16' is unknown"):
        TrainConfig(dtype="float16")
