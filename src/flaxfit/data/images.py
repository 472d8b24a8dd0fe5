"""Turn any digit picture into an MNIST-style 28x28 uint8 image (white digit on black).

MNIST digits were size-normalised to fit a 20x20 box, then placed in 28x28 so
that their centre of mass sits at the centre. A photo or a drawing only looks
like the training data after the same steps, which is what `prepare_digit` does.
Runs on other pictures take them as they are: `load_picture` (and `decode_picture`
for an upload) only resizes a picture to the run's shape and channels.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

SIDE = 28
BOX = 20
#: MNIST's image shapes: a run on these reads digits, prepared by `prepare_digit`;
#: a run on any other shape takes pictures as they are (`load_picture`).
DIGIT_SHAPES = ((SIDE, SIDE), (SIDE, SIDE, 1))
#: Larger pictures are refused before decoding (a PNG bomb is tiny on disk).
MAX_PIXELS = 4096 * 4096


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a PNG (or any format Pillow knows) as grayscale uint8 (H, W).

    Transparent pixels count as white paper. Raises ValueError naming the file
    when it cannot be read as an image.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    return _decode(path, str(path), MAX_PIXELS, None)


def decode_image(
    data: bytes,
    *,
    name: str = "image",
    max_pixels: int = MAX_PIXELS,
    formats: Sequence[str] | None = None,
) -> np.ndarray:
    """`read_image` for bytes in memory (an upload): grayscale uint8 (H, W).

    Args:
        data: the file's bytes.
        name: what error messages call the picture.
        max_pixels: refuse pictures with more pixels, before decoding them.
        formats: the Pillow formats to accept, e.g. ("PNG",); None accepts any.

    Raises ValueError when the bytes are not a readable picture or it is too large.
    """
    return _decode(io.BytesIO(data), name, max_pixels, formats)


def _decode(
    source: Path | io.BytesIO,
    name: str,
    max_pixels: int,
    formats: Sequence[str] | None,
    mode: str = "L",
) -> np.ndarray:
    too_large = f"larger than the {max_pixels:,} pixels allowed"
    # Pillow's decoders raise many unrelated types for damaged data (OSError,
    # SyntaxError, ValueError, struct.error, zlib.error...); every one of them
    # means the same thing here: not a picture we can read.
    try:
        with warnings.catch_warnings():  # its size is checked below, with a clearer message
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source, formats=formats)  # reads the header only
    except UnidentifiedImageError:
        kind = _either(formats) if formats else "a picture format Pillow knows"
        raise ValueError(f"{name}: not a readable image (not {kind})") from None
    except Image.DecompressionBombError as error:  # Pillow's own, larger limit
        raise ValueError(f"{name}: the picture is {too_large} ({error})") from None
    except Exception as error:
        raise ValueError(f"{name}: not a readable image ({error})") from None
    with image:
        if image.width * image.height > max_pixels:
            raise ValueError(f"{name}: {image.width}x{image.height} pixels is {too_large}")
        try:
            rgba = image.convert("RGBA")
        except Exception as error:
            raise ValueError(f"{name}: not a readable image ({error})") from None
    paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(paper, rgba).convert(mode))


def is_dark_on_light(gray: np.ndarray) -> bool:
    """True when the border (the paper) is brighter than mid-grey."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return float(np.median(border)) > 127


def prepare_digit(gray: np.ndarray, *, center: bool = True) -> np.ndarray:
    """Grayscale (H, W) picture -> uint8 (28, 28), white on black, MNIST-style.

    Args:
        gray: uint8 (H, W), either polarity; dark-on-light is inverted.
        center: crop to the ink, fit it in 20x20 and centre its mass (MNIST's
            own recipe). False just resizes the whole picture to 28x28.
    """
    gray = np.asarray(gray, dtype=np.uint8)
    if gray.ndim != 2 or min(gray.shape) == 0:
        raise ValueError(f"expected a non-empty (H, W) grayscale array, got shape {gray.shape}")
    ink = 255 - gray if is_dark_on_light(gray) else gray
    if not center:
        return _resize(ink, (SIDE, SIDE))
    rows, cols = np.nonzero(ink > 0.1 * ink.max()) if ink.max() > 0 else ((), ())
    if len(rows) == 0:
        return np.zeros((SIDE, SIDE), np.uint8)  # a blank page stays blank
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = BOX / max(crop.shape)
    height = max(1, round(crop.shape[0] * scale))
    width = max(1, round(crop.shape[1] * scale))
    digit = _resize(crop, (height, width))
    canvas = np.zeros((SIDE, SIDE), np.float32)
    top, left = (SIDE - height) // 2, (SIDE - width) // 2
    canvas[top : top + height, left : left + width] = digit
    return _center_mass(canvas).round().clip(0, 255).astype(np.uint8)


def _resize(ink: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    image = Image.fromarray(ink.astype(np.uint8))
    return np.asarray(image.resize((shape[1], shape[0]), Image.Resampling.LANCZOS))


def _center_mass(canvas: np.ndarray) -> np.ndarray:
    """Shift by whole pixels so the centre of mass lands on the middle of the canvas."""
    total = canvas.sum()
    ys, xs = np.indices(canvas.shape)
    dy = round((SIDE - 1) / 2 - (ys * canvas).sum() / total)
    dx = round((SIDE - 1) / 2 - (xs * canvas).sum() / total)
    # A 20x20 box in 28x28 leaves room to shift; pixels pushed past the edge are dropped.
    shifted = np.zeros_like(canvas)
    src = canvas[max(0, -dy) : SIDE - max(0, dy), max(0, -dx) : SIDE - max(0, dx)]
    shifted[max(0, dy) : max(0, dy) + src.shape[0], max(0, dx) : max(0, dx) + src.shape[1]] = src
    return shifted


def load_digit(path: str | os.PathLike, *, center: bool = True) -> np.ndarray:
    """`prepare_digit(read_image(path))`: a picture file -> uint8 (28, 28)."""
    return prepare_digit(read_image(path), center=center)


def load_picture(path: str | os.PathLike, image_shape: Sequence[int]) -> np.ndarray:
    """A picture file as a model trained on `image_shape` pictures takes it: resized to
    (H, W), grayscale for (H, W) or (H, W, 1), RGB for (H, W, 3); uint8.

    Unlike `load_digit` nothing is cropped, centred or inverted: a photo stays a photo.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    return _fit(path, str(path), image_shape, MAX_PIXELS, None)


def decode_picture(
    data: bytes,
    image_shape: Sequence[int],
    *,
    name: str = "picture",
    max_pixels: int = MAX_PIXELS,
    formats: Sequence[str] | None = None,
) -> np.ndarray:
    """`load_picture` for bytes in memory (an upload): the same conversion, pixel for pixel.

    Args:
        data: the file's bytes.
        image_shape: the run's (H, W), (H, W, 1) or (H, W, 3).
        name: what error messages call the picture.
        max_pixels: refuse pictures with more pixels, before decoding them.
        formats: the Pillow formats to accept, e.g. ("PNG", "JPEG"); None accepts any.

    Returns:
        uint8 `image_shape`.

    Raises ValueError when the bytes are not a readable picture or it is too large.
    """
    return _fit(io.BytesIO(data), name, image_shape, max_pixels, formats)


def _fit(
    source: Path | io.BytesIO,
    name: str,
    image_shape: Sequence[int],
    max_pixels: int,
    formats: Sequence[str] | None,
) -> np.ndarray:
    height, width = int(image_shape[0]), int(image_shape[1])
    colour = len(image_shape) == 3 and image_shape[2] == 3
    pixels = _decode(source, name, max_pixels, formats, "RGB" if colour else "L")
    resized = np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR))
    return resized[..., None] if len(image_shape) == 3 and not colour else resized


def _either(formats: Sequence[str]) -> str:
    """("PNG", "JPEG", "BMP") -> "PNG, JPEG or BMP"."""
    return " or ".join(filter(None, (", ".join(formats[:-1]), formats[-1])))
