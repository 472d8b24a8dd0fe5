"""The module paths flaxfit had before its folders by stage, kept importable.

`import flaxfit.plots` or `from flaxfit.loop import fit` (as README, notebooks
and users' code write them) load the module at its new place, under both
names: one module object, so patching either name patches both.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

#: old name under flaxfit -> its place now
MOVED = {
    "images": "data.images",
    "params": "models.params",
    "train": "training.step",
    "loop": "training.loop",
    "history": "training.history",
    "callbacks": "training.callbacks",
    "sharding": "training.sharding",
    "compile_watch": "training.compile_watch",
    "deck": "training.deck",
    "config": "runs.config",
    "optim": "runs.optim",
    "run": "runs.directory",
    "lock": "runs.lock",
    "checkpoints": "runs.checkpoints",
    "manifest": "runs.manifest",
    "verify": "runs.verify",
    "signals": "runs.signals",
    "distributed": "runs.distributed",
    "xla_env": "runs.xla_env",
    "plots": "tools.plots",
    "viz": "tools.viz",
    "demos": "tools.demos",
    "summary": "tools.summary",
    "export": "tools.export",
    "predict": "tools.predict",
    "serve": "tools.serve",
}


def _target(fullname: str) -> str | None:
    """'flaxfit.serve.app' -> 'flaxfit.tools.serve.app'; None for names that did not move."""
    package, _, rest = fullname.partition(".")
    if package != "flaxfit" or not rest:
        return None
    head, dot, tail = rest.partition(".")
    return f"flaxfit.{MOVED[head]}{dot}{tail}" if head in MOVED else None


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001 (the protocol's)
        new = _target(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=False)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(_target(spec.name))
        spec.loader_state = module.__spec__  # the import system sets __spec__ to ours next
        return module

    def exec_module(self, module: ModuleType) -> None:
        # Already executed under its new name; give it back its own spec, or
        # importlib.resources would take a package for a plain module.
        module.__spec__ = module.__spec__.loader_state


def install() -> None:
    """Make the old names importable (once per interpreter)."""
    # First in line: else the path finder would load `flaxfit.serve.app` a second time
    # from the package's real folder, as a separate module.
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Alias())


def submodule(package: str, name: str) -> ModuleType:
    """`package.name` imported on first use: what a package's `__getattr__` returns, so
    that `import flaxfit; flaxfit.training.loop.fit` works although no package imports its
    modules eagerly (which keeps `flaxfit --help` free of JAX). AttributeError otherwise."""
    if not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}") is not None:
        return importlib.import_module(f"{package}.{name}")
    raise AttributeError(f"module {package!r} has no attribute {name!r}")
