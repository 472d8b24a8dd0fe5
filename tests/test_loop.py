import io
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flaxfit.models import SingleLayerCNN, SoftmaxRegression
from flaxfit.training import deck
from flaxfit.training.callbacks import Callback, ProgressBar
from flaxfit.training.compile_watch import watch_compiles
from flaxfit.training.history import History
from flaxfit.training.loop import chunk_sizes, epoch_order, evaluate, fit
from flaxfit.training.step import create_train_state, loss_fn, to_model_inputs
from helpers import make_digits

TRAIN = make_digits(1000, seed=0)
TEST = make_digits(303, seed=1)


def fresh(model=None, seed=0, optimizer=None):
    model = model or SoftmaxRegression()
    if optimizer is None:
        return create_train_state(model, jax.random.key(seed))
    return create_train_state(model, jax.random.key(seed), optimizer)


def test_fit_learns_and_reports_every_column():
    state, history = fit(fresh(), TRAIN, TEST, epochs=3, batch_size=50, verbose=False)
    assert len(history) == 3
    assert history["epoch"] == [1, 2, 3]
    assert history.last["test_accuracy"] > 0.95
    assert history["train_loss"][2] < history["train_loss"][0]
    assert all(row["seconds"] > 0 and row["images_per_second"] > 0 for row in history.rows)
    assert history.compile_seconds > 0
    assert int(state.step) == 3 * (1000 // 50)
    # One session, its wall time split: epoch seconds are its training plus evaluation.
    (session,) = history.sessions
    assert session["compile"] > 0
    assert session["from_cache"] == 0  # fit() alone never turns the persistent cache on
    assert session["training"] + session["evaluation"] == pytest.approx(sum(history["seconds"]))
    assert session["evaluation"] > 0 and session["training"] > 0


def test_cnn_reaches_high_accuracy_on_a_small_set():
    _, history = fit(fresh(SingleLayerCNN()), TRAIN, TEST, epochs=2, batch_size=32, verbose=False)
    assert history.last["test_accuracy"] > 0.95


@pytest.mark.parametrize(
    "model, train, batch_size",
    [(SoftmaxRegression(), TRAIN, 64), (SingleLayerCNN(), make_digits(256, seed=2), 32)],
    ids=["softmax", "cnn1"],
)
def test_fast_fit_and_the_decks_plain_loop_give_the_same_params(model, train, batch_size):
    fast, fast_history = fit(
        fresh(model), train, epochs=2, batch_size=batch_size, seed=5, verbose=False
    )
    plain, plain_history = deck.fit(fresh(model), train, epochs=2, batch_size=batch_size, seed=5)
    # Adam moves each weight by up to lr = 1e-3 a step, by the sign of tiny gradients too,
    # so float reordering may shift a handful of weights by ~1e-5 over the run (on CPU), or
    # flip the sign of an almost-zero gradient now and then (TF32 on GPU).
    for a, b in zip(jax.tree.leaves(fast.params), jax.tree.leaves(plain.params), strict=True):
        off = np.abs(np.asarray(a) - np.asarray(b)) > 1e-4 + 1e-4 * np.abs(np.asarray(b))
        assert off.mean() <= 1e-3, f"{off.sum()} of {off.size} weights differ"
        np.testing.assert_allclose(a, b, atol=2 * 2 * len(train[0]) / batch_size * 1e-3)
    np.testing.assert_allclose(fast_history["train_loss"], plain_history["train_loss"], rtol=1e-4)
    assert not np.allclose(fast.params["Dense_0"]["bias"], fresh(model).params["Dense_0"]["bias"])


def test_the_decks_jitted_train_step_works_in_fit():
    ours, _ = fit(fresh(), TRAIN, epochs=1, batch_size=100, verbose=False)
    theirs, _ = fit(
        fresh(), TRAIN, epochs=1, batch_size=100, train_step=deck.train_step, verbose=False
    )
    jax.tree.map(np.testing.assert_allclose, ours.params, theirs.params)


def test_a_user_defined_train_step_is_used():
    calls = []

    def clipped_sgd_step(state, inputs, labels):
        calls.append("traced")  # runs at trace time only
        loss, grads = jax.value_and_grad(loss_fn)(state.params, state, inputs, labels)
        grads = jax.tree.map(lambda g: jnp.clip(g, -0.01, 0.01), grads)
        return state.apply_gradients(grads=grads), loss

    start = fresh(optimizer=optax.sgd(1.0))
    bias_before = np.asarray(start.params["Dense_0"]["bias"])
    state, _ = fit(
        start, TRAIN, epochs=1, batch_size=500, train_step=clipped_sgd_step, verbose=False
    )
    moved = np.abs(np.asarray(state.params["Dense_0"]["bias"]) - bias_before)
    assert calls, "fit did not call the user's train_step"
    assert moved.max() <= 2 * 0.01 + 1e-6  # two steps of at most 0.01 each
    assert moved.max() > 0


def test_evaluation_counts_every_example_exactly_once():
    state = fresh(seed=3)
    images, labels = TEST  # 303 examples: batches of 100 leave a ragged 3
    metrics = evaluate(state, TEST, batch_size=100)
    inputs, onehot = to_model_inputs(jnp.asarray(images), jnp.asarray(labels))
    logits = state.apply_fn({"params": state.params}, inputs, get_logits=True)
    assert metrics["count"] == 303
    assert metrics["correct"] == int(np.sum(np.argmax(logits, -1) == labels))
    expected_loss = float(optax.softmax_cross_entropy(logits, onehot).mean())
    assert metrics["loss"] == pytest.approx(expected_loss, rel=1e-5)


def test_nothing_recompiles_after_the_first_epoch():
    compiles_at_epoch_end = []

    class Record(Callback):
        def on_epoch_end(self, epoch, state, metrics):
            compiles_at_epoch_end.append(stats.compiles)

    with watch_compiles() as stats:
        # 15 steps in chunks of 4: two chunk sizes (4 and 3), both compiled up front.
        fit(fresh(), TRAIN, TEST, epochs=3, batch_size=64, steps_per_dispatch=4,
            callbacks=[Record()], verbose=False)  # fmt: skip
    assert compiles_at_epoch_end[0] > 0
    assert compiles_at_epoch_end[0] == compiles_at_epoch_end[1] == compiles_at_epoch_end[2]


def test_same_seed_same_history_and_params_other_seed_differs():
    def run(seed):
        state, history = fit(
            fresh(), TRAIN, TEST, epochs=2, batch_size=64, seed=seed, verbose=False
        )
        metrics = [{k: v for k, v in row.items() if k not in ("seconds", "images_per_second")}
                   for row in history.rows]  # fmt: skip
        return state, metrics

    first, first_metrics = run(7)
    again, again_metrics = run(7)
    other, _ = run(8)
    assert first_metrics == again_metrics
    jax.tree.map(np.testing.assert_array_equal, first.params, again.params)
    assert not np.array_equal(first.params["Dense_0"]["kernel"], other.params["Dense_0"]["kernel"])


def test_steps_per_dispatch_does_not_change_the_result():
    one, _ = fit(fresh(), TRAIN, epochs=1, batch_size=50, steps_per_dispatch=1, verbose=False)
    many, _ = fit(fresh(), TRAIN, epochs=1, batch_size=50, steps_per_dispatch=7, verbose=False)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 one.params, many.params)  # fmt: skip


def test_epoch_order_is_a_seeded_permutation():
    order = np.asarray(epoch_order(0, 1, 100))
    assert sorted(order) == list(range(100))
    np.testing.assert_array_equal(order, epoch_order(0, 1, 100))
    assert not np.array_equal(order, epoch_order(0, 2, 100))
    assert not np.array_equal(order, epoch_order(1, 1, 100))


def test_chunk_sizes_cover_the_epoch():
    assert chunk_sizes(468, 64) == [64] * 7 + [20]
    assert chunk_sizes(10, None) == [10]
    assert sum(chunk_sizes(1000, 3)) == 1000
    with pytest.raises(ValueError, match="steps_per_dispatch"):
        chunk_sizes(10, 0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, "epochs must be positive"),
        ({"epochs": 1, "batch_size": 5000}, "batch_size 5000 is larger than the 1000 examples"),
        ({"epochs": 1, "batch_size": 0}, "batch_size must be positive"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit(fresh(), TRAIN, verbose=False, **kwargs)


def test_mismatched_lengths_are_rejected():
    images, labels = TRAIN
    with pytest.raises(ValueError, match="train: 1000 images but 999 labels"):
        fit(fresh(), (images, labels[:-1]), epochs=1, verbose=False)


def test_progress_without_a_terminal_is_one_line_per_epoch():
    out = io.StringIO()
    fit(fresh(), TRAIN, TEST, epochs=2, batch_size=100, callbacks=[ProgressBar(out)], verbose=False)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("epoch 1/2  train loss ")
    assert "test loss" in lines[1] and "img/s" in lines[1]


def test_progress_bar_advances_within_an_epoch():
    seen = []

    class Record(Callback):
        def on_steps(self, epoch, done, total):
            seen.append((epoch, done, total))

    fit(fresh(), TRAIN, epochs=1, batch_size=50, steps_per_dispatch=5, callbacks=[Record()],
        verbose=False)  # fmt: skip
    assert seen == [(1, d, 20) for d in (5, 10, 15, 20)]


def test_a_callback_can_stop_training():
    class StopAfterTwo(Callback):
        def on_epoch_end(self, epoch, state, metrics):
            return epoch == 2

    _, history = fit(fresh(), TRAIN, epochs=5, batch_size=100, callbacks=[StopAfterTwo()],
                     verbose=False)  # fmt: skip
    assert len(history) == 2


def test_history_round_trips_through_json_dicts():
    _, history = fit(fresh(), TRAIN, epochs=1, batch_size=100, verbose=False)
    data = history.to_dict()
    assert data["epochs"][0]["test_accuracy"] is None  # no test split: null, not NaN
    again = History.from_dict(data)
    assert math.isnan(again.last["test_accuracy"])
    assert again["train_loss"] == history["train_loss"]
    assert again.compile_seconds == history.compile_seconds
    assert again.sessions == history.sessions
    assert History.from_dict({"epochs": data["epochs"]}).sessions == []  # runs from before them
