"""Throughput of every model on whatever devices JAX sees (GPU, TPU or CPU), and cnn1's time to 99%.

    .venv/bin/python benchmarks/bench_devices.py [--epochs 2] [--batch-sizes 128 1024]
        [--models softmax cnn1 cnn2 mlp] [--target 0.99] [--max-epochs 10]

images/s is the best steady epoch of `fit()` over all local devices (data
parallel), compile time left out. Time to target trains cnn1 with the
default config (Adam 2e-3, cosine over --max-epochs epochs, batch 128) and
reports the wall time, compile included, at the first epoch whose test
accuracy reaches the target.
"""

from __future__ import annotations

import argparse
import time

import jax

import flaxfit
from flaxfit.runs.config import TrainConfig
from flaxfit.runs.optim import make_optimizer
from flaxfit.training.loop import steps_per_epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["softmax", "cnn1", "cnn2", "mlp"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[128, 1024])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--data-dir", help="a directory of the four MNIST IDX files")
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--max-epochs", type=int, default=10)
    args = parser.parse_args()

    devices = jax.devices()
    print(f"# {len(devices)} x {devices[0].device_kind} ({jax.default_backend()}), "
          f"jax {jax.__version__}")  # fmt: skip
    data = flaxfit.load_mnist(args.data_dir)
    print(f"{'model':8} {'batch':>6} {'images/s':>12} {'s/epoch':>8} {'compile s':>9}")
    for name in args.models:
        for batch in args.batch_sizes:
            state = flaxfit.create_train_state(flaxfit.create_model(name), jax.random.key(0))
            _, history = flaxfit.fit(state, data.train, data.test, epochs=args.epochs,
                                     batch_size=batch, verbose=False)  # fmt: skip
            best = max(history.rows, key=lambda row: row["images_per_second"])
            print(f"{name:8} {batch:6d} {best['images_per_second']:12,.0f} "
                  f"{best['seconds']:8.2f} {history.compile_seconds:9.1f}", flush=True)  # fmt: skip

    config = TrainConfig(model="cnn1", epochs=args.max_epochs)
    steps = steps_per_epoch(len(data.train), config.batch_size)
    state = flaxfit.create_train_state(
        config.make_model(), jax.random.key(config.seed), make_optimizer(config, steps)
    )
    started = time.perf_counter()
    reached = []

    class StopAtTarget(flaxfit.Callback):
        def on_epoch_end(self, epoch, state, metrics):
            if metrics["test_accuracy"] >= args.target:
                reached.append((epoch, time.perf_counter() - started, metrics["test_accuracy"]))
                return True
            return False

    flaxfit.fit(state, data.train, data.test, epochs=config.epochs, batch_size=config.batch_size,
                callbacks=[StopAtTarget()], verbose=False)  # fmt: skip
    if reached:
        epoch, seconds, accuracy = reached[0]
        print(f"cnn1 reached {100 * accuracy:.2f}% test accuracy after epoch {epoch}: "
              f"{seconds:.1f} s wall, compile included")  # fmt: skip
    else:
        print(f"cnn1 did not reach {100 * args.target:.1f}% in {args.max_epochs} epochs")


if __name__ == "__main__":
    main()
