"""CIFAR-10 from a synthetic archive in the exact binary layout, and the resumable download.

No test reaches the internet: the archive is built here with tarfile (the real member names,
records of 1 label byte + 3 072 channel-major pixel bytes), the pinned size and sha256 are
replaced by the synthetic archive's, and "the server" is an HTTP server on 127.0.0.1 that
can cut a transfer, ignore a resume request or serve the wrong bytes.
"""

import hashlib
import http.server
import io
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from flaxfit.data import DataError, cifar, download, load_data, load_dataset
from flaxfit.data import cache as cache_mod

RECORDS = 7  # per batch here; the real archive has 10 000
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")  # fmt: skip


def make_batches(records: int = RECORDS, seed: int = 0) -> dict[str, tuple]:
    """{member name: (images (N, 32, 32, 3), labels (N,), the .bin bytes)} for all six."""
    rng = np.random.default_rng(seed)
    batches = {}
    for name in cifar.TRAIN_BATCHES + cifar.TEST_BATCHES:
        images = rng.integers(0, 256, (records, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, records, dtype=np.uint8)
        # On disk: each record is the label, then the red plane, green plane, blue plane.
        planes = images.transpose(0, 3, 1, 2).reshape(records, 3072)
        data = np.concatenate([labels[:, None], planes], axis=1).tobytes()
        batches[name] = (images, labels, data)
    return batches


META = ("\n".join(CLASSES) + "\n\n").encode()  # the real file ends in a blank line too


def write_archive(path: Path, members: dict[str, bytes], *, level: int = 6) -> Path:
    """A .tar.gz holding cifar-10-batches-bin/<name> for each of `members`, plus a readme."""
    with tarfile.open(path, "w:gz", compresslevel=level) as tar:
        folder = tarfile.TarInfo(cifar.MEMBER_DIR)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        for name, data in members.items():
            info = tarfile.TarInfo(f"{cifar.MEMBER_DIR}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def standard_members(batches: dict[str, tuple]) -> dict[str, bytes]:
    members = {name: data for name, (_, _, data) in batches.items()}
    return {**members, cifar.META_FILE: META, "readme.html": b"<html>not read</html>"}


def pin(monkeypatch, archive: Path) -> None:
    """Make `archive` the one the loader expects, as the real one is pinned."""
    data = archive.read_bytes()
    monkeypatch.setattr(cifar, "ARCHIVE_SIZE", len(data))
    monkeypatch.setattr(cifar, "ARCHIVE_SHA256", hashlib.sha256(data).hexdigest())


def expected(batches: dict[str, tuple]) -> tuple[np.ndarray, ...]:
    train = [batches[n] for n in cifar.TRAIN_BATCHES]
    test = batches["test_batch.bin"]
    return (np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train]),
            test[0], test[1])  # fmt: skip


@pytest.fixture
def batches(monkeypatch):
    monkeypatch.setattr(cifar, "RECORDS_PER_BATCH", RECORDS)
    monkeypatch.setattr(cifar, "ARCHIVE_URL", "http://127.0.0.1:9/never-asked")
    monkeypatch.setattr(download, "RETRY_WAIT_S", 0.0)
    return make_batches()


@pytest.fixture
def archive(tmp_path, batches, monkeypatch):
    """A good synthetic archive in tmp_path/copy/, pinned as the canonical one."""
    (tmp_path / "copy").mkdir()
    path = write_archive(tmp_path / "copy" / cifar.ARCHIVE_NAME, standard_members(batches))
    pin(monkeypatch, path)
    return path


def assert_cifar(dataset, batches) -> None:
    train_x, train_y, test_x, test_y = expected(batches)
    assert dataset.name == "cifar10" and dataset.class_names == CLASSES
    assert dataset.image_shape == (32, 32, 3) and dataset.num_classes == 10
    np.testing.assert_array_equal(dataset.train.images, train_x)
    np.testing.assert_array_equal(dataset.train.labels, train_y)
    np.testing.assert_array_equal(dataset.test.images, test_x)
    np.testing.assert_array_equal(dataset.test.labels, test_y)
    assert dataset.train.images.flags.c_contiguous


# ---- reading the archive and the .bin files ------------------------------------------------


def test_the_archive_is_read_in_place_and_only_its_seven_members(archive, batches, monkeypatch):
    opened = []
    real = tarfile.TarFile.extractfile
    monkeypatch.setattr(tarfile.TarFile, "extractfile",
                        lambda self, m: opened.append(m.name) or real(self, m))  # fmt: skip
    for method in ("extract", "extractall"):  # nothing goes to disk
        monkeypatch.setattr(tarfile.TarFile, method, lambda *a, **k: pytest.fail("extracted"))
    before = sorted(p.name for p in archive.parent.iterdir())
    dataset = load_data("cifar10", archive.parent, verbose=False)
    assert_cifar(dataset, batches)
    assert len(dataset.train) == 5 * RECORDS and len(dataset.test) == RECORDS
    assert sorted(opened) == sorted(
        f"{cifar.MEMBER_DIR}/{n}"
        for n in (*cifar.TRAIN_BATCHES, "test_batch.bin", "batches.meta.txt")
    )  # not readme.html
    assert sorted(p.name for p in archive.parent.iterdir()) == before
    assert dataset.sha256 == {cifar.ARCHIVE_NAME: cifar.ARCHIVE_SHA256}
    assert dataset.source == f"data dir {archive.parent}"


def test_the_full_size_layout_gives_50000_and_10000_images(tmp_path, monkeypatch):
    # The real record count with cheap (compressible) pixels: the counts and shapes the
    # real archive gives, 184 MB of records read from the stream.
    records = cifar.RECORDS_PER_BATCH
    assert records == 10_000
    members = {}
    for i, name in enumerate(cifar.TRAIN_BATCHES + cifar.TEST_BATCHES):
        record = np.zeros((records, cifar.RECORD_BYTES), np.uint8)
        record[:, 0] = np.arange(records) % 10
        record[:, 1 + 1024 : 1 + 2048] = i  # the green plane says which batch it came from
        members[name] = record.tobytes()
    path = write_archive(tmp_path / cifar.ARCHIVE_NAME, {**members, cifar.META_FILE: META}, level=1)
    pin(monkeypatch, path)
    dataset = load_data("cifar10", tmp_path, verbose=False)
    assert dataset.train.images.shape == (50_000, 32, 32, 3)
    assert dataset.test.images.shape == (10_000, 32, 32, 3)
    assert dataset.train.labels.dtype == np.uint8 and dataset.nbytes == 60_000 * 3073
    green = dataset.train.images[::records, 0, 0]
    np.testing.assert_array_equal(green, [[0, b, 0] for b in range(5)])
    assert (dataset.test.images[..., 1] == 5).all() and (dataset.test.images[..., 0] == 0).all()


@pytest.mark.parametrize("where", [cifar.MEMBER_DIR, "."])
def test_extracted_bin_files_are_a_data_dir_too(tmp_path, batches, where):
    folder = tmp_path / "copy" / where
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in standard_members(batches).items():
        (folder / name).write_bytes(data)
    dataset = load_data("cifar10", tmp_path / "copy", verbose=False)
    assert_cifar(dataset, batches)
    assert (
        dataset.sha256["test_batch.bin"] == hashlib.sha256(batches["test_batch.bin"][2]).hexdigest()
    )


def test_a_data_dir_without_cifar_says_what_it_looks_for(tmp_path, batches):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"has neither cifar-10-binary.tar.gz nor the extracted "
                                        r".*found: notes.txt"):  # fmt: skip
        load_dataset("cifar10", tmp_path, verbose=False)


def test_extracted_files_missing_or_truncated(tmp_path, batches):
    members = standard_members(batches)
    for name, data in members.items():
        if name != "data_batch_3.bin":
            (tmp_path / name).write_bytes(data)
    with pytest.raises(DataError, match=f"{tmp_path}: lacks data_batch_3.bin"):
        load_data("cifar10", tmp_path, verbose=False)
    (tmp_path / "data_batch_3.bin").write_bytes(members["data_batch_3.bin"][:-5])
    with pytest.raises(
        DataError, match=r"data_batch_3.bin: 21506 bytes, expected 21511 .*truncated"
    ):
        load_data("cifar10", tmp_path, verbose=False)


def test_an_archive_of_the_wrong_size_or_digest_is_refused_before_reading(archive, monkeypatch):
    data = archive.read_bytes()
    archive.write_bytes(data + b"\0")
    with pytest.raises(DataError, match=rf"{cifar.ARCHIVE_NAME}: {len(data) + 1} bytes, expected "
                                        rf"{len(data)} .*download .* again"):  # fmt: skip
        load_data("cifar10", archive.parent, verbose=False)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    archive.write_bytes(bytes(flipped))
    monkeypatch.setattr(cifar, "read_archive", lambda path: pytest.fail("read before checked"))
    with pytest.raises(DataError, match="sha256 [0-9a-f]{64} does not match the expected"):
        load_data("cifar10", archive.parent, verbose=False)


def member_bytes(batches, **changes) -> dict[str, bytes]:
    members = standard_members(batches)
    members.update(changes)
    return {k: v for k, v in members.items() if v is not None}


def bad_label(batches) -> bytes:
    data = bytearray(batches["data_batch_2.bin"][2])
    data[3 * cifar.RECORD_BYTES] = 10  # the 4th record's label
    return bytes(data)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda b: member_bytes(b, **{"test_batch.bin": None}), "lacks test_batch.bin"),
        (lambda b: member_bytes(b, **{"batches.meta.txt": None}), "lacks batches.meta.txt"),
        (
            lambda b: member_bytes(b, **{"data_batch_2.bin": bad_label(b)}),
            "data_batch_2.bin: label 10 at index 3 is outside 0..9",
        ),
        (
            lambda b: member_bytes(b, **{"batches.meta.txt": b"cat\ndog\n"}),
            "expected 10 distinct class names",
        ),
        (
            lambda b: member_bytes(b, **{"data_batch_5.bin": b"\0" * 100}),
            r"data_batch_5.bin: 100 bytes, expected 21511 \(7 records of 3073 bytes; truncated",
        ),
        (
            lambda b: member_bytes(b, **{"data_batch_5.bin": b"\0" * 30000}),
            "data_batch_5.bin has 30000 bytes, more than the 21511",
        ),  # refused before reading
    ],
    ids=["no-test-batch", "no-meta", "label", "meta", "short-member", "long-member"],
)
def test_a_broken_archive_is_one_line_naming_the_member(tmp_path, batches, monkeypatch, make,
                                                        message):  # fmt: skip
    members = make(batches)
    path = write_archive(tmp_path / cifar.ARCHIVE_NAME, members)
    pin(monkeypatch, path)
    with pytest.raises(DataError, match=message) as info:
        load_data("cifar10", tmp_path, verbose=False)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_duplicate_links_and_truncated_archives_are_refused(tmp_path, batches):
    members = standard_members(batches)
    dup = tmp_path / "dup.tar.gz"
    write_archive(dup, members)
    with tarfile.open(dup, "w:gz") as tar:  # the same member twice
        for name in ("test_batch.bin", "test_batch.bin"):
            info = tarfile.TarInfo(f"{cifar.MEMBER_DIR}/{name}")
            info.size = len(members[name])
            tar.addfile(info, io.BytesIO(members[name]))
    with pytest.raises(DataError, match="test_batch.bin appears twice"):
        cifar.read_archive(dup)
    link = tmp_path / "link.tar.gz"
    with tarfile.open(link, "w:gz") as tar:
        info = tarfile.TarInfo(f"{cifar.MEMBER_DIR}/data_batch_1.bin")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(DataError, match="data_batch_1.bin is not a regular file"):
        cifar.read_archive(link)
    cut = tmp_path / "cut.tar.gz"
    write_archive(cut, members)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cut.tar.gz: not a valid .tar.gz archive"):
        cifar.read_archive(cut)
    (tmp_path / "junk.tar.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="not a valid .tar.gz archive"):
        cifar.read_archive(tmp_path / "junk.tar.gz")


# ---- the download --------------------------------------------------------------------------


class Server:
    """A local HTTP server for one file, with Range support and ways to misbehave."""

    def __init__(self) -> None:
        self.payload = b""
        self.cut_after: int | None = None  # close the connection after this many bytes, once
        self.ignore_range = False
        self.requests: list[str | None] = []  # the Range header of each request
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                wanted = self.headers.get("Range")
                server.requests.append(wanted)
                start = 0
                if wanted and not server.ignore_range:
                    start = int(wanted.removeprefix("bytes=").split("-")[0])
                    if start >= len(server.payload):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header(
                        "Content-Range",
                        f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}",
                    )
                else:
                    self.send_response(200)
                body = server.payload[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    body, server.cut_after = body[: server.cut_after], None
                    self.close_connection = True
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{cifar.ARCHIVE_NAME}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(archive, monkeypatch):
    server = Server()
    server.payload = archive.read_bytes()
    monkeypatch.setattr(cifar, "ARCHIVE_URL", server.url)
    yield server
    server.close()


def listing(directory: Path) -> list[str]:
    if not directory.exists():
        return []
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def test_download_is_verified_cached_and_then_not_needed(server, batches, tmp_path, capsys):
    cache_dir = tmp_path / "cache"
    dataset = load_data("cifar10", cache_dir=cache_dir)
    assert_cifar(dataset, batches)
    assert dataset.source == server.url and server.requests == [None]
    # The archive goes once the cache holds its arrays; only the (empty) lock file stays.
    assert listing(cache_dir) == [
        "cifar10.npz",
        "downloads",
        f"downloads/{cifar.ARCHIVE_NAME}.lock",
    ]
    err = capsys.readouterr().err
    assert f"downloading {server.url}" in err and "cached at" in err
    # Not a terminal: plain lines, at most one per 10%, each with bytes and rate.
    progress = [line for line in err.splitlines() if "] " in line and line.endswith("/s")]
    assert 1 <= len(progress) <= 10 and "100%" in progress[-1]
    again = load_data("cifar10", cache_dir=cache_dir)
    assert_cifar(again, batches)
    assert server.requests == [None] and again.source.startswith("cache ")
    cached = cache_mod.load_cache(cache_dir / "cifar10.npz", "cifar10")
    assert cached.class_names == CLASSES and cached.content_sha256() == dataset.content_sha256()


def test_a_cut_transfer_is_resumed_where_it_stopped(server, batches, tmp_path):
    server.cut_after = 1000
    dataset = load_data("cifar10", cache_dir=tmp_path / "cache", verbose=False)
    assert_cifar(dataset, batches)
    assert server.requests == [None, "bytes=1000-"]


def test_an_interrupted_download_resumes_on_the_next_run_and_leaves_no_cache(
    server, batches, tmp_path, monkeypatch
):
    cache_dir = tmp_path / "cache"
    monkeypatch.setattr(download, "ATTEMPTS", 1)  # give up after the first cut
    server.cut_after = 5000
    with pytest.raises(DataError, match=r"kept in .*cifar-10-binary.tar.gz.part, run again to "
                                        "resume"):  # fmt: skip
        load_data("cifar10", cache_dir=cache_dir, verbose=False)
    part = cache_dir / "downloads" / f"{cifar.ARCHIVE_NAME}.part"
    assert part.stat().st_size == 5000
    assert not (cache_dir / "cifar10.npz").exists()  # nothing where the cache looks
    assert not (cache_dir / "downloads" / cifar.ARCHIVE_NAME).exists()
    dataset = load_data("cifar10", cache_dir=cache_dir, verbose=False)
    assert_cifar(dataset, batches)
    assert server.requests == [None, "bytes=5000-"] and not part.exists()


def test_ctrl_c_keeps_the_partial_file_for_the_next_run(server, batches, tmp_path):
    dest = tmp_path / "dl" / cifar.ARCHIVE_NAME
    server.payload = np.random.default_rng(1).integers(0, 256, 1 << 20, np.uint8).tobytes()
    size, sha256 = len(server.payload), hashlib.sha256(server.payload).hexdigest()

    class Interrupting(download.Progress):
        def update(self, done):
            if done >= 3 * (1 << 16):
                raise KeyboardInterrupt

    said = []
    with pytest.raises(KeyboardInterrupt):
        download.download(server.url, dest, size=size, sha256=sha256, say=said.append,
                          progress=Interrupting("", size, io.StringIO()))  # fmt: skip
    part = dest.with_name(dest.name + ".part")
    assert part.stat().st_size == 3 * (1 << 16) and not dest.exists()
    assert "interrupted" in said[-1] and "run again to resume" in said[-1]
    assert download.download(server.url, dest, size=size, sha256=sha256) == dest
    assert dest.read_bytes() == server.payload and not part.exists()
    assert server.requests[-1] == f"bytes={3 * (1 << 16)}-"


def test_a_server_that_does_not_resume_means_starting_over(server, batches, tmp_path):
    dest = tmp_path / "dl" / cifar.ARCHIVE_NAME
    part = dest.with_name(dest.name + ".part")
    part.parent.mkdir()
    part.write_bytes(server.payload[:777])
    server.ignore_range = True
    said = []
    download.download(server.url, dest, size=cifar.ARCHIVE_SIZE, sha256=cifar.ARCHIVE_SHA256,
                      say=said.append)  # fmt: skip
    assert dest.read_bytes() == server.payload
    assert said == ["the server does not resume at byte 777; downloading from the start"]


def test_a_wrong_download_is_deleted_and_the_cache_untouched(server, batches, tmp_path):
    cache_dir = tmp_path / "cache"
    flipped = bytearray(server.payload)
    flipped[100] ^= 0xFF
    server.payload = bytes(flipped)
    with pytest.raises(DataError, match=r"sha256 .* does not match .* download was deleted"):
        load_data("cifar10", cache_dir=cache_dir, verbose=False)
    assert listing(cache_dir) == ["downloads", f"downloads/{cifar.ARCHIVE_NAME}.lock"]
    server.payload += b"more"  # a larger file: stopped one byte past the expected size
    with pytest.raises(DataError, match="larger than the expected"):
        load_data("cifar10", cache_dir=cache_dir, verbose=False)
    assert listing(cache_dir) == ["downloads", f"downloads/{cifar.ARCHIVE_NAME}.lock"]


def test_an_unreachable_server_fails_at_once_with_the_fix(batches, tmp_path):
    start = time.monotonic()
    with pytest.raises(DataError) as info:
        load_data("cifar10", cache_dir=tmp_path / "cache", verbose=False)
    lines = str(info.value).splitlines()
    assert lines[0] == "could not load cifar10 from any source:"
    # The discard port: the connection is refused, so there is nothing to resume.
    assert lines[2].startswith("  - download: http://127.0.0.1:9/never-asked: URLError")
    assert (
        f"download http://127.0.0.1:9/never-asked ({cifar.ARCHIVE_SIZE} bytes, sha256 " in lines[3]
    )
    assert time.monotonic() - start < 5  # no retries after a connection that brought nothing


def test_progress_is_a_bar_redrawn_in_place_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    progress = download.Progress("flaxfit: cifar10: ", 2_000_000, stream)
    progress.begin(0)
    for done in range(0, 2_000_001, 100_000):
        progress.update(done)
    progress.close()
    text = stream.getvalue()
    assert text.startswith("\rflaxfit: cifar10: [") and text.endswith("\n")
    assert text.count("\n") == 1 and "2.0/2.0 MB 100%" in text and "/s" in text
