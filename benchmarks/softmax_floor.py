"""How fast could a softmax-regression epoch be here? The floor set by its two matmuls.

    .venv/bin/python benchmarks/softmax_floor.py [--repeats 5]

One train step of softmax regression on a batch of 128 does two matmuls:
logits = x @ W (128x784 @ 784x10) and dW = x.T @ g (784x128 @ 128x10),
about 4 MFLOP. This script times, per step and in one run:

- the deck's plain loop (flaxfit.training.deck.fit: one dispatch and one float(loss) per step)
  and flaxfit's fit() (64 steps per compiled scan), each its best epoch after the first;
- a compiled scan that does nothing but those two matmuls on the real uint8
  batches (no optimizer, no shuffling, no metrics): no train step can beat it.

The last line prints the best speed-up over the plain loop that any loop
could reach on this machine while doing the same arithmetic.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import flaxfit
from flaxfit.training import deck
from roofline import best_seconds  # benchmarks/ is on sys.path when run as a script

BATCH = 128


def matmul_floor_seconds(images: np.ndarray, repeats: int) -> float:
    """Seconds per step of a scan doing only the step's two matmuls."""
    steps = len(images) // BATCH
    batches = jnp.asarray(images[: steps * BATCH].reshape(steps, BATCH, -1))

    @jax.jit
    def matmuls_only(w, batches):
        def one(w, x):
            x = x.astype(jnp.float32) / 255.0
            g = jax.nn.softmax(x @ w)  # stands in for the loss gradient w.r.t. the logits
            return w - 1e-6 * (x.T @ g), None

        return jax.lax.scan(one, w, batches)[0]

    w = jnp.zeros((784, 10), jnp.float32)
    return best_seconds(lambda: matmuls_only(w, batches).block_until_ready(), repeats) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the best counts")
    parser.add_argument("--epochs", type=int, default=4, help="per loop; the first is left out")
    parser.add_argument("--data-dir", help="a directory of the four MNIST IDX files")
    args = parser.parse_args()
    train = flaxfit.load_mnist(args.data_dir, verbose=False).train
    steps = len(train) // BATCH
    model = flaxfit.SoftmaxRegression()

    def fresh():
        return flaxfit.create_train_state(model, jax.random.key(0))

    # Steady epochs: the best of the epochs after the first (which compiles).
    _, plain_history = deck.fit(fresh(), train, epochs=args.epochs, batch_size=BATCH, seed=0)
    _, fast_history = flaxfit.fit(
        fresh(), train, epochs=args.epochs, batch_size=BATCH, seed=0, verbose=False
    )
    plain = min(plain_history["seconds"][1:])
    fast = min(fast_history["seconds"][1:])
    floor = matmul_floor_seconds(train.images, args.repeats)
    per_step = {"deck plain loop": plain / steps, "flaxfit fit()": fast / steps,
                "the two matmuls alone": floor}  # fmt: skip
    print(f"# {jax.devices()[0].device_kind}, jax {jax.__version__}, softmax, batch {BATCH}")
    for name, seconds in per_step.items():
        ratio = plain / steps / seconds
        print(f"{name:24} {1e6 * seconds:8.1f} us/step  {ratio:5.2f}x the plain loop")
    print(f"best reachable speed-up over the plain loop with this arithmetic: "
          f"{plain / steps / floor:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
