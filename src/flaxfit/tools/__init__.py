"""Tools stage: plots, demos, summary, export, predict and the digit pad (serve/).

Leaves: they read runs and models; nothing outside tools/ and cli.py imports them.
"""

from flaxfit._moved import submodule as _submodule


def __getattr__(name: str) -> object:  # flaxfit.tools.MODULE without importing it first
    return _submodule(__name__, name)
