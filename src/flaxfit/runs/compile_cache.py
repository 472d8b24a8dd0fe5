"""JAX's persistent compilation cache, in a folder of flaxfit's cache directory.

XLA compiles the programs of a run (the scanned epoch, evaluation, the finite
check) afresh in every process: for cnn1 that is seconds of every `flaxfit
train`, `evaluate` or `export`. JAX can keep each compiled executable on disk,
keyed by a hash of the program, its compile options, the devices and the
jax/jaxlib versions, and read it back instead of compiling. A cache hit loads
the executable XLA built for the same key, so a run trained, resumed or
evaluated from the cache computes bit for bit what it would compiled afresh
(tests/test_compile_cache.py trains both ways and compares).

Only the `flaxfit` command turns it on (importing flaxfit changes no JAX
setting); `--no-compile-cache` or FLAXFIT_NO_COMPILE_CACHE=1 turn it off. In
Python: `with compile_cache(): ...`, or `enable_compile_cache()` for the rest
of the process.

What it costs: a file per program (cnn1's 49 take 0.4 MB; nothing evicts them,
delete the folder to reclaim the space). JAX 0.10 writes an entry in place,
not by rename, so a process can read an entry another is still writing, and a
crash can leave one cut short. Such an entry fails zlib's checksum: JAX warns
and compiles instead of loading it (tests/test_compile_cache.py cuts entries
short to check), but does not rewrite it, so the warning comes back until the
folder is deleted.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Set to anything but "" or "0" to keep `flaxfit` from using the cache.
DISABLE_ENV = "FLAXFIT_NO_COMPILE_CACHE"
#: The cache's folder inside `flaxfit.data.default_cache_dir()`.
SUBDIR = "xla"

# JAX writes only compiles slower than this (default 1 s), which would leave out
# most of flaxfit's programs on a fast machine; 0 writes all of them (a few ms each).
_SETTINGS = {
    "jax_compilation_cache_dir": None,  # filled in with the directory
    "jax_persistent_cache_min_compile_time_secs": 0.0,
}


def default_compile_cache_dir() -> Path:
    """Where `flaxfit` keeps compiled programs: `default_cache_dir()`/xla.

    Follows $FLAXFIT_CACHE (then $XDG_CACHE_HOME/flaxfit, ~/.cache/flaxfit) like the
    data cache, so tests and users who move one move both.
    """
    from flaxfit.data import default_cache_dir

    return default_cache_dir() / SUBDIR


def compile_cache_disabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether FLAXFIT_NO_COMPILE_CACHE asks `flaxfit` not to use the cache."""
    return environ.get(DISABLE_ENV, "") not in ("", "0")


def enable_compile_cache(directory: str | os.PathLike | None = None) -> Path:
    """Keep compiled XLA programs in `directory` from now on, in this process.

    Args:
        directory: the cache folder, created on the first write; default
            `default_compile_cache_dir()`. Share it only with people you trust:
            JAX runs what it finds there.

    Returns:
        The directory used.
    """
    path = Path(directory) if directory is not None else default_compile_cache_dir()
    _apply({**_SETTINGS, "jax_compilation_cache_dir": str(path)})
    return path


@contextmanager
def compile_cache(directory: str | os.PathLike | None = None) -> Iterator[Path]:
    """Use the persistent compilation cache in `directory` inside the block only.

    JAX's settings are put back afterwards, so a program (or a test) that calls
    `flaxfit.cli.main` twice is left as it was.
    """
    import jax

    before = {name: getattr(jax.config, name) for name in _SETTINGS}
    path = enable_compile_cache(directory)
    try:
        yield path
    finally:
        _apply(before)


def _apply(settings: dict[str, Any]) -> None:
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    for name, value in settings.items():
        jax.config.update(name, value)
    # JAX opens its cache once, at the first compile that finds a directory set;
    # resetting makes the next compile open this one even if the process compiled before.
    compilation_cache.reset_cache()
