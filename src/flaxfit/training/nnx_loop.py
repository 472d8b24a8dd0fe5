"""fit() for NNX as Flax's own MNIST tutorial writes it: your model, optimizer, metrics and steps.

Flax's NNX tutorial trains with

    optimizer = nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param)
    metrics = nnx.MultiMetric(accuracy=nnx.metrics.Accuracy(), loss=nnx.metrics.Average("loss"))

    @nnx.jit
    def train_step(model, optimizer, metrics, batch):
        grad_fn = nnx.value_and_grad(loss_fn, has_aux=True)
        (loss, logits), grads = grad_fn(model, batch)
        metrics.update(loss=loss, logits=logits, labels=batch["label"])
        optimizer.update(model, grads)

and a Python loop over host batches. `fit_nnx` runs those same functions,
unchanged, the way `fit()` runs a Linen step: the data on the device once,
each epoch's order from `epoch_order(seed, epoch, N)`, and many steps per
dispatch in one compiled `lax.scan` (the objects are split into their state
with `nnx.split` and merged back inside the scan). The model, optimizer and
metrics you pass are updated in place, as NNX objects are; History holds what
`metrics.compute()` gives after each epoch's training ("train_*") and after
evaluation with `eval_step(model, metrics, batch)` ("test_*").

Batches are dicts as the tutorial's are: "image" float32 (B, H, W, C) in
[0, 1] (a channel axis is added to (N, H, W) data) and "label" int32 (B,).
Exact resume and run directories are `create_train_state(model)`'s path; this
one is for running your own NNX code at flaxfit's speed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from flaxfit.training.callbacks import ProgressBar, call_hooks
from flaxfit.training.compile_watch import watch_compiles
from flaxfit.training.fast_ops import fast_module
from flaxfit.training.history import History

NnxTrainStep = Callable[[nnx.Module, nnx.Optimizer, Any, dict[str, jax.Array]], Any]
NnxEvalStep = Callable[[nnx.Module, Any, dict[str, jax.Array]], Any]


def _batch(images: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
    if jnp.issubdtype(images.dtype, jnp.integer):
        images = images.astype(jnp.float32) / 255.0
    if images.ndim == 3:  # (B, H, W): the tutorial's images carry a channel axis
        images = images[..., None]
    return {"image": images.astype(jnp.float32), "label": labels.astype(jnp.int32)}


@partial(jax.jit, static_argnames=("graphdef", "train_step", "num_steps", "batch_size"),
         donate_argnames=("state",))  # fmt: skip
def _train_chunk(state, images, labels, order, first_step, *, graphdef, train_step,
                 num_steps: int, batch_size: int):  # fmt: skip
    indices = jax.lax.dynamic_slice_in_dim(order, first_step * batch_size, num_steps * batch_size)

    def one_step(state, batch_indices):
        model, optimizer, metrics = nnx.merge(graphdef, state)
        train_step(model, optimizer, metrics, _batch(images[batch_indices], labels[batch_indices]))
        return nnx.state((model, optimizer, metrics)), None

    state, _ = jax.lax.scan(one_step, state, indices.reshape(num_steps, batch_size))
    return state


@partial(jax.jit, static_argnames=("graphdef", "eval_step", "batch_size"))
def _eval_all(state, images, labels, *, graphdef, eval_step, batch_size: int):
    # Whole batches in a scan, then the rest as one smaller batch: every example once.
    n = images.shape[0]
    whole = n // batch_size * batch_size

    def one_batch(state, batch):
        model, metrics = nnx.merge(graphdef, state)
        eval_step(model, metrics, _batch(*batch))
        return nnx.state((model, metrics)), None

    if whole:
        batched = [x[:whole].reshape(-1, batch_size, *x.shape[1:]) for x in (images, labels)]
        state, _ = jax.lax.scan(one_batch, state, tuple(batched))
    if whole < n:
        state, _ = one_batch(state, (images[whole:], labels[whole:]))
    return state


def fit_nnx(
    model: nnx.Module,
    train: Any,
    test: Any = None,
    *,
    optimizer: nnx.Optimizer,
    train_step: NnxTrainStep,
    metrics: Any,
    eval_step: NnxEvalStep | None = None,
    epochs: int,
    batch_size: int = 128,
    seed: int = 0,
    eval_batch_size: int = 250,
    steps_per_dispatch: int | None = None,
    callbacks: Sequence[object] = (),
    verbose: bool = True,
    fast_ops: bool = True,
) -> tuple[nnx.Module, History]:
    """Train an NNX model with your own `train_step(model, optimizer, metrics, batch)`.

    Args:
        model, optimizer, metrics: NNX objects (e.g. `nnx.Optimizer(model, tx, wrt=nnx.Param)`,
            `nnx.MultiMetric(...)`), updated in place.
        train, test: splits or (images, labels) pairs, labels integer classes.
        train_step: as in Flax's MNIST tutorial; `@nnx.jit` or not, its return value is unused.
        eval_step: `eval_step(model, metrics, batch)`; needed when `test` is given.
        epochs, batch_size, seed, steps_per_dispatch, callbacks, verbose: as for `fit()`.
        fast_ops: run the model's stock convs and pools in their scan-friendly forms
            (`flaxfit.training.fast_ops.fast_module`), as `fit()` does for Linen.

    Returns:
        The trained model (the object passed in) and the History of `metrics.compute()`.
    """
    # Inside the block the model's class is the rewriting subclass, so the graphdef split
    # from it, and every module merged from that inside the scan, computes the fast forms.
    with fast_module(model) if fast_ops else contextlib.nullcontext():
        return _fit_nnx(model, train, test, optimizer=optimizer, train_step=train_step,
                        metrics=metrics, eval_step=eval_step, epochs=epochs,
                        batch_size=batch_size, seed=seed, eval_batch_size=eval_batch_size,
                        steps_per_dispatch=steps_per_dispatch, callbacks=callbacks,
                        verbose=verbose)  # fmt: skip


def _fit_nnx(model, train, test, *, optimizer, train_step, metrics, eval_step, epochs,
             batch_size, seed, eval_batch_size, steps_per_dispatch, callbacks,
             verbose):  # fmt: skip
    from flaxfit.training.loop import as_arrays, chunk_sizes, epoch_order, steps_per_epoch

    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}")
    if not isinstance(optimizer, nnx.Optimizer):
        raise TypeError(
            "fit(nnx_model, ...) runs your NNX train_step(model, optimizer, metrics, batch): pass "
            "optimizer=nnx.Optimizer(model, tx, wrt=nnx.Param) and metrics=nnx.MultiMetric(...); "
            "or train flaxfit's own step with fit(create_train_state(model), ...)"
        )
    if test is not None and eval_step is None:
        raise TypeError(
            "fit(nnx_model, ...) with a test split needs eval_step(model, metrics, batch)"
        )
    images, labels = (jax.device_put(x) for x in as_arrays(train, "train"))
    test_arrays = (
        None if test is None else tuple(jax.device_put(x) for x in as_arrays(test, "test"))
    )
    total = steps_per_epoch(len(images), batch_size)
    graphdef, state = nnx.split((model, optimizer, metrics))
    eval_graphdef, _ = nnx.split((model, metrics))
    callbacks = ([ProgressBar()] if verbose else []) + list(callbacks)
    history = History()

    def train_epoch(state: Any, order: jax.Array, on_steps: Callable[[int], None]) -> Any:
        done = 0
        for size in chunk_sizes(total, steps_per_dispatch):
            state = _train_chunk(state, images, labels, order, done, graphdef=graphdef,
                                 train_step=train_step, num_steps=size,
                                 batch_size=batch_size)  # fmt: skip
            done += size
            on_steps(done)
        return state

    def measure(state: Any) -> dict[str, float]:
        nnx.update((model, optimizer, metrics), state)
        values = {k: float(v) for k, v in metrics.compute().items()}
        metrics.reset()
        return values

    with watch_compiles() as compiled:  # the first epoch's programs, compiled before timing
        order = jax.device_put(epoch_order(0, 0, len(images)))
        for size in set(chunk_sizes(total, steps_per_dispatch)):
            _train_chunk.lower(state, images, labels, order, 0, graphdef=graphdef,
                               train_step=train_step, num_steps=size, batch_size=batch_size
                               ).compile()  # fmt: skip
    history.compile_seconds += compiled.seconds

    metrics.reset()
    graphdef, state = nnx.split((model, optimizer, metrics))
    call_hooks(callbacks, "on_fit_begin", model, epochs)
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        order = jax.device_put(epoch_order(seed, epoch, len(images)))

        def report(done: int, epoch: int = epoch) -> None:
            call_hooks(callbacks, "on_steps", epoch, done, total)

        state = train_epoch(state, order, report)
        row: dict[str, float] = {"epoch": epoch}
        row.update({f"train_{k}": v for k, v in measure(state).items()})
        if test_arrays is not None:
            eval_state = _eval_all(nnx.state((model, metrics)), *test_arrays,
                                   graphdef=eval_graphdef, eval_step=eval_step,
                                   batch_size=min(eval_batch_size,
                                                  len(test_arrays[0])))  # fmt: skip
            nnx.update((model, metrics), eval_state)
            row.update({f"test_{k}": float(v) for k, v in metrics.compute().items()})
            metrics.reset()
        bad = [k for k, v in row.items() if not np.isfinite(v)]
        if bad:
            raise FloatingPointError(f"{', '.join(bad)} not finite after epoch {epoch}")
        seconds = time.perf_counter() - started
        row.update(seconds=seconds, images_per_second=total * batch_size / seconds)
        history.append(row)
        _, state = nnx.split((model, optimizer, metrics))
        if call_hooks(callbacks, "on_epoch_end", epoch, model, history.last):
            break
    nnx.update((model, optimizer, metrics), state)
    call_hooks(callbacks, "on_fit_end", model, history)
    return model, history
