"""A small ResNet for colour images (CIFAR-10 and your own pictures), in Linen and NNX.

He et al.'s CIFAR ResNets (arXiv:1512.03385, section 4.2): a 3x3 conv of 16
filters, three stages of basic residual blocks with 16, 32 and 64 filters (the
second and third start with stride 2), global average pooling and one Dense
layer; BatchNorm after every conv. `resnet8` has one block per stage (78k
params), `resnet20` three (272k). The shortcut across a stride-2 block is a 1x1
stride-2 conv with BatchNorm (the paper's option B).

Convs are flaxfit's (`flaxfit.models._layers.Conv`): one matmul per conv on
CPU, which stays fast inside fit()'s scan, and the native convolution on
GPU/TPU. `__call__(x, train=False, get_logits=False)`: `train` switches
BatchNorm to batch statistics (and updating them), as in Flax's examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import nnx

from flaxfit.data import NUM_CLASSES
from flaxfit.models._layers import Conv, Impl, conv

STAGES = (16, 32, 64)
#: BatchNorm as in Flax's ResNet example: momentum 0.9, epsilon 1e-5.
MOMENTUM, EPSILON = 0.9, 1e-5


def _as_images(x: jax.Array, dtype: Any) -> jax.Array:
    """(N, H, W) or (N, H, W, C) -> (N, H, W, C) in the compute dtype."""
    return (x[..., None] if x.ndim == 3 else x).astype(dtype)


def _finish(logits: jax.Array, get_logits: bool) -> jax.Array:
    logits = logits.astype(jnp.float32)
    return logits if get_logits else jax.nn.softmax(logits)


class _Block(nn.Module):
    features: int
    strides: int
    impl: Impl
    dtype: Any

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        norm = lambda name: nn.BatchNorm(  # noqa: E731
            use_running_average=not train, momentum=MOMENTUM, epsilon=EPSILON,
            dtype=self.dtype, name=name,
        )  # fmt: skip
        y = Conv(self.features, (3, 3), strides=self.strides, use_bias=False, impl=self.impl,
                 name="Conv_0")(x)  # fmt: skip
        y = nn.relu(norm("BatchNorm_0")(y))
        y = Conv(self.features, (3, 3), use_bias=False, impl=self.impl, name="Conv_1")(y)
        y = norm("BatchNorm_1")(y)
        if self.strides != 1 or x.shape[-1] != self.features:
            x = Conv(self.features, (1, 1), strides=self.strides, use_bias=False, impl=self.impl,
                     name="shortcut_conv")(x)  # fmt: skip
            x = norm("shortcut_norm")(x)
        return nn.relu(x + y)


class ResNet(nn.Module):
    """CIFAR ResNet: conv 3x3 16 -> stages of basic blocks (16, 32, 64) -> avg pool -> Dense."""

    blocks_per_stage: int = 1
    num_classes: int = NUM_CLASSES
    impl: Impl = "auto"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, get_logits: bool = False) -> jax.Array:
        x = _as_images(x, self.dtype)
        x = Conv(STAGES[0], (3, 3), use_bias=False, impl=self.impl, name="Conv_0")(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=MOMENTUM, epsilon=EPSILON,
                         dtype=self.dtype, name="BatchNorm_0")(x)  # fmt: skip
        x = nn.relu(x)
        for stage, features in enumerate(STAGES):
            for block in range(self.blocks_per_stage):
                strides = 2 if stage > 0 and block == 0 else 1
                x = _Block(features, strides, self.impl, self.dtype,
                           name=f"stage{stage}_block{block}")(x, train)  # fmt: skip
        x = x.mean(axis=(1, 2))  # global average pooling
        return _finish(nn.Dense(self.num_classes, dtype=self.dtype, name="Dense_0")(x), get_logits)


def ResNet8(**kwargs: Any) -> ResNet:  # noqa: N802 (a model constructor, named like a class)
    """ResNet with one basic block per stage: 8 layers with weights."""
    return ResNet(blocks_per_stage=1, **kwargs)


def ResNet20(**kwargs: Any) -> ResNet:  # noqa: N802
    """ResNet with three basic blocks per stage: 20 layers with weights (the paper's ResNet-20)."""
    return ResNet(blocks_per_stage=3, **kwargs)


# --- NNX twin: the same layers and parameter paths --------------------------------------------


class _NnxConv(nnx.Module):
    def __init__(self, cin: int, cout: int, size: int, strides: int, impl: Impl, *, rngs):
        init = nnx.initializers.lecun_normal()
        self.kernel = nnx.Param(init(rngs.params(), (size, size, cin, cout)))
        self.strides, self.impl = strides, impl

    def __call__(self, x: jax.Array) -> jax.Array:
        return conv(x, self.kernel[...].astype(x.dtype), self.strides, self.impl)


def _nnx_norm(features: int, dtype: Any, rngs: nnx.Rngs) -> nnx.BatchNorm:
    return nnx.BatchNorm(features, momentum=MOMENTUM, epsilon=EPSILON, dtype=dtype, rngs=rngs)


class _NnxBlock(nnx.Module):
    def __init__(self, cin: int, features: int, strides: int, impl: Impl, dtype: Any, *, rngs):
        self.Conv_0 = _NnxConv(cin, features, 3, strides, impl, rngs=rngs)
        self.BatchNorm_0 = _nnx_norm(features, dtype, rngs)
        self.Conv_1 = _NnxConv(features, features, 3, 1, impl, rngs=rngs)
        self.BatchNorm_1 = _nnx_norm(features, dtype, rngs)
        self.projects = strides != 1 or cin != features
        if self.projects:
            self.shortcut_conv = _NnxConv(cin, features, 1, strides, impl, rngs=rngs)
            self.shortcut_norm = _nnx_norm(features, dtype, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jax.nn.relu(self.BatchNorm_0(self.Conv_0(x)))
        y = self.BatchNorm_1(self.Conv_1(y))
        if self.projects:
            x = self.shortcut_norm(self.shortcut_conv(x))
        return jax.nn.relu(x + y)


class NnxResNet(nnx.Module):
    """The NNX twin of `ResNet`: `model.train()` / `model.eval()` switch BatchNorm."""

    def __init__(self, blocks_per_stage: int = 1, num_classes: int = NUM_CLASSES,
                 impl: Impl = "auto", dtype: Any = jnp.float32, *,
                 input_shape: Sequence[int] = (32, 32, 3), rngs: nnx.Rngs):  # fmt: skip
        channels = input_shape[-1] if len(input_shape) == 3 else 1
        self.Conv_0 = _NnxConv(channels, STAGES[0], 3, 1, impl, rngs=rngs)
        self.BatchNorm_0 = _nnx_norm(STAGES[0], dtype, rngs)
        cin = STAGES[0]
        for stage, features in enumerate(STAGES):
            for block in range(blocks_per_stage):
                strides = 2 if stage > 0 and block == 0 else 1
                setattr(self, f"stage{stage}_block{block}",
                        _NnxBlock(cin, features, strides, impl, dtype, rngs=rngs))  # fmt: skip
                cin = features
        self.Dense_0 = nnx.Linear(cin, num_classes, dtype=dtype, rngs=rngs)
        self.blocks_per_stage, self.dtype = blocks_per_stage, dtype

    def __call__(self, x: jax.Array, get_logits: bool = False) -> jax.Array:
        x = jax.nn.relu(self.BatchNorm_0(self.Conv_0(_as_images(x, self.dtype))))
        for stage in range(len(STAGES)):
            for block in range(self.blocks_per_stage):
                x = getattr(self, f"stage{stage}_block{block}")(x)
        return _finish(self.Dense_0(x.mean(axis=(1, 2))), get_logits)


def NnxResNet8(**kwargs: Any) -> NnxResNet:  # noqa: N802
    return NnxResNet(blocks_per_stage=1, **kwargs)


def NnxResNet20(**kwargs: Any) -> NnxResNet:  # noqa: N802
    return NnxResNet(blocks_per_stage=3, **kwargs)
