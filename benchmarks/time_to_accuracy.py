"""How long from pressing Enter to 99.0% on MNIST's test set with the deck's SingleLayerCNN?

    .venv/bin/python benchmarks/time_to_accuracy.py [--max-epochs 10]

Runs, each in its own process and one after another (never two at once):

1. the deck's plain loop (flaxfit.training.deck.fit: constant Adam 1e-3, batch
   128, one dispatch and one float(loss) per step), an epoch at a time until the
   test accuracy reaches 99.0% or --max-epochs;
2. `flaxfit train` with its default recipe (3 epochs), then again with the
   compilation cache the first run left (a second start);
3. `flaxfit train --recipe fast` (2 epochs), cold and then warm likewise.

For each it prints the wall time from launching the process to the end of the
epoch that first reached 99.0% (or to the end, if none did), that epoch, the
final accuracy, and the compile seconds. Every run gets a new FLAXFIT_CACHE
holding only MNIST, so "cold" means an empty compilation cache. The first
line gives the CPU and its float32 matmul rate, so that runs on different
machines can be compared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from roofline import matmul_gflops  # benchmarks/ is on sys.path when run as a script

TARGET = 0.99

# The deck's loop, epoch by epoch until TARGET; one JSON line per epoch with its end time.
PLAIN_LOOP = """
import json, sys, time
import jax, flaxfit
from flaxfit.training import deck
data = flaxfit.load_mnist(verbose=False)
state = flaxfit.create_train_state(flaxfit.SingleLayerCNN(), jax.random.key(0))
for epoch in range(1, int(sys.argv[1]) + 1):
    state, history = deck.fit(state, data.train, data.test, epochs=1, seed=epoch)
    accuracy = history.last["test_accuracy"]
    print(json.dumps({"epoch": epoch, "accuracy": accuracy, "at": time.time()}), flush=True)
    if accuracy >= float(sys.argv[2]):
        break
"""


def fresh_cache(root: Path, mnist: Path) -> Path:
    """A new FLAXFIT_CACHE with MNIST in it and no compiled programs."""
    cache = Path(tempfile.mkdtemp(prefix="cache-", dir=root))
    shutil.copy(mnist, cache / mnist.name)
    return cache


def plain_loop(cache: Path, max_epochs: int) -> dict:
    launched = time.time()
    done = subprocess.run([sys.executable, "-c", PLAIN_LOOP, str(max_epochs), str(TARGET)],
                          env={**os.environ, "FLAXFIT_CACHE": str(cache)},
                          capture_output=True, text=True, check=True)  # fmt: skip
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    reached = next((row for row in rows if row["accuracy"] >= TARGET), None)
    end = reached or rows[-1]
    return {"wall": end["at"] - launched, "epoch": reached and reached["epoch"],
            "accuracy": rows[-1]["accuracy"], "compile": None}  # fmt: skip


def flaxfit_train(cache: Path, out: Path, flags: list[str]) -> dict:
    """`flaxfit train FLAGS` in a new process: wall time to the epoch that first reached
    TARGET (the process's start plus that epoch's end in the run's wall-time record)."""
    launched = time.time()
    subprocess.run([sys.executable, "-m", "flaxfit", "train", *flags, "--out", str(out),
                    "--fresh", "--quiet"], env={**os.environ, "FLAXFIT_CACHE": str(cache)},
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    finished = time.time()
    history = json.loads((out / "history.json").read_text())
    epochs = history["epochs"]
    reached = next((row for row in epochs if row["test_accuracy"] >= TARGET), None)
    # Time after the epoch that reached it: the later epochs' seconds and the save at the end.
    later = sum(row["seconds"] for row in epochs[epochs.index(reached) + 1 :]) if reached else 0
    return {"wall": finished - launched - later, "epoch": reached and reached["epoch"],
            "accuracy": epochs[-1]["test_accuracy"],
            "compile": history["compile_seconds"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=10, help="for the plain loop")
    args = parser.parse_args()

    import flaxfit
    from flaxfit.data import default_cache_dir
    from flaxfit.data.cache import cache_path

    flaxfit.load_mnist(verbose=False)  # fills the user's cache once, if it is empty
    mnist = cache_path(default_cache_dir(), "mnist")
    xla, numpy = matmul_gflops()
    with open("/proc/cpuinfo") as file:
        cpu = next(line.split(":", 1)[1].strip() for line in file if line.startswith("model name"))
    print(f"# {cpu}, {os.cpu_count()} cores; float32 matmul 2048^3: XLA {xla:.0f} GFLOP/s, "
          f"numpy {numpy:.0f} GFLOP/s; target {100 * TARGET:.1f}% test accuracy")  # fmt: skip
    print(f"{'run':<44} {'wall s':>7} {'epoch':>6} {'final %':>8} {'compile s':>10}")

    def show(name: str, result: dict) -> None:
        epoch = result["epoch"] or "never"
        compile_s = "-" if result["compile"] is None else f"{result['compile']:.2f}"
        print(f"{name:<44} {result['wall']:7.1f} {epoch:>6} "
              f"{100 * result['accuracy']:8.2f} {compile_s:>10}", flush=True)  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="flaxfit-tta-") as scratch:
        root = Path(scratch)
        show("deck plain loop (Adam 1e-3)", plain_loop(fresh_cache(root, mnist), args.max_epochs))
        for name, flags in (("flaxfit train (default recipe)", []),
                            ("flaxfit train --recipe fast", ["--recipe", "fast"])):  # fmt: skip
            cache = fresh_cache(root, mnist)
            show(f"{name}, cold cache", flaxfit_train(cache, root / "run", flags))
            show(f"{name}, warm cache", flaxfit_train(cache, root / "run", flags))


if __name__ == "__main__":
    main()
