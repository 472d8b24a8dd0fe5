"""The deck's first demos (slides 9-11): h(x1, x2) = 2 sin x1 sin x2, its gradient, and jit.

flaxfit demo grad   # the 3-D figure of h with gradient arrows
flaxfit demo jit    # op-by-op vs compiled timing, the jaxpr, XLA's cost analysis
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp


# --- slide 9, verbatim -------------------------------------------------------
@jax.jit
def h(x1, x2):
    z = 2 * jnp.sin(x1) * jnp.sin(x2)
    return z


nabla_h = jax.jit(jax.grad(h, (0, 1)))
# -----------------------------------------------------------------------------


def nabla_h_exact(x1: jax.Array, x2: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The gradient by hand: (2 cos x1 sin x2, 2 sin x1 cos x2)."""
    return 2 * jnp.cos(x1) * jnp.sin(x2), 2 * jnp.sin(x1) * jnp.cos(x2)


def grad_figure(num: int = 40) -> Any:
    """The deck's plot3d of h and nabla_h over (-pi, pi)^2."""
    from flaxfit.tools.viz import plot3d

    return plot3d((-jnp.pi, jnp.pi), (-jnp.pi, jnp.pi), h, nabla_h, num=num,
                  title="h(x1, x2) = 2 sin x1 sin x2 and its gradient")  # fmt: skip


@dataclass
class JitReport:
    """What `jit_report` measured; `format()` prints it."""

    calls: int
    eager_seconds: dict[str, float]
    compiled_seconds: dict[str, float]
    compile_seconds: dict[str, float]
    jaxpr: str
    cost: dict[str, float]

    def format(self) -> str:
        lines = [f"{self.calls} calls each, on a 1000-point vector:"]
        for name in self.eager_seconds:
            eager, fast = self.eager_seconds[name], self.compiled_seconds[name]
            compile_ms = 1e3 * self.compile_seconds[name]
            lines.append(
                f"  {name:8} op by op {1e3 * eager:9.2f} ms   compiled {1e3 * fast:8.2f} ms   "
                f"speed-up {eager / fast:6.1f}x   (compile {compile_ms:.1f} ms)"
            )
        lines += ["", "jaxpr of nabla_h (what jax.grad built from h):", self.jaxpr, ""]
        lines.append("XLA cost analysis of compiled nabla_h:")
        lines += [f"  {key}: {value:,.0f}" for key, value in self.cost.items()]
        return "\n".join(lines)


def _seconds(fn: Any, args: tuple, calls: int) -> float:
    jax.block_until_ready(fn(*args))
    started = time.perf_counter()
    for _ in range(calls):
        out = fn(*args)
    jax.block_until_ready(out)
    return time.perf_counter() - started


def jit_report(calls: int = 200) -> JitReport:
    """Time h and nabla_h op by op (jax.disable_jit) and compiled, and show what jit made."""
    x1 = jnp.linspace(-jnp.pi, jnp.pi, 1000)
    x2 = jnp.linspace(0.0, 1.0, 1000)

    def h_sum(a, b):
        return h(a, b).sum()  # a scalar, so grad applies to whole vectors

    grad_h = jax.grad(h_sum, (0, 1))
    functions = {"h": h, "nabla_h": grad_h}
    eager, compiled, compile_seconds = {}, {}, {}
    for name, fn in functions.items():
        with jax.disable_jit():
            eager[name] = _seconds(fn, (x1, x2), calls)
        started = time.perf_counter()
        fast = jax.jit(fn).lower(x1, x2).compile()
        compile_seconds[name] = time.perf_counter() - started
        compiled[name] = _seconds(fast, (x1, x2), calls)
    cost = jax.jit(grad_h).lower(x1, x2).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    keep = {
        k: float(v)
        for k, v in (cost or {}).items()
        if k in ("flops", "transcendentals", "bytes accessed")
    }
    jaxpr = str(jax.make_jaxpr(nabla_h)(1.0, 2.0))
    return JitReport(calls, eager, compiled, compile_seconds, jaxpr, keep)
