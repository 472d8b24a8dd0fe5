import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flaxfit.runs.config import SCHEDULES, TrainConfig
from flaxfit.runs.optim import learning_rate_schedule, make_optimizer

STEPS = 10  # per epoch


def schedule_of(**fields):
    return learning_rate_schedule(TrainConfig(epochs=4, lr=0.1, **fields), STEPS)


def values(schedule, steps):
    return [float(schedule(s)) if callable(schedule) else schedule for s in steps]


def test_constant():
    assert values(schedule_of(schedule="constant"), [0, 39]) == [0.1, 0.1]


def test_cosine_decays_from_lr_to_zero_over_the_run():
    got = values(schedule_of(schedule="cosine"), [0, 20, 40])
    np.testing.assert_allclose(got, [0.1, 0.05, 0.0], atol=1e-7)


def test_warmup_cosine_rises_linearly_then_decays():
    got = values(schedule_of(schedule="warmup_cosine", warmup_epochs=1.0), [0, 5, 10, 25, 40])
    # Warm-up 10 steps to the peak, then a half cosine over the remaining 30.
    np.testing.assert_allclose(got, [0.0, 0.05, 0.1, 0.05, 0.0], atol=1e-7)


def test_exponential_multiplies_by_decay_rate_each_epoch():
    got = values(schedule_of(schedule="exponential", decay_rate=0.5), [0, 10, 20, 15])
    np.testing.assert_allclose(got, [0.1, 0.05, 0.025, 0.1 * 0.5**1.5], rtol=1e-6)


def test_onecycle_peaks_at_lr_and_ends_near_zero():
    got = values(schedule_of(schedule="onecycle"), range(41))
    assert max(got) == pytest.approx(0.1, rel=1e-6)
    assert got[0] < 0.1 * 0.1 and got[-1] < 1e-4
    assert 5 <= int(np.argmax(got)) <= 15  # the peak comes in the first third


def test_every_schedule_is_covered():
    for name in SCHEDULES:
        assert schedule_of(schedule=name) is not None


def first_update(**fields):
    config = TrainConfig(lr=0.1, schedule="constant", **fields)
    optimizer = make_optimizer(config, STEPS)
    params = {"w": jnp.full((2,), 2.0)}
    grads = {"w": jnp.array([3.0, 4.0])}
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    return np.asarray(updates["w"])


def test_adam_and_sgd_first_steps():
    np.testing.assert_allclose(first_update(optimizer="adam"), [-0.1, -0.1], rtol=1e-4)
    np.testing.assert_allclose(first_update(optimizer="sgd"), [-0.3, -0.4], rtol=1e-6)


def test_adamw_decays_weights_decoupled():
    plain = first_update(optimizer="adamw")
    decayed = first_update(optimizer="adamw", weight_decay=0.5)
    np.testing.assert_allclose(decayed - plain, [-0.1 * 0.5 * 2.0] * 2, rtol=1e-5)


def test_weight_decay_with_sgd_is_l2_on_the_gradient():
    np.testing.assert_allclose(
        first_update(optimizer="sgd", weight_decay=0.5), [-0.1 * (3 + 1), -0.1 * (4 + 1)], rtol=1e-6
    )


def test_clip_norm_scales_the_gradient_to_the_norm():
    # |(3, 4)| = 5, clipped to 1 -> (0.6, 0.8); sgd step -lr * that.
    np.testing.assert_allclose(
        first_update(optimizer="sgd", clip_norm=1.0), [-0.06, -0.08], rtol=1e-5
    )


def test_schedule_drives_the_optimizer():
    config = TrainConfig(epochs=1, lr=0.1, optimizer="sgd", momentum=0.0, schedule="cosine")
    optimizer = make_optimizer(config, STEPS)
    params = {"w": jnp.zeros(())}
    state = optimizer.init(params)
    steps = []
    for _ in range(STEPS):
        updates, state = optimizer.update({"w": jnp.ones(())}, state, params)
        steps.append(-float(updates["w"]))
    expected = [float(optax.cosine_decay_schedule(0.1, STEPS)(s)) for s in range(STEPS)]
    np.testing.assert_allclose(steps, expected, rtol=1e-6)
