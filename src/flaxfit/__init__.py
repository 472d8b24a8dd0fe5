"""flaxfit: the training loop of "JAX / Flax 入門", made real.

Every piece is a plain function you can read and replace:
data -> models -> train step -> fit -> checkpoints/metrics -> CLI, plots, server.

    import jax, flaxfit
    data = flaxfit.load_mnist()
    state = flaxfit.create_train_state(flaxfit.SingleLayerCNN(), jax.random.key(0))
    state, history = flaxfit.fit(state, data.train, data.test, epochs=3, batch_size=128)
"""

from flaxfit.callbacks import Callback as Callback
from flaxfit.callbacks import ProgressBar as ProgressBar
from flaxfit.compile_watch import watch_compiles as watch_compiles
from flaxfit.data import DataError as DataError
from flaxfit.data import Dataset as Dataset
from flaxfit.data import Split as Split
from flaxfit.data import load_dataset as load_dataset
from flaxfit.data import load_fashion_mnist as load_fashion_mnist
from flaxfit.data import load_mnist as load_mnist
from flaxfit.history import History as History
from flaxfit.loop import epoch_order as epoch_order
from flaxfit.loop import evaluate as evaluate
from flaxfit.loop import fit as fit
from flaxfit.loop import train_epoch as train_epoch
from flaxfit.models import MLP as MLP
from flaxfit.models import MODELS as MODELS
from flaxfit.models import DoubleLayerCNN as DoubleLayerCNN
from flaxfit.models import SingleLayerCNN as SingleLayerCNN
from flaxfit.models import SoftmaxRegression as SoftmaxRegression
from flaxfit.models import create_model as create_model
from flaxfit.train import create_train_state as create_train_state
from flaxfit.train import eval_step as eval_step
from flaxfit.train import loss_fn as loss_fn
from flaxfit.train import train_step as train_step

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "MODELS",
    "Callback",
    "DataError",
    "Dataset",
    "DoubleLayerCNN",
    "History",
    "ProgressBar",
    "SingleLayerCNN",
    "SoftmaxRegression",
    "Split",
    "create_model",
    "create_train_state",
    "epoch_order",
    "eval_step",
    "evaluate",
    "fit",
    "load_dataset",
    "load_fashion_mnist",
    "load_mnist",
    "loss_fn",
    "train_epoch",
    "train_step",
    "watch_compiles",
]
