"""The deck's code as printed on slides 13-14, and its plain training loop.

This module is the reference flaxfit is measured against and checked against:
`SingleLayerCNN` is slide 13's model with stock `nn.Conv` / `nn.max_pool`,
`loss_fn` and `train_step` are copied verbatim from slide 14 (each under
`@jax.jit`), and `fit` is the loop a notebook writes first: a Python loop
over host numpy batches that reads the loss back after every step.
`flaxfit.fit` must give the same params for the same batch order, faster.
"""

from __future__ import annotations

import time

import jax
import numpy as np
import optax
from flax import linen as nn
from flax.training.train_state import TrainState

from flaxfit.models import NUM_CLASSES
from flaxfit.training.history import History
from flaxfit.training.loop import as_arrays, epoch_order, evaluate, steps_per_epoch


# --- slide 13, verbatim -----------------------------------------------------
# fmt: off
class SingleLayerCNN(nn.Module):
    @nn.compact
    def __call__(self, x, get_logits=False):
        x = x.reshape([-1, 28, 28, 1])
        x = nn.Conv(features=16, kernel_size=(5, 5))(x)
        x = nn.relu(x)
        x = nn.max_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = x.reshape([x.shape[0], -1])
        x = nn.Dense(features=1024)(x)
        x = nn.relu(x)
        x = nn.Dense(features=10)(x)
        if get_logits:
            return x
        return nn.softmax(x)
# fmt: on


# --- slide 14, verbatim -----------------------------------------------------
# fmt: off
@jax.jit
def loss_fn(params, state, inputs, labels):
    logits = state.apply_fn({'params': params}, inputs, get_logits=True)
    loss = optax.softmax_cross_entropy(logits, labels).mean()
    return loss


@jax.jit
def train_step(state, inputs, labels):
    loss, grads = jax.value_and_grad(loss_fn)(
        state.params, state, inputs, labels)
    new_state = state.apply_gradients(grads=grads)
    return new_state, loss
# fmt: on
# -----------------------------------------------------------------------------


def train_epoch(
    state: TrainState,
    images: np.ndarray,
    labels: np.ndarray,
    order: np.ndarray,
    batch_size: int,
    train_step=train_step,
) -> tuple[TrainState, float]:
    """One epoch the plain way: slice host batches, one jitted step each, `float(loss)` each."""
    loss_history = []
    for step in range(steps_per_epoch(len(images), batch_size)):
        batch = order[step * batch_size : (step + 1) * batch_size]
        inputs = images[batch].astype(np.float32) / 255.0
        onehot = np.eye(NUM_CLASSES, dtype=np.float32)[labels[batch]]
        state, loss = train_step(state, inputs, onehot)
        loss_history.append(float(loss))  # a host sync every step
    return state, float(np.mean(loss_history))


def fit(
    state: TrainState,
    train,
    test=None,
    *,
    epochs: int,
    batch_size: int = 128,
    seed: int = 0,
    train_step=train_step,
) -> tuple[TrainState, History]:
    """The deck-style loop, using flaxfit's epoch order so results can be compared."""
    images, labels = (np.asarray(x) for x in as_arrays(train, "train"))
    history = History()
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        order = epoch_order(seed, epoch, len(images))
        state, loss = train_epoch(state, images, labels, order, batch_size, train_step)
        test_metrics = evaluate(state, test) if test is not None else None
        seconds = time.perf_counter() - started
        history.append(
            {
                "epoch": epoch,
                "train_loss": loss,
                "train_accuracy": float("nan"),
                "test_loss": test_metrics["loss"] if test_metrics else float("nan"),
                "test_accuracy": test_metrics["accuracy"] if test_metrics else float("nan"),
                "seconds": seconds,
                "images_per_second": steps_per_epoch(len(images), batch_size)
                * batch_size
                / seconds,
            }
        )
    return state, history
