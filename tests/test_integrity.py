"""Files and checkpoints prove their integrity: damage is named, never used; resume falls back."""

import errno
import hashlib
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from flaxfit.cli import main
from flaxfit.files import IntegrityError, read_recorded, read_sums, write_recorded, write_sums
from flaxfit.runs.checkpoints import (
    DAMAGED_DIR,
    CheckpointError,
    DamagedCheckpoint,
    checkpoint_steps,
    restore,
    restore_intact,
)
from flaxfit.runs.config import TrainConfig
from flaxfit.runs.directory import _state_template, check_run, train_run
from helpers import make_dataset

TIMING = ("seconds", "images_per_second")
CONFIG = TrainConfig(model="mlp", epochs=3, batch_size=50, steps_per_dispatch=4)


def dataset():
    return make_dataset(600, 100)


def metrics(history):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history.rows]


def assert_same_params(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def flip(path, where=0.5):
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0xFF
    path.write_bytes(bytes(data))


def snapshot(directory):
    return {p.relative_to(directory): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


# --- SHA256SUMS ---------------------------------------------------------------------------


def test_a_recorded_file_reads_back_and_any_change_is_named(tmp_path):
    path = write_recorded(tmp_path / "a.json", '{"x": 1}\n')
    assert read_recorded(path) == b'{"x": 1}\n'
    assert read_sums(tmp_path) == {"a.json": {hashlib.sha256(b'{"x": 1}\n').hexdigest()}}
    path.write_text('{"x": 2}\n')  # valid JSON, silently different: caught by the digest
    with pytest.raises(IntegrityError, match=r"a\.json: damaged or changed since flaxfit wrote"):
        read_recorded(path)
    path.unlink()
    with pytest.raises(IntegrityError, match=r"a\.json: no such file"):
        read_recorded(path)


def test_a_file_being_replaced_reads_as_either_version(tmp_path):
    # Between write_recorded's steps SHA256SUMS lists old and new: a reader that
    # catches the file at either version accepts it, without taking a lock.
    old = write_recorded(tmp_path / "h.json", "old\n")
    sums = read_sums(tmp_path)
    write_sums(tmp_path, {"h.json": sums["h.json"] | {"0" * 64}})
    assert read_recorded(old) == b"old\n"
    write_recorded(old, "new\n")
    assert read_recorded(old) == b"new\n" and len(read_sums(tmp_path)["h.json"]) == 1


@pytest.mark.parametrize("damage", ["truncated", "not hex", "deleted"])
def test_a_damaged_sums_file_is_named(tmp_path, damage):
    path = write_recorded(tmp_path / "a.json", "{}\n")
    sums = tmp_path / "SHA256SUMS"
    if damage == "truncated":
        sums.write_bytes(sums.read_bytes()[:-1])
    elif damage == "not hex":
        sums.write_text("zz" * 32 + "  a.json\n")
    else:
        sums.unlink()
    with pytest.raises(IntegrityError, match="SHA256SUMS"):
        read_recorded(path)


# --- checkpoints --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory):
    return train_run(CONFIG, tmp_path_factory.mktemp("full") / "run", dataset=dataset(),
                     verbose=False)  # fmt: skip


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A run stopped after epoch 2 of 3: checkpoints at steps 12 and 24."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    train_run(CONFIG, out, dataset=dataset(), verbose=False, stop_after_epoch=2)
    assert checkpoint_steps(out / "checkpoints") == [12, 24]
    return out


def _files(step_dir):
    return sorted(p for p in step_dir.rglob("*") if p.is_file() and p.name != "SHA256SUMS")


def damage_checkpoint(step_dir, how):
    """Damage one checkpoint in one of the ways the issue lists; returns what was hit."""
    arrays = max(_files(step_dir / "state"), key=lambda p: p.stat().st_size)  # the weights
    if how == "flip array bytes":
        flip(arrays)
    elif how == "flip a metadata byte":
        flip(step_dir / "state" / "_METADATA", 0.3)
    elif how == "truncate":
        arrays.write_bytes(arrays.read_bytes()[: arrays.stat().st_size // 2])
    elif how == "delete a file":
        arrays.unlink()
    elif how == "meta not JSON":
        (step_dir / "meta" / "metadata").write_text("{not json")
    elif how == "no SHA256SUMS":  # as a kill between Orbax's rename and our record leaves it
        (step_dir / "SHA256SUMS").unlink()
    else:
        raise AssertionError(how)


DAMAGES = ["flip array bytes", "flip a metadata byte", "truncate", "delete a file",
           "meta not JSON", "no SHA256SUMS"]  # fmt: skip


@pytest.mark.parametrize("how", DAMAGES)
def test_restore_refuses_a_damaged_checkpoint(stopped, tmp_path, how):
    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    damage_checkpoint(run / "checkpoints" / "24", how)
    with pytest.raises(DamagedCheckpoint, match=r"checkpoints/24: damaged checkpoint \(.+\)"):
        restore(run / "checkpoints", _state_template(CONFIG))
    assert restore(run / "checkpoints", _state_template(CONFIG), 12).step == 12


def test_restore_checks_the_arrays_as_well_as_the_files(stopped, tmp_path):
    # A checkpoint whose files and SHA256SUMS agree, but whose arrays are not what its
    # meta says was saved (as a faulty copy, or a bug in a reader, could give).
    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    step_dir = run / "checkpoints" / "24"
    meta = step_dir / "meta" / "metadata"
    meta.write_text(meta.read_text().replace('"sha256": {"', '"sha256": {"x', 1))
    write_sums(step_dir, {str(p.relative_to(step_dir)): {hashlib.sha256(
        p.read_bytes()).hexdigest()} for p in _files(step_dir)})  # fmt: skip
    with pytest.raises(DamagedCheckpoint, match="arrays differ from what was saved"):
        restore(run / "checkpoints", _state_template(CONFIG))


@pytest.mark.parametrize("how", DAMAGES)
def test_resume_falls_back_to_the_newest_intact_checkpoint_and_ends_bit_exact(
    stopped, unbroken, tmp_path, how
):
    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    damage_checkpoint(run / "checkpoints" / "24", how)
    said = []
    resumed = train_run(CONFIG, run, dataset=dataset(), verbose=False, log=said.append)
    damaged = [line for line in said if line.startswith("checkpoint 24 is damaged")]
    assert len(damaged) == 1 and f"moved it to {run / DAMAGED_DIR / '24'}" in damaged[0]
    assert any(line.startswith(f"resuming {run} from step 12") for line in said)
    assert_same_params(resumed.params, unbroken.params)
    assert metrics(resumed.history) == metrics(unbroken.history)
    assert (run / DAMAGED_DIR / "24").is_dir()  # kept for a person to look at
    assert all(r.problem is None for r in check_run(run)), check_run(run)


def test_no_intact_checkpoint_exits_2_naming_fresh_and_changes_nothing(stopped, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    for step in (12, 24):
        damage_checkpoint(run / "checkpoints" / str(step), "flip array bytes")
    before = snapshot(run)
    with pytest.raises(CheckpointError, match="no intact checkpoint.*pass --fresh to start over"):
        train_run(CONFIG, run, dataset=dataset(), verbose=False)
    # Only the lock file names the trainer that tried; the run itself is untouched.
    assert {k: v for k, v in snapshot(run).items() if k.name != ".lock"} == {
        k: v for k, v in before.items() if k.name != ".lock"
    }


# --- a save that fails --------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [OSError(errno.ENOSPC, "No space left on device"), PermissionError(13, "Permission denied")],
)
def test_a_failed_checkpoint_save_stops_with_one_line_and_earlier_ones_resume(
    unbroken, tmp_path, monkeypatch, error
):
    real_save = ocp.CheckpointManager.save

    def save_until_step_24(self, step, *args, **kwargs):
        if step == 24:  # half a save on disk, then the disk is full
            partial = self.directory / f"{step}.orbax-checkpoint-tmp-1"
            partial.mkdir()
            (partial / "part").write_bytes(b"\0" * 100)
            raise error
        return real_save(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", save_until_step_24)
    run = tmp_path / "run"
    with pytest.raises(CheckpointError) as caught:
        train_run(CONFIG, run, dataset=dataset(), verbose=False)
    message = str(caught.value)
    assert "\n" not in message and error.strerror in message
    assert message.startswith(f"{run / 'checkpoints' / '24'}: cannot save the checkpoint")
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["12"]  # no partial left
    monkeypatch.undo()
    resumed = train_run(CONFIG, run, dataset=dataset(), verbose=False)
    assert_same_params(resumed.params, unbroken.params)
    assert metrics(resumed.history) == metrics(unbroken.history)


def test_a_disk_full_while_writing_the_history_is_one_line_from_the_cli(
    tmp_path, monkeypatch, capsys
):
    from helpers import write_digits_dir

    data = write_digits_dir(tmp_path / "idx", 300, 50)
    real_fsync = os.fsync
    calls = []

    def fsync_fills_the_disk(fd):
        calls.append(fd)
        if len(calls) > 6:  # after the config and manifest were written
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_fills_the_disk)
    code = main(["train", "--model", "softmax", "--epochs", "2", "--batch-size", "50",
                 "--data-dir", str(data), "--out", str(tmp_path / "run"), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "No space left on device" in err[0] and str(tmp_path / "run") in err[0]


# --- flaxfit check ------------------------------------------------------------------------


def test_check_reports_each_file_and_checkpoint(stopped, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    assert main(["check", "--run", str(run)]) == 0
    out = capsys.readouterr().out
    for name in ("SHA256SUMS", "config.json", "history.json", "manifest.json", "metrics.csv",
                 "checkpoints/12", "checkpoints/24"):  # fmt: skip
        assert f"ok       {name}\n" in out
    assert out.strip().endswith("all 7 intact")
    flip(run / "history.json")
    damage_checkpoint(run / "checkpoints" / "12", "flip array bytes")
    before = snapshot(run)
    assert main(["check", "--run", str(run)]) == 1
    out = capsys.readouterr().out
    assert "DAMAGED  history.json: damaged or changed" in out
    assert "DAMAGED  checkpoints/12: state/" in out and "ok       checkpoints/24\n" in out
    assert snapshot(run) == before  # check only reads


def test_only_the_process_that_sets_aside_moves_a_damaged_checkpoint(stopped, tmp_path):
    # In a multi-process job every process restores; only process 0 may move files.
    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    damage_checkpoint(run / "checkpoints" / "24", "flip array bytes")
    said = []
    restored = restore_intact(run / "checkpoints", _state_template(CONFIG), said.append,
                              set_aside=False)  # fmt: skip
    assert restored.step == 12 and said == []
    assert checkpoint_steps(run / "checkpoints") == [12, 24] and not (run / DAMAGED_DIR).exists()
