import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import flaxfit
from flaxfit.cli import main
from flaxfit.runs.config import TrainConfig
from flaxfit.runs.directory import train_run
from flaxfit.tools.plots import (
    confusion_matrix,
    feature_maps,
    plot_learning_curves,
    plot_probabilities,
)
from flaxfit.training.history import History
from helpers import make_digits, write_digits_dir

FIGURES = {"learning_curves", "confusion_matrix", "misclassified", "filters", "feature_maps",
           "probabilities"}  # fmt: skip


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    data_dir = write_digits_dir(tmp_path_factory.mktemp("idx"), 600, 100)
    out = tmp_path_factory.mktemp("runs") / "cnn1"
    config = TrainConfig(model="cnn1", epochs=2, batch_size=50, data_dir=str(data_dir))
    train_run(config, out, verbose=False)
    return out, data_dir


def pixels(path):
    return np.asarray(Image.open(path).convert("L"), dtype=float)


def test_plot_writes_every_figure_and_a_self_contained_report(cnn_run, capsys):
    run, data_dir = cnn_run
    assert main(["plot", "--run", str(run)]) == 0
    plots = run / "plots"
    assert {p.stem for p in plots.glob("*.png")} == FIGURES
    for png in plots.glob("*.png"):
        image = pixels(png)
        assert min(image.shape) >= 300, png.name
        assert image.std() > 10, png.name  # drawn content, not an empty canvas
    page = (plots / "report.html").read_text()
    for name in FIGURES:
        assert f'alt="{name}" src="data:image/png;base64,' in page
    assert page.count("data:image/png;base64,") == len(FIGURES)
    assert "http" not in page  # nothing fetched from elsewhere
    assert "report.html" in capsys.readouterr().out


def test_confusion_matrix_counts_every_example_once():
    labels = np.array([0, 1, 1, 2, 2, 2])
    predicted = np.array([0, 1, 2, 2, 2, 0])
    matrix = confusion_matrix(labels, predicted, num_classes=3)
    np.testing.assert_array_equal(matrix, [[1, 0, 0], [0, 1, 1], [1, 0, 2]])
    assert matrix.sum() == len(labels)


def test_feature_maps_of_each_conv_layer():
    model = flaxfit.DoubleLayerCNN()
    state = flaxfit.create_train_state(model, __import__("jax").random.key(0))
    image = make_digits(1)[0][0]
    maps = feature_maps(model, state.params, image)
    assert {name: m.shape for name, m in maps.items()} == {
        "Conv_0": (28, 28, 32),
        "Conv_1": (14, 14, 64),
    }
    assert all(m.min() >= 0 for m in maps.values())  # after relu
    assert maps["Conv_0"].max() > 0


def test_figure_functions_take_plain_data(tmp_path):
    history = History()
    for epoch in (1, 2, 3):
        history.append({"epoch": epoch, "train_loss": 1 / epoch, "test_loss": 1.1 / epoch,
                        "train_accuracy": 0.8 + epoch / 100, "test_accuracy": 0.79 + epoch / 100,
                        "seconds": 1.0, "images_per_second": 1.0})  # fmt: skip
    plot_learning_curves(history).savefig(tmp_path / "curves.png")
    plot_probabilities(np.full(10, 0.1)).savefig(tmp_path / "bars.png")
    assert pixels(tmp_path / "curves.png").std() > 10
    assert pixels(tmp_path / "bars.png").std() > 10


def test_a_bad_image_index_is_a_one_line_error(cnn_run, tmp_path, capsys):
    run, _ = cnn_run
    assert main(["plot", "--run", str(run), "--image-index", "500", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "image index 500 is outside the 100 test images" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("mplbackend", "expected"),
    [(None, "agg"), ("", "agg"), ("module://matplotlib_inline.backend_inline", "inline")],
)
def test_plots_are_headless_unless_a_backend_was_chosen(mplbackend, expected):
    # A fresh process: pyplot's backend is chosen once per process. Jupyter's kernel sets
    # MPLBACKEND to its inline backend; forcing Agg there left every notebook without figures.
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    if mplbackend is not None:
        env["MPLBACKEND"] = mplbackend
    code = "from flaxfit.viz import _pyplot; print(_pyplot().get_backend())"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, check=True)  # fmt: skip
    assert expected in result.stdout.strip().lower(), result.stdout
