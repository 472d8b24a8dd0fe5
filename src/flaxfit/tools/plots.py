"""Pictures of a run: learning curves, confusion matrix, mistakes, filters, feature maps.

Each picture is a function of plain arrays (or a History) returning a
matplotlib Figure; `write_report` draws them all for a run directory and
writes the PNGs plus one self-contained report.html with the images inlined.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from flaxfit.files import write_atomic
from flaxfit.models.nnx_bridge import is_nnx
from flaxfit.models.outputs import predict
from flaxfit.tools.viz import _pyplot
from flaxfit.training.history import History


def plot_learning_curves(history: History) -> Any:
    """Each metric per epoch, train vs test: loss and accuracy for a classifier, one
    panel per metric the steps returned otherwise."""
    plt = _pyplot()
    names = list(dict.fromkeys(c.split("_", 1)[1] for c in history.metrics))
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), dpi=100, squeeze=False)
    epochs = history["epoch"]
    for ax, metric in zip(axes[0], names, strict=True):
        for split, marker in (("train", "o-"), ("test", "s-")):
            if f"{split}_{metric}" in history.columns:
                ax.plot(epochs, history[f"{split}_{metric}"], marker, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Learning curves")
    fig.tight_layout()
    return fig


def confusion_matrix(
    labels: np.ndarray, predicted: np.ndarray, num_classes: int = 10
) -> np.ndarray:
    """(num_classes, num_classes) counts: row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(labels, int), np.asarray(predicted, int)), 1)
    return matrix


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str] | None = None) -> Any:
    """The confusion matrix as a heat map with the counts written in, axes by class name."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5.5), dpi=100)
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax)
    threshold = matrix.max() / 2
    for (row, col), count in np.ndenumerate(matrix):
        ax.text(col, row, str(count), ha="center", va="center", fontsize=7,
                color="white" if count > threshold else "black")  # fmt: skip
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    names = class_names or [str(i) for i in range(len(matrix))]
    ax.set_xticks(range(len(matrix)), names, rotation=45 if max(map(len, names)) > 2 else 0,
                  ha="right" if max(map(len, names)) > 2 else "center")  # fmt: skip
    ax.set_yticks(range(len(matrix)), names)
    ax.set_title(f"Confusion matrix ({int(np.trace(matrix))}/{int(matrix.sum())} correct)")
    fig.tight_layout()
    return fig


def _grid(count: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(count))
    return math.ceil(count / cols), cols


def _show(ax: Any, image: np.ndarray) -> None:
    """A picture as it is: RGB in colour, one channel in gray."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 3:
        ax.imshow(image)
    else:
        ax.imshow(image.reshape(image.shape[:2]) if image.ndim == 3 else image, cmap="gray")


def plot_misclassified(
    images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, max_images: int = 25,
    class_names: Sequence[str] | None = None,
) -> Any:
    """Up to `max_images` wrong predictions, each with true label, guess and its probability
    (by class name), the pictures in colour when they are."""
    plt = _pyplot()
    names = class_names or [str(i) for i in range(probabilities.shape[-1])]
    predicted = probabilities.argmax(-1)
    wrong = np.flatnonzero(predicted != labels)[:max_images]
    rows, cols = _grid(max(len(wrong), 1))
    size = (max(1.8 * cols, 5.0), max(2.0 * rows, 3.0))
    fig, axes = plt.subplots(rows, cols, figsize=size, dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    if not len(wrong):
        axes[0, 0].text(0.5, 0.5, "no misclassified images", ha="center", va="center")
    for ax, index in zip(axes.flat, wrong, strict=False):
        _show(ax, images[index])
        guess = predicted[index]
        confidence = probabilities[index, guess]
        ax.set_title(f"#{index} true {names[labels[index]]}\npred {names[guess]} "
                     f"({confidence:.2f})", fontsize=8)  # fmt: skip
    fig.suptitle(f"Misclassified test images ({int((predicted != labels).sum())} in all)")
    fig.tight_layout()
    return fig


def plot_filters(kernel: np.ndarray) -> Any:
    """The first conv layer's filters: kernel (kh, kw, in, out); a colour layer's (in = 3)
    as RGB pictures (each filter scaled to [0, 1]), otherwise the first input channel."""
    plt = _pyplot()
    kernel = np.asarray(kernel)
    colour = kernel.shape[2] == 3
    filters = kernel if colour else kernel[:, :, 0, :]
    rows, cols = _grid(filters.shape[-1])
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.5 * rows), dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for index, ax in enumerate(axes.flat[: filters.shape[-1]]):
        if colour:
            f = filters[..., index]
            ax.imshow((f - f.min()) / (np.ptp(f) or 1.0))
        else:
            ax.imshow(filters[:, :, index], cmap="coolwarm")
        ax.set_title(str(index), fontsize=8)
    fig.suptitle(
        f"First conv layer: {filters.shape[-1]} filters of {filters.shape[0]}x{filters.shape[1]}"
    )
    fig.tight_layout()
    return fig


def feature_maps(
    model: Any, params: Any, image: np.ndarray, batch_stats: Any = None
) -> dict[str, np.ndarray]:
    """relu(conv) output of every conv layer for one image: {layer name: (H, W, C)}."""
    x = np.asarray(image, np.float32)[None] / (255.0 if image.dtype == np.uint8 else 1.0)
    _, state = predict(model, params, x, batch_stats=batch_stats, capture_intermediates=True,
                       mutable=["intermediates"])  # fmt: skip
    maps = {}
    for name, values in state["intermediates"].items():
        if name.startswith("Conv"):
            maps[name] = np.maximum(np.asarray(values["__call__"][0])[0], 0)
    return maps


def plot_feature_maps(maps: dict[str, np.ndarray], image: np.ndarray) -> Any:
    """The input image, then each conv layer's channels (up to 32 per layer)."""
    plt = _pyplot()
    shown = {name: m[:, :, :32] for name, m in maps.items()}
    cols = 8
    rows = 1 + sum(math.ceil(m.shape[-1] / cols) for m in shown.values())
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.4 * rows), dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    _show(axes[0, 0], image)
    axes[0, 0].set_title("input", fontsize=8)
    row = 1
    for name, m in shown.items():
        for channel in range(m.shape[-1]):
            ax = axes[row + channel // cols, channel % cols]
            ax.imshow(m[:, :, channel], cmap="magma")
            ax.set_title(f"{name}[{channel}]", fontsize=6)
        row += math.ceil(m.shape[-1] / cols)
    fig.suptitle("Feature maps (after relu)")
    fig.tight_layout()
    return fig


def plot_probabilities(
    probabilities: np.ndarray, label: int | None = None, class_names: Sequence[str] | None = None
) -> Any:
    """A bar chart of the class probabilities for one image, by class name."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    colors = ["tab:blue"] * len(probabilities)
    colors[int(np.argmax(probabilities))] = "tab:orange"
    ax.bar(range(len(probabilities)), probabilities, color=colors)
    names = class_names or [str(i) for i in range(len(probabilities))]
    ax.set_xticks(range(len(probabilities)), names,
                  rotation=45 if max(map(len, names)) > 2 else 0)  # fmt: skip
    ax.set_ylim(0, 1)
    ax.set_xlabel("class")
    ax.set_ylabel("probability")
    title = f"Prediction: {names[int(np.argmax(probabilities))]}"
    ax.set_title(title + (f" (true {names[label]})" if label is not None else ""))
    fig.tight_layout()
    return fig


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    _pyplot().close(fig)
    return buffer.getvalue()


def write_report(run: Any, test_images: np.ndarray, test_labels: np.ndarray, out_dir: Path,
                 image_index: int = 0) -> Path:  # fmt: skip
    """Draw every picture of `run` (a `flaxfit.Run`) into `out_dir`; returns report.html."""
    from flaxfit.tools.predict import predict_probabilities

    out_dir.mkdir(parents=True, exist_ok=True)
    if not 0 <= image_index < len(test_images):
        raise ValueError(f"image index {image_index} is outside the {len(test_images)} test images")
    model, params = run.model, jax.device_get(run.params)
    names = list(run.config.names)
    probabilities = predict_probabilities(model, params, test_images, batch_stats=run.batch_stats)
    predicted = probabilities.argmax(-1)
    figures: dict[str, tuple[str, Any]] = {}
    if len(run.history):
        figures["learning_curves"] = ("Learning curves", plot_learning_curves(run.history))
    figures["confusion_matrix"] = (
        "Confusion matrix",
        plot_confusion(confusion_matrix(test_labels, predicted, len(names)), names),
    )
    figures["misclassified"] = (
        "Misclassified test images",
        plot_misclassified(test_images, test_labels, probabilities, class_names=names),
    )
    if "Conv_0" in params:
        figures["filters"] = (
            "First conv layer's filters",
            plot_filters(params["Conv_0"]["kernel"]),
        )
    if "Conv_0" in params and not is_nnx(model):  # captured intermediates: Linen only
        maps = feature_maps(model, params, test_images[image_index], run.batch_stats)
        figures["feature_maps"] = (
            f"Feature maps of test image #{image_index}",
            plot_feature_maps(maps, test_images[image_index]),
        )
    figures["probabilities"] = (
        f"Probabilities for test image #{image_index}",
        plot_probabilities(probabilities[image_index], int(test_labels[image_index]), names),
    )
    sections = []
    for name, (title, fig) in figures.items():
        png = _png(fig)
        write_atomic(out_dir / f"{name}.png", png)
        data = base64.b64encode(png).decode()
        sections.append(f'<h2>{html.escape(title)}</h2>\n<img alt="{name}" '
                        f'src="data:image/png;base64,{data}">')  # fmt: skip
    accuracy = float((predicted == test_labels).mean())
    page = (
        '<!doctype html>\n<html><head><meta charset="utf-8">'
        f"<title>flaxfit report: {html.escape(str(run.directory))}</title>"
        "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}img{max-width:100%}"
        "</style></head><body>\n"
        f"<h1>{html.escape(run.config.model)} on {html.escape(run.config.dataset)}</h1>\n"
        f"<p>Run {html.escape(str(run.directory))}: test accuracy {100 * accuracy:.2f}% "
        f"({int((predicted == test_labels).sum())}/{len(test_labels)}).</p>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )
    return write_atomic(out_dir / "report.html", page)
