"""An image folder as a dataset: DIR/train/<class>/* and DIR/test/<class>/*, decoded with Pillow.

Class names are the class folders' names, sorted; label i is the i-th. Pictures may be PNG,
JPEG, WebP or BMP, grayscale or colour. All grayscale gives uint8 (N, H, W), as MNIST; any
colour picture makes the set (N, H, W, 3), grayscale ones repeated over the three channels.
Transparency is dropped (the colour under it is kept, as torchvision's ImageFolder does), and
the pixels are taken as stored (an EXIF rotation flag is not applied, as in other loaders).

Reading is strict, so a surprise is an error that names the file, not a silently odd set:
hidden files (".DS_Store") are skipped, any other file that is not a picture is refused.
`load_data("folder:DIR")` adds the cache (see flaxfit.data.load).
"""

import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .dataset import DataError, Split, label_dtype

if TYPE_CHECKING:
    from PIL.Image import Image

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".webp")
PIL_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")  # what Pillow may decode: these and only these
SPLITS = ("train", "test")
_SKIPPED = {"thumbs.db", "desktop.ini"}  # what file browsers leave behind; hidden files too
_GRAY_MODES = {"1", "L", "LA", "La"}
_WIDE_GRAY_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N"}  # 16-bit PNGs and TIFF-likes


class FolderListing(NamedTuple):
    """What a folder holds, before anything is decoded.

    Attributes:
        root: the folder.
        class_names: the class folders' names, sorted.
        files: per split ("train", "test"), (path relative to root, label) in reading order:
            class by class, files sorted by name.
    """

    root: Path
    class_names: tuple[str, ...]
    files: dict[str, list[tuple[str, int]]]


def _visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name.lower() not in _SKIPPED


def _entries(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if _visible(p))
    except OSError as e:
        raise DataError(f"{directory}: cannot list it ({e.strerror or e})") from e


def list_folder(directory: str | os.PathLike) -> FolderListing:
    """Find the classes and picture files of DIR/train/<class>/ and DIR/test/<class>/.

    Raises:
        DataError: no train/ or test/ folder, a file outside a class folder, a subfolder or
            a non-picture file in one, an empty class folder, or train and test with
            different classes.
    """
    root = Path(directory)
    layout = "DIR/train/<class>/* and DIR/test/<class>/*"
    if not root.is_dir():
        raise DataError(f"{root}: no such directory (an image folder is {layout})")
    classes: dict[str, list[str]] = {}
    found: dict[str, dict[str, list[str]]] = {}
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            raise DataError(f"{root}: has no {split}/ folder; an image folder is {layout}")
        found[split] = {}
        for entry in _entries(split_dir):
            if not entry.is_dir():
                raise DataError(
                    f"{entry}: a file outside any class folder; move it into "
                    f"{split_dir}/<class>/ or out of {split_dir}"
                )
            pictures = []
            for file in _entries(entry):
                if file.is_dir():
                    raise DataError(f"{file}: a folder inside a class folder; class folders "
                                    "hold picture files only")  # fmt: skip
                if file.suffix.lower() not in IMAGE_SUFFIXES:
                    raise DataError(
                        f"{file}: not a picture file ({', '.join(IMAGE_SUFFIXES)}); move it "
                        "out of the class folder"
                    )
                pictures.append(file.relative_to(root).as_posix())
            if not pictures:
                raise DataError(
                    f"{entry}: a class folder with no pictures ({', '.join(IMAGE_SUFFIXES)}); "
                    "add some or remove the folder"
                )
            found[split][entry.name] = pictures
        classes[split] = sorted(found[split])
        if not classes[split]:
            raise DataError(f"{split_dir}: has no class folders; an image folder is {layout}")
    if classes["train"] != classes["test"]:
        only_train = sorted(set(classes["train"]) - set(classes["test"]))
        only_test = sorted(set(classes["test"]) - set(classes["train"]))
        parts = [f"only in train: {', '.join(only_train)}"] if only_train else []
        parts += [f"only in test: {', '.join(only_test)}"] if only_test else []
        raise DataError(
            f"{root}: train and test have different classes ({'; '.join(parts)}); both need "
            "the same class folders"
        )
    class_names = tuple(classes["train"])
    files = {
        split: [(path, label) for label, name in enumerate(class_names)
                for path in found[split][name]]
        for split in SPLITS
    }  # fmt: skip
    return FolderListing(root, class_names, files)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e})") from e


def hash_files(listing: FolderListing) -> dict[str, str]:
    """sha256 of every picture file of `listing`, by path relative to its root."""
    return {
        path: hashlib.sha256(_read(listing.root / path)).hexdigest()
        for split in SPLITS
        for path, _ in listing.files[split]
    }


def _pixels(image: "Image", name: str) -> np.ndarray:
    """A loaded Pillow image -> uint8 (H, W) for grayscale, (H, W, 3) for colour."""
    mode = image.mode
    if mode in _GRAY_MODES:
        return np.asarray(image.convert("L"))
    if mode in _WIDE_GRAY_MODES:
        wide = np.asarray(image)
        if wide.min() < 0 or wide.max() > 65535:
            raise DataError(f"{name}: pixel values outside 0..65535 in a {mode} picture")
        return (wide >> 8).astype(np.uint8)  # 16 bits to 8: keep the high byte
    if mode == "F":
        raise DataError(f"{name}: floating-point pixels are not supported; save it as 8-bit")
    rgb = np.asarray(image.convert("RGB"))
    if (
        mode in ("P", "PA")
        and (rgb[..., 0] == rgb[..., 1]).all()
        and (rgb[..., 1] == rgb[..., 2]).all()
    ):
        return np.ascontiguousarray(rgb[..., 0])  # a grey palette: a grayscale picture
    return rgb


def decode_picture(data: bytes, name: str, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode one picture file's bytes with Pillow, strictly.

    Args:
        data: the file's bytes.
        name: the file, for error messages.
        image_size: (H, W) to resize to (bilinear, antialiased, aspect ratio not kept);
            None keeps the picture's size.

    Returns:
        uint8 (H, W) for a grayscale picture, (H, W, 3) for a colour one.

    Raises:
        DataError: not a PNG, JPEG, WebP or BMP picture, truncated or damaged, or more
            pixels than Pillow's decompression-bomb limit (PIL.Image.MAX_IMAGE_PIXELS).
    """
    from PIL import Image, UnidentifiedImageError  # here, so importing flaxfit.data stays light

    limit = Image.MAX_IMAGE_PIXELS
    # Pillow's decoders raise many unrelated types for damaged data (OSError, SyntaxError,
    # ValueError, struct.error, zlib.error...); each one means: not a picture we can read.
    try:
        with warnings.catch_warnings():  # the size is checked below, with a clearer message
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=PIL_FORMATS)  # reads the header only
    except UnidentifiedImageError:
        raise DataError(f"{name}: not a readable PNG, JPEG, WebP or BMP picture") from None
    except Image.DecompressionBombError as e:
        raise DataError(f"{name}: over Pillow's decompression-bomb limit ({e})") from None
    except Exception as e:
        raise DataError(f"{name}: damaged or truncated picture ({type(e).__name__}: {e})") from None
    with image:
        if limit is not None and image.width * image.height > limit:
            raise DataError(
                f"{name}: {image.width}x{image.height} pixels is over Pillow's "
                f"decompression-bomb limit of {limit:,} pixels (PIL.Image.MAX_IMAGE_PIXELS); "
                "shrink the picture, or raise that limit if you trust the file"
            )
        try:
            image.load()  # decodes all of it: a truncated file fails here
            pixels = _pixels(image, name)
        except DataError:
            raise
        except Exception as e:
            raise DataError(
                f"{name}: damaged or truncated picture ({type(e).__name__}: {e})"
            ) from None
    if image_size is not None and pixels.shape[:2] != tuple(image_size):
        height, width = image_size
        resized = Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(resized)
    return pixels


def decode_folder(
    listing: FolderListing,
    *,
    image_size: tuple[int, int] | None = None,
    sha256: dict[str, str] | None = None,
) -> tuple[Split, Split]:
    """Decode every picture of `listing` into a train and a test split.

    Args:
        listing: from `list_folder`.
        image_size: (H, W) to resize every picture to; None requires all of one size.
        sha256: the files' sha256s from `hash_files`; when given, a file that changed since
            is an error (the cache would otherwise record the wrong key).

    Returns:
        (train, test): uint8 images (N, H, W) if every picture is grayscale, else
        (N, H, W, 3); labels (N,) uint8 (wider past 256 classes), in `listing`'s order.
    """
    root, decoded = listing.root, {}
    first: tuple[str, tuple[int, ...]] | None = None
    for split in SPLITS:
        pictures = []
        for path, _ in listing.files[split]:
            name = str(root / path)
            data = _read(root / path)
            if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256[path]:
                raise DataError(f"{name}: changed while the folder was being read; run again")
            pixels = decode_picture(data, name, image_size)
            if first is None:
                first = (name, pixels.shape[:2])
            elif pixels.shape[:2] != first[1]:
                (h1, w1), (h2, w2) = first[1], pixels.shape[:2]
                raise DataError(
                    f"{first[0]} is {h1}x{w1} (HxW) but {name} is {h2}x{w2}; pictures of "
                    "different sizes need image_size=(H, W) (CLI: --image-size H W) to "
                    "resize them all to one"
                )
            pictures.append(pixels)
        decoded[split] = pictures
    colour = any(p.ndim == 3 for split in SPLITS for p in decoded[split])
    dtype, num_classes = label_dtype(len(listing.class_names)), len(listing.class_names)
    splits = []
    for split in SPLITS:
        pictures = decoded.pop(split)  # one split's pictures at a time, then the list goes
        shape = (len(pictures), *first[1], *((3,) if colour else ()))
        images = np.empty(shape, np.uint8)
        for i, pixels in enumerate(pictures):
            images[i] = pixels[..., None] if colour and pixels.ndim == 2 else pixels
        labels = np.array([label for _, label in listing.files[split]], dtype)
        splits.append(Split(images, labels, num_classes))
    return splits[0], splits[1]
