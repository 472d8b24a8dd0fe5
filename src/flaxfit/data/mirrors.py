"""Download the canonical .gz files from public mirrors, checking exact size and sha256.

A file is downloaded into a temp directory and used only once its size and sha256 match; a
failed file is deleted at once and the caller's temp directory goes afterwards, so nothing
partial is left behind. Tests replace `fetch_url` and the mirror lists and checksum tables.
"""

import hashlib
import urllib.request
from http.client import HTTPException
from pathlib import Path
from urllib.error import HTTPError

from .dataset import DataError

# name -> (size in bytes, sha256) of the canonical gzip files.
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": (
        9912422,
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    ),
    "train-labels-idx1-ubyte.gz": (
        28881,
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    ),
    "t10k-images-idx3-ubyte.gz": (
        1648877,
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    ),
    "t10k-labels-idx1-ubyte.gz": (
        4542,
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
}
MNIST_MIRRORS = [
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
]

# Zalando publishes md5s of these files (train-images 8d4fb7e6c68d591d4c3dfef9ec88bf0d,
# train-labels 25c81989df183df01b3e8a0aad5dffbe, t10k-images bef4ecab320f06d8554ea6380940ec79,
# t10k-labels bb300cfdad3c16e7a12a480ee83cd310); the sizes and sha256s below are of the files
# with those md5s (they agree with the ones TensorFlow Datasets pins).
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": (
        26421880,
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    ),
    "train-labels-idx1-ubyte.gz": (
        29515,
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    ),
    "t10k-images-idx3-ubyte.gz": (
        4422102,
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    ),
    "t10k-labels-idx1-ubyte.gz": (
        5148,
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    ),
}
FASHION_MNIST_MIRRORS = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]

# Debian's dataset-fashion-mnist ships the same compressed data with the gzip header's file
# name and timestamp stripped, so the files differ from the canonical ones in their first
# bytes only. (Checked: restoring the name and the 2017-08-31 timestamps gives back files with
# Zalando's md5s.) Their own sizes and sha256s:
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_DEBIAN_FILES = {
    "train-images-idx3-ubyte.gz": (
        26421856,
        "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    ),
    "train-labels-idx1-ubyte.gz": (
        29491,
        "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    ),
    "t10k-images-idx3-ubyte.gz": (
        4422079,
        "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    ),
    "t10k-labels-idx1-ubyte.gz": (
        5125,
        "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    ),
}

# Seconds to wait for a connection and for each read to make progress; a dead network fails
# fast instead of hanging.
TIMEOUT_S = 15.0
_CHUNK = 1 << 16


def fetch_url(url: str, dest: Path, *, max_bytes: int, timeout: float = TIMEOUT_S) -> None:
    """Download `url` to the file `dest`, reading at most `max_bytes` + 1 bytes.

    Raises:
        OSError: any network failure (urllib's URLError and socket timeouts are OSErrors).
    """
    request = urllib.request.Request(url, headers={"User-Agent": "flaxfit"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(dest, "wb") as f:
        remaining = max_bytes + 1  # one extra byte reveals an oversized file
        while remaining > 0 and (chunk := response.read(min(_CHUNK, remaining))):
            f.write(chunk)
            remaining -= len(chunk)


def file_sha256(path: Path) -> str:
    """sha256 of a file's content, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_file(path: Path, size: int, sha256: str, what: str) -> None:
    """Raise DataError unless the file at `path` has exactly `size` bytes and this sha256."""
    found = path.stat().st_size
    if found != size:
        raise DataError(f"{what}: expected {size} bytes, got {found}")
    found_sha = file_sha256(path)
    if found_sha != sha256:
        raise DataError(
            f"{what}: sha256 {found_sha} does not match the expected {sha256} "
            "(corrupted or altered file)"
        )


def download_verified(
    base_url: str, files: dict[str, tuple[int, str]], work_dir: Path
) -> dict[str, Path]:
    """Download each of `files` from `base_url` into `work_dir` and check size and sha256.

    Args:
        base_url: mirror URL ending in "/".
        files: file name -> (size, sha256).
        work_dir: an empty temp directory the caller removes afterwards.

    Returns:
        The verified local path of each file, by name.

    Raises:
        DataError: a download failed or a file did not match; the failed file is deleted.
    """
    paths = {}
    for name, (size, sha256) in files.items():
        path = work_dir / name
        url = base_url + name
        try:
            fetch_url(url, path, max_bytes=size)
            check_file(path, size, sha256, url)
        except BaseException as e:
            path.unlink(missing_ok=True)
            # Network failures come as OSError (URLError, timeouts), HTTPException (a cut
            # connection) or ValueError (a malformed URL); turn those into one error type.
            if isinstance(e, DataError) or not isinstance(e, OSError | HTTPException | ValueError):
                raise
            # URLError's str is "<urlopen error ...>"; its reason reads better. HTTPError's str
            # has the status code, which its reason lacks.
            reason = e if isinstance(e, HTTPError) else getattr(e, "reason", None) or e
            raise DataError(f"{url}: {type(e).__name__}: {reason}") from e
        paths[name] = path
    return paths
