"""The deck's four models in Flax NNX, the API Flax now recommends to new users.

Each is the twin of the Linen model of the same name in `flaxfit.models.mnist`:
the same layers, the same `__call__(x, get_logits=False)` (softmax
probabilities, or logits), and the same parameter paths ("Conv_0",
"Dense_0", ...: the names Linen gives its layers), so one params dict fits
both and weights move between them without renaming. Attribute names
therefore follow Linen's spelling rather than NNX's usual `self.conv1`.

    model = SingleLayerCNN(rngs=nnx.Rngs(0))
    probabilities = model(images)          # eager, like any NNX module
    state = flaxfit.create_train_state(model, optimizer=optax.adam(1e-3))

NNX layers need their input sizes when built, so the image shape is an argument
(`input_shape`, default MNIST's (28, 28, 1)).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from flaxfit.data import NUM_CLASSES
from flaxfit.models._layers import Impl, conv, relu_max_pool_2x2

MNIST_SHAPE = (28, 28, 1)


def _hwc(input_shape: Sequence[int]) -> tuple[int, int, int]:
    """(H, W) or (H, W, C) -> (H, W, C): grayscale pictures have one channel."""
    shape = tuple(int(d) for d in input_shape)
    return shape if len(shape) == 3 else (*shape, 1)


def _as_images(x: jax.Array, shape: Sequence[int], dtype: Any) -> jax.Array:
    return x.reshape([-1, *shape]).astype(dtype)


def _finish(logits: jax.Array, get_logits: bool) -> jax.Array:
    logits = logits.astype(jnp.float32)  # the loss is always computed in float32
    return logits if get_logits else jax.nn.softmax(logits)


class Conv(nnx.Module):
    """SAME-padded stride-1 conv with `kernel` (kh, kw, C, O) and `bias` (O,), as nnx.Conv
    (and initialised as it is), computed as one matmul on CPU (see `flaxfit.models._layers`)."""

    def __init__(self, in_features: int, features: int, kernel_size: Sequence[int],
                 impl: Impl = "auto", *, rngs: nnx.Rngs):  # fmt: skip
        kh, kw = kernel_size
        self.kernel = nnx.Param(
            nnx.initializers.lecun_normal()(rngs.params(), (kh, kw, in_features, features))
        )
        self.bias = nnx.Param(jnp.zeros((features,)))
        self.impl = impl

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel, bias = self.kernel[...].astype(x.dtype), self.bias[...].astype(x.dtype)
        return conv(x, kernel, impl=self.impl) + bias


def _dense(in_features: int, out_features: int, dtype: Any, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(in_features, out_features, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)


def _pixels(shape: Sequence[int]) -> int:
    return int(jnp.prod(jnp.array(shape)))


class SoftmaxRegression(nnx.Module):
    """Multinomial logistic regression: one Linear layer from the pixels to the classes."""

    def __init__(self, num_classes: int = NUM_CLASSES, dtype: Any = jnp.float32, *,
                 input_shape: Sequence[int] = MNIST_SHAPE, rngs: nnx.Rngs):  # fmt: skip
        self.Dense_0 = _dense(_pixels(input_shape), num_classes, dtype, rngs)
        self.dtype = dtype

    def __call__(self, x: jax.Array, get_logits: bool = False) -> jax.Array:
        x = x.reshape([x.shape[0], -1]).astype(self.dtype)
        return _finish(self.Dense_0(x), get_logits)


class SingleLayerCNN(nnx.Module):
    """Slide 13: Conv 16 5x5 -> relu -> max_pool 2x2 -> Dense 1024 -> relu -> Dense 10."""

    def __init__(self, num_classes: int = NUM_CLASSES, impl: Impl = "auto",
                 dtype: Any = jnp.float32, *, input_shape: Sequence[int] = MNIST_SHAPE,
                 rngs: nnx.Rngs):  # fmt: skip
        h, w, c = input_shape = _hwc(input_shape)
        self.Conv_0 = Conv(c, 16, (5, 5), impl, rngs=rngs)
        self.Dense_0 = _dense((h // 2) * (w // 2) * 16, 1024, dtype, rngs)
        self.Dense_1 = _dense(1024, num_classes, dtype, rngs)
        self.impl, self.dtype, self.input_shape = impl, dtype, tuple(input_shape)

    def __call__(self, x: jax.Array, get_logits: bool = False) -> jax.Array:
        x = _as_images(x, self.input_shape, self.dtype)
        x = relu_max_pool_2x2(self.Conv_0(x), self.impl)  # relu, then max_pool 2x2 stride 2
        x = x.reshape([x.shape[0], -1])  # Flatten
        x = jax.nn.relu(self.Dense_0(x))
        return _finish(self.Dense_1(x), get_logits)


class DoubleLayerCNN(nnx.Module):
    """Conv 32 5x5 -> pool -> Conv 64 5x5 -> pool -> Dense 1024 -> relu -> Dense 10."""

    def __init__(self, num_classes: int = NUM_CLASSES, impl: Impl = "auto",
                 dtype: Any = jnp.float32, *, input_shape: Sequence[int] = MNIST_SHAPE,
                 rngs: nnx.Rngs):  # fmt: skip
        h, w, c = input_shape = _hwc(input_shape)
        self.Conv_0 = Conv(c, 32, (5, 5), impl, rngs=rngs)
        self.Conv_1 = Conv(32, 64, (5, 5), impl, rngs=rngs)
        self.Dense_0 = _dense((h // 4) * (w // 4) * 64, 1024, dtype, rngs)
        self.Dense_1 = _dense(1024, num_classes, dtype, rngs)
        self.impl, self.dtype, self.input_shape = impl, dtype, tuple(input_shape)

    def __call__(self, x: jax.Array, get_logits: bool = False) -> jax.Array:
        x = _as_images(x, self.input_shape, self.dtype)
        x = relu_max_pool_2x2(self.Conv_0(x), self.impl)
        x = relu_max_pool_2x2(self.Conv_1(x), self.impl)
        x = x.reshape([x.shape[0], -1])
        x = jax.nn.relu(self.Dense_0(x))
        return _finish(self.Dense_1(x), get_logits)


class MLP(nnx.Module):
    """Fully connected: pixels -> hidden (relu) ... -> classes."""

    def __init__(self, hidden: Sequence[int] = (512, 512), num_classes: int = NUM_CLASSES,
                 dtype: Any = jnp.float32, *, input_shape: Sequence[int] = MNIST_SHAPE,
                 rngs: nnx.Rngs):  # fmt: skip
        widths = [_pixels(input_shape), *hidden]
        for i, (a, b) in enumerate(zip(widths, widths[1:], strict=False)):
            setattr(self, f"Dense_{i}", _dense(a, b, dtype, rngs))
        setattr(self, f"Dense_{len(hidden)}", _dense(widths[-1], num_classes, dtype, rngs))
        self.depth, self.dtype = len(hidden) + 1, dtype

    def __call__(self, x: jax.Array, get_logits: bool = False) -> jax.Array:
        x = x.reshape([x.shape[0], -1]).astype(self.dtype)
        for i in range(self.depth - 1):
            x = jax.nn.relu(getattr(self, f"Dense_{i}")(x))
        return _finish(getattr(self, f"Dense_{self.depth - 1}")(x), get_logits)
