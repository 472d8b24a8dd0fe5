"""flaxfit: the training loop of "JAX / Flax 入門", made real.

Every piece is a plain function you can read and replace:
data -> models -> train step -> fit -> checkpoints/metrics -> CLI, plots, server.

    import jax, flaxfit
    data = flaxfit.load_mnist()
    state = flaxfit.create_train_state(flaxfit.SingleLayerCNN(), jax.random.key(0))
    state, history = flaxfit.fit(state, data.train, data.test, epochs=3, batch_size=128)

The same fit() trains Linen modules written as in Flax's examples, NNX modules
(`create_train_state(nnx_module)`, or Flax's NNX tutorial steps handed to fit
as they are), BatchNorm and Dropout included.
"""

from flaxfit import _moved
from flaxfit.data import DataError as DataError
from flaxfit.data import Dataset as Dataset
from flaxfit.data import Split as Split
from flaxfit.data import load_data as load_data
from flaxfit.data import load_dataset as load_dataset
from flaxfit.data import load_fashion_mnist as load_fashion_mnist
from flaxfit.data import load_mnist as load_mnist
from flaxfit.models import MLP as MLP
from flaxfit.models import MODELS as MODELS
from flaxfit.models import DoubleLayerCNN as DoubleLayerCNN
from flaxfit.models import SingleLayerCNN as SingleLayerCNN
from flaxfit.models import SoftmaxRegression as SoftmaxRegression
from flaxfit.models import create_model as create_model
from flaxfit.models import params as params
from flaxfit.models.params import Lineage as Lineage
from flaxfit.models.params import ParamsError as ParamsError
from flaxfit.runs.checkpoints import Checkpointer as Checkpointer
from flaxfit.runs.checkpoints import restore as restore_checkpoint
from flaxfit.runs.config import TrainConfig as TrainConfig
from flaxfit.runs.directory import Run as Run
from flaxfit.runs.directory import RunError as RunError
from flaxfit.runs.directory import load_run as load_run
from flaxfit.runs.directory import train_run as train_run
from flaxfit.runs.manifest import build_manifest as build_manifest
from flaxfit.runs.manifest import diff_runs as diff_runs
from flaxfit.runs.optim import make_optimizer as make_optimizer
from flaxfit.runs.verify import verify_resume as verify_resume
from flaxfit.training.callbacks import Callback as Callback
from flaxfit.training.callbacks import EarlyStopping as EarlyStopping
from flaxfit.training.callbacks import HistoryFiles as HistoryFiles
from flaxfit.training.callbacks import ProgressBar as ProgressBar
from flaxfit.training.callbacks import TensorBoard as TensorBoard
from flaxfit.training.compile_watch import watch_compiles as watch_compiles
from flaxfit.training.history import History as History
from flaxfit.training.loop import EpochProgress as EpochProgress
from flaxfit.training.loop import NonFiniteError as NonFiniteError
from flaxfit.training.loop import TrainingInterrupted as TrainingInterrupted
from flaxfit.training.loop import epoch_order as epoch_order
from flaxfit.training.loop import evaluate as evaluate
from flaxfit.training.loop import fit as fit
from flaxfit.training.loop import train_epoch as train_epoch
from flaxfit.training.step import TrainState as TrainState
from flaxfit.training.step import create_train_state as create_train_state
from flaxfit.training.step import eval_step as eval_step
from flaxfit.training.step import loss_fn as loss_fn
from flaxfit.training.step import nnx_model as nnx_model
from flaxfit.training.step import train_step as train_step

__version__ = "0.1.0"

_moved.install()  # flaxfit.plots, flaxfit.loop, ...: the module paths from before the folders

__all__ = [
    "Callback",
    "Checkpointer",
    "DataError",
    "Dataset",
    "DoubleLayerCNN",
    "EarlyStopping",
    "EpochProgress",
    "History",
    "HistoryFiles",
    "MLP",
    "MODELS",
    "NonFiniteError",
    "ProgressBar",
    "Run",
    "RunError",
    "SingleLayerCNN",
    "SoftmaxRegression",
    "Split",
    "TensorBoard",
    "TrainConfig",
    "TrainState",
    "TrainingInterrupted",
    "build_manifest",
    "create_model",
    "create_train_state",
    "diff_runs",
    "epoch_order",
    "eval_step",
    "evaluate",
    "fit",
    "load_data",
    "load_dataset",
    "load_fashion_mnist",
    "load_mnist",
    "Lineage",
    "ParamsError",
    "load_run",
    "loss_fn",
    "make_optimizer",
    "nnx_model",
    "params",
    "restore_checkpoint",
    "train_epoch",
    "train_run",
    "train_step",
    "verify_resume",
    "watch_compiles",
]
