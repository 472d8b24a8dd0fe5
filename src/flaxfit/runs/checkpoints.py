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
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax.training.train_state import TrainState

from flaxfit.files import SUMS_FILE, IntegrityError, read_sums, sha256_hex, write_sums
from flaxfit.training.history import COLUMNS, History
from flaxfit.training.loop import EpochProgress, epoch_order

CHECKPOINTS_DIR = "checkpoints"
#: Where resume moves a damaged checkpoint (beside CHECKPOINTS_DIR, in the run).
DAMAGED_DIR = "damaged-checkpoints"


class CheckpointError(ValueError):
    """A checkpoint could not be saved, or no intact one is left to resume from."""


class DamagedCheckpoint(ValueError):
    """One checkpoint is not what was saved: `reason` says what is wrong."""

    def __init__(self, directory: Path, step: int, reason: str):
        super().__init__(f"{directory / str(step)}: damaged checkpoint ({reason})")
        self.step, self.reason = step, reason


def host_copy(tree: Any) -> Any:
    """A numpy copy of a pytree of (replicated) arrays, also in a multi-process job.

    A replicated array spanning several processes is not fully addressable,
    but every process holds all of it: its local shard is the whole value.
    """

    def fetch(x: Any) -> Any:
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(x.addressable_data(0))
        return np.asarray(x)

    return jax.tree.map(fetch, tree)


def array_digests(tree: Any) -> dict[str, str]:
    """{path: sha256 of dtype, shape and bytes} for every array in `tree`."""
    digests = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(host_copy(tree))[0]:
        array = np.asarray(leaf)
        if array.ndim == 0 and array.dtype.kind in "iu":  # the step: int32 or int64 by template
            array = array.astype(np.int64)
        header = f"{array.dtype}:{array.shape}:".encode()
        digests[jax.tree_util.keystr(path)] = sha256_hex(header + array.tobytes())
    return digests


def checkpoint_steps(directory: str | Path) -> list[int]:
    """The steps of the finished checkpoints in `directory`, oldest first.

    Orbax names a finished checkpoint by its step alone; one being written
    carries a temporary suffix and is not listed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and p.is_dir())


def _record_files(step_dir: Path) -> None:
    files = sorted(p for p in step_dir.rglob("*") if p.is_file() and p.name != SUMS_FILE)
    write_sums(
        step_dir, {str(p.relative_to(step_dir)): {sha256_hex(p.read_bytes())} for p in files}
    )


def verify_files(directory: str | Path, step: int) -> None:
    """Check every file of checkpoint `step` against its SHA256SUMS.

    Raises:
        DamagedCheckpoint: a file is missing, changed or unreadable, or the
            checkpoint has no SHA256SUMS (its save did not finish).
    """
    directory = Path(directory)
    step_dir = directory / str(step)
    if not (step_dir / SUMS_FILE).is_file():
        raise DamagedCheckpoint(directory, step, f"no {SUMS_FILE}: its save did not finish")
    try:
        sums = read_sums(step_dir)
    except IntegrityError as error:
        raise DamagedCheckpoint(directory, step, str(error).split(": ", 1)[-1]) from None
    for name, digests in sums.items():
        try:
            data = (step_dir / name).read_bytes()
        except FileNotFoundError:
            raise DamagedCheckpoint(directory, step, f"{name} is missing") from None
        except OSError as error:
            raise DamagedCheckpoint(directory, step, f"{name}: {error.strerror}") from None
        if sha256_hex(data) not in digests:
            raise DamagedCheckpoint(directory, step, f"{name} is not what was saved (sha256)")


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
    tree = {"params": state.params, "opt_state": state.opt_state, "step": state.step}
    if getattr(state, "batch_stats", None) is not None:  # BatchNorm's running averages
        tree["batch_stats"] = state.batch_stats
    return tree


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
            "metrics": {k: [float(x) for x in v] for k, v in progress.metrics.items()},
            "seed": self.seed,
            "rng_key": np.asarray(jax.random.key_data(jax.random.key(self.seed))).tolist(),
            "order_sha256": [
                order_digest(self.seed, epoch, self.num_examples)
                for epoch in range(1, progress.epoch + (progress.steps_done > 0))
            ],
            "config": self.config,
            "history": self.history.to_dict(),
            "num_examples": self.num_examples,
            "sha256": array_digests(_state_tree(state)),
        }
        try:
            self.manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(_state_tree(state)), meta=ocp.args.JsonSave(meta)
                ),
                metrics=metrics,
            )
            self.manager.wait_until_finished()
            _record_files(self.directory / str(step))
        except Exception as error:  # disk full, permission denied, ... (Orbax wraps some)
            self._discard(step)
            cause = getattr(error, "strerror", None) or str(error).splitlines()[0]
            raise CheckpointError(
                f"{self.directory / str(step)}: cannot save the checkpoint ({cause}); training "
                "stopped. The earlier checkpoints are intact: fix this and run the same "
                "command to resume"
            ) from error
        return True

    def _discard(self, step: int) -> None:
        """Remove what a failed save of `step` left, so it cannot be taken for a checkpoint."""
        for path in self.directory.glob(f"{step}*"):
            if path.name == str(step) or path.name.startswith(f"{step}.orbax-checkpoint-tmp"):
                shutil.rmtree(path, ignore_errors=True)

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
    """The newest finished checkpoint's step in `directory`, or None."""
    steps = checkpoint_steps(directory)
    return steps[-1] if steps else None


def restore(directory: str | Path, template: TrainState, step: int | None = None) -> Restored:
    """Read checkpoint `step` (default: the latest) into the structure of `template`.

    `template` is a freshly created TrainState of the same model and optimizer
    (or its `jax.eval_shape`); its arrays only give shapes and dtypes. Every
    file is checked against the checkpoint's SHA256SUMS before Orbax reads it,
    and every restored array against its recorded sha256: what comes back is
    bit-exactly what was saved.

    Raises:
        FileNotFoundError: there is no finished checkpoint.
        DamagedCheckpoint: the checkpoint is not what was saved.
    """
    directory = Path(directory).absolute()
    if step is None:
        step = latest_step(directory)
        if step is None:
            raise FileNotFoundError(f"{directory}: no complete checkpoint")
    verify_files(directory, step)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _state_tree(template))
    try:
        options = ocp.CheckpointManagerOptions(create=False)
        with ocp.CheckpointManager(directory, options=options) as manager:
            restored = manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                ),
            )
        tree, meta = restored["state"], restored["meta"]
        progress = EpochProgress(meta["epoch"], meta["steps_done"], meta["losses"], meta["correct"],
                                 meta.get("metrics", {}))  # fmt: skip
        history = History.from_dict(meta["history"])
        recorded = meta["sha256"]
    except Exception as error:  # files intact, yet unreadable: another layout or version
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DamagedCheckpoint(directory, step, f"cannot be read: {first}") from None
    found = array_digests(tree)
    if found != recorded:
        wrong = sorted(k for k in set(found) | set(recorded) if found.get(k) != recorded.get(k))
        raise DamagedCheckpoint(directory, step, f"arrays differ from what was saved: {wrong[0]}")
    state = template.replace(params=tree["params"], opt_state=tree["opt_state"], step=tree["step"])
    if "batch_stats" in tree:
        state = state.replace(batch_stats=tree["batch_stats"])
    return Restored(step, state, progress, history, meta)


def restore_intact(
    directory: str | Path,
    template: TrainState,
    log: Callable[[str], None] = print,
    *,
    set_aside: bool = True,
) -> Restored | None:
    """Restore the newest intact checkpoint; set the damaged ones aside, saying so.

    A damaged checkpoint is moved to `DAMAGED_DIR` beside `directory` (kept for
    a person to look at, never used again), one line each through `log`. In a
    multi-process job only process 0 moves them (`set_aside=False` elsewhere).

    Returns:
        The restored checkpoint, or None when `directory` holds none at all.

    Raises:
        CheckpointError: there are checkpoints, but none is intact; nothing moved.
    """
    directory = Path(directory).absolute()
    steps = checkpoint_steps(directory)
    if not steps:
        return None
    damaged: dict[int, str] = {}
    restored = None
    for step in reversed(steps):
        try:
            restored = restore(directory, template, step)
            break
        except DamagedCheckpoint as error:
            damaged[step] = error.reason
    if restored is None:
        listed = "; ".join(f"step {step}: {reason}" for step, reason in damaged.items())
        raise CheckpointError(
            f"{directory}: no intact checkpoint to resume from ({listed}); "
            "pass --fresh to start over"
        )
    for step in steps:  # older ones too: the best checkpoint may be one of them
        if step < restored.step:
            try:
                verify_files(directory, step)
            except DamagedCheckpoint as error:
                damaged[step] = error.reason
    if not set_aside:
        return restored
    aside = directory.parent / DAMAGED_DIR
    for step, reason in sorted(damaged.items(), reverse=True):
        aside.mkdir(exist_ok=True)
        target = aside / str(step)
        for n in range(1, 1000):  # an earlier one of the same step may be there
            if not target.exists():
                break
            target = aside / f"{step}.{n}"
        (directory / str(step)).rename(target)
        log(f"checkpoint {step} is damaged ({reason}); moved it to {target}")
    return restored
