"""Write a run (or a config) out as one Python file that trains it the way fit() did.

The file is assembled, in the deck's order, from:

- the source of what fit() runs for this run, copied by `inspect.getsource` with
  what it uses (`flaxfit.tools.eject.source.closure`): the model class and its
  layer helpers (or the user's model file's), NNX's bridge to Linen's apply,
  `epoch_order`, `steps_per_epoch`, `chunk_sizes`, `to_model_inputs`;
- the steps of slide 14 and the loop around them (`TEMPLATE` below), where each
  call of the model is written with the keywords flaxfit's own `forward` passes
  to this model (`mode_keywords`, `takes_get_logits`), and the optimizer is the
  optax expression `runs.optim.make_optimizer` builds for the config;

then specialised to the run (`specialise`: branches on options the run leaves at one
value, and guards eject has already run, taken out), its imports cut to what is used.

What the ejector cannot reproduce bit for bit (BatchNorm statistics, dropout,
stock convs that fit() rewrites, transferred or frozen params, early stopping) is
refused with `EjectError`, naming the part and why.
tests/test_eject.py runs the files and compares their params with the runs'.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from flaxfit.data import Dataset, load_data
from flaxfit.models.nnx_bridge import NnxApply, split_module
from flaxfit.models.outputs import mode_keywords, takes_get_logits
from flaxfit.models.user import ModelSpecError
from flaxfit.runs.config import TrainConfig
from flaxfit.runs.directory import PARAMS_FILE, RunError, load_run, with_model_source
from flaxfit.tools.eject.data import data_section, data_sha256, load_data_source
from flaxfit.tools.eject.source import LINE_LENGTH, Closure, EjectError, sorted_imports
from flaxfit.tools.eject.specialise import specialise
from flaxfit.training import augment as augmentations
from flaxfit.training.fast_ops import rules_for
from flaxfit.training.loop import chunk_sizes, epoch_order, step_key, steps_per_epoch
from flaxfit.training.step import to_model_inputs

HEADER = '''"""Train {what} as `flaxfit train` did{where}, in one file of JAX, Flax and Optax.

Written by `flaxfit eject` from the code fit() runs, in the deck's order.
`python {file}` prints one line per epoch, as in the run's history.json;
`--params-out FILE` writes the final params (msgpack), on a CPU equal to params.msgpack.
Left out, as they change no number: progress bar, checkpoints, resuming, signals,
manifest, run lock, multi-device.

`flaxfit train` の学習を 1 ファイルにしたもの（スライドの順）。進捗バー、チェックポイント、
シグナル、マニフェスト、複数デバイスは数値を変えないので省略（`flaxfit train` にあります）。
"""'''

TEMPLATE = '''
# The run's config: every number below comes from it.
SEED = {seed}
EPOCHS = {epochs}
BATCH_SIZE = {batch_size}
STEPS_PER_DISPATCH = {steps_per_dispatch}  # train steps per compiled call
EVAL_BATCH_SIZE = {eval_batch_size}
NUM_CLASSES = {num_classes}
{options_constants}{data_constants}

{library_data}


{load_data}


# --- the model ----------------------------------------------------------------


{model}


def make_optimizer(steps_per_epoch: int) -> optax.GradientTransformation:
    """The run's optimizer; schedules count global steps, EPOCHS * steps_per_epoch in all."""
    {optimizer}


def create_train_state(key: jax.Array, steps_per_epoch: int) -> train_state.TrainState:
    """The model's initial params wrapped with the optimizer, as Flax's TrainState."""
{create_state}
    return train_state.TrainState.create(apply_fn={apply_fn}, params=params,
                                         tx=make_optimizer(steps_per_epoch))  # fmt: skip


# --- loss and train step (slide 14) ---------------------------------------------


@jax.jit
def loss_fn(params, state, inputs, labels):
    logits = {train_logits}
    loss = optax.softmax_cross_entropy(logits, labels).mean()
    return loss


@jax.jit
def train_step(state, inputs, labels):
    loss, grads = jax.value_and_grad(loss_fn)(state.params, state, inputs, labels)
    new_state = state.apply_gradients(grads=grads)
    return new_state, loss


# --- the epoch: its order, and its steps in compiled chunks ---------------------


{library_loop}


@partial(jax.jit, static_argnames=("num_steps",), donate_argnames=("state",))
def run_steps(state, images, labels, order, first_step{epoch_parameter}, *, num_steps):
    """Steps first_step .. first_step + num_steps - 1 of an epoch in one compiled scan."""
    indices = jax.lax.dynamic_slice_in_dim(order, first_step * BATCH_SIZE, num_steps * BATCH_SIZE)
{scan_steps}
    def one_step(state, {step_and_batch}):
{unpack}        inputs, targets = to_model_inputs(images[batch], labels[batch], NUM_CLASSES)
{augmentation}{smoothing}        old = state
        state, loss = train_step(state, inputs, targets)
        # Accuracy of the params before the step, as the loss is: the same forward pass,
        # which XLA computes once for both.
        logits = {step_logits}
        correct = jnp.sum(jnp.argmax(logits, -1) == jnp.argmax(targets, -1), dtype=jnp.int32)
        return state, {{"loss": loss, "correct": correct}}

    return jax.lax.scan(one_step, state, {scanned})


# --- evaluation: every test example counted once ----------------------------------


def eval_step(state, inputs, labels, mask):
    """Summed loss and correct predictions of one batch, counting only `mask`ed rows."""
    logits = {eval_logits}
    losses = optax.softmax_cross_entropy(logits, labels)
    hits = jnp.argmax(logits, -1) == jnp.argmax(labels, -1)
    return {{
        "loss_sum": jnp.sum(jnp.where(mask, losses, 0.0)),
        "correct": jnp.sum(hits & mask, dtype=jnp.int32),
        "count": jnp.sum(mask, dtype=jnp.int32),
    }}


@partial(jax.jit, static_argnames=("batch_size",))
def evaluate(state, images, labels, *, batch_size):
    """Sums of eval_step over all of `images`, padded to whole batches and masked."""
    n = images.shape[0]
    batches = -(-n // batch_size)
    pad = batches * batch_size - n
    images = jnp.pad(images, [(0, pad)] + [(0, 0)] * (images.ndim - 1))
    labels = jnp.pad(labels, [(0, pad)])
    mask = jnp.arange(batches * batch_size) < n

    def one_batch(totals, batch):
        images, labels, mask = batch
        inputs, targets = to_model_inputs(images, labels, NUM_CLASSES)
        return jax.tree.map(jnp.add, totals, eval_step(state, inputs, targets, mask)), None

    zeros = {{"loss_sum": jnp.float32(0), "correct": jnp.int32(0), "count": jnp.int32(0)}}
    batched = (images.reshape(batches, batch_size, *images.shape[1:]),
               labels.reshape(batches, batch_size), mask.reshape(batches, batch_size))  # fmt: skip
    return jax.lax.scan(one_batch, zeros, batched)[0]


# --- fit() -------------------------------------------------------------------------


def fit(state, train, test, epochs=EPOCHS):
    """Train `state` for `epochs` epochs, evaluating on `test` after each; returns the
    state and one row of metrics per epoch."""
    images, labels = (jax.device_put(x) for x in train)  # the data lives on the device
    test_images, test_labels = (jax.device_put(x) for x in test)
    steps = steps_per_epoch(len(images), BATCH_SIZE)
    history = []
    for epoch in range(1, epochs + 1):
        order = jax.device_put(epoch_order(SEED, epoch, len(images)))
        done, chunks = 0, []
        for size in chunk_sizes(steps, STEPS_PER_DISPATCH):
            state, metrics = run_steps({run_steps_arguments}, num_steps=size)
            chunks.append(metrics)
            done += size
        chunks = jax.device_get(chunks)  # the epoch's one wait for the device
        losses = np.concatenate([chunk["loss"] for chunk in chunks]).astype(np.float64)
        correct = sum(int(chunk["correct"].sum()) for chunk in chunks)
        batch_size = min(EVAL_BATCH_SIZE, len(test_images))
        totals = jax.device_get(evaluate(state, test_images, test_labels, batch_size=batch_size))
        row = {{
            "epoch": epoch,
            "train_loss": float(np.sum(losses)) / steps,
            "train_accuracy": correct / (steps * BATCH_SIZE),
            "test_loss": float(totals["loss_sum"]) / int(totals["count"]),
            "test_accuracy": int(totals["correct"]) / int(totals["count"]),
        }}
        print("  ".join(f"{{name}} {{value!r}}" for name, value in row.items()), flush=True)
        history.append(row)
    return state, history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params-out", help="write the final params here (flax msgpack)")
    args = parser.parse_args()
    train_images, train_labels, test_images, test_labels = load_data()
    steps = steps_per_epoch(len(train_images), BATCH_SIZE)
    state = create_train_state(jax.random.key(SEED), steps)
    state, _ = fit(state, (train_images, train_labels), (test_images, test_labels))
    if args.params_out:
        with open(args.params_out, "wb") as file:
            file.write(serialization.to_bytes(jax.device_get(state.params)))


if __name__ == "__main__":
    main()
'''

#: Imports the template itself uses.
TEMPLATE_IMPORTS = {
    "import argparse",
    "from functools import partial",
    "import jax",
    "import jax.numpy as jnp",
    "import numpy as np",
    "import optax",
    "from flax import serialization",
    "from flax.training import train_state",
}


@dataclass
class Ejected:
    """An ejected file's text and what the CLI says about it."""

    source: str
    config: TrainConfig
    notes: list[str] = dataclasses.field(default_factory=list)


def _refuse_options(config: TrainConfig) -> None:
    """EjectError for the config options whose numbers the file does not reproduce."""
    refused = {
        "init_from": "--init-from (the file starts from fresh params)",
        "freeze": "--freeze (the file has no frozen params)",
        "early_stop_patience": "--early-stop-patience (early stopping restores the best "
        "checkpoint's params, and the file keeps no checkpoints)",
    }
    for name, why in refused.items():
        if getattr(config, name):
            raise EjectError(f"cannot eject {why}; train without it to eject the run")


def _call(function: str, arguments: list[str], indent: int, prefix: int) -> str:
    """`function(a, b)` on one line (after `prefix` characters of the statement), or one
    argument a line, as ruff formats a call too long for one."""
    line = f"{function}({', '.join(arguments)})"
    if indent + prefix + len(line) <= LINE_LENGTH:
        return line
    inner = " " * (indent + 4)
    return f"{function}(\n" + "".join(f"{inner}{a},\n" for a in arguments) + " " * indent + ")"


def optimizer_expression(config: TrainConfig, indent: int = 4) -> str:
    """The body of the ejected `make_optimizer(steps_per_epoch)`: the optax transformation
    `runs.optim.make_optimizer(config, steps_per_epoch)` builds (checked against it, update
    for update, in tests/test_eject.py)."""
    total = "decay_steps=EPOCHS * steps_per_epoch"
    lr = f"{config.lr!r}"
    schedule = {
        "constant": None,
        "cosine": ("optax.cosine_decay_schedule", [lr, total]),
        "warmup_cosine": ("optax.warmup_cosine_decay_schedule", [
            "init_value=0.0", f"peak_value={lr}",
            f"warmup_steps=round({config.warmup_epochs!r} * steps_per_epoch)", total,
            "end_value=0.0"]),
        "exponential": ("optax.exponential_decay", [
            lr, "transition_steps=steps_per_epoch", f"decay_rate={config.decay_rate!r}"]),
        "onecycle": ("optax.cosine_onecycle_schedule", [
            "transition_steps=EPOCHS * steps_per_epoch", f"peak_value={lr}"]),
    }[config.schedule]  # fmt: skip
    parts = []
    b2 = "" if config.b2 == 0.999 else f", b2={config.b2!r}"  # optax's default is 0.999
    if config.clip_norm is not None:
        parts.append(f"optax.clip_by_global_norm({config.clip_norm!r})")
    if config.optimizer == "adamw":
        parts.append(f"optax.adamw(learning_rate{b2}, weight_decay={config.weight_decay!r})")
    else:
        if config.weight_decay:
            parts.append(f"optax.add_decayed_weights({config.weight_decay!r})")
        if config.optimizer == "sgd":
            parts.append(f"optax.sgd(learning_rate, momentum={config.momentum or None!r})")
        else:
            parts.append(f"optax.adam(learning_rate{b2})")
    rate = lr if schedule is None else _call(*schedule, indent, len("learning_rate = "))
    transform = parts[0] if len(parts) == 1 else _call("optax.chain", parts, indent, 7)
    return f"learning_rate = {rate}\n{' ' * indent}return {transform}"


def _model_class_and_options(config: TrainConfig) -> tuple[Any, dict[str, Any]]:
    """The registry's factory of the model (None for a user's class) and the options it was
    built with (besides NNX's rngs)."""
    from flaxfit.models.registry import MODELS, NNX_MODELS

    if config.user_model:  # the class is the built module's own (importing again makes another)
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in config.model_args.items()}
        return None, options
    cls = (MODELS if config.api == "linen" else NNX_MODELS)[config.model]
    options: dict[str, Any] = {"num_classes": config.num_classes}
    if config.dtype != "float32":
        options["dtype"] = jnp.dtype(config.dtype)
    if config.api == "nnx":
        options["input_shape"] = tuple(config.input_shape)
    return cls, options


def _constructor(cls: type, options: dict[str, Any], nnx_module: bool) -> str:
    """`Class(option=value, ...)`, leaving out the options equal to their defaults."""
    defaults = {
        name: p.default
        for name, p in inspect.signature(cls.__init__ if nnx_module else cls).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    shown = []
    for name, value in options.items():
        if name in defaults and _same(defaults[name], value):
            continue
        text = f"jnp.{value.name}" if isinstance(value, np.dtype) else repr(value)
        shown.append(f"{name}={text}")
    if nnx_module:
        shown.append("rngs=nnx.Rngs(SEED)")
    return f"{cls.__name__}({', '.join(shown)})"


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # arrays and other values without a plain ==
        return False


def _primitives(jaxpr: Any) -> set[str]:
    """Every primitive in a jaxpr and the jaxprs nested in its equations."""
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for value in eqn.params.values():
            for inner in value if isinstance(value, tuple | list) else (value,):
                inner = getattr(inner, "jaxpr", inner)
                if hasattr(inner, "eqns"):
                    names |= _primitives(inner)
    return names


def _apply_call(apply_fn: Any, state: str, params: str, *, train: bool) -> str:
    """The model call flaxfit's `forward` makes for this model, as source text."""
    keywords = dict(mode_keywords(apply_fn, train))
    if takes_get_logits(apply_fn):
        keywords["get_logits"] = True
    shown = "".join(f", {name}={value!r}" for name, value in keywords.items())
    return f'{state}.apply_fn({{"params": {params}}}, inputs{shown})'


def _check_model(config: TrainConfig, model: Any, state: Any) -> None:
    """EjectError unless fit() computed this model exactly as the ejected file will."""
    from flaxfit.models.outputs import forward

    label = config.model
    if getattr(state, "batch_stats", None) is not None:
        raise EjectError(
            f"cannot eject {label}: it has BatchNorm statistics (batch_stats), which the "
            "ejected train step does not carry"
        )
    x = jnp.zeros((2, *config.input_shape), jnp.float32)
    if isinstance(state.apply_fn, NnxApply):
        if state.apply_fn.streams:
            raise EjectError(
                f"cannot eject {label}: it draws random numbers (nnx.Rngs streams "
                f"{', '.join(state.apply_fn.streams)}, e.g. Dropout), which fit() keys by "
                "(seed, epoch, step) and the ejected step does not"
            )
    else:
        try:
            jax.eval_shape(lambda p: forward(state.apply_fn, p, x, train=True)[0], state.params)
        except Exception:
            raise EjectError(
                f"cannot eject {label}: in training it needs a random key (dropout), which "
                "fit() derives from (seed, epoch, step) and the ejected step does not"
            ) from None
    jaxpr = jax.make_jaxpr(lambda p: forward(state.apply_fn, p, x, train=True)[0])(state.params)
    rewritten = sorted(_primitives(jaxpr.jaxpr) & set(rules_for()))
    if rewritten:
        raise EjectError(
            f"cannot eject {label}: fit() runs its {', '.join(rewritten)} through "
            "flaxfit.training.fast_ops (as slices + matmul on this backend), which rounds "
            "differently from the model as written, so a plain file would not give the run's "
            "params; write the conv and pool as flaxfit.models._layers does, or train with "
            "fit(fast_ops=False)"
        )

def _augmentation_parts(augment: str | None) -> dict[str, str]:
    """run_steps' pieces with fit(augment=...): each step's key from (SEED, epoch, step), as
    fit() derives it, or none of it for a run without augmentation."""
    batches = "indices.reshape(num_steps, BATCH_SIZE)"
    if augment is None:
        return dict(epoch_parameter="", scan_steps="", step_and_batch="batch", unpack="",
                    augmentation="", scanned=batches,
                    run_steps_arguments="state, images, labels, order, done")  # fmt: skip
    return dict(
        epoch_parameter=", epoch", run_steps_arguments="state, images, labels, order, done, epoch",
        scan_steps="    steps = first_step + jnp.arange(num_steps)\n",
        step_and_batch="step_and_batch", unpack="        step, batch = step_and_batch\n",
        augmentation=(
            "        # Augmented on the device with a key from (SEED, epoch, step): a run resumed\n"
            "        # anywhere draws what an unbroken one draws.\n"
            f"        key = jax.random.fold_in(step_key(SEED, epoch, step), 1)\n"
            f"        inputs = {augment}(key, inputs)\n"
        ),
        scanned=f"(steps, {batches})",
    )  # fmt: skip


#: fit(label_smoothing=...)'s line in run_steps, in the ejected file's names.
SMOOTHING = """\
        # Train toward (1 - S) * one-hot + S / classes; argmax, so accuracy, is unchanged.
        targets = optax.smooth_labels(targets, LABEL_SMOOTHING)
"""


def eject_source(config: TrainConfig, dataset: Dataset, *, where: str = "", file: str = "train.py"
                 ) -> str:  # fmt: skip
    """The ejected file's text for `config` trained on `dataset`.

    Raises:
        EjectError: a part of the run that the file cannot reproduce, named with why.
    """
    _refuse_options(config)
    config = config.record_data(dataset.image_shape, dataset.class_names)
    augment = augmentations.recipe_for(config.input_shape) if config.augment else None
    from flaxfit.runs.optim import make_optimizer
    from flaxfit.training.step import create_train_state

    try:
        model = config.make_model()  # the very module `flaxfit train` builds
    except ModelSpecError as error:
        raise EjectError(str(error)) from None
    steps = steps_per_epoch(len(dataset.train), config.batch_size)
    chunk_sizes(steps, config.steps_per_dispatch)  # raises here if the file's call would
    state = create_train_state(model, jax.random.key(config.seed), make_optimizer(config, steps),
                               input_shape=(1, *config.input_shape))  # fmt: skip
    _check_model(config, model, state)
    factory, options = _model_class_and_options(config)
    cls = type(model)
    if factory is not None and factory is not cls:
        raise EjectError(
            f"cannot eject {config.model}: it is built by the function {factory.__name__}, and "
            "the ejector writes out model classes only"
        )
    nnx_module = not issubclass(cls, nn.Module)

    closure = Closure(provided={"NUM_CLASSES": config.num_classes})
    closure.add(cls)
    if nnx_module:
        closure.add(split_module)
    model_source = "\n\n\n".join(closure.definitions)
    constructor = _constructor(cls, options, nnx_module)
    if nnx_module:
        create_state = (
            "    del key  # NNX modules initialise from nnx.Rngs(SEED)\n"
            f"    model = {constructor}\n"
            "    apply_fn, params, _ = split_module(model)"
        )
        apply_fn = "apply_fn"
    else:
        shape = ", ".join(str(d) for d in (1, *config.input_shape))
        zeros = f"jnp.zeros(({shape}), jnp.float32)"
        create_state = f'    model = {constructor}\n    params = model.init(key, {zeros})["params"]'
        apply_fn = "model.apply"

    count = len(closure.definitions)
    functions, data_constants, reader = data_section(config, dataset)
    for function in functions:
        closure.add(function)
    closure.add(data_sha256)
    if "ROLES" not in closure.origins:
        closure.add_global(functions[0].__module__, "ROLES")
    data_definitions = closure.definitions[count:]
    count = len(closure.definitions)
    for function in (epoch_order, steps_per_epoch, chunk_sizes, to_model_inputs):
        closure.add(function)
    if augment is not None:  # the very functions fit()'s step calls
        closure.add(step_key)
        closure.add(getattr(augmentations, augment))
    loop_definitions = closure.definitions[count:]

    body = TEMPLATE.format(
        seed=config.seed, epochs=config.epochs, batch_size=config.batch_size,
        steps_per_dispatch=config.steps_per_dispatch, eval_batch_size=config.eval_batch_size,
        num_classes=config.num_classes, data_constants=data_constants.rstrip(),
        options_constants=(f"LABEL_SMOOTHING = {config.label_smoothing!r}\n"
                           if config.label_smoothing else ""),
        smoothing=SMOOTHING if config.label_smoothing else "",
        **_augmentation_parts(augment),
        library_data="\n\n\n".join(data_definitions), load_data=load_data_source(reader),
        model=model_source, optimizer=optimizer_expression(config), create_state=create_state,
        apply_fn=apply_fn, train_logits=_apply_call(state.apply_fn, "state", "params", train=True),
        step_logits=_apply_call(state.apply_fn, "old", "old.params", train=True),
        eval_logits=_apply_call(state.apply_fn, "state", "state.params", train=False),
        library_loop="\n\n\n".join(loop_definitions),
    )  # fmt: skip
    # eject has called these with the run's values (above), so their guards cannot fire.
    body = specialise(body, validated={"steps_per_epoch", "chunk_sizes"})
    used = {n.id for n in ast.walk(ast.parse(body)) if isinstance(n, ast.Name)}
    imports = {line for line in set(TEMPLATE_IMPORTS) | closure.imports
               if _bound_name(line) in used}  # fmt: skip
    if nnx_module:
        imports.add("from flax import nnx")
    what = f"{config.model} on {config.dataset}"
    header = HEADER.format(what=what, where=where, file=file)
    return f"{header}\n\n{sorted_imports(imports)}\n\n{body.strip()}\n"


def _bound_name(line: str) -> str:
    """The name an import line binds: `import a.b` binds a, `... as c` and `from a import c` c."""
    words = line.split()
    return words[-1] if words[0] == "from" or " as " in line else words[1].split(".")[0]


def _load_dataset(config: TrainConfig) -> Dataset:
    try:
        return load_data(config.dataset, config.data_dir, image_size=config.image_size,
                         verbose=False)  # fmt: skip
    except ValueError as error:
        raise EjectError(f"loading the data: {error}") from None


def eject_run(directory: str | Path, *, file: str = "train.py") -> Ejected:
    """The ejected file of the run in `directory` (finished or not).

    Raises:
        RunError: no run there, or a damaged config.
        EjectError: a part of the run the file cannot reproduce.
    """
    directory = Path(directory)
    run = load_run(directory, with_params=False)
    notes = []
    if not (directory / PARAMS_FILE).exists():
        notes.append(
            f"{directory} is unfinished ({len(run.history)} of {run.config.epochs} epochs): "
            "the ejected file trains it from the start"
        )
    source = eject_source(run.config, _load_dataset(run.config), where=f" ({directory.name})",
                          file=file)  # fmt: skip
    return Ejected(source, run.config, notes)


def eject_config(config: TrainConfig, *, file: str = "train.py") -> Ejected:
    """The ejected file of a run not trained yet: what `flaxfit train` would run for `config`."""
    try:
        config = with_model_source(config)
    except RunError as error:
        raise EjectError(str(error)) from None
    return Ejected(eject_source(config, _load_dataset(config), file=file), config)


def write_ejected(path: str | Path, source: str, *, force: bool = False) -> Path:
    """Write `source` to `path` (atomically); an existing file only with `force`.

    Raises:
        EjectError: `path` exists and `force` is False, or its directory does not exist.
    """
    from flaxfit.files import write_atomic

    path = Path(path)
    if path.exists() and not force:
        raise EjectError(f"{path} exists; pass --force to overwrite it")
    if not path.parent.is_dir():
        raise EjectError(f"{path}: directory {path.parent} does not exist")
    write_atomic(path, source.encode())
    return path


__all__ = ["Ejected", "eject_config", "eject_run", "eject_source", "write_ejected"]
