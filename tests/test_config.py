import json

import jax.numpy as jnp
import pytest

from flaxfit.config import TrainConfig


def test_defaults_are_make_trains_run():
    config = TrainConfig()
    assert (config.model, config.epochs, config.batch_size) == ("cnn1", 3, 128)
    assert (config.optimizer, config.schedule, config.lr) == ("adam", "cosine", 2e-3)


def test_cosine_schedule_decays_from_lr_to_zero_over_the_run():
    schedule = TrainConfig(epochs=2, lr=0.1).learning_rate(steps_per_epoch=5)
    assert float(schedule(0)) == pytest.approx(0.1)
    assert float(schedule(5)) == pytest.approx(0.05)  # half-way: cos(pi/2)
    assert float(schedule(10)) == pytest.approx(0.0, abs=1e-9)
    assert TrainConfig(lr=0.1, schedule="constant").learning_rate(5) == 0.1


def test_optimizer_follows_the_config():
    params = {"w": jnp.zeros(())}
    grads = {"w": jnp.ones(())}
    for name in ("adam", "sgd"):
        optimizer = TrainConfig(optimizer=name, lr=0.1, schedule="constant").make_optimizer(5)
        updates, _ = optimizer.update(grads, optimizer.init(params), params)
        # Both take a first step of exactly -lr on a unit gradient.
        assert float(updates["w"]) == pytest.approx(-0.1, rel=1e-4)


def test_json_round_trip():
    config = TrainConfig(model="softmax", epochs=5, data_dir="/data")
    assert TrainConfig.from_dict(json.loads(config.to_json())) == config


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("model", "vgg", "model 'vgg' is unknown; choose one of: softmax, cnn1, cnn2, mlp"),
        ("dataset", "cifar10", "dataset 'cifar10' is unknown"),
        ("schedule", "step", "schedule 'step' is unknown"),
        ("optimizer", "lion", "optimizer 'lion' is unknown"),
        ("epochs", 0, "epochs must be a positive integer, got 0"),
        ("batch_size", 1.5, "batch_size must be a positive integer, got 1.5"),
        ("lr", -1.0, "lr must be positive, got -1.0"),
    ],
)
def test_bad_values_are_named(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


def test_unknown_fields_are_named():
    with pytest.raises(ValueError, match="unknown config fields: colour"):
        TrainConfig.from_dict({"colour": "red"})
