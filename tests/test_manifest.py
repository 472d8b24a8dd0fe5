import copy
import importlib.metadata
import json
import platform
from datetime import UTC, datetime

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flaxfit
from flaxfit.data import Dataset, Split
from flaxfit.files import write_recorded
from flaxfit.models import create_model
from flaxfit.runs.config import TrainConfig
from flaxfit.runs.manifest import (
    ABSENT,
    MANIFEST_FILE,
    PACKAGES,
    Difference,
    _strip_locations,
    build_manifest,
    diff_runs,
    diff_runs_main,
    format_diff,
    package_versions,
    read_manifest,
    train_step_hash,
    write_manifest,
)
from flaxfit.runs.optim import make_optimizer
from flaxfit.training.step import create_train_state, train_step

BATCH = 8
SHA = {"train-images-idx3-ubyte.gz": "1" * 64, "train-labels-idx1-ubyte.gz": "2" * 64}


def make_state(config: TrainConfig):
    optimizer = make_optimizer(config, steps_per_epoch=3)
    return create_train_state(create_model(config.model), jax.random.key(config.seed), optimizer)


def abstract_state(config: TrainConfig):
    """The state's shapes only: lowering needs no more, and it skips ~5 s of init on CPU."""
    return jax.eval_shape(lambda: make_state(config))


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    rng = np.random.default_rng(0)

    def split(n):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        return Split(images, rng.integers(0, 10, n, dtype=np.uint8))

    return Dataset("mnist", split(6), split(3), source="test arrays", sha256=dict(SHA))


@pytest.fixture(scope="module")
def config() -> TrainConfig:
    return TrainConfig(model="softmax", batch_size=BATCH, seed=7)


@pytest.fixture(scope="module")
def state(config):
    return make_state(config)


@pytest.fixture(scope="module")
def manifest(config, dataset, state):
    return build_manifest(config, dataset, state, command=["flaxfit", "train", "--seed", "7"])


def write_run(directory, manifest):
    directory.mkdir()
    write_manifest(directory, manifest)
    return directory


# --- build_manifest ------------------------------------------------------------------------


def test_manifest_has_every_key_with_plausible_values(manifest, config, dataset):
    assert set(manifest) == {
        "manifest_version", "flaxfit", "train_step_hash", "python", "packages", "platform",
        "backend", "devices", "device_count", "process_count", "xla_flags", "jax_env", "seed",
        "config", "dataset", "command", "created", "lineage",
    }  # fmt: skip
    assert manifest["flaxfit"] == flaxfit.__version__
    assert manifest["python"] == platform.python_version()
    assert manifest["packages"] == {name: importlib.metadata.version(name) for name in PACKAGES}
    assert set(PACKAGES) == {"jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy"}
    assert manifest["platform"] == {"system": platform.system(), "machine": platform.machine()}
    assert manifest["backend"] == "cpu"
    assert manifest["devices"] == [d.device_kind for d in jax.devices()]
    assert manifest["device_count"] == len(manifest["devices"]) >= 1
    assert manifest["process_count"] == 1
    assert manifest["seed"] == 7
    assert TrainConfig.from_dict(manifest["config"]) == config
    assert manifest["dataset"] == {
        "name": "mnist",
        "source": "test arrays",
        "sha256": SHA,
        "content_sha256": dataset.content_sha256(),
    }
    assert manifest["command"] == ["flaxfit", "train", "--seed", "7"]
    assert manifest["lineage"] == []
    created = datetime.fromisoformat(manifest["created"])
    assert created.tzinfo is not None and created.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - created).total_seconds()) < 600
    assert len(manifest["train_step_hash"]) == 64
    int(manifest["train_step_hash"], 16)
    assert json.loads(json.dumps(manifest)) == manifest  # plain JSON, nothing lost


def test_manifest_records_xla_flags_and_only_jax_environment(monkeypatch, config, dataset, state):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    monkeypatch.setenv("JAX_FLAXFIT_TEST", "1")
    monkeypatch.setenv("NOT_JAX_FLAXFIT_TEST", "1")
    built = build_manifest(config, dataset, state)
    assert built["xla_flags"] == "--xla_cpu_enable_fast_math=false"
    assert built["jax_env"]["JAX_FLAXFIT_TEST"] == "1"
    assert all(name.startswith("JAX_") for name in built["jax_env"])
    assert built["command"] is None

    monkeypatch.delenv("XLA_FLAGS")
    assert build_manifest(config, dataset, state)["xla_flags"] == ""


def test_package_versions_says_not_installed():
    assert package_versions(("flaxfit-no-such-distribution",)) == {
        "flaxfit-no-such-distribution": "not installed"
    }


# --- train_step_hash -----------------------------------------------------------------------


def test_train_step_hash_is_stable_across_calls_and_steps(manifest, config, state):
    assert train_step_hash(state, BATCH) == manifest["train_step_hash"]
    assert train_step_hash(abstract_state(config), BATCH) == manifest["train_step_hash"]
    # The step counter starts as a Python int and becomes an array: same lowered step.
    stepped, _ = train_step(state, jnp.zeros((BATCH, 28, 28)), jnp.zeros((BATCH, 10)))
    assert train_step_hash(stepped, BATCH) == manifest["train_step_hash"]


def test_train_step_hash_changes_with_model_optimizer_and_batch(config, manifest):
    def hash_of(**fields):
        other = TrainConfig(**{**config.to_dict(), **fields})
        return train_step_hash(abstract_state(other), other.batch_size)

    hashes = {
        manifest["train_step_hash"],
        hash_of(model="mlp"),
        hash_of(optimizer="sgd"),
        hash_of(batch_size=BATCH * 2),
    }
    assert len(hashes) == 4


STEP_SOURCE = """
import jax
from flaxfit.training.step import loss_fn

def step(state, inputs, labels):
    loss, grads = jax.value_and_grad(loss_fn)(state.params, state, inputs, labels)
    return state.apply_gradients(grads=grads), SCALE * loss
"""


def step_from_source(filename: str, blank_lines: int, scale: float = 1.0):
    namespace = {"SCALE": scale}
    exec(compile("\n" * blank_lines + STEP_SOURCE, filename, "exec"), namespace)
    return namespace["step"]


def test_train_step_hash_ignores_where_the_code_lives_but_not_what_it_computes(state):
    here = step_from_source("/src/a/steps.py", 0)
    moved = step_from_source("/elsewhere/b/renamed.py", 12)
    inputs = jax.ShapeDtypeStruct((BATCH, 28, 28), jnp.float32)
    labels = jax.ShapeDtypeStruct((BATCH, 10), jnp.float32)
    with_locations = [
        jax.jit(f).lower(state, inputs, labels).as_text(debug_info=True) for f in (here, moved)
    ]
    assert with_locations[0] != with_locations[1]  # the locations really differ

    assert train_step_hash(state, BATCH, train_step=here) == train_step_hash(
        state, BATCH, train_step=moved
    )
    doubled = step_from_source("/src/a/steps.py", 0, scale=2.0)
    assert train_step_hash(state, BATCH, train_step=doubled) != train_step_hash(
        state, BATCH, train_step=here
    )


def test_train_step_hash_strips_locations_that_leak_into_the_text(monkeypatch, state, manifest):
    # As if a jax version printed locations even without debug info.
    as_text = jax.stages.Lowered.as_text

    def leaky(self, dialect=None, *, debug_info=False):
        return as_text(self, dialect, debug_info=True)

    monkeypatch.setattr(jax.stages.Lowered, "as_text", leaky)
    assert train_step_hash(state, BATCH) == manifest["train_step_hash"]


def test_inline_locations_are_stripped_whole():
    # The form MLIR prints without #loc aliases: nested, with parentheses and quotes in names.
    line = '%0 = stablehlo.add %a, %b : tensor<f32> loc(callsite("jit(f)/jvp(g(\\")"'
    line += '("/src/x.py":3:4) at fused["a(", unknown]))'
    text = f'#loc1 = loc("/src/x.py":1:2)\n{line}\n  return %0 : tensor<f32> loc(#loc1)\n'
    assert _strip_locations(text) == (
        "%0 = stablehlo.add %a, %b : tensor<f32>\n  return %0 : tensor<f32>\n"
    )


# --- write_manifest / read_manifest --------------------------------------------------------


def test_write_read_round_trip_leaves_only_the_manifest(tmp_path, manifest):
    path = write_manifest(tmp_path, manifest)
    assert path == tmp_path / MANIFEST_FILE
    assert path.read_text() == json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    assert read_manifest(tmp_path) == manifest
    changed = {**manifest, "lineage": [{"kind": "freeze"}]}
    write_manifest(tmp_path, changed)  # replaces the old one
    assert read_manifest(tmp_path) == changed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SHA256SUMS", MANIFEST_FILE]  # no temp


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), ("{not json", "not valid JSON"), ("[1, 2]", "JSON object")],
)
def test_read_manifest_names_the_file_when_missing_or_corrupt(tmp_path, content, message):
    if content is not None:  # recorded as written, so only its content is wrong
        write_recorded(tmp_path / MANIFEST_FILE, content)
    with pytest.raises(ValueError, match=message) as error:
        read_manifest(tmp_path)
    assert str(tmp_path / MANIFEST_FILE) in str(error.value)


def test_read_manifest_refuses_a_manifest_changed_after_it_was_written(tmp_path, manifest):
    path = write_manifest(tmp_path, manifest)
    path.write_text(path.read_text().replace('"seed": 7', '"seed": 8'))  # still valid JSON
    with pytest.raises(ValueError, match="damaged or changed since flaxfit wrote it") as error:
        read_manifest(tmp_path)
    assert str(path) in str(error.value)
    (tmp_path / "SHA256SUMS").unlink()
    with pytest.raises(ValueError, match="SHA256SUMS: missing"):
        read_manifest(tmp_path)


def test_read_manifest_names_a_missing_directory(tmp_path):
    with pytest.raises(ValueError, match="no such run directory") as error:
        read_manifest(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(error.value)


# --- diff_runs -----------------------------------------------------------------------------


def test_runs_differing_in_one_flag_differ_in_exactly_that_field(tmp_path, dataset):
    # eval_batch_size leaves the train step alone; created and command differ but are ignored.
    a = TrainConfig(model="softmax", batch_size=BATCH)
    b = TrainConfig(model="softmax", batch_size=BATCH, eval_batch_size=100)
    manifests = [
        build_manifest(config, dataset, abstract_state(config), command=[command])
        for config, command in ((a, "x"), (b, "y"))
    ]
    run_a, run_b = write_run(tmp_path / "a", manifests[0]), write_run(tmp_path / "b", manifests[1])
    assert diff_runs(run_a, run_b) == [Difference("config", "config.eval_batch_size", 250, 100)]
    assert diff_runs(run_a, run_a) == []


def changed(manifest, path, value):
    result = copy.deepcopy(manifest)
    *parents, last = path
    target = result
    for name in parents:
        target = target[name]
    if value is ABSENT:
        del target[last]
    else:
        target[last] = value
    return result


@pytest.mark.parametrize(
    ("path", "value", "category", "key"),
    [
        (("flaxfit",), "9.9.9", "code", "flaxfit"),
        (("train_step_hash",), "f" * 64, "code", "train_step_hash"),
        (("packages", "jax"), "0.0.1", "libraries", "packages.jax"),
        (("python",), "3.0.0", "libraries", "python"),
        (("devices",), ["NVIDIA H100"], "platform", "devices"),
        (("xla_flags",), "--xla_foo", "platform", "xla_flags"),
        (("jax_env", "JAX_ENABLE_X64"), "1", "platform", "jax_env.JAX_ENABLE_X64"),
        (("dataset", "content_sha256"), "0" * 64, "data", "dataset.content_sha256"),
        (
            ("dataset", "sha256", "train-images-idx3-ubyte.gz"),
            "3" * 64,
            "data",
            "dataset.sha256.train-images-idx3-ubyte.gz",
        ),
        (("config", "lr"), 0.5, "config", "config.lr"),
        (("config", "clip_norm"), ABSENT, "config", "config.clip_norm"),
    ],
)
def test_each_difference_lands_in_its_category(tmp_path, manifest, path, value, category, key):
    other = changed(manifest, path, value)
    run_a = write_run(tmp_path / "a", manifest)
    run_b = write_run(tmp_path / "b", other)
    a_value = manifest
    for name in path:
        a_value = a_value.get(name, ABSENT)
    assert diff_runs(run_a, run_b) == [Difference(category, key, a_value, value)]


def test_differences_come_in_category_order(tmp_path, manifest):
    other = changed(manifest, ("config", "lr"), 0.5)
    other = changed(other, ("dataset", "source"), "elsewhere")
    other = changed(other, ("backend",), "gpu")
    other = changed(other, ("packages", "optax"), "0.0.1")
    other = changed(other, ("train_step_hash",), "f" * 64)
    differences = diff_runs(write_run(tmp_path / "a", manifest), write_run(tmp_path / "b", other))
    assert [d.category for d in differences] == ["code", "libraries", "platform", "data", "config"]


def test_diff_reads_config_json_when_the_manifest_has_no_config(tmp_path, manifest):
    bare = changed(manifest, ("config",), ABSENT)
    run_a = write_run(tmp_path / "a", bare)
    run_b = write_run(tmp_path / "b", manifest)
    write_recorded(run_a / "config.json", json.dumps({**manifest["config"], "epochs": 9}))
    assert diff_runs(run_a, run_b) == [
        Difference("config", "config.epochs", 9, manifest["config"]["epochs"])
    ]
    (run_a / "config.json").unlink()
    with pytest.raises(ValueError, match="config.json"):
        diff_runs(run_a, run_b)


# --- Difference, format_diff, diff_runs_main -----------------------------------------------


def test_difference_prints_as_key_old_arrow_new():
    assert str(Difference("config", "config.lr", 0.001, 0.002)) == "config.lr: 0.001 -> 0.002"
    assert str(Difference("config", "config.clip_norm", ABSENT, None)) == (
        "config.clip_norm: <absent> -> null"
    )
    assert str(Difference("platform", "xla_flags", "", "--x")) == 'xla_flags: "" -> "--x"'


def test_format_diff_groups_by_category():
    differences = [
        Difference("code", "train_step_hash", "aa", "bb"),
        Difference("config", "config.lr", 0.001, 0.002),
        Difference("config", "config.seed", 0, 1),
    ]
    assert format_diff(differences, "runs/a", "runs/b") == "\n".join(
        [
            "runs runs/a and runs/b: 3 differences in code, config",
            "code:",
            '  train_step_hash: "aa" -> "bb"',
            "config:",
            "  config.lr: 0.001 -> 0.002",
            "  config.seed: 0 -> 1",
        ]
    )
    assert format_diff([], "A", "B") == (
        "runs A and B match in code, libraries, platform, data and config"
    )


def test_diff_runs_main_exits_like_diff(tmp_path, manifest, capsys):
    run_a = write_run(tmp_path / "a", manifest)
    run_b = write_run(tmp_path / "b", changed(manifest, ("config", "lr"), 0.5))
    run_c = write_run(tmp_path / "c", changed(manifest, ("created",), "2000-01-01T00:00:00+00:00"))

    assert diff_runs_main(str(run_a), str(run_c)) == 0
    assert capsys.readouterr().out == (
        f"runs {run_a} and {run_c} match in code, libraries, platform, data and config\n"
    )
    assert diff_runs_main(str(run_a), str(run_b)) == 1
    assert capsys.readouterr().out == (
        f"runs {run_a} and {run_b}: 1 difference in config\n"
        f"config:\n  config.lr: {manifest['config']['lr']} -> 0.5\n"
    )


def test_diff_runs_main_raises_value_error_for_a_missing_run(tmp_path, manifest):
    run_a = write_run(tmp_path / "a", manifest)
    with pytest.raises(ValueError, match="no such run directory"):
        diff_runs_main(str(run_a), str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=MANIFEST_FILE):
        diff_runs_main(str(tmp_path / "empty"), str(run_a))
