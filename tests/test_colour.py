"""Any image-classification data in the registry's models: any (H, W, C), any number of
classes, a ResNet with BatchNorm for colour pictures, on-device augmentation that keeps
resume exact, and the data's shape and class names recorded in the run."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flaxfit
from flaxfit.cli import main as cli_main
from flaxfit.models.params import count
from flaxfit.runs import directory as run_directory
from flaxfit.runs.config import TrainConfig
from flaxfit.runs.directory import RunError, load_run, train_run
from flaxfit.training import augment
from helpers import CLASSES, colour_dataset, shared_colour_run


# The ResNets are checked on colour pictures by the tests below (they compile for ~20 s).
@pytest.mark.parametrize("name", ["softmax", "cnn1", "cnn2", "mlp"])
@pytest.mark.parametrize("api", ["linen", "nnx"])
def test_every_registry_model_takes_colour_pictures_and_any_number_of_classes(name, api):
    model = flaxfit.create_model(name, api=api, num_classes=7, input_shape=(12, 16, 3))
    state = flaxfit.create_train_state(model, jax.random.key(0), input_shape=(1, 12, 16, 3))
    x = jnp.zeros((2, 12, 16, 3))
    variables = {"params": state.params}
    if state.batch_stats is not None:
        variables["batch_stats"] = state.batch_stats
    assert state.apply_fn(variables, x, get_logits=True).shape == (2, 7)


def test_the_decks_model_is_still_exactly_the_decks_on_mnist():
    state = flaxfit.create_train_state(flaxfit.SingleLayerCNN(), jax.random.key(0))
    assert count(state.params) == 3_222_954
    assert sorted(state.params) == ["Conv_0", "Dense_0", "Dense_1"]


def test_the_linen_resnet_and_its_nnx_twin_agree_in_training_and_evaluation():
    linen = flaxfit.create_train_state(flaxfit.create_model("resnet8"), jax.random.key(0),
                                       input_shape=(1, 16, 16, 3))  # fmt: skip
    twin = flaxfit.create_train_state(flaxfit.create_model("resnet8", api="nnx",
                                                           input_shape=(16, 16, 3)))  # fmt: skip
    assert jax.tree.structure(linen.params) == jax.tree.structure(twin.params)
    assert jax.tree.structure(linen.batch_stats) == jax.tree.structure(twin.batch_stats)
    x = jax.random.uniform(jax.random.key(1), (8, 16, 16, 3))
    variables = {"params": linen.params, "batch_stats": linen.batch_stats}
    with jax.default_matmul_precision("highest"):
        for train in (False, True):
            outs = [
                s.apply_fn(variables, x, train=train, get_logits=True,
                           **({"mutable": ["batch_stats"]} if train else {}))
                for s in (linen, twin)
            ]  # fmt: skip
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5),
                         outs[0], outs[1])  # fmt: skip


def test_the_strided_matmul_conv_equals_nn_conv():
    from flax import linen as nn

    from flaxfit.models._layers import Conv

    x = jax.random.normal(jax.random.key(0), (2, 9, 8, 3))
    for strides in (1, 2, 3):
        for size in ((1, 1), (3, 3), (4, 4), (5, 5)):
            reference = nn.Conv(4, size, strides=strides, use_bias=False)
            params = reference.init(jax.random.key(1), x)
            ours = Conv(4, size, strides=strides, use_bias=False, impl="matmul")
            with jax.default_matmul_precision("highest"):
                np.testing.assert_allclose(ours.apply(params, x), reference.apply(params, x),
                                           rtol=1e-5, atol=1e-5)  # fmt: skip


def test_augmentation_moves_pictures_without_changing_them_and_never_flips_digits():
    images = jnp.asarray(np.random.default_rng(0).random((64, 10, 10, 3)), jnp.float32)
    key = jax.random.key(0)
    shifted = augment.shift(key, images[..., 0])
    assert shifted.shape == (64, 10, 10)
    # Every output is the input moved by at most 2 pixels, zeros coming in at the border.
    for out, original in zip(np.asarray(shifted), np.asarray(images[..., 0]), strict=True):
        padded = np.pad(original, 2)
        assert any(np.array_equal(out, padded[i:i + 10, j:j + 10])
                   for i in range(5) for j in range(5))  # fmt: skip
    cropped = augment.crop_flip(key, images)
    flipped = [
        not np.array_equal(c, o)
        and any(np.array_equal(c[:, ::-1], np.pad(o, ((4, 4), (4, 4), (0, 0)))[i:i + 10, j:j + 10])
                for i in range(9) for j in range(9))
        for c, o in zip(np.asarray(cropped), np.asarray(images), strict=True)
    ]  # fmt: skip
    assert 10 < sum(flipped) < 54  # about half are mirrored
    assert not np.array_equal(augment.crop_flip(jax.random.key(1), images), cropped)
    assert augment.recipe_for((28, 28)) == "shift"
    assert augment.recipe_for((32, 32, 3)) == "crop_flip"


def test_a_colour_resnet_learns_and_its_run_records_the_data(tmp_path):
    config = TrainConfig(model="resnet8", epochs=4, batch_size=50, lr=3e-3)
    run = train_run(config, tmp_path / "run", dataset=colour_dataset(), verbose=False)
    assert run.history.last["test_accuracy"] > 0.9
    loaded = load_run(tmp_path / "run")
    assert loaded.config.class_names == CLASSES and loaded.config.image_shape == (16, 16, 3)
    assert loaded.batch_stats is not None


def test_an_augmented_run_resumes_bit_exactly(tmp_path):
    # The MLP: augmentation does not depend on the model, and it compiles in a second.
    config = TrainConfig(model="mlp", epochs=2, batch_size=50, augment=True, steps_per_dispatch=4)
    data = colour_dataset(300, 50)
    unbroken = train_run(config, tmp_path / "full", dataset=data, verbose=False)
    train_run(config, tmp_path / "split", dataset=data, verbose=False, stop_after_epoch=1)
    resumed = train_run(config, tmp_path / "split", dataset=data, verbose=False)
    expected = jax.tree.leaves((unbroken.params, unbroken.batch_stats))
    found = jax.tree.leaves((resumed.params, resumed.batch_stats))
    for a, b in zip(expected, found, strict=True):
        np.testing.assert_array_equal(a, b)
    plain = train_run(TrainConfig(model="mlp", epochs=2, batch_size=50, steps_per_dispatch=4),
                      tmp_path / "plain", dataset=data, verbose=False)  # fmt: skip
    assert not np.array_equal(plain.params["Dense_0"]["kernel"],
                              unbroken.params["Dense_0"]["kernel"])  # fmt: skip


def test_resuming_on_other_data_is_refused(tmp_path):
    config = TrainConfig(model="mlp", epochs=2, batch_size=50)
    train_run(config, tmp_path / "run", dataset=colour_dataset(200, 50), verbose=False,
              stop_after_epoch=1)  # fmt: skip
    with pytest.raises(RunError, match="the data is not what the run started with"):
        train_run(config, tmp_path / "run", dataset=colour_dataset(200, 50, side=12),
                  verbose=False)  # fmt: skip


def test_a_training_set_too_large_for_the_device_stops_before_anything_is_written(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(run_directory, "device_memory_available", lambda: 1000)
    with pytest.raises(RunError, match=r"needs 154 kB on each device but only 1 kB is free"):
        train_run(TrainConfig(model="mlp", epochs=1, batch_size=50), tmp_path / "run",
                  dataset=colour_dataset(200, 50), verbose=False)  # fmt: skip
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory):
    """A finished resnet8 run on colour pictures, trained from an npz file with the CLI."""
    root = shared_colour_run(tmp_path_factory)
    return root, root / "run", colour_dataset(400, 100)


def test_evaluate_predict_and_export_speak_the_runs_classes_and_shape(colour_run, capsys, tmp_path):
    from jax import export
    from PIL import Image

    root, out, data = colour_run
    capsys.readouterr()
    assert cli_main(["evaluate", "--run", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("test accuracy: ")
    assert [line.split(":")[0].split() for line in lines[1:]] == [["class", c] for c in CLASSES]
    # Any picture, of any size, becomes the run's 16x16 colour input.
    picture = tmp_path / "ship.png"
    Image.fromarray(np.repeat(np.repeat(data.test.images[0], 3, 0), 3, 1)).save(picture)
    assert cli_main(["predict", "--run", str(out), str(picture)]) == 0
    said = capsys.readouterr().out
    assert said.split(": ", 1)[1].split()[0] in CLASSES and "cat:" in said and "tree:" in said
    assert cli_main(["export", "--run", str(out), "--out", str(tmp_path / "p.jax")]) == 0
    assert "(b, 16, 16, 3) in [0, 1] -> (b, 4)" in capsys.readouterr().out
    exported = export.deserialize(bytearray((tmp_path / "p.jax").read_bytes()))
    assert exported.call(np.zeros((2, 16, 16, 3), np.float32)).shape == (2, 4)


def test_the_report_names_the_classes_and_serve_offers_the_upload_page(
    colour_run, capsys, tmp_path, monkeypatch
):
    from starlette.testclient import TestClient

    from flaxfit.tools.serve import server

    root, out, _ = colour_run
    assert cli_main(["plot", "--run", str(out), "--out", str(tmp_path / "plots")]) == 0
    assert (tmp_path / "plots" / "confusion_matrix.png").exists()
    assert (tmp_path / "plots" / "filters.png").exists()  # the colour first layer, as RGB
    served = []
    # Stop short of serving: what the server would serve is checked through its app.
    monkeypatch.setattr(server, "_run_uvicorn", lambda app, sock: served.append(app))
    assert cli_main(["serve", "--run", str(out), "--port", "0"]) == 0
    with TestClient(served[0]) as client:
        assert "flaxfit picture reader" in client.get("/").text
        assert client.get("/api/model").json()["classes"] == list(CLASSES)
