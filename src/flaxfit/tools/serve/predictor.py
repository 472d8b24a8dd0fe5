"""A run's model compiled once for one 28x28 digit, safe to call from many threads."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from flaxfit.data.images import SIDE
from flaxfit.models.outputs import predict

#: The layer whose feature maps the page shows (the CNNs name their first conv so).
FIRST_CONV = "Conv_0"


@dataclass(frozen=True)
class Prediction:
    """What the model makes of one digit.

    Attributes:
        digit: the most probable class.
        probabilities: float32 (10,), summing to 1.
        feature_maps: float32 (28, 28, C), relu of the first conv layer, or None
            for a model without one.
    """

    digit: int
    probabilities: np.ndarray
    feature_maps: np.ndarray | None


def _is_first_conv(module: nn.Module, method: str) -> bool:
    return module.name == FIRST_CONV and method == "__call__"


class Predictor:
    """`model` with `params`, compiled ahead of time for a single (28, 28) image.

    Compiling once at start means no request ever waits for XLA, and a call
    with any other shape fails loudly instead of compiling again. Calls are
    serialised by a lock: one image is a tiny program, so running them one
    after another costs little, and no two requests share device buffers.
    """

    def __init__(self, model: Any, params: Any, batch_stats: Any = None):
        # Feature maps come from Linen's captured intermediates; NNX modules have none.
        has_maps = self.has_feature_maps = FIRST_CONV in params and isinstance(model, nn.Module)
        params, batch_stats = jax.device_put((params, batch_stats))

        def forward(params: Any, x: jax.Array) -> tuple[jax.Array, jax.Array | None]:
            if not has_maps:
                return predict(model, params, x, batch_stats=batch_stats)[0], None
            probs, state = predict(
                model, params, x, batch_stats=batch_stats,
                capture_intermediates=_is_first_conv, mutable=["intermediates"],
            )  # fmt: skip
            conv = state["intermediates"][FIRST_CONV]["__call__"][0][0]
            return probs[0], jnp.maximum(conv, 0).astype(jnp.float32)

        example = jax.ShapeDtypeStruct((1, SIDE, SIDE), jnp.float32)
        compiled = jax.jit(forward).lower(params, example).compile()
        self._call = lambda x: compiled(params, x)
        self._lock = threading.Lock()
        self.predict(np.zeros((SIDE, SIDE), np.uint8))  # warm up: first-run allocations

    def predict(self, image: np.ndarray) -> Prediction:
        """Classify one uint8 (28, 28) image, white digit on black (MNIST's format)."""
        if image.shape != (SIDE, SIDE) or image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 (28, 28) image, got {image.dtype} {image.shape}")
        x = (image.astype(np.float32) / 255.0)[None]
        with self._lock:
            probabilities, maps = self._call(x)
            probabilities = np.asarray(probabilities)
            maps = None if maps is None else np.asarray(maps)
        return Prediction(int(probabilities.argmax()), probabilities, maps)
