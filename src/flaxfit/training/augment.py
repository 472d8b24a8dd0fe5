"""Data augmentation on the device, inside the compiled step, keyed by (seed, epoch, step).

The standard recipes: for colour pictures (CIFAR-10) a random crop from the
image padded by 4 pixels on each side, plus a horizontal flip half the time;
for digits (one channel) a random shift of up to 2 pixels, and never a flip
(a mirrored 2 is not a 2). Each example gets its own draw from the step's key,
which `fit()` derives from (seed, epoch, step), so a resumed run augments
exactly as an unbroken one does. It costs a pad and a gather per batch, no
host work and no extra memory for the dataset.

    augment = recipe_for(image_shape)            # None, "shift" or "crop_flip"
    inputs = apply(augment, key, inputs)         # inside the step
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp

Recipe = Literal["shift", "crop_flip"]
RECIPES = ("shift", "crop_flip")
CROP_PAD, MAX_SHIFT = 4, 2


def recipe_for(image_shape: Sequence[int]) -> Recipe:
    """The standard recipe for images of `image_shape` ((H, W) or (H, W, C))."""
    return "crop_flip" if len(image_shape) == 3 and image_shape[-1] == 3 else "shift"


def _random_translate(key: jax.Array, images: jax.Array, pad: int) -> jax.Array:
    """Each image moved by its own (dy, dx) in [-pad, pad], the border filled with zeros."""
    n, h, w = images.shape[:3]
    spatial = [(0, 0), (pad, pad), (pad, pad)] + [(0, 0)] * (images.ndim - 3)
    padded = jnp.pad(images, spatial)
    offsets = jax.random.randint(key, (n, 2), 0, 2 * pad + 1)

    def crop(image: jax.Array, offset: jax.Array) -> jax.Array:
        start = (offset[0], offset[1]) + (0,) * (image.ndim - 2)
        return jax.lax.dynamic_slice(image, start, (h, w, *image.shape[2:]))

    return jax.vmap(crop)(padded, offsets)


def shift(key: jax.Array, images: jax.Array, max_shift: int = MAX_SHIFT) -> jax.Array:
    """Digits: a random shift of up to `max_shift` pixels in each direction; no flips."""
    return _random_translate(key, images, max_shift)


def crop_flip(key: jax.Array, images: jax.Array, pad: int = CROP_PAD) -> jax.Array:
    """Colour pictures: a random crop of the image padded by `pad`, then a random
    horizontal flip (half the examples)."""
    crop_key, flip_key = jax.random.split(key)
    images = _random_translate(crop_key, images, pad)
    flip = jax.random.bernoulli(flip_key, 0.5, (images.shape[0],))
    flip = flip.reshape((-1,) + (1,) * (images.ndim - 1))
    return jnp.where(flip, images[:, :, ::-1], images)


def apply(recipe: Recipe | None, key: jax.Array, images: jax.Array) -> jax.Array:
    """`images` (B, H, W[, C]) augmented by `recipe`; unchanged for None."""
    if recipe is None:
        return images
    if recipe == "shift":
        return shift(key, images)
    if recipe == "crop_flip":
        return crop_flip(key, images)
    raise ValueError(f"unknown augmentation {recipe!r}; choose one of: {', '.join(RECIPES)}")
