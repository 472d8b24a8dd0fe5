"""A run's model compiled once for one picture of its input shape, safe to call from threads."""

from __future__ import annotations

import threading
from collections.abc import Sequence
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
    """What the model makes of one picture.

    Attributes:
        digit: the most probable class (its index: a digit for MNIST's runs).
        probabilities: float32 (num_classes,), summing to 1.
        feature_maps: float32 (H, W, C), relu of the first conv layer, or None
            for a model without one (or when they were not asked for).
    """

    digit: int
    probabilities: np.ndarray
    feature_maps: np.ndarray | None


def _is_first_conv(module: nn.Module, method: str) -> bool:
    return module.name == FIRST_CONV and method == "__call__"


class Predictor:
    """`model` with `params`, compiled ahead of time for a single `input_shape` image.

    Compiling once at start means no request ever waits for XLA, and a call
    with any other shape fails loudly instead of compiling again. Calls are
    serialised by a lock: one image is a tiny program, so running them one
    after another costs little, and no two requests share device buffers.
    """

    def __init__(
        self,
        model: Any,
        params: Any,
        batch_stats: Any = None,
        *,
        input_shape: Sequence[int] = (SIDE, SIDE),
        feature_maps: bool = True,
    ):
        """Compile and warm up the model (seconds: XLA compiles it here, once).

        Args:
            model, params, batch_stats: a loaded run's (`flaxfit.runs.directory.Run`).
            input_shape: one picture's shape, e.g. the run's `config.input_shape`.
            feature_maps: also return the first conv layer's output, when the model has one.
        """
        self.input_shape = tuple(int(d) for d in input_shape)
        # Feature maps come from Linen's captured intermediates; NNX modules have none.
        has_maps = feature_maps and FIRST_CONV in params and isinstance(model, nn.Module)
        self.has_feature_maps = has_maps
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

        example = jax.ShapeDtypeStruct((1, *self.input_shape), jnp.float32)
        compiled = jax.jit(forward).lower(params, example).compile()
        self._call = lambda x: compiled(params, x)
        self._lock = threading.Lock()
        self.predict(np.zeros(self.input_shape, np.uint8))  # warm up: first-run allocations

    def predict(self, image: np.ndarray) -> Prediction:
        """Classify one uint8 `input_shape` image (for MNIST's runs white digit on black)."""
        if image.shape != self.input_shape or image.dtype != np.uint8:
            raise ValueError(
                f"expected a uint8 {self.input_shape} image, got {image.dtype} {image.shape}"
            )
        x = (image.astype(np.float32) / 255.0)[None]
        with self._lock:
            probabilities, maps = self._call(x)
            probabilities = np.asarray(probabilities)
            maps = None if maps is None else np.asarray(maps)
        return Prediction(int(probabilities.argmax()), probabilities, maps)
