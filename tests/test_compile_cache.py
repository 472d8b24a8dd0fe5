"""The `flaxfit` command's persistent compilation cache: filled, reused, bit-exact, off on demand.

Resume across processes with a warm cache is checked in test_verify.py, whose
`verify-resume` trains cold first and then stops and continues from the cache.
"""

import json

import jax
import numpy as np
import pytest

from flaxfit.cli import main
from flaxfit.runs.compile_cache import (
    DISABLE_ENV,
    compile_cache,
    compile_cache_disabled,
    default_compile_cache_dir,
)
from helpers import write_digits_dir


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_digits_dir(tmp_path_factory.mktemp("idx"), 320, 80)


def train(data_dir, out, *flags):
    """Train softmax for an epoch into `out` in this process, as a new process would:
    with JAX's in-memory caches emptied, so every program is compiled or read from disk."""
    jax.clear_caches()
    code = main(["train", "--model", "softmax", "--epochs", "1", "--batch-size", "32",
                 "--data-dir", str(data_dir), "--out", str(out), "--quiet", *flags])  # fmt: skip
    assert code == 0
    history = json.loads((out / "history.json").read_text())
    return history["sessions"][-1], (out / "params.msgpack").read_bytes()


def entries():
    directory = default_compile_cache_dir()
    return sorted(directory.iterdir()) if directory.exists() else []


def test_the_second_train_reads_every_program_from_the_cache_bit_exactly(data_dir, tmp_path):
    cold, cold_params = train(data_dir, tmp_path / "cold")
    assert cold["programs"] > 0 and cold["from_cache"] == 0
    assert len(entries()) >= cold["programs"]  # and init's programs, too
    warm, warm_params = train(data_dir, tmp_path / "warm")
    assert warm["from_cache"] == warm["programs"] == cold["programs"]
    assert warm_params == cold_params

    for entry in entries():  # as a crash in the middle of JAX's in-place write leaves one
        entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    with pytest.warns(UserWarning, match="Error reading persistent compilation cache entry"):
        damaged, damaged_params = train(data_dir, tmp_path / "damaged")
    assert damaged["from_cache"] == 0  # compiled again, not loaded half
    assert damaged_params == cold_params


def test_the_flag_and_the_environment_variable_turn_the_cache_off(data_dir, tmp_path, monkeypatch):
    session, _ = train(data_dir, tmp_path / "run", "--no-compile-cache")
    assert session["from_cache"] == 0
    assert entries() == []
    monkeypatch.setenv(DISABLE_ENV, "1")
    jax.clear_caches()
    assert main(["evaluate", "--run", str(tmp_path / "run")]) == 0  # compiles the predictions
    assert entries() == []


def test_the_cache_follows_flaxfit_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FLAXFIT_CACHE", str(tmp_path))
    assert default_compile_cache_dir() == tmp_path / "xla"


@pytest.mark.parametrize("value, disabled", [("", False), ("0", False), ("1", True), ("yes", True)])
def test_the_environment_variable(value, disabled):
    assert compile_cache_disabled({DISABLE_ENV: value}) is disabled


def test_the_context_puts_jax_settings_back(tmp_path):
    before = (
        jax.config.jax_compilation_cache_dir,
        jax.config.jax_persistent_cache_min_compile_time_secs,
    )
    with compile_cache(tmp_path / "xla") as path:
        assert jax.config.jax_compilation_cache_dir == str(path)
        # Else JAX writes only compiles over 1 s: none of softmax's, few of cnn1's.
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 0
        jax.jit(lambda x: x * 3)(np.float32(1))
    assert len(list(path.iterdir())) == 1
    assert (
        jax.config.jax_compilation_cache_dir,
        jax.config.jax_persistent_cache_min_compile_time_secs,
    ) == before
