"""The in-memory dataset types: a `Split` of images and labels, and a `Dataset` of two splits."""

import hashlib
from dataclasses import dataclass, field

import numpy as np

NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)


class DataError(ValueError):
    """A problem with a data file or source; the message names the file and the problem."""


@dataclass(frozen=True, eq=False)  # eq on arrays is ambiguous, so compare explicitly instead
class Split:
    """One split of MNIST-like data.

    A slice is again a Split, sharing the arrays (a numpy view, no copy):
    `data.train[:2000]` is the first 2 000 training examples, `split[::2]` every
    second one. A single example is `split.images[i]`, `split.labels[i]`;
    `split[i]` raises TypeError, so code that meant `(images, labels)[0]` fails loudly.

    Attributes:
        images: uint8 array of shape (N, 28, 28), pixel values 0..255.
        labels: uint8 array of shape (N,), class ids 0..9.
    """

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if not isinstance(images, np.ndarray) or not isinstance(labels, np.ndarray):
            raise DataError("Split needs numpy arrays for images and labels")
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
            raise DataError(
                f"Split images must be uint8 of shape (N, 28, 28), got {images.dtype} "
                f"{images.shape}"
            )
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise DataError(
                f"Split labels must be uint8 of shape (N,), got {labels.dtype} {labels.shape}"
            )
        if len(images) != len(labels):
            raise DataError(f"Split has {len(images)} images but {len(labels)} labels")
        if len(labels) and int(labels.max()) >= NUM_CLASSES:
            raise DataError(f"Split labels must be 0..{NUM_CLASSES - 1}, found {labels.max()}")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: slice) -> "Split":
        """The examples `index` selects, as a Split; `index` must be a slice."""
        if not isinstance(index, slice):
            raise TypeError(
                f"a Split takes only a slice, e.g. split[:2000], not {type(index).__name__}; "
                "for the arrays use split.images and split.labels"
            )
        return Split(self.images[index], self.labels[index])


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train and a test split plus where they came from.

    Attributes:
        name: "mnist" or "fashion_mnist".
        train: the 60 000 training examples, in the original order.
        test: the 10 000 test examples, in the original order.
        source: where the data came from, for a person (e.g. "data dir /x").
        sha256: sha256 of each source file that was read and verified, by file name.
    """

    name: str
    train: Split
    test: Split
    source: str
    sha256: dict[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of classes (10 for both MNIST and Fashion-MNIST)."""
        return NUM_CLASSES

    def content_sha256(self) -> str:
        """sha256 of the four arrays (train images, labels, test images, labels) as raw bytes.

        Equal for equal data whatever the source (IDX files, mirror, cache, package index),
        so a run manifest can name the exact data it trained on.
        """
        return arrays_sha256(self.train, self.test)


def arrays_sha256(train: Split, test: Split) -> str:
    """sha256 of the split sizes, then the bytes of train images, labels, test images, labels."""
    digest = hashlib.sha256(f"{len(train)},{len(test)};".encode())
    for array in (train.images, train.labels, test.images, test.labels):
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()
