"""Runs stage: config, optimizer from config, run directories, lock, checkpoints, manifest,
verify-resume, signals and multi-host setup.

Builds on training/: a run is `fit()` plus everything that makes it resumable,
reproducible and safe to leave running.
"""

from flaxfit._moved import submodule as _submodule


def __getattr__(name: str) -> object:  # flaxfit.runs.MODULE without importing it first
    return _submodule(__name__, name)
