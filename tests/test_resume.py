"""Resume is exact: epoch boundaries, mid-epoch stops, real signals and SIGKILLs."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization

from flaxfit.runs.checkpoints import Checkpointer, latest_step, restore
from flaxfit.runs.config import TrainConfig
from flaxfit.runs.directory import train_run
from flaxfit.training.history import History
from flaxfit.training.loop import NonFiniteError, TrainingInterrupted
from flaxfit.training.step import train_step as flaxfit_train_step
from helpers import make_dataset, write_digits_dir

TIMING = ("seconds", "images_per_second")


def dataset(n_train=600, n_test=100):
    return make_dataset(n_train, n_test)


def metrics(history):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history.rows]


def assert_same_params(a, b):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


CONFIG = TrainConfig(model="mlp", epochs=3, batch_size=50, steps_per_dispatch=4)


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory):
    return train_run(
        CONFIG, tmp_path_factory.mktemp("full") / "run", dataset=dataset(), verbose=False
    )


@pytest.mark.parametrize("stop_after", [1, 2])
def test_stopping_at_an_epoch_boundary_and_resuming_is_bit_exact(unbroken, tmp_path, stop_after):
    out = tmp_path / "run"
    first = train_run(CONFIG, out, dataset=dataset(), verbose=False, stop_after_epoch=stop_after)
    assert len(first.history) == stop_after
    assert not (out / "params.msgpack").exists()  # not finished yet
    resumed = train_run(CONFIG, out, dataset=dataset(), verbose=False)
    assert_same_params(resumed.params, unbroken.params)
    assert metrics(resumed.history) == metrics(unbroken.history)


def test_a_stop_request_mid_epoch_saves_and_resumes_bit_exact(unbroken, tmp_path):
    polls = []

    def stop_on_fourth_poll():
        # 12 steps per epoch in chunks of 4: polled after chunks 1 and 2 and at the
        # epoch's end, so the 4th poll is in epoch 2 after chunk 1; chunk 2 is
        # already queued and finishes, the stop lands at step 8.
        polls.append(1)
        return len(polls) == 4

    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted) as caught:
        train_run(CONFIG, out, dataset=dataset(), verbose=False, should_stop=stop_on_fourth_poll)
    progress = caught.value.progress
    assert (progress.epoch, progress.steps_done) == (2, 8)
    assert latest_step(out / "checkpoints") == 12 + 8
    resumed = train_run(CONFIG, out, dataset=dataset(), verbose=False)
    assert_same_params(resumed.params, unbroken.params)
    assert metrics(resumed.history) == metrics(unbroken.history)


def nan_at_step(bad_step, what):
    """A train step that turns the loss (or the params) into NaN at global step `bad_step`."""

    def step(state, inputs, labels):
        new_state, loss = flaxfit_train_step(state, inputs, labels)
        poisoned = state.step + 1 == bad_step
        if what == "loss":
            return new_state, jnp.where(poisoned, jnp.nan, loss)
        params = jax.tree.map(lambda p: jnp.where(poisoned, jnp.nan, p), new_state.params)
        return new_state.replace(params=params), loss

    return step


@pytest.mark.parametrize(
    "what, bad_step, message",
    [
        ("loss", 17, "loss is nan at epoch 2, step 5"),
        # Poisoned on an epoch's last step, NaN params are caught before they reach a loss.
        ("params", 24, "params are not finite after epoch 2, step 12"),
    ],
)
def test_a_non_finite_value_stops_training_and_keeps_the_last_good_checkpoint(
    tmp_path, what, bad_step, message
):
    config = TrainConfig(model="softmax", epochs=3, batch_size=50, steps_per_dispatch=4)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteError, match=message) as caught:
        train_run(
            config, out, dataset=dataset(), verbose=False, train_step=nan_at_step(bad_step, what)
        )
    assert caught.value.epoch == 2
    assert latest_step(out / "checkpoints") == 12  # the end of epoch 1, the last good one
    restored = restore(out / "checkpoints", _template(config))
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(restored.state.params))
    assert not (out / "params.msgpack").exists()


def _template(config):
    from flaxfit.models import create_model
    from flaxfit.runs.optim import make_optimizer
    from flaxfit.training.step import create_train_state

    return create_train_state(
        create_model(config.model), jax.random.key(config.seed), make_optimizer(config, 12)
    )


@pytest.mark.parametrize(
    "monitor, values, best_epoch",
    [("test_accuracy", [0.5, 0.9, 0.6, 0.7, 0.8], 2), ("test_loss", [0.9, 0.2, 0.5, 0.4, 0.3], 2)],
)
def test_checkpoints_keep_the_last_k_and_the_best(tmp_path, monitor, values, best_epoch):
    state = _template(TrainConfig(model="softmax"))
    checkpointer = Checkpointer(
        tmp_path / "ck", history=History(), seed=0, num_examples=600, keep=2, monitor=monitor
    )
    for epoch, value in enumerate(values, start=1):
        checkpointer.on_epoch_end(epoch, state.replace(step=epoch * 12), {monitor: value})
    checkpointer.close()
    steps = {int(p.name) for p in (tmp_path / "ck").iterdir() if p.name.isdigit()}
    assert steps == {48, 60, best_epoch * 12}


# --- real processes ------------------------------------------------------------


@pytest.fixture(scope="module")
def idx_data(tmp_path_factory):
    return write_digits_dir(tmp_path_factory.mktemp("idx"), 2000, 200)


def train_command(idx_data, out, *extra):
    return [sys.executable, "-m", "flaxfit", "train", "--model", "mlp", "--epochs", "4",
            "--batch-size", "50", "--steps-per-dispatch", "5", "--data-dir", str(idx_data),
            "--out", str(out), *extra]  # fmt: skip


def start(command):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def read_params(run):
    return serialization.msgpack_restore((run / "params.msgpack").read_bytes())


@pytest.fixture(scope="module")
def reference_run(idx_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    result = subprocess.run(
        train_command(idx_data, out), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_prints_the_resume_command_and_resuming_matches(
    idx_data, reference_run, tmp_path, signum, code
):
    out = tmp_path / "run"
    process = start(train_command(idx_data, out))
    for line in process.stdout:  # wait for real progress, then signal
        if line.startswith("epoch 1/4"):
            process.send_signal(signum)
            break
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == code, stderr
    assert f"{signal.Signals(signum).name}: stopped at epoch" in stderr
    resume_line = [line for line in stderr.splitlines() if line.startswith("resume with: ")]
    assert resume_line and "--out " + str(out) in resume_line[0] and "--fresh" not in resume_line[0]
    assert latest_step(out / "checkpoints") is not None
    again = subprocess.run(
        train_command(idx_data, out), capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stdout
    assert_same_params(read_params(out), read_params(reference_run))


def test_sigkill_at_random_moments_then_resume_is_bit_exact(idx_data, reference_run, tmp_path):
    """Kill -9 the trainer five times, twice inside a checkpoint save, resuming after each."""
    out = tmp_path / "run"
    rng = random.Random(1234)
    # (line that triggers the kill, which occurrence of it in that process)
    plan = [("checkpoint: saving", rng.randint(1, 2)) for _ in range(2)]
    plan += [("epoch ", rng.randint(1, 3)) for _ in range(3)]
    rng.shuffle(plan)
    kills = 0
    for trigger, occurrence in plan:
        process = start(train_command(idx_data, out))
        seen = 0
        for line in process.stdout:
            seen += line.startswith(trigger)
            if seen == occurrence:
                # A little random lag, so the kill lands anywhere in what follows
                # the line (inside the save, in the next chunk, ...).
                time.sleep(rng.uniform(0, 0.05))
                process.kill()  # SIGKILL: no handler runs, nothing is cleaned up
                break
        process.communicate(timeout=300)
        if process.returncode == 0:  # finished before the planned moment came
            break
        assert process.returncode == -signal.SIGKILL
        kills += 1
    assert kills >= 3  # the planned moments come early enough to interrupt most runs
    final = subprocess.run(
        train_command(idx_data, out), capture_output=True, text=True, timeout=300
    )
    assert final.returncode == 0, final.stderr
    assert_same_params(read_params(out), read_params(reference_run))
    history = json.loads((out / "history.json").read_text())["epochs"]
    reference = json.loads((reference_run / "history.json").read_text())["epochs"]
    assert strip_timing(history) == strip_timing(reference)


def strip_timing(rows):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]
