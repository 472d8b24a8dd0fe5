"""flaxfit eject: the ejected file trains a run bit for bit as fit() did, and reads like the deck.

The bit-exact tests are the guard that the ejected loop and fit() compute the same
thing: they change nothing, and fail the day the two drift apart.
"""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import serialization

from flaxfit.cli import main
from flaxfit.data.cache import cache_path, save_cache
from flaxfit.runs.config import TrainConfig
from flaxfit.runs.optim import make_optimizer
from flaxfit.tools.eject.generate import optimizer_expression
from flaxfit.tools.eject.source import is_allowed_module
from helpers import make_dataset

RUFF = Path(sys.executable).parent / "ruff"
USER_MODEL = '''
import jax
import jax.numpy as jnp
from flax import linen as nn

HIDDEN = 32


class TinyMLP(nn.Module):
    """A user's model in Flax's examples' convention: __call__(x) returns logits."""

    hidden: int = HIDDEN

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape([x.shape[0], -1])
        return nn.Dense(10)(nn.relu(nn.Dense(self.hidden)(x)))
'''
STOCK_CONV_MODEL = """
from flax import linen as nn


class WithBatchNorm(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.BatchNorm(use_running_average=not train)(x.reshape([x.shape[0], -1]))
        return nn.Dense(10)(x)


class StockCNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4, (3, 3))(x.reshape([-1, 28, 28, 1]))
        return nn.Dense(10)(x.reshape([x.shape[0], -1]))
"""


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """flaxfit's cache holding 2 000 + 300 synthetic digits as 'mnist', for this module."""
    directory = tmp_path_factory.mktemp("cache")
    save_cache(cache_path(directory, "mnist"), make_dataset(2000, 300))
    return directory


@pytest.fixture(autouse=True)
def _module_cache(cache_dir, monkeypatch):
    monkeypatch.setenv("FLAXFIT_CACHE", str(cache_dir))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "tiny_mlp.py"
    path.write_text(USER_MODEL)
    return path


def _train(out: Path, *flags: str) -> Path:
    assert main(["train", *flags, "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    return out


def _run_ejected(path: Path, tmp_path: Path) -> tuple[dict, list[dict]]:
    """Run an ejected file on CPU; its final params and the metrics it printed."""
    params_file = tmp_path / "ejected.msgpack"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, str(path), "--params-out", str(params_file)],
                          capture_output=True, text=True, env=env, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = []
    for line in done.stdout.splitlines():
        words = line.split()
        rows.append(
            {name: float(value) for name, value in zip(words[::2], words[1::2], strict=True)}
        )
    return serialization.msgpack_restore(params_file.read_bytes()), rows


def _assert_same_as_run(run: Path, ejected: Path, tmp_path: Path) -> None:
    params, rows = _run_ejected(ejected, tmp_path)
    saved = serialization.msgpack_restore((run / "params.msgpack").read_bytes())
    assert jax.tree.structure(params) == jax.tree.structure(saved)
    assert jax.tree.all(jax.tree.map(np.array_equal, params, saved))
    history = json.loads((run / "history.json").read_text())["epochs"]
    names = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy")
    assert [{n: row[n] for n in names} for row in history] == rows


@pytest.mark.parametrize(
    "flags",
    [
        ["--model", "softmax", "--api", "nnx", "--schedule", "warmup_cosine"],
        ["--model", "softmax", "--optimizer", "sgd", "--clip-norm", "1.0", "--steps-per-dispatch",
         "5"],
        ["--model", "cnn1", "--batch-size", "200", "--recipe", "fast"],
        ["--model", "softmax", "--augment", "--seed", "3"],
        ["user", "--optimizer", "adamw", "--weight-decay", "0.01", "--model-arg", "hidden=16"],
    ],
    ids=["softmax-nnx", "softmax-sgd-chunks", "cnn1-recipe-fast", "softmax-augment-seed3",
         "user-model"],
)  # fmt: skip
def test_the_ejected_file_trains_the_runs_params_bit_for_bit(flags, model_file, tmp_path):
    if flags[0] == "user":
        flags = ["--model", f"{model_file}:TinyMLP", *flags[1:]]
    run = _train(tmp_path / "run", *flags)
    out = tmp_path / "train_run.py"
    assert main(["eject", "--run", str(run), "-o", str(out)]) == 0
    _assert_same_as_run(run, out, tmp_path)


def _write_sources(root: Path) -> dict[str, str]:
    """The same few digits as an arrays file (4 classes, named) and as a folder of PNGs."""
    from PIL import Image

    data = make_dataset(240, 60)
    split = data.train
    train, test = (split.images, split.labels % 4), (data.test.images, data.test.labels % 4)
    np.savez(root / "digits.npz", x_train=train[0], y_train=train[1].astype(np.int64),
             x_test=test[0], y_test=test[1], class_names=np.array(list("abcd")))  # fmt: skip
    for name, (images, labels) in {"train": train, "test": test}.items():
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            folder = root / "pictures" / name / "abcd"[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{index}.png")
    return {"npz": f"npz:{root / 'digits.npz'}", "folder": f"folder:{root / 'pictures'}"}


@pytest.mark.parametrize("source", ["npz", "folder"])
def test_runs_on_your_arrays_or_pictures_eject_bit_for_bit(source, tmp_path):
    dataset = _write_sources(tmp_path)[source]
    run = _train(tmp_path / "run", "--model", "softmax", "--dataset", dataset)
    out = tmp_path / "train_run.py"
    assert main(["eject", "--run", str(run), "-o", str(out)]) == 0
    assert ("read_npz(DATA" in out.read_text()) == (source == "npz")  # else flaxfit's cache
    _assert_same_as_run(run, out, tmp_path)


@pytest.fixture(scope="module")
def cnn1_file(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("ejected") / "train_cnn1.py"
    os.environ["FLAXFIT_CACHE"] = str(cache_dir)  # module scope: monkeypatch is per test
    assert main(["eject", "--model", "cnn1", "--epochs", "2", "-o", str(out)]) == 0
    return out


def test_the_ejected_file_imports_only_jax_flax_optax_numpy_and_the_stdlib(cnn1_file):
    tree = ast.parse(cnn1_file.read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported and all(is_allowed_module(name) for name in imported), imported
    assert not any(name.startswith("flaxfit") for name in imported)
    assert {"jax", "optax", "numpy"} <= {name.split(".")[0] for name in imported}


def test_the_ejected_file_is_ruff_clean_and_short(cnn1_file):
    flags = ["--line-length", "100", "--no-cache"]
    check = subprocess.run([RUFF, "check", "--select", "E,F,W,I,B,UP,SIM", *flags, cnn1_file],
                           capture_output=True, text=True)  # fmt: skip
    assert check.returncode == 0, check.stdout
    formatted = subprocess.run([RUFF, "format", "--check", *flags, cnn1_file], capture_output=True,
                               text=True)  # fmt: skip
    assert formatted.returncode == 0, formatted.stdout
    text = cnn1_file.read_text()
    # flaxfit's cnn1 brings ~75 lines of conv-as-matmul layers; pinned against growth.
    assert len(text.splitlines()) <= 340
    # Specialised to the run's impl="auto": no option left, the backend still picks the conv.
    assert "impl:" not in text and "impl=" not in text and "Impl" not in text
    assert "jax.default_backend()" in text and "conv_general_dilated" in text
    # The deck's order: data, model, loss_fn, train_step, epoch order, chunk, evaluation, fit.
    marks = ["def load_data", "class SingleLayerCNN", "def loss_fn", "def train_step",
             "def epoch_order", "def run_steps", "def evaluate", "def fit", "__main__"]  # fmt: skip
    positions = [text.index(mark) for mark in marks]
    assert positions == sorted(positions)
    assert "flaxfit train" in text.split('"""')[1] and "チェックポイント" in text.split('"""')[1]


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(),
        TrainConfig(schedule="warmup_cosine", optimizer="adamw", weight_decay=0.1, b2=0.95),
        TrainConfig(schedule="exponential", optimizer="sgd", momentum=0.0, clip_norm=0.5),
        TrainConfig(schedule="onecycle", weight_decay=1e-4, b2=0.99),
        TrainConfig(schedule="constant", optimizer="sgd"),
        TrainConfig(schedule="warmup_cosine", clip_norm=1.0, weight_decay=1e-3, optimizer="sgd"),
    ],
)
def test_the_optimizer_expression_is_the_one_make_optimizer_builds(config):
    steps = 7
    params = {"w": jax.numpy.linspace(-1.0, 1.0, 5)}
    namespace = {"optax": optax, "EPOCHS": config.epochs, "steps_per_epoch": steps}
    body = optimizer_expression(config)  # its lines after the first carry their indent
    exec(f"def make(steps_per_epoch):\n    {body}", namespace)  # our own text, tested as such
    ejected = namespace["make"](steps)
    library = make_optimizer(config, steps)
    states = [tx.init(params) for tx in (ejected, library)]
    for step in range(3 * steps):
        grads = {"w": jax.numpy.sin(params["w"] * (step + 1))}
        updates = []
        for i, tx in enumerate((ejected, library)):
            update, states[i] = tx.update(grads, states[i], params)
            updates.append(update)
        assert np.array_equal(updates[0]["w"], updates[1]["w"])


def test_an_unfinished_run_is_ejected_and_said_to_train_from_the_start(tmp_path, capsys):
    run = tmp_path / "half"
    assert main(["train", "--model", "softmax", "--epochs", "2", "--stop-after-epoch", "1",
                 "--out", str(run), "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["eject", "--run", str(run), "-o", str(tmp_path / "t.py")]) == 0
    err = capsys.readouterr().err
    assert "unfinished (1 of 2 epochs)" in err and "trains it from the start" in err
    assert (tmp_path / "t.py").exists()


def _error_line(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, model_file):
    out = tmp_path / "t.py"
    assert "no such run directory" in _error_line(capsys, ["eject", "--run", str(tmp_path / "x"),
                                                           "-o", str(out)])  # fmt: skip
    out.write_text("# mine\n")
    err = _error_line(capsys, ["eject", "--model", "softmax", "-o", str(out)])
    assert "exists; pass --force" in err and out.read_text() == "# mine\n"
    assert main(["eject", "--model", "softmax", "-o", str(out), "--force"]) == 0
    assert out.read_text().startswith('"""Train softmax')
    stock = tmp_path / "stock.py"
    stock.write_text(STOCK_CONV_MODEL)
    err = _error_line(
        capsys, ["eject", "--model", f"{stock}:StockCNN", "-o", str(tmp_path / "s.py")]
    )
    assert "cannot eject" in err and "conv_general_dilated" in err and "fast_ops" in err
    err = _error_line(
        capsys, ["eject", "--model", f"{stock}:WithBatchNorm", "-o", str(tmp_path / "r.py")]
    )
    assert "BatchNorm" in err
    err = _error_line(
        capsys, ["eject", "--model", "cnn1", "--freeze", "Conv_0/*", "-o", str(tmp_path / "a.py")]
    )
    assert "--freeze" in err


SPECIALISE_ME = '''
from typing import Literal

Mode = Literal["fast", "slow"]
KEPT = 1  # unused before specialising: stays


def check(n: int) -> int:
    if n <= 0:
        raise ValueError(n)
    return n


def scale(x: float, mode: Mode = "fast", factor: float = 2.0) -> float:
    """Doubles x, slowly or not."""
    if mode not in ("fast", "slow"):
        raise ValueError(mode)
    if mode == "fast":
        # the branch the calls take
        return x * factor
    return x + x


def pick(x, how):
    if how == "a":
        return x + 1
    return x - 1


def run(x):
    return scale(x) + scale(x, factor=3.0) + pick(x, "a") + pick(x, "b") + check(2)


def guarded(n):
    if n <= 0:
        raise ValueError(n)
    return n
'''


def _namespace(source: str) -> dict:
    namespace: dict = {}
    exec(compile(source, "<specialised>", "exec"), namespace)  # our own test text
    return namespace


def test_specialise_keeps_the_branch_the_calls_take_and_drops_the_option():
    from flaxfit.tools.eject.specialise import specialise

    out = specialise(SPECIALISE_ME, validated={"check"})
    assert "mode" not in out and "Mode" not in out and "x + x" not in out
    assert "# the branch the calls take" in out  # comments kept, the body dedented
    assert "def scale(x: float, factor: float = 2.0) -> float:" in out
    assert "scale(x) + scale(x, factor=3.0)" in out  # factor differs between calls: kept
    assert 'if how == "a":' in out and "x - 1" in out  # both values used: both branches kept
    assert out.count("raise ValueError(n)") == 1  # check's guard went, guarded's stayed
    assert "KEPT = 1" in out
    ast.parse(out)
    assert _namespace(out)["run"](5.0) == _namespace(SPECIALISE_ME)["run"](5.0)


def test_specialise_leaves_a_function_passed_as_a_value_as_written():
    from flaxfit.tools.eject.specialise import specialise

    out = specialise(SPECIALISE_ME + "\n\nALIAS = scale\n")  # may be called with any mode
    assert 'mode: Mode = "fast"' in out and 'if mode == "fast":' in out and "x + x" in out
    assert "Mode = Literal" in out


def test_specialise_drops_a_flax_field_every_construction_leaves_at_its_default():
    from flaxfit.tools.eject.specialise import specialise

    source = """
import jax.numpy as jnp
from flax import linen as nn


class Layer(nn.Module):
    features: int
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        y = x @ self.param("w", nn.initializers.ones, (x.shape[-1], self.features))
        if self.use_bias:
            y = y + self.param("b", nn.initializers.ones, (self.features,))
        return y


class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        return Layer(3, name="a")(x) + Layer(features=3, use_bias=True)(x)
"""
    out = specialise(source)
    assert "use_bias" not in out and 'self.param("b"' in out
    x = jnp.ones((2, 4))
    results = []
    for text in (source, out):
        net = _namespace(text)["Net"]()
        params = net.init(jax.random.key(0), x)
        results.append((jax.tree.map(np.asarray, params), np.asarray(net.apply(params, x))))
    assert jax.tree.all(jax.tree.map(np.array_equal, *[r[0] for r in results]))
    assert np.array_equal(results[0][1], results[1][1])
