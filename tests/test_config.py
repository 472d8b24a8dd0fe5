import json

import pytest

from flaxfit.runs.config import TrainConfig


def test_the_defaults_are_the_deck_model_with_adam_on_a_cosine():
    config = TrainConfig()
    assert (config.model, config.epochs, config.batch_size) == ("cnn1", 3, 128)
    assert (config.optimizer, config.schedule, config.lr) == ("adam", "cosine", 2e-3)


def test_make_train_runs_the_fast_recipe():
    import shlex
    from pathlib import Path

    from flaxfit.runs.config import RECIPES

    makefile = (Path(__file__).parent.parent / "Makefile").read_text()
    line = next(line for line in makefile.splitlines() if "/flaxfit train " in line)
    argv = shlex.split(line.split("/flaxfit ", 1)[1])
    assert _train_config(argv) == TrainConfig(**RECIPES["fast"])


def test_json_round_trip():
    config = TrainConfig(model="softmax", epochs=5, data_dir="/data")
    assert TrainConfig.from_dict(json.loads(config.to_json())) == config
    transfer = TrainConfig(init_from="runs/A", init_only=["Conv_0/*"], freeze=("Conv_0/*",))
    assert transfer.init_only == ("Conv_0/*",)  # lists from JSON become tuples
    assert transfer.to_dict()["freeze"] == ["Conv_0/*"]  # and back to plain JSON lists
    assert TrainConfig.from_dict(json.loads(transfer.to_json())) == transfer


@pytest.mark.parametrize(
    "values, message",
    [
        ({"freeze": "Conv_0/*"}, "freeze must be a list of path patterns, got 'Conv_0/\\*'"),
        ({"init_only": [3]}, "init_only must be a list of path patterns"),
        ({"init_only": ["Conv_0/*"]}, "init_only and init_strict need init_from"),
        ({"init_strict": True}, "init_only and init_strict need init_from"),
    ],
)
def test_bad_transfer_fields_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**values)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("model", "vgg", "model 'vgg' is unknown; choose one of: softmax, cnn1, cnn2, mlp"),
        ("dataset", "cifar100", "dataset 'cifar100' is unknown"),
        ("dataset", "mnist:/data", "mnist takes no path; name a local copy of it with data_dir"),
        ("image_size", (32, 32), "image_size resizes the pictures of a folder: dataset only"),
        ("schedule", "step", "schedule 'step' is unknown"),
        ("optimizer", "lion", "optimizer 'lion' is unknown"),
        ("epochs", 0, "epochs must be a positive integer, got 0"),
        ("batch_size", 1.5, "batch_size must be a positive integer, got 1.5"),
        ("lr", -1.0, "lr must be positive, got -1.0"),
        ("warmup_epochs", 9.0, "warmup_epochs must be within 0..epochs"),
        ("decay_rate", 1.5, "decay_rate must be in"),
        ("momentum", 1.0, "momentum must be in"),
        ("b2", 1.0, r"b2 must be in \[0, 1\)"),
        ("weight_decay", -0.1, "weight_decay must be >= 0"),
        ("clip_norm", 0.0, "clip_norm must be positive"),
        ("label_smoothing", 1.0, r"label_smoothing must be in \[0, 1\)"),
    ],
)
def test_bad_values_are_named(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


def test_unknown_fields_are_named():
    with pytest.raises(ValueError, match="unknown config fields: colour"):
        TrainConfig.from_dict({"colour": "red"})


def test_the_config_records_the_canonical_spec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = TrainConfig(dataset="folder:pets", image_size=[32, 48])
    assert config.dataset == f"folder:{tmp_path / 'pets'}"
    assert config.image_size == (32, 48)  # JSON's list reads back as the same tuple
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig(dataset="cifar10", data_dir="/copies").data_dir == "/copies"
    with pytest.raises(ValueError, match="data_dir names a local copy of a named dataset"):
        TrainConfig(dataset="npz:a.npz", data_dir="/x")
    with pytest.raises(ValueError, match="image_size must be two positive integers"):
        TrainConfig(dataset="folder:pets", image_size=(32, 0))


def _train_config(argv):
    """The TrainConfig `flaxfit train ARGV` would run, built the way main() builds it."""
    from flaxfit.cli import _config_from_args, build_parser, train_defaults

    parser = build_parser()
    args = parser.parse_args(argv)
    parser.config_parsers["train"].set_defaults(**train_defaults(args))
    return _config_from_args(parser.parse_args(argv))


def test_a_recipe_sets_its_values_and_flags_and_a_config_file_override_it(tmp_path):
    from flaxfit.runs.config import RECIPES

    fast = _train_config(["train", "--recipe", "fast"])
    assert {name: getattr(fast, name) for name in RECIPES["fast"]} == RECIPES["fast"]
    assert fast.model == "cnn1" and fast.label_smoothing > 0  # the rest stays the default
    assert _train_config(["train", "--recipe", "fast", "--epochs", "5"]).epochs == 5
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"lr": 0.01}))
    # A config file is a whole config (TrainConfig's defaults for what it leaves out).
    from_file = _train_config(["train", "--recipe", "fast", "--config", str(path)])
    assert from_file == TrainConfig(lr=0.01)
    assert _train_config(["train"]) == TrainConfig()  # no recipe: the defaults
