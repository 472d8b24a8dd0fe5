"""Models by name: the deck's SingleLayerCNN and its companions, in Linen and NNX."""

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

__all__ = [
    "MLP",
    "MODELS",
    "NNX_MODELS",
    "NUM_CLASSES",
    "DoubleLayerCNN",
    "SingleLayerCNN",
    "SoftmaxRegression",
    "create_model",
    "is_nnx",
    "nnx",
]
