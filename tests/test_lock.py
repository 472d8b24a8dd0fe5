"""One trainer per run directory: real processes, a real OS lock, released by the kernel."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from flaxfit.runs.lock import RunLock, RunLockedError
from helpers import write_digits_dir

HOLD = """
import sys
from flaxfit.runs.lock import RunLock
lock = RunLock(sys.argv[1]).acquire()
lock.announce()
print("locked", flush=True)
sys.stdin.read()  # hold it until the test closes our stdin (or kills us)
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_digits_dir(tmp_path_factory.mktemp("idx"), 600, 100)


def train_command(data_dir, out, epochs=2):
    return [sys.executable, "-m", "flaxfit", "train", "--model", "softmax", "--epochs",
            str(epochs), "--batch-size", "50", "--data-dir", str(data_dir),
            "--out", str(out)]  # fmt: skip


def snapshot(directory):
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in directory.rglob("*") if p.is_file()}


def hold(directory):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdout.readline() == "locked\n"  # it holds the lock from here on
    return holder


def test_a_second_trainer_exits_2_naming_the_first_and_changes_nothing(data_dir, tmp_path):
    out = tmp_path / "run"
    holder = hold(out)
    try:
        before = snapshot(out)
        second = subprocess.run(train_command(data_dir, out), capture_output=True, text=True)
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert re.fullmatch(
            rf"flaxfit train: error: {re.escape(str(out))} is being trained by process "
            rf"{holder.pid} \(started \d\d:\d\d:\d\d\); wait for it or use another --out",
            lines[0],
        ), lines[0]
        assert snapshot(out) == before
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    # The holder is gone: the directory trains normally now.
    first = subprocess.run(train_command(data_dir, out), capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().splitlines()[-1].startswith("test accuracy: ")


def test_a_sigkilled_holder_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "run"
    holder = hold(out)
    with pytest.raises(RunLockedError, match=f"process {holder.pid}"):
        RunLock(out).acquire()
    holder.kill()
    holder.wait(timeout=60)
    RunLock(out).acquire().release()  # the kernel dropped the lock with the process


def test_a_running_trainer_is_not_disturbed_by_a_second_one(data_dir, tmp_path):
    out = tmp_path / "run"
    # Many epochs, so it is still training when the second one arrives; stopped by SIGINT.
    first = subprocess.Popen(train_command(data_dir, out, epochs=10_000), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        for line in first.stdout:  # a saved checkpoint: it is training, lock announced
            if line.startswith("checkpoint: saving step 24"):
                break
        second = subprocess.run(train_command(data_dir, out, epochs=10_000),
                                capture_output=True, text=True)  # fmt: skip
        assert second.returncode == 2
        assert f"is being trained by process {first.pid} (started " in second.stderr
        assert first.poll() is None  # still training
    finally:
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 130, err  # stopped as asked, checkpoint saved
    assert "checkpoint saved in" in err
    check = subprocess.run([sys.executable, "-m", "flaxfit", "check", "--run", str(out)],
                           capture_output=True, text=True)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_lock_that_fails_its_checks_leaves_no_directory(tmp_path, data_dir):
    out = tmp_path / "new" / "run"
    bad = subprocess.run(train_command(data_dir, out) + ["--batch-size", "100000"],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and "batch" in bad.stderr
    assert not out.exists()


def test_the_lock_file_says_who_holds_it(tmp_path):
    lock = RunLock(tmp_path / "run").acquire()
    try:
        lock.announce()
        text = (tmp_path / "run" / ".lock").read_text()
        assert f'"pid": {os.getpid()}' in text
        assert time.strftime("%Y-") in text
    finally:
        lock.release()
