"""TrainConfig: every choice a run makes, as data, written to config.json."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

# Light on purpose: `flaxfit train --help` reads the defaults and choices below, so the
# data and model modules (numpy, Flax: over a second) are imported only to check a config.
from flaxfit.models.names import APIS, MODEL_NAMES

OPTIMIZERS = ("adam", "adamw", "sgd")
DTYPES = ("float32", "bfloat16")
MONITORS = ("test_loss", "test_accuracy", "train_loss", "train_accuracy")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "exponential", "onecycle")

#: Named sets of TrainConfig values (`flaxfit train --recipe NAME`); flags and --config
#: given beside one override it. "fast" trains the deck's SingleLayerCNN to 99% on MNIST in
#: 2 epochs instead of 3: a one-cycle learning rate peaking at 3e-3, Adam's b2 0.99 and
#: label smoothing 0.1 (docs/en/guides/speed.md, "Time to accuracy", says what each part bought).
RECIPES: dict[str, dict[str, Any]] = {
    "default": {},
    "fast": {"epochs": 2, "schedule": "onecycle", "lr": 3e-3, "b2": 0.99, "label_smoothing": 0.1},
}


@dataclass(frozen=True)
class TrainConfig:
    """Defaults are `make train`'s: the deck's SingleLayerCNN, 3 epochs of batch 128, Adam.

    The learning rate starts at `lr` and, with `schedule="cosine"`, decays to 0
    along a cosine over the whole run: on MNIST this lifts cnn1 from 98.7% to
    98.9-99.0% after 3 epochs compared with a constant 1e-3.
    """

    # A registry name ("cnn1") or your own class: "path/to/model.py:Class" or
    # "package.module:Class", built with `model_args` (NNX: and rngs=nnx.Rngs(seed)).
    # `model_sha256` is its source file's sha256, recorded when the run starts.
    model: str = "cnn1"
    api: str = "linen"
    model_args: dict[str, Any] = field(default_factory=dict, hash=False)
    model_sha256: str | None = None
    # A spec (see flaxfit.data.parse_dataset_spec); a folder's or file's path is stored
    # absolute, so `flaxfit evaluate` of the run finds the data from any directory.
    dataset: str = "mnist"
    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    schedule: str = "cosine"
    warmup_epochs: float = 0.5
    decay_rate: float = 0.5
    optimizer: str = "adam"
    momentum: float = 0.9
    # Adam's and AdamW's decay of the squared-gradient average (optax's b2): 0.99 forgets
    # the large gradients of the first steps sooner, which helps runs of a few epochs.
    b2: float = 0.999
    weight_decay: float = 0.0
    clip_norm: float | None = None
    # Train toward (1 - label_smoothing) * one-hot + label_smoothing / classes
    # (optax.smooth_labels); evaluation keeps the plain labels.
    label_smoothing: float = 0.0
    early_stop_patience: int = 0
    early_stop_monitor: str = "test_loss"
    early_stop_min_delta: float = 0.0
    seed: int = 0
    steps_per_dispatch: int | None = None
    eval_batch_size: int = 250
    dtype: str = "float32"
    data_dir: str | None = None
    image_size: tuple[int, int] | None = None  # folder: datasets: resize pictures to (H, W)
    # Random shifts (digits) or crop + flip (colour pictures), on the device, keyed by
    # (seed, epoch, step): see flaxfit.training.augment.
    augment: bool = False
    # What the data turned out to be, recorded when the run starts (not flags): one
    # image's shape and the class names. Older runs lack them: MNIST's then.
    image_shape: tuple[int, ...] | None = None
    class_names: tuple[str, ...] | None = None
    # Start from another run's params (by path, see flaxfit.models.params.transfer) and
    # keep some arrays fixed (flaxfit.models.params.freeze); all glob patterns over paths.
    init_from: str | None = None
    init_only: tuple[str, ...] = ()
    init_strict: bool = False
    freeze: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from flaxfit.data import DataError, parse_dataset_spec
        from flaxfit.models.user import ModelSpecError, is_model_spec, parse_model_spec

        problems = []
        for name in ("image_shape", "class_names"):  # JSON gives lists
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("init_only", "freeze"):  # JSON gives lists; keep them hashable and equal
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                problems.append(f"{name} must be a list of path patterns, got {value!r}")
            else:
                object.__setattr__(self, name, tuple(value))
        if (self.init_only or self.init_strict) and not self.init_from:
            problems.append("init_only and init_strict need init_from (the run to start from)")
        if is_model_spec(self.model):
            try:
                spec = parse_model_spec(self.model)
            except ModelSpecError as error:
                problems.append(str(error))
            else:  # a file is recorded by its absolute path, like a dataset's
                if spec.is_file:
                    absolute = os.path.abspath(os.path.expanduser(spec.module))
                    object.__setattr__(self, "model", f"{absolute}:{spec.name}")
        elif self.model not in MODEL_NAMES:
            problems.append(
                f"model {self.model!r} is unknown; choose one of: {', '.join(MODEL_NAMES)}, or "
                "your own as path/to/model.py:ClassName"
            )
        elif self.model_args:
            problems.append("model_args are for your own model classes, not registry models")
        if self.api not in APIS:
            problems.append(f"api {self.api!r} is unknown; choose one of: {', '.join(APIS)}")
        if not isinstance(self.model_args, dict):
            problems.append(f"model_args must map option names to values, got {self.model_args!r}")
        try:
            spec = parse_dataset_spec(self.dataset)
        except DataError as error:
            problems.append(str(error))
        else:
            object.__setattr__(self, "dataset", str(spec))
            if self.data_dir is not None and not spec.is_named:
                problems.append(
                    f"data_dir names a local copy of a named dataset; {spec.kind}: names its "
                    "own path, so drop data_dir"
                )
            if self.image_size is not None:
                size = self.image_size
                if (
                    not isinstance(size, list | tuple)
                    or len(size) != 2
                    or not all(type(v) is int and v > 0 for v in size)
                ):
                    problems.append(f"image_size must be two positive integers H W, got {size!r}")
                elif spec.kind != "folder":
                    problems.append("image_size resizes the pictures of a folder: dataset only")
                else:
                    object.__setattr__(self, "image_size", tuple(size))
        if self.dtype not in DTYPES:
            problems.append(f"dtype {self.dtype!r} is unknown; choose one of: {', '.join(DTYPES)}")
        if self.schedule not in SCHEDULES:
            problems.append(
                f"schedule {self.schedule!r} is unknown; choose one of: {', '.join(SCHEDULES)}"
            )
        if self.optimizer not in OPTIMIZERS:
            problems.append(
                f"optimizer {self.optimizer!r} is unknown; choose one of: {', '.join(OPTIMIZERS)}"
            )
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if self.steps_per_dispatch is not None and self.steps_per_dispatch <= 0:
            problems.append(f"steps_per_dispatch must be positive, got {self.steps_per_dispatch}")
        if not self.lr > 0:
            problems.append(f"lr must be positive, got {self.lr}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            problems.append(f"warmup_epochs must be within 0..epochs, got {self.warmup_epochs}")
        if not 0 < self.decay_rate <= 1:
            problems.append(f"decay_rate must be in (0, 1], got {self.decay_rate}")
        if not 0 <= self.b2 < 1:
            problems.append(f"b2 must be in [0, 1), got {self.b2}")
        if not 0 <= self.momentum < 1:
            problems.append(f"momentum must be in [0, 1), got {self.momentum}")
        if not self.weight_decay >= 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            problems.append(f"clip_norm must be positive, got {self.clip_norm}")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not isinstance(self.early_stop_patience, int) or self.early_stop_patience < 0:
            problems.append(
                f"early_stop_patience must be 0 (off) or more, got {self.early_stop_patience!r}"
            )
        if self.early_stop_monitor not in MONITORS:
            problems.append(
                f"early_stop_monitor {self.early_stop_monitor!r} is unknown; "
                f"choose one of: {', '.join(MONITORS)}"
            )
        if not self.early_stop_min_delta >= 0:
            problems.append(f"early_stop_min_delta must be >= 0, got {self.early_stop_min_delta}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def user_model(self) -> bool:
        """Whether `model` names the user's own class rather than a registry model."""
        from flaxfit.models.user import is_model_spec

        return is_model_spec(self.model)

    def make_model(self, *, refuse_under: Any = None) -> Any:
        """The flax module this config trains (Linen, or NNX initialised from `seed`),
        computing in `dtype` (params stay float32). A user class is imported from its
        source, which must not lie inside `refuse_under` (a run directory).

        Raises:
            ModelSpecError: the user's class cannot be found, imported or built.
        """
        import jax.numpy as jnp

        from flaxfit.models import create_model
        from flaxfit.models.user import build_model, load_class, parse_model_spec

        if self.user_model:
            cls = load_class(parse_model_spec(self.model), refuse_under=refuse_under)
            return build_model(cls, self.model_args, seed=self.seed, label=self.model)
        return create_model(self.model, api=self.api, seed=self.seed, dtype=jnp.dtype(self.dtype),
                            num_classes=self.num_classes, input_shape=self.input_shape)  # fmt: skip

    #: The facts `record_data` fills in; a config without them matches one with them.
    DATA_FACTS = ("image_shape", "class_names")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One image's shape, the data's as recorded (else MNIST's, (28, 28))."""
        return self.image_shape or (28, 28)

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else 10

    @property
    def names(self) -> tuple[str, ...]:
        """The class names (MNIST's digits for runs that did not record any)."""
        return self.class_names or tuple(str(d) for d in range(10))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: the pattern tuples become lists, as they read back."""
        values = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    def record_data(
        self, image_shape: tuple[int, ...], class_names: tuple[str, ...]
    ) -> TrainConfig:
        """This config with the data's facts recorded (see `DATA_FACTS`)."""
        return dataclasses.replace(self, image_shape=tuple(int(d) for d in image_shape),
                                   class_names=tuple(class_names))  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config fields: {', '.join(unknown)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
