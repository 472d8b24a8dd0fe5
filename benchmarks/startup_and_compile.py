"""Start-up and compile times of the `flaxfit` command, with a cold and a warm compile cache.

    .venv/bin/python benchmarks/startup_and_compile.py [--train-size 6000] [--repeats 3]

Prints the wall time of `flaxfit --help` and `flaxfit train --help` (best and
median of 5 fresh processes), then the seconds each command spends compiling
(tracing, lowering and XLA's compile or the cache read: what JAX's compile
events measure) for cnn1 on the first --train-size MNIST images, once with an
empty compilation cache and once with the cache the cold run left. `train`
is shown twice: the up-front compile it reports itself (`compile_seconds`),
and every compile of the process (init, the manifest's hash, ...). Each
repeat starts from a new empty cache. Every command runs in a new process,
as a user runs it; nothing here is timed in-process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Runs `flaxfit ARGS...` inside watch_compiles and reports what it compiled on stderr.
WRAPPER = """
import json, sys
from flaxfit.training.compile_watch import watch_compiles
from flaxfit.cli import main
with watch_compiles() as stats:
    code = main(sys.argv[1:])
print("COMPILES " + json.dumps(vars(stats)), file=sys.stderr)
sys.exit(code)
"""


def wall_seconds(argv: list[str], runs: int) -> list[float]:
    """Wall seconds of `python -m flaxfit ARGV` in `runs` fresh processes."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "flaxfit", *argv], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        times.append(time.perf_counter() - started)
    return times


def flaxfit(argv: list[str], cache: Path) -> dict:
    """Run `flaxfit ARGV` in a new process with FLAXFIT_CACHE=`cache`; its compile stats."""
    env = {**os.environ, "FLAXFIT_CACHE": str(cache)}
    result = subprocess.run([sys.executable, "-c", WRAPPER, *argv], env=env,
                            capture_output=True, text=True)  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"flaxfit {' '.join(argv)} failed:\n{result.stderr[-2000:]}")
    line = next(line for line in result.stderr.splitlines() if line.startswith("COMPILES "))
    return json.loads(line.removeprefix("COMPILES "))


def one_round(data: Path, picture: Path, root: Path) -> dict[str, tuple[float, float, str]]:
    """{command: (cold seconds, warm seconds, "from cache/programs" warm)} with a new cache."""
    cache, run = root / "cache", root / "run"
    train = ["train", "--model", "cnn1", "--epochs", "1", "--dataset", f"npz:{data}",
             "--out", str(run), "--quiet", "--fresh"]  # fmt: skip
    commands = {
        "evaluate": ["evaluate", "--run", str(run)],
        "predict": ["predict", "--run", str(run), str(picture)],
        "export": ["export", "--run", str(run), "--out", str(root / "predict.jaxexport")],
    }
    stats, histories = [], []
    for _ in ("cold", "warm"):
        stats.append(flaxfit(train, cache))
        histories.append(json.loads((run / "history.json").read_text()))
    cold, warm = histories
    results = {}
    results["train (its compile_seconds)"] = (
        cold["compile_seconds"], warm["compile_seconds"],
        "{from_cache}/{programs}".format(**warm["sessions"][-1]),
    )  # fmt: skip
    results["train (whole process)"] = (
        stats[0]["seconds"],
        stats[1]["seconds"],
        f"{stats[1]['cache_hits']}/{stats[1]['compiles']}",
    )
    for name, argv in commands.items():
        first, second = flaxfit(argv, cache), flaxfit(argv, cache)
        results[name] = (
            first["seconds"],
            second["seconds"],
            f"{second['cache_hits']}/{second['compiles']}",
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=6000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import numpy as np
    from PIL import Image

    import flaxfit

    with open("/proc/cpuinfo") as file:
        cpu = next((line.split(":", 1)[1].strip() for line in file
                    if line.startswith("model name")), platform.processor())  # fmt: skip
    print(f"{cpu}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start "
          f"(shared with other jobs); Python {platform.python_version()}, "
          f"jax {__import__('jax').__version__}")  # fmt: skip
    for argv in (["--help"], ["train", "--help"]):
        times = wall_seconds(argv, 5)
        print(f"flaxfit {' '.join(argv):<12} best {min(times):.3f} s, "
              f"median {statistics.median(times):.3f} s (5 processes)")  # fmt: skip

    mnist = flaxfit.load_mnist(verbose=False)
    n = args.train_size
    with tempfile.TemporaryDirectory(prefix="flaxfit-bench-") as scratch:
        root = Path(scratch)
        data, picture = root / "mnist.npz", root / "digit.png"
        np.savez(data, x_train=mnist.train.images[:n], y_train=mnist.train.labels[:n],
                 x_test=mnist.test.images[:1000], y_test=mnist.test.labels[:1000])  # fmt: skip
        Image.fromarray(mnist.test.images[0]).save(picture)
        rounds = []
        for index in range(args.repeats):
            rounds.append(one_round(data, picture, root / f"round{index}"))
    print(f"\ncompile seconds, cnn1 on {n} MNIST images (1 epoch), cold vs warm cache, "
          f"best / median of {args.repeats} rounds:")  # fmt: skip
    print(f"{'command':<30} {'cold best':>9} {'median':>7} {'warm best':>9} {'median':>7} "
          f"{'ratio':>6}  from cache (warm)")  # fmt: skip
    for name in rounds[0]:
        cold = [r[name][0] for r in rounds]
        warm = [r[name][1] for r in rounds]
        ratio = statistics.median(cold) / statistics.median(warm)
        print(f"{name:<30} {min(cold):9.2f} {statistics.median(cold):7.2f} {min(warm):9.2f} "
              f"{statistics.median(warm):7.2f} {ratio:5.1f}x  {rounds[-1][name][2]}")  # fmt: skip
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
