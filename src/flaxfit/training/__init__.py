"""Training stage: the train state and step (slide 14), the loop (`fit`), History, callbacks.

Imports only from data/ and models/ (and files.py): nothing here knows about
run directories, checkpoints or the command line.
"""

from flaxfit._moved import submodule as _submodule


def __getattr__(name: str) -> object:  # flaxfit.training.MODULE without importing it first
    return _submodule(__name__, name)
