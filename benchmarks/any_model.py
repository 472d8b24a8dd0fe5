"""Models written with stock Flax layers: the plain loop, fit() today, and fit() through fast_ops.

    .venv/bin/python benchmarks/any_model.py [--train-size 20000] [--epochs 2]

Three models a user brings, none of them flaxfit's own:
(a) the deck's slide-13 SingleLayerCNN (nn.Conv 16 5x5 + nn.max_pool),
(b) the CNN of Flax's examples/mnist (nn.Conv 32/64 3x3 + nn.avg_pool, Linen),
(c) the CNN of the Flax NNX MNIST tutorial (nnx.Conv + nnx.avg_pool).
Each runs in its plain loop (Linen: `flaxfit.training.deck.fit`, one jitted step
per host batch; NNX: the tutorial's own `@nnx.jit train_step`), in `flaxfit.fit()`
(steps scanned inside one compiled call) and, through `fast_apply` / `fast_module`,
with its convs and pools rewritten as slices + matmul and reshape + reduce.
Times are the median over the epochs after the first (which compiles), on the
same data and the same batch order, training only: the test accuracy is
measured after training, untimed. Adam 1e-3 for all.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import subprocess
import time
from functools import partial

import flax
import jax
import jaxlib
import numpy as np
import optax
from flax import linen as nn
from flax import nnx

import flaxfit
from flaxfit.training import deck
from flaxfit.training.fast_ops import fast_apply, fast_module
from flaxfit.training.loop import epoch_order, steps_per_epoch

#: (model, loop) rows too slow to run on every image: timed on --slow-size images, scaled.
SLOW = {("examples", "fit"), ("nnx", "fit")}
#: Flip once main has `create_train_state(nnx_module, optimizer=tx)` (see `fit_nnx`).
NNX_IN_FIT = False


class ExamplesCNN(nn.Module):
    """The CNN of Flax's examples/mnist, verbatim: NHWC input, logits out."""

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(features=32, kernel_size=(3, 3))(x)
        x = nn.relu(x)
        x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = nn.Conv(features=64, kernel_size=(3, 3))(x)
        x = nn.relu(x)
        x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))  # flatten
        x = nn.Dense(features=256)(x)
        x = nn.relu(x)
        x = nn.Dense(features=10)(x)
        return x


class TutorialCNN(nnx.Module):
    """The CNN of the Flax NNX MNIST tutorial, verbatim."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
        self.avg_pool = partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
        self.linear1 = nnx.Linear(3136, 256, rngs=rngs)
        self.linear2 = nnx.Linear(256, 10, rngs=rngs)

    def __call__(self, x):
        x = self.avg_pool(nnx.relu(self.conv1(x)))
        x = self.avg_pool(nnx.relu(self.conv2(x)))
        x = x.reshape(x.shape[0], -1)  # flatten
        x = nnx.relu(self.linear1(x))
        x = self.linear2(x)
        return x


# --- the NNX tutorial's loop, as written there (host batches, one nnx.jit step each) ----------


def tutorial_loss_fn(model: TutorialCNN, batch):
    logits = model(batch["image"])
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits=logits, labels=batch["label"]
    ).mean()
    return loss, logits


@nnx.jit
def tutorial_train_step(model, optimizer, metrics, batch):
    grad_fn = nnx.value_and_grad(tutorial_loss_fn, has_aux=True)
    (loss, logits), grads = grad_fn(model, batch)
    metrics.update(loss=loss, logits=logits, labels=batch["label"])
    optimizer.update(model, grads)


@nnx.jit
def tutorial_eval_step(model, metrics, batch):
    loss, logits = tutorial_loss_fn(model, batch)
    metrics.update(loss=loss, logits=logits, labels=batch["label"])


def tutorial_fit(model, train, *, epochs, batch_size, seed, tx) -> flaxfit.History:
    """The tutorial's training loop over flaxfit's epoch order; metrics read once per epoch."""
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    metrics = nnx.MultiMetric(accuracy=nnx.metrics.Accuracy(), loss=nnx.metrics.Average("loss"))
    images, labels = train
    steps = steps_per_epoch(len(images), batch_size)
    history = flaxfit.History()
    model.train()
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        order = epoch_order(seed, epoch, len(images))
        for step in range(steps):
            rows = order[step * batch_size : (step + 1) * batch_size]
            batch = {"image": images[rows] / np.float32(255), "label": labels[rows]}
            tutorial_train_step(model, optimizer, metrics, batch)
        train_metrics = {k: float(v) for k, v in metrics.compute().items()}  # a host sync
        metrics.reset()
        seconds = time.perf_counter() - started
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_metrics["loss"],
                "train_accuracy": train_metrics["accuracy"],
                "test_loss": float("nan"),  # measured after training, untimed
                "test_accuracy": float("nan"),
                "seconds": seconds,
                "images_per_second": steps * batch_size / seconds,
            }
        )
    return history


def tutorial_accuracy(model, test) -> float:
    """The tutorial's evaluation loop (nnx.jit per 1000-image batch), untimed."""
    metrics = nnx.MultiMetric(accuracy=nnx.metrics.Accuracy(), loss=nnx.metrics.Average("loss"))
    model.eval()
    images, labels = test
    for start in range(0, len(images), 1000):
        batch = {
            "image": images[start : start + 1000] / np.float32(255),
            "label": labels[start : start + 1000],
        }
        tutorial_eval_step(model, metrics, batch)
    return float(metrics.compute()["accuracy"])


def fit_nnx(model: nnx.Module, train, test, *, fast: bool, tx, **common):
    """TO ENABLE (set NNX_IN_FIT = True) once main's create_train_state takes an nnx.Module.

    It will wrap the module so that `state.apply_fn(variables, x)` works; then the
    same fit() call as for Linen applies, with fast_apply on the wrapped apply_fn.
    Returns the History and the test accuracy, as `run_linen` does.
    """
    state = flaxfit.create_train_state(model, optimizer=tx)
    if fast:
        state = state.replace(apply_fn=fast_apply(state.apply_fn))
    state, history = flaxfit.fit(state, train, None, verbose=False, **common)
    return history, flaxfit.evaluate(state, test)["accuracy"]


# --- the table ---------------------------------------------------------------------------------


def steady(history: flaxfit.History) -> tuple[float, float]:
    """Median seconds and images/s over the epochs after the first."""
    rows = history.rows[1:] or history.rows
    return (
        statistics.median(r["seconds"] for r in rows),
        statistics.median(r["images_per_second"] for r in rows),
    )


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()
    names = [line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line]
    return names[0] if names else platform.machine()


def run_linen(model: nn.Module, loop: str, train, test, args, plain_step):
    """Train `model` in `loop` ("plain", "fit", "fast"): its History and test accuracy."""
    tx = optax.adam(1e-3)
    shape = (1, *train[0].shape[1:])
    state = flaxfit.create_train_state(model, jax.random.key(args.seed), tx, input_shape=shape)
    common = dict(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    if loop == "plain":
        state, history = deck.fit(state, train, None, train_step=plain_step, **common)
    else:
        if loop == "fast":
            state = state.replace(apply_fn=fast_apply(state.apply_fn))
        state, history = flaxfit.fit(state, train, None, verbose=False, **common)
    return history, flaxfit.evaluate(state, test)["accuracy"]


def run_nnx(loop: str, train, test, args):
    """The NNX tutorial CNN in `loop`: its History and test accuracy (None: not runnable yet)."""
    model = TutorialCNN(rngs=nnx.Rngs(args.seed))
    common = dict(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    tx = optax.adam(1e-3)
    # The tutorial's CNN takes NHWC images; its loop int32 labels.
    train, test = [(x[..., None], y.astype(np.int32)) for x, y in (train, test)]
    if loop in ("plain", "plain-fast"):
        with fast_module(model) if loop == "plain-fast" else contextlib.nullcontext():
            history = tutorial_fit(model, train, tx=tx, **common)
            return history, tutorial_accuracy(model, test)
    if not NNX_IN_FIT:
        return None
    return fit_nnx(model, train, test, fast=loop == "fast", tx=tx, **common)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["deck", "examples", "nnx"])
    parser.add_argument("--train-size", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=2, help="per loop; the first is warm-up")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--slow-size", type=int, default=1280, help="images for the rows in SLOW (then scaled)"
    )
    parser.add_argument("--data-dir", help="a directory of the four MNIST IDX files")
    args = parser.parse_args()

    data = flaxfit.load_mnist(args.data_dir)
    train = (data.train.images[: args.train_size], data.train.labels[: args.train_size])
    test = (data.test.images, data.test.labels)
    versions = [
        f"python {platform.python_version()}",
        f"jax {jax.__version__}",
        f"jaxlib {jaxlib.__version__}",
        f"flax {flax.__version__}",
        f"optax {optax.__version__}",
        f"numpy {np.__version__}",
    ]
    print(f"# {cpu_name()}, {jax.device_count()} x {jax.devices()[0].device_kind}; "
          + ", ".join(versions))  # fmt: skip
    print(f"# {len(train[0])} train images, batch {args.batch_size}, {args.epochs} epochs per "
          "loop (first left out), training time only, adam 1e-3")  # fmt: skip
    print(
        f"{'model':13} {'loop':36} {'s/epoch':>8} {'images/s':>9} {'test acc':>9} {'vs plain':>9}"
    )

    linen = {
        "deck": ("deck slide 13", deck.SingleLayerCNN(), deck.train_step, lambda x: x),
        # Flax's example takes NHWC images; flaxfit's step (get_logits-aware) trains it.
        "examples": ("flax ex.", ExamplesCNN(), flaxfit.train_step, lambda x: x[..., None]),
    }
    loops = {
        "plain": "deck plain loop (jit per step)",
        "fit": "flaxfit fit() today",
        "fast": "flaxfit fit() + fast_apply",
    }
    nnx_loops = {
        "plain": "NNX tutorial loop (nnx.jit per step)",
        "plain-fast": "NNX tutorial loop + fast_module",
        "fit": "flaxfit fit() (needs nnx in main)",
        "fast": "flaxfit fit() + fast_apply (ditto)",
    }
    scaled = False
    for name in args.models:
        baseline = None
        if name == "nnx":
            label, rows = "nnx tut.", nnx_loops
        else:
            label, model, plain_step, shape = linen[name]
            rows = loops
        for loop, description in rows.items():
            part = train
            if (name, loop) in SLOW and args.slow_size < len(train[0]):
                part = (train[0][: args.slow_size], train[1][: args.slow_size])
            if name == "nnx":
                result = run_nnx(loop, part, test, args)
            else:
                split, test_split = [(shape(x), y) for x, y in (part, test)]
                result = run_linen(model, loop, split, test_split, args, plain_step)
            if result is None:
                print(f"{label:13} {description:36} {'(not run: see fit_nnx)':>37}", flush=True)
                continue
            history, accuracy = result
            seconds, rate = steady(history)
            shown = f"{100 * accuracy:8.2f}%"
            if part is not train:  # the same steps, fewer of them: scale the epoch's time
                seconds *= steps_per_epoch(len(train[0]), args.batch_size) / steps_per_epoch(
                    len(part[0]), args.batch_size
                )
                description, shown, scaled = description + " *", f"{'-':>9}", True
            baseline = baseline or seconds
            print(
                f"{label:13} {description:36} {seconds:8.2f} {rate:9,.0f} "
                f"{shown} {baseline / seconds:8.2f}x",
                flush=True,
            )
    if scaled:
        print(f"* measured on the first {args.slow_size} images (several seconds a step: the "
              f"native conv's gradients in a scan) and scaled to {len(train[0])}")  # fmt: skip


if __name__ == "__main__":
    main()
