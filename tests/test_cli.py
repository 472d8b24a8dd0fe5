"""The flaxfit command end to end on a tiny IDX data dir, and every bad-input case."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from flaxfit.cli import main
from helpers import make_digits, write_digits_dir

RUN_FILES = {
    "config.json", "history.json", "metrics.csv", "params.msgpack", "manifest.json", "checkpoints",
    "SHA256SUMS", ".lock",
}  # fmt: skip


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_digits_dir(tmp_path_factory.mktemp("idx"), 600, 100, suffix=".gz")


@pytest.fixture(scope="module")
def trained_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    code = main(["train", "--model", "softmax", "--epochs", "2", "--batch-size", "32",
                 "--data-dir", str(data_dir), "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    return out


def test_train_writes_the_run_files(trained_run, data_dir):
    assert {p.name for p in trained_run.iterdir()} == RUN_FILES
    config = json.loads((trained_run / "config.json").read_text())
    assert config["model"] == "softmax" and config["epochs"] == 2 and config["batch_size"] == 32
    assert config["data_dir"] == str(data_dir)
    history = json.loads((trained_run / "history.json").read_text())
    assert [row["epoch"] for row in history["epochs"]] == [1, 2]
    assert history["epochs"][-1]["test_accuracy"] > 0.9
    csv_lines = (trained_run / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,train_loss,train_accuracy,test_loss,test_accuracy")
    assert len(csv_lines) == 3


def test_train_prints_epochs_and_final_test_accuracy(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "softmax", "--epochs", "2", "--batch-size", "50",
                 "--data-dir", str(data_dir), "--out", str(out)]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert epoch_lines[0].startswith("epoch 1/2  train loss")
    assert epoch_lines[1].startswith("epoch 2/2  train loss")
    assert "checkpoint: saving step 12 (end of epoch 1)" in lines  # 600 // 50 steps per epoch
    assert lines[-1].startswith("test accuracy: ") and lines[-1].endswith("(softmax, 2 epochs)")
    # Where the wall time went, as history.json's session records it.
    assert lines[-2].startswith("wall ") and ", data " in lines[-2] and ", other " in lines[-2]
    history = json.loads((out / "history.json").read_text())
    (session,) = history["sessions"]
    assert {"imports", "data", "compile", "training", "evaluation"} <= set(session)
    assert f"compile {session['compile']:.1f} ({session['from_cache']}/" in lines[-2]
    assert f"{100 * history['epochs'][-1]['test_accuracy']:.2f}%" in lines[-1]


def test_evaluate_prints_overall_and_per_class_accuracy(trained_run, capsys):
    assert main(["evaluate", "--run", str(trained_run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    history = json.loads((trained_run / "history.json").read_text())
    assert lines[0].startswith(
        f"test accuracy: {100 * history['epochs'][-1]['test_accuracy']:.2f}%"
    )
    assert lines[0].endswith("/100)")
    per_class = [line for line in lines[1:] if line.strip().startswith("class ")]
    counts = sum(int(line.split("/")[-1].rstrip(")")) for line in per_class)
    assert counts == 100  # every test example in exactly one class row


def _save_png(path, array, mode="L"):
    Image.fromarray(array).convert(mode).save(path)
    return path


def test_predict_reads_rgb_and_gray_pngs_of_any_size(trained_run, tmp_path, capsys):
    images, labels = make_digits(3, seed=9)
    light = _save_png(tmp_path / "light.png", 255 - images[0], "RGB")  # dark digit on white
    big = Image.fromarray(images[1]).resize((140, 140), Image.Resampling.NEAREST)
    big.save(tmp_path / "big.png")
    gray = _save_png(tmp_path / "gray.png", images[2])
    paths = [str(light), str(tmp_path / "big.png"), str(gray)]
    assert main(["predict", "--run", str(trained_run), "--no-center", *paths]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    for line, path, label in zip(lines, paths, labels, strict=True):
        name, rest = line.split(": ", 1)
        assert name == path
        digit = int(rest.split()[0])
        probs = [float(item.split(":")[1]) for item in rest.split("(")[1].rstrip(")").split()]
        assert len(probs) == 10 and abs(sum(probs) - 1) < 0.01
        assert digit == int(np.argmax(probs)) == label


def test_help_exits_zero(capsys):
    assert main(["train", "--help"]) == 0
    assert "--batch-size" in capsys.readouterr().out


def _fresh_python(script: str) -> list[str]:
    """The lines `script` prints in a new interpreter (nothing imported yet), which must exit 0."""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_help_imports_neither_jax_nor_numpy():
    # What keeps `flaxfit --help` at about 0.1 s instead of 1.5 s (benchmarks/startup_and_compile).
    script = (
        "import sys\n"
        "from flaxfit.cli import main\n"
        "argvs = (['--help'], ['train', '--help'], ['summary', '--help'])\n"
        "codes = [main(argv) for argv in argvs]\n"
        "heavy = sorted({name.split('.')[0] for name in sys.modules} & {'jax', 'numpy', 'flax'})\n"
        "print(codes, heavy)\n"
    )
    assert _fresh_python(script)[-1] == "[0, 0, 0] []"


def test_the_lazy_package_still_reaches_every_subpackage_by_attribute():
    # `import flaxfit` imports nothing heavy, yet `flaxfit.data.X` and `flaxfit.models.nnx.X`
    # work as they did when the package imported them eagerly (notebook 6 uses the latter).
    script = (
        "import flaxfit\n"
        "print(flaxfit.data.default_cache_dir is not None, flaxfit.models.nnx.SingleLayerCNN,\n"
        "      flaxfit.training.loop.fit is flaxfit.fit)\n"
        "for package, name in ((flaxfit, 'no_such_thing'), (flaxfit.models, '_private')):\n"
        "    try:\n"
        "        getattr(package, name)\n"
        "    except AttributeError as error:\n"
        "        print(error)\n"
    )
    assert _fresh_python(script) == [
        "True <class 'flaxfit.models.nnx.SingleLayerCNN'> True",
        "module 'flaxfit' has no attribute 'no_such_thing'",
        "module 'flaxfit.models' has no attribute '_private'",
    ]


def test_python_dash_m_runs_the_cli(trained_run):
    result = subprocess.run(
        [sys.executable, "-m", "flaxfit", "evaluate", "--run", str(trained_run)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("test accuracy: ")


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--model", "resnet"], "argument --model: unknown model 'resnet'; choose one of cnn1"),
        (["--epochs", "0"], "argument --epochs: must be a positive integer, got 0"),
        (["--epochs", "-3"], "argument --epochs: must be a positive integer, got -3"),
        (["--epochs", "two"], "argument --epochs: expected a positive integer, got 'two'"),
        (["--lr", "0"], "argument --lr: must be positive"),
        (["--batch-size", "5000"], "batch_size 5000 is larger than the 600 examples"),
        (
            ["--dataset", "cifar"],
            "argument --dataset: dataset 'cifar' is unknown; did you mean cifar10?",
        ),
        (["--dataset", "folder:"], "argument --dataset: dataset 'folder:' names no directory"),
        (["--image-size", "32"], "argument --image-size: expected 2 arguments"),
        (["--image-size", "32", "0"], "argument --image-size: must be a positive integer"),
        (["--image-size", "32", "32"], "image_size resizes the pictures of a folder: dataset"),
    ],
)
def test_bad_train_flags_fail_in_one_line_and_write_nothing(
    data_dir, tmp_path, capsys, extra, expected
):
    out = tmp_path / "never"
    assert main(["train", "--data-dir", str(data_dir), "--out", str(out), "--quiet", *extra]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert expected in err
    assert not out.exists()


def test_missing_data_dir_is_a_one_line_error(tmp_path, capsys):
    assert main(["train", "--data-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    assert "nope: no such directory" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_corrupt_data_dir_is_a_one_line_error_and_writes_nothing(data_dir, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in data_dir.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    labels = broken / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-10])  # a truncated gzip
    out = tmp_path / "run"
    assert main(["train", "--data-dir", str(broken), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("flaxfit train: error: ") and "train-labels-idx1-ubyte.gz" in err
    assert len(err.splitlines()) == 1
    assert not out.exists()


def test_the_same_command_on_a_finished_run_changes_nothing(trained_run, data_dir, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in trained_run.iterdir()}
    code = main(["train", "--model", "softmax", "--epochs", "2", "--batch-size", "32",
                 "--data-dir", str(data_dir), "--out", str(trained_run), "--quiet"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "the run is complete" in out and out.strip().endswith("(softmax, 2 epochs)")
    assert {p.name: p.stat().st_mtime_ns for p in trained_run.iterdir()} == before


def test_other_flags_on_an_existing_run_name_the_differences(trained_run, data_dir, capsys):
    before = {p.name: p.read_bytes() for p in trained_run.iterdir() if p.is_file()}
    code = main(["train", "--model", "softmax", "--epochs", "3", "--batch-size", "32", "--lr",
                 "0.01", "--data-dir", str(data_dir), "--out", str(trained_run)])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "epochs: 2 -> 3" in err and "lr: 0.002 -> 0.01" in err and "--fresh" in err
    assert "batch_size" not in err  # only the fields that differ
    assert {p.name: p.read_bytes() for p in trained_run.iterdir() if p.is_file()} == before


def test_fresh_replaces_a_run(data_dir, tmp_path):
    out = tmp_path / "run"
    common = [
        "--model",
        "softmax",
        "--epochs",
        "1",
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(["train", *common, "--batch-size", "100"]) == 0
    assert main(["train", *common, "--batch-size", "60", "--fresh"]) == 0
    assert json.loads((out / "config.json").read_text())["batch_size"] == 60


def test_a_non_run_directory_is_never_used(data_dir, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    code = main(
        ["train", "--data-dir", str(data_dir), "--out", str(tmp_path), "--fresh", "--quiet"]
    )
    assert code == 2
    assert "not empty and not a flaxfit run" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_run_dir_that_does_not_exist(command, tmp_path, capsys):
    argv = [command, "--run", str(tmp_path / "missing")] + (
        ["x.png"] if command == "predict" else []
    )
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "missing: no such directory" in err and len(err.strip().splitlines()) == 1


def test_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert main(["evaluate", "--run", str(tmp_path)]) == 2
    assert "config.json: no such file" in capsys.readouterr().err


def test_an_unreadable_png(trained_run, tmp_path, capsys):
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert main(["predict", "--run", str(trained_run), str(fake)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("flaxfit predict: error: ") and "fake.png: not a readable image" in err
    assert len(err.splitlines()) == 1


def test_a_missing_png(trained_run, tmp_path, capsys):
    assert main(["predict", "--run", str(trained_run), str(tmp_path / "gone.png")]) == 2
    assert "gone.png: no such file" in capsys.readouterr().err


def test_diff_runs_names_the_one_flag_that_differs(trained_run, data_dir, tmp_path, capsys):
    other = tmp_path / "other"
    code = main(["train", "--model", "softmax", "--epochs", "2", "--batch-size", "32", "--seed",
                 "7", "--data-dir", str(data_dir), "--out", str(other), "--quiet"])  # fmt: skip
    assert code == 0
    capsys.readouterr()
    assert main(["diff-runs", str(trained_run), str(other)]) == 1
    out = capsys.readouterr().out
    assert "config.seed: 0 -> 7" in out
    assert "config.lr" not in out and "libraries" not in out
    assert main(["diff-runs", str(trained_run), str(trained_run)]) == 0
    assert "match" in capsys.readouterr().out


def test_early_stopping_ends_a_run_that_stopped_improving(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--model", "softmax", "--epochs", "12", "--batch-size", "50",
                 "--early-stop-patience", "1", "--early-stop-monitor", "test_accuracy",
                 "--data-dir", str(data_dir), "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    epochs = json.loads((out / "history.json").read_text())["epochs"]
    accuracies = [row["test_accuracy"] for row in epochs]
    assert len(epochs) < 12  # 100 synthetic test digits: accuracy saturates early
    assert accuracies[-1] <= max(accuracies[:-1])  # the last epoch did not improve
    assert (out / "params.msgpack").exists()  # an early-stopped run is finished
    capsys.readouterr()
    again = main(["train", "--model", "softmax", "--epochs", "12", "--batch-size", "50",
                  "--early-stop-patience", "1", "--early-stop-monitor", "test_accuracy",
                  "--data-dir", str(data_dir), "--out", str(out), "--quiet"])  # fmt: skip
    assert again == 0 and "the run is complete" in capsys.readouterr().out


def test_tensorboard_flag_writes_event_files(data_dir, tmp_path):
    out = tmp_path / "run"
    flags = ["--model", "softmax", "--epochs", "2", "--batch-size", "50", "--tensorboard"]
    code = main(["train", *flags, "--data-dir", str(data_dir), "--out", str(out), "--quiet"])
    assert code == 0
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_config_file_gives_defaults_that_flags_override(data_dir, tmp_path):
    config_file = tmp_path / "base.json"
    config_file.write_text(
        json.dumps({"model": "softmax", "epochs": 1, "batch_size": 60, "lr": 0.01})
    )
    out = tmp_path / "run"
    assert main(["train", "--config", str(config_file), "--epochs", "2",
                 "--data-dir", str(data_dir), "--out", str(out), "--quiet"]) == 0  # fmt: skip
    saved = json.loads((out / "config.json").read_text())
    assert (saved["model"], saved["batch_size"], saved["lr"]) == ("softmax", 60, 0.01)
    assert saved["epochs"] == 2


def test_a_bad_config_file_is_a_one_line_error(tmp_path, capsys):
    config_file = tmp_path / "bad.json"
    config_file.write_text(json.dumps({"model": "softmax", "colour": "red"}))
    assert main(["train", "--config", str(config_file), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.json: unknown config fields: colour" in err and len(err.splitlines()) == 1
