import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flaxfit.models import (
    MLP,
    MODELS,
    NNX_MODELS,
    DoubleLayerCNN,
    SingleLayerCNN,
    SoftmaxRegression,
    create_model,
)
from flaxfit.models.names import MODEL_NAMES
from flaxfit.models.resnet import ResNet8, ResNet20
from flaxfit.training import deck

# Slide 13 exactly, with flax's own Conv and max_pool: the reference.
DeckSingleLayerCNN = deck.SingleLayerCNN


def init_params(model, seed=0):
    return model.init(jax.random.key(seed), jnp.zeros((1, 28, 28)))["params"]


def count(params):
    return sum(x.size for x in jax.tree.leaves(params))


@pytest.mark.parametrize(
    "name, expected",
    [("softmax", 7_850), ("cnn1", 3_222_954), ("cnn2", 3_274_634), ("mlp", 669_706)],
)
def test_exact_parameter_counts(name, expected):
    assert count(init_params(create_model(name))) == expected


def test_single_layer_cnn_has_the_decks_param_tree():
    params = init_params(SingleLayerCNN())
    shapes = jax.tree.map(lambda x: x.shape, params)
    assert shapes == {
        "Conv_0": {"kernel": (5, 5, 1, 16), "bias": (16,)},
        "Dense_0": {"kernel": (3136, 1024), "bias": (1024,)},
        "Dense_1": {"kernel": (1024, 10), "bias": (10,)},
    }
    # Same tree and the same initial values as the deck's nn.Conv model.
    deck = init_params(DeckSingleLayerCNN())
    jax.tree.map(np.testing.assert_array_equal, params, deck)


@pytest.mark.parametrize("name", ["softmax", "cnn1", "cnn2", "mlp"])  # the digit models
def test_every_input_layout_gives_the_same_probabilities(name):
    model = create_model(name)
    params = init_params(model)
    x = jax.random.uniform(jax.random.key(1), (3, 28, 28))
    outputs = [
        model.apply({"params": params}, layout)
        for layout in (x, x.reshape(3, 784), x.reshape(3, 28, 28, 1))
    ]
    assert outputs[0].shape == (3, 10)
    np.testing.assert_allclose(outputs[0].sum(-1), 1.0, rtol=1e-5)
    for other in outputs[1:]:
        np.testing.assert_allclose(other, outputs[0], rtol=1e-5, atol=1e-6)
    logits = model.apply({"params": params}, x, get_logits=True)
    np.testing.assert_allclose(jax.nn.softmax(logits), outputs[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(logits, outputs[0])


def _loss_and_grads(model, params, x, y):
    def loss(p):
        logits = model.apply({"params": p}, x, get_logits=True)
        return optax.softmax_cross_entropy(logits, y).mean()

    return jax.value_and_grad(loss)(params)


@pytest.mark.parametrize(
    "fast, reference",
    [
        (SingleLayerCNN(impl="matmul"), DeckSingleLayerCNN()),
        (SingleLayerCNN(impl="matmul"), SingleLayerCNN(impl="native")),
        (DoubleLayerCNN(impl="matmul"), DoubleLayerCNN(impl="native")),
    ],
    ids=["cnn1-vs-deck", "cnn1-matmul-vs-native", "cnn2-matmul-vs-native"],
)
def test_fast_internals_compute_the_reference_function_and_gradients(fast, reference):
    # GPUs multiply float32 in TF32 by default, which would hide a real difference in noise.
    with jax.default_matmul_precision("highest"):
        _check_same_function_and_gradients(fast, reference)


def _check_same_function_and_gradients(fast, reference):
    params = init_params(reference, seed=3)
    x = jax.random.uniform(jax.random.key(4), (8, 28, 28))
    y = jax.nn.one_hot(jnp.arange(8) % 10, 10)
    np.testing.assert_allclose(
        fast.apply({"params": params}, x, get_logits=True),
        reference.apply({"params": params}, x, get_logits=True),
        rtol=1e-4, atol=1e-5,
    )  # fmt: skip
    loss_fast, grads_fast = _loss_and_grads(fast, params, x, y)
    loss_ref, grads_ref = _loss_and_grads(reference, params, x, y)
    np.testing.assert_allclose(loss_fast, loss_ref, rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads_fast, grads_ref
    )


def test_registry_names_and_unknown_model():
    assert {
        "softmax": SoftmaxRegression,
        "cnn1": SingleLayerCNN,
        "cnn2": DoubleLayerCNN,
        "mlp": MLP,
        "resnet8": ResNet8,
        "resnet20": ResNet20,
    } == MODELS
    # --help lists the names from flaxfit.models.names, which must not fall behind.
    assert tuple(MODELS) == tuple(NNX_MODELS) == MODEL_NAMES
    with pytest.raises(ValueError, match="unknown model 'resnet'.*cnn2, mlp, resnet8, resnet20"):
        create_model("resnet")


def test_bad_impl_is_rejected():
    with pytest.raises(ValueError, match="impl must be"):
        init_params(SingleLayerCNN(impl="fast"))


def _op_by_op_state(model, seed, shape, tx):
    """create_train_state as it was before its init was jitted: op by op, eagerly."""
    from flaxfit.models.outputs import mode_keywords
    from flaxfit.training.step import TrainState

    rng = jax.random.key(seed)
    variables = model.init({"params": rng, "dropout": rng}, jnp.zeros(shape, jnp.float32),
                           **mode_keywords(model, False))  # fmt: skip
    return TrainState.create(
        apply_fn=model.apply, params=variables["params"], tx=tx,
        batch_stats=variables.get("batch_stats"), rng=jax.random.PRNGKey(0),
    )  # fmt: skip


# Dense only, and flaxfit's Conv and pool: the layers of every model eject copies (its
# bit-exact tests also start from this init). The ResNets' BatchNorm is checked only by
# their own tests: the eager init alone cost resnet8 36 s and resnet20 35 s of the suite.
INIT_SHAPES = {"softmax": (1, 28, 28), "cnn1": (1, 28, 28)}


@pytest.mark.parametrize("name", sorted(INIT_SHAPES))
def test_the_jitted_init_builds_the_op_by_op_state_bit_for_bit(name):
    # create_train_state initialises flaxfit's models in one program, not ~45 tiny ones;
    # params, optimizer state and key (values, dtypes, weak types, structure) are unchanged.
    from flaxfit.runs.config import TrainConfig
    from flaxfit.runs.optim import make_optimizer
    from flaxfit.training.step import create_train_state

    shape = INIT_SHAPES[name]
    fast = TrainConfig(model=name, schedule="onecycle", lr=3e-3, b2=0.99, weight_decay=0.05)
    for seed, tx in [(3, make_optimizer(fast, 468))]:  # AdamW's state: moments and counts
        model = MODELS[name]()
        new = create_train_state(model, jax.random.key(seed), tx, input_shape=shape)
        old = _op_by_op_state(model, seed, shape, tx)
        assert jax.tree.structure(new) == jax.tree.structure(old)
        for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(old), strict=True):
            a, b = jnp.asarray(a), jnp.asarray(b)
            assert (a.dtype, a.shape, a.weak_type) == (b.dtype, b.shape, b.weak_type)
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_a_model_of_your_own_is_still_initialised_op_by_op():
    # Its init may run host code (here: reads a concrete value), which a jit could not.
    import flax.linen as nn

    from flaxfit.training.step import create_train_state

    class HostInit(nn.Module):
        @nn.compact
        def __call__(self, x):
            assert float(jnp.sum(x)) == 0.0  # concrete only when run op by op
            return nn.Dense(10)(x.reshape(len(x), -1))

    state = create_train_state(HostInit(), jax.random.key(0), optax.sgd(0.1))
    assert state.params["Dense_0"]["kernel"].shape == (784, 10)
