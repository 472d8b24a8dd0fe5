"""The train step, as on slide 14: a loss function and one gradient update.

Everything here is a pure function of a `TrainState` and one batch, so a user
can read it, copy it, change it and hand their own version to `fit()`.

Batches arrive as the deck's loss expects them: `inputs` float32 pixels in
[0, 1] of shape (B, 28, 28) (any shape the model accepts), `labels` one-hot
float32 of shape (B, num_classes).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from flax.training.train_state import TrainState

from flaxfit.models import NUM_CLASSES
from flaxfit.models.outputs import logits

EvalMetrics = dict[str, jax.Array]
#: The dummy batch `create_train_state` initialises with unless told otherwise.
MNIST_INPUT = (1, 28, 28)


def create_train_state(
    model: nn.Module,
    rng: jax.Array,
    optimizer: optax.GradientTransformation = optax.adam(1e-3),  # noqa: B008 (immutable)
    *,
    input_shape: tuple[int, ...] | None = None,
) -> TrainState:
    """Initialise `model`'s params from `rng` and wrap them with an optimizer.

    Args:
        model: a flax.linen module called as `model.apply({'params': p}, x)`;
            either the deck's kind (softmax output, `get_logits=True` for
            logits) or one whose `__call__(x)` returns logits, as in Flax's
            examples.
        rng: a PRNG key, e.g. `jax.random.key(0)`.
        optimizer: any optax transformation.
        input_shape: shape of a dummy batch used to infer parameter shapes, e.g.
            `(1, *data.train.images.shape[1:])`; default (1, 28, 28), MNIST's.

    Returns:
        A `flax.training.train_state.TrainState` at step 0. Its `params` is a
        plain nested dict you can read, rewrite and reuse.
    """
    shape = MNIST_INPUT if input_shape is None else tuple(input_shape)
    try:
        params = model.init(rng, jnp.zeros(shape, jnp.float32))["params"]
    except Exception as error:
        if input_shape is not None:
            raise
        raise ValueError(
            f"create_train_state: {type(model).__name__} could not be initialised with a "
            f"dummy batch of shape {shape} (MNIST's): {str(error).splitlines()[0]}; pass "
            "input_shape=(1, H, W, C) matching your data"
        ) from error
    return TrainState.create(apply_fn=model.apply, params=params, tx=optimizer)


def check_model_fits(state: TrainState, image_shape: tuple[int, ...], num_classes: int) -> None:
    """Fail with a clear line unless `state`'s model takes images of `image_shape` with its
    params and returns `num_classes` logits for each (checked on shapes alone, nothing runs).

    Raises:
        ValueError: naming the shapes and the `input_shape` to create the state with.
    """
    example = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    wanted = f"input_shape=(1, {', '.join(str(n) for n in image_shape)})"
    try:
        out = jax.eval_shape(
            lambda params, x: logits(state.apply_fn, {"params": params}, x), state.params, example
        )
    except Exception as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(
            f"the model does not take this data's images of shape {tuple(image_shape)} with "
            f"these params ({first}); create the state with {wanted}"
        ) from None
    if getattr(out, "shape", None) != (1, num_classes):
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
    scores = logits(state.apply_fn, {"params": params}, inputs)
    return optax.softmax_cross_entropy(scores, labels).mean()


@jax.jit
def train_step(
    state: TrainState, inputs: jax.Array, labels: jax.Array
) -> tuple[TrainState, jax.Array]:
    """One gradient update (slide 14): returns the new state and the batch loss."""
    loss, grads = jax.value_and_grad(loss_fn)(state.params, state, inputs, labels)
    new_state = state.apply_gradients(grads=grads)
    return new_state, loss


@jax.jit
def eval_step(
    state: TrainState, inputs: jax.Array, labels: jax.Array, mask: jax.Array | None = None
) -> EvalMetrics:
    """Summed loss and correct predictions on one batch, counting only `mask`ed rows.

    Sums (not means) so that batches of any size, and padded rows, combine
    exactly: accuracy = correct / count over the whole set.

    Args:
        inputs: (B, ...) float32 pixels in [0, 1].
        labels: (B, num_classes) one-hot float32.
        mask: (B,) bool, True for real examples; None counts every row.

    Returns:
        {"loss_sum": (), "correct": (), "count": ()} as float32 / int32 scalars.
    """
    if mask is None:
        mask = jnp.ones(inputs.shape[0], bool)
    scores = logits(state.apply_fn, {"params": state.params}, inputs)
    losses = optax.softmax_cross_entropy(scores, labels)
    hits = jnp.argmax(scores, -1) == jnp.argmax(labels, -1)
    return {
        "loss_sum": jnp.sum(jnp.where(mask, losses, 0.0)),
        "correct": jnp.sum(hits & mask, dtype=jnp.int32),
        "count": jnp.sum(mask, dtype=jnp.int32),
    }


def to_model_inputs(
    images: jax.Array, labels: jax.Array, num_classes: int = NUM_CLASSES
) -> tuple[jax.Array, jax.Array]:
    """Stored batch -> what `train_step` takes: uint8 pixels to float32/255, labels to one-hot.

    Float images are taken as already scaled; (B, num_classes) labels as already one-hot.
    """
    if jnp.issubdtype(images.dtype, jnp.integer):
        inputs = images.astype(jnp.float32) / 255.0
    else:
        inputs = images.astype(jnp.float32)
    if labels.ndim == 1:
        labels = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    return inputs, labels.astype(jnp.float32)
