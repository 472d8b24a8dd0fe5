import io

import numpy as np
import pytest
from PIL import Image

from flaxfit.data.images import (
    MAX_PIXELS,
    decode_image,
    decode_picture,
    is_dark_on_light,
    load_digit,
    load_picture,
    prepare_digit,
    read_image,
)
from serve_helpers import png_bomb, png_bytes


def stroke(height=200, width=120, dark_on_light=True):
    """A thick vertical bar (a '1') off-centre on a large page."""
    page = np.zeros((height, width), np.uint8)
    page[30:170, 20:40] = 255
    return 255 - page if dark_on_light else page


def center_of_mass(image):
    ys, xs = np.indices(image.shape)
    total = image.sum()
    return (ys * image).sum() / total, (xs * image).sum() / total


def test_a_dark_on_light_drawing_becomes_a_centred_white_digit():
    digit = prepare_digit(stroke())
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    rows, cols = np.nonzero(digit > 30)
    assert rows.max() - rows.min() + 1 <= 20 and cols.max() - cols.min() + 1 <= 20
    assert rows.max() - rows.min() >= 17  # the long side fills the 20-pixel box
    cy, cx = center_of_mass(digit.astype(float))
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1
    assert digit[0].max() == 0 and digit[:, 0].max() == 0  # black background


def test_polarity_does_not_change_the_result():
    np.testing.assert_array_equal(
        prepare_digit(stroke()), prepare_digit(stroke(dark_on_light=False))
    )
    assert is_dark_on_light(stroke()) and not is_dark_on_light(stroke(dark_on_light=False))


def test_a_blank_page_stays_blank():
    assert prepare_digit(np.full((50, 50), 255, np.uint8)).max() == 0


def test_no_center_only_resizes():
    image = np.zeros((56, 56), np.uint8)
    image[:28, :28] = 255
    resized = prepare_digit(image, center=False)
    assert resized.shape == (28, 28)
    assert resized[:12, :12].min() >= 250 and resized[16:, 16:].max() <= 5  # Lanczos ringing


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P"])
def test_every_png_mode_reads_as_the_same_gray_digit(tmp_path, mode):
    path = tmp_path / f"digit-{mode}.png"
    Image.fromarray(stroke()).convert(mode).save(path)
    np.testing.assert_array_equal(load_digit(path), prepare_digit(stroke()))


def test_transparent_background_counts_as_paper(tmp_path):
    rgba = np.zeros((60, 60, 4), np.uint8)  # fully transparent...
    rgba[10:50, 25:35] = (0, 0, 0, 255)  # ...except an opaque black bar
    Image.fromarray(rgba, "RGBA").save(tmp_path / "ink.png")
    digit = load_digit(tmp_path / "ink.png")
    assert digit.max() > 200 and digit[0].max() == 0


def test_unreadable_and_oversized_files_are_named(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"GIF89a but not really")
    with pytest.raises(ValueError, match="bad.png: not a readable image"):
        read_image(bad)
    side = int(MAX_PIXELS**0.5) + 1
    Image.new("L", (side, side)).save(tmp_path / "huge.png")
    with pytest.raises(ValueError, match="huge.png: .* larger than"):
        read_image(tmp_path / "huge.png")


def test_decode_image_reads_bytes_as_read_image_reads_files(tmp_path):
    path = tmp_path / "digit.png"
    Image.fromarray(stroke()).save(path)
    np.testing.assert_array_equal(decode_image(path.read_bytes()), read_image(path))


def test_decode_image_refuses_other_formats_garbage_and_bombs():
    gif = io.BytesIO()
    Image.fromarray(stroke()).save(gif, format="GIF")
    with pytest.raises(ValueError, match=r"upload: not a readable image \(not PNG\)"):
        decode_image(gif.getvalue(), name="upload", formats=("PNG",))
    with pytest.raises(ValueError, match="upload: not a readable image"):
        decode_image(b"\x89PNG\r\n\x1a\n" + b"\0" * 40, name="upload")
    with pytest.raises(ValueError, match=r"larger than the 16,777,216 pixels allowed"):
        decode_image(png_bomb(20000, 20000))  # Pillow's own bomb limit speaks first
    with pytest.raises(ValueError, match=r"5000x5000 pixels is larger than the 1,000 pixels"):
        decode_image(png_bomb(5000, 5000), max_pixels=1000)  # flaxfit's limit
    with pytest.raises(ValueError, match=r"40x40 pixels is larger than the 1,000 pixels allowed"):
        decode_image(png_bytes(np.zeros((40, 40), np.uint8)), max_pixels=1000)


def test_decode_picture_converts_an_upload_exactly_as_load_picture_converts_its_file(tmp_path):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (40, 30, 4), dtype=np.uint8)
    for name, image, kind in [
        ("photo.jpg", Image.fromarray(rgba[..., :3]), "JPEG"),
        ("see-through.png", Image.fromarray(rgba), "PNG"),  # transparency is white paper
    ]:
        path = tmp_path / name
        image.save(path, format=kind)
        for shape in [(16, 12, 3), (16, 12), (20, 20, 1)]:
            found = decode_picture(path.read_bytes(), shape)
            assert found.shape == shape and found.dtype == np.uint8
            np.testing.assert_array_equal(found, load_picture(path, shape))
    gif = io.BytesIO()
    Image.fromarray(rgba[..., :3]).save(gif, format="GIF")
    with pytest.raises(ValueError, match=r"upload: not a readable image \(not PNG, JPEG or BMP\)"):
        decode_picture(gif.getvalue(), (8, 8, 3), name="upload", formats=("PNG", "JPEG", "BMP"))
    with pytest.raises(ValueError, match=r"40x40 pixels is larger than the 1,000 pixels allowed"):
        decode_picture(png_bytes(np.zeros((40, 40), np.uint8)), (8, 8), max_pixels=1000)
