"""`flaxfit train` asks XLA:GPU for deterministic kernels, unless XLA_FLAGS already decides."""

import os

import pytest

from flaxfit.cli import main
from flaxfit.runs.xla_env import DETERMINISTIC_GPU_FLAG, request_deterministic_gpu


def test_the_flag_is_added_after_the_users_other_flags():
    environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    assert request_deterministic_gpu(environ)
    assert (
        environ["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=4 {DETERMINISTIC_GPU_FLAG}"
    )
    environ = {}
    assert request_deterministic_gpu(environ)
    assert environ["XLA_FLAGS"] == DETERMINISTIC_GPU_FLAG


@pytest.mark.parametrize("value", ["true", "false"])
def test_a_users_own_choice_wins(value):
    environ = {"XLA_FLAGS": f"--xla_gpu_deterministic_ops={value}"}
    assert not request_deterministic_gpu(environ)
    assert environ["XLA_FLAGS"] == f"--xla_gpu_deterministic_ops={value}"


@pytest.mark.parametrize("command", ["train", "verify-resume"])
def test_the_training_commands_set_it_before_any_work(command, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    empty = tmp_path / "empty"
    empty.mkdir()
    # No IDX files there: the command fails early (exit 2), after the flag was set.
    out = ["--out", str(tmp_path / "run")] if command == "train" else []
    assert main([command, "--model", "softmax", "--data-dir", str(empty), *out]) == 2
    assert DETERMINISTIC_GPU_FLAG in os.environ["XLA_FLAGS"]
    assert "--xla_cpu_enable_fast_math=false" in os.environ["XLA_FLAGS"]


def test_other_commands_leave_xla_flags_alone(tmp_path, monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert main(["evaluate", "--run", str(tmp_path)]) == 2  # not a run: fails, flags untouched
    assert "XLA_FLAGS" not in os.environ
