"""HistoryFiles / write_history: both files after every epoch, each written atomically."""

import csv
import hashlib
import json
import math
import os

import jax
import pytest

from flaxfit.models import SoftmaxRegression
from flaxfit.training.callbacks import Callback, HistoryFiles, write_history
from flaxfit.training.history import COLUMNS, History
from flaxfit.training.loop import fit
from flaxfit.training.step import create_train_state
from helpers import make_digits


def history_of(*losses, test=True):
    history = History(compile_seconds=1.5)
    for epoch, loss in enumerate(losses, start=1):
        history.append({
            "epoch": epoch, "train_loss": loss, "train_accuracy": 0.25 * epoch,
            "test_loss": loss + 0.125 if test else math.nan,
            "test_accuracy": 0.5 if test else math.nan,
            "seconds": 2.0, "images_per_second": 500.0,
        })  # fmt: skip
    return history


def test_the_formats_run_py_reads(tmp_path):
    history = history_of(0.5, 0.25, test=False)
    write_history(tmp_path / "new" / "run", history)  # missing directories are made
    directory = tmp_path / "new" / "run"
    assert sorted(os.listdir(directory)) == ["SHA256SUMS", "history.json", "metrics.csv"]
    text = (directory / "history.json").read_text()
    sums = (directory / "SHA256SUMS").read_text()  # `sha256sum -c SHA256SUMS` checks both
    for name in ("history.json", "metrics.csv"):
        digest = hashlib.sha256((directory / name).read_bytes()).hexdigest()
        assert f"{digest}  {name}\n" in sums
    assert text == json.dumps(history.to_dict(), indent=2) + "\n"
    assert json.loads(text)["epochs"][0]["test_loss"] is None  # NaN is no JSON: null
    assert History.from_dict(json.loads(text)).rows[1]["train_loss"] == 0.25
    assert (directory / "metrics.csv").read_text() == (
        "epoch,train_loss,train_accuracy,test_loss,test_accuracy,seconds,images_per_second\n"
        "1,0.5,0.25,nan,nan,2.0,500.0\n"
        "2,0.25,0.5,nan,nan,2.0,500.0\n"
    )


class ReadFiles(Callback):
    """Runs after HistoryFiles and reads back what is on disk at each epoch's end."""

    def __init__(self, directory):
        self.directory = directory
        self.seen = []

    def on_epoch_end(self, epoch, state, metrics):
        saved = json.loads((self.directory / "history.json").read_text())
        with open(self.directory / "metrics.csv", newline="") as file:
            table = list(csv.DictReader(file))
        self.seen.append((epoch, saved, table, sorted(os.listdir(self.directory))))


def test_fit_leaves_both_files_complete_after_every_epoch(tmp_path):
    history = History()
    reader = ReadFiles(tmp_path)
    state = create_train_state(SoftmaxRegression(), jax.random.key(0))
    fit(state, make_digits(300), make_digits(100, seed=1), epochs=3, batch_size=100,
        callbacks=[HistoryFiles(tmp_path, history), reader], history=history,
        verbose=False)  # fmt: skip

    assert [epoch for epoch, *_ in reader.seen] == [1, 2, 3]
    for epoch, saved, table, names in reader.seen:
        # Exactly the epochs finished so far, and no temp file beside them.
        assert names == ["SHA256SUMS", "history.json", "metrics.csv"]
        assert [row["epoch"] for row in saved["epochs"]] == list(range(1, epoch + 1))
        assert saved["epochs"] == history.to_dict()["epochs"][:epoch]
        assert len(table) == epoch and list(table[0]) == list(COLUMNS)
        for written, kept in zip(table, history.rows, strict=False):
            assert {k: float(v) for k, v in written.items()} == kept  # floats round-trip


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failed_write_keeps_the_previous_files_and_leaves_no_temp_file(
    tmp_path, monkeypatch, failing
):
    write_history(tmp_path, history_of(0.5))
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, disk_full)  # fails halfway through each atomic write
    with pytest.raises(OSError, match="No space left"):
        write_history(tmp_path, history_of(0.5, 0.25))
    monkeypatch.undo()

    after = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    assert after == before  # same two names (no .tmp left) and the same bytes


def test_a_history_that_fit_is_not_filling_is_an_error(tmp_path):
    callback = HistoryFiles(tmp_path, History())  # but fit(...) got no history=
    with pytest.raises(ValueError, match=r"pass the same History .* fit\(history=\.\.\.\)"):
        callback.on_epoch_end(1, None, history_of(0.5).last)
    assert not any(tmp_path.iterdir())


def test_history_must_be_a_history(tmp_path):
    with pytest.raises(TypeError, match="history must be the flaxfit History .* got list"):
        HistoryFiles(tmp_path, [])
