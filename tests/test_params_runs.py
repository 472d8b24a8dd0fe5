"""Params across runs: --init-from/--only/--freeze, lineage in the manifest, the params, summary
and export commands, and the deck's point (a params dict can be read, rewritten and reused)."""

import json
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from flaxfit import create_train_state, evaluate, fit, load_run, train_run
from flaxfit.cli import main
from flaxfit.models import params as P
from flaxfit.runs.config import TrainConfig
from flaxfit.runs.optim import make_optimizer
from flaxfit.tools.predict import predict_probabilities
from helpers import make_dataset, make_digits, write_digits_dir


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_digits_dir(tmp_path_factory.mktemp("idx"), 600, 200)


@pytest.fixture(scope="module")
def run_a(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "A"
    assert main(["train", "--model", "cnn1", "--epochs", "1", "--batch-size", "100",
                 "--data-dir", str(data_dir), "--out", str(out), "--quiet"]) == 0  # fmt: skip
    return out


def test_init_from_only_and_freeze_start_from_run_a_and_record_the_lineage(
    run_a, data_dir, tmp_path, capsys
):
    out = tmp_path / "B"
    assert main(["train", "--model", "cnn1", "--epochs", "1", "--batch-size", "100",
                 "--data-dir", str(data_dir), "--out", str(out), "--init-from", str(run_a),
                 "--only", "Conv_0/*", "--freeze", "Conv_0/*"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert f"init from {run_a}: matched 2: Conv_0/bias, Conv_0/kernel" in printed
    assert "not selected, kept fresh 4: Dense_0/bias" in printed
    assert "frozen 2 arrays (416 values): Conv_0/bias, Conv_0/kernel" in printed
    a, b = load_run(run_a).params, load_run(out).params
    for path in ("Conv_0/bias", "Conv_0/kernel"):  # transplanted and frozen: bit-identical
        assert np.array_equal(P.get(a, path), P.get(b, path))
    assert not np.allclose(P.get(a, "Dense_0/kernel"), P.get(b, "Dense_0/kernel"))
    lineage = json.loads((out / "manifest.json").read_text())["lineage"]
    transfer, freeze = lineage
    assert transfer["op"] == "transfer" and transfer["source_run"] == str(run_a)
    assert transfer["only"] == ["Conv_0/*"] and transfer["strict"] is False
    assert {r["path"]: r["sha256"] for r in transfer["arrays"]} == {
        path: P.array_sha256(P.get(a, path)) for path in ("Conv_0/bias", "Conv_0/kernel")
    }
    assert freeze["op"] == "freeze" and freeze["patterns"] == ["Conv_0/*"]
    assert [r["shape"] for r in freeze["arrays"]] == [[16], [5, 5, 1, 16]]
    config = json.loads((out / "config.json").read_text())
    assert config["init_from"] == str(run_a) and config["freeze"] == ["Conv_0/*"]


def test_a_frozen_transferred_run_resumes_bit_exactly(tmp_path):
    base = TrainConfig(model="softmax", epochs=1, batch_size=50)
    train_run(base, tmp_path / "source", dataset=make_dataset(300, 100), verbose=False)
    config = TrainConfig(model="softmax", epochs=3, batch_size=50, seed=1, lr=0.01,
                         init_from=str(tmp_path / "source"), freeze=("*/bias",))  # fmt: skip
    whole = train_run(config, tmp_path / "whole", dataset=make_dataset(300, 100), verbose=False)
    train_run(
        config,
        tmp_path / "broken",
        dataset=make_dataset(300, 100),
        verbose=False,
        stop_after_epoch=1,
    )
    resumed = train_run(config, tmp_path / "broken", dataset=make_dataset(300, 100), verbose=False)
    for x, y in zip(jax.tree.leaves(whole.params), jax.tree.leaves(resumed.params), strict=True):
        assert np.array_equal(x, y)
    source = load_run(tmp_path / "source").params
    assert np.array_equal(P.get(resumed.params, "Dense_0/bias"), P.get(source, "Dense_0/bias"))
    assert not np.array_equal(
        P.get(resumed.params, "Dense_0/kernel"), P.get(source, "Dense_0/kernel")
    )


def test_init_params_and_a_users_lineage_reach_the_manifest(tmp_path):
    config = TrainConfig(model="softmax", epochs=1, batch_size=50)
    fresh = jax.device_get(create_train_state(config.make_model(), jax.random.key(7)).params)
    lineage = P.Lineage()
    edited = lineage.replace(fresh, "Dense_0/bias", np.full(10, 0.5, np.float32))
    train_run(config, tmp_path / "r", dataset=make_dataset(300, 100), verbose=False,
              init_params=edited, lineage=lineage)  # fmt: skip
    records = json.loads((tmp_path / "r" / "manifest.json").read_text())["lineage"]
    assert [r["op"] for r in records] == ["replace", "transfer"]
    assert records[0]["sha256"] == P.array_sha256(np.full(10, 0.5, np.float32))
    assert records[1]["strict"] is True and records[1]["source_run"] is None


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--freeze", "Conv9/*"],
            "--freeze pattern 'Conv9/*' matches no parameter; the params "
            "are: Conv_0/bias, Conv_0/kernel",
        ),
        (["--only", "Conv_0/*"], "init_only and init_strict need init_from"),
        (["--init-from", "no/such/run"], "--init-from: no/such/run: no such run directory"),
        (["--init-from", "RUN_A", "--only", "Conv_1/*"], "--only pattern 'Conv_1/*' matches no"),
    ],
    ids=["freeze-typo", "only-alone", "missing-source", "only-typo"],
)
def test_bad_params_flags_fail_in_one_line_and_write_nothing(
    run_a, data_dir, tmp_path, capsys, flags, message
):
    flags = [str(run_a) if f == "RUN_A" else f for f in flags]
    out = tmp_path / "never"
    assert main(["train", "--model", "cnn1", "--data-dir", str(data_dir), "--out", str(out),
                 "--quiet", *flags]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_strict_transfer_between_different_models_fails_and_writes_nothing(
    run_a, data_dir, tmp_path, capsys
):
    out = tmp_path / "never"
    assert main(["train", "--model", "cnn2", "--data-dir", str(data_dir), "--out", str(out),
                 "--init-from", str(run_a), "--init-strict", "--quiet"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "strict transfer failed" in err and "Conv_0/kernel (float32[5, 5, 1, 16] vs" in err
    assert not out.exists()


def test_params_command_lists_paths_shapes_and_statistics(run_a, capsys):
    assert main(["params", "--run", str(run_a)]) == 0
    lines = capsys.readouterr().out.splitlines()
    kernel = next(line for line in lines if line.startswith("Conv_0/kernel"))
    stats = P.statistics(P.get(load_run(run_a).params, "Conv_0/kernel"))
    assert "(5, 5, 1, 16)" in kernel and "400" in kernel and f"{stats['std']:.3g}" in kernel
    assert lines[-1].startswith("6 arrays, 3,222,954 values")
    assert main(["params", "--run", str(run_a), "--select", "*/bias"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("3 arrays, 1,050 values")


def test_summary_command_shows_layers_params_and_flops(capsys):
    assert main(["summary", "--model", "cnn1", "--batch-size", "32"]) == 0
    out = capsys.readouterr().out
    for text in ("Conv_0", "Dense_0", "Dense_1", "float32[1,28,28,16]", "3,222,954", "vjp_flops"):
        assert text in out, text
    per_image = float(out.split("MFLOP (")[1].split(" MFLOP per image")[0])
    assert 15 < per_image < 30  # the deck's cnn1 costs about 21 MFLOP per image to train


def test_summary_falls_back_to_the_compiled_count_where_jax_gives_none_before(monkeypatch):
    from jax.stages import Lowered

    from flaxfit import SoftmaxRegression
    from flaxfit.tools.summary import train_step_cost

    assert train_step_cost(SoftmaxRegression(), 8)["stage"] == "lowered"
    monkeypatch.setattr(Lowered, "cost_analysis", lambda self: None)  # as jax 0.11.2 on a GPU did
    cost = train_step_cost(SoftmaxRegression(), 8)
    assert cost["stage"] == "compiled" and cost["flops"] > 2 * 8 * 784 * 10


EXPORT_CHECK = """
import sys
import numpy as np
from jax import export
exported = export.deserialize(open(sys.argv[1], "rb").read())
images = np.load(sys.argv[2])
np.save(sys.argv[3], np.asarray(exported.call(images)))
np.save(sys.argv[4], np.asarray(exported.call(images[:3])))  # another batch size, same file
assert not [m for m in sys.modules if m.startswith("flaxfit")], "flaxfit was imported"
"""


def test_export_writes_a_file_that_predicts_the_same_without_flaxfit(run_a, tmp_path, capsys):
    out = tmp_path / "cnn1.jaxexport"
    assert main(["export", "--run", str(run_a), "--out", str(out)]) == 0
    assert "for cpu, cuda, tpu" in capsys.readouterr().out
    images = make_digits(7, seed=3)[0].astype(np.float32) / 255
    np.save(tmp_path / "images.npy", images)
    # A fresh interpreter that never imports flaxfit (nor its models) reads the file.
    subprocess.run([sys.executable, "-c", EXPORT_CHECK, str(out), str(tmp_path / "images.npy"),
                    str(tmp_path / "p7.npy"), str(tmp_path / "p3.npy")],
                   check=True, cwd=tmp_path)  # fmt: skip
    run = load_run(run_a)
    expected = predict_probabilities(run.model, run.params, images)
    # Two separately compiled programs: equal on CPU to rounding, and within TF32's on a GPU.
    np.testing.assert_allclose(np.load(tmp_path / "p7.npy"), expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "p3.npy"), expected[:3], rtol=1e-4, atol=1e-6)


def test_export_default_path_and_onnx_answer(run_a, capsys):
    assert main(["export", "--run", str(run_a), "--format", "onnx"]) == 2
    assert "--format onnx: not available" in capsys.readouterr().err
    assert main(["export", "--run", str(run_a)]) == 0
    assert (run_a / "predict.jaxexport").stat().st_size > 4 * 3_222_954  # params inside


def test_the_decks_point_filters_can_be_zeroed_transplanted_and_frozen(run_a):
    """Slide 17: params are a dict. Zero one trained filter; reuse the filters in a new model."""
    run = load_run(run_a)
    train, test = make_digits(600, seed=0), make_digits(200, seed=1)
    state = create_train_state(run.model, jax.random.key(0)).replace(params=run.params)
    base = evaluate(state, test)["accuracy"]

    filters = P.get(run.params, "Conv_0/kernel")  # (5, 5, 1, 16)
    strongest = int(np.abs(filters).sum(axis=(0, 1, 2)).argmax())
    zeroed = np.array(filters)
    zeroed[..., strongest] = 0.0
    edited = P.replace(run.params, "Conv_0/kernel", zeroed)
    after = evaluate(state.replace(params=edited), test)["accuracy"]
    changed = [
        p for p in P.flatten(edited) if not np.array_equal(P.get(edited, p), P.get(run.params, p))
    ]
    assert changed == ["Conv_0/kernel"] and np.all(
        P.get(edited, "Conv_0/kernel")[..., strongest] == 0
    )
    print(f"trained {100 * base:.1f}%, filter {strongest} zeroed {100 * after:.1f}%")

    results = {}
    for name, freeze in (("dense only", ["Conv_0/*"]), ("everything", [])):
        config = TrainConfig(model="cnn1", epochs=1, batch_size=50, freeze=tuple(freeze))
        fresh = create_train_state(run.model, jax.random.key(1), make_optimizer(config, 12))
        params, _ = P.transfer(run.params, fresh.params, only=["Conv_0/*"], strict=True)
        start = fresh.replace(params=params, opt_state=fresh.tx.init(params))
        began = time.perf_counter()
        trained, history = fit(start, train, test, epochs=1, batch_size=50, verbose=False)
        results[name] = (history.last["test_accuracy"], time.perf_counter() - began)
        moved = not np.array_equal(P.get(trained.params, "Conv_0/kernel"), filters)
        assert moved == (not freeze), name
    print(
        {name: f"{100 * acc:.1f}% in {seconds:.1f} s" for name, (acc, seconds) in results.items()}
    )
    # The tiny run A (6 steps) scores about 70%; one more epoch either way lifts that well past 80%.
    assert results["dense only"][0] > 0.8 and results["everything"][0] > 0.8
