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

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from flaxfit import _moved

if TYPE_CHECKING:  # what type checkers and readers see; at run time, `_EXPORTS` below
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
    from flaxfit.runs.compile_cache import enable_compile_cache as enable_compile_cache
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

#: public name -> (module, name there). Each is imported on first use (PEP 562), so
#: `flaxfit --help` and `import flaxfit.cli` start without JAX and Flax (1.5 s here);
#: tests/test_layout.py checks the table against the imports above.
_EXPORTS: dict[str, tuple[str, str]] = {
    "DataError": ("flaxfit.data", "DataError"),
    "Dataset": ("flaxfit.data", "Dataset"),
    "Split": ("flaxfit.data", "Split"),
    "load_data": ("flaxfit.data", "load_data"),
    "load_dataset": ("flaxfit.data", "load_dataset"),
    "load_fashion_mnist": ("flaxfit.data", "load_fashion_mnist"),
    "load_mnist": ("flaxfit.data", "load_mnist"),
    "MLP": ("flaxfit.models", "MLP"),
    "MODELS": ("flaxfit.models", "MODELS"),
    "DoubleLayerCNN": ("flaxfit.models", "DoubleLayerCNN"),
    "SingleLayerCNN": ("flaxfit.models", "SingleLayerCNN"),
    "SoftmaxRegression": ("flaxfit.models", "SoftmaxRegression"),
    "create_model": ("flaxfit.models", "create_model"),
    "params": ("flaxfit.models", "params"),
    "Lineage": ("flaxfit.models.params", "Lineage"),
    "ParamsError": ("flaxfit.models.params", "ParamsError"),
    "Checkpointer": ("flaxfit.runs.checkpoints", "Checkpointer"),
    "restore_checkpoint": ("flaxfit.runs.checkpoints", "restore"),
    "enable_compile_cache": ("flaxfit.runs.compile_cache", "enable_compile_cache"),
    "TrainConfig": ("flaxfit.runs.config", "TrainConfig"),
    "Run": ("flaxfit.runs.directory", "Run"),
    "RunError": ("flaxfit.runs.directory", "RunError"),
    "load_run": ("flaxfit.runs.directory", "load_run"),
    "train_run": ("flaxfit.runs.directory", "train_run"),
    "build_manifest": ("flaxfit.runs.manifest", "build_manifest"),
    "diff_runs": ("flaxfit.runs.manifest", "diff_runs"),
    "make_optimizer": ("flaxfit.runs.optim", "make_optimizer"),
    "verify_resume": ("flaxfit.runs.verify", "verify_resume"),
    "Callback": ("flaxfit.training.callbacks", "Callback"),
    "EarlyStopping": ("flaxfit.training.callbacks", "EarlyStopping"),
    "HistoryFiles": ("flaxfit.training.callbacks", "HistoryFiles"),
    "ProgressBar": ("flaxfit.training.callbacks", "ProgressBar"),
    "TensorBoard": ("flaxfit.training.callbacks", "TensorBoard"),
    "watch_compiles": ("flaxfit.training.compile_watch", "watch_compiles"),
    "History": ("flaxfit.training.history", "History"),
    "EpochProgress": ("flaxfit.training.loop", "EpochProgress"),
    "NonFiniteError": ("flaxfit.training.loop", "NonFiniteError"),
    "TrainingInterrupted": ("flaxfit.training.loop", "TrainingInterrupted"),
    "epoch_order": ("flaxfit.training.loop", "epoch_order"),
    "evaluate": ("flaxfit.training.loop", "evaluate"),
    "fit": ("flaxfit.training.loop", "fit"),
    "train_epoch": ("flaxfit.training.loop", "train_epoch"),
    "TrainState": ("flaxfit.training.step", "TrainState"),
    "create_train_state": ("flaxfit.training.step", "create_train_state"),
    "eval_step": ("flaxfit.training.step", "eval_step"),
    "loss_fn": ("flaxfit.training.step", "loss_fn"),
    "nnx_model": ("flaxfit.training.step", "nnx_model"),
    "train_step": ("flaxfit.training.step", "train_step"),
}

_moved.install()  # flaxfit.plots, flaxfit.loop, ...: the module paths from before the folders


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        return _moved.submodule(__name__, name)
    module, attribute = _EXPORTS[name]
    try:  # as `from module import attribute` finds it: a name there, or a submodule
        value = getattr(importlib.import_module(module), attribute)
    except AttributeError:
        value = importlib.import_module(f"{module}.{attribute}")
    globals()[name] = value  # once: later look-ups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


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
    "enable_compile_cache",
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

