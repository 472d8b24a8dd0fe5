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
    module = model_or_apply if isinstance(model_or_apply, nn.Module) else None
    if module is None and isinstance(getattr(model_or_apply, "__self__", None), nn.Module):
        module = model_or_apply.__self__
    target = type(module).__call__ if module is not None else model_or_apply
    try:
        return "get_logits" in inspect.signature(target).parameters
    except (TypeError, ValueError):  # a builtin or a C function: no named argument to find
        return False


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
