"""The in-memory dataset types: a `Split` of images and labels, and a `Dataset` of two splits."""

import hashlib
from dataclasses import dataclass, field

import numpy as np

# MNIST's and Fashion-MNIST's; other datasets carry their own (Dataset.num_classes).
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)

MNIST_CLASSES = tuple(str(digit) for digit in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# The class names a Dataset gets when it is built without any, by dataset name.
KNOWN_CLASSES = {"mnist": MNIST_CLASSES, "fashion_mnist": FASHION_MNIST_CLASSES}


class DataError(ValueError):
    """A problem with a data file or source; the message names the file and the problem."""


def check_labels(labels: np.ndarray, num_classes: int, name: str) -> None:
    """Raise DataError naming the first label of `labels` (N,) outside 0..num_classes-1."""
    if len(labels) and int(labels.max()) >= num_classes:
        bad = int(np.argmax(labels >= num_classes))
        raise DataError(
            f"{name}: label {labels[bad]} at index {bad} is outside 0..{num_classes - 1}"
        )


def label_dtype(num_classes: int) -> np.dtype:
    """The smallest unsigned dtype that holds labels 0..num_classes-1 (uint8 up to 256)."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if num_classes - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise DataError(f"{num_classes} classes do not fit in uint32 labels")


@dataclass(frozen=True, eq=False)  # eq on arrays is ambiguous, so compare explicitly instead
class Split:
    """One split of an image classification dataset.

    A slice is again a Split, sharing the arrays (a numpy view, no copy):
    `data.train[:2000]` is the first 2 000 training examples, `split[::2]` every
    second one. A single example is `split.images[i]`, `split.labels[i]`;
    `split[i]` raises TypeError, so code that meant `(images, labels)[0]` fails loudly.

    Attributes:
        images: uint8 array, pixel values 0..255, of shape (N, H, W) (grayscale; MNIST is
            (N, 28, 28)) or (N, H, W, C) with C = 1 or 3 channels (CIFAR-10: (N, 32, 32, 3)).
        labels: unsigned integer array of shape (N,), class ids 0..num_classes-1; uint8 for
            up to 256 classes.
        num_classes: the number of classes the labels range over (10 unless given).
    """

    images: np.ndarray
    labels: np.ndarray
    num_classes: int = NUM_CLASSES

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if not isinstance(images, np.ndarray) or not isinstance(labels, np.ndarray):
            raise DataError("Split needs numpy arrays for images and labels")
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise DataError(f"Split num_classes must be a positive int, got {self.num_classes!r}")
        shape_ok = images.ndim == 3 or (images.ndim == 4 and images.shape[3] in (1, 3))
        if images.dtype != np.uint8 or not shape_ok or 0 in images.shape[1:]:
            raise DataError(
                "Split images must be uint8 of shape (N, H, W) or (N, H, W, C) with C = 1 or 3, "
                f"got {images.dtype} {images.shape}; floats in [0, 1] convert with "
                "(images * 255).round().astype(np.uint8)"
            )
        if labels.dtype.kind != "u" or labels.ndim != 1:
            raise DataError(
                f"Split labels must be unsigned integers of shape (N,), got {labels.dtype} "
                f"{labels.shape}; convert with labels.astype(np.uint8)"
            )
        if len(images) != len(labels):
            raise DataError(f"Split has {len(images)} images but {len(labels)} labels")
        check_labels(labels, self.num_classes, "Split labels")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: slice) -> "Split":
        """The examples `index` selects, as a Split; `index` must be a slice."""
        if not isinstance(index, slice):
            raise TypeError(
                f"a Split takes only a slice, e.g. split[:2000], not {type(index).__name__}; "
                "for the arrays use split.images and split.labels"
            )
        return Split(self.images[index], self.labels[index], self.num_classes)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """The shape of one image, (H, W) or (H, W, C)."""
        return tuple(self.images.shape[1:])

    @property
    def nbytes(self) -> int:
        """Bytes of the images and labels, as stored (and as copied to a device)."""
        return self.images.nbytes + self.labels.nbytes


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train and a test split plus where they came from and what their classes are.

    Attributes:
        name: "mnist", "fashion_mnist", "cifar10", or the spec of a folder or arrays file,
            e.g. "folder:/data/pets" (see `parse_dataset_spec`).
        train: the training examples, in the source's order.
        test: the test examples, in the source's order.
        source: where the data came from, for a person (e.g. "data dir /x").
        sha256: sha256 of each source file that was read and verified, by file name.
        class_names: one name per class, label i is class_names[i]. Default: the digits
            "0".."9" for MNIST, the ten clothing names for Fashion-MNIST, else "0", "1", ...
    """

    name: str
    train: Split
    test: Split
    source: str
    sha256: dict[str, str] = field(default_factory=dict)
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        num_classes = self.train.num_classes
        if self.test.num_classes != num_classes:
            raise DataError(
                f"{self.name}: the train split has {num_classes} classes, the test split "
                f"{self.test.num_classes}"
            )
        names = self.class_names
        if names is None:
            known = KNOWN_CLASSES.get(self.name)
            names = known if known and len(known) == num_classes else range(num_classes)
        names = tuple(str(n) if isinstance(n, int) else n for n in names)
        if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
            raise DataError(f"{self.name}: class names must be distinct non-empty strings")
        if len(names) != num_classes:
            raise DataError(
                f"{self.name}: {len(names)} class names for splits of {num_classes} classes"
            )
        object.__setattr__(self, "class_names", names)
        if self.train.image_shape != self.test.image_shape:
            raise DataError(
                f"{self.name}: train images are {self.train.image_shape}, test images "
                f"{self.test.image_shape}; both splits need one image shape"
            )

    @property
    def num_classes(self) -> int:
        """Number of classes, `len(class_names)` (10 for MNIST, Fashion-MNIST, CIFAR-10)."""
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """The shape of one image, e.g. (28, 28) for MNIST and (32, 32, 3) for CIFAR-10."""
        return self.train.image_shape

    @property
    def nbytes(self) -> int:
        """Bytes of all four arrays (train and test images and labels)."""
        return self.train.nbytes + self.test.nbytes

    def content_sha256(self) -> str:
        """sha256 of the four arrays (train images, labels, test images, labels) as raw bytes.

        Equal for equal data whatever the source (IDX files, mirror, cache, package index),
        so a run manifest can name the exact data it trained on.
        """
        return arrays_sha256(self.train, self.test)


def arrays_sha256(train: Split, test: Split) -> str:
    """sha256 of the split sizes, then the bytes of train images, labels, test images, labels.

    MNIST's (N, 28, 28) uint8 arrays hash as they always have; other shapes and label dtypes
    also hash their shapes and dtypes, so equal bytes of a different layout differ.
    """
    digest = hashlib.sha256(f"{len(train)},{len(test)};".encode())
    arrays = (train.images, train.labels, test.images, test.labels)
    if train.image_shape != IMAGE_SHAPE or any(a.dtype != np.uint8 for a in arrays):
        layout = [(a.shape[1:], a.dtype.str) for a in arrays]
        digest.update(f"{layout};".encode())
    for array in arrays:
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def format_bytes(nbytes: int) -> str:
    """A byte count for a person, in decimal units: "47.1 MB", "1.23 GB", "812 B"."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= size:
            value = nbytes / size
            return f"{value:.0f} {unit}" if value >= 100 else f"{value:.3g} {unit}"
    return f"{nbytes} B"


def memory_line(split: Split, *, what: str = "training set", devices: int = 1) -> str:
    """One line saying how much memory copying `split` to the device(s) takes.

    Args:
        split: the data that goes to the device as it is (uint8 images, labels).
        what: what to call it in the line.
        devices: how many devices hold a full copy (flaxfit replicates the data).

    Returns:
        e.g. "training set: 50,000 images 32x32x3 uint8 + uint8 labels = 154 MB per device
        (4 devices: 615 MB)".
    """
    shape = "x".join(str(d) for d in split.image_shape)
    line = (
        f"{what}: {len(split):,} images {shape} {split.images.dtype} + {split.labels.dtype} "
        f"labels = {format_bytes(split.nbytes)}"
    )
    if devices > 1:
        line += f" per device ({devices} devices: {format_bytes(devices * split.nbytes)})"
    return line
