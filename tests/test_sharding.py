"""Data-parallel fit on 4 simulated CPU devices.

Runs in a subprocess: JAX fixes the device count when it starts.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from flaxfit.training.sharding import check_batch_size, data_mesh

SCRIPT = r"""
import json, sys
import jax, numpy as np
sys.path.insert(0, sys.argv[1])
from helpers import make_digits
import flaxfit
from flaxfit.training.loop import run_steps
from flaxfit.training.sharding import data_mesh

train, test = make_digits(1024, seed=0), make_digits(303, seed=1)
out = {"devices": jax.device_count()}
for name in ("softmax", "cnn1"):
    params, histories = [], []
    for n in (1, 4):
        state = flaxfit.create_train_state(flaxfit.create_model(name), jax.random.key(0))
        state, history = flaxfit.fit(state, train, test, epochs=2, batch_size=64,
                                     mesh=data_mesh(jax.devices()[:n]), verbose=False)
        params.append(jax.device_get(state.params))
        histories.append(history)
        bias = state.params["Dense_0"]["bias"]
        out[f"{name}_{n}_replicated"] = bias.sharding.is_fully_replicated
    pairs = zip(jax.tree.leaves(params[0]), jax.tree.leaves(params[1]))
    out[f"{name}_max_diff"] = max(float(np.abs(a - b).max()) for a, b in pairs)
    out[f"{name}_loss"] = [h["train_loss"] for h in histories]
    # An untrained model, so accuracy is far from 0 or 1 and every counted row shows.
    fresh = flaxfit.create_train_state(flaxfit.create_model(name), jax.random.key(1))
    evals = [flaxfit.evaluate(fresh, test, batch_size=100, mesh=data_mesh(jax.devices()[:n]))
             for n in (1, 4)]
    out[f"{name}_eval"] = [(e["count"], e["correct"]) for e in evals]
mesh = data_mesh()
state = flaxfit.create_train_state(flaxfit.SoftmaxRegression(), jax.random.key(0))
images = jax.device_put(np.zeros((256, 28, 28), np.uint8))
labels = jax.device_put(np.zeros(256, np.uint8))
hlo = run_steps.lower(state, images, labels, jax.numpy.arange(256), 0, num_steps=1, batch_size=64,
                      mesh=mesh).compile().as_text()
out["all_reduce"] = "all-reduce" in hlo
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def four_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    tests_dir = str(Path(__file__).parent)
    result = subprocess.run([sys.executable, "-c", SCRIPT, tests_dir], capture_output=True,
                            text=True, env=env, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_four_devices_train_to_the_same_params_as_one(four_devices):
    assert four_devices["devices"] == 4
    # Same seed, same global batch: equal up to the order of the gradient reduction
    # (Adam's first steps move by ~lr whatever the gradient's size, hence 1e-3 scale).
    assert four_devices["softmax_max_diff"] < 1e-5
    assert four_devices["cnn1_max_diff"] < 1e-3
    for name in ("softmax", "cnn1"):
        one, four = four_devices[f"{name}_loss"]
        assert one == pytest.approx(four, rel=1e-4)
        assert four_devices[f"{name}_4_replicated"] and four_devices[f"{name}_1_replicated"]


def test_every_test_example_still_counts_once(four_devices):
    for name in ("softmax", "cnn1"):
        (count_1, correct_1), (count_4, correct_4) = four_devices[f"{name}_eval"]
        assert count_1 == count_4 == 303  # batches of 100 on 4 devices: padded and masked
        assert correct_1 == correct_4


def test_the_step_really_is_split_across_devices(four_devices):
    # Replicated params with a split batch: XLA inserts an all-reduce of the gradients.
    assert four_devices["all_reduce"]


def test_a_batch_that_does_not_divide_suggests_sizes():
    mesh = data_mesh(jax.devices()[:1])
    check_batch_size(130, mesh)  # one device takes anything

    class FourDevices:
        size = 4

    with pytest.raises(
        ValueError, match="batch_size 130 does not divide across 4 devices; use 128 or 132"
    ):
        check_batch_size(130, FourDevices())
    with pytest.raises(ValueError, match="use 4$"):
        check_batch_size(3, FourDevices())
