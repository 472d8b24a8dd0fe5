"""fast_ops: stock convs and pools rewritten as slices + matmul and reshape + max, same function.

Every rewritten function is checked against the original on outputs and on
gradients with respect to params and inputs, in float32 at "highest" matmul
precision; cases the rewrite must leave alone are checked to still contain
their native op.
"""

from __future__ import annotations

import collections
import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx
from flax.linen.pooling import min_pool
from jax import lax

import flaxfit
from flaxfit.models.outputs import takes_get_logits
from flaxfit.training import deck
from flaxfit.training.fast_ops import (
    FastApply,
    conv_matmul,
    eval_rewritten,
    fast_apply,
    fast_module,
    rewrite,
)
from helpers import make_digits

TOL = dict(rtol=1e-5, atol=1e-5)
ON_CPU = jax.default_backend() == "cpu"


@pytest.fixture(autouse=True)
def _highest_precision():
    with jax.default_matmul_precision("highest"):
        yield


def primitives(fn, *args, grad: bool = False) -> collections.Counter:
    """How often each primitive occurs in `fn`'s jaxpr (nested ones included), or, with
    `grad`, in that of its value and gradient w.r.t. every float input."""
    counts: collections.Counter = collections.Counter()

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            counts[eqn.primitive.name] += 1
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(jax.make_jaxpr(value_and_grad(fn) if grad else fn)(*args).jaxpr)
    return counts


def value_and_grad(fn):
    """The sum of `fn`'s float outputs and its gradient w.r.t. its float inputs."""

    def run(*args):
        leaves, treedef = jax.tree.flatten(args)
        floats = [i for i, x in enumerate(leaves) if jnp.issubdtype(x.dtype, jnp.floating)]

        def total(values):
            full = list(leaves)
            for i, value in zip(floats, values, strict=True):
                full[i] = value
            out = jax.tree.leaves(fn(*jax.tree.unflatten(treedef, full)))
            return sum(x.sum() for x in out if jnp.issubdtype(x.dtype, jnp.floating))

        return jax.value_and_grad(total)([leaves[i] for i in floats])

    return run


def gradient_convs(fn, *args) -> int:
    """Convolutions in the jaxpr of `fn`'s value and gradient: 0 once the rewrite applies.

    Differentiated, the rewrite computes a conv's value and derivatives as matmuls
    (XLA:CPU runs convs slowly in a scan); natively each conv adds its kernel's
    and its input's gradient as convs.
    """
    return primitives(fn, *args, grad=True)["conv_general_dilated"]


def matmul_form(fn):
    """`fn` with every conv the rewrite covers computed by `conv_matmul`, value included."""

    def rule(eqn, invals):
        return conv_matmul(*invals, **eqn.params)

    def run(*args):
        closed = jax.make_jaxpr(fn)(*args)
        rules = {"conv_general_dilated": rule}
        (out,) = eval_rewritten(closed.jaxpr, closed.consts, jax.tree.leaves(args), rules)
        return out

    return run


def numeric(x):
    """PRNG keys (nnx RNG state) as their raw bits, so they compare like any array."""
    return jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x


def assert_trees_close(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(numeric(a)), np.asarray(numeric(e)), **TOL)


def assert_same_function(fn, fast, *args, argnums=None):
    """Same outputs, and same gradients of a random projection w.r.t. `argnums` (default all)."""
    argnums = tuple(range(len(args))) if argnums is None else argnums
    # Weights drawn on the host: jax.random's threefry costs seconds to compile on XLA:CPU.
    rng = np.random.default_rng(7)
    weights = [
        rng.standard_normal(out.shape).astype(np.float32)
        if jnp.issubdtype(out.dtype, jnp.floating)
        else None
        for out in jax.tree.leaves(jax.eval_shape(fn, *args))
    ]

    def outputs_and_gradients(f):
        def projected(*a):
            out = f(*a)
            leaves = jax.tree.leaves(out)
            total = sum(
                (x * w).sum() for x, w in zip(leaves, weights, strict=True) if w is not None
            )
            return total, out

        # One jitted function for both: each compile costs about a second on 2 shared cores.
        return jax.jit(jax.grad(projected, argnums, has_aux=True))

    (grads, out), (expected_grads, expected_out) = (
        outputs_and_gradients(f)(*args) for f in (fast, fn)
    )
    assert_trees_close(out, expected_out)
    assert_trees_close(grads, expected_grads)


class ExamplesCNN(nn.Module):
    """The CNN of Flax's examples/mnist."""

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(features=32, kernel_size=(3, 3))(x)
        x = nn.relu(x)
        x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = nn.Conv(features=64, kernel_size=(3, 3))(x)
        x = nn.relu(x)
        x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        x = nn.Dense(features=256)(x)
        x = nn.relu(x)
        return nn.Dense(features=10)(x)


def nhwc_conv(x, kernel, strides=(1, 1), padding="SAME", **params):
    return lax.conv_general_dilated(
        x, kernel, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"), **params
    )


def key(seed):
    """A PRNG key of the "rbg" kind: threefry's kernels take seconds to compile on XLA:CPU."""
    return jax.random.key(seed, impl="rbg")


def init(model, x):
    return jax.jit(model.init)(key(0), x)


def images(shape, seed=1):
    """Uniform [0, 1) float32, drawn on the host (jax.random would compile for seconds)."""
    return jnp.asarray(np.random.default_rng(seed).random(shape, dtype=np.float32))


# --- whole models ------------------------------------------------------------------------------


def test_the_decks_slide_13_model_is_rewritten_and_unchanged():
    model = deck.SingleLayerCNN()
    x = images((3, 28, 28))
    params = init(model, x)["params"]
    fast = fast_apply(model.apply)

    def original(params, x):
        return model.apply({"params": params}, x, get_logits=True)

    def rewritten(params, x):
        return fast({"params": params}, x, get_logits=True)

    assert_same_function(original, rewritten, params, x)
    probabilities = [jax.jit(f)({"params": params}, x) for f in (fast, model.apply)]
    assert_trees_close(*probabilities)  # without get_logits: the softmax
    # If the rewrite silently stopped applying, these would be back: the pool and its
    # gradient (select_and_scatter_add), and on CPU the conv's derivatives as convs.
    names = primitives(rewritten, params, x, grad=True)
    assert not {"reduce_window_max", "select_and_scatter_add"} & set(names)
    assert gradient_convs(rewritten, params, x) == (0 if ON_CPU else 3)
    assert gradient_convs(original, params, x) == 3  # value, kernel's and input's gradients
    # Evaluation too runs the matmul form on CPU (the native conv elsewhere).
    assert primitives(rewritten, params, x).get("conv_general_dilated", 0) == (0 if ON_CPU else 1)
    assert primitives(original, params, x, grad=True)["select_and_scatter_add"] == 1


def test_the_flax_examples_cnn_is_rewritten_and_unchanged():
    model = ExamplesCNN()
    x = images((2, 28, 28, 1))
    params = init(model, x)["params"]
    fast = fast_apply(model.apply)
    assert_same_function(
        lambda p, x: model.apply({"params": p}, x), lambda p, x: fast({"params": p}, x), params, x
    )
    rewritten = lambda p, x: fast({"params": p}, x)  # noqa: E731
    assert not any(
        n.startswith("reduce_window") for n in primitives(rewritten, params, x, grad=True)
    )
    assert (gradient_convs(rewritten, params, x) == 0) == ON_CPU


class TrainModeCNN(nn.Module):
    """BatchNorm and Dropout: `train`, `mutable` and `rngs` must reach the model."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(features=4, kernel_size=(3, 3))(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.max_pool(nn.relu(x), (2, 2), (2, 2))
        x = nn.Dropout(0.5, deterministic=not train)(x.reshape((x.shape[0], -1)))
        return nn.Dense(features=10)(x)


def test_mutable_rngs_and_static_flags_go_through():
    model = TrainModeCNN()
    x = images((4, 8, 8, 1))
    variables = init(model, x)
    fast = fast_apply(model.apply)
    dropout_key = key(3)

    def run(apply):
        def f(params, x):
            out, updates = apply(
                {"params": params, "batch_stats": variables["batch_stats"]},
                x,
                train=True,
                mutable=["batch_stats"],
                rngs={"dropout": dropout_key},
            )
            return out, updates

        return f

    assert_same_function(run(model.apply), run(fast), variables["params"], x)
    assert_trees_close(*(jax.jit(f)(variables, x) for f in (fast, model.apply)))  # train=False


def test_fast_apply_is_hashable_equal_and_switchable():
    model = deck.SingleLayerCNN()
    assert fast_apply(model.apply) == fast_apply(model.apply)
    assert hash(fast_apply(model.apply)) == hash(fast_apply(model.apply))
    assert fast_apply(model.apply) != fast_apply(ExamplesCNN().apply)
    apply = model.apply
    assert fast_apply(apply, enabled=False) is apply
    fast = fast_apply(model.apply)
    assert fast_apply(fast) is fast
    assert takes_get_logits(fast)  # flaxfit's loss still asks the deck's model for logits
    assert not takes_get_logits(fast_apply(ExamplesCNN().apply))


class SmallDeckCNN(nn.Module):
    """Slide 13's kind (softmax out, logits on `get_logits=True`), small to compile fast."""

    @nn.compact
    def __call__(self, x, get_logits=False):
        x = x.reshape([-1, 28, 28, 1])
        x = nn.max_pool(nn.relu(nn.Conv(features=4, kernel_size=(5, 5))(x)), (2, 2), (2, 2))
        x = nn.Dense(features=10)(x.reshape([x.shape[0], -1]))
        return x if get_logits else nn.softmax(x)


@pytest.mark.slow  # compiles flaxfit's train step twice: ~8 s on 2 shared cores
def test_fit_trains_the_same_through_fast_apply():
    # The path fit() will take: a TrainState whose static apply_fn is the wrapper.
    train = make_digits(128, seed=0)
    runs = []
    for fast in (False, True):
        # A state each: fit() donates its input state's buffers.
        state = flaxfit.create_train_state(SmallDeckCNN(), key(0), optax.sgd(0.1))
        if fast:
            state = state.replace(apply_fn=fast_apply(state.apply_fn))
        runs.append(flaxfit.fit(state, train, epochs=1, batch_size=64, verbose=False))
    (plain, plain_history), (fast, fast_history) = runs
    assert isinstance(fast.apply_fn, FastApply)
    np.testing.assert_allclose(fast_history["train_loss"], plain_history["train_loss"], **TOL)
    assert_trees_close(fast.params, plain.params)


@pytest.mark.slow  # compiles flaxfit's train step twice: ~8 s on 2 shared cores
def test_scanned_train_steps_train_an_nnx_model_the_same_through_fast_apply():
    # What each of fit()'s dispatches runs for `create_train_state(nnx_module, tx)`, in
    # train mode: `train=True`, batch_stats and a dropout key every step. (A full fit()
    # costs seconds more of compiling; the deck-kind test above runs one.)
    images, labels = make_digits(64, seed=0)
    inputs = jnp.asarray(images[:, 4:16, 4:16, None] / 255.0, jnp.float32).reshape(2, 32, 12, 12, 1)
    onehot = jax.nn.one_hot(labels, 10).reshape(2, 32, 10)

    @jax.jit
    def two_steps(state):
        return jax.lax.scan(lambda s, batch: flaxfit.train_step(s, *batch), state, (inputs, onehot))

    state = flaxfit.create_train_state(fresh_nnx_model(), optax.sgd(0.1))
    (plain, plain_losses), (fast, fast_losses) = (
        two_steps(state.replace(apply_fn=apply_fn))
        for apply_fn in (state.apply_fn, fast_apply(state.apply_fn))
    )
    assert_trees_close(fast_losses, plain_losses)
    assert_trees_close((fast.params, fast.batch_stats), (plain.params, plain.batch_stats))
    assert not np.allclose(fast_losses[0], fast_losses[1])  # the first step changed the model


# --- convolutions, one at a time ---------------------------------------------------------------


CONVS = {  # (kernel size, strides, padding)
    "same-odd": ((3, 3), (1, 1), "SAME"),
    "same-even": ((4, 2), (1, 1), "SAME"),  # the extra row/column of padding goes at the end
    "valid": ((3, 3), (1, 1), "VALID"),
    "strided-same-even": ((4, 4), (2, 2), "SAME"),
    "strided-valid-ragged": ((3, 2), (2, 3), "VALID"),  # the strides skip the last rows
    "explicit-asymmetric": ((2, 3), (1, 2), ((2, 0), (1, 3))),
    "1x1": ((1, 1), (1, 1), "VALID"),
}


@pytest.mark.parametrize("case", CONVS)
def test_convs_are_rewritten_and_unchanged(case):
    kernel_size, strides, padding = CONVS[case]
    x, kernel = images((2, 9, 10, 3)), images((*kernel_size, 3, 5), seed=2) - 0.5

    def conv(x, kernel):
        return nhwc_conv(x, kernel, strides, padding)

    fast = rewrite(conv, conv=True)
    assert_same_function(conv, fast, x, kernel)
    assert gradient_convs(fast, x, kernel) == 0
    assert gradient_convs(conv, x, kernel) == 3  # value, kernel's and input's gradients


def test_negative_padding_crops():
    x, kernel = images((2, 9, 10, 3)), images((3, 3, 3, 5), seed=2)

    def cropped_first(x, kernel):
        return nhwc_conv(x[:, 1:, :-2], kernel, padding=((0, 1), (0, 0)))

    fast = rewrite(lambda x, k: nhwc_conv(x, k, padding=((-1, 1), (0, -2))), conv=True)
    # Against the crop done by hand: XLA:CPU's own conv returns garbage (values ~1e25) for
    # negative padding in jax 0.10.2, so the rewrite computes its value as a matmul too.
    assert_same_function(cropped_first, fast, x, kernel)
    assert primitives(fast, x, kernel, grad=True)["conv_general_dilated"] == 0


def test_nchw_and_1d_and_3d_layouts_are_rewritten_and_unchanged():
    def nchw(x, kernel):
        dimension_numbers = ("NCHW", "OIHW", "NCHW")
        return lax.conv_general_dilated(
            x, kernel, (2, 1), "SAME", dimension_numbers=dimension_numbers
        )

    def mixed(x, kernel):  # input channels-first, output channels-last
        dimension_numbers = ("NCHW", "HWIO", "NHWC")
        return lax.conv_general_dilated(
            x, kernel, (1, 1), "VALID", dimension_numbers=dimension_numbers
        )

    cases = [
        (nchw, images((2, 3, 7, 6)), images((4, 3, 3, 2), seed=2)),
        (mixed, images((2, 3, 7, 6)), images((3, 2, 3, 4), seed=2)),
        (lambda x, k: jnp.convolve(x, k, mode="same"), images((11,)), images((4,), seed=2)),
        (
            lambda x, k: lax.conv_general_dilated(x, k, (1, 2, 1), "SAME"),  # NC + 3 spatial
            images((1, 2, 4, 5, 3)),
            images((3, 2, 2, 3, 2), seed=2),
        ),
    ]
    for fn, x, kernel in cases:
        fast = rewrite(fn, conv=True)
        assert_same_function(fn, fast, x, kernel)
        assert gradient_convs(fast, x, kernel) == 0  # jnp.convolve's, inside its jit, too


def test_a_bfloat16_conv_keeps_its_dtypes():
    x, kernel = images((2, 6, 6, 3)).astype(jnp.bfloat16), images((3, 3, 3, 4), seed=2)
    rough = dict(rtol=2e-2, atol=5e-2)  # bfloat16 has 8 bits of mantissa

    for preferred in (None, jnp.float32):

        def conv(x, kernel, preferred=preferred):
            return nhwc_conv(x, kernel.astype(x.dtype), preferred_element_type=preferred)

        def loss(fn):
            return jax.jit(jax.grad(lambda x, k: (fn(x, k).astype(jnp.float32) ** 2).sum(), (0, 1)))

        expected = conv(x, kernel)
        for fn in (matmul_form(conv), rewrite(conv, conv=True)):
            assert fn(x, kernel).dtype == expected.dtype == (preferred or jnp.bfloat16)
            np.testing.assert_allclose(*(np.float32(y) for y in (fn(x, kernel), expected)), **rough)
        grads, expected_grads = loss(rewrite(conv, conv=True))(x, kernel), loss(conv)(x, kernel)
        for g, e in zip(grads, expected_grads, strict=True):
            assert g.dtype == e.dtype
            np.testing.assert_allclose(np.float32(g), np.float32(e), **rough)


@pytest.mark.parametrize(
    "params",
    [
        dict(feature_group_count=2),
        dict(rhs_dilation=(2, 2)),
        dict(lhs_dilation=(2, 1), padding=((1, 1), (1, 1))),  # a transposed conv
    ],
    ids=["grouped", "dilated", "lhs-dilated"],
)
def test_grouped_and_dilated_convs_are_left_native(params):
    x = images((2, 8, 8, 4))
    in_channels = 4 // params.get("feature_group_count", 1)
    kernel = images((3, 3, in_channels, 6), seed=2)

    def conv(x, kernel):
        return nhwc_conv(x, kernel, **{"padding": "SAME", **params})

    fast = rewrite(conv, conv=True)
    assert gradient_convs(fast, x, kernel) == gradient_convs(conv, x, kernel) == 3
    assert_same_function(conv, fast, x, kernel)


def test_the_conv_rewrite_follows_the_backend_and_can_be_turned_off():
    x, kernel = images((1, 5, 5, 2)), images((3, 3, 2, 2), seed=2)

    def conv(x, kernel):
        return nhwc_conv(x, kernel)

    # Native derivatives on GPU/TPU, as flaxfit's own Conv.
    assert (gradient_convs(rewrite(conv), x, kernel) == 0) == ON_CPU
    assert gradient_convs(rewrite(conv, conv=False), x, kernel) == 3


def test_convs_inside_remat_are_rewritten_under_remat():
    x, kernel = images((2, 6, 6, 3)), images((3, 3, 3, 4), seed=2)

    @jax.checkpoint
    def conv(x, kernel):
        return jnp.sin(nhwc_conv(x, kernel))

    fast = rewrite(conv, conv=True)
    assert_same_function(conv, fast, x, kernel)
    assert gradient_convs(fast, x, kernel) == 0
    assert gradient_convs(conv, x, kernel) == 4  # the value twice (remat recomputes it)
    assert any("remat" in name or "checkpoint" in name for name in primitives(fast, x, kernel))


# --- pools -------------------------------------------------------------------------------------


@pytest.mark.parametrize("pool", [nn.max_pool, nn.avg_pool, min_pool], ids=lambda f: f.__name__)
def test_non_overlapping_pools_are_rewritten_and_unchanged(pool):
    x = images((2, 6, 9, 3)) - 0.5  # no ties: the gradients of max go to one input each

    def fn(x):
        return pool(x, window_shape=(2, 3), strides=(2, 3))

    fast = rewrite(fn)
    assert_same_function(fn, fast, x)
    assert not any(name.startswith("reduce_window") for name in primitives(fast, x))


@pytest.mark.parametrize(
    "pool_args",
    [
        dict(window_shape=(2, 2), strides=(2, 2), padding="SAME"),  # 7 is odd: padded
        dict(window_shape=(3, 3), strides=(2, 2)),  # overlapping
        dict(window_shape=(2, 2), strides=(1, 1)),  # overlapping
        dict(window_shape=(2, 2), strides=(2, 2)),  # VALID on 7: drops a row, not exact
    ],
    ids=["same-padding", "3x3-stride-2", "stride-1", "ragged"],
)
def test_padded_overlapping_or_ragged_pools_are_left_native(pool_args):
    x = images((2, 7, 7, 3)) - 0.5

    def fn(x):
        return nn.max_pool(x, **pool_args)

    fast = rewrite(fn)
    assert "reduce_window_max" in primitives(fast, x)
    assert_same_function(fn, fast, x)


# --- NNX: fast_module --------------------------------------------------------------------------


class NNXCNN(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 4, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(4, rngs=rngs)
        self.conv2 = nnx.Conv(4, 6, (3, 3), rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)
        self.linear = nnx.Linear(6 * 3 * 3, 10, rngs=rngs)

    def __call__(self, x):
        x = nnx.max_pool(nnx.relu(self.bn(self.conv1(x))), (2, 2), (2, 2))
        x = nnx.avg_pool(nnx.relu(self.conv2(x)), (2, 2), (2, 2))
        return self.linear(self.dropout(x.reshape(x.shape[0], -1)))


@functools.cache
def nnx_initial_model():
    return nnx.split(NNXCNN(nnx.Rngs(key(0), dropout=key(1))))


def fresh_nnx_model():
    """The initial model with arrays of its own, for fit(), which donates them."""
    graphdef, state = nnx_initial_model()
    return nnx.merge(graphdef, jax.tree.map(jnp.copy, state))


def nnx_model_and_optimizer():
    """A fresh model, the same each time (initialised once: eager init compiles op by op)."""
    model = nnx.merge(*nnx_initial_model(), copy=True)
    return model, nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)


@nnx.jit
def nnx_train_step(model, optimizer, metrics, batch):
    """The Flax NNX MNIST tutorial's step, as written there."""

    def loss_fn(model):
        logits = model(batch["image"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        return loss, logits

    (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    metrics.update(loss=loss, logits=logits, labels=batch["label"])
    optimizer.update(model, grads)


def test_fast_module_trains_an_nnx_model_the_same_under_nnx_jit():
    batch = {"image": images((8, 12, 12, 1)), "label": jnp.arange(8) % 10}
    results = []
    for fast in (False, True):
        model, optimizer = nnx_model_and_optimizer()
        metrics = nnx.MultiMetric(accuracy=nnx.metrics.Accuracy(), loss=nnx.metrics.Average("loss"))
        with fast_module(model) if fast else contextlib.nullcontext():
            for _ in range(3):
                nnx_train_step(model, optimizer, metrics, batch)
        assert type(model) is NNXCNN  # restored on leaving the block
        assert "__class__" not in model._pytree__nodes  # the swap left no attribute behind
        results.append((nnx.to_pure_dict(nnx.state(model)), metrics.compute()))
    # Params, BatchNorm stats, dropout's RNG count and the metrics all moved, identically.
    assert int(results[1][0]["dropout"]["rngs"]["count"]) == 3
    assert_trees_close(results[1], results[0])


def split_forward(model):
    """(params, x, rest) -> (logits, batch stats) of `model` as it is now, and its params, rest."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def forward(params, x, rest):
        # Fresh Variables for `rest` (not differentiated, so grad passes its objects as they
        # are): nnx refuses writes to BatchStats made at another trace level.
        rest = jax.tree.map(lambda leaf: leaf, rest)
        module = nnx.merge(graphdef, params, rest)
        return module(x), nnx.state(module, nnx.BatchStat)

    return forward, params, rest


def test_fast_module_gives_the_same_outputs_and_gradients_without_native_ops():
    model, _ = nnx_model_and_optimizer()  # in training mode: batch statistics, dropout
    x = images((4, 12, 12, 1))
    original, params, rest = split_forward(model)
    with fast_module(model):
        fast, _, _ = split_forward(model)  # its graphdef now names the fast class
    assert_same_function(original, fast, params, x, rest, argnums=(0, 1))
    names = primitives(fast, params, x, rest, grad=True)
    assert not any(name.startswith("reduce_window") for name in names)
    assert "select_and_scatter_add" not in names
    assert (gradient_convs(fast, params, x, rest) == 0) == ON_CPU
    assert gradient_convs(original, params, x, rest) == 6  # 2 values, 2 kernels, 2 inputs
    assert primitives(original, params, x, rest)["reduce_window_max"] == 1


def test_fast_module_runs_inside_lax_scan():
    model, _ = nnx_model_and_optimizer()
    xs = images((2, 4, 12, 12, 1))

    def scanned(model):
        graphdef, state = nnx.split(model)

        def body(state, x):
            module = nnx.merge(graphdef, state)
            y = module(x)
            return nnx.state(module), y

        state, ys = jax.jit(lambda state, xs: jax.lax.scan(body, state, xs))(state, xs)
        return nnx.to_pure_dict(state), ys

    expected = scanned(model)
    with fast_module(model):
        actual = scanned(model)
    assert_trees_close(actual, expected)
