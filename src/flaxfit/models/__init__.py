"""Models by name: the deck's SingleLayerCNN and its companions, in Linen and NNX.

The names below are imported on first use (PEP 562), so `flaxfit.models.names`
(what `flaxfit --help` lists) loads without Flax.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what type checkers and readers see; at run time, `_EXPORTS` below
    from flaxfit.models import nnx as nnx
    from flaxfit.models.mnist import MLP as MLP
    from flaxfit.models.mnist import NUM_CLASSES as NUM_CLASSES
    from flaxfit.models.mnist import DoubleLayerCNN as DoubleLayerCNN
    from flaxfit.models.mnist import SingleLayerCNN as SingleLayerCNN
    from flaxfit.models.mnist import SoftmaxRegression as SoftmaxRegression
    from flaxfit.models.nnx_bridge import is_nnx as is_nnx
    from flaxfit.models.registry import MODELS as MODELS
    from flaxfit.models.registry import NNX_MODELS as NNX_MODELS
    from flaxfit.models.registry import create_model as create_model

#: public name -> the module that defines it (tests/test_layout.py checks it against the above)
_EXPORTS = {
    "MLP": "flaxfit.models.mnist",
    "NUM_CLASSES": "flaxfit.models.mnist",
    "DoubleLayerCNN": "flaxfit.models.mnist",
    "SingleLayerCNN": "flaxfit.models.mnist",
    "SoftmaxRegression": "flaxfit.models.mnist",
    "is_nnx": "flaxfit.models.nnx_bridge",
    "MODELS": "flaxfit.models.registry",
    "NNX_MODELS": "flaxfit.models.registry",
    "create_model": "flaxfit.models.registry",
}

__all__ = sorted([*_EXPORTS, "nnx"])


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        from flaxfit._moved import submodule

        return submodule(__name__, name)
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # once: later look-ups are plain attribute reads
    return value
