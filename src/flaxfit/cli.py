"""The `flaxfit` command: parse flags, call the library, print results.

    flaxfit train --model cnn1 --epochs 3 --batch-size 128 --lr 1e-3 --seed 0 --out runs/NAME
    flaxfit evaluate --run runs/NAME
    flaxfit predict --run runs/NAME digit.png [more.png ...]
    flaxfit serve --run runs/NAME [--host 127.0.0.1] [--port 8000]
    flaxfit eject --run runs/NAME -o train_NAME.py   # or --config FILE / train's flags

Any bad flag or input ends with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from flaxfit.runs.config import TrainConfig

USAGE_ERROR = 2
NON_FINITE = 3
_LOADED = time.perf_counter()  # where seconds_since_process_start() counts from without /proc


def seconds_since_process_start() -> float:
    """Wall seconds since this process started, interpreter start-up included.

    Linux says when a process started in /proc/self/stat (in clock ticks since
    boot, 10 ms); elsewhere this counts from the import of this module.
    """
    try:
        with open("/proc/self/stat") as file:  # the name may hold spaces: split after it
            fields = file.read().rpartition(")")[2].split()
        with open("/proc/uptime") as file:
            uptime = float(file.read().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _LOADED


_process_started: float | None = time.perf_counter() - seconds_since_process_start()


def _command_started() -> float:
    """When this command began, on the perf_counter clock: for the first command of a
    process its start (interpreter and imports included), for a later one in the same
    process (a test, a notebook) the call of main()."""
    global _process_started
    started, _process_started = _process_started, None
    return started if started is not None else time.perf_counter()


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (no usage block) and exits with 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _existing_dir(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: no such directory")
    return path


def _model_name(text: str) -> str:
    from flaxfit.models.names import MODEL_NAMES
    from flaxfit.models.user import ModelSpecError, is_model_spec, parse_model_spec

    if is_model_spec(text):
        try:
            parse_model_spec(text)
        except ModelSpecError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    elif text not in MODEL_NAMES:
        raise argparse.ArgumentTypeError(
            f"unknown model {text!r}; choose one of {', '.join(sorted(MODEL_NAMES))}, or your own "
            "class as path/to/model.py:ClassName or package.module:ClassName"
        )
    return text


def _dataset_spec(text: str) -> str:
    from flaxfit.data import DataError, parse_dataset_spec

    try:
        return str(parse_dataset_spec(text))
    except DataError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_config_flags(command: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (the run's config), plus --config FILE."""
    from flaxfit.models.names import APIS
    from flaxfit.runs.config import DTYPES, MONITORS, OPTIMIZERS, RECIPES, SCHEDULES, TrainConfig

    # The fields' defaults, not TrainConfig(): checking a config imports numpy and Flax,
    # which `--help` should not wait for.
    defaults = argparse.Namespace(**{f.name: f.default for f in dataclasses.fields(TrainConfig)})
    add = command.add_argument
    add("--config", type=Path, help="a config.json to start from; flags given override it")
    add("--recipe", choices=RECIPES, default=None,
        help="a named set of the values below (fast: cnn1 to 99%% on MNIST in 2 epochs); "
             "flags given override it; a --config file (a whole config) replaces it")  # fmt: skip
    add("--model", type=_model_name, default=defaults.model,
        help="softmax, cnn1, cnn2, mlp, or your own class: path/to/model.py:ClassName or "
        "package.module:ClassName (Linen or NNX)")  # fmt: skip
    add("--api", choices=APIS, default=defaults.api,
        help="the registry models in Flax Linen or NNX (your own class decides for itself)")
    add("--model-arg", dest="model_args", action="append", default=[], metavar="NAME=VALUE",
        help="an option of your own model class (JSON value, e.g. features=32); repeatable")
    add("--dataset", type=_dataset_spec, default=defaults.dataset,
        help="mnist, fashion_mnist, cifar10, folder:DIR (DIR/train/<class>/*, "
             "DIR/test/<class>/*) or npz:FILE (x_train, y_train, x_test, y_test)")  # fmt: skip
    add("--data-dir", type=_existing_dir,
        help="a local copy of the named dataset: MNIST's 4 IDX files, CIFAR-10's "
             "archive or .bin files")  # fmt: skip
    add("--image-size", type=_positive_int, nargs=2, metavar=("H", "W"),
        help="folder: resize every picture to H x W")  # fmt: skip
    add("--augment", action="store_true",
        help="random shifts (digits) or crop + flip (colour pictures), on the device")
    add("--epochs", type=_positive_int, default=defaults.epochs)
    add("--batch-size", type=_positive_int, default=defaults.batch_size)
    add("--lr", type=_positive_float, default=defaults.lr, help="(peak) learning rate")
    add("--schedule", choices=SCHEDULES, default=defaults.schedule, help="learning-rate schedule")
    add("--warmup-epochs", type=float, default=defaults.warmup_epochs,
        help="warmup_cosine: epochs of linear warm-up")  # fmt: skip
    add("--decay-rate", type=float, default=defaults.decay_rate,
        help="exponential: factor per epoch")  # fmt: skip
    add("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer)
    add("--momentum", type=float, default=defaults.momentum, help="sgd momentum")
    add("--b2", type=float, default=defaults.b2,
        help="adam/adamw: decay of the squared-gradient average (optax's b2)")  # fmt: skip
    add("--weight-decay", type=float, default=defaults.weight_decay)
    add("--clip-norm", type=_positive_float, help="clip gradients to this global norm")
    add("--label-smoothing", type=float, default=defaults.label_smoothing,
        help="train toward (1 - S) * one-hot + S / classes (0: off; 0.1 is usual)")  # fmt: skip
    add("--seed", type=int, default=defaults.seed)
    add("--steps-per-dispatch", type=_positive_int, help="train steps per compiled call (64)")
    add("--eval-batch-size", type=_positive_int, default=defaults.eval_batch_size)
    add("--dtype", choices=DTYPES, default=defaults.dtype,
        help="compute dtype; bfloat16 keeps float32 params and loss (mixed precision)")  # fmt: skip
    add("--early-stop-patience", type=int, default=defaults.early_stop_patience,
        help="stop after this many epochs without improvement (0: off)")  # fmt: skip
    add("--early-stop-monitor", choices=MONITORS, default=defaults.early_stop_monitor)
    add("--early-stop-min-delta", type=float, default=defaults.early_stop_min_delta)
    add("--init-from", help="start from this run's params, matched by path (e.g. runs/A)")
    add(
        "--only",
        dest="init_only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="--init-from: take only paths matching this glob (e.g. 'Conv_0/*'); repeatable",
    )
    add(
        "--init-strict",
        action="store_true",
        help="--init-from: fail unless every selected path is there with the same shape",
    )
    add("--freeze", action="append", default=[], metavar="PATTERN",
        help="keep params matching this glob fixed (e.g. 'Conv_*/*'); repeatable")  # fmt: skip


#: The commands that compile XLA programs: they read and write the compilation cache.
COMPILING = ("train", "verify-resume", "evaluate", "predict", "serve", "export", "plot",
             "params", "summary")  # fmt: skip


def _add_compile_cache_flag(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--no-compile-cache", action="store_true",
        help="compile every program afresh instead of reusing JAX's compilation cache in "
             "$FLAXFIT_CACHE/xla (also: FLAXFIT_NO_COMPILE_CACHE=1)",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """Every command and flag; imports only light modules, so `--help` answers at once."""
    from flaxfit import __version__
    from flaxfit.models.names import MODEL_NAMES
    from flaxfit.runs.config import MONITORS

    parser = _Parser(prog="flaxfit", description="Train and use the models of 'JAX / Flax 入門'.")
    parser.add_argument("--version", action="version", version=f"flaxfit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train a model into a run directory")
    _add_config_flags(train)
    train.add_argument("--out", type=Path, help="run directory (default: runs/MODEL)")
    train.add_argument(
        "--fresh", action="store_true", help="start over instead of continuing the run in --out"
    )
    train.add_argument("--tensorboard", action="store_true",
                       help="also log to RUN/tensorboard (tensorboardX event files)")  # fmt: skip
    train.add_argument("--checkpoint-every", type=_positive_int, default=1,
                       help="save a checkpoint every N epochs")  # fmt: skip
    train.add_argument("--best-by", choices=MONITORS,
                       help="metric that picks the best checkpoint (default: test_accuracy, "
                            "or the early-stopping monitor)")  # fmt: skip
    train.add_argument("--keep", type=_positive_int, default=3,
                       help="latest checkpoints to keep (and the best)")  # fmt: skip
    train.add_argument("--stop-after-epoch", type=_positive_int,
                       help="stop (resumably) after this epoch")  # fmt: skip
    train.add_argument("--quiet", action="store_true", help="no progress output")
    train.add_argument("--distributed", action="store_true",
                       help="join a multi-process job (jax.distributed) first")  # fmt: skip
    train.add_argument(
        "--coordinator", help="host:port of process 0 (else JAX_COORDINATOR_ADDRESS)"
    )
    train.add_argument("--num-processes", type=_positive_int, help="else JAX_NUM_PROCESSES")
    train.add_argument("--process-id", type=int, help="0..N-1 (else JAX_PROCESS_ID)")

    verify = commands.add_parser(
        "verify-resume",
        help="train unbroken and stopped+resumed in a new process; compare bit for bit",
    )
    _add_config_flags(verify)
    verify.add_argument("--stop-after", type=_positive_int, default=1,
                        help="epochs before the break (default 1)")  # fmt: skip
    verify.add_argument("--work-dir", type=Path, help="keep both runs here (default: a temp dir)")
    eject = commands.add_parser(
        "eject",
        help="one plain JAX/Flax/Optax file that trains a run (or a config) as fit() does",
    )
    eject.add_argument("--run", type=Path, help="the run to eject (else: --config, train's flags)")
    _add_config_flags(eject)
    eject.add_argument("-o", "--out", type=Path, required=True, help="the .py file to write")
    eject.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    parser.config_parsers = {"train": train, "verify-resume": verify, "eject": eject}  # main()

    check = commands.add_parser(
        "check", help="verify every file and checkpoint of a run against its recorded sha256s"
    )
    check.add_argument("--run", type=_existing_dir, required=True)

    evaluate = commands.add_parser("evaluate", help="test accuracy of a run, overall and per class")
    evaluate.add_argument("--run", type=_existing_dir, required=True)
    evaluate.add_argument("--allow-changed-model", action="store_true",
                        help="use your model's source even if it changed since training")
    evaluate.add_argument("--data-dir", type=_existing_dir, help="override the run's data")

    diff = commands.add_parser(
        "diff-runs", help="what differs between two runs: code, libraries, platform, data, config"
    )
    diff.add_argument("run_a", type=_existing_dir)
    diff.add_argument("run_b", type=_existing_dir)

    # The digit pad (flaxfit.tools.serve): a local web page to draw digits for the model,
    # or to upload pictures to a model trained on other pictures.
    serve = commands.add_parser(
        "serve", help="a web page to draw digits (or upload pictures) and watch the model read them"
    )
    serve.add_argument("--run", type=_existing_dir, required=True)
    serve.add_argument("--allow-changed-model", action="store_true",
                        help="use your model's source even if it changed since training")
    serve.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1: this machine only")
    serve.add_argument("--port", type=_port, default=8000, help="0 picks a free port")

    plot = commands.add_parser("plot", help="PNGs and a self-contained report.html of a run")
    plot.add_argument("--run", type=_existing_dir, required=True)
    plot.add_argument("--allow-changed-model", action="store_true",
                        help="use your model's source even if it changed since training")
    plot.add_argument("--out", type=Path, help="where to write (default: RUN/plots)")
    plot.add_argument("--image-index", type=int, default=0,
                      help="test image for the feature maps and probabilities")  # fmt: skip
    plot.add_argument("--data-dir", type=_existing_dir, help="override the run's data")

    demo = commands.add_parser("demo", help="the deck's JAX demos: grad (3-D plot), jit (timing)")
    demo.add_argument("which", choices=("grad", "jit"))
    demo.add_argument("--out", type=Path, default=Path("grad.png"), help="grad: the PNG to write")
    demo.add_argument("--calls", type=_positive_int, default=200, help="jit: calls to time")

    summary = commands.add_parser(
        "summary", help="a model's layers: shapes, params and FLOPs; the cost of a train step"
    )
    summary.add_argument("--model", choices=sorted(MODEL_NAMES), default="cnn1")
    summary.add_argument("--batch-size", type=_positive_int, default=128)

    params = commands.add_parser("params", help="every params array of a run: shape and statistics")
    params.add_argument("--run", type=_existing_dir, required=True)
    params.add_argument("--allow-changed-model", action="store_true",
                        help="use your model's source even if it changed since training")
    params.add_argument("--select", action="append", default=[], metavar="PATTERN",
                        help="only paths matching this glob; repeatable")  # fmt: skip

    export = commands.add_parser(
        "export", help="the run's prediction function as a file that needs only JAX"
    )
    export.add_argument("--run", type=_existing_dir, required=True)
    export.add_argument("--allow-changed-model", action="store_true",
                        help="use your model's source even if it changed since training")
    export.add_argument("--format", choices=("stablehlo", "onnx"), default="stablehlo")
    export.add_argument("--out", type=Path, help="file to write (default: RUN/predict.jaxexport)")

    predict = commands.add_parser("predict", help="read digits from pictures with a run's model")
    predict.add_argument("--run", type=_existing_dir, required=True)
    predict.add_argument("--allow-changed-model", action="store_true",
                        help="use your model's source even if it changed since training")
    predict.add_argument("images", nargs="+", type=Path, help="PNG files, any size, RGB or gray")
    predict.add_argument(
        "--no-center", action="store_true", help="resize only; skip MNIST-style crop and centring"
    )
    for name in COMPILING:
        _add_compile_cache_flag(commands.choices[name])
    return parser


def _config_from_args(args: argparse.Namespace) -> TrainConfig:
    from flaxfit.models.user import parse_model_args
    from flaxfit.runs.config import TrainConfig

    values = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if hasattr(args, f.name)  # model_sha256 is not a flag: it is read from the source
    }
    values["model_args"] = parse_model_args(args.model_args)
    values["data_dir"] = str(args.data_dir) if args.data_dir else None
    values["init_from"] = str(args.init_from) if args.init_from else None
    return TrainConfig(**values)


def _resume_command(argv: Sequence[str]) -> str:
    """The same command without the flags that would restart or stop it again."""
    import shlex

    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--fresh" or arg.startswith("--stop-after-epoch="):
            continue
        elif arg == "--stop-after-epoch":
            skip = True
        else:
            kept.append(arg)
    return shlex.join(["flaxfit", *kept])


def _train(args: argparse.Namespace) -> int:
    from flaxfit.runs.directory import train_run
    from flaxfit.runs.signals import EXIT_CODES, StopRequest
    from flaxfit.training.history import format_session
    from flaxfit.training.loop import NonFiniteError, TrainingInterrupted

    # Python, JAX, Flax and the flag checks are loaded: the rest is the run's own time.
    timings = {"imports": time.perf_counter() - args.started}

    config = _config_from_args(args)
    out = args.out or Path("runs") / config.model
    if args.distributed:
        from flaxfit.runs.distributed import initialize

        initialize(args.coordinator, args.num_processes, args.process_id)
    try:
        with StopRequest() as stop:
            run = train_run(
                config, out, fresh=args.fresh, verbose=not args.quiet, should_stop=stop,
                stop_after_epoch=args.stop_after_epoch, keep=args.keep,
                checkpoint_every=args.checkpoint_every, tensorboard=args.tensorboard,
                best_by=args.best_by, timings=timings,
            )  # fmt: skip
    except TrainingInterrupted as interrupted:
        print(
            f"flaxfit train: {_signal_name(stop.signum)}: stopped at epoch "
            f"{interrupted.progress.epoch}, step {interrupted.progress.steps_done}; "
            f"checkpoint saved in {out}/checkpoints\n"
            f"resume with: {_resume_command(args.argv)}",
            file=sys.stderr,
        )
        return EXIT_CODES.get(stop.signum, 130)
    except NonFiniteError as error:
        print(
            f"flaxfit train: error: {error}; training stopped, the last good checkpoint "
            f"in {out}/checkpoints is kept",
            file=sys.stderr,
        )
        return NON_FINITE
    if args.distributed:  # every process: equal hashes show the replicas stayed in step
        import jax

        from flaxfit.runs.manifest import params_sha256

        print(f"process {jax.process_index()}/{jax.process_count()}: "
              f"params sha256 {params_sha256(run.params)}", flush=True)  # fmt: skip
        if jax.process_index() != 0:
            return 0
    if not run.history.rows:
        return 0
    last = run.history.last
    if len(run.history) < config.epochs and args.stop_after_epoch:
        print(f"stopped after epoch {last['epoch']} as asked; resume with: "
              f"{_resume_command(args.argv)}")  # fmt: skip
    else:
        print(
            f"compile {run.history.compile_seconds:.1f} s; steady "
            f"{run.history['seconds'][-1]:.1f} s/epoch, {last['images_per_second']:,.0f} images/s"
        )
        print(
            f"saved {out}/ (config.json, history.json, metrics.csv, params.msgpack, checkpoints/)"
        )
    if "compile" in timings:  # this process trained (a finished run is only read back)
        print(format_session(timings, total=time.perf_counter() - args.started))
    accuracy = 100 * last["test_accuracy"]
    print(f"test accuracy: {accuracy:.2f}% ({config.model}, {last['epoch']} epochs)")
    return 0


def _signal_name(signum: int | None) -> str:
    import signal

    return signal.Signals(signum).name if signum is not None else "interrupted"


def _check(args: argparse.Namespace) -> int:
    from flaxfit.runs.directory import check_run

    results = check_run(args.run)
    for result in results:
        print(f"{'ok' if result.problem is None else 'DAMAGED':8} {result.name}"
              + (f": {result.problem}" if result.problem else ""))  # fmt: skip
    damaged = sum(result.problem is not None for result in results)
    if damaged:
        print(f"{args.run}: {damaged} of {len(results)} damaged", file=sys.stderr)
        return 1
    print(f"{args.run}: all {len(results)} intact")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from flaxfit.data import load_data
    from flaxfit.runs.directory import load_run
    from flaxfit.tools.predict import predict_probabilities

    run = load_run(args.run, allow_changed_model=args.allow_changed_model)
    data_dir = args.data_dir or run.config.data_dir
    test = load_data(run.config.dataset, data_dir, image_size=run.config.image_size).test
    probs = predict_probabilities(run.model, run.params, test.images, batch_stats=run.batch_stats)
    predicted = probs.argmax(-1)
    correct = predicted == test.labels
    print(f"test accuracy: {100 * correct.mean():.2f}% ({int(correct.sum())}/{len(correct)})")
    names = run.config.names
    width = max(len(name) for name in names)
    for index, name in enumerate(names):
        mine = test.labels == index
        if mine.any():
            accuracy = 100 * correct[mine].mean()
            print(f"  class {name:>{width}}: {accuracy:6.2f}% "
                  f"({int(correct[mine].sum())}/{int(mine.sum())})")  # fmt: skip
    return 0


def _predict(args: argparse.Namespace) -> int:
    import numpy as np

    from flaxfit.data.images import DIGIT_SHAPES, load_digit, load_picture
    from flaxfit.runs.directory import load_run
    from flaxfit.tools.predict import predict_probabilities

    run = load_run(args.run, allow_changed_model=args.allow_changed_model)
    shape, names = run.config.input_shape, run.config.names
    if tuple(shape) in DIGIT_SHAPES:  # digits: MNIST's crop, centring and polarity
        pictures = [load_digit(path, center=not args.no_center) for path in args.images]
        pictures = [p.reshape(shape) for p in pictures]
    else:  # any other picture: converted to the run's size and channels
        pictures = [load_picture(path, shape) for path in args.images]
    probs = predict_probabilities(run.model, run.params, np.stack(pictures),
                                  batch_stats=run.batch_stats)  # fmt: skip
    for path, p in zip(args.images, probs, strict=True):
        listed = " ".join(f"{name}:{x:.3f}" for name, x in zip(names, p, strict=True))
        print(f"{path}: {names[int(p.argmax())]}  ({listed})")
    return 0


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0..65535, got {value}")
    return value


def _serve(args: argparse.Namespace) -> int:
    from flaxfit.tools.serve import serve

    serve(args.run, args.host, args.port, allow_changed_model=args.allow_changed_model)
    return 0


def _verify_resume(args: argparse.Namespace) -> int:
    from flaxfit.runs.verify import verify_resume

    config = _config_from_args(args)
    print(f"verify-resume: {config.model} on {config.dataset}, {config.epochs} epochs; stopped "
          f"after epoch {args.stop_after} and continued in a new process", flush=True)  # fmt: skip
    report = verify_resume(config, stop_after=args.stop_after, work_dir=args.work_dir,
                           compile_cache=not args.no_compile_cache)  # fmt: skip
    print(report.format())
    return 0 if report.bit_exact else 1


def _eject(args: argparse.Namespace) -> int:
    from flaxfit.tools.eject import eject_config, eject_run, write_ejected

    if args.out.exists() and not args.force:  # before any work: say it at once
        raise ValueError(f"--out {args.out} exists; pass --force to overwrite it")
    if args.run is not None:
        given = [a for a in args.argv if a.startswith("--") and a.split("=")[0] not in
                 ("--run", "--out", "--force")]  # fmt: skip
        if given:
            raise ValueError(
                f"--run takes its config from the run; drop {given[0].split('=')[0]}, or drop "
                "--run to eject a config of your own"
            )
        ejected = eject_run(args.run, file=args.out.name)
    else:
        ejected = eject_config(_config_from_args(args), file=args.out.name)
    for note in ejected.notes:
        print(f"flaxfit eject: {note}", file=sys.stderr)
    write_ejected(args.out, ejected.source, force=args.force)
    lines = ejected.source.count("\n")
    print(f"wrote {args.out} ({lines} lines): run it with python {args.out}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from flaxfit.data import load_data
    from flaxfit.runs.directory import load_run
    from flaxfit.tools.plots import write_report

    run = load_run(args.run, allow_changed_model=args.allow_changed_model)
    data_dir = args.data_dir or run.config.data_dir
    config = run.config
    test = load_data(config.dataset, data_dir, image_size=config.image_size, verbose=False).test
    report = write_report(run, test.images, test.labels, args.out or args.run / "plots",
                          image_index=args.image_index)  # fmt: skip
    print(f"wrote {report} and its PNGs")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from flaxfit.tools import demos

    if args.which == "jit":
        print(demos.jit_report(args.calls).format())
        return 0
    if args.out.parent and not args.out.parent.is_dir():
        raise ValueError(f"--out {args.out}: directory {args.out.parent} does not exist")
    from flaxfit.files import atomic_writer

    with atomic_writer(args.out) as file:
        demos.grad_figure().savefig(file, format="png")
    print(f"wrote {args.out}: h(x1, x2) = 2 sin x1 sin x2 with its gradient")
    return 0


def _summary(args: argparse.Namespace) -> int:
    from flaxfit.models import create_model
    from flaxfit.tools.summary import format_summary

    print(format_summary(args.model, create_model(args.model), args.batch_size))
    return 0


def _params(args: argparse.Namespace) -> int:
    from flaxfit.models import params as P
    from flaxfit.runs.directory import load_run

    run = load_run(args.run, allow_changed_model=args.allow_changed_model)
    if args.select:
        P.check_patterns(run.params, args.select, "--select")
    arrays = P.select(run.params, *args.select) if args.select else P.flatten(run.params)
    infos = P.describe(arrays)  # a {path: array} dict is a params tree of its own paths
    width = max(len(info.path) for info in infos)
    print(f"{'path':<{width}}  {'shape':<14} {'dtype':<8} {'count':>10} "
          f"{'mean':>10} {'std':>9} {'min':>10} {'max':>10} {'norm':>9} {'zeros':>6}")  # fmt: skip
    for info in infos:
        s = P.statistics(arrays[info.path])
        print(f"{info.path:<{width}}  {str(info.shape):<14} {info.dtype:<8} {info.count:>10,} "
              f"{s['mean']:>10.3g} {s['std']:>9.3g} {s['min']:>10.3g} {s['max']:>10.3g} "
              f"{s['norm']:>9.3g} {100 * s['zeros']:>5.1f}%")  # fmt: skip
    total = sum(info.count for info in infos)
    size = sum(info.nbytes for info in infos)
    print(f"{len(infos)} arrays, {total:,} values, {size / 1e6:.2f} MB "
          f"({run.config.model}, {args.run})")  # fmt: skip
    return 0


def _export(args: argparse.Namespace) -> int:
    if args.format == "onnx":
        raise ValueError(
            "--format onnx: not available; the maintained converter (jax2onnx 0.17.1) needs "
            "orbax-checkpoint < 0.11.37 and flaxfit pins 0.12.8 (docs: params guide); use stablehlo"
        )
    from flaxfit.runs.directory import load_run
    from flaxfit.tools.export import EXPORT_FILE, export_predict, save_exported

    run = load_run(args.run, allow_changed_model=args.allow_changed_model)
    out = args.out or args.run / EXPORT_FILE
    if not out.parent.is_dir():
        raise ValueError(f"--out {out}: directory {out.parent} does not exist")
    exported = export_predict(run.model, run.params, batch_stats=run.batch_stats,
                              image_shape=run.config.input_shape)  # fmt: skip
    save_exported(out, exported)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {run.config.model} predict, "
          f"float32 (b, {', '.join(map(str, run.config.input_shape))}) in [0, 1] -> "
          f"(b, {run.config.num_classes}) probabilities, for "
          f"{', '.join(exported.platforms)}; load it with jax.export.deserialize")  # fmt: skip
    return 0


def _diff_runs(args: argparse.Namespace) -> int:
    from flaxfit.runs.manifest import diff_runs_main

    return diff_runs_main(str(args.run_a), str(args.run_b))


def train_defaults(args: argparse.Namespace) -> dict[str, Any]:
    """The config values that replace TrainConfig's defaults: `--recipe`'s, then every value
    of the `--config` file (a whole config, so it replaces a recipe); flags given override
    both."""
    defaults: dict[str, Any] = {}
    if getattr(args, "recipe", None) is not None:
        from flaxfit.runs.config import RECIPES

        defaults.update(RECIPES[args.recipe])
    if getattr(args, "config", None) is not None:
        defaults.update(_read_config_file(args.config))
    return defaults


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `flaxfit` console script and `python -m flaxfit`."""
    started = _command_started()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        defaults = train_defaults(args)
        if defaults:  # they become the defaults, so flags given still win
            parser.config_parsers[args.command].set_defaults(**defaults)
            args = parser.parse_args(argv)
    except SystemExit as exit:  # --help, --version, or a bad flag already reported
        return int(exit.code or 0)
    except ValueError as error:
        print(f"flaxfit {args.command}: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    args.argv, args.started = argv, started
    if args.command in ("train", "verify-resume"):
        from flaxfit.runs.xla_env import request_deterministic_gpu

        request_deterministic_gpu()  # bit-exact resume on GPU too (see flaxfit.runs.xla_env)
    command = {
        "train": _train,
        "check": _check,
        "evaluate": _evaluate,
        "predict": _predict,
        "serve": _serve,
        "diff-runs": _diff_runs,
        "verify-resume": _verify_resume,
        "demo": _demo,
        "plot": _plot,
        "summary": _summary,
        "params": _params,
        "export": _export,
        "eject": _eject,
    }[args.command]
    try:
        with _compile_cache(args):
            return command(args)
    except ValueError as error:  # DataError, RunError and bad arguments are ValueErrors
        print(f"flaxfit {args.command}: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except OSError as error:  # the environment's: disk full, permission denied, ...
        where = f"{error.filename}: " if error.filename else ""
        print(f"flaxfit {args.command}: error: {where}{error.strerror or error}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print(f"flaxfit {args.command}: interrupted", file=sys.stderr)
        return 130


def _compile_cache(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """JAX's persistent compilation cache around a command that compiles, unless turned off."""
    from flaxfit.runs.compile_cache import compile_cache, compile_cache_disabled

    if args.command not in COMPILING or args.no_compile_cache or compile_cache_disabled():
        return contextlib.nullcontext()
    return compile_cache()


def _read_config_file(path: Path) -> dict:
    import json

    from flaxfit.runs.config import TrainConfig

    try:
        config = TrainConfig.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such config file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None
    values = config.to_dict()
    values["data_dir"] = Path(values["data_dir"]) if values["data_dir"] else None
    for fact in ("model_sha256", "image_shape", "class_names"):  # taken afresh at the start
        values.pop(fact)
    values["model_args"] = [f"{k}={json.dumps(v)}" for k, v in values["model_args"].items()]
    for name in ("init_only", "freeze"):  # flags given append to the file's patterns
        values[name] = list(values[name])
    return values
