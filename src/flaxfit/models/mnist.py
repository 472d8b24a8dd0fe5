"""The deck's models for 28x28 grayscale digits, in flax.linen.

Every model takes (N, H, W) or (N, H, W, C) pixels in [0, 1] (MNIST's (N, 784) too) and
`__call__(x, get_logits=False)`: softmax probabilities by default, logits when
`get_logits=True` (what the loss needs), exactly as on slide 13.

`dtype` is the compute dtype: with jnp.bfloat16 the layers compute in bf16
while the params stay float32 and the logits come back as float32, so the
loss and the optimizer work in full precision (mixed precision).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from flaxfit.data import NUM_CLASSES
from flaxfit.models._layers import Conv, Impl, relu_max_pool_2x2

IMAGE_SIDE = 28


def _as_images(x: jax.Array, dtype: Any) -> jax.Array:
    """(N, H, W) | (N, H, W, C) -> (N, H, W, C) in the compute dtype; (N, 784) is MNIST's
    (N, 28, 28, 1), as on slide 13."""
    if x.ndim == 2:
        x = x.reshape([-1, IMAGE_SIDE, IMAGE_SIDE, 1])
    elif x.ndim == 3:
        x = x[..., None]
    return x.astype(dtype)


def _finish(logits: jax.Array, get_logits: bool) -> jax.Array:
    logits = logits.astype(jnp.float32)  # the loss is always computed in float32
    return logits if get_logits else nn.softmax(logits)


class SoftmaxRegression(nn.Module):
    """Multinomial logistic regression: one Dense layer from 784 pixels to 10 classes."""

    num_classes: int = NUM_CLASSES
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, get_logits: bool = False) -> jax.Array:
        x = x.reshape([x.shape[0], -1]).astype(self.dtype)
        return _finish(nn.Dense(features=self.num_classes, dtype=self.dtype)(x), get_logits)


class SingleLayerCNN(nn.Module):
    """Slide 13: Conv 16 5x5 -> relu -> max_pool 2x2 -> Dense 1024 -> relu -> Dense 10.

    `impl` selects how the conv and pool are computed ("auto": matmul forms on
    CPU, native ops on GPU/TPU); the function and the params are the same.
    """

    num_classes: int = NUM_CLASSES
    impl: Impl = "auto"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, get_logits: bool = False) -> jax.Array:
        x = _as_images(x, self.dtype)
        x = Conv(features=16, kernel_size=(5, 5), impl=self.impl, name="Conv_0")(x)
        x = relu_max_pool_2x2(x, self.impl)  # nn.relu, then nn.max_pool 2x2 stride 2
        x = x.reshape([x.shape[0], -1])  # Flatten
        x = nn.Dense(features=1024, dtype=self.dtype)(x)
        x = nn.relu(x)
        x = nn.Dense(features=self.num_classes, dtype=self.dtype)(x)
        return _finish(x, get_logits)


class DoubleLayerCNN(nn.Module):
    """Conv 32 5x5 -> pool -> Conv 64 5x5 -> pool -> Dense 1024 -> relu -> Dense 10."""

    num_classes: int = NUM_CLASSES
    impl: Impl = "auto"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, get_logits: bool = False) -> jax.Array:
        x = _as_images(x, self.dtype)
        x = Conv(features=32, kernel_size=(5, 5), impl=self.impl, name="Conv_0")(x)
        x = relu_max_pool_2x2(x, self.impl)
        x = Conv(features=64, kernel_size=(5, 5), impl=self.impl, name="Conv_1")(x)
        x = relu_max_pool_2x2(x, self.impl)
        x = x.reshape([x.shape[0], -1])
        x = nn.relu(nn.Dense(features=1024, dtype=self.dtype)(x))
        x = nn.Dense(features=self.num_classes, dtype=self.dtype)(x)
        return _finish(x, get_logits)


class MLP(nn.Module):
    """Fully connected: 784 -> hidden (relu) ... -> 10."""

    hidden: Sequence[int] = (512, 512)
    num_classes: int = NUM_CLASSES
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, get_logits: bool = False) -> jax.Array:
        x = x.reshape([x.shape[0], -1]).astype(self.dtype)
        for width in self.hidden:
            x = nn.relu(nn.Dense(features=width, dtype=self.dtype)(x))
        return _finish(nn.Dense(features=self.num_classes, dtype=self.dtype)(x), get_logits)
