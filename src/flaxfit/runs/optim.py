"""The optax optimizer a TrainConfig describes: optimizer, schedule, weight decay, clipping.

Schedules are functions of the global step; a run of E epochs of S steps has
E * S steps, so every schedule ends exactly where the run does.
"""

from __future__ import annotations

import optax

from flaxfit.models.params import freeze
from flaxfit.runs.config import TrainConfig


def learning_rate_schedule(config: TrainConfig, steps_per_epoch: int) -> optax.ScalarOrSchedule:
    """`config.lr` as a constant, or an optax schedule of it by global step.

    - constant: `lr` throughout.
    - cosine: from `lr` down to 0 along a half cosine.
    - warmup_cosine: linear from 0 to `lr` over `warmup_epochs`, then cosine to 0.
    - exponential: times `decay_rate` every epoch, smoothly.
    - onecycle: up to `lr` and back down (optax.cosine_onecycle_schedule).
    """
    total = config.epochs * steps_per_epoch
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "cosine":
        return optax.cosine_decay_schedule(config.lr, decay_steps=total)
    if config.schedule == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=config.lr,
            warmup_steps=round(config.warmup_epochs * steps_per_epoch),
            decay_steps=total,
            end_value=0.0,
        )
    if config.schedule == "exponential":
        return optax.exponential_decay(
            config.lr, transition_steps=steps_per_epoch, decay_rate=config.decay_rate
        )
    if config.schedule == "onecycle":
        return optax.cosine_onecycle_schedule(transition_steps=total, peak_value=config.lr)
    raise ValueError(f"unknown schedule {config.schedule!r}")


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """adam | adamw | sgd (with momentum) on the schedule, with clipping and weight decay.

    adamw decays weights the decoupled way (its own `weight_decay`); adam and
    sgd add `weight_decay * params` to the gradient (L2), as `add_decayed_weights` does.
    Arrays matching `config.freeze` get a zero update (and no decay, no share of the
    clipping norm): see `flaxfit.models.params.freeze`.
    """
    lr = learning_rate_schedule(config, steps_per_epoch)
    parts: list[optax.GradientTransformation] = []
    if config.clip_norm is not None:
        parts.append(optax.clip_by_global_norm(config.clip_norm))
    if config.optimizer == "adamw":
        parts.append(optax.adamw(lr, b2=config.b2, weight_decay=config.weight_decay))
    else:
        if config.weight_decay:
            parts.append(optax.add_decayed_weights(config.weight_decay))
        if config.optimizer == "sgd":
            parts.append(optax.sgd(lr, momentum=config.momentum or None))
        else:
            parts.append(optax.adam(lr, b2=config.b2))
    optimizer = parts[0] if len(parts) == 1 else optax.chain(*parts)
    return freeze(optimizer, config.freeze) if config.freeze else optimizer
