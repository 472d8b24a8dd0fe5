"""What a client may send to /api/predict, checked before any of it reaches the model.

A run on 28x28 digits takes a drawing (`parse_json`, `parse_form`: MNIST's
preparation follows); a run on other pictures takes a picture file
(`parse_picture_form`: resized to the run's shape, as `flaxfit predict` does).

Everything here is plain Python over already-parsed values (a JSON object or
the fields of a multipart form), so every bad input becomes a `BadInput` with a
message that says what was expected; nothing a client sends can raise anything
else.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flaxfit.data.folder import PIL_FORMATS
from flaxfit.data.images import SIDE, decode_image, decode_picture, prepare_digit

#: Uploaded pictures (drawings and picture files alike) with more pixels are
#: refused before decoding: a PNG bomb is tiny on the wire but not in memory.
#: The pad sends 280x280.
MAX_PNG_PIXELS = 2048 * 2048
JSON_FIELDS = ("image", "png", "center", "feature_maps")
FORM_FIELDS = ("file", "center", "feature_maps")
PICTURE_FIELDS = ("file",)
#: What a run on other pictures accepts: the formats its training folders may hold.
PICTURE_FORMATS = PIL_FORMATS
EXAMPLE = '{"image": [[0, ...28 numbers 0-255...], ...28 rows...]} or {"png": "<base64>"}'


class BadInput(ValueError):
    """The request cannot be used; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class DigitRequest:
    """A checked request: the picture (grayscale uint8 (H, W)) and the options."""

    gray: np.ndarray
    center: bool = True
    feature_maps: bool = False

    def model_input(self) -> np.ndarray:
        """uint8 (28, 28), white on black: MNIST's preparation unless `center` is False."""
        return prepare_digit(self.gray, center=self.center)


def parse_json(body: bytes) -> DigitRequest:
    """A JSON body: {"image": 28x28 numbers | "png": base64, "center": bool, "feature_maps": bool}.

    `center` (default true) prepares the digit as MNIST was made; `feature_maps`
    (default false) asks for the first conv layer's output too.
    """
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as error:  # not UTF-8, not JSON, nested too deep
        raise BadInput(f"the body is not valid JSON ({error}); send {EXAMPLE}", 400) from None
    if not isinstance(value, dict):
        raise BadInput(f"the body must be a JSON object, got {_kind(value)}; send {EXAMPLE}", 400)
    unknown = sorted(set(value) - set(JSON_FIELDS))
    if unknown:
        raise BadInput(f"unknown field {unknown[0]!r}; the fields are {', '.join(JSON_FIELDS)}")
    if ("image" in value) == ("png" in value):
        raise BadInput(f"send exactly one of the fields 'image' and 'png': {EXAMPLE}")
    # The cheap checks first: a bad flag is reported before a picture is decoded.
    center = _json_flag(value, "center", True)
    feature_maps = _json_flag(value, "feature_maps", False)
    if "image" in value:
        return DigitRequest(_image_array(value["image"]), center, feature_maps)
    if not isinstance(value["png"], str):
        raise BadInput(f"'png' must be a base64 string, got {_kind(value['png'])}")
    return DigitRequest(_decode_png(_base64(value["png"]), "'png'"), center, feature_maps)


def parse_form(fields: Mapping[str, Any]) -> DigitRequest:
    """Multipart form fields: file=<PNG upload>, center=true|false, feature_maps=true|false.

    Upload objects are passed in already read: `fields["file"]` is bytes.
    """
    _known_fields(fields, FORM_FIELDS)
    if not isinstance(fields.get("file"), bytes):
        raise BadInput("the form needs a PNG file in the field 'file' (curl -F file=@digit.png)")
    center = _form_flag(fields, "center", True)
    feature_maps = _form_flag(fields, "feature_maps", False)
    return DigitRequest(_decode_png(fields["file"], "the upload in 'file'"), center, feature_maps)


def parse_picture_form(fields: Mapping[str, Any], image_shape: Sequence[int]) -> np.ndarray:
    """Multipart form fields for a run on other pictures: file=<PNG, JPEG, WebP or BMP upload>.

    Args:
        fields: the form's fields, uploads already read (`fields["file"]` is bytes).
        image_shape: the run's (H, W), (H, W, 1) or (H, W, 3).

    Returns:
        uint8 `image_shape`: the picture resized to the run's size and channels, pixel for
        pixel what `flaxfit predict` makes of the same file.
    """
    _known_fields(fields, PICTURE_FIELDS)
    kind = "a PNG, JPEG, WebP or BMP picture"
    if not isinstance(fields.get("file"), bytes):
        raise BadInput(f"the form needs {kind} in the field 'file' (curl -F file=@picture.jpg)")
    name = "the upload in 'file'"
    return _decoded(
        fields["file"], name, kind,
        lambda data: decode_picture(data, image_shape, name=name, max_pixels=MAX_PNG_PIXELS,
                                    formats=PICTURE_FORMATS),
    )  # fmt: skip


def _known_fields(fields: Mapping[str, Any], known: Sequence[str]) -> None:
    unknown = sorted(set(fields) - set(known))
    if unknown:
        names = ", ".join(known)
        raise BadInput(f"unknown form field {unknown[0]!r}; the fields are {names}")


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), "a number")


def _image_array(value: Any) -> np.ndarray:
    shape = f"'image' must be {SIDE} rows of {SIDE} numbers from 0 to 255 (white digit on black)"
    if not isinstance(value, list) or len(value) != SIDE:
        raise BadInput(f"{shape}; got {_kind(value)}" + _length(value))
    for r, row in enumerate(value):
        if not isinstance(row, list) or len(row) != SIDE:
            raise BadInput(f"{shape}; row {r} is {_kind(row)}" + _length(row))
        for c, pixel in enumerate(row):
            # bool is an int in Python, and NaN fails every comparison: both refused here.
            if isinstance(pixel, bool) or not isinstance(pixel, int | float):
                raise BadInput(f"{shape}; [{r}][{c}] is {_kind(pixel)}")
            if not 0 <= pixel <= 255:
                raise BadInput(f"{shape}; [{r}][{c}] is {_number(pixel)}")
    return np.array(value, dtype=np.float64).round().astype(np.uint8)


def _number(value: int | float) -> str:
    # Python ints have no size limit and math.isfinite would overflow on them; compare instead.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # nan, inf, -inf
    return str(value) if abs(value) < 1e9 else "too large a number"


def _length(value: Any) -> str:
    return f" of length {len(value)}" if isinstance(value, list) else ""


def _base64(text: str) -> bytes:
    # The page sends canvas.toDataURL(): accept its "data:image/png;base64," prefix.
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if not header.endswith(";base64"):
            raise BadInput("'png' as a data: URL must be base64 (data:image/png;base64,...)")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadInput(f"'png' is not valid base64 ({error})") from None


def _decode_png(data: bytes, name: str) -> np.ndarray:
    return _decoded(
        data, name, "a PNG file",
        lambda data: decode_image(data, name=name, max_pixels=MAX_PNG_PIXELS, formats=("PNG",)),
    )  # fmt: skip


def _decoded(
    data: bytes, name: str, kind: str, decode: Callable[[bytes], np.ndarray]
) -> np.ndarray:
    """`decode(data)`, with an empty, unreadable or too large picture as a BadInput."""
    if not data:
        raise BadInput(f"{name} is empty; send {kind}")
    try:
        return decode(data)
    except ValueError as error:
        raise BadInput(str(error)) from None


def _json_flag(value: dict, name: str, default: bool) -> bool:
    flag = value.get(name, default)
    if not isinstance(flag, bool):
        raise BadInput(f"'{name}' must be true or false, got {_kind(flag)}")
    return flag


def _form_flag(fields: Mapping[str, Any], name: str, default: bool) -> bool:
    if name not in fields:
        return default
    text = fields[name].strip().lower() if isinstance(fields[name], str) else None
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise BadInput(f"form field '{name}' must be true or false")
