"""Naming a dataset (parse_dataset_spec), the general Split and Dataset, and load_data's checks."""

import os
from pathlib import Path

import numpy as np
import pytest

import flaxfit
from flaxfit.data import (
    DataError,
    Dataset,
    DatasetSpec,
    Split,
    format_bytes,
    load_data,
    memory_line,
    parse_dataset_spec,
)


def test_named_datasets_parse_to_themselves():
    for name in ("mnist", "fashion_mnist", "cifar10"):
        spec = parse_dataset_spec(name)
        assert spec == DatasetSpec(name) and str(spec) == name and spec.is_named
    assert parse_dataset_spec(" cifar10 ") == DatasetSpec("cifar10")
    assert parse_dataset_spec(DatasetSpec("mnist")) == DatasetSpec("mnist")


def test_paths_become_absolute_so_a_recorded_spec_works_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = parse_dataset_spec("folder:pets")
    assert spec == DatasetSpec("folder", tmp_path / "pets") and not spec.is_named
    assert str(spec) == f"folder:{tmp_path / 'pets'}"
    assert parse_dataset_spec(str(spec)) == spec  # canonical: parses to itself
    assert parse_dataset_spec("npz:sub/a.npz").path == tmp_path / "sub" / "a.npz"
    home = parse_dataset_spec("folder:~/x").path
    assert home == Path(os.path.expanduser("~/x"))
    # The syntax only: nothing needs to exist yet.
    assert parse_dataset_spec("npz:/nowhere/at/all.npz").path == Path("/nowhere/at/all.npz")


@pytest.mark.parametrize(
    "text, message",
    [
        ("cifar", "dataset 'cifar' is unknown; did you mean cifar10?"),
        ("CIFAR-10", "did you mean cifar10?"),
        ("fashion-mnist", "did you mean fashion_mnist?"),
        ("imagenet", r"dataset 'imagenet' is unknown \(choose mnist, fashion_mnist, cifar10, "),
        ("folder:", "names no directory; write e.g. folder:path/to/it"),
        ("npz: ", r"names no \.npz file"),
        ("cifar10:/data", "cifar10 takes no path; name a local copy of it with data_dir"),
        ("", "dataset '' is unknown"),
        ("data.npz", "for the arrays file data.npz, write npz:data.npz"),
    ],
)
def test_bad_specs_say_what_to_write(text, message):
    with pytest.raises(DataError, match=message):
        parse_dataset_spec(text)


def test_a_bare_directory_gets_the_folder_hint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pets").mkdir()
    with pytest.raises(DataError, match="for the image folder pets, write folder:pets"):
        parse_dataset_spec("pets")


def test_load_data_checks_its_arguments_before_reading_anything(tmp_path):
    with pytest.raises(DataError, match="image_size resizes the pictures of a folder"):
        load_data("mnist", image_size=(28, 28))
    with pytest.raises(DataError, match="image_size must be two positive integers"):
        load_data("folder:x", image_size=(28,))
    with pytest.raises(DataError, match="data_dir names a local copy of mnist, fashion_mnist"):
        load_data(f"npz:{tmp_path / 'a.npz'}", tmp_path)
    assert flaxfit.load_data is load_data and "load_data" in flaxfit.__all__


# ---- Split and Dataset beyond MNIST --------------------------------------------------------


def test_a_split_takes_colour_and_any_size_and_keeps_num_classes_when_sliced():
    images = np.zeros((6, 32, 24, 3), np.uint8)
    split = Split(images, np.array([0, 1, 2, 3, 4, 99], np.uint8), num_classes=100)
    assert split.image_shape == (32, 24, 3) and split[:2].num_classes == 100
    assert Split(np.zeros((2, 5, 7, 1), np.uint8), np.zeros(2, np.uint16)).image_shape == (5, 7, 1)
    with pytest.raises(DataError, match="label 99 at index 5 is outside 0..9"):
        Split(images, split.labels)  # ten classes unless told otherwise, as before
    with pytest.raises(DataError, match="C = 1 or 3"):
        Split(np.zeros((6, 8, 8, 4), np.uint8), split.labels, 100)
    with pytest.raises(DataError, match="labels.astype"):
        Split(images, split.labels.astype(np.int64), 100)


def test_a_dataset_carries_its_class_names():
    def split(n, classes=10, shape=(28, 28)):
        return Split(np.zeros((n, *shape), np.uint8), np.arange(n, dtype=np.uint8) % classes,
                     classes)  # fmt: skip

    mnist = Dataset("mnist", split(10), split(4), source="test")
    assert mnist.class_names == tuple("0123456789") and mnist.num_classes == 10
    assert mnist.image_shape == (28, 28)
    fashion = Dataset("fashion_mnist", split(10), split(4), source="test")
    assert fashion.class_names[0] == "T-shirt/top" and fashion.class_names[-1] == "Ankle boot"
    three = Dataset("mine", split(6, 3), split(3, 3), source="test", class_names=["a", "b", "c"])
    assert three.class_names == ("a", "b", "c") and three.num_classes == 3
    assert Dataset("x", split(6, 3), split(3, 3), source="t").class_names == ("0", "1", "2")
    with pytest.raises(DataError, match="2 class names for splits of 3 classes"):
        Dataset("x", split(6, 3), split(3, 3), source="t", class_names=["a", "b"])
    with pytest.raises(DataError, match="distinct non-empty"):
        Dataset("x", split(6, 3), split(3, 3), source="t", class_names=["a", "a", "b"])
    with pytest.raises(DataError, match="the train split has 3 classes, the test split 4"):
        Dataset("x", split(6, 3), split(4, 4), source="t")
    with pytest.raises(DataError, match="both splits need one image shape"):
        Dataset("x", split(6), split(4, shape=(28, 28, 1)), source="t")


def test_the_content_hash_of_mnist_shaped_data_is_unchanged():
    # The digest manifests of earlier runs recorded: sizes, then the four arrays' bytes.
    import hashlib

    train = Split(np.ones((3, 28, 28), np.uint8), np.array([1, 2, 3], np.uint8))
    test = Split(np.zeros((1, 28, 28), np.uint8), np.array([0], np.uint8))
    expected = hashlib.sha256(b"3,1;")
    for array in (train.images, train.labels, test.images, test.labels):
        expected.update(array.tobytes())
    assert Dataset("mnist", train, test, source="t").content_sha256() == expected.hexdigest()
    # Same bytes, another layout: another digest.
    other = Split(np.ones((3, 28, 28, 1), np.uint8), train.labels)
    test1 = Split(np.zeros((1, 28, 28, 1), np.uint8), test.labels)
    assert Dataset("x", other, test1, source="t").content_sha256() != expected.hexdigest()


def test_memory_line_and_nbytes():
    split = Split(np.zeros((50_000, 32, 32, 3), np.uint8), np.zeros(50_000, np.uint8))
    assert split.nbytes == 50_000 * 3073
    assert memory_line(split) == (
        "training set: 50,000 images 32x32x3 uint8 + uint8 labels = 154 MB"
    )
    assert memory_line(split, devices=4).endswith("154 MB per device (4 devices: 615 MB)")
    data = Dataset("x", split, split[:10_000], source="t")
    assert data.nbytes == 60_000 * 3073
    assert [format_bytes(n) for n in (812, 47_040_000, 1_234_000_000)] == [
        "812 B", "47 MB", "1.23 GB"
    ]  # fmt: skip


def test_a_cache_from_before_class_names_still_reads_as_mnist(tmp_path):
    import json

    from flaxfit.data import cache

    train = Split(np.ones((3, 28, 28), np.uint8), np.array([1, 2, 3], np.uint8))
    test = Split(np.zeros((2, 28, 28), np.uint8), np.array([0, 9], np.uint8))
    path = cache.save_cache(tmp_path / "mnist.npz", Dataset("mnist", train, test, source="t"))
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays["meta"].tobytes())
    del meta["class_names"]  # what caches written before this change hold
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)
    assert cache.load_cache(path, "mnist").class_names == tuple("0123456789")
