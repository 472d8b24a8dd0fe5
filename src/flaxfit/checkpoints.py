"""Orbax checkpoints of a run: the TrainState, where the data order stands, and the history.

One checkpoint per saved global step under `<run>/checkpoints/<step>/`:
`state` (params, optimizer state, step; exact arrays) and `meta` (JSON: the
epoch and the steps done in it with their per-step losses, the seed and RNG
key, a hash of every epoch's data order, the config and the history so far).
Orbax writes each one into a temporary directory and renames it when
complete, so a kill during a save never damages an earlier checkpoint.
The last `keep` checkpoints are kept, plus the best by `monitor`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax.training.train_state import TrainState

from flaxfit.history import COLUMNS, History
from flaxfit.loop import EpochProgress, epoch_order

CHECKPOINTS_DIR = "checkpoints"


def monitor_mode(monitor: str) -> str:
    """ "min" for loss columns, "max" for accuracy columns."""
    if monitor not in COLUMNS or monitor in ("epoch", "seconds", "images_per_second"):
        raise ValueError(
            f"cannot monitor {monitor!r}; choose one of train_loss, train_accuracy, "
            "test_loss, test_accuracy"
        )
    return "min" if monitor.endswith("loss") else "max"


def order_digest(seed: int, epoch: int, num_examples: int) -> str:
    """sha256 of an epoch's example order, to prove two runs saw the same data order."""
    return hashlib.sha256(epoch_order(seed, epoch, num_examples).tobytes()).hexdigest()


def _state_tree(state: TrainState) -> dict[str, Any]:
    return {"params": state.params, "opt_state": state.opt_state, "step": state.step}


@dataclass
class Restored:
    """A checkpoint read back: continue with `fit(state, ..., start=progress, history=history)`."""

    step: int
    state: TrainState
    progress: EpochProgress
    history: History
    meta: dict[str, Any]


class Checkpointer:
    """A fit callback that saves every `every_epochs` epochs and when interrupted.

    Args:
        directory: where the step directories go (created if missing).
        history: the History object fit appends to (saved with each checkpoint).
        seed, num_examples: the run's data order, recorded as per-epoch hashes.
        config: the run's config as a dict, stored in every checkpoint.
        keep: how many of the latest checkpoints to keep (the best is kept too).
        monitor: the History column that picks the best checkpoint.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        history: History,
        seed: int,
        num_examples: int,
        config: dict[str, Any] | None = None,
        keep: int = 3,
        monitor: str = "test_accuracy",
        every_epochs: int = 1,
        stream: TextIO | None = None,
    ):
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        if every_epochs < 1:
            raise ValueError(f"every_epochs must be at least 1, got {every_epochs}")
        mode = monitor_mode(monitor)
        self.directory = Path(directory).absolute()
        self.history, self.seed, self.num_examples = history, seed, num_examples
        self.config, self.monitor, self.every_epochs = config or {}, monitor, every_epochs
        self.stream = stream
        policy = ocp.checkpoint_managers.AnyPreservationPolicy(
            [
                ocp.checkpoint_managers.LatestN(n=keep),
                ocp.checkpoint_managers.BestN(
                    get_metric_fn=lambda metrics: metrics[monitor],
                    reverse=mode == "min",  # BestN keeps the tail of the sorted list
                    n=1,
                    keep_checkpoints_without_metrics=False,
                ),
            ]
        )
        # Synchronous saves: the state is donated to the next train chunk as
        # soon as the hook returns, so the arrays must be written by then.
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                preservation_policy=policy, enable_async_checkpointing=False, create=True
            ),
        )

    def save(
        self, state: TrainState, progress: EpochProgress, *, metrics: dict | None = None
    ) -> bool:
        """Save `state` at its global step; False if that step is already saved."""
        step = int(state.step)
        if step in self.manager.all_steps():
            return False
        if self.stream is not None:  # announced first: a kill can land mid-save, on purpose
            where = (
                f"epoch {progress.epoch}, {progress.steps_done} steps in"
                if progress.steps_done
                else f"end of epoch {progress.epoch - 1}"
            )
            print(f"checkpoint: saving step {step} ({where})", file=self.stream, flush=True)
        meta = {
            "epoch": progress.epoch,
            "steps_done": progress.steps_done,
            "losses": [float(x) for x in progress.losses],
            "correct": [int(x) for x in progress.correct],
            "seed": self.seed,
            "rng_key": np.asarray(jax.random.key_data(jax.random.key(self.seed))).tolist(),
            "order_sha256": [
                order_digest(self.seed, epoch, self.num_examples)
                for epoch in range(1, progress.epoch + (progress.steps_done > 0))
            ],
            "config": self.config,
            "history": self.history.to_dict(),
        }
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(_state_tree(state)), meta=ocp.args.JsonSave(meta)
            ),
            metrics=metrics,
        )
        self.manager.wait_until_finished()
        return True

    # --- fit hooks ---------------------------------------------------------
    def on_epoch_end(self, epoch: int, state: TrainState, metrics: dict[str, float]) -> None:
        if epoch % self.every_epochs == 0:
            value = metrics[self.monitor]
            ranked = None if math.isnan(value) else {self.monitor: float(value)}
            self.save(state, EpochProgress(epoch + 1), metrics=ranked)

    def on_interrupt(self, state: TrainState, progress: EpochProgress, history: History) -> None:
        self.save(state, progress)

    def on_fit_end(self, state: TrainState, history: History) -> None:
        if history.rows:
            self.save(state, EpochProgress(int(history.last["epoch"]) + 1))

    def close(self) -> None:
        self.manager.close()


def latest_step(directory: str | Path) -> int | None:
    """The newest complete checkpoint's step in `directory`, or None."""
    directory = Path(directory).absolute()
    if not directory.is_dir():
        return None
    with ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=False)) as m:
        return m.latest_step()


def restore(directory: str | Path, template: TrainState, step: int | None = None) -> Restored:
    """Read checkpoint `step` (default: the latest) into the structure of `template`.

    `template` is a freshly created TrainState of the same model and optimizer;
    its arrays only give shapes and dtypes. Restored arrays are bit-exact.
    """
    directory = Path(directory).absolute()
    options = ocp.CheckpointManagerOptions(create=False)
    with ocp.CheckpointManager(directory, options=options) as manager:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{directory}: no complete checkpoint")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _state_tree(template))
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
    tree, meta = restored["state"], restored["meta"]
    state = template.replace(params=tree["params"], opt_state=tree["opt_state"], step=tree["step"])
    progress = EpochProgress(meta["epoch"], meta["steps_done"], meta["losses"], meta["correct"])
    return Restored(step, state, progress, History.from_dict(meta["history"]), meta)
