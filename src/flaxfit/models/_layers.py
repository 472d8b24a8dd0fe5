"""Layers that compute exactly what nn.Conv / nn.max_pool compute, faster on XLA:CPU.

XLA:CPU runs convolution and reduce-window gradients inside `lax.scan` far
slower than at top level (jax issue 12868). Written as shifted slices + matmul
and reshape + max, the same functions stay fast inside a scan, which lets
`fit()` run many steps per dispatch. On GPU/TPU the native convolution is
used. The pool is reshape + max on every backend unless "native" is asked
for: nn.max_pool's gradient is a select-and-scatter, which XLA:GPU cannot run
deterministically (and refuses to compile under --xla_gpu_deterministic_ops),
so it would cost bit-exact resume on GPU. Parameters are named and
initialised as in `nn.Conv`, so a params dict moves freely between the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp
from flax import linen as nn

Impl = Literal["auto", "native", "matmul"]


def resolve_impl(impl: Impl) -> Literal["native", "matmul"]:
    """ "auto" picks the matmul forms on CPU and the native ops elsewhere."""
    if impl not in ("auto", "native", "matmul"):
        raise ValueError(f"impl must be 'auto', 'native' or 'matmul', got {impl!r}")
    if impl == "auto":
        return "matmul" if jax.default_backend() == "cpu" else "native"
    return impl


def conv(x: jax.Array, kernel: jax.Array, stride: int = 1, impl: Impl = "auto") -> jax.Array:
    """SAME-padded conv of (B, H, W, C) with (kh, kw, C, O), `stride` both ways: XLA's
    convolution, or the same sums as one matmul over its taps, as `resolve_impl` picks."""
    if resolve_impl(impl) == "native":
        return jax.lax.conv_general_dilated(
            x, kernel, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    kh, kw, cin, cout = kernel.shape
    b, h, w, _ = x.shape
    oh, ow = -(-h // stride), -(-w // stride)
    # XLA's SAME padding: ceil(size / stride) outputs, the odd padded pixel at the end.
    ph, pw = max((oh - 1) * stride + kh - h, 0), max((ow - 1) * stride + kw - w, 0)
    x = jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    # Patches (B, oh, ow, kh*kw, C) -> one (B*oh*ow, kh*kw*C) @ (kh*kw*C, O) matmul: a single
    # large GEMM is what the CPU runs fastest; the patches cost kh*kw times the input memory.
    span_h, span_w = (oh - 1) * stride + 1, (ow - 1) * stride + 1
    taps = [x[:, i : i + span_h : stride, j : j + span_w : stride] for i in range(kh)
            for j in range(kw)]  # fmt: skip
    # A 2-D operand: XLA:CPU ran the same product as a 4-D dot_general 2x slower.
    y = jnp.stack(taps, -2).reshape(-1, kh * kw * cin) @ kernel.reshape(kh * kw * cin, cout)
    return y.reshape(b, oh, ow, cout)


class Conv(nn.Module):
    """2-D convolution, SAME padding; params `kernel` (kh, kw, C, O) and `bias` (O,).

    Same parameters, initialisation and outputs as
    `nn.Conv(features, kernel_size, strides, use_bias=...)`.
    """

    features: int
    kernel_size: Sequence[int]
    strides: int = 1
    use_bias: bool = True
    impl: Impl = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = self.kernel_size
        shape = (kh, kw, x.shape[-1], self.features)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), shape)
        y = conv(x, kernel.astype(x.dtype), self.strides, self.impl)
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
            y = y + bias.astype(x.dtype)
        return y


def relu_max_pool_2x2(x: jax.Array, impl: Impl = "auto") -> jax.Array:
    """`nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))` for (B, H, W, C), H and W even.

    Only an explicit impl="native" runs nn.max_pool itself (see the module docstring).
    """
    if impl != "auto" and resolve_impl(impl) == "native":
        return nn.max_pool(nn.relu(x), window_shape=(2, 2), strides=(2, 2))
    # relu and max commute, so pooling first runs relu on a quarter of the values.
    b, h, w, c = x.shape
    return nn.relu(x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4)))
