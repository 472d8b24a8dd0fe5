"""The run manifest: what a run needs to be reproduced or explained, in manifest.json.

    manifest = build_manifest(config, dataset, state, command=sys.argv)
    write_manifest("runs/a", manifest)

A manifest names the code (flaxfit version and a hash of the lowered train
step), the libraries, the platform, the exact data and the config.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

import flaxfit
from flaxfit import train as _train
from flaxfit.config import TrainConfig
from flaxfit.data.dataset import IMAGE_SHAPE, NUM_CLASSES, Dataset
from flaxfit.files import write_atomic

MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")

# MLIR locations: `#loc3 = loc(...)` alias lines and ` loc(...)` after an op. jax omits them
# when debug_info=False, but they hold file paths and line numbers, so any that a future jax
# still prints are stripped rather than let a moved file change the hash.
_LOC_LINE = re.compile(r"^\s*#loc\d*\s*=.*$\n?", re.MULTILINE)
_LOC_START = re.compile(r"\s+loc\(")


class ManifestError(ValueError):
    """A manifest (or the run directory holding it) is missing or unreadable."""


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
) -> str:
    """sha256 of `train_step` lowered to StableHLO for `state` and a batch, without debug info.

    The text holds the computation only, with no source locations, so moving
    or reformatting a file keeps the hash while changing the model, the loss,
    the optimizer, or a constant it bakes in (a constant learning rate, the
    length of a schedule) changes it. Nothing is compiled or run.

    Args:
        state: the TrainState to lower for; only its shapes, dtypes and static fields
            count, so `jax.eval_shape` of one gives the same hash.
        batch_size: rows per batch; the step is lowered for (batch_size, 28, 28) float32
            inputs and (batch_size, 10) float32 one-hot labels.
        train_step: the step that trains, `flaxfit.train.train_step` unless replaced.

    Returns:
        64 hex digits.
    """
    inputs = jax.ShapeDtypeStruct((batch_size, *IMAGE_SHAPE), jnp.float32)
    labels = jax.ShapeDtypeStruct((batch_size, NUM_CLASSES), jnp.float32)
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
) -> dict[str, Any]:
    """Everything needed to reproduce or explain a run, as a JSON-ready dict.

    Args:
        config: the run's config.
        dataset: the data it trains on (its name, source and hashes are recorded).
        state: its TrainState (at any step: only the structure is used).
        train_step: the step it trains with; hashed, see `train_step_hash`.
        command: the command line that started it (e.g. sys.argv), if any.

    Returns:
        A dict with the keys manifest_version, flaxfit, train_step_hash, python,
        packages, platform, backend, devices, device_count, process_count,
        xla_flags, jax_env, seed, config, dataset, command, created, lineage.
    """
    return {
        "manifest_version": MANIFEST_VERSION,
        "flaxfit": flaxfit.__version__,
        "train_step_hash": train_step_hash(state, config.batch_size, train_step=train_step),
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
        "lineage": [],  # transfer and freeze steps append their records here
    }


def write_manifest(directory: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """Write `manifest` to `directory`/manifest.json atomically (indent 2, sorted keys).

    Args:
        directory: an existing run directory.
        manifest: a dict from `build_manifest`.

    Returns:
        The path written.
    """
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    return write_atomic(Path(directory) / MANIFEST_FILE, text)


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such file; is {path.parent} a flaxfit run?") from None
    except OSError as error:
        raise ManifestError(f"{path}: cannot read it ({error.strerror})") from None
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
        ManifestError (a ValueError): the directory or the file is missing, or the
            file is not a JSON object; the message names the path.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ManifestError(f"{directory}: no such run directory")
    return _read_json_object(directory / MANIFEST_FILE)
