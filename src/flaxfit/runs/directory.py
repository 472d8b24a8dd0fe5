"""A run directory: config.json, history.json, metrics.csv and params.msgpack.

`train_run` is what `flaxfit train` does, as a library call: lock the
directory (one trainer at a time), check everything, load the data, then (and
only then) write into it and train, writing the history after every epoch and
the params at the end. Every file is written atomically and listed with its
sha256 in SHA256SUMS; `load_run` checks each file it reads against that list.
Params are msgpack (flax.serialization), never pickle.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization
from flax.training.train_state import TrainState

from flaxfit.data import Dataset, format_bytes, load_data, memory_line
from flaxfit.files import SUMS_FILE, IntegrityError, read_recorded, read_sums, write_recorded
from flaxfit.models.outputs import apply_function
from flaxfit.models.params import Lineage, check_patterns, select, transfer
from flaxfit.models.user import (
    ModelSpecError,
    is_nnx_class,
    load_class,
    parse_model_spec,
    source_file,
    source_sha256,
)
from flaxfit.runs.checkpoints import (
    CHECKPOINTS_DIR,
    DAMAGED_DIR,
    Checkpointer,
    DamagedCheckpoint,
    checkpoint_steps,
    host_copy,
    restore,
    restore_intact,
    verify_files,
)
from flaxfit.runs.config import TrainConfig
from flaxfit.runs.distributed import is_main_process
from flaxfit.runs.lock import LOCK_FILE, RunLock
from flaxfit.runs.manifest import MANIFEST_FILE, build_manifest, write_manifest
from flaxfit.runs.optim import make_optimizer
from flaxfit.training.augment import recipe_for
from flaxfit.training.callbacks import (
    HISTORY_FILE,
    METRICS_FILE,
    EarlyStopping,
    HistoryFiles,
    TensorBoard,
)
from flaxfit.training.history import History
from flaxfit.training.loop import TrainStep, fit, steps_per_epoch
from flaxfit.training.step import create_train_state, train_step

CONFIG_FILE = "config.json"
PARAMS_FILE = "params.msgpack"
BATCH_STATS_FILE = "batch_stats.msgpack"  # only for models with BatchNorm
TENSORBOARD_DIR = "tensorboard"
# predict.jaxexport is what `flaxfit export` writes by default: stale after --fresh.
RUN_FILES = (CONFIG_FILE, HISTORY_FILE, METRICS_FILE, PARAMS_FILE, BATCH_STATS_FILE, MANIFEST_FILE,
             "predict.jaxexport", SUMS_FILE)  # fmt: skip


class RunError(ValueError):
    """A run directory is missing, incomplete, or would be overwritten."""


@dataclass
class Run:
    """A run as read back from its directory.

    `params` (and `batch_stats`, for models with BatchNorm) are plain nested dicts;
    `apply_fn(run.variables, x)` computes the model, Linen or NNX alike.
    """

    directory: Path
    config: TrainConfig
    history: History
    params: Any
    batch_stats: Any = None

    @functools.cached_property
    def model(self) -> Any:
        """The run's model, rebuilt from its config (a user class from its source file)."""
        return self.config.make_model(refuse_under=self.directory)

    @property
    def apply_fn(self) -> Callable[..., Any]:
        """`model.apply` for Linen, the NNX module behind the same call for NNX."""
        return apply_function(self.model)

    @property
    def variables(self) -> dict[str, Any]:
        """The variables as `apply_fn` takes them: "params", and "batch_stats" if any."""
        out = {"params": self.params}
        if self.batch_stats is not None:
            out["batch_stats"] = self.batch_stats
        return out


def save_params(path: str | os.PathLike, params: Any) -> Path:
    """Write a params dict as msgpack, atomically, its sha256 in SHA256SUMS beside it."""
    return write_recorded(path, serialization.msgpack_serialize(host_copy(params)))


def load_params(path: str | os.PathLike, template: Any) -> Any:
    """Read msgpack params and check they have `template`'s paths, shapes and dtypes."""
    path = Path(path)
    try:
        data = read_recorded(path, missing="no such file (did the run finish?)")
    except IntegrityError as error:
        raise RunError(str(error)) from None
    try:
        restored = serialization.msgpack_restore(data)
    except Exception as error:  # msgpack raises several unrelated types
        raise RunError(f"{path}: not a flaxfit params file ({error})") from None
    expected = jax.tree_util.tree_flatten_with_path(template)[0]
    found = dict(jax.tree_util.tree_flatten_with_path(restored)[0])
    if set(found) != {p for p, _ in expected}:
        raise RunError(f"{path}: params do not match the model in {CONFIG_FILE}")
    for key, like in expected:
        value = found[key]
        if (
            not isinstance(value, np.ndarray)
            or value.shape != like.shape
            or value.dtype != like.dtype
        ):
            where = jax.tree_util.keystr(key)
            raise RunError(f"{path}: {where} should be {like.dtype}{list(like.shape)}")
    return restored


def _read_json(path: Path) -> Any:
    """A run file's JSON, checked against SHA256SUMS first."""
    try:
        return json.loads(
            read_recorded(path, missing=f"no such file; is {path.parent} a flaxfit run?")
        )
    except IntegrityError as error:
        raise RunError(str(error)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunError(f"{path}: not valid JSON ({error})") from None


def check_model_source(config: TrainConfig, directory: Path, *, allow_changed: bool) -> None:
    """For a run of the user's own model class: the source must be where it was, and unchanged
    since training (unless `allow_changed`), and never inside the run directory.

    Raises:
        RunError: one line naming the file and what to do.
    """
    if not config.user_model:
        return
    try:
        spec = parse_model_spec(config.model)
        path = source_file(spec)
        if path.is_relative_to(directory.resolve()):
            raise RunError(
                f"{directory}: its model source {path} lies inside the run directory; "
                "flaxfit does not run code stored in a run"
            )
        digest = source_sha256(spec)
    except ModelSpecError as error:
        raise RunError(f"{directory}: {error}") from None
    if config.model_sha256 and digest != config.model_sha256 and not allow_changed:
        raise RunError(
            f"{path} has changed since {directory} was trained (sha256 "
            f"{config.model_sha256[:12]}... then, {digest[:12]}... now); restore it, or pass "
            "--allow-changed-model to use it as it is now"
        )


def load_run(
    directory: str | os.PathLike, *, with_params: bool = True, allow_changed_model: bool = False
) -> Run:
    """Read a run directory written by `train_run` (or `flaxfit train`).

    Args:
        with_params: also read params.msgpack (and batch_stats.msgpack), checked
            against the model's shapes.
        allow_changed_model: for a run of your own model class, accept a source file
            that changed since training (by default that is refused: the params may
            no longer mean what they meant).

    Raises:
        RunError: a missing or damaged file, or a changed model source.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise RunError(f"{directory}: no such run directory")
    try:
        config = TrainConfig.from_dict(_read_json(directory / CONFIG_FILE))
    except (TypeError, ValueError) as error:
        if isinstance(error, RunError):
            raise
        raise RunError(f"{directory / CONFIG_FILE}: {error}") from None
    history_path = directory / HISTORY_FILE
    history = History()
    if history_path.exists() or HISTORY_FILE in _recorded(directory):
        try:
            history = History.from_dict(_read_json(history_path))
        except (TypeError, KeyError, ValueError) as error:
            if isinstance(error, RunError):
                raise
            raise RunError(f"{history_path}: not a flaxfit history ({error!r})") from None
    check_model_source(config, directory, allow_changed=allow_changed_model)
    params = batch_stats = None
    if with_params:
        # Only paths, shapes and dtypes are compared: no need to initialise real weights.
        template = _state_template(config, directory)
        params = load_params(directory / PARAMS_FILE, template.params)
        if getattr(template, "batch_stats", None) is not None:
            batch_stats = load_params(directory / BATCH_STATS_FILE, template.batch_stats)
    return Run(directory, config, history, params, batch_stats)


def _recorded(directory: Path) -> set[str]:
    try:
        return set(read_sums(directory))
    except IntegrityError as error:
        raise RunError(str(error)) from None


def config_differences(saved: TrainConfig, wanted: TrainConfig) -> list[str]:
    """'field: saved -> wanted' for every field that differs (the data's facts only
    where `wanted` has them: flags do not)."""
    old, new = saved.to_dict(), wanted.to_dict()
    return [
        f"{key}: {old[key]!r} -> {new[key]!r}"
        for key in old
        if old[key] != new[key] and not (key in TrainConfig.DATA_FACTS and new[key] is None)
    ]


def device_memory_available() -> int | None:
    """Bytes free on the first device (its allocator's limit less what is in use), or, on a
    CPU, the machine's available physical memory; None where neither can be read."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # not every backend reports memory
        stats = {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_in_memory(split: Any) -> None:
    """Fail in one line, before anything is copied, if the training set cannot fit on a device.

    Raises:
        RunError: naming the size needed and the memory free.
    """
    available = device_memory_available()
    if available is not None and split.nbytes > available:
        raise RunError(
            f"the training set needs {format_bytes(split.nbytes)} on each device but only "
            f"{format_bytes(available)} is free; use a smaller --image-size or fewer pictures"
        )


def _make_model(config: TrainConfig) -> Any:
    try:
        return config.make_model()
    except ModelSpecError as error:
        raise RunError(str(error)) from None


def _record_data(config: TrainConfig, dataset: Dataset, resumed: Path | None) -> TrainConfig:
    """`config` with the data's image shape and class names; a resumed run's must match."""
    config = config.record_data(dataset.image_shape, dataset.class_names)
    if resumed is not None:
        saved = TrainConfig.from_dict(_read_json(resumed / CONFIG_FILE))
        differences = config_differences(saved, config)
        if differences and saved.image_shape is not None:
            raise RunError(
                f"{resumed}: the data is not what the run started with ({'; '.join(differences)});"
                " pass the same data to continue it, or --fresh to start over"
            )
    return config


def check_run_dir(directory: Path, config: TrainConfig, *, fresh: bool) -> bool:
    """Whether `directory` holds this config's run to continue (True) or is free (False).

    Raises RunError for a file in the way, a non-empty directory that is not a
    flaxfit run, or a run whose config differs (unless `fresh`).
    """
    if directory.exists() and not directory.is_dir():
        raise RunError(f"{directory}: exists and is not a directory")
    if not directory.exists() or all(p.name == LOCK_FILE for p in directory.iterdir()):
        return False
    if not (directory / CONFIG_FILE).exists():
        leftovers = (SUMS_FILE, CHECKPOINTS_DIR, HISTORY_FILE, PARAMS_FILE)
        if not any((directory / name).exists() for name in leftovers):
            raise RunError(f"{directory}: not empty and not a flaxfit run; choose another --out")
        if not fresh:
            raise RunError(
                f"{directory / CONFIG_FILE}: no such file, but the rest of a run is there; "
                "put it back to continue, or pass --fresh to start over"
            )
    if fresh:
        return False
    try:
        saved = TrainConfig.from_dict(_read_json(directory / CONFIG_FILE))
    except (TypeError, ValueError) as error:
        raise RunError(f"{directory / CONFIG_FILE}: {error}; pass --fresh to start over") from None
    differences = config_differences(saved, config)
    if differences:
        raise RunError(
            f"{directory}: the flags differ from the run's {CONFIG_FILE} "
            f"({'; '.join(differences)}); pass the same flags to continue it, "
            "or --fresh to start over"
        )
    return True


def with_model_source(config: TrainConfig) -> TrainConfig:
    """`config` with the sha256 of its user model's source filled in (and its api from
    the class); registry models are returned as they are.

    Raises:
        RunError: the model file or module cannot be found.
    """
    if not config.user_model or config.model_sha256:
        return config
    try:
        spec = parse_model_spec(config.model)
        digest = source_sha256(spec)
        api = "nnx" if is_nnx_class(load_class(spec)) else "linen"
    except ModelSpecError as error:
        raise RunError(str(error)) from None
    return dataclasses.replace(config, model_sha256=digest, api=api)


def _silent(message: str) -> None:
    del message


class _StopAfterEpoch:
    """Callback: stop (resumably) after a given epoch, as an interruption would."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, state: TrainState, metrics: dict[str, float]) -> bool:
        return epoch >= self.epoch


def _param_shapes(config: TrainConfig) -> Any:
    """The params tree of `config`'s model as ShapeDtypeStructs, without computing weights."""
    return _state_template(config).params


def _check_init_flags(config: TrainConfig, resume: bool) -> None:
    """Fail on a bad --init-from, --only or --freeze before any data is read."""
    if not (config.init_from or config.freeze):
        return
    shapes = _param_shapes(config)
    check_patterns(shapes, config.freeze, "--freeze")
    check_patterns(shapes, config.init_only, "--only")
    if config.init_from and not resume:
        try:
            load_run(config.init_from, with_params=False)
        except RunError as error:
            raise RunError(f"--init-from: {error}") from None


def _initial_state(
    state: TrainState,
    config: TrainConfig,
    init_params: Any,
    lineage: Lineage,
    log: Callable[[str], None],
) -> TrainState:
    """The state a new run starts from: transferred or given params, frozen arrays recorded."""
    if config.init_from and init_params is not None:
        raise RunError("pass either config.init_from or init_params, not both")
    params = state.params
    if config.init_from:
        source = load_run(config.init_from)
        params, report = lineage.transfer(
            source.params, params, only=config.init_only, strict=config.init_strict,
            source_run=str(config.init_from),
        )  # fmt: skip
        log(f"init from {config.init_from}: " + report.format("\n  "))
        if source.batch_stats is not None and getattr(state, "batch_stats", None) is not None:
            # BatchNorm's running averages belong to the params they were measured with.
            only = [p for p in config.init_only if select(state.batch_stats, p)]
            if only or not config.init_only:
                stats, _ = transfer(source.batch_stats, state.batch_stats, only=only)
                state = state.replace(batch_stats=jax.tree.map(jnp.asarray, stats))
    elif init_params is not None:
        params, _ = lineage.transfer(init_params, params, strict=True)
    if config.freeze:
        lineage.freeze(params, config.freeze)
        frozen = select(params, *config.freeze)
        log(f"frozen {len(frozen)} arrays ({sum(a.size for a in frozen.values()):,} values): "
            f"{', '.join(frozen)}")  # fmt: skip
    if params is state.params:
        return state
    params = jax.tree.map(jnp.asarray, params)
    return state.replace(params=params, opt_state=state.tx.init(params))


def train_run(
    config: TrainConfig,
    directory: str | os.PathLike,
    *,
    fresh: bool = False,
    dataset: Dataset | None = None,
    verbose: bool = True,
    should_stop: Callable[[], bool] | None = None,
    stop_after_epoch: int | None = None,
    keep: int = 3,
    checkpoint_every: int = 1,
    best_by: str | None = None,
    tensorboard: bool = False,
    callbacks: Sequence[object] = (),
    train_step: TrainStep = train_step,
    log: Callable[[str], None] = print,
    init_params: Any = None,
    lineage: Lineage | None = None,
    timings: dict[str, float] | None = None,
) -> Run:
    """Train `config` into `directory`, continuing the run already there if any.

    Nothing is written until the config, the directory and the data have all
    been checked, so a bad flag or a corrupt data dir leaves no trace (the
    lock's directory and file are removed again). A run
    that finished is not trained again; one that stopped continues from its
    latest checkpoint, bit-exactly.

    A new run starts from fresh params, from `config.init_from`'s params
    (matched by path, see `flaxfit.models.params.transfer`), or from `init_params`
    (every array checked against the model); `lineage` records edits made to
    those before, and goes into the manifest with the transfer and freeze.

    `timings` (a dict, e.g. {"imports": 2.1} as the `flaxfit` command measures
    it) becomes this process's entry in the run's `History.sessions`: train_run
    adds "data" (loading the dataset), fit() "compile", "training" and
    "evaluation". A finished run is not trained again and `timings` is left as it was.

    While it runs, the directory is locked (`flaxfit.runs.lock.RunLock`): a second
    trainer on it fails at once, naming this one. On resume, a damaged newest
    checkpoint is set aside with one line through `log`, and training
    continues from the newest intact one.

    Raises:
        RunError: the directory holds another run or something else, or one of
            its files is damaged.
        RunLockedError: another process is training into `directory`.
        CheckpointError: no intact checkpoint is left, or a save failed.
        TrainingInterrupted: `should_stop()` became true; a checkpoint was saved.
        NonFiniteError: the loss or params became NaN/Inf; the last good
            checkpoint stays the latest.
    """
    directory = Path(directory)
    config = with_model_source(config)
    # In a multi-process job every process trains; only process 0 writes files, locks
    # and talks.
    main = is_main_process()
    verbose = verbose and main
    if not main:
        log = _silent
    lock = RunLock(directory).acquire() if main else None
    try:
        resume = check_run_dir(directory, config, fresh=fresh)
        if resume and (directory / PARAMS_FILE).exists():  # finished: no data or model needed
            log(f"{directory}: the run is complete; pass --fresh to train it again")
            return load_run(directory)
        if lock is not None:  # it will train: say who does, for a second trainer's message
            lock.announce()
        _check_init_flags(config, resume)
        # Your own class fails at once on a bad option, before the data loads; a registry
        # model is built after it, from the data's shape and classes.
        model = _make_model(config) if config.user_model else None
        timings = {} if timings is None else timings
        if dataset is None:
            loading = time.perf_counter()
            dataset = load_data(
                config.dataset, config.data_dir, image_size=config.image_size, verbose=verbose
            )
            timings["data"] = time.perf_counter() - loading
        config = _record_data(config, dataset, directory if resume else None)
        # Raises (before anything is written) if the batch is larger than the data.
        steps = steps_per_epoch(len(dataset.train), config.batch_size)
        log(memory_line(dataset.train, devices=jax.device_count()))
        check_fits_in_memory(dataset.train)

        if model is None:
            model = _make_model(config)
        state = create_train_state(
            model, jax.random.key(config.seed), make_optimizer(config, steps),
            input_shape=(1, *config.input_shape),
        )  # fmt: skip
        history, start = History(), None
        checkpoints = directory / CHECKPOINTS_DIR
        lineage = Lineage(list(lineage.records) if lineage is not None else [])
        # Damaged checkpoints are set aside (one line each) only by process 0; the others
        # skip them and read the same intact one.
        restored = restore_intact(checkpoints, state, log, set_aside=main) if resume else None
        if restored is not None:
            state, start, history = restored.state, restored.progress, restored.history
            log(
                f"resuming {directory} from step {restored.step} "
                f"(epoch {start.epoch}, {start.steps_done} of {steps} steps done)"
            )
        else:
            state = _initial_state(state, config, init_params, lineage, log)
        if main and not resume and directory.exists():  # --fresh over an old run: clear it
            for name in RUN_FILES:
                (directory / name).unlink(missing_ok=True)
            shutil.rmtree(checkpoints, ignore_errors=True)
            shutil.rmtree(directory / DAMAGED_DIR, ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)
        if main:
            write_recorded(directory / CONFIG_FILE, config.to_json())
        if main and not (directory / MANIFEST_FILE).exists():  # a resumed run keeps its first one
            manifest = build_manifest(config, dataset, state, train_step=train_step,
                                      command=sys.argv, lineage=lineage.records)  # fmt: skip
            write_manifest(directory, manifest)

        default_best = config.early_stop_monitor if config.early_stop_patience else "test_accuracy"
        checkpointer = Checkpointer(
            checkpoints, history=history, seed=config.seed, num_examples=len(dataset.train),
            config=config.to_dict(), keep=keep, every_epochs=checkpoint_every,
            monitor=best_by or default_best,
            stream=sys.stdout if verbose else None,
        )  # fmt: skip
        run_callbacks = [HistoryFiles(directory, history)] if main else []
        run_callbacks += [checkpointer, *callbacks]
        if config.early_stop_patience:
            # Decides when to stop (counting epochs before a resume too); the best
            # params come back from the best checkpoint, which survives a resume.
            run_callbacks.append(
                EarlyStopping(
                    config.early_stop_monitor,
                    config.early_stop_patience,
                    config.early_stop_min_delta,
                    restore_best=False,
                    history=history,
                )  # fmt: skip
            )
        if tensorboard and main:
            run_callbacks.append(TensorBoard(directory / TENSORBOARD_DIR))
        if stop_after_epoch is not None:
            run_callbacks.append(_StopAfterEpoch(stop_after_epoch))
        try:
            state, history = fit(
                state, dataset.train, dataset.test,
                epochs=config.epochs, batch_size=config.batch_size, seed=config.seed,
                steps_per_dispatch=config.steps_per_dispatch,
                eval_batch_size=config.eval_batch_size,
                callbacks=run_callbacks, history=history, start=start, train_step=train_step,
                verbose=verbose, should_stop=should_stop, num_classes=config.num_classes,
                augment=recipe_for(config.input_shape) if config.augment else None,
                label_smoothing=config.label_smoothing,
                timings=timings,
            )  # fmt: skip
            finished = stop_after_epoch is None or len(history) >= config.epochs
            if finished and config.early_stop_patience:
                best = checkpointer.manager.best_step()
                if best is not None and best != int(state.step):
                    log(
                        f"early stopping: restoring the params of the best checkpoint (step {best})"
                    )
                    best_state = restore(checkpoints, state, best).state
                    state = state.replace(params=best_state.params,
                                          batch_stats=getattr(best_state, "batch_stats", None))
        finally:
            checkpointer.close()
        if finished and main:
            if getattr(state, "batch_stats", None) is not None:  # first: params mark "finished"
                save_params(directory / BATCH_STATS_FILE, state.batch_stats)
            save_params(directory / PARAMS_FILE, state.params)
        batch_stats = getattr(state, "batch_stats", None)
        return Run(directory, config, history, host_copy(state.params),
                   None if batch_stats is None else host_copy(batch_stats))  # fmt: skip
    finally:
        if lock is not None:
            lock.release()


@dataclass
class CheckedFile:
    """One file or checkpoint of a run, as `check_run` found it: `problem` is None if intact."""

    name: str
    problem: str | None


def _state_template(config: TrainConfig, directory: Path | None = None) -> TrainState:
    """`config`'s TrainState as shapes and dtypes. The optimizer's state does not depend
    on the schedule's length; 1000 steps per epoch keeps every schedule's warm-up valid."""
    try:
        model = config.make_model(refuse_under=directory)
    except ModelSpecError as error:
        raise RunError(f"{directory or 'run'}: {error}") from None
    tx = make_optimizer(config, 1000)
    shape = (1, *config.input_shape)
    return jax.eval_shape(lambda: create_train_state(model, jax.random.key(0), tx,
                                                     input_shape=shape))  # fmt: skip


def check_run(directory: str | os.PathLike) -> list[CheckedFile]:
    """Verify every file and checkpoint of a run against the sha256s recorded for it.

    Run files are checked against the run's SHA256SUMS; each checkpoint's files
    against its own SHA256SUMS, then restored and its arrays compared with their
    recorded digests (this needs an intact config.json).

    Raises:
        RunError: `directory` is not a run directory at all.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise RunError(f"{directory}: no such run directory")
    results, config = [], None
    try:
        listed = _recorded(directory)
        missing = None if (directory / SUMS_FILE).exists() else "missing"
        results.append(CheckedFile(SUMS_FILE, missing))
    except RunError as error:
        results.append(CheckedFile(SUMS_FILE, str(error).split(": ", 1)[-1]))
        listed = set()
    names = listed | {n for n in RUN_FILES if n != SUMS_FILE and (directory / n).exists()}
    names -= {"predict.jaxexport"}  # `flaxfit export`'s output, not part of the run
    if not (directory / CONFIG_FILE).exists() and CONFIG_FILE not in names:
        raise RunError(f"{directory}: no {CONFIG_FILE}; is it a flaxfit run?")
    names.add(CONFIG_FILE)
    for name in sorted(names):
        try:
            read_recorded(directory / name)
            results.append(CheckedFile(name, None))
        except IntegrityError as error:
            results.append(CheckedFile(name, str(error).split(": ", 1)[-1]))
    if all(r.problem is None for r in results if r.name in (CONFIG_FILE, SUMS_FILE)):
        with contextlib.suppress(RunError, TypeError, ValueError):
            config = TrainConfig.from_dict(_read_json(directory / CONFIG_FILE))
    checkpoints = directory / CHECKPOINTS_DIR
    template = _state_template(config) if config is not None else None
    for step in checkpoint_steps(checkpoints):
        name = f"{CHECKPOINTS_DIR}/{step}"
        try:
            if template is None:  # without the model, the arrays cannot be read back
                verify_files(checkpoints, step)
                name += " (its files; arrays not read without an intact config.json)"
            else:
                restore(checkpoints, template, step)
            results.append(CheckedFile(name, None))
        except DamagedCheckpoint as error:
            results.append(CheckedFile(name, error.reason))
    return results
