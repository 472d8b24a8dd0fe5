"""Two local processes joined by jax.distributed (CPU, gloo) train like one."""

import socket
import subprocess
import sys

import numpy as np
import pytest
from flax import serialization

from helpers import write_digits_dir


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_params(run):
    return serialization.msgpack_restore((run / "params.msgpack").read_bytes())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_digits_dir(tmp_path_factory.mktemp("idx"), 640, 100)


FLAGS = ["--model", "mlp", "--epochs", "2", "--batch-size", "64", "--quiet"]


def test_two_processes_finish_with_identical_params_equal_to_one(data_dir, tmp_path):
    port = free_port()
    out = tmp_path / "two"
    base = [sys.executable, "-m", "flaxfit", "train", *FLAGS, "--data-dir", str(data_dir),
            "--out", str(out), "--distributed", "--coordinator", f"127.0.0.1:{port}",
            "--num-processes", "2"]  # fmt: skip
    processes = [
        subprocess.Popen(
            [*base, "--process-id", str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr[-2000:]
    hashes = []
    for i, (stdout, _) in enumerate(outputs):
        line = next(line for line in stdout.splitlines() if line.startswith(f"process {i}/2:"))
        hashes.append(line.split()[-1])
    assert hashes[0] == hashes[1]  # the two replicas hold bit-identical params
    assert "test accuracy" in outputs[0][0] and "test accuracy" not in outputs[1][0]

    single = tmp_path / "one"
    result = subprocess.run(
        [sys.executable, "-m", "flaxfit", "train", *FLAGS, "--data-dir", str(data_dir),
         "--out", str(single)], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    two, one = read_params(out), read_params(single)
    for name in one:
        for leaf in one[name]:
            # Same seed and global batch; only the order of the gradient sum differs.
            np.testing.assert_allclose(two[name][leaf], one[name][leaf], rtol=1e-4, atol=1e-5)
