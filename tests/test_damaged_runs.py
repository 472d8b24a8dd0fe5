"""Every command against a run with each of its files damaged in turn.

Whatever is damaged, a command either does not read that file (and works as
usual), or prints one line naming it and exits 2; `flaxfit check` exits 1.
Nothing in the run directory changes, except where `flaxfit train` rebuilds
a deleted params.msgpack from the final checkpoint.
"""

import shutil

import numpy as np
import pytest
from PIL import Image

from flaxfit.cli import main
from helpers import make_digits, write_digits_dir

TRAIN = ["--model", "softmax", "--epochs", "2", "--batch-size", "50"]
#: What load_run reads: every command that loads a run stops on damage here.
LOADED = ("SHA256SUMS", "config.json", "history.json", "params.msgpack")
FILES = (
    *LOADED,
    "metrics.csv",
    "manifest.json",
    "checkpoints/24/meta/metadata",
    "checkpoints/24/state",
)
DAMAGES = ("flipped", "truncated", "emptied", "deleted")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("damage")
    data = write_digits_dir(root / "idx", 600, 100)
    run = root / "run"
    assert main(["train", *TRAIN, "--data-dir", str(data), "--out", str(run), "--quiet"]) == 0
    image = root / "seven.png"
    Image.fromarray(make_digits(1)[0][0]).save(image)
    return run, data, image


def _target(run, name):
    path = run / name
    if path.is_dir():  # the largest file there: the checkpoint's weights
        return max((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    return path


def damage(path, how):
    data = path.read_bytes()
    if how == "flipped":
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(flipped))
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "emptied":
        path.write_bytes(b"")
    else:
        path.unlink()


def snapshot(directory):
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in directory.rglob("*") if p.is_file()}


def commands(run, data, image, elsewhere):
    return {
        "evaluate": ["evaluate", "--run", str(run)],
        "predict": ["predict", "--run", str(run), str(image)],
        "params": ["params", "--run", str(run)],
        "plot": ["plot", "--run", str(run), "--out", str(elsewhere / "plots")],
        "export": ["export", "--run", str(run), "--out", str(elsewhere / "p.jaxexport")],
        "serve": ["serve", "--run", str(run), "--port", "0"],
        "diff-runs": ["diff-runs", str(run), str(elsewhere / "intact")],
        "train": ["train", *TRAIN, "--data-dir", str(data), "--out", str(run), "--quiet"],
        "check": ["check", "--run", str(run)],
    }


def reads(command, name):
    """Whether `command` reads the file `name` of a finished run."""
    if command == "check":
        return True
    if command == "diff-runs":
        return name in ("SHA256SUMS", "manifest.json")
    return name in LOADED


CASES = [
    (command, name, how)
    for command in (
        "evaluate",
        "predict",
        "params",
        "plot",
        "export",
        "serve",
        "diff-runs",
        "train",
        "check",
    )  # fmt: skip
    for name in FILES
    for how in DAMAGES
    # Where the file is not theirs to read, serve would start serving (not tested here),
    # and plot and export cost seconds each: one damage suffices for them.
    if reads(command, name)
    or command not in ("serve", "plot", "export")
    or (command != "serve" and how == "deleted")
]


@pytest.mark.parametrize(("command", "name", "how"), CASES)
def test_a_damaged_file_is_one_line_and_exit_2_and_nothing_changes(
    finished, tmp_path, capsys, command, name, how
):
    source, data, image = finished
    run = tmp_path / "run"
    shutil.copytree(source, run)
    shutil.copytree(source, tmp_path / "intact")
    target = _target(run, name)
    damage(target, how)
    before = snapshot(run)
    capsys.readouterr()
    code = main(commands(run, data, image, tmp_path)[command])
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    if command == "train" and name == "params.msgpack" and how == "deleted":
        # The fallback: the final checkpoint still holds the params; they are written again.
        assert code == 0, err
        assert (run / name).read_bytes() == (source / name).read_bytes()
        return
    if command == "check":
        assert code == 1, out + err
        assert "DAMAGED" in out and str(target.relative_to(run)).split("/")[0] in out
    elif reads(command, name):
        assert code == 2, out + err
        assert len(lines) == 1, err
        assert lines[0].startswith(f"flaxfit {command}: error: ")
        named = "SHA256SUMS" if name == "SHA256SUMS" else target.name
        assert named in lines[0] or "SHA256SUMS" in lines[0], lines[0]
    else:
        assert code == 0, err
        assert "Traceback" not in err
    assert snapshot(run) == before


def test_an_intact_run_passes_every_reader(finished, tmp_path, capsys):
    source, data, image = finished
    run = tmp_path / "run"
    shutil.copytree(source, run)
    shutil.copytree(source, tmp_path / "intact")
    before = snapshot(run)
    for command, argv in commands(run, data, image, tmp_path).items():
        if command != "serve":
            assert main(argv) == 0, (command, capsys.readouterr())
    assert snapshot(run) == before
    assert np.isfinite(float(capsys.readouterr().out.split("test accuracy: ")[-1].split("%")[0]))
