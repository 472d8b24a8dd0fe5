"""Teaching plots. matplotlib runs headless (Agg): no display is needed. Where a backend
was chosen (MPLBACKEND; Jupyter's kernel sets its inline one), that one is kept, so a
notebook shows the figures.

Figure text is English on purpose: matplotlib's default fonts have no CJK
glyphs, and a figure full of missing-glyph boxes teaches nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _pyplot() -> Any:
    import matplotlib

    # Before pyplot is imported: never open a window, unless a backend was asked for
    # (ipykernel sets MPLBACKEND to its inline backend, which draws into the notebook).
    if not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def grid_values(
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    f: Callable[[jax.Array, jax.Array], jax.Array],
    num: int = 40,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """f on a num x num grid: (X, Y, Z), each (num, num), computed with vmap in one call."""
    xs = jnp.linspace(*x_range, num)
    ys = jnp.linspace(*y_range, num)
    x, y = jnp.meshgrid(xs, ys)
    z = jax.vmap(jax.vmap(f))(x, y)
    return np.asarray(x), np.asarray(y), np.asarray(z)


def plot3d(
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    f: Callable[[jax.Array, jax.Array], jax.Array],
    grad_f: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]],
    *,
    num: int = 40,
    arrows: int = 12,
    title: str | None = None,
) -> Any:
    """The deck's figure: the surface of f, with its gradient as arrows on a contour floor.

    Args:
        x_range, y_range: (low, high) of each axis, e.g. (-jnp.pi, jnp.pi).
        f: a two-argument scalar function (jitted or not), e.g. the deck's h.
        grad_f: its gradient, e.g. `jax.jit(jax.grad(h, (0, 1)))`, returning (df/dx, df/dy).
        num: grid points per axis for the surface.
        arrows: gradient arrows per axis on the floor.

    Returns:
        The matplotlib Figure (save it with `fig.savefig("grad.png")`).
    """
    plt = _pyplot()
    x, y, z = grid_values(x_range, y_range, f, num)
    floor = z.min() - 0.6 * (z.max() - z.min() or 1.0)
    fig = plt.figure(figsize=(8, 6.5), dpi=100)
    ax = fig.add_subplot(projection="3d")
    ax.plot_surface(x, y, z, cmap="viridis", alpha=0.75, linewidth=0)
    ax.contour(x, y, z, zdir="z", offset=floor, levels=15, cmap="viridis")
    ax_, ay_, _ = grid_values(x_range, y_range, f, arrows)
    gx, gy = jax.vmap(jax.vmap(grad_f))(jnp.asarray(ax_), jnp.asarray(ay_))
    # Arrows scaled so the longest spans about one grid cell.
    cell = (x_range[1] - x_range[0]) / arrows
    scale = cell / max(float(jnp.max(jnp.hypot(gx, gy))), 1e-12)
    ax.quiver(ax_, ay_, np.full_like(ax_, floor), np.asarray(gx) * scale, np.asarray(gy) * scale,
              np.zeros_like(ax_), color="crimson", arrow_length_ratio=0.3)  # fmt: skip
    ax.set_zlim(floor, z.max())
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_zlabel("f(x1, x2)")
    ax.set_title(title or "f and its gradient (arrows on the floor)")
    return fig
