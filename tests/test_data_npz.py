"""npz:FILE: an arrays file read with allow_pickle=False and validated array by array."""

import hashlib

import numpy as np
import pytest

from flaxfit.data import DataError, load_data


def arrays(n_train=8, n_test=4, shape=(6, 5, 3), classes=3, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        "y_train": np.arange(n_train, dtype=np.int64) % classes,
        "x_test": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        "y_test": np.arange(n_test, dtype=np.int64) % classes,
    }


def write(path, compressed=False, **values):
    (np.savez_compressed if compressed else np.savez)(path, **values)
    return path


@pytest.mark.parametrize("compressed", [False, True])
def test_an_arrays_file_is_a_dataset(tmp_path, compressed):
    values = arrays()
    path = write(tmp_path / "mine.npz", compressed, **values, class_names=np.array(["a", "b", "c"]))
    dataset = load_data(f"npz:{path}", verbose=False)
    assert dataset.name == f"npz:{path}" and dataset.source == f"arrays file {path}"
    assert dataset.class_names == ("a", "b", "c") and dataset.image_shape == (6, 5, 3)
    np.testing.assert_array_equal(dataset.train.images, values["x_train"])
    np.testing.assert_array_equal(dataset.test.labels, values["y_test"])
    assert dataset.train.labels.dtype == np.uint8  # int64 labels, stored compactly
    assert dataset.sha256 == {"mine.npz": hashlib.sha256(path.read_bytes()).hexdigest()}


def test_without_class_names_the_classes_are_0_to_the_largest_train_label(tmp_path):
    values = arrays(shape=(28, 28), classes=4)
    dataset = load_data(f"npz:{write(tmp_path / 'a.npz', **values)}", verbose=False)
    assert dataset.class_names == ("0", "1", "2", "3") and dataset.image_shape == (28, 28)
    many = arrays(n_train=300, n_test=3, shape=(2, 2), classes=300)
    wide = load_data(f"npz:{write(tmp_path / 'b.npz', **many)}", verbose=False)
    assert wide.num_classes == 300 and wide.train.labels.dtype == np.uint16


def bad(values: dict, **changes) -> dict:
    values = dict(values)
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


GOOD = arrays()


@pytest.mark.parametrize(
    "values, message",
    [
        (bad(GOOD, y_test=None), r"lacks y_test; expected exactly x_train, y_train, x_test, "),
        (bad(GOOD, x_val=GOOD["x_test"]), "has unexpected x_val"),
        (bad(GOOD, y_train=np.array([0, 1, None, 2, 0, 1, 2, 0], dtype=object)),
         "y_train is an object array, which needs pickle to load"),
        (bad(GOOD, class_names=np.array(["a", "b", "c"], dtype=object)),
         "class_names is an object array"),
        (bad(GOOD, x_train=GOOD["x_train"].astype(np.float32) / 255),
         r"\[x_train\]: dtype float32; images must be uint8 0..255 \(floats in \[0, 1\]"),
        (bad(GOOD, x_test=np.zeros((4, 6, 5, 2), np.uint8)), r"\[x_test\]: shape \(4, 6, 5, 2\)"),
        (bad(GOOD, x_test=np.zeros((4, 6, 6, 3), np.uint8)), "both need one shape"),
        (bad(GOOD, y_train=GOOD["y_train"][:5]), r"\[y_train\]: 5 labels for 8 images"),
        (bad(GOOD, y_train=GOOD["y_train"].astype(np.float32)), "labels must be integers"),
        (bad(GOOD, y_test=np.array([0, -1, 2, 1])), "label -1 at index 1 is negative"),
        (bad(GOOD, y_test=np.array([0, 1, 7, 1])),
         r"\[y_test\]: label 7 at index 2, but the train labels only go up to 2; add class_names"),
        (bad(GOOD, class_names=np.array(["a", "b"])),
         r"\[y_train\] \(class_names has 2\): label 2 at index 2 is outside 0..1"),
        (bad(GOOD, class_names=np.array(["a", "b", "a"])), "distinct and non-empty"),
        (bad(GOOD, class_names=np.arange(3)), "class names must be a 1-D string array"),
        (bad(GOOD, x_test=np.zeros((0, 6, 5, 3), np.uint8), y_test=np.zeros(0, np.int64)),
         r"\[y_test\]: no examples"),
    ],
    ids=["missing", "unexpected", "object-labels", "object-names", "float-images",
         "two-channels", "shape-mismatch", "count", "float-labels", "negative",
         "test-label-outside", "label-outside-names", "duplicate-names", "numeric-names", "empty"],
)  # fmt: skip
def test_bad_arrays_are_one_line_naming_file_and_array(tmp_path, values, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **values)  # which pickles object arrays; reading must refuse them
    with pytest.raises(DataError, match=message) as info:
        load_data(f"npz:{path}", verbose=False)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_files_that_are_not_npz_archives(tmp_path):
    (tmp_path / "garbage.npz").write_bytes(b"hello, not a zip")
    with pytest.raises(DataError, match="garbage.npz: not a .npz of plain arrays|not a readable"):
        load_data(f"npz:{tmp_path / 'garbage.npz'}", verbose=False)
    np.save(tmp_path / "one.npy", np.zeros(3))
    (tmp_path / "one.npz").write_bytes((tmp_path / "one.npy").read_bytes())
    with pytest.raises(DataError, match="one.npz: a single .npy array, not a .npz"):
        load_data(f"npz:{tmp_path / 'one.npz'}", verbose=False)
    np.save(tmp_path / "obj.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "obj.npz").write_bytes((tmp_path / "obj.npy").read_bytes())
    with pytest.raises(DataError, match="obj.npz: not a .npz of plain arrays"):
        load_data(f"npz:{tmp_path / 'obj.npz'}", verbose=False)
    good = write(tmp_path / "cut.npz", **GOOD)
    good.write_bytes(good.read_bytes()[:-300])
    with pytest.raises(DataError, match="cut.npz: "):
        load_data(f"npz:{good}", verbose=False)
    with pytest.raises(DataError, match=r"nothing.npz: no such file \(npz:FILE names a .npz"):
        load_data(f"npz:{tmp_path / 'nothing.npz'}", verbose=False)
