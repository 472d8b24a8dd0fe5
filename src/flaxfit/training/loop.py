"""fit(): the deck's epoch loop, with the data on the device and many steps per dispatch.

The deck's loop runs one jitted `train_step` per Python iteration on host
batches and reads the loss back every step. Here the dataset is copied to the
device once, each epoch's shuffled order is computed there, and `lax.scan`
runs `steps_per_dispatch` train steps per call with the state donated. The
host syncs once per chunk (for the progress bar) and reads the metrics once
per epoch. `train_step` is still the user's unit of work: any function
`(state, inputs, labels) -> (state, loss)` can be passed in.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from flax.training.train_state import TrainState
from jax.sharding import Mesh

from flaxfit.models import NUM_CLASSES
from flaxfit.models.outputs import forward
from flaxfit.training.augment import Recipe
from flaxfit.training.augment import apply as augment_images
from flaxfit.training.callbacks import ProgressBar, call_hooks
from flaxfit.training.compile_watch import watch_compiles
from flaxfit.training.fast_ops import fast_apply
from flaxfit.training.history import History
from flaxfit.training.sharding import check_batch_size, data_mesh, replicate, split_batch
from flaxfit.training.step import (
    EvalMetrics,
    check_model_fits,
    eval_step,
    is_classification,
    to_model_inputs,
    train_step,
)

default_eval_step = eval_step  # `fit`'s own argument is named eval_step too

#: `(state, inputs, labels) -> (state, loss)`, or `(state, {"loss": ..., "mse": ...})`:
#: a step returning a dict of scalars has exactly those metrics recorded.
TrainStep = Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, Any]]
EvalStep = Callable[..., EvalMetrics]
#: A split from `load_mnist` (anything with `.images` and `.labels`) or an (images, labels) pair.
Data = Any

#: Steps per dispatch when `steps_per_dispatch=None`: long enough to hide the
#: dispatch and the per-chunk sync, short enough for a live progress bar.
DEFAULT_STEPS_PER_DISPATCH = 64
DEFAULT_EVAL_BATCH_SIZE = 250


def as_arrays(data: Data, what: str = "data") -> tuple[Any, Any]:
    """(images, labels) arrays from a split or a pair, with their lengths checked."""
    if hasattr(data, "images") and hasattr(data, "labels"):
        images, labels = data.images, data.labels
    else:
        try:
            images, labels = data
        except (TypeError, ValueError):
            raise TypeError(
                f"{what} must be a split with .images/.labels or an (images, labels) pair, "
                f"got {type(data).__name__}"
            ) from None
    # Arrays already on the device stay there.
    images, labels = (x if isinstance(x, jax.Array) else np.asarray(x) for x in (images, labels))
    if len(images) != len(labels):
        raise ValueError(f"{what}: {len(images)} images but {len(labels)} labels")
    if len(images) == 0:
        raise ValueError(f"{what} is empty")
    return images, labels


def epoch_order(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    """The shuffled example order of `epoch`: int32 (num_examples,), a pure function of the args.

    Resuming at any epoch therefore sees the same order as an unbroken run, and
    every process of a multi-host job computes the same order. NumPy on the host
    takes about 1 ms for 60 000 examples; jax.random.permutation's sort rounds
    take 30+ ms on a CPU, a third of a softmax epoch.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, epoch]))
    return rng.permutation(num_examples).astype(np.int32)


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full batches per epoch; the last partial batch is left out (it changes every epoch)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if batch_size > num_examples:
        raise ValueError(f"batch_size {batch_size} is larger than the {num_examples} examples")
    return num_examples // batch_size


def chunk_sizes(total_steps: int, steps_per_dispatch: int | None) -> list[int]:
    """How an epoch's steps are cut into dispatches (at most two distinct sizes)."""
    per = DEFAULT_STEPS_PER_DISPATCH if steps_per_dispatch is None else steps_per_dispatch
    if per <= 0:
        raise ValueError(f"steps_per_dispatch must be positive, got {per}")
    per = min(per, total_steps)
    sizes = [per] * (total_steps // per)
    if total_steps % per:
        sizes.append(total_steps % per)
    return sizes


def step_key(seed: int | jax.Array, epoch: int | jax.Array, step: int | jax.Array) -> jax.Array:
    """The dropout key of `step` (counted from 0) of `epoch`: a pure function of the three,
    so a run resumed anywhere draws what an unbroken run draws (a raw uint32[2] key)."""
    key = jax.random.fold_in(jax.random.PRNGKey(seed), epoch)
    return jax.random.fold_in(key, step)


def step_metrics(out: Any) -> dict[str, jax.Array]:
    """A train step's second output as {"loss": scalar, ...}; a clear error for anything else."""
    if isinstance(out, dict):
        if "loss" not in out:
            raise ValueError(
                f"train_step returned metrics {sorted(out)} without 'loss'; include the "
                "loss being minimised as 'loss'"
            )
        metrics = dict(out)
    else:
        metrics = {"loss": out}
    for name, value in metrics.items():
        shape = getattr(value, "shape", None)
        if shape != ():
            raise ValueError(
                f"train_step's metric {name!r} is {shape if shape is not None else type(value)}, "
                "not a scalar; "
                "a step returns (state, loss) with a scalar loss, or (state, {name: scalar})"
            )
    return metrics


@partial(
    jax.jit,
    static_argnames=(
        "num_steps", "batch_size", "train_step", "num_classes", "mesh", "augment", "label_smoothing"
    ),
    donate_argnames=("state",),
)
def run_steps(
    state: TrainState,
    images: jax.Array,
    labels: jax.Array,
    order: jax.Array,
    first_step: int | jax.Array,
    seed: int | jax.Array = 0,
    epoch: int | jax.Array = 1,
    *,
    num_steps: int,
    batch_size: int,
    train_step: TrainStep = train_step,
    num_classes: int | None = NUM_CLASSES,
    mesh: Mesh | None = None,
    augment: Recipe | None = None,
    label_smoothing: float = 0.0,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """Run steps `first_step .. first_step + num_steps - 1` of an epoch in one compiled scan.

    Step s trains on the examples `order[s * batch_size : (s + 1) * batch_size]`,
    augmented by `augment` (see `flaxfit.training.augment`) with a key from
    `step_key(seed, epoch, s)`; a state with an `rng` gets that key itself before it.
    With `label_smoothing`, a classifier's one-hot targets are smoothed
    (`optax.smooth_labels`) before the step sees them.

    Returns the new state and the steps' metrics, each (num_steps,): those the
    step returns, or "loss" and, for classifiers (`num_classes` given), "correct":
    the correct predictions made with the params before each step, as the loss is.
    """
    indices = jax.lax.dynamic_slice_in_dim(order, first_step * batch_size, num_steps * batch_size)
    steps = first_step + jnp.arange(num_steps)

    def one_step(state: TrainState, step_and_batch: tuple[jax.Array, jax.Array]):
        step, batch = step_and_batch
        inputs, targets = to_model_inputs(images[batch], labels[batch], num_classes)
        key = step_key(seed, epoch, step)
        inputs = augment_images(augment, jax.random.fold_in(key, 1), inputs)
        if label_smoothing and num_classes is not None:  # argmax, so accuracy, is unchanged
            targets = optax.smooth_labels(targets, label_smoothing)
        inputs, targets = split_batch(inputs, mesh), split_batch(targets, mesh)
        if getattr(state, "rng", None) is not None:
            state = state.replace(rng=key)
        old = state
        state, out = train_step(state, inputs, targets)
        metrics = step_metrics(out)
        if not isinstance(out, dict) and num_classes is not None:
            # The loss runs the same forward pass (same mode, same key): XLA computes it once.
            scores, _ = forward(old.apply_fn, old.params, inputs, train=True,
                                batch_stats=getattr(old, "batch_stats", None),
                                rng=getattr(old, "rng", None))  # fmt: skip
            hits = jnp.argmax(scores, -1) == jnp.argmax(targets, -1)
            metrics["correct"] = jnp.sum(hits, dtype=jnp.int32)
        return state, metrics

    return jax.lax.scan(one_step, state, (steps, indices.reshape(num_steps, batch_size)))


class TrainingInterrupted(Exception):
    """`fit` stopped at a safe point because `should_stop()` said so.

    Carries what resuming needs: the state, where the epoch stood, and the history.
    """

    def __init__(self, state: TrainState, progress: EpochProgress, history: History):
        super().__init__(f"interrupted at epoch {progress.epoch}, step {progress.steps_done}")
        self.state, self.progress, self.history = state, progress, history


class NonFiniteError(FloatingPointError):
    """The loss or the params stopped being finite; names where it happened."""

    def __init__(self, message: str, epoch: int, step: int):
        super().__init__(message)
        self.epoch, self.step = epoch, step


@dataclass
class EpochProgress:
    """How far an epoch has got: what a mid-epoch checkpoint must remember.

    `losses`, `correct` (for classifiers) and `metrics` (any others a train step
    returns) hold one entry per step done so far, so the epoch's metrics come
    out the same whether or not it was interrupted.
    """

    epoch: int
    steps_done: int = 0
    losses: list[float] = field(default_factory=list)
    correct: list[int] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)


def run_epoch(
    state: TrainState,
    images: jax.Array,
    labels: jax.Array,
    progress: EpochProgress,
    *,
    batch_size: int,
    seed: int,
    train_step: TrainStep = train_step,
    steps_per_dispatch: int | None = None,
    num_classes: int | None = NUM_CLASSES,
    on_steps: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    mesh: Mesh | None = None,
    augment: Recipe | None = None,
    label_smoothing: float = 0.0,
) -> tuple[TrainState, EpochProgress]:
    """Continue `progress.epoch` from `progress.steps_done` until it ends or `should_stop()`.

    Chunks start at `steps_done`, so a run resumed at a chunk boundary
    dispatches exactly the programs an unbroken run would. The host waits for
    the previous chunk only (one stays queued, the device never idles), checks
    its losses are finite, reports progress and asks whether to stop.

    Raises:
        NonFiniteError: a loss (or, at the epoch's end, a param) is NaN or Inf.
    """
    total = steps_per_epoch(len(images), batch_size)
    order = _place(epoch_order(seed, progress.epoch, len(images)), mesh)
    done = progress.steps_done
    pending: list[tuple[int, dict[str, jax.Array]]] = []

    def collect(first: int, chunk_metrics: dict[str, jax.Array]) -> None:
        chunk = jax.device_get(chunk_metrics)
        values = chunk.pop("loss")
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            step = first + int(bad[0]) + 1
            raise NonFiniteError(
                f"loss is {values[bad[0]]} at epoch {progress.epoch}, step {step}",
                progress.epoch, step,
            )  # fmt: skip
        progress.losses.extend(values.tolist())
        if "correct" in chunk:
            progress.correct.extend(chunk.pop("correct").tolist())
        for name, column in chunk.items():
            progress.metrics.setdefault(name, []).extend(column.tolist())
        progress.steps_done = first + len(values)

    for size in chunk_sizes(total - done, steps_per_dispatch) if done < total else []:
        state, chunk_metrics = run_steps(
            state, images, labels, order, done, seed, progress.epoch,
            num_steps=size, batch_size=batch_size, train_step=train_step, num_classes=num_classes,
            mesh=mesh, augment=augment, label_smoothing=label_smoothing,
        )  # fmt: skip
        pending.append((done, chunk_metrics))
        done += size
        if len(pending) > 1:
            collect(*pending.pop(0))
            if on_steps is not None:
                on_steps(progress.steps_done, total)
            if should_stop is not None and should_stop():
                break
    for chunk in pending:
        collect(*chunk)
    if progress.steps_done == total:
        if not all_finite(state.params):
            raise NonFiniteError(
                f"params are not finite after epoch {progress.epoch}, step {total}",
                progress.epoch, total,
            )  # fmt: skip
        if on_steps is not None:
            on_steps(total, total)
    return state, progress


def _place(x: Any, mesh: Mesh | None) -> Any:
    return jax.device_put(x) if mesh is None else replicate(x, mesh)


@jax.jit
def all_finite(tree: Any) -> jax.Array:
    """True when no leaf of `tree` holds a NaN or an Inf (one device reduction)."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def epoch_metrics(progress: EpochProgress, batch_size: int) -> dict[str, float]:
    """Mean loss (and every other step metric) per step; for classifiers the accuracy
    over the examples of the steps done."""
    steps = len(progress.losses)
    out = {"loss": float(np.sum(np.asarray(progress.losses, np.float64))) / steps}
    if progress.correct:
        out["accuracy"] = int(np.sum(progress.correct)) / (steps * batch_size)
    for name, values in progress.metrics.items():
        out[name] = float(np.sum(np.asarray(values, np.float64))) / steps
    return out


def train_epoch(
    state: TrainState,
    images: jax.Array,
    labels: jax.Array,
    *,
    batch_size: int,
    seed: int,
    epoch: int,
    train_step: TrainStep = train_step,
    steps_per_dispatch: int | None = None,
    num_classes: int = NUM_CLASSES,
    on_steps: Callable[[int, int], None] | None = None,
) -> tuple[TrainState, dict[str, float]]:
    """One whole pass over the data in the order `epoch_order(seed, epoch, N)`.

    Args:
        images: (N, ...) pixels, ideally already on the device (uint8 or float).
        labels: (N,) integer classes or (N, num_classes) one-hot.
        on_steps: called as `on_steps(steps_done, steps_total)` as chunks finish.

    Returns:
        The new state and {"loss", "accuracy"} averaged over the epoch's examples.
    """
    state, progress = run_epoch(
        state, images, labels, EpochProgress(epoch),
        batch_size=batch_size, seed=seed, train_step=train_step,
        steps_per_dispatch=steps_per_dispatch, num_classes=num_classes, on_steps=on_steps,
    )  # fmt: skip
    return state, epoch_metrics(progress, batch_size)


@partial(jax.jit, static_argnames=("eval_step", "batch_size", "num_classes", "mesh"))
def _evaluate_all(
    state: TrainState,
    images: jax.Array,
    labels: jax.Array,
    *,
    eval_step: EvalStep,
    batch_size: int,
    num_classes: int,
    mesh: Mesh | None = None,
) -> EvalMetrics:
    # Pad to whole batches and mask the padding, so every example counts once.
    n = images.shape[0]
    batches = math.ceil(n / batch_size)
    pad = batches * batch_size - n
    images = jnp.pad(images, [(0, pad)] + [(0, 0)] * (images.ndim - 1))
    labels = jnp.pad(labels, [(0, pad)] + [(0, 0)] * (labels.ndim - 1))
    mask = jnp.arange(batches * batch_size) < n

    def one_batch(totals: EvalMetrics, batch: tuple[jax.Array, jax.Array, jax.Array]):
        metrics = one_batch_metrics(state, *batch, eval_step, num_classes, mesh)
        return jax.tree.map(jnp.add, totals, metrics), None

    def batched(x: jax.Array) -> jax.Array:
        return x.reshape(batches, batch_size, *x.shape[1:])

    first = jax.eval_shape(
        lambda *batch: one_batch_metrics(state, *batch, eval_step, num_classes, mesh),
        images[:batch_size], labels[:batch_size], mask[:batch_size],
    )  # fmt: skip
    zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), first)
    totals, _ = jax.lax.scan(
        one_batch, zeros, (batched(images), batched(labels), mask.reshape(batches, batch_size))
    )
    return totals


def one_batch_metrics(state, images, labels, mask, eval_step, num_classes, mesh) -> EvalMetrics:
    """`eval_step` on one stored batch, its output checked: scalar sums and a "count"."""
    inputs, targets = to_model_inputs(images, labels, num_classes)
    inputs, targets = split_batch(inputs, mesh), split_batch(targets, mesh)
    metrics = eval_step(state, inputs, targets, split_batch(mask, mesh))
    if not isinstance(metrics, dict) or "count" not in metrics:
        raise ValueError(
            "eval_step must return a dict of per-batch sums over the masked rows and their "
            f"'count', e.g. {{'loss_sum': ..., 'count': ...}}; got {type(metrics).__name__}"
            + (f" with keys {sorted(metrics)}" if isinstance(metrics, dict) else "")
        )
    for name, value in metrics.items():
        if getattr(value, "shape", None) != ():
            raise ValueError(
                f"eval_step's metric {name!r} has shape {getattr(value, 'shape', None)}; "
                "each must be a scalar sum over the batch's masked rows"
            )
    return metrics


def eval_means(totals: dict[str, Any]) -> dict[str, float]:
    """Summed eval metrics -> means per counted example, named for History.

    "loss_sum" -> "loss", "correct" -> "accuracy", "<name>_sum" -> "<name>",
    any other key keeps its name; "count" (and "correct") are kept as integers too.
    """
    count = int(totals["count"])
    out: dict[str, float] = {}
    for key, value in totals.items():
        if key == "count":
            continue
        name = "accuracy" if key == "correct" else key.removesuffix("_sum")
        out[name] = float(value) / count
    if "correct" in totals:
        out["correct"] = int(totals["correct"])
    out["count"] = count
    return out


def _eval_batch_size(batch_size: int, num_examples: int, mesh: Mesh | None) -> int:
    devices = 1 if mesh is None else mesh.size
    batch_size = min(batch_size, num_examples)
    return -(-batch_size // devices) * devices  # round up: padded rows are masked


def evaluate(
    state: TrainState,
    data: Data,
    *,
    batch_size: int = DEFAULT_EVAL_BATCH_SIZE,
    eval_step: EvalStep = eval_step,
    num_classes: int | None = NUM_CLASSES,
    mesh: Mesh | None = None,
) -> dict[str, float]:
    """Loss and accuracy (or `eval_step`'s own metrics) over every example of `data`,
    each counted exactly once.

    With a `mesh`, each batch is split over its devices; the batch size is
    rounded up to a multiple of the device count (padding is masked).

    Returns:
        A dict of "loss" (the mean loss), "accuracy" (correct / count), "correct" and
        "count" (ints).
        for the default step; for others, each summed metric divided by the count
        (see `eval_means`).
    """
    images, labels = as_arrays(data, "evaluation data")
    # The program fit() compiled up front: the same batch size and mesh.
    totals = jax.device_get(
        _evaluate_all(
            state, images, labels,
            eval_step=eval_step, batch_size=_eval_batch_size(batch_size, len(images), mesh),
            num_classes=num_classes, mesh=mesh,
        )  # fmt: skip
    )
    return eval_means(totals)


def fit(
    state: TrainState,
    train: Data,
    test: Data | None = None,
    *,
    epochs: int,
    batch_size: int = 128,
    seed: int = 0,
    train_step: TrainStep = train_step,
    eval_step: EvalStep = eval_step,
    eval_batch_size: int = DEFAULT_EVAL_BATCH_SIZE,
    steps_per_dispatch: int | None = None,
    num_classes: int = NUM_CLASSES,
    callbacks: Sequence[object] = (),
    verbose: bool = True,
    start: EpochProgress | None = None,
    history: History | None = None,
    should_stop: Callable[[], bool] | None = None,
    mesh: Mesh | None = None,
    optimizer: Any = None,
    metrics: Any = None,
    augment: Recipe | None = None,
    label_smoothing: float = 0.0,
    fast_ops: bool = True,
    timings: dict[str, float] | None = None,
) -> tuple[TrainState, History]:
    """Train `state` for `epochs` epochs; evaluate on `test` after each one.

    Handed an `nnx.Module` instead of a state, with `optimizer=nnx.Optimizer(...)`,
    `metrics=nnx.MultiMetric(...)` and Flax's NNX tutorial steps
    (`train_step(model, optimizer, metrics, batch)`, `eval_step(model, metrics, batch)`),
    fit runs those unchanged (see `flaxfit.training.nnx_loop.fit_nnx`) and returns
    the model, trained in place, with the History of `metrics.compute()`.

    Args:
        state: from `create_train_state`. It is donated: use the returned one.
        train, test: splits from `load_mnist` or (images, labels) pairs;
            images uint8 (N, 28, 28) or float in [0, 1], labels (N,) integers.
        epochs: the last epoch to run (epochs count from 1).
        batch_size: examples per train step; the epoch's last partial batch is skipped.
        seed: fixes the shuffled order of every epoch (`epoch_order`).
        train_step: `(state, inputs, labels) -> (state, loss)`, e.g. the deck's own.
        eval_step: `(state, inputs, labels, mask) -> {"loss_sum", "correct", "count"}`.
        steps_per_dispatch: train steps per compiled call (None: 64).
        callbacks: objects with `on_fit_begin` / `on_steps` / `on_epoch_end` /
            `on_fit_end` hooks (see `flaxfit.callbacks`); `on_epoch_end`
            returning True stops after that epoch.
        verbose: add a `ProgressBar` (bar on a terminal, one line per epoch).
        start, history: continue an earlier run from where `start` says (a
            checkpoint's `EpochProgress`), appending to its `history`.
        mesh: devices to split every batch over (data parallel); default: a
            "data" mesh of all devices. batch_size must divide by its size.
        augment: "shift" (digits) or "crop_flip" (colour pictures): augment every
            training batch on the device, keyed by (seed, epoch, step); see
            `flaxfit.training.augment.recipe_for`. Evaluation is never augmented.
        label_smoothing: train a classifier toward `optax.smooth_labels(one_hot,
            label_smoothing)`; train_loss is then the smoothed loss, while the test
            metrics use the plain labels.
        fast_ops: run the model's stock convs and pools (nn.Conv, nn.max_pool,
            nnx.Conv, nnx.avg_pool, ...) in the forms that stay fast inside the
            scan (`flaxfit.training.fast_ops`: the same function, float rounding
            apart); False runs the model exactly as written.
        should_stop: polled after every chunk; when it returns True, fit calls
            `on_interrupt(state, progress, history)` on the callbacks (a
            checkpointer saves there) and raises `TrainingInterrupted`.
        timings: where this call's time goes, as the entry of `history.sessions`
            it becomes: the seconds measured before fit (e.g. {"imports": 2.1,
            "data": 0.4}), to which fit adds "compile", "training" and
            "evaluation" as it goes (the dict passed in is the one filled in).

    Returns:
        The trained state and the `History` (per-epoch metrics, compile time apart).

    Raises:
        NonFiniteError: the loss or the params became NaN or Inf; nothing from
            the failing epoch reaches the callbacks.
        TrainingInterrupted: `should_stop()` returned True.
    """
    if isinstance(state, nnx.Module):
        from flaxfit.training.nnx_loop import fit_nnx

        if label_smoothing or augment is not None:
            raise ValueError(
                "label_smoothing and augment change the batches fit's scan hands a TrainState's "
                "step; NNX tutorial steps take the batch themselves: smooth or augment inside "
                "your train_step, or pass create_train_state(model, optimizer=...) instead"
            )

        return fit_nnx(
            state, train, test, optimizer=optimizer, metrics=metrics, train_step=train_step,
            eval_step=None if eval_step is default_eval_step else eval_step, epochs=epochs,
            batch_size=batch_size, seed=seed, eval_batch_size=eval_batch_size,
            steps_per_dispatch=steps_per_dispatch, callbacks=callbacks, verbose=verbose,
            fast_ops=fast_ops,
        )  # fmt: skip
    # The state trains with its apply_fn behind the rewrite and comes back with its own.
    apply_fn = state.apply_fn
    state = state.replace(apply_fn=fast_apply(apply_fn, enabled=fast_ops))
    try:
        state, history = _fit(
            state, train, test, epochs=epochs, batch_size=batch_size, seed=seed,
            train_step=train_step, eval_step=eval_step, eval_batch_size=eval_batch_size,
            steps_per_dispatch=steps_per_dispatch, num_classes=num_classes, callbacks=callbacks,
            verbose=verbose, start=start, history=history, should_stop=should_stop, mesh=mesh,
            augment=augment, label_smoothing=label_smoothing, timings=timings,
        )  # fmt: skip
    except TrainingInterrupted as interrupted:
        interrupted.state = interrupted.state.replace(apply_fn=apply_fn)
        raise
    return state.replace(apply_fn=apply_fn), history


def _fit(
    state: TrainState,
    train: Data,
    test: Data | None,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    train_step: TrainStep,
    eval_step: EvalStep,
    eval_batch_size: int,
    steps_per_dispatch: int | None,
    num_classes: int,
    callbacks: Sequence[object],
    verbose: bool,
    start: EpochProgress | None,
    history: History | None,
    should_stop: Callable[[], bool] | None,
    mesh: Mesh | None,
    augment: Recipe | None,
    label_smoothing: float,
    timings: dict[str, float] | None,
) -> tuple[TrainState, History]:
    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}")
    mesh = data_mesh() if mesh is None else mesh
    check_batch_size(batch_size, mesh)
    # Data and state live in full on every device; batches are split inside the step.
    state = replicate(state, mesh)
    train_images, train_labels = (replicate(x, mesh) for x in as_arrays(train, "train"))
    # Integer labels (or one-hot rows) are classes: accuracy is measured. Other
    # targets (regression) get only the metrics their steps return.
    classes = num_classes if is_classification(train_labels, num_classes) else None
    check_model_fits(state, train_images.shape[1:], classes)
    if classes is None and test is not None and eval_step is default_eval_step:
        raise ValueError(
            f"the labels are {train_labels.dtype} {tuple(train_labels.shape)}, not classes, so "
            "the default eval_step (cross-entropy, accuracy) does not apply: pass your own "
            "eval_step returning {'<metric>_sum': ..., 'count': ...}, or test=None"
        )
    steps_total = steps_per_epoch(len(train_images), batch_size)
    test_arrays = (
        None if test is None else tuple(replicate(x, mesh) for x in as_arrays(test, "test"))
    )
    callbacks = ([ProgressBar()] if verbose else []) + list(callbacks)
    history = History() if history is None else history
    epoch_kwargs = dict(
        batch_size=batch_size, seed=seed, train_step=train_step,
        steps_per_dispatch=steps_per_dispatch, num_classes=classes, mesh=mesh, augment=augment,
        label_smoothing=label_smoothing,
    )  # fmt: skip
    eval_kwargs = dict(
        batch_size=eval_batch_size, eval_step=eval_step, num_classes=classes, mesh=mesh
    )

    session = history.start_session(timings)  # filled in as it goes: saved with every epoch

    # Compile every program up front, so epoch times are steady-state times.
    compiling = time.perf_counter()
    with watch_compiles() as compiled:
        _precompile(
            state, train_images, train_labels, test_arrays, steps_total, epoch_kwargs, eval_kwargs
        )
    history.compile_seconds += compiled.seconds
    session.update(compile=time.perf_counter() - compiling, programs=compiled.compiles,
                   from_cache=compiled.cache_hits)  # fmt: skip

    stop_requested = False

    def stop_now() -> bool:  # sticky: a request seen once is not lost
        nonlocal stop_requested
        stop_requested = stop_requested or (should_stop is not None and bool(should_stop()))
        return stop_requested

    call_hooks(callbacks, "on_fit_begin", state, epochs)
    progress = start or EpochProgress(epoch=len(history) + 1)
    while progress.epoch <= epochs:
        epoch, resumed_at = progress.epoch, progress.steps_done
        started = time.perf_counter()

        def report(done: int, total: int, epoch: int = epoch) -> None:
            call_hooks(callbacks, "on_steps", epoch, done, total)

        state, progress = run_epoch(
            state, train_images, train_labels, progress,
            on_steps=report, should_stop=stop_now, **epoch_kwargs,
        )  # fmt: skip
        if progress.steps_done < steps_total:
            call_hooks(callbacks, "on_interrupt", state, progress, history)
            raise TrainingInterrupted(state, progress, history)
        train_metrics = epoch_metrics(progress, batch_size)  # floats: the epoch has finished
        trained = time.perf_counter()
        if test_arrays is None:  # no test split: a classifier's test columns are NaN
            test_metrics = {"loss": math.nan, "accuracy": math.nan} if classes else {}
        else:
            test_metrics = evaluate(state, test_arrays, **eval_kwargs)
        seconds = time.perf_counter() - started
        session["training"] += trained - started
        session["evaluation"] += seconds - (trained - started)
        history.append(
            {
                "epoch": epoch,
                **{f"train_{name}": value for name, value in train_metrics.items()},
                **{f"test_{name}": value for name, value in test_metrics.items()
                   if name not in ("correct", "count")},  # fmt: skip
                "seconds": seconds,
                "images_per_second": (steps_total - resumed_at) * batch_size / seconds,
            }
        )
        progress = EpochProgress(epoch=epoch + 1)
        stop = call_hooks(callbacks, "on_epoch_end", epoch, state, history.last)
        if stop_now() and progress.epoch <= epochs:
            call_hooks(callbacks, "on_interrupt", state, progress, history)
            raise TrainingInterrupted(state, progress, history)
        if stop:
            break
    for callback in callbacks:  # a callback may hand back another state (e.g. the best one)
        method = getattr(callback, "on_fit_end", None)
        replacement = method(state, history) if method is not None else None
        if replacement is not None:
            state = replacement
    return state, history


def _precompile(state, images, labels, test_arrays, steps_total, epoch_kwargs, eval_kwargs) -> None:
    """Compile the chunk programs an epoch uses, and evaluation, without running them."""
    batch_size = epoch_kwargs["batch_size"]
    order = _place(epoch_order(0, 0, len(images)), epoch_kwargs["mesh"])
    all_finite.lower(state.params).compile()
    for size in set(chunk_sizes(steps_total, epoch_kwargs["steps_per_dispatch"])):
        run_steps.lower(
            state, images, labels, order, 0, epoch_kwargs["seed"], 1,
            num_steps=size, batch_size=batch_size,
            train_step=epoch_kwargs["train_step"], num_classes=epoch_kwargs["num_classes"],
            mesh=epoch_kwargs["mesh"], augment=epoch_kwargs["augment"],
            label_smoothing=epoch_kwargs["label_smoothing"],
        ).compile()  # fmt: skip
    if test_arrays is not None:
        test_images, test_labels = test_arrays
        mesh = eval_kwargs["mesh"]
        _evaluate_all.lower(
            state, test_images, test_labels,
            eval_step=eval_kwargs["eval_step"],
            batch_size=_eval_batch_size(eval_kwargs["batch_size"], len(test_images), mesh),
            num_classes=eval_kwargs["num_classes"], mesh=mesh,
        ).compile()  # fmt: skip
