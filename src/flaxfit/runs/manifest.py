"""The run manifest: what a run needs to be reproduced or explained, in manifest.json.

    manifest = build_manifest(config, dataset, state, command=sys.argv)
    write_manifest("runs/a", manifest)
    diff_runs("runs/a", "runs/b")   # [Difference("config", "config.lr", 0.001, 0.002)]

A manifest names the code (flaxfit version and a hash of the lowered train
step), the libraries, the platform, the exact data and the config. `diff_runs`
compares two run directories on those and nothing else, so two runs of the
same command on the same machine compare equal.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax.training.train_state import TrainState

import flaxfit
from flaxfit.data.dataset import IMAGE_SHAPE, NUM_CLASSES, Dataset
from flaxfit.files import IntegrityError, read_recorded, write_recorded
from flaxfit.runs.config import TrainConfig
from flaxfit.training import step as _train

MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1
# flaxfit.runs.directory.CONFIG_FILE, spelled out: directory.py imports this module, so
# importing it back would be circular.
_CONFIG_FILE = "config.json"

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")
CATEGORIES = ("code", "libraries", "platform", "data", "config")

# MLIR locations: `#loc3 = loc(...)` alias lines and ` loc(...)` after an op. jax omits them
# when debug_info=False, but they hold file paths and line numbers, so any that a future jax
# still prints are stripped rather than let a moved file change the hash.
_LOC_LINE = re.compile(r"^\s*#loc\d*\s*=.*$\n?", re.MULTILINE)
_LOC_START = re.compile(r"\s+loc\(")


class ManifestError(ValueError):
    """A manifest (or the run directory holding it) is missing or unreadable."""


class _Absent:
    """The value of a key that one manifest has and the other lacks."""

    def __repr__(self) -> str:
        return "<absent>"


ABSENT: Any = _Absent()


@dataclass(frozen=True)
class Difference:
    """One key on which two runs differ.

    Attributes:
        category: one of CATEGORIES: "code", "libraries", "platform", "data" or "config".
        key: the dotted path in the manifest, e.g. "config.lr" or "packages.jax".
        a_value: the value in the first run, or ABSENT.
        b_value: the value in the second run, or ABSENT.
    """

    category: str
    key: str
    a_value: Any
    b_value: Any

    def __str__(self) -> str:
        return f"{self.key}: {_show(self.a_value)} -> {_show(self.b_value)}"


def _show(value: Any) -> str:
    # JSON spelling, as in manifest.json: "" and null stay visible, strings are quoted.
    return repr(ABSENT) if value is ABSENT else json.dumps(value, sort_keys=True)


def _strip_locations(text: str) -> str:
    """`text` without MLIR location lines and attributes."""
    text = _LOC_LINE.sub("", text)
    pieces, position = [], 0
    while match := _LOC_START.search(text, position):
        pieces.append(text[position : match.start()])
        # Skip to the matching ")". Names like "jit(f)/jvp(g)" nest parentheses, and quoted
        # text need not balance them, so parentheses count only outside quotes.
        depth, index, quoted = 1, match.end(), False
        while depth and index < len(text):
            char = text[index]
            if quoted and char == "\\":
                index += 1  # an escaped character, perhaps a quote
            elif char == '"':
                quoted = not quoted
            elif not quoted:
                depth += {"(": 1, ")": -1}.get(char, 0)
            index += 1
        position = index
    pieces.append(text[position:])
    return "".join(pieces)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed version of each distribution, or "not installed".

    Args:
        names: distribution names as pip knows them (e.g. "orbax-checkpoint").

    Returns:
        {name: version}.
    """
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def train_step_hash(
    state: TrainState,
    batch_size: int,
    *,
    train_step: Callable[..., Any] = _train.train_step,
    image_shape: tuple[int, ...] = IMAGE_SHAPE,
    num_classes: int = NUM_CLASSES,
) -> str:
    """sha256 of `train_step` lowered to StableHLO for `state` and a batch, without debug info.

    The text holds the computation only, with no source locations, so moving
    or reformatting a file keeps the hash while changing the model, the loss,
    the optimizer, or a constant it bakes in (a constant learning rate, the
    length of a schedule) changes it. Nothing is compiled or run.

    Args:
        state: the TrainState to lower for; only its shapes, dtypes and static fields
            count, so `jax.eval_shape` of one gives the same hash.
        batch_size: rows per batch; the step is lowered for (batch_size, *image_shape)
            float32 inputs and (batch_size, num_classes) float32 one-hot labels
            (MNIST's by default).
        train_step: the step that trains, `flaxfit.training.step.train_step` unless replaced.

    Returns:
        64 hex digits.
    """
    inputs = jax.ShapeDtypeStruct((batch_size, *image_shape), jnp.float32)
    labels = jax.ShapeDtypeStruct((batch_size, num_classes), jnp.float32)
    # Lowering reads only the state's shapes and dtypes: nothing is compiled, run or copied.
    lowered = jax.jit(train_step).lower(state, inputs, labels)
    text = lowered.as_text(dialect="stablehlo", debug_info=False)
    return hashlib.sha256(_strip_locations(text).encode()).hexdigest()


def build_manifest(
    config: TrainConfig,
    dataset: Dataset,
    state: TrainState,
    *,
    train_step: Callable[..., Any] = _train.train_step,
    command: list[str] | None = None,
    lineage: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Everything needed to reproduce or explain a run, as a JSON-ready dict.

    Args:
        config: the run's config.
        dataset: the data it trains on (its name, source and hashes are recorded).
        state: its TrainState (at any step: only the structure is used).
        train_step: the step it trains with; hashed, see `train_step_hash`.
        command: the command line that started it (e.g. sys.argv), if any.
        lineage: where its starting params came from: `flaxfit.models.params.Lineage.records`
            (transfers, replaced arrays, frozen arrays, with sha256 of each array).

    Returns:
        A dict with the keys manifest_version, flaxfit, train_step_hash, python,
        packages, platform, backend, devices, device_count, process_count,
        xla_flags, jax_env, seed, config, dataset, command, created, lineage.
    """
    return {
        "manifest_version": MANIFEST_VERSION,
        "flaxfit": flaxfit.__version__,
        "train_step_hash": train_step_hash(
            state, config.batch_size, train_step=train_step, image_shape=config.input_shape,
            num_classes=config.num_classes,
        ),  # fmt: skip
        "python": platform.python_version(),
        "packages": package_versions(),
        "platform": {"system": platform.system(), "machine": platform.machine()},
        "backend": jax.default_backend(),
        "devices": [device.device_kind for device in jax.devices()],
        "device_count": jax.device_count(),
        "process_count": jax.process_count(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "jax_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("JAX_")},
        "seed": config.seed,
        "config": config.to_dict(),
        "dataset": {
            "name": dataset.name,
            "source": dataset.source,
            "sha256": dict(dataset.sha256),
            "content_sha256": dataset.content_sha256(),
        },
        "command": list(command) if command is not None else None,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "lineage": list(lineage or []),
    }


def write_manifest(directory: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """Write `manifest` to `directory`/manifest.json atomically (indent 2, sorted keys).

    Its sha256 is recorded in the directory's SHA256SUMS, which `read_manifest` checks.

    Args:
        directory: an existing run directory.
        manifest: a dict from `build_manifest`.

    Returns:
        The path written.
    """
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    return write_recorded(Path(directory) / MANIFEST_FILE, text)


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(
            read_recorded(path, missing=f"no such file; is {path.parent} a flaxfit run?")
        )
    except IntegrityError as error:
        raise ManifestError(str(error)) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """Read `directory`/manifest.json.

    Args:
        directory: a run directory.

    Returns:
        The manifest dict.

    Raises:
        ManifestError: (a ValueError) the directory or the file is missing, or the
            file is not a JSON object; the message names the path.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ManifestError(f"{directory}: no such run directory")
    return _read_json_object(directory / MANIFEST_FILE)


def _load_for_diff(directory: str | os.PathLike) -> dict[str, Any]:
    manifest = read_manifest(directory)
    if "config" not in manifest:  # a manifest written without one: config.json has it
        manifest = {**manifest, "config": _read_json_object(Path(directory) / _CONFIG_FILE)}
    return manifest


def _section(manifest: dict[str, Any], *path: str) -> dict[str, Any]:
    # A dict-valued part of a manifest, or {} where it is missing (an older or partial one).
    value: Any = manifest
    for name in path:
        value = value.get(name) if isinstance(value, dict) else None
    return value if isinstance(value, dict) else {}


def _compared(a: dict[str, Any], b: dict[str, Any]) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """(category, dotted key, path) for every compared value, in report order.

    Left out on purpose: created and command (they differ between any two runs),
    seed (a copy of config.seed), lineage and manifest_version.
    """

    def each(category: str, *section: str) -> Iterator[tuple[str, str, tuple[str, ...]]]:
        # Every key either side has under `section`, e.g. each package either run recorded.
        names = set(_section(a, *section)) | set(_section(b, *section))
        for name in sorted(names):
            yield category, ".".join((*section, name)), (*section, name)

    yield "code", "flaxfit", ("flaxfit",)
    yield "code", "train_step_hash", ("train_step_hash",)
    yield "libraries", "python", ("python",)
    yield from each("libraries", "packages")
    yield from each("platform", "platform")
    for key in ("backend", "devices", "device_count", "process_count", "xla_flags"):
        yield "platform", key, (key,)
    yield from each("platform", "jax_env")
    yield "data", "dataset.name", ("dataset", "name")
    yield "data", "dataset.source", ("dataset", "source")
    yield from each("data", "dataset", "sha256")
    yield "data", "dataset.content_sha256", ("dataset", "content_sha256")
    yield from each("config", "config")


def _value(manifest: dict[str, Any], path: tuple[str, ...]) -> Any:
    # By path, not by dotted key: file names under dataset.sha256 contain dots themselves.
    value: Any = manifest
    for name in path:
        if not isinstance(value, dict) or name not in value:
            return ABSENT
        value = value[name]
    return value


def diff_manifests(a: dict[str, Any], b: dict[str, Any]) -> list[Difference]:
    """The differences between two manifests, in CATEGORIES order.

    Args:
        a: the first manifest.
        b: the second manifest.

    Returns:
        One Difference per key whose values differ (ABSENT where a side lacks it);
        empty when the runs match. `created`, `command`, `seed` (config.seed is
        compared), `lineage` and `manifest_version` are ignored.
    """
    differences = []
    for category, key, path in _compared(a, b):
        a_value, b_value = _value(a, path), _value(b, path)
        if a_value != b_value:  # ABSENT equals only itself
            differences.append(Difference(category, key, a_value, b_value))
    return differences


def diff_runs(a: str | os.PathLike, b: str | os.PathLike) -> list[Difference]:
    """Compare two run directories on code, libraries, platform, data and config.

    Args:
        a: the first run directory.
        b: the second run directory.

    Returns:
        The differences, as `diff_manifests` gives them.

    Raises:
        ManifestError: (a ValueError) a directory or its manifest.json is missing or
            unreadable (or, when the manifest has no config, its config.json is).
    """
    return diff_manifests(_load_for_diff(a), _load_for_diff(b))


def format_diff(differences: list[Difference], a: str | os.PathLike, b: str | os.PathLike) -> str:
    """`differences` as text for a person: a heading per category, one line per key.

    Args:
        differences: from `diff_runs(a, b)`.
        a: the first run directory, for the heading.
        b: the second run directory, for the heading.

    Returns:
        The text, without a trailing newline.
    """
    if not differences:
        return f"runs {a} and {b} match in code, libraries, platform, data and config"
    categories = [c for c in CATEGORIES if any(d.category == c for d in differences)]
    count = len(differences)
    lines = [
        f"runs {a} and {b}: {count} difference{'s' if count != 1 else ''}"
        f" in {', '.join(categories)}"
    ]
    for category in categories:
        lines.append(f"{category}:")
        lines.extend(f"  {d}" for d in differences if d.category == category)
    return "\n".join(lines)


def diff_runs_main(a: str, b: str) -> int:
    """`flaxfit diff A B`: print how two runs differ; exit status like diff(1).

    Args:
        a: the first run directory.
        b: the second run directory.

    Returns:
        0 when the runs match, 1 when they differ.

    Raises:
        ManifestError: (a ValueError) a directory or manifest is missing or unreadable.
    """
    differences = diff_runs(a, b)
    print(format_diff(differences, a, b))
    return 1 if differences else 0


def params_sha256(params: Any) -> str:
    """sha256 over every params array's path, dtype, shape and bytes, in path order."""
    digest = hashlib.sha256()
    for path, leaf in sorted(
        jax.tree_util.tree_flatten_with_path(params)[0],
        key=lambda item: jax.tree_util.keystr(item[0]),
    ):
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{jax.tree_util.keystr(path)}:{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
