"""Any Flax model in the same fit(): NNX modules, BatchNorm and Dropout, your own model file,
and metrics that come from the task."""

from __future__ import annotations

import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx

import flaxfit
from flaxfit.cli import main
from flaxfit.models import nnx as nnx_models
from flaxfit.runs.config import TrainConfig
from flaxfit.runs.directory import RunError, load_run, train_run
from flaxfit.tools.predict import predict_probabilities
from flaxfit.training import deck
from flaxfit.training.step import nnx_model
from helpers import make_dataset, make_digits

TIMING = ("seconds", "images_per_second")


def measured(history):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history.rows]


def assert_same_tree(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# --- NNX twins of the deck's models ---------------------------------------------------------


@pytest.mark.parametrize("name", ["softmax", "cnn1", "cnn2", "mlp"])
def test_a_linen_model_and_its_nnx_twin_compute_the_same_logits_and_gradients(name):
    linen = flaxfit.create_train_state(flaxfit.create_model(name), jax.random.key(0))
    twin = flaxfit.create_train_state(flaxfit.create_model(name, api="nnx", seed=1))
    # The same paths, shapes and dtypes: one params dict fits both.
    assert jax.tree.map(jnp.shape, linen.params) == jax.tree.map(jnp.shape, twin.params)
    images, labels = make_digits(16)
    x, onehot = images.astype(np.float32) / 255, jax.nn.one_hot(labels, 10)
    with jax.default_matmul_precision("highest"):
        outs = [
            jax.value_and_grad(flaxfit.loss_fn)(linen.params, state, x, onehot)
            for state in (linen, twin)
        ]
        scores = [s.apply_fn({"params": linen.params}, x, get_logits=True) for s in (linen, twin)]
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outs[0][0], outs[1][0], rtol=1e-6)
    grads_linen, grads_nnx = (jax.tree.leaves(out[1]) for out in outs)
    for g_linen, g_nnx in zip(grads_linen, grads_nnx, strict=True):
        np.testing.assert_allclose(g_linen, g_nnx, rtol=1e-4, atol=1e-6)


def test_an_nnx_state_takes_the_decks_verbatim_train_step_and_gives_the_module_back():
    model = nnx_models.MLP(hidden=(32,), rngs=nnx.Rngs(0))
    state = flaxfit.create_train_state(model, optimizer=optax.adam(1e-2))
    assert isinstance(state.params["Dense_0"]["kernel"], jax.Array)  # a plain nested dict
    data = make_dataset(600, 200)
    state, history = flaxfit.fit(
        state, data.train, data.test, epochs=2, batch_size=50, train_step=deck.train_step,
        verbose=False,
    )  # fmt: skip
    assert history.last["test_accuracy"] > 0.9
    trained = nnx_model(state)
    assert isinstance(trained, nnx_models.MLP)
    np.testing.assert_array_equal(trained.Dense_1.kernel[...], state.params["Dense_1"]["kernel"])
    x = data.test.images[:8].astype(np.float32) / 255
    np.testing.assert_allclose(trained(x), state.apply_fn({"params": state.params}, x), rtol=1e-6)
    # params surgery works on it as on a Linen state's params
    assert "Dense_1/kernel" in flaxfit.params.select(state.params, "Dense_1/*")


# --- BatchNorm and Dropout ------------------------------------------------------------------


class LinenBNDropout(nn.Module):
    """Flax-examples style: `train` argument, BatchNorm, Dropout."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.reshape((x.shape[0], -1))
        x = nn.Dense(32)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.Dropout(0.3, deterministic=not train)(nn.relu(x))
        return nn.Dense(10)(x)


class NnxBNDropout(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.dense = nnx.Linear(784, 32, rngs=rngs)
        self.bn = nnx.BatchNorm(32, momentum=0.9, rngs=rngs)
        self.dropout = nnx.Dropout(0.3, rngs=rngs)
        self.out = nnx.Linear(32, 10, rngs=rngs)

    def __call__(self, x):
        x = self.bn(self.dense(x.reshape((x.shape[0], -1))))
        return self.out(self.dropout(nnx.relu(x)))


@pytest.mark.parametrize("make", [
    lambda: flaxfit.create_train_state(LinenBNDropout(), jax.random.key(0)),
    lambda: flaxfit.create_train_state(NnxBNDropout(rngs=nnx.Rngs(0))),
], ids=["linen", "nnx"])  # fmt: skip
def test_batchnorm_statistics_update_in_training_and_serve_evaluation(make):
    data = make_dataset(600, 200)
    state = make()
    before = jax.device_get(state.batch_stats)
    state, history = flaxfit.fit(state, data.train, data.test, epochs=2, batch_size=50,
                                 verbose=False)  # fmt: skip
    after = jax.device_get(state.batch_stats)
    assert not np.allclose(before["bn" if "bn" in before else "BatchNorm_0"]["mean"],
                           after["bn" if "bn" in after else "BatchNorm_0"]["mean"])  # fmt: skip
    assert history.last["test_accuracy"] > 0.9
    # Evaluation uses the running averages and no dropout: the same answer every time.
    again = flaxfit.evaluate(state, data.test)
    assert again["loss"] == flaxfit.evaluate(state, data.test)["loss"]
    np.testing.assert_allclose(again["accuracy"], history.last["test_accuracy"])
    # Dropout keys come from (seed, epoch, step): the same fit twice is bit-identical,
    # another seed draws other masks.
    same, _ = flaxfit.fit(make(), data.train, epochs=1, batch_size=50, verbose=False)
    twice, _ = flaxfit.fit(make(), data.train, epochs=1, batch_size=50, verbose=False)
    other, _ = flaxfit.fit(make(), data.train, epochs=1, batch_size=50, seed=1, verbose=False)
    assert_same_tree(same.params, twice.params)
    assert not np.array_equal(same.params["out" if "out" in same.params else "Dense_1"]["bias"],
                              other.params["out" if "out" in other.params else "Dense_1"]["bias"])


# --- your own model file, through the CLI -----------------------------------------------------

LINEN_FILE = """
from flax import linen as nn


class Net(nn.Module):
    width: int = 16

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.reshape((x.shape[0], -1))
        x = nn.Dense(self.width)(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.Dropout(0.2, deterministic=not train)(nn.relu(x))
        return nn.Dense(10)(x)


NOT_A_MODULE = 3
"""

NNX_FILE = """
from flax import nnx


class Net(nnx.Module):
    def __init__(self, width: int = 16, *, rngs: nnx.Rngs):
        self.dense = nnx.Linear(784, width, rngs=rngs)
        self.bn = nnx.BatchNorm(width, rngs=rngs)
        self.dropout = nnx.Dropout(0.2, rngs=rngs)
        self.out = nnx.Linear(width, 10, rngs=rngs)

    def __call__(self, x):
        x = self.bn(self.dense(x.reshape((x.shape[0], -1))))
        return self.out(self.dropout(nnx.relu(x)))
"""


@pytest.mark.parametrize("source", [LINEN_FILE, NNX_FILE], ids=["linen", "nnx"])
def test_a_user_model_file_run_resumes_bit_exactly_and_is_rebuilt_by_load_run(tmp_path, source):
    path = tmp_path / "my_model.py"
    path.write_text(textwrap.dedent(source))
    config = TrainConfig(model=f"{path}:Net", model_args={"width": 24}, epochs=3, batch_size=50,
                         steps_per_dispatch=5)  # fmt: skip
    data = make_dataset(600, 100)
    unbroken = train_run(config, tmp_path / "full", dataset=data, verbose=False)
    train_run(config, tmp_path / "split", dataset=data, verbose=False, stop_after_epoch=1)
    resumed = train_run(config, tmp_path / "split", dataset=data, verbose=False)
    assert_same_tree(resumed.params, unbroken.params)
    assert_same_tree(resumed.batch_stats, unbroken.batch_stats)
    assert measured(resumed.history) == measured(unbroken.history)
    run = load_run(tmp_path / "full")
    assert run.config.model_sha256 and run.config.api == ("nnx" if "nnx" in source else "linen")
    assert_same_tree(run.params, unbroken.params)
    assert_same_tree(run.batch_stats, unbroken.batch_stats)
    probs = predict_probabilities(
        run.model, run.params, data.test.images, batch_stats=run.batch_stats
    )
    assert (probs.argmax(-1) == data.test.labels).mean() > 0.8


def test_a_changed_model_source_is_refused_unless_allowed(tmp_path, idx_dir, capsys):
    path = tmp_path / "my_model.py"
    path.write_text(textwrap.dedent(LINEN_FILE))
    out = tmp_path / "run"
    assert main(["train", "--model", f"{path}:Net", "--model-arg", "width=8", "--epochs", "1",
                 "--batch-size", "4", "--data-dir", str(idx_dir), "--out", str(out),
                 "--quiet"]) == 0  # fmt: skip
    assert main(["evaluate", "--run", str(out)]) == 0
    path.write_text(path.read_text() + "\n# an edit\n")
    capsys.readouterr()
    assert main(["evaluate", "--run", str(out)]) == 2
    error = capsys.readouterr().err
    assert "has changed since" in error and "--allow-changed-model" in error
    assert len(error.strip().splitlines()) == 1
    assert main(["evaluate", "--run", str(out), "--allow-changed-model"]) == 0


@pytest.mark.parametrize("model, args, expected", [
    ("{dir}/missing.py:Net", [], "no such file"),
    ("{dir}/my_model.py:Nett", [], "has no 'Nett'; its Flax modules are: Net"),
    ("{dir}/my_model.py:NOT_A_MODULE", [], "is not a flax.linen.Module or flax.nnx.Module"),
    ("{dir}/my_model.py:Net", ["--model-arg", "depth=3"], "no option 'depth'; it takes: width"),
    ("{dir}/my_model.py:Net", ["--model-arg", "width"], "write it as name=value"),
    ("no_such_package.models:Net", [], "not found on the Python path"),
])  # fmt: skip
def test_a_bad_user_model_is_one_line_exit_2_and_nothing_written(
    tmp_path, idx_dir, capsys, model, args, expected
):
    (tmp_path / "my_model.py").write_text(textwrap.dedent(LINEN_FILE))
    out = tmp_path / "run"
    code = main(["train", "--model", model.format(dir=tmp_path), *args, "--epochs", "1",
                 "--data-dir", str(idx_dir), "--out", str(out), "--quiet"])  # fmt: skip
    error = capsys.readouterr().err
    assert code == 2
    assert expected in error and len(error.strip().splitlines()) == 1, error
    assert not out.exists()


def test_the_cli_trains_the_nnx_twin(tmp_path, idx_dir, capsys):
    out = tmp_path / "run"
    assert main(["train", "--api", "nnx", "--model", "softmax", "--epochs", "2", "--batch-size",
                 "4", "--data-dir", str(idx_dir), "--out", str(out), "--quiet"]) == 0  # fmt: skip
    run = load_run(out)
    assert run.config.api == "nnx" and isinstance(run.model, nnx.Module)
    assert main(["evaluate", "--run", str(out)]) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_load_run_never_imports_a_model_stored_in_the_run(tmp_path):
    config = TrainConfig(model="mlp", epochs=1, batch_size=50)
    out = tmp_path / "run"
    train_run(config, out, dataset=make_dataset(100, 50), verbose=False)
    (out / "net.py").write_text("raise SystemExit('must not run')\n" + LINEN_FILE)
    bad = TrainConfig(model=f"{out / 'net.py'}:Net")
    with pytest.raises(RunError, match="inside the run directory"):
        from flaxfit.runs.directory import check_model_source

        check_model_source(bad, out, allow_changed=True)


# --- metrics from the task ---------------------------------------------------------------------


class Regressor(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(x.reshape((x.shape[0], -1)))[:, 0]


@jax.jit
def mse_train_step(state, inputs, targets):
    def loss(params):
        return jnp.mean((state.apply_fn({"params": params}, inputs) - targets) ** 2)

    value, grads = jax.value_and_grad(loss)(state.params)
    return state.apply_gradients(grads=grads), {"loss": value, "mse": value}


@jax.jit
def mse_eval_step(state, inputs, targets, mask):
    errors = (state.apply_fn({"params": state.params}, inputs) - targets) ** 2
    return {"mse_sum": jnp.sum(jnp.where(mask, errors, 0.0)), "count": jnp.sum(mask)}


def regression_data(n, seed):
    rng = np.random.default_rng(seed)
    images = rng.random((n, 8, 8)).astype(np.float32)
    return images, images.mean((1, 2)) * 3.0


def test_a_regression_history_holds_its_own_metrics_and_no_accuracy():
    state = flaxfit.create_train_state(Regressor(), jax.random.key(0), optax.adam(1e-2),
                                       input_shape=(1, 8, 8))  # fmt: skip
    state, history = flaxfit.fit(state, regression_data(512, 0), regression_data(128, 1),
                                 epochs=3, batch_size=32, train_step=mse_train_step,
                                 eval_step=mse_eval_step, verbose=False)  # fmt: skip
    assert history.columns == ("epoch", "train_loss", "train_mse", "test_mse", "seconds",
                               "images_per_second")  # fmt: skip
    assert history["test_mse"][-1] < history["test_mse"][0]
    # A step that returns only its loss: the loss and nothing that claims to be an accuracy.
    bare = jax.jit(lambda s, x, y: (mse_train_step(s, x, y)[0], mse_train_step(s, x, y)[1]["loss"]))
    _, history = flaxfit.fit(state, regression_data(512, 0), epochs=1, batch_size=32,
                             train_step=bare, verbose=False)  # fmt: skip
    assert history.metrics == ("train_loss",)


def test_the_default_eval_step_on_targets_that_are_not_classes_says_what_to_pass():
    state = flaxfit.create_train_state(Regressor(), jax.random.key(0), input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="pass your own eval_step"):
        flaxfit.fit(state, regression_data(64, 0), regression_data(64, 1), epochs=1,
                    batch_size=32, train_step=mse_train_step, verbose=False)  # fmt: skip


def test_a_metric_of_unknown_shape_is_a_clear_error():
    state = flaxfit.create_train_state(Regressor(), jax.random.key(0), input_shape=(1, 8, 8))

    def vector_step(state, inputs, targets):
        new_state, metrics = mse_train_step(state, inputs, targets)
        return new_state, {"loss": metrics["loss"], "errors": jnp.zeros(3)}

    with pytest.raises(ValueError, match="metric 'errors' is \\(3,\\), not a scalar"):
        flaxfit.fit(state, regression_data(64, 0), epochs=1, batch_size=32,
                    train_step=vector_step, verbose=False)  # fmt: skip


# --- the NNX tutorial's own steps in fit() -----------------------------------------------------


class TutorialMLP(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.linear1 = nnx.Linear(784, 64, rngs=rngs)
        self.dropout = nnx.Dropout(0.1, rngs=rngs)
        self.linear2 = nnx.Linear(64, 10, rngs=rngs)

    def __call__(self, x):
        x = x.reshape(x.shape[0], -1)
        return self.linear2(self.dropout(nnx.relu(self.linear1(x))))


def tutorial_loss_fn(model, batch):
    logits = model(batch["image"])
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits=logits, labels=batch["label"]
    ).mean()
    return loss, logits


@nnx.jit
def tutorial_train_step(model, optimizer, metrics, batch):
    grad_fn = nnx.value_and_grad(tutorial_loss_fn, has_aux=True)
    (loss, logits), grads = grad_fn(model, batch)
    metrics.update(loss=loss, logits=logits, labels=batch["label"])
    optimizer.update(model, grads)


@nnx.jit
def tutorial_eval_step(model, metrics, batch):
    loss, logits = tutorial_loss_fn(model, batch)
    metrics.update(loss=loss, logits=logits, labels=batch["label"])


def test_the_nnx_tutorial_steps_run_unchanged_in_fit():
    model = TutorialMLP(rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adamw(1e-2), wrt=nnx.Param)
    metrics = nnx.MultiMetric(
        accuracy=nnx.metrics.Accuracy(), loss=nnx.metrics.Average("loss")
    )
    data = make_dataset(640, 200)
    first = np.asarray(model.linear1.kernel[...]).copy()
    trained, history = flaxfit.fit(
        model, data.train, data.test, optimizer=optimizer, metrics=metrics,
        train_step=tutorial_train_step, eval_step=tutorial_eval_step, epochs=2, batch_size=64,
        verbose=False,
    )  # fmt: skip
    assert trained is model and int(optimizer.step[...]) == 20  # 2 epochs of 10 steps
    assert not np.array_equal(first, model.linear1.kernel[...])
    assert history.columns == ("epoch", "train_loss", "train_accuracy", "test_loss",
                               "test_accuracy", "seconds", "images_per_second")  # fmt: skip
    assert history.last["test_accuracy"] > 0.9
    # History's test metrics are what metrics.compute() gives for the trained model.
    metrics.reset()
    tutorial_eval_step(model, metrics, {"image": data.test.images[..., None] / 255.0,
                                        "label": data.test.labels.astype(np.int32)})  # fmt: skip
    np.testing.assert_allclose(float(metrics.compute()["accuracy"]),
                               history.last["test_accuracy"], rtol=1e-6)  # fmt: skip


def test_fit_with_an_nnx_module_but_no_optimizer_says_what_to_pass():
    with pytest.raises(TypeError, match="optimizer=nnx.Optimizer"):
        flaxfit.fit(TutorialMLP(rngs=nnx.Rngs(0)), make_digits(64), epochs=1)


def test_a_batchnorm_run_exports_and_starts_another_with_its_statistics(tmp_path):
    from jax import export

    from flaxfit.tools.export import export_predict

    path = tmp_path / "my_model.py"
    path.write_text(textwrap.dedent(LINEN_FILE))
    data = make_dataset(300, 50)
    config = TrainConfig(model=f"{path}:Net", epochs=1, batch_size=50)
    run = train_run(config, tmp_path / "a", dataset=data, verbose=False)
    exported = export.deserialize(bytearray(
        export_predict(run.model, run.params, batch_stats=run.batch_stats).serialize()
    ))  # fmt: skip
    x = data.test.images.astype(np.float32) / 255
    expected = predict_probabilities(run.model, run.params, x, batch_stats=run.batch_stats)
    np.testing.assert_allclose(exported.call(x), expected, rtol=1e-5, atol=1e-6)
    # --init-from takes the running averages with the params they were measured with.
    from flaxfit.models.params import Lineage
    from flaxfit.runs.directory import _initial_state

    child = TrainConfig(model=f"{path}:Net", init_from=str(tmp_path / "a"))
    fresh = flaxfit.create_train_state(child.make_model(), jax.random.key(1))
    started = _initial_state(fresh, child, None, Lineage([]), lambda _: None)
    assert_same_tree(started.params, run.params)
    assert_same_tree(started.batch_stats, run.batch_stats)
    assert not np.array_equal(fresh.batch_stats["BatchNorm_0"]["var"],
                              run.batch_stats["BatchNorm_0"]["var"])  # fmt: skip


def test_label_smoothing_smooths_the_targets_the_step_trains_toward_and_nothing_else():
    seen = {}

    @jax.jit
    def step(state, inputs, labels):  # slide 14's step, also reporting its targets' peak
        new_state, loss = deck.train_step(state, inputs, labels)
        return new_state, {"loss": loss, "peak": labels.max(), "floor": labels.min()}

    data = make_dataset(256, 64)
    for smoothing in (0.0, 0.2):
        state = flaxfit.create_train_state(flaxfit.SoftmaxRegression(), jax.random.key(0))
        _, seen[smoothing] = flaxfit.fit(state, data.train, data.test, epochs=1, batch_size=64,
                                         train_step=step, label_smoothing=smoothing,
                                         verbose=False)  # fmt: skip
    assert seen[0.0]["train_peak"] == [1.0] and seen[0.0]["train_floor"] == [0.0]
    np.testing.assert_allclose(seen[0.2]["train_peak"], [1 - 0.2 + 0.2 / 10], rtol=1e-6)
    np.testing.assert_allclose(seen[0.2]["train_floor"], [0.2 / 10], rtol=1e-6)


def test_label_smoothing_changes_training_but_not_how_the_test_set_is_scored():
    data = make_dataset(256, 64)
    runs = {}
    for smoothing in (0.0, 0.1):
        state = flaxfit.create_train_state(flaxfit.SoftmaxRegression(), jax.random.key(0))
        runs[smoothing] = flaxfit.fit(state, data.train, data.test, epochs=1, batch_size=64,
                                      label_smoothing=smoothing, verbose=False)  # fmt: skip
    (plain, plain_history), (smoothed, smoothed_history) = runs[0.0], runs[0.1]
    dense = "Dense_0"
    assert not np.array_equal(plain.params[dense]["kernel"], smoothed.params[dense]["kernel"])
    # The test loss is the plain cross-entropy of the smoothed run's own params.
    scored = flaxfit.evaluate(smoothed, data.test)
    assert smoothed_history["test_loss"] == [pytest.approx(scored["loss"], rel=1e-6)]
    assert plain_history["train_accuracy"] != [] and "train_peak" not in smoothed_history.columns


def test_label_smoothing_or_augment_with_nnx_tutorial_steps_is_refused_with_what_to_do():
    model = nnx_models.SoftmaxRegression(rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    with pytest.raises(ValueError, match="smooth or augment inside your train_step"):
        flaxfit.fit(model, make_dataset(64, 16).train, epochs=1, optimizer=optimizer,
                    label_smoothing=0.1, verbose=False)  # fmt: skip
