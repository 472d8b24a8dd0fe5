"""How close cnn1 training gets to this machine's float32 matmul rate.

    .venv/bin/python benchmarks/roofline.py [--epochs 2]

Measures the float32 matmul rate (2048^3, through XLA and through numpy), the
FLOPs of one cnn1 train step from XLA's cost analysis, and cnn1's steady
training throughput with fit(); prints throughput x FLOPs/image as a fraction
of the matmul rate. cnn1 training costs about 21.2 MFLOP per image.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import flaxfit
from flaxfit.training.loop import run_steps

PAPER_MFLOP_PER_IMAGE = 21.2


def best_seconds(fn, repeats: int = 5) -> float:
    fn()  # warm-up (and compile)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_gflops(n: int = 2048) -> tuple[float, float]:
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    x = jnp.asarray(a)
    product = jax.jit(lambda m: m @ m)
    flops = 2 * n**3
    xla = flops / best_seconds(lambda: product(x).block_until_ready()) / 1e9
    numpy = flops / best_seconds(lambda: a @ a) / 1e9
    return xla, numpy


def train_step_mflop_per_image(batch_size: int) -> float:
    """XLA's own FLOP count of one cnn1 train step, per image."""
    state = flaxfit.create_train_state(flaxfit.SingleLayerCNN(), jax.random.key(0))
    images = jnp.zeros((batch_size, 28, 28), jnp.uint8)
    labels = jnp.zeros((batch_size,), jnp.uint8)
    order = jnp.arange(batch_size)
    compiled = run_steps.lower(
        state, images, labels, order, 0, num_steps=1, batch_size=batch_size
    ).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"]) / batch_size / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--data-dir", help="a directory of the four MNIST IDX files")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

    xla, numpy = matmul_gflops()
    print(f"float32 matmul 2048^3: XLA {xla:.0f} GFLOP/s, numpy {numpy:.0f} GFLOP/s")
    mflop = train_step_mflop_per_image(args.batch_size)
    print(
        f"cnn1 train step: {mflop:.1f} MFLOP/image by XLA's count ({PAPER_MFLOP_PER_IMAGE} nominal)"
    )

    data = flaxfit.load_mnist(args.data_dir, verbose=False)
    state = flaxfit.create_train_state(flaxfit.SingleLayerCNN(), jax.random.key(0))
    _, history = flaxfit.fit(state, data.train, data.test, epochs=args.epochs,
                             batch_size=args.batch_size, verbose=False)  # fmt: skip
    rate = max(r["images_per_second"] for r in history.rows)
    achieved = rate * PAPER_MFLOP_PER_IMAGE / 1e3
    peak = max(xla, numpy)
    share = 100 * achieved / peak
    print(f"cnn1 fit(): {rate:,.0f} images/s = {achieved:.0f} GFLOP/s = {share:.0f}% of the "
          f"best matmul rate ({peak:.0f} GFLOP/s)")  # fmt: skip


if __name__ == "__main__":
    main()
