"""Export a trained model's prediction function with jax.export, for use without flaxfit.

The file holds StableHLO with the params baked in as constants and a
symbolic batch dimension, lowered for CPU, CUDA and TPU. Loading it needs
only JAX:

    from jax import export
    predict = export.deserialize(open("predict.jaxexport", "rb").read())
    probabilities = predict.call(images)  # float32 (N, H, W[, C]) in [0, 1] -> (N, classes)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from jax import export

from flaxfit.files import write_atomic
from flaxfit.models.outputs import predict as predict_with

PLATFORMS = ("cpu", "cuda", "tpu")
EXPORT_FILE = "predict.jaxexport"


def export_predict(
    model: Any,
    params: Any,
    *,
    batch_stats: Any = None,
    image_shape: tuple[int, ...] = (28, 28),
    platforms: tuple[str, ...] = PLATFORMS,
) -> export.Exported:
    """`model` (Linen or NNX) with `params` (and BatchNorm's `batch_stats`) fixed, in
    evaluation mode: float32 (b, *image_shape) in [0, 1] -> (b, num_classes) probabilities."""
    params, batch_stats = jax.tree.map(jnp.asarray, (params, batch_stats))

    def predict(images: jax.Array) -> jax.Array:
        return predict_with(model, params, images, batch_stats=batch_stats)

    (batch,) = export.symbolic_shape("b")
    spec = jax.ShapeDtypeStruct((batch, *image_shape), jnp.float32)
    return export.export(jax.jit(predict), platforms=platforms)(spec)


def save_exported(path: str | os.PathLike, exported: export.Exported) -> Path:
    """Write `exported.serialize()` atomically."""
    return write_atomic(path, bytes(exported.serialize()))
