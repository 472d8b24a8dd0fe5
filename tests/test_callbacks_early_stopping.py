"""EarlyStopping: scripted metrics for the rules, real fits for stopping and restoring."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flaxfit.models import SoftmaxRegression
from flaxfit.training.callbacks import Callback, EarlyStopping
from flaxfit.training.loop import fit
from flaxfit.training.step import create_train_state, loss_fn
from helpers import make_digits

TRAIN = make_digits(1000, seed=0)
TEST = make_digits(200, seed=1)


def row(epoch, **values):
    """A History row with plausible numbers, overridden by `values`."""
    metrics = {
        "epoch": epoch,
        "train_loss": 1.0,
        "train_accuracy": 0.5,
        "test_loss": 1.0,
        "test_accuracy": 0.5,
        "seconds": 1.0,
        "images_per_second": 1000.0,
    }
    return metrics | values


def drive(stopper, values, state=None):
    """Feed `values` of the monitored column to the hooks; return the epochs run."""
    stopper.on_fit_begin(state, len(values))
    for epoch, value in enumerate(values, start=1):
        if stopper.on_epoch_end(epoch, state, row(epoch, **{stopper.monitor: value})):
            return epoch
    return len(values)


@pytest.mark.parametrize("patience", [1, 2, 3])
def test_stops_after_exactly_patience_epochs_without_improvement(patience):
    stopper = EarlyStopping("test_loss", patience=patience, restore_best=False)
    # Best at epoch 2, then flat or worse for good; a later 0.1 is never reached.
    values = [1.0, 0.5, 0.5, 0.7, 0.6, 0.9, 0.1]
    assert drive(stopper, values) == 2 + patience
    assert stopper.stopped_epoch == 2 + patience
    assert (stopper.best_epoch, stopper.best_value) == (2, 0.5)


def test_an_improvement_restarts_the_count():
    stopper = EarlyStopping("test_loss", patience=3, restore_best=False)
    values = [1.0, 1.1, 1.2, 0.5, 0.6, 0.7, 0.8, 0.0]
    assert drive(stopper, values) == 7
    assert stopper.best_epoch == 4


def test_never_stops_while_improving():
    stopper = EarlyStopping("test_loss", patience=1, restore_best=False)
    assert drive(stopper, [1.0, 0.9, 0.8, 0.7]) == 4
    assert stopper.stopped_epoch is None
    assert (stopper.best_epoch, stopper.best_value) == (4, 0.7)


def test_min_delta_is_the_margin_an_epoch_must_beat():
    stopper = EarlyStopping("test_loss", patience=2, min_delta=0.25, restore_best=False)
    # 0.75 ties best - min_delta (no improvement); 0.7 beats it.
    assert drive(stopper, [1.0, 0.75, 0.7, 0.5, 0.46]) == 5
    assert (stopper.best_epoch, stopper.best_value) == (3, 0.7)

    without = EarlyStopping("test_loss", patience=2, restore_best=False)
    assert drive(without, [1.0, 0.75, 0.7, 0.5, 0.46]) == 5
    assert without.stopped_epoch is None and without.best_epoch == 5


def test_min_delta_counts_upwards_in_max_mode():
    stopper = EarlyStopping("test_accuracy", patience=1, min_delta=0.01, restore_best=False)
    assert drive(stopper, [0.90, 0.92, 0.925]) == 3
    assert stopper.stopped_epoch == 3 and stopper.best_epoch == 2


@pytest.mark.parametrize(
    "monitor, mode, expected",
    [
        ("test_loss", "auto", "min"),
        ("train_loss", "auto", "min"),
        ("test_accuracy", "auto", "max"),
        ("train_accuracy", "auto", "max"),
        ("test_loss", "max", "max"),
        ("test_accuracy", "min", "min"),
        ("seconds", "min", "min"),
        ("images_per_second", "max", "max"),
    ],
)
def test_mode(monitor, mode, expected):
    stopper = EarlyStopping(monitor, patience=1, mode=mode, restore_best=False)
    assert stopper.mode == expected
    rising = [0.1, 0.2, 0.3, 0.4]
    # Rising values improve in max mode (no stop); in min mode epoch 2 already fails.
    assert drive(stopper, rising) == (4 if expected == "max" else 2)


def test_auto_mode_needs_a_loss_or_accuracy():
    with pytest.raises(ValueError, match=r"mode 'auto' cannot tell .*'seconds'.*mode='min'"):
        EarlyStopping("seconds")


def test_an_unknown_monitor_lists_the_columns():
    with pytest.raises(ValueError, match="unknown monitor 'val_loss'") as error:
        EarlyStopping("val_loss")
    for column in ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds"):
        assert column in str(error.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"patience": 0}, "patience must be a whole number of epochs, 1 or more; got 0"),
        ({"patience": 2.5}, "patience must be .* got 2.5"),
        ({"min_delta": -0.1}, "min_delta must be 0 or more"),
        ({"min_delta": math.nan}, "min_delta must be 0 or more"),
        ({"mode": "minimum"}, "mode must be one of auto, min, max; got 'minimum'"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EarlyStopping(**kwargs)


def test_a_diverged_nan_loss_does_not_improve_and_is_no_error():
    stopper = EarlyStopping("test_loss", patience=2, restore_best=False)
    assert drive(stopper, [1.0, math.nan, math.nan, 0.5]) == 3
    assert stopper.best_epoch == 1


def test_restore_best_keeps_a_host_copy_of_the_best_params():
    stopper = EarlyStopping("train_loss", patience=2)
    stopper.on_fit_begin(None, 5)
    state = create_train_state(SoftmaxRegression(), jax.random.key(0))
    for epoch, value in enumerate([1.0, 0.5, 0.7, 0.8], start=1):
        state = state.replace(params=jax.tree.map(lambda p, e=epoch: p + e, state.params))
        if epoch == 2:
            best = jax.tree.map(np.array, jax.device_get(state.params))
        stopper.on_epoch_end(epoch, state, row(epoch, train_loss=value))
    restored = stopper.on_fit_end(state, None)
    assert stopper.best_epoch == 2
    assert int(restored.step) == int(state.step)
    jax.tree.map(np.testing.assert_array_equal, restored.params, best)
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(restored.params))


def test_a_reused_instance_starts_each_fit_afresh():
    stopper = EarlyStopping("test_loss", patience=1, restore_best=False)
    drive(stopper, [0.1, 0.2])
    assert drive(stopper, [1.0, 0.9, 0.8]) == 3
    assert stopper.stopped_epoch is None and stopper.best_value == 0.8


# --- through fit() -------------------------------------------------------------

STEPS_PER_EPOCH = 10  # 1000 examples, batches of 100
LEARNING_EPOCHS = 2


def learn_then_unlearn(state, inputs, labels):
    """SGD for the first two epochs, gradient ascent after: test loss is best at epoch 2."""
    loss, grads = jax.value_and_grad(loss_fn)(state.params, state, inputs, labels)
    sign = jnp.where(state.step < LEARNING_EPOCHS * STEPS_PER_EPOCH, 1.0, -1.0)
    return state.apply_gradients(grads=jax.tree.map(lambda g: sign * g, grads)), loss


class CopyParams(Callback):
    """Host copies of every epoch's params, taken before fit donates the state."""

    def __init__(self):
        self.params = {}

    def on_epoch_end(self, epoch, state, metrics):
        self.params[epoch] = jax.tree.map(np.array, jax.device_get(state.params))


@pytest.mark.parametrize("restore_best", [True, False])
def test_fit_stops_and_returns_the_best_or_the_last_params(restore_best):
    stopper = EarlyStopping("test_loss", patience=2, restore_best=restore_best)
    copies = CopyParams()
    state = create_train_state(SoftmaxRegression(), jax.random.key(0), optax.sgd(0.05))
    state, history = fit(state, TRAIN, TEST, epochs=10, batch_size=100,
                         train_step=learn_then_unlearn, callbacks=[copies, stopper],
                         verbose=False)  # fmt: skip

    losses = history["test_loss"]
    assert losses[1] < losses[0] and losses[2] > losses[1] and losses[3] > losses[1]
    assert len(history) == 4 == stopper.stopped_epoch  # 2 + patience
    assert stopper.best_epoch == 2 and stopper.best_value == losses[1]
    expected = copies.params[2 if restore_best else 4]
    jax.tree.map(np.testing.assert_array_equal, state.params, expected)
    assert not np.array_equal(
        copies.params[2]["Dense_0"]["bias"], copies.params[4]["Dense_0"]["bias"]
    )
    assert int(state.step) == 4 * STEPS_PER_EPOCH  # only the params go back


def test_monitoring_a_test_column_without_a_test_split_is_an_error():
    state = create_train_state(SoftmaxRegression(), jax.random.key(0))
    stopper = EarlyStopping("test_accuracy")
    message = (
        r"'test_accuracy' is NaN at epoch 1 because fit\(\) has no test split; "
        r"pass a test split .* monitor='train_accuracy'"
    )
    with pytest.raises(ValueError, match=message):
        fit(state, TRAIN, epochs=3, batch_size=100, callbacks=[stopper], verbose=False)
