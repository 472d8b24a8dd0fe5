import json

import pytest

from flaxfit.cli import main
from flaxfit.runs.compile_cache import default_compile_cache_dir
from flaxfit.runs.config import TrainConfig
from flaxfit.runs.directory import train_run
from flaxfit.runs.verify import compare_runs
from helpers import make_dataset, write_digits_dir


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_digits_dir(tmp_path_factory.mktemp("idx"), 400, 100)


def test_verify_resume_reports_bit_exact(data_dir, tmp_path, capsys):
    code = main(["verify-resume", "--model", "softmax", "--epochs", "3", "--batch-size", "40",
                 "--data-dir", str(data_dir), "--stop-after", "2",
                 "--work-dir", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    for part in ("rng key", "data order", "optimizer state", "params", "metrics"):
        line = next(line for line in out.splitlines() if line.strip().startswith(part))
        assert line.split()[len(part.split())] == "identical", line
    assert out.strip().endswith("resume is bit-exact: yes")
    assert (tmp_path / "full" / "params.msgpack").exists()
    assert (tmp_path / "resumed" / "params.msgpack").exists()
    # The unbroken run compiled with a cold cache (this test's own FLAXFIT_CACHE); both
    # processes of the resumed one read every program from it, and still matched.
    assert any(default_compile_cache_dir().iterdir())
    (full,) = json.loads((tmp_path / "full" / "history.json").read_text())["sessions"]
    assert full["from_cache"] == 0 < full["programs"]
    resumed = json.loads((tmp_path / "resumed" / "history.json").read_text())["sessions"]
    assert (
        [s["from_cache"] for s in resumed]
        == [s["programs"] for s in resumed]
        == [full["programs"]] * 2
    )


def test_compare_runs_names_the_first_part_that_diverged(tmp_path):
    config = TrainConfig(model="softmax", epochs=2, batch_size=40)
    train_run(config, tmp_path / "a", dataset=make_dataset(400, 100), verbose=False)
    # Same seed and data order, another learning rate: the optimizer state diverges first.
    other = TrainConfig(model="softmax", epochs=2, batch_size=40, lr=0.01)
    train_run(other, tmp_path / "b", dataset=make_dataset(400, 100), verbose=False)
    report = compare_runs(tmp_path / "a", tmp_path / "b", config)
    assert not report.bit_exact
    parts = {check.part: check.identical for check in report.checks}
    assert parts["rng key"] and parts["data order"]
    assert not parts["optimizer state"] and not parts["params"]
    assert report.first_divergence.part == "optimizer state"
    assert "first divergence: optimizer state" in report.format()


def test_a_different_seed_diverges_at_the_rng(tmp_path):
    config = TrainConfig(model="softmax", epochs=1, batch_size=40)
    train_run(config, tmp_path / "a", dataset=make_dataset(400, 100), verbose=False)
    train_run(TrainConfig(model="softmax", epochs=1, batch_size=40, seed=1), tmp_path / "b",
              dataset=make_dataset(400, 100), verbose=False)  # fmt: skip
    assert compare_runs(tmp_path / "a", tmp_path / "b", config).first_divergence.part == "rng key"


def test_stop_after_must_leave_epochs_to_resume(data_dir, capsys):
    code = main(["verify-resume", "--model", "softmax", "--epochs", "2", "--stop-after", "2",
                 "--data-dir", str(data_dir)])  # fmt: skip
    assert code == 2
    assert "stop_after must be between 1 and epochs - 1" in capsys.readouterr().err
