"""The train step, as on slide 14: a loss function and one gradient update.

Everything here is a pure function of a `TrainState` and one batch, so a user
can read it, copy it, change it and hand their own version to `fit()`.

Batches arrive as the deck's loss expects them: `inputs` float32 pixels in
[0, 1] of shape (B, 28, 28) (any shape the model accepts), `labels` one-hot
float32 of shape (B, num_classes).
"""

from __future__ import annotations

import inspect
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax import nnx
from flax.training import train_state

from flaxfit.models import NUM_CLASSES
from flaxfit.models.nnx_bridge import NnxApply, merge_module, split_module
from flaxfit.models.outputs import forward, mode_keywords

EvalMetrics = dict[str, jax.Array]
#: The dummy batch `create_train_state` initialises with unless told otherwise.
MNIST_INPUT = (1, 28, 28)


class TrainState(train_state.TrainState):
    """Flax's TrainState plus what models with state and randomness need.

    Attributes:
        batch_stats: the BatchNorm statistics (Linen's 'batch_stats' collection,
            NNX's `nnx.BatchStat` variables) as a plain nested dict; None for models
            without BatchNorm. Training steps update them, evaluation reads them.
        rng: this step's key for dropout (a raw uint32[2] key). `fit()` sets it
            before every step from (seed, epoch, step), so a resumed run draws
            the same masks as an unbroken one.
    """

    batch_stats: Any = None
    rng: jax.Array | None = None


def _init_linen(
    model: nn.Module, rng: jax.Array, shape: tuple[int, ...], tx: optax.GradientTransformation
) -> tuple[dict[str, Any], Any, jax.Array]:
    """The model's variables, the optimizer's state for its params, and the state's key.

    flaxfit's own models are initialised in one jitted program: run op by op, the
    same init dispatches about 45 tiny programs, each compiled (or read from the
    persistent compilation cache) on its own, which was most of a warm `flaxfit
    train`'s compile time. Random bits, the truncated normal and the zeros come out
    bit for bit as op by op (tests/test_models.py compares every registry model).
    Another module is initialised op by op, as before: its init may run host code.
    """

    def init(rng: jax.Array) -> tuple[dict[str, Any], Any, jax.Array]:
        # Initialised in evaluation mode, as Flax's examples do: no dropout key is needed.
        variables = model.init(
            {"params": rng, "dropout": rng}, jnp.zeros(shape, jnp.float32),
            **mode_keywords(model, False),
        )  # fmt: skip
        return dict(variables), tx.init(variables["params"]), jax.random.PRNGKey(0)

    own = type(model).__module__.startswith("flaxfit.models.")
    variables, opt_state, key = jax.jit(init)(rng) if own else init(rng)
    unknown = sorted(set(variables) - {"params", "batch_stats"})
    if unknown:
        raise ValueError(
            f"create_train_state: {type(model).__name__} has variable collections "
            f"{unknown} besides 'params' and 'batch_stats'; flaxfit trains only those two"
        )
    return variables, opt_state, key


def create_train_state(
    model: nn.Module | nnx.Module,
    rng: jax.Array | None = None,
    optimizer: optax.GradientTransformation = optax.adam(1e-3),  # noqa: B008 (immutable)
    *,
    input_shape: tuple[int, ...] | None = None,
    data: Any = None,
) -> TrainState:
    """Initialise `model`'s params from `rng` and wrap them with an optimizer.

    Args:
        model: a flax.linen module called as `model.apply({'params': p}, x)`;
            either the deck's kind (softmax output, `get_logits=True` for
            logits) or one whose `__call__(x)` returns logits, as in Flax's
            examples (`train=` / BatchNorm / Dropout included). Or an
            `nnx.Module` built eagerly with `nnx.Rngs`: its weights are taken
            as they are and `state.apply_fn` calls it as Linen's apply would.
        rng: a PRNG key, e.g. `jax.random.key(0)`; needed for Linen modules (an NNX
            module is initialised already: `create_train_state(module, tx)` works too).
        optimizer: any optax transformation.
        input_shape: shape of a dummy batch used to infer parameter shapes, e.g.
            `(1, *data.train.images.shape[1:])`; default (1, 28, 28), MNIST's.
        data: instead of `input_shape`, a split (or images array) to take it from.

    Returns:
        A `TrainState` (flax's, plus `batch_stats` and `rng`) at step 0. Its
        `params` is a plain nested dict you can read, rewrite and reuse.
    """
    if isinstance(model, nnx.Module):
        # Its weights exist already (from its nnx.Rngs): a key is not needed, and an
        # optimizer in the key's place is what `create_train_state(module, tx)` means.
        if isinstance(rng, optax.GradientTransformation):
            optimizer = rng
        apply_fn, params, batch_stats = split_module(model)
        return TrainState.create(apply_fn=apply_fn, params=params, tx=optimizer,
                                 batch_stats=batch_stats, rng=jax.random.PRNGKey(0))  # fmt: skip
    if rng is None:
        raise TypeError(
            f"create_train_state: {type(model).__name__} is a Linen module and needs a key to "
            "initialise its params: create_train_state(model, jax.random.key(0), ...)"
        )
    if input_shape is None and data is not None:
        images = getattr(data, "images", data)
        input_shape = (1, *np.shape(images)[1:])
    shape = MNIST_INPUT if input_shape is None else tuple(input_shape)
    try:
        variables, opt_state, key = _init_linen(model, rng, shape, optimizer)
    except Exception as error:
        if input_shape is not None or str(error).startswith("create_train_state"):
            raise
        raise ValueError(
            f"create_train_state: {type(model).__name__} could not be initialised with a "
            f"dummy batch of shape {shape} (MNIST's): {str(error).splitlines()[0]}; pass "
            "input_shape=(1, H, W, C) matching your data, or data=train_split"
        ) from error
    # What TrainState.create builds, with the optimizer's state initialised above.
    return TrainState(
        step=0, apply_fn=model.apply, params=variables["params"], tx=optimizer,
        opt_state=opt_state, batch_stats=variables.get("batch_stats"), rng=key,
    )  # fmt: skip


def nnx_model(state: TrainState) -> nnx.Module:
    """The NNX module of `state` (from `create_train_state(nnx_module)`) with its trained weights.

    Raises:
        TypeError: the state's model is a Linen module.
    """
    apply_fn = inspect.unwrap(state.apply_fn, stop=lambda f: isinstance(f, NnxApply))
    if not isinstance(apply_fn, NnxApply):
        raise TypeError("nnx_model: this state's model is not an NNX module")
    return merge_module(apply_fn, jax.device_get(state.params),
                        jax.device_get(getattr(state, "batch_stats", None)))  # fmt: skip


def check_model_fits(
    state: TrainState, image_shape: tuple[int, ...], num_classes: int | None
) -> None:
    """Fail with a clear line unless `state`'s model takes images of `image_shape` with its
    params and returns `num_classes` logits for each (checked on shapes alone, nothing runs;
    `num_classes=None`, for targets other than classes, checks the input side only).

    Raises:
        ValueError: naming the shapes and the `input_shape` to create the state with.
    """
    example = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    wanted = f"input_shape=(1, {', '.join(str(n) for n in image_shape)})"
    try:
        out = jax.eval_shape(
            lambda params, stats, x: forward(state.apply_fn, params, x, batch_stats=stats)[0],
            state.params, getattr(state, "batch_stats", None), example,
        )  # fmt: skip
    except Exception as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(
            f"the model does not take this data's images of shape {tuple(image_shape)} with "
            f"these params ({first}); create the state with {wanted}"
        ) from None
    if num_classes is not None and getattr(out, "shape", None) != (1, num_classes):
        raise ValueError(
            f"the model returns {getattr(out, 'shape', type(out).__name__)} for a batch of one, "
            f"but the data has {num_classes} classes: it should return (1, {num_classes}) logits"
        )


@jax.jit
def loss_fn(params: Any, state: TrainState, inputs: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of the model with `params` on one batch (slide 14).

    Args:
        params: the params dict to evaluate (differentiated by `train_step`).
        state: supplies `apply_fn`.
        inputs: (B, ...) float32 pixels in [0, 1].
        labels: (B, num_classes) one-hot float32.
    """
    return _loss_and_stats(params, state, inputs, labels)[0]


def _loss_and_stats(params: Any, state: Any, inputs: jax.Array, labels: jax.Array):
    scores, batch_stats = forward(
        state.apply_fn, params, inputs, train=True,
        batch_stats=getattr(state, "batch_stats", None), rng=getattr(state, "rng", None),
    )  # fmt: skip
    return optax.softmax_cross_entropy(scores, labels).mean(), batch_stats


@jax.jit
def train_step(
    state: TrainState, inputs: jax.Array, labels: jax.Array
) -> tuple[TrainState, jax.Array]:
    """One gradient update (slide 14): returns the new state and the batch loss.

    For models with BatchNorm the state's `batch_stats` are updated too, and
    dropout draws from `state.rng`; for the deck's models this is exactly
    slide 14's step.
    """
    (loss, batch_stats), grads = jax.value_and_grad(_loss_and_stats, has_aux=True)(
        state.params, state, inputs, labels
    )
    new_state = state.apply_gradients(grads=grads)
    if batch_stats is not None:
        new_state = new_state.replace(batch_stats=batch_stats)
    return new_state, loss


@jax.jit
def eval_step(
    state: TrainState, inputs: jax.Array, labels: jax.Array, mask: jax.Array | None = None
) -> EvalMetrics:
    """Summed loss and correct predictions on one batch, counting the rows `mask` keeps.

    Sums (not means) so that batches of any size, and padded rows, combine
    exactly: accuracy = correct / count over the whole set.

    Args:
        inputs: (B, ...) float32 pixels in [0, 1].
        labels: (B, num_classes) one-hot float32.
        mask: (B,) bool, True for real examples; None counts every row.

    Returns:
        A dict of "loss_sum", "correct" and "count", float32 / int32 scalars.
    """
    if mask is None:
        mask = jnp.ones(inputs.shape[0], bool)
    scores, _ = forward(
        state.apply_fn, state.params, inputs, batch_stats=getattr(state, "batch_stats", None)
    )
    losses = optax.softmax_cross_entropy(scores, labels)
    hits = jnp.argmax(scores, -1) == jnp.argmax(labels, -1)
    return {
        "loss_sum": jnp.sum(jnp.where(mask, losses, 0.0)),
        "correct": jnp.sum(hits & mask, dtype=jnp.int32),
        "count": jnp.sum(mask, dtype=jnp.int32),
    }


def is_classification(labels: Any, num_classes: int) -> bool:
    """Whether `labels` are classes: integers (N,), or (N, num_classes) one-hot / soft rows.

    Anything else (float targets of another shape) is another task, e.g. regression.
    """
    dtype, shape = np.dtype(labels.dtype), np.shape(labels)
    if np.issubdtype(dtype, np.integer):
        return len(shape) == 1
    return len(shape) == 2 and shape[1] == num_classes


def to_model_inputs(
    images: jax.Array, labels: jax.Array, num_classes: int | None = NUM_CLASSES
) -> tuple[jax.Array, jax.Array]:
    """Stored batch -> what `train_step` takes: uint8 pixels to float32/255, labels to one-hot.

    Float images are taken as already scaled; (B, num_classes) labels as already one-hot.
    With `num_classes=None` (targets that are not classes) the labels are only cast
    to float32.
    """
    if jnp.issubdtype(images.dtype, jnp.integer):
        inputs = images.astype(jnp.float32) / 255.0
    else:
        inputs = images.astype(jnp.float32)
    if num_classes is not None and labels.ndim == 1:
        labels = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    return inputs, labels.astype(jnp.float32)
