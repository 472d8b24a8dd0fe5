"""The strict IDX reader and writer, the standard four-file layout, and the Split type."""

import gzip
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra import numpy as hnp

from flaxfit.data import DataError, Dataset, Split, read_idx, read_idx_dir, write_idx


def idx_bytes(dims, payload: bytes, code: int = 0x08) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_write_then_read_round_trips(tmp_path, tiny_arrays, suffix):
    images = tiny_arrays["train_images"]
    path = write_idx(tmp_path / f"images{suffix}", images)
    back = read_idx(path)
    assert back.dtype == np.uint8 and back.shape == (12, 28, 28)
    np.testing.assert_array_equal(back, images)
    back[0, 0, 0] ^= 1  # readers hand out ordinary writable arrays


def test_gz_file_is_really_compressed_and_raw_is_the_exact_format(tmp_path):
    labels = np.array([5, 0, 4], dtype=np.uint8)
    write_idx(tmp_path / "l", labels)
    write_idx(tmp_path / "l.gz", labels)
    assert (tmp_path / "l").read_bytes() == b"\x00\x00\x08\x01\x00\x00\x00\x03\x05\x00\x04"
    assert gzip.decompress((tmp_path / "l.gz").read_bytes()) == (tmp_path / "l").read_bytes()


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=4, max_side=6)))
def test_round_trip_any_uint8_shape(tmp_path_factory, array):
    path = write_idx(tmp_path_factory.mktemp("h") / "a.gz", array)
    np.testing.assert_array_equal(read_idx(path), array)


def test_write_refuses_non_uint8(tmp_path):
    with pytest.raises(DataError, match="uint8"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.float32))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x00", "bad magic number"),
        # mtime=0: the bytes are part of the test id, which must not change between runs
        (gzip.compress(idx_bytes((1,), b"\x00"), mtime=0), "looks gzip-compressed: name it"),
        (idx_bytes((1,), b"\x00\x00\x00\x00", code=0x0C), r"int32 \(code 0x0c\) is unsupported"),
        (idx_bytes((1,), b"\x00", code=0x42), "unknown dtype code 0x42"),
        (idx_bytes((3,), b"\x00\x01"), r"expected 3 bytes of payload .* found 2 \(file truncated"),
        (idx_bytes((3,), b"\x00\x01\x02\x03"), "found 4 .trailing bytes"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x01", "header needs 16 bytes"),
        (b"\x00\x00", "too short"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
    ],
)
def test_corrupt_raw_file_is_refused_with_file_and_problem(tmp_path, content, message):
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_payload_inside_gzip(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes((60000,), bytes(59990))))
    with pytest.raises(DataError, match="expected 60000 bytes of payload .* found 59990"):
        read_idx(path)


@pytest.mark.parametrize(
    "content",
    [b"not gzip at all", gzip.compress(idx_bytes((3,), b"\x00\x01\x02"), mtime=0)[:-6], b""],
    ids=["garbage", "cut-short", "empty"],
)
def test_corrupt_gzip_is_a_data_error(tmp_path, content):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: not a valid gzip file"):
        read_idx(path)


def test_raw_file_named_gz_gets_a_hint(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(idx_bytes((1,), b"\x00"))
    with pytest.raises(DataError, match="uncompressed IDX file: drop the .gz"):
        read_idx(path)


def test_unreadable_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "absent")


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_dir_reads_raw_or_gz_in_file_order(tmp_path, tiny_arrays, write_idx_dir, suffix):
    train, test = read_idx_dir(write_idx_dir(tmp_path / "d", tiny_arrays, suffix))
    assert (len(train), len(test)) == (12, 5)
    np.testing.assert_array_equal(train.images, tiny_arrays["train_images"])
    np.testing.assert_array_equal(train.labels, tiny_arrays["train_labels"])
    np.testing.assert_array_equal(test.images, tiny_arrays["test_images"])
    np.testing.assert_array_equal(test.labels, tiny_arrays["test_labels"])


def test_read_idx_dir_accepts_a_mix_of_raw_and_gz(idx_dir, tiny_arrays):
    gz = idx_dir / "t10k-labels-idx1-ubyte.gz"
    (idx_dir / "t10k-labels-idx1-ubyte").write_bytes(gzip.decompress(gz.read_bytes()))
    gz.unlink()
    _, test = read_idx_dir(idx_dir)
    np.testing.assert_array_equal(test.labels, tiny_arrays["test_labels"])


def test_missing_file_lists_expected_and_present(idx_dir):
    (idx_dir / "t10k-images-idx3-ubyte.gz").unlink()
    (idx_dir / "t10k-images.idx3-ubyte.gz").write_bytes(b"misnamed")
    with pytest.raises(DataError) as info:
        read_idx_dir(idx_dir)
    message = str(info.value)
    assert "missing t10k-images-idx3-ubyte (raw or .gz)" in message
    assert "expected the four files train-images-idx3-ubyte, train-labels-idx1-ubyte" in message
    assert "found: t10k-images.idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz" in message


def test_not_a_directory(tmp_path):
    with pytest.raises(DataError, match="not a directory; pass the directory"):
        read_idx_dir(tmp_path / "nope")


def test_label_out_of_range_names_file_and_index(tmp_path, tiny_arrays, write_idx_dir):
    tiny_arrays["train_labels"][7] = 10
    directory = write_idx_dir(tmp_path / "d", tiny_arrays)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: label 10 at index 7"):
        read_idx_dir(directory)


def test_image_and_label_counts_must_agree(tmp_path, tiny_arrays, write_idx_dir):
    tiny_arrays["test_labels"] = tiny_arrays["test_labels"][:4]
    directory = write_idx_dir(tmp_path / "d", tiny_arrays)
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz has 5 images but .*t10k-lab"):
        read_idx_dir(directory)


@pytest.mark.parametrize(
    ("role", "array", "message"),
    [
        ("train_images", np.zeros((12, 28, 27), np.uint8), r"images of shape \(N, 28, 28\)"),
        ("train_images", np.zeros((12, 784), np.uint8), r"images of shape \(N, 28, 28\)"),
        ("test_labels", np.zeros((5, 1), np.uint8), r"labels of shape \(N,\)"),
    ],
)
def test_wrong_shapes_are_refused(tmp_path, tiny_arrays, write_idx_dir, role, array, message):
    tiny_arrays[role] = array
    with pytest.raises(DataError, match=message):
        read_idx_dir(write_idx_dir(tmp_path / "d", tiny_arrays))


def test_empty_split_is_refused(tmp_path, tiny_arrays, write_idx_dir):
    tiny_arrays["test_images"] = np.zeros((0, 28, 28), np.uint8)
    tiny_arrays["test_labels"] = np.zeros(0, np.uint8)
    with pytest.raises(DataError, match="contains no images"):
        read_idx_dir(write_idx_dir(tmp_path / "d", tiny_arrays))


def test_split_validates_its_arrays():
    images, labels = np.zeros((3, 28, 28), np.uint8), np.array([0, 9, 1], np.uint8)
    assert len(Split(images, labels)) == 3
    for bad_images, bad_labels in [
        (images.astype(np.float32), labels),
        (images[0], labels),  # one image, not a batch
        (np.zeros((3, 28, 28, 2), np.uint8), labels),  # two channels: neither gray nor RGB
        (images, labels.astype(np.int64)),
        (images, labels[:2]),
        (images, np.array([0, 10, 1], np.uint8)),
        (images.tolist(), labels),
    ]:
        with pytest.raises(DataError):
            Split(bad_images, bad_labels)


def test_a_slice_of_a_split_is_a_split_of_those_examples(tiny_arrays):
    split = Split(tiny_arrays["train_images"], tiny_arrays["train_labels"])
    for index in [slice(5), slice(2, 9), slice(None, None, 3), slice(-4, None), slice(3, 3)]:
        part = split[index]
        assert isinstance(part, Split)
        np.testing.assert_array_equal(part.images, split.images[index])
        np.testing.assert_array_equal(part.labels, split.labels[index])
        assert len(part) == len(range(len(split))[index])
    assert len(split[:100]) == len(split)  # like any slice, clipped to the length
    first = split[:5]
    assert np.shares_memory(first.images, split.images)  # a view: no copy of 47 MB
    assert len(first[1:]) == 4  # and slices again


@pytest.mark.parametrize("index", [0, -1, np.int64(2), (0, 1), [0, 1]])
def test_a_split_refuses_anything_but_a_slice(tiny_arrays, index):
    split = Split(tiny_arrays["train_images"], tiny_arrays["train_labels"])
    with pytest.raises(TypeError, match=r"only a slice, e.g. split\[:2000\].*split.images"):
        split[index]


def test_a_split_does_not_unpack_like_a_pair(tiny_arrays):
    split = Split(tiny_arrays["train_images"], tiny_arrays["train_labels"])
    with pytest.raises(TypeError, match="split.images and split.labels"):
        images, labels = split


def test_dataset_content_hash_tracks_the_data(tiny_arrays):
    def dataset(arrays):
        return Dataset(
            "mnist",
            Split(arrays["train_images"], arrays["train_labels"]),
            Split(arrays["test_images"], arrays["test_labels"]),
            source="test",
        )

    first = dataset(tiny_arrays)
    assert first.num_classes == 10 and first.sha256 == {}
    digest = first.content_sha256()
    assert dataset({k: v.copy() for k, v in tiny_arrays.items()}).content_sha256() == digest
    tiny_arrays["test_images"][0, 0, 0] ^= 1
    assert dataset(tiny_arrays).content_sha256() != digest
    # Moving one example from train to test is a different dataset too.
    moved = {
        "train_images": tiny_arrays["train_images"][:-1],
        "train_labels": tiny_arrays["train_labels"][:-1],
        "test_images": np.concatenate(
            [tiny_arrays["train_images"][-1:], tiny_arrays["test_images"]]
        ),
        "test_labels": np.concatenate(
            [tiny_arrays["train_labels"][-1:], tiny_arrays["test_labels"]]
        ),
    }
    assert dataset(moved).content_sha256() != dataset(tiny_arrays).content_sha256()
