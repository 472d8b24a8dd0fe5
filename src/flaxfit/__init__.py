"""flaxfit: the training loop of "JAX / Flax 入門", made real.

Every piece is a plain function you can read and replace:
data -> models -> train step -> fit -> checkpoints/metrics -> CLI, plots, server.

    import jax, flaxfit
    data = flaxfit.load_mnist()
    state = flaxfit.create_train_state(flaxfit.SingleLayerCNN(), jax.random.key(0))
    state, history = flaxfit.fit(state, data.train, data.test, epochs=3, batch_size=128)
"""

from flaxfit import params as params
from flaxfit.callbacks import Callback as Callback
from flaxfit.callbacks import EarlyStopping as EarlyStopping
from flaxfit.callbacks import HistoryFiles as HistoryFiles
from flaxfit.callbacks import ProgressBar as ProgressBar
from flaxfit.callbacks import TensorBoard as TensorBoard
from flaxfit.checkpoints import Checkpointer as Checkpointer
from flaxfit.checkpoints import restore as restore_checkpoint
from flaxfit.compile_watch import watch_compiles as watch_compiles
from flaxfit.config import TrainConfig as TrainConfig
from flaxfit.data import DataError as DataError
from flaxfit.data import Dataset as Dataset
from flaxfit.data import Split as Split
from flaxfit.data import load_dataset as load_dataset
from flaxfit.data import load_fashion_mnist as load_fashion_mnist
from flaxfit.data import load_mnist as load_mnist
from flaxfit.history import History as History
from flaxfit.loop import EpochProgress as EpochProgress
from flaxfit.loop import NonFiniteError as NonFiniteError
from flaxfit.loop import TrainingInterrupted as TrainingInterrupted
from flaxfit.loop import epoch_order as epoch_order
from flaxfit.loop import evaluate as evaluate
from flaxfit.loop import fit as fit
from flaxfit.loop import train_epoch as train_epoch
from flaxfit.manifest import build_manifest as build_manifest
from flaxfit.manifest import diff_runs as diff_runs
from flaxfit.models import MLP as MLP
from flaxfit.models import MODELS as MODELS
from flaxfit.models import DoubleLayerCNN as DoubleLayerCNN
from flaxfit.models import SingleLayerCNN as SingleLayerCNN
from flaxfit.models import SoftmaxRegression as SoftmaxRegression
from flaxfit.models import create_model as create_model
from flaxfit.optim import make_optimizer as make_optimizer
from flaxfit.params import Lineage as Lineage
from flaxfit.params import ParamsError as ParamsError
from flaxfit.run import Run as Run
from flaxfit.run import RunError as RunError
from flaxfit.run import load_run as load_run
from flaxfit.run import train_run as train_run
from flaxfit.train import create_train_state as create_train_state
from flaxfit.train import eval_step as eval_step
from flaxfit.train import loss_fn as loss_fn
from flaxfit.train import train_step as train_step
from flaxfit.verify import verify_resume as verify_resume

__version__ = "0.1.0"

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
    "TrainingInterrupted",
    "build_manifest",
    "create_model",
    "create_train_state",
    "diff_runs",
    "epoch_order",
    "eval_step",
    "evaluate",
    "fit",
    "load_dataset",
    "load_fashion_mnist",
    "load_mnist",
    "Lineage",
    "ParamsError",
    "load_run",
    "loss_fn",
    "make_optimizer",
    "params",
    "restore_checkpoint",
    "train_epoch",
    "train_run",
    "train_step",
    "verify_resume",
    "watch_compiles",
]
