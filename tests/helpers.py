"""Small synthetic data sets for tests (digits, colour pictures): learnable, deterministic,
no network; and runs trained on them once per test session."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

CLASSES = ("cat", "dog", "ship", "tree")


def make_digits(n: int, seed: int = 0, noise: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """n uint8 (28, 28) images of 10 fixed random blob patterns plus noise; labels 0..9.

    Each class is a fixed random pattern, so a linear model can learn it to
    near 100% while a randomly initialised one scores about 10%.
    """
    prototypes = np.random.default_rng(1234).random((10, 28, 28)) > 0.7
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = prototypes[labels] * 200 + rng.integers(0, noise, (n, 28, 28))
    return images.clip(0, 255).astype(np.uint8), labels


def write_digits_dir(directory, n_train: int, n_test: int, suffix: str = ""):
    """Write `make_digits` train/test sets as the four MNIST IDX files; returns `directory`."""
    from flaxfit.data import write_idx

    directory.mkdir(parents=True, exist_ok=True)
    for stem, (images, labels) in {
        "train": make_digits(n_train, seed=0),
        "t10k": make_digits(n_test, seed=1),
    }.items():
        write_idx(directory / f"{stem}-images-idx3-ubyte{suffix}", images)
        write_idx(directory / f"{stem}-labels-idx1-ubyte{suffix}", labels)
    return directory


def make_dataset(n_train: int, n_test: int):
    """A `flaxfit.data.Dataset` of `make_digits` train/test sets, as if loaded."""
    from flaxfit.data import Dataset, Split

    train, test = make_digits(n_train, seed=0), make_digits(n_test, seed=1)
    return Dataset("mnist", Split(*train), Split(*test), source="synthetic", sha256={})


def colour_dataset(n_train=800, n_test=200, side=16, seed=0):
    """Four classes, each a fixed random colour picture plus noise: learnable, not trivial."""
    from flaxfit.data import Dataset, Split

    prototypes = np.random.default_rng(1234).integers(0, 256, (4, side, side, 3))

    def split(n, seed):
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 4, n)
        images = prototypes[labels] * 0.6 + rng.integers(0, 100, (n, side, side, 3))
        return Split(images.clip(0, 255).astype(np.uint8), labels.astype(np.uint8), 4)

    return Dataset("npz", split(n_train, seed), split(n_test, seed + 1), source="synthetic",
                   class_names=CLASSES)  # fmt: skip


def shared_directory(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """The directory `name`, filled by `make(directory)` once per test session.

    Shared by the pytest-xdist workers: the first one to take the lock makes it,
    the others wait and reuse it. A `make` that failed is started over by the next.
    """
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the session's dir
    directory, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            shutil.rmtree(directory, ignore_errors=True)
            make(directory)
            done.touch()
    return directory


def shared_colour_run(tmp_path_factory, model: str = "resnet8") -> Path:
    """`model` trained for 2 epochs on `colour_dataset(400, 100)` (16x16 RGB, `CLASSES`),
    as a user trains one: with the CLI, from an npz file. Returns the folder holding
    data.npz and the run, run/ (resnet8: about 30 s on 2 cores; once per test session).
    The serve tests take cnn1, which compiles in a fraction of resnet8's time: what they
    test is the page and the API for a colour run, not BatchNorm."""
    from flaxfit.cli import main as cli_main

    def make(root: Path) -> None:
        root.mkdir(parents=True)
        data = colour_dataset(400, 100)
        np.savez(root / "data.npz", x_train=data.train.images, y_train=data.train.labels,
                 x_test=data.test.images, y_test=data.test.labels,
                 class_names=np.array(CLASSES))  # fmt: skip
        code = cli_main(["train", "--model", model, "--dataset", f"npz:{root / 'data.npz'}",
                         "--epochs", "2", "--batch-size", "50", "--out", str(root / "run"),
                         "--quiet"])  # fmt: skip
        assert code == 0

    return shared_directory(tmp_path_factory, f"colour-{model}", make)
