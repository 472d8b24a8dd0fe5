"""Your own model class, named on the command line as `path/to/model.py:Class` or `pkg.mod:Class`.

    spec = parse_model_spec("my_model.py:CNN")     # or "mypkg.models:CNN"
    model = build_model(spec, {"features": 32}, seed=0)

A Linen class is built with the options as its fields; an NNX class with the
options plus `rngs=nnx.Rngs(seed)`. A run records the spec, the options and
the sha256 of the source file, so `evaluate`, `predict`, `export`, `serve`
rebuild the same class and notice when the file has changed since training.
Importing a file runs it, as `python model.py` would: flaxfit only ever
imports the file the user names, never one inside a run directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flax import linen as nn
from flax import nnx


class ModelSpecError(ValueError):
    """A model spec that cannot be used; the message names the file, class or option."""


@dataclass(frozen=True)
class ModelSpec:
    """Where a model class lives: a file path or an importable module, and the class name."""

    module: str  # "path/to/model.py" (a file) or "package.module"
    name: str

    @property
    def is_file(self) -> bool:
        return self.module.endswith(".py")

    def __str__(self) -> str:
        return f"{self.module}:{self.name}"


def is_model_spec(text: str) -> bool:
    """Whether `text` names a class (`...:Class`) rather than a registry model ("cnn1")."""
    return ":" in text


def parse_model_spec(text: str) -> ModelSpec:
    """`path/to/model.py:Class` or `package.module:Class` -> ModelSpec.

    Raises:
        ModelSpecError: no `:Class` part, or an empty side.
    """
    module, _, name = text.rpartition(":")
    if not module or not name.isidentifier():
        raise ModelSpecError(
            f"model {text!r}: name a class as path/to/model.py:ClassName or "
            "package.module:ClassName"
        )
    return ModelSpec(module, name)


def source_file(spec: ModelSpec) -> Path:
    """The source file of `spec`'s module (found without importing it)."""
    if spec.is_file:
        path = Path(spec.module).expanduser().resolve()
        if not path.is_file():
            raise ModelSpecError(f"model file {spec.module}: no such file")
        return path
    try:
        found = importlib.util.find_spec(spec.module)
    except (ImportError, ValueError):  # a parent package that is not there
        found = None
    if found is None or not found.origin or not Path(found.origin).is_file():
        raise ModelSpecError(
            f"model module {spec.module}: not found on the Python path; run from the directory "
            "that holds it, set PYTHONPATH, or name the file as path/to/model.py:Class"
        )
    return Path(found.origin)


def source_sha256(spec: ModelSpec) -> str:
    """sha256 of the file `spec`'s class is defined in."""
    path = source_file(spec)
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as error:
        raise ModelSpecError(f"model file {path}: cannot read ({error.strerror})") from None


def load_class(spec: ModelSpec, *, refuse_under: Path | None = None) -> type:
    """Import `spec`'s module and return its class, checked to be a Linen or NNX module.

    Args:
        refuse_under: a directory (a run's) that the source must not lie inside.

    Raises:
        ModelSpecError: the file or module is missing or fails to import, the class is
            missing, or it is not a Flax module.
    """
    path = source_file(spec)
    if refuse_under is not None and path.is_relative_to(refuse_under.resolve()):
        raise ModelSpecError(
            f"model file {path} is inside the run directory {refuse_under}; flaxfit does not "
            "run code stored in a run: keep the model's source elsewhere"
        )
    try:
        if spec.is_file:
            # A fresh name per file, so two model.py files in different places do not collide.
            digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
            name = f"flaxfit_user_model_{digest}"
            loader_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[name] = module  # dataclasses (Linen modules) look their module up here
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(spec.module)
    except ModelSpecError:
        raise
    except Exception as error:  # the user's code failed to import: say where and why
        raise ModelSpecError(
            f"model {spec}: importing {path} failed: {type(error).__name__}: {error}"
        ) from None
    cls = getattr(module, spec.name, None)
    if cls is None:
        classes = sorted(
            n for n, v in vars(module).items()
            if isinstance(v, type) and issubclass(v, nn.Module | nnx.Module)
            and v.__module__ == module.__name__
        )  # fmt: skip
        raise ModelSpecError(
            f"model {spec}: {path.name} has no {spec.name!r}"
            + (f"; its Flax modules are: {', '.join(classes)}" if classes else "")
        )
    if not (isinstance(cls, type) and issubclass(cls, nn.Module | nnx.Module)):
        raise ModelSpecError(
            f"model {spec}: {spec.name} is not a flax.linen.Module or flax.nnx.Module subclass"
        )
    return cls


def is_nnx_class(cls: type) -> bool:
    return issubclass(cls, nnx.Module)


def accepted_options(cls: type) -> list[str]:
    """The option names a model class takes: a Linen module's fields, an NNX `__init__`'s
    keywords (without `rngs`)."""
    if issubclass(cls, nn.Module):
        return [
            f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("parent", "name")
        ]
    parameters = inspect.signature(cls.__init__).parameters
    return [n for n, p in parameters.items() if n not in ("self", "rngs")
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]  # fmt: skip


def parse_model_args(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """["features=32", "widths=[64, 64]", "act=gelu"] -> {"features": 32, ...}.

    Values are read as JSON (numbers, true/false, lists, quoted strings); anything
    that is not JSON is kept as a string.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ModelSpecError(f"--model-arg {pair!r}: write it as name=value, e.g. features=32")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def build_model(cls: type, options: dict[str, Any], *, seed: int = 0, label: str = "") -> Any:
    """An instance of `cls` with `options` (NNX: also `rngs=nnx.Rngs(seed)`), checked.

    Raises:
        ModelSpecError: an option the class does not take, or one it rejects.
    """
    label = label or cls.__name__
    known = accepted_options(cls)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ModelSpecError(
            f"model {label}: no option {', '.join(map(repr, unknown))}; it takes: "
            f"{', '.join(known) or 'no options'}"
        )
    # Lists from JSON become tuples: Linen fields must be hashable.
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    try:
        if is_nnx_class(cls):
            return cls(**options, rngs=nnx.Rngs(seed))
        return cls(**options)
    except Exception as error:
        raise ModelSpecError(
            f"model {label}: building it with {options} failed: {type(error).__name__}: {error}"
        ) from None
