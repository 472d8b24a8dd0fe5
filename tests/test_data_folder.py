"""folder:DIR: pictures in class folders, decoded once with Pillow, then read from the cache."""

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flaxfit.data import DataError, load_data
from flaxfit.data import folder as folder_mod


def gray(seed: int, shape=(6, 5)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def save(path: Path, pixels: np.ndarray | Image.Image, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    image.save(path, format=fmt)
    return path


def make_folder(root: Path, classes=("cat", "dog"), per_class=(3, 2), shape=(6, 5)) -> dict:
    """Grayscale PNGs: root/<split>/<class>/<i>.png; returns {relative path: pixels}."""
    written, seed = {}, 0
    for split, count in zip(("train", "test"), per_class, strict=True):
        for name in classes:
            for i in range(count):
                seed += 1
                written[f"{split}/{name}/{i}.png"] = gray(seed, shape)
                save(root / split / name / f"{i}.png", written[f"{split}/{name}/{i}.png"])
    return written


def test_a_folder_of_grayscale_pngs_is_mnist_shaped(tmp_path, capsys):
    written = make_folder(tmp_path / "pets", classes=("dog", "cat", "bird"))
    (tmp_path / "pets" / "train" / "cat" / ".DS_Store").write_bytes(b"\0")  # hidden: skipped
    dataset = load_data(f"folder:{tmp_path / 'pets'}", cache_dir=tmp_path / "cache")
    assert dataset.class_names == ("bird", "cat", "dog")  # sorted folder names
    assert dataset.name == f"folder:{tmp_path / 'pets'}"
    assert dataset.train.images.shape == (9, 6, 5) and dataset.test.images.shape == (6, 6, 5)
    # Class by class, files by name; PNG is lossless, so the pixels come back exactly.
    order = [f"train/{c}/{i}.png" for c in ("bird", "cat", "dog") for i in range(3)]
    np.testing.assert_array_equal(dataset.train.images, np.stack([written[p] for p in order]))
    np.testing.assert_array_equal(dataset.train.labels, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    assert dataset.train.labels.dtype == np.uint8
    lines = "".join(
        f"{hashlib.sha256((tmp_path / 'pets' / p).read_bytes()).hexdigest()}  {p}\n"
        for p in sorted(p for p in written if p.startswith("test/"))
    )  # what `cd DIR && sha256sum test/*/* | sort -k2` prints
    assert dataset.sha256["test/"] == hashlib.sha256(lines.encode()).hexdigest()
    assert "decoding 15 pictures" in capsys.readouterr().err


def test_colour_jpeg_webp_bmp_and_gray_mix_into_rgb(tmp_path):
    root = tmp_path / "mix"
    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    save(root / "train" / "a" / "rgb.png", rgb)
    save(root / "train" / "a" / "gray.png", gray(1, (8, 8)))
    rgba = np.dstack([rgb, np.full((8, 8), 7, np.uint8)])
    save(root / "train" / "b" / "rgba.png", rgba)
    save(root / "train" / "b" / "photo.JPG", rgb, "JPEG")
    save(root / "test" / "a" / "x.webp", rgb, "WEBP")
    save(root / "test" / "b" / "y.bmp", rgb, "BMP")
    save(root / "test" / "b" / "z.png", Image.fromarray(rgb).convert("P"))  # a palette picture
    wide = (gray(2, (8, 8)).astype(np.uint16) << 8) | 0xAB
    save(root / "test" / "b" / "w16.png", Image.fromarray(wide))  # 16-bit grayscale
    dataset = load_data(f"folder:{root}", cache_dir=tmp_path / "cache", verbose=False)
    assert dataset.image_shape == (8, 8, 3)
    train, test = dataset.train.images, dataset.test.images
    np.testing.assert_array_equal(train[0], np.repeat(gray(1, (8, 8))[..., None], 3, axis=2))
    np.testing.assert_array_equal(train[1], rgb)
    jpeg = np.asarray(Image.open(root / "train" / "b" / "photo.JPG").convert("RGB"))
    np.testing.assert_array_equal(train[2], jpeg)  # as Pillow decodes it
    np.testing.assert_array_equal(train[3], rgb)  # transparency dropped, colour kept
    np.testing.assert_array_equal(test[1], np.repeat(gray(2, (8, 8))[..., None], 3, axis=2))
    np.testing.assert_array_equal(test[2], rgb)  # BMP is lossless
    webp = np.asarray(Image.open(root / "test" / "a" / "x.webp").convert("RGB"))
    np.testing.assert_array_equal(test[0], webp)  # lossy, so as Pillow decodes it
    np.testing.assert_array_equal(dataset.test.labels, [0, 1, 1, 1])  # a: x; b: w16, y, z


def test_the_second_run_reads_the_cache_and_a_changed_file_is_noticed(
    tmp_path, monkeypatch, capsys
):
    root, cache_dir = tmp_path / "pets", tmp_path / "cache"
    make_folder(root)
    first = load_data(f"folder:{root}", cache_dir=cache_dir)
    capsys.readouterr()
    real_decode = folder_mod.decode_picture
    monkeypatch.setattr(folder_mod, "decode_picture", lambda *a: pytest.fail("decoded again"))
    again = load_data(f"folder:{root}", cache_dir=cache_dir)
    assert again.source == f"cache {next(cache_dir.iterdir())} (from image folder {root})"
    assert again.content_sha256() == first.content_sha256()
    assert again.class_names == first.class_names and again.sha256 == first.sha256
    assert capsys.readouterr().err.startswith(f"flaxfit: folder:{root}: cache ")
    monkeypatch.setattr(folder_mod, "decode_picture", real_decode)
    changed = gray(99)
    save(root / "train" / "dog" / "1.png", changed)  # same name, new pixels
    save(root / "test" / "cat" / "9.png", gray(98))  # and one more
    third = load_data(f"folder:{root}", cache_dir=cache_dir)
    err = capsys.readouterr().err
    assert "is out of date: 1 changed, 1 added, 0 removed (e.g. train/dog/1.png)" in err
    np.testing.assert_array_equal(third.train.images[4], changed)
    assert len(third.test) == 5 and third.content_sha256() != first.content_sha256()
    assert len(list(cache_dir.iterdir())) == 1  # replaced, not piling up


def test_pictures_of_different_sizes_need_image_size(tmp_path):
    root = tmp_path / "sizes"
    make_folder(root)
    save(root / "train" / "dog" / "9.png", gray(5, (12, 10)))
    with pytest.raises(DataError) as info:
        load_data(f"folder:{root}", cache_dir=tmp_path / "cache", verbose=False)
    assert str(info.value) == (
        f"{root}/train/cat/0.png is 6x5 (HxW) but {root}/train/dog/9.png is 12x10; pictures "
        "of different sizes need image_size=(H, W) (CLI: --image-size H W) to resize them "
        "all to one"
    )
    assert not (tmp_path / "cache").exists()  # nothing cached from a failed read
    dataset = load_data(f"folder:{root}", image_size=(4, 3), cache_dir=tmp_path / "cache",
                        verbose=False)  # fmt: skip
    assert dataset.image_shape == (4, 3) and len(dataset.train) == 7
    # Another size is another cache file; the first stays valid.
    load_data(f"folder:{root}", image_size=[8, 8], cache_dir=tmp_path / "cache", verbose=False)
    assert len(list((tmp_path / "cache").iterdir())) == 2


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def break_(root: Path, what: str) -> Path:
    """Damage the good folder at `root` one way; returns the file or folder at fault."""
    cat = root / "train" / "cat"
    if what == "garbage":
        (cat / "0.png").write_bytes(b"not a picture at all")
        return cat / "0.png"
    if what == "truncated-png":
        (cat / "0.png").write_bytes(png_bytes(gray(3, (64, 64)))[:-40])
        return cat / "0.png"
    if what == "truncated-jpeg":
        (cat / "0.jpg").write_bytes(jpeg_bytes(gray(3, (6, 5)))[:-60])
        return cat / "0.jpg"
    if what == "gif-named-png":
        Image.fromarray(gray(3)).save(cat / "0.png", format="GIF")
        return cat / "0.png"
    if what == "empty-class":
        (root / "test" / "cat").mkdir(exist_ok=True)
        for file in (root / "test" / "cat").iterdir():
            file.unlink()
        return root / "test" / "cat"
    if what == "other-classes":
        save(root / "test" / "cow" / "0.png", gray(4))
        return root
    if what == "not-a-picture":
        (cat / "notes.txt").write_text("hello")
        return cat / "notes.txt"
    if what == "loose-file":
        save(root / "train" / "stray.png", gray(4))
        return root / "train" / "stray.png"
    if what == "no-test":
        for file in (root / "test").rglob("*.png"):
            file.unlink()
        for sub in (root / "test").iterdir():
            sub.rmdir()
        (root / "test").rmdir()
        return root
    raise AssertionError(what)


@pytest.mark.parametrize(
    "what, message",
    [
        ("garbage", "not a readable PNG, JPEG, WebP or BMP picture"),
        ("truncated-png", r"damaged or truncated picture \(OSError"),
        ("truncated-jpeg", "damaged or truncated picture"),
        ("gif-named-png", "not a readable PNG, JPEG, WebP or BMP picture"),
        ("empty-class", "a class folder with no pictures"),
        ("other-classes", r"train and test have different classes \(only in test: cow\)"),
        ("not-a-picture", r"not a picture file \(.bmp, .jpeg, .jpg, .png, .webp\); move it out"),
        ("loose-file", "a file outside any class folder"),
        ("no-test", r"has no test/ folder; an image folder is DIR/train/<class>/\* and"),
    ],
)
def test_bad_folders_are_one_line_naming_the_file_and_the_cache_is_untouched(
    tmp_path, what, message
):
    root, cache_dir = tmp_path / "pets", tmp_path / "cache"
    make_folder(root)
    load_data(f"folder:{root}", cache_dir=cache_dir, verbose=False)
    (cache_file,) = cache_dir.iterdir()
    before = cache_file.read_bytes()
    culprit = break_(root, what)
    with pytest.raises(DataError, match=message) as info:
        load_data(f"folder:{root}", cache_dir=cache_dir, verbose=False)
    text = str(info.value)
    assert text.startswith(str(culprit)) and "\n" not in text
    assert list(cache_dir.iterdir()) == [cache_file] and cache_file.read_bytes() == before


def test_a_picture_over_pillows_bomb_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    root = tmp_path / "bomb"
    make_folder(root, shape=(20, 20))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # 20x20 = 400 pixels
    message = r"0.png: 20x20 pixels is over Pillow's decompression-bomb limit of 300 pixels \(PIL"
    with pytest.raises(DataError, match=message):
        load_data(f"folder:{root}", cache_dir=tmp_path / "cache", verbose=False)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 150)  # past twice the limit: Pillow's error
    with pytest.raises(DataError, match="0.png: over Pillow's decompression-bomb limit"):
        load_data(f"folder:{root}", cache_dir=tmp_path / "cache", verbose=False)
    assert not (tmp_path / "cache").exists()


def test_a_missing_folder_and_an_unreadable_file(tmp_path, monkeypatch):
    with pytest.raises(DataError, match=r"nowhere: no such directory \(an image folder is DIR/"):
        load_data(f"folder:{tmp_path / 'nowhere'}", verbose=False)
    root = tmp_path / "pets"
    make_folder(root)
    locked = root / "train" / "cat" / "0.png"
    real = Path.read_bytes

    def read_bytes(path):  # as chmod 0 would, for a user other than root
        if path == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(DataError, match=f"{locked}: cannot read it \\(Permission denied\\)"):
        load_data(f"folder:{root}", cache_dir=tmp_path / "cache", verbose=False)
