"""`flaxfit summary`: a model's layers, shapes, params and FLOPs, and what a train step costs."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from flaxfit.training.step import create_train_state, train_step


def layer_table(model: nn.Module, *, width: int = 120) -> str:
    """nn.tabulate's per-layer table for one (28, 28) image: inputs, outputs, FLOPs, params.

    `flops` is the forward pass, `vjp_flops` forward plus backward, both as
    XLA counts them for one image.
    """
    table = nn.tabulate(
        model, jax.random.key(0), compute_flops=True, compute_vjp_flops=True,
        console_kwargs={"width": width, "force_terminal": False, "color_system": None},
    )  # fmt: skip
    return table(jnp.zeros((1, 28, 28), jnp.float32))


def train_step_cost(model: nn.Module, batch_size: int) -> dict[str, Any]:
    """XLA's cost analysis of one `train_step` (forward, backward, Adam) as lowered here."""
    state = create_train_state(model, jax.random.key(0))
    inputs = jnp.zeros((batch_size, 28, 28), jnp.float32)
    labels = jnp.zeros((batch_size, 10), jnp.float32)
    # Preferably the step as written, before XLA optimises it for a backend: the
    # compiled count depends on the kernels a backend picks (on a GPU it came out
    # different). Some jax releases give no count before compiling.
    lowered = jax.jit(train_step).lower(state, inputs, labels)
    stage, cost = "lowered", lowered.cost_analysis()
    if not cost:
        stage, cost = "compiled", lowered.compile().cost_analysis()
    cost = (cost[0] if isinstance(cost, list) else cost) or {}  # older jax: one dict per device
    flops = float(cost.get("flops", 0.0))
    return {
        "stage": stage,
        "backend": jax.default_backend(),
        "batch_size": batch_size,
        "flops": flops,
        "flops_per_image": flops / batch_size,
        "bytes_accessed": float(cost.get("bytes accessed", 0.0)),
    }


def format_summary(name: str, model: nn.Module, batch_size: int) -> str:
    """The table, then one line per total that `flaxfit summary` prints."""
    cost = train_step_cost(model, batch_size)
    return "\n".join([
        layer_table(model).rstrip(),
        f"{name}: one train step of batch {batch_size} on {cost['backend']} costs "
        f"{cost['flops'] / 1e6:,.1f} MFLOP ({cost['flops_per_image'] / 1e6:.3g} MFLOP per image, "
        f"forward + backward + optimizer, XLA cost analysis of the {cost['stage']} step)",
    ])  # fmt: skip
