"""Models a user brings, and flaxfit's own, in their plain loops and in fit().

    .venv/bin/python benchmarks/any_model.py [--train-size 20000] [--epochs 2]

Models: (a) the deck's slide-13 SingleLayerCNN (stock nn.Conv 16 5x5 + nn.max_pool),
(b) the CNN of Flax's examples/mnist (nn.Conv 32/64 3x3 + nn.avg_pool, Linen),
(c) the CNN of the Flax NNX MNIST tutorial (nnx.Conv + nnx.avg_pool), and
flaxfit's own cnn1 in Linen and its NNX twin (the same model, so the two APIs
compare directly). Each runs in its plain loop (Linen: `flaxfit.training.deck.fit`,
one jitted step per host batch; NNX: the tutorial's own `@nnx.jit train_step`)
and in `flaxfit.fit()` (steps scanned inside one compiled call), with and
without `fast_ops` (stock convs and pools rewritten as slices + matmul and
reshape + reduce; on by default). NNX runs in fit() both ways: through
`create_train_state(model)` (flaxfit's step) and with the tutorial's own
optimizer, metrics and step handed to fit().
Times are the median over the epochs after the first (which compiles), on the
same data and the same batch order, training only: the test accuracy is
measured after training, untimed. Adam 1e-3 for all. Rows marked * ran on
--slow-size images and are scaled.
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
from flaxfit.training.fast_ops import fast_module
from flaxfit.training.loop import epoch_order, steps_per_epoch


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


def fit_nnx_state(model: nnx.Module, train, test, *, fast_ops: bool, tx, **common):
    """The NNX module through `create_train_state(model)`: flaxfit's own step, scanned."""
    state = flaxfit.create_train_state(model, optimizer=tx)
    state, history = flaxfit.fit(state, train, None, verbose=False, fast_ops=fast_ops, **common)
    return history, flaxfit.evaluate(state, test)["accuracy"]


def fit_nnx_tutorial(model: nnx.Module, train, test, *, fast_ops: bool, tx, **common):
    """The tutorial's own nnx.Optimizer, MultiMetric and @nnx.jit step, handed to fit()."""
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    metrics = nnx.MultiMetric(accuracy=nnx.metrics.Accuracy(), loss=nnx.metrics.Average("loss"))
    model, history = flaxfit.fit(
        model, train, None, optimizer=optimizer, metrics=metrics,
        train_step=tutorial_train_step, verbose=False, fast_ops=fast_ops, **common,
    )  # fmt: skip
    return history, tutorial_accuracy(model, test)


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
    """Train `model` in `loop` ("plain", "fit-slow", "fit"): its History and test accuracy."""
    tx = optax.adam(1e-3)
    shape = (1, *train[0].shape[1:])
    state = flaxfit.create_train_state(model, jax.random.key(args.seed), tx, input_shape=shape)
    common = dict(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    if loop == "plain":
        state, history = deck.fit(state, train, None, train_step=plain_step, **common)
    else:
        state, history = flaxfit.fit(state, train, None, verbose=False,
                                     fast_ops=loop == "fit", **common)  # fmt: skip
    return history, flaxfit.evaluate(state, test)["accuracy"]


def run_nnx(make, loop: str, train, test, args):
    """An NNX model in `loop`: its History and test accuracy."""
    model = make(args.seed)
    common = dict(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    tx = optax.adam(1e-3)
    # The tutorial's CNN takes NHWC images; its loop int32 labels.
    train, test = [(x[..., None], y.astype(np.int32)) for x, y in (train, test)]
    if loop in ("plain", "plain-fast"):
        with fast_module(model) if loop == "plain-fast" else contextlib.nullcontext():
            history = tutorial_fit(model, train, tx=tx, **common)
            return history, tutorial_accuracy(model, test)
    run = fit_nnx_tutorial if loop.startswith("tutorial") else fit_nnx_state
    return run(model, train, test, fast_ops=not loop.endswith("-slow"), tx=tx, **common)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+",
                        default=["deck", "examples", "nnx", "ours", "ours-nnx"])  # fmt: skip
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
        # flaxfit's own cnn1 (the deck's model, scan-friendly layers): the NNX rows below
        # train its NNX twin, so Linen and NNX compare on the same model.
        "ours": ("flaxfit cnn1", flaxfit.SingleLayerCNN(), deck.train_step, lambda x: x),
    }
    nnx_models = {
        "nnx": ("nnx tut.", lambda seed: TutorialCNN(rngs=nnx.Rngs(seed))),
        "ours-nnx": ("cnn1 nnx twin", lambda seed: flaxfit.models.nnx.SingleLayerCNN(
            rngs=nnx.Rngs(seed))),
    }
    loops = {
        "plain": "deck plain loop (jit per step)",
        "fit-slow": "fit(fast_ops=False)",
        "fit": "fit()",
    }
    nnx_loops = {
        "plain": "NNX tutorial loop (nnx.jit per step)",
        "state-slow": "fit(create_train_state), no fast_ops",
        "state": "fit(create_train_state(model))",
        "tutorial-slow": "fit(tutorial step), no fast_ops",
        "tutorial": "fit(model, optimizer, tutorial step)",
    }
    scaled = False
    for name in args.models:
        baseline = None
        if name in nnx_models:
            (label, make), rows = nnx_models[name], nnx_loops
        else:
            label, model, plain_step, shape = linen[name]
            rows = loops
        for loop, description in rows.items():
            if name.startswith("ours") and loop.endswith("-slow"):
                continue  # flaxfit's own layers have nothing to rewrite
            part = train
            if loop.endswith("-slow") and name != "deck" and args.slow_size < len(train[0]):
                part = (train[0][: args.slow_size], train[1][: args.slow_size])
            if name in nnx_models:
                result = run_nnx(make, loop, part, test, args)
            else:
                split, test_split = [(shape(x), y) for x, y in (part, test)]
                result = run_linen(model, loop, split, test_split, args, plain_step)
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
