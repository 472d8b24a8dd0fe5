"""--dataset folder:DIR | npz:FILE | cifar10 and --image-size, through the flaxfit command."""

import json

import numpy as np
import pytest
from PIL import Image

from flaxfit.cli import main


def digit_folder(root, per_class=(4, 2)):
    """Ten class folders "0".."9" of grayscale PNGs, most 28x28, some larger (to resize)."""
    rng = np.random.default_rng(0)
    for split, count in zip(("train", "test"), per_class, strict=True):
        for digit in range(10):
            for i in range(count):
                side = 28 if i else 40
                path = root / split / str(digit) / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)).save(path)
    return root


def test_train_on_a_folder_then_evaluate_from_another_directory(tmp_path, monkeypatch, capsys):
    digit_folder(tmp_path / "work" / "digits")
    monkeypatch.chdir(tmp_path / "work")
    code = main(["train", "--model", "softmax", "--epochs", "1", "--batch-size", "8",
                 "--dataset", "folder:digits", "--image-size", "28", "28",
                 "--out", "run", "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    config = json.loads((tmp_path / "work" / "run" / "config.json").read_text())
    assert config["dataset"] == f"folder:{tmp_path / 'work' / 'digits'}"  # absolute
    assert config["image_size"] == [28, 28]
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["evaluate", "--run", str(tmp_path / "work" / "run")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("test accuracy: ") and "/20)" in out.splitlines()[0]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--dataset", "npz:{tmp}/missing.npz"], "{tmp}/missing.npz: no such file"),
        (["--dataset", "folder:{tmp}/digits"], "pictures of different sizes need image_size"),
        (["--dataset", "cifar10", "--data-dir", "{tmp}"], "has neither cifar-10-binary.tar.gz"),
        (["--dataset", "npz:{tmp}/a.npz", "--data-dir", "{tmp}"], "drop data_dir"),
    ],
)
def test_bad_data_is_one_line_exit_2_and_no_run(tmp_path, capsys, flags, message):
    digit_folder(tmp_path / "digits", per_class=(2, 1))
    flags = [f.format(tmp=tmp_path) for f in flags]
    out = tmp_path / "never"
    assert main(["train", "--model", "softmax", "--out", str(out), "--quiet", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("flaxfit train: error: ") and len(err.splitlines()) == 1
    assert message.format(tmp=tmp_path) in err
    assert not out.exists()
