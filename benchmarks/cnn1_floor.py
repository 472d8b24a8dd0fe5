"""How close does fit() train cnn1 to the floor its matmuls set on this machine?

    .venv/bin/python benchmarks/cnn1_floor.py [--epochs 2] [--repeats 5]

One cnn1 train step on a batch of B = 128 does seven matmuls, and almost all of
its FLOPs are in them:

- the conv as patches @ kernel, (B*784, 25) @ (25, 16), and its kernel gradient
  patches.T @ g, (25, B*784) @ (B*784, 16) (no input gradient: the input is data);
- Dense 1024: x @ W1 (B, 3136) @ (3136, 1024), its kernel gradient x.T @ g and
  its input gradient g @ W1.T (that one feeds the conv's gradient);
- Dense 10: h @ W2, h.T @ g2 and g2 @ W2.T.

This script times, in one run, a compiled scan over the epoch's steps that does
nothing but those seven matmuls on operands of the same shapes (no patches to
build, no relu or pool, no loss, no optimizer): no train step can beat it. It
prints fit()'s steady epoch (the best after the first) as a fraction of that
floor, with the float32 matmul rate at 2048^3 for comparison across machines.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import flaxfit
from roofline import best_seconds, matmul_gflops  # benchmarks/ is on sys.path as a script

BATCH = 128
TAPS, CONV_OUT, FLAT, HIDDEN, CLASSES = 25, 16, 14 * 14 * 16, 1024, 10


def matmul_floor_seconds(steps: int, repeats: int) -> float:
    """Seconds per step of a scan doing only cnn1's seven train-step matmuls."""
    rng = np.random.default_rng(0)

    def array(*shape):
        return jnp.asarray(rng.standard_normal(shape, dtype=np.float32) * 0.01)

    patches = array(BATCH * 28 * 28, TAPS)  # read from memory every step, as real patches are
    flat = array(BATCH, FLAT)

    @jax.jit
    def matmuls_only(weights):
        def one(weights, _):
            kernel, w1, w2 = weights
            conv = patches @ kernel  # forward: conv as one matmul
            h = (flat + conv[: BATCH * 196].reshape(BATCH, FLAT)) @ w1  # Dense 1024
            logits = h @ w2  # Dense 10
            g2 = logits  # stands in for the loss gradient at the logits
            dw2, gh = h.T @ g2, g2 @ w2.T
            dw1, gflat = flat.T @ gh, gh @ w1.T
            gconv = jnp.tile(gflat.reshape(BATCH * 196, CONV_OUT), (4, 1))  # the unpooled grad
            dkernel = patches.T @ gconv
            return (kernel - 1e-9 * dkernel, w1 - 1e-9 * dw1, w2 - 1e-9 * dw2), None

        return jax.lax.scan(one, weights, None, length=steps)[0]

    weights = (array(TAPS, CONV_OUT), array(FLAT, HIDDEN), array(HIDDEN, CLASSES))
    return best_seconds(lambda: jax.block_until_ready(matmuls_only(weights)), repeats) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="of fit(); the first is left out")
    parser.add_argument("--repeats", type=int, default=5, help="timed floor repeats; best counts")
    parser.add_argument("--data-dir", help="a directory of the four MNIST IDX files")
    args = parser.parse_args()
    train = flaxfit.load_mnist(args.data_dir, verbose=False).train
    steps = len(train) // BATCH

    xla, numpy = matmul_gflops()
    state = flaxfit.create_train_state(flaxfit.SingleLayerCNN(), jax.random.key(0))
    _, history = flaxfit.fit(state, train, epochs=args.epochs, batch_size=BATCH, verbose=False)
    epoch = min(history["seconds"][1:] or history["seconds"])
    floor = matmul_floor_seconds(steps, args.repeats)
    print(f"# {jax.devices()[0].device_kind}, jax {jax.__version__}, cnn1, batch {BATCH}; "
          f"float32 matmul 2048^3: XLA {xla:.0f} GFLOP/s, numpy {numpy:.0f} GFLOP/s")  # fmt: skip
    print(f"fit() epoch:             {epoch:6.2f} s  ({1e3 * epoch / steps:6.2f} ms/step)")
    print(f"the matmuls alone:       {floor * steps:6.2f} s  ({1e3 * floor:6.2f} ms/step)")
    print(f"fit() runs at {100 * floor * steps / epoch:.0f}% of its matmul floor")


if __name__ == "__main__":
    main()
