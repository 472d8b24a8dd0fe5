"""Class logits and probabilities from any Linen classifier, whichever convention it follows.

Two conventions meet here. The deck's models return softmax probabilities and
take `get_logits=True` for the logits (slide 13); models written as in Flax's
own examples have `__call__(self, x)` and return logits. flaxfit's steps,
evaluation, prediction, export and the digit pad call `logits` and
`probabilities` below, so both kinds train and serve the same way.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn


def takes_get_logits(model_or_apply: nn.Module | Callable[..., Any]) -> bool:
    """Whether the model's `__call__` (or the apply function) names a `get_logits` argument.

    Args:
        model_or_apply: a Linen module, its bound `apply` (as in `TrainState.apply_fn`),
            or any apply function.
    """
    return "get_logits" in _call_parameters(model_or_apply)


def _unwrapped(model_or_apply: Any) -> Any:
    """What a wrapper keeping `__wrapped__` wraps (training.fast_ops.fast_apply,
    functools.wraps), down to the bound `apply` whose module names the arguments."""
    return inspect.unwrap(model_or_apply, stop=inspect.ismethod)


def _call_parameters(model_or_apply: Any) -> tuple[str, ...]:
    """The argument names of the model's `__call__` (Linen module, its apply, or NnxApply)."""
    model_or_apply = _unwrapped(model_or_apply)
    module = model_or_apply if isinstance(model_or_apply, nn.Module) else None
    if module is None and isinstance(getattr(model_or_apply, "__self__", None), nn.Module):
        module = model_or_apply.__self__
    if module is not None:
        target = type(module).__call__
    elif hasattr(model_or_apply, "module_type"):  # NnxApply: the NNX module's own __call__
        target = model_or_apply.module_type.__call__
    else:
        target = model_or_apply
    try:
        return tuple(inspect.signature(target).parameters)
    except (TypeError, ValueError):  # a builtin or a C function: no named argument to find
        return ()


#: How Linen modules are told they are training, as Flax's examples and others write it:
#: the argument name and the value that means "training".
MODE_ARGUMENTS = {"train": True, "training": True, "is_training": True, "deterministic": False}


def mode_keywords(apply_fn: Callable[..., Any], train: bool) -> dict[str, bool]:
    """The keyword telling the model whether it trains: `train=`/`training=`/`deterministic=`
    when its `__call__` takes one (NnxApply always takes `train=`), else nothing."""
    if hasattr(_unwrapped(apply_fn), "module_type"):
        return {"train": train}
    names = _call_parameters(apply_fn)
    for name, training_value in MODE_ARGUMENTS.items():
        if name in names:
            return {name: training_value if train else not training_value}
    return {}


def forward(
    apply_fn: Callable[..., Any],
    params: Any,
    inputs: jax.Array,
    *,
    batch_stats: Any = None,
    train: bool = False,
    rng: jax.Array | None = None,
) -> tuple[jax.Array, Any]:
    """Logits of `inputs` in training or evaluation mode, and the updated `batch_stats`.

    The one call flaxfit's own steps make, for every kind of model: the deck's
    (`get_logits=True`), Flax-examples Linen modules (`train=`, `batch_stats`,
    a 'dropout' RNG) and NNX modules (through `NnxApply`).

    Args:
        apply_fn: `state.apply_fn`.
        params: the params dict (the one being differentiated, in a train step).
        inputs: a batch the model accepts.
        batch_stats: the model's BatchNorm statistics, or None for models without them.
        train: training mode: dropout on, BatchNorm on batch statistics (and updating them).
        rng: the key for dropout in training mode; None when the model needs none.

    Returns:
        (logits, batch_stats): the statistics after this batch in training mode,
        the given ones otherwise.
    """
    variables = {"params": params}
    kwargs: dict[str, Any] = mode_keywords(apply_fn, train)
    if batch_stats is not None:
        variables["batch_stats"] = batch_stats
        if train:
            kwargs["mutable"] = ["batch_stats"]
    if train and rng is not None:
        kwargs["rngs"] = {"dropout": rng}
    out = logits(apply_fn, variables, inputs, **kwargs)
    if kwargs.get("mutable"):
        scores, updates = out
        return scores, updates["batch_stats"]
    return out, batch_stats


def logits(
    apply_fn: Callable[..., Any], variables: Any, inputs: jax.Array, **kwargs: Any
) -> jax.Array:
    """(B, num_classes) logits of `inputs`: `get_logits=True` where the model takes it.

    Args:
        apply_fn: `model.apply` (e.g. `state.apply_fn`).
        variables: `{'params': params, ...}`.
        inputs: a batch the model accepts.
        **kwargs: passed on to `apply_fn` (e.g. `capture_intermediates`, `mutable`).
    """
    if takes_get_logits(apply_fn):
        kwargs["get_logits"] = True
    return apply_fn(variables, inputs, **kwargs)


def probabilities(
    apply_fn: Callable[..., Any], variables: Any, inputs: jax.Array, **kwargs: Any
) -> Any:
    """Softmax probabilities of `inputs` (and the mutated collections, if `mutable` is asked).

    The deck's models return them themselves, so they are called as they are;
    for the others the softmax is taken of their logits, in float32.
    """
    if takes_get_logits(apply_fn):
        return apply_fn(variables, inputs, **kwargs)
    out = apply_fn(variables, inputs, **kwargs)
    if kwargs.get("mutable"):
        scores, state = out
        return jax.nn.softmax(scores.astype(jnp.float32)), state
    return jax.nn.softmax(out.astype(jnp.float32))


def apply_function(model: Any) -> Callable[..., Any]:
    """`model.apply` for a Linen module; for an NNX module, an `NnxApply` taking the same call."""
    from flaxfit.models.nnx_bridge import NnxApply, is_nnx

    return NnxApply(model) if is_nnx(model) else model.apply


def predict(
    model: Any, params: Any, inputs: jax.Array, *, batch_stats: Any = None, **kwargs: Any
) -> Any:
    """Softmax probabilities of `inputs` from `model` (Linen or NNX) in evaluation mode:
    dropout off, BatchNorm on its running averages `batch_stats`.

    Args:
        model: a Linen or NNX module (only its structure is used: `params` are the weights).
        params, batch_stats: the trained variables as plain dicts.
        **kwargs: passed on to the apply call (e.g. `capture_intermediates`, `mutable`).
    """
    apply = apply_function(model)
    variables = {"params": params}
    if batch_stats is not None:
        variables["batch_stats"] = batch_stats
    return probabilities(apply, variables, inputs, **mode_keywords(apply, False), **kwargs)
