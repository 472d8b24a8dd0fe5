"""Digits 0-9 drawn as pen strokes, for tests that need a model that reads real handwriting.

The blob patterns of `helpers.make_digits` are learnable but look like no digit,
so a model trained on them cannot read a "1" drawn in a browser. These are drawn
the way a person draws: a few strokes per digit (with the common variants: a 1
with or without a flag, a 7 with a bar, an open 4), jittered, slanted, scaled
and of varying pen width, then put through `prepare_digit` exactly as a drawing
sent to the server is. A small CNN learns them in a few seconds.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from flaxfit.data.images import prepare_digit

Stroke = list[tuple[float, float]]


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float) -> Stroke:
    """Points on an ellipse from `start` to `end` degrees (0 = right, 90 = down: y points down)."""
    angles = np.radians(np.linspace(start, end, max(8, int(abs(end - start) / 12))))
    return [(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in angles]


# Each digit: its variants; each variant: its strokes; each stroke: points in a unit box.
TEMPLATES: dict[int, list[list[Stroke]]] = {
    0: [[_arc(0.5, 0.5, 0.3, 0.45, -90, 270)]],
    1: [
        [[(0.5, 0.05), (0.5, 0.95)]],
        [[(0.3, 0.25), (0.52, 0.05), (0.5, 0.95)]],
        [[(0.3, 0.25), (0.52, 0.05), (0.5, 0.95)], [(0.3, 0.95), (0.7, 0.95)]],
    ],
    2: [[_arc(0.5, 0.3, 0.3, 0.25, 200, 400) + [(0.18, 0.95), (0.85, 0.95)]]],
    3: [[_arc(0.5, 0.28, 0.27, 0.22, 210, 450) + _arc(0.5, 0.72, 0.3, 0.24, 270, 510)]],
    4: [
        [[(0.65, 0.95), (0.65, 0.05), (0.15, 0.65), (0.85, 0.65)]],
        [[(0.25, 0.05), (0.2, 0.6), (0.85, 0.6)], [(0.65, 0.3), (0.65, 0.95)]],
    ],
    5: [[[(0.78, 0.05), (0.3, 0.05), (0.26, 0.45)] + _arc(0.5, 0.67, 0.3, 0.28, 235, 500)]],
    6: [[[(0.72, 0.05), (0.35, 0.4), (0.22, 0.7)] + _arc(0.5, 0.72, 0.27, 0.23, 180, 540)]],
    7: [
        [[(0.15, 0.05), (0.85, 0.05), (0.4, 0.95)]],
        [[(0.15, 0.05), (0.85, 0.05), (0.4, 0.95)], [(0.35, 0.5), (0.75, 0.5)]],
    ],
    8: [[_arc(0.5, 0.27, 0.22, 0.22, 90, 450), _arc(0.5, 0.72, 0.27, 0.25, -90, 270)]],
    9: [
        [_arc(0.5, 0.3, 0.27, 0.25, 0, 360) + [(0.75, 0.95)]],
        [_arc(0.5, 0.3, 0.27, 0.25, 0, 360), [(0.77, 0.3), (0.6, 0.95)]],
    ],
}

PAGE = 96  # the drawing's side in pixels before MNIST-style preparation


def draw_digit(label: int, rng: np.random.Generator) -> np.ndarray:
    """One randomly varied drawing of `label`: uint8 (PAGE, PAGE), white ink on black."""
    variants = TEMPLATES[label]
    strokes = variants[rng.integers(len(variants))]
    angle = np.radians(rng.uniform(-12, 12))
    shear, width_scale = rng.uniform(-0.25, 0.25), rng.uniform(0.7, 1.2)
    rotate = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    transform = rotate @ np.array([[width_scale, shear], [0.0, 1.0]])
    pen = int(rng.integers(5, 13))
    image = Image.new("L", (PAGE, PAGE))
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        points = np.asarray(stroke) - 0.5 + rng.normal(0, 0.025, (len(stroke), 2))
        points = points @ transform.T * 64 + PAGE / 2
        draw.line([tuple(p) for p in points], fill=255, width=pen, joint="curve")
        for x, y in points[[0, -1]]:  # round pen ends, as a canvas draws them
            draw.ellipse([x - pen / 2, y - pen / 2, x + pen / 2, y + pen / 2], fill=255)
    return np.asarray(image)


def stroke_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n MNIST-style uint8 (28, 28) drawings with labels 0..9 (uint8), deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(labels)
    images = np.stack([prepare_digit(draw_digit(int(label), rng)) for label in labels])
    return images, labels
