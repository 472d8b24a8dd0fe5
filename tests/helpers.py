"""Small synthetic digit sets for tests: learnable, deterministic, no network."""

from __future__ import annotations

import numpy as np


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
