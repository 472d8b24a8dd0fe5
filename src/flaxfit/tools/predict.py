"""Class probabilities for many images with trained params, in fixed-size batches."""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flaxfit.models.outputs import predict


@partial(jax.jit, static_argnames=("model", "batch_size"))
def _probabilities(
    model: Any, params: Any, batch_stats: Any, images: jax.Array, batch_size: int
) -> jax.Array:
    n = images.shape[0]
    batches = math.ceil(n / batch_size)
    images = jnp.pad(images, [(0, batches * batch_size - n)] + [(0, 0)] * (images.ndim - 1))
    images = images.reshape(batches, batch_size, *images.shape[1:])
    probs = jax.lax.map(lambda x: predict(model, params, x, batch_stats=batch_stats), images)
    return probs.reshape(batches * batch_size, -1)[:n]


def predict_probabilities(
    model: Any, params: Any, images: np.ndarray, *, batch_size: int = 250, batch_stats: Any = None
) -> np.ndarray:
    """Softmax probabilities (N, num_classes) of `images`, uint8 (N, 28, 28) or floats in [0, 1].

    `model` is a Linen or NNX module; `batch_stats` its BatchNorm averages, if it has any.
    """
    images = np.asarray(images)
    if np.issubdtype(images.dtype, np.integer):
        images = images.astype(np.float32) / 255.0
    batch_size = min(batch_size, len(images))
    return np.asarray(_probabilities(model, params, batch_stats, images, batch_size))
