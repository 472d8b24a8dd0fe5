"""flaxfit's fit() against the deck's plain loop, on the same MNIST data and batch order.

    .venv/bin/python benchmarks/bench_fit.py [--models softmax cnn1] [--epochs 2]

The plain loop is `flaxfit.training.deck.fit`: a Python loop over host numpy batches,
the deck's jitted `train_step`, `float(loss)` after every step. For cnn1 it
runs twice: with the deck's own model (nn.Conv + nn.max_pool, slide 13) and
with flaxfit's (same function, CPU-friendly internals), so the gain from the
loop and the gain from the layers show separately. Times are steady-state:
the first epoch of each loop (which compiles) is left out. Adam 1e-3 for all.
"""

from __future__ import annotations

import argparse
import platform
import statistics

import jax

import flaxfit
from flaxfit.training import deck


def steady(history: flaxfit.History) -> tuple[float, float]:
    """Median seconds and images/s over the epochs after the first."""
    rows = history.rows[1:] or history.rows
    return (
        statistics.median(r["seconds"] for r in rows),
        statistics.median(r["images_per_second"] for r in rows),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["softmax", "cnn1"])
    parser.add_argument("--epochs", type=int, default=2, help="per loop; the first is warm-up")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", help="a directory of the four MNIST IDX files")
    args = parser.parse_args()

    data = flaxfit.load_mnist(args.data_dir)
    print(f"# {platform.processor() or platform.machine()}, {jax.device_count()} x "
          f"{jax.devices()[0].device_kind}, jax {jax.__version__}, batch {args.batch_size}, "
          f"{args.epochs} epochs per loop (first left out)")  # fmt: skip
    print(
        f"{'model':8} {'loop':28} {'s/epoch':>8} {'images/s':>10} {'test acc':>9} {'speed-up':>9}"
    )

    for name in args.models:
        runs = {}
        loops = [("deck plain loop", "deck")]
        if name in ("cnn1", "cnn2"):
            loops = [("deck plain loop, deck layers", "deck-native"), ("deck plain loop", "deck")]
        loops.append(("flaxfit fit()", "fit"))
        for label, kind in loops:
            model = flaxfit.create_model(
                name, **({"impl": "native"} if kind == "deck-native" else {})
            )
            state = flaxfit.create_train_state(model, jax.random.key(args.seed))
            common = dict(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
            if kind == "fit":
                state, history = flaxfit.fit(state, data.train, data.test, verbose=False, **common)
            else:
                state, history = deck.fit(state, data.train, data.test, **common)
            seconds, rate = steady(history)
            runs[kind] = seconds
            baseline = runs[loops[0][1]]
            print(
                f"{name:8} {label:28} {seconds:8.2f} {rate:10,.0f} "
                f"{100 * history.last['test_accuracy']:8.2f}% {baseline / seconds:8.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
