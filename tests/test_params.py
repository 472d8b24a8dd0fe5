"""flaxfit.models.params: paths, get/replace/select, sizes, transfer, freeze, lineage records."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flaxfit import DoubleLayerCNN, SingleLayerCNN, SoftmaxRegression, create_train_state, fit
from flaxfit.models import params as P
from helpers import make_digits

CNN1_PATHS = [
    "Conv_0/bias", "Conv_0/kernel", "Dense_0/bias", "Dense_0/kernel", "Dense_1/bias",
    "Dense_1/kernel",
]  # fmt: skip


def init(model, seed=0):
    return create_train_state(model, jax.random.key(seed)).params


@pytest.fixture(scope="module")
def cnn1():
    return jax.device_get(init(SingleLayerCNN()))


def test_flatten_names_arrays_by_slash_paths_and_unflatten_inverts_it(cnn1):
    flat = P.flatten(cnn1)
    assert list(flat) == CNN1_PATHS
    assert flat["Conv_0/kernel"] is cnn1["Conv_0"]["kernel"]
    again = P.unflatten(flat)
    assert jax.tree.structure(again) == jax.tree.structure(cnn1)
    assert all(a is b for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(cnn1), strict=True))


def test_get_returns_the_array_or_names_the_paths_there_are(cnn1):
    assert P.get(cnn1, "Dense_1/bias").shape == (10,)
    with pytest.raises(P.ParamsError, match=r"no parameter 'Dense_2/bias'; .*Dense_1/kernel"):
        P.get(cnn1, "Dense_2/bias")


def test_replace_returns_a_new_dict_and_leaves_the_input_alone(cnn1):
    zeros = np.zeros((10,), np.float32)
    before = np.array(cnn1["Dense_1"]["bias"])
    edited = P.replace(cnn1, "Dense_1/bias", zeros)
    assert np.array_equal(edited["Dense_1"]["bias"], zeros)
    assert np.array_equal(cnn1["Dense_1"]["bias"], before)  # untouched
    assert edited["Conv_0"]["kernel"] is cnn1["Conv_0"]["kernel"]  # the rest is shared


def test_replace_checks_shape_and_dtype(cnn1):
    with pytest.raises(
        P.ParamsError, match=r"Dense_1/bias: expected float32\[10\], got float32\[9\]"
    ):
        P.replace(cnn1, "Dense_1/bias", np.zeros(9, np.float32))
    with pytest.raises(P.ParamsError, match=r"got float64\[10\]; cast it with \.astype\(float32\)"):
        P.replace(cnn1, "Dense_1/bias", np.zeros(10))
    with pytest.raises(P.ParamsError, match="no parameter 'Dense_1/weight'"):
        P.replace(cnn1, "Dense_1/weight", np.zeros(10, np.float32))


def test_select_by_glob(cnn1):
    assert list(P.select(cnn1, "Conv_*/*")) == ["Conv_0/bias", "Conv_0/kernel"]
    assert list(P.select(cnn1, "*/bias")) == ["Conv_0/bias", "Dense_0/bias", "Dense_1/bias"]
    assert list(P.select(cnn1, "Dense_1/kernel", "Conv_0/bias")) == [
        "Conv_0/bias",
        "Dense_1/kernel",
    ]
    assert P.select(cnn1, "conv_*/*") == {}  # case matters, as in the paths
    with pytest.raises(P.ParamsError, match="--freeze pattern 'conv_0/\\*' matches no parameter"):
        P.check_patterns(cnn1, ["Conv_0/*", "conv_0/*"], "--freeze")


def test_counts_and_bytes_per_path_and_in_total(cnn1):
    infos = {info.path: info for info in P.describe(cnn1)}
    assert infos["Conv_0/kernel"] == P.ParamInfo(
        "Conv_0/kernel", (5, 5, 1, 16), "float32", 400, 1600
    )
    assert infos["Dense_0/kernel"].count == 14 * 14 * 16 * 1024
    assert P.count(cnn1) == 3_222_954
    assert P.nbytes(cnn1) == 4 * 3_222_954
    assert P.count(init(SoftmaxRegression())) == 7850


def test_statistics_of_an_array():
    stats = P.statistics(np.array([0.0, 3.0, -4.0, 1.0], np.float32))
    assert stats == {"mean": 0.0, "std": pytest.approx(np.std([0, 3, -4, 1])), "min": -4.0,
                     "max": 3.0, "norm": pytest.approx(np.sqrt(26)), "zeros": 0.25}  # fmt: skip


def test_array_sha256_changes_with_any_bit_shape_or_dtype():
    a = np.arange(6, dtype=np.float32)
    assert P.array_sha256(a) == P.array_sha256(a.copy())
    b = a.copy()
    b[3] = np.nextafter(b[3], np.float32(10))
    assert P.array_sha256(b) != P.array_sha256(a)
    assert P.array_sha256(a.reshape(2, 3)) != P.array_sha256(a)
    assert P.array_sha256(a.astype(np.int32)) != P.array_sha256(a.astype(np.float32))


def test_transfer_between_models_reports_matches_shapes_and_missing(cnn1):
    target = jax.device_get(init(DoubleLayerCNN(), seed=1))
    new, report = P.transfer(cnn1, target)
    # cnn2's flattened features are 7*7*64 = 3136, as cnn1's 14*14*16: the dense layers fit.
    assert report.matched == ("Dense_0/bias", "Dense_0/kernel", "Dense_1/bias", "Dense_1/kernel")
    assert report.mismatched == (
        ("Conv_0/bias", "float32[16]", "float32[32]"),
        ("Conv_0/kernel", "float32[5, 5, 1, 16]", "float32[5, 5, 1, 32]"),
    )
    assert report.missing == ("Conv_1/bias", "Conv_1/kernel")
    assert report.unused == ()
    assert np.array_equal(new["Dense_0"]["kernel"], cnn1["Dense_0"]["kernel"])
    assert np.array_equal(new["Conv_0"]["kernel"], target["Conv_0"]["kernel"])  # kept fresh
    assert "different shape or dtype, kept fresh 2: Conv_0/bias" in report.format()
    with pytest.raises(P.ParamsError, match="strict transfer failed: matched 4: .*; not in the"):
        P.transfer(cnn1, target, strict=True)


def test_transfer_only_selected_paths_and_as_copies(cnn1):
    target = jax.device_get(init(SingleLayerCNN(), seed=1))
    new, report = P.transfer(cnn1, target, only=["Conv_0/*"], strict=True)
    assert report.matched == ("Conv_0/bias", "Conv_0/kernel")
    assert report.not_selected == (
        "Dense_0/bias",
        "Dense_0/kernel",
        "Dense_1/bias",
        "Dense_1/kernel",
    )
    assert np.array_equal(new["Conv_0"]["kernel"], cnn1["Conv_0"]["kernel"])
    assert np.array_equal(new["Dense_0"]["bias"], target["Dense_0"]["bias"])
    new["Conv_0"]["kernel"][0, 0, 0, 0] += 1.0  # a copy: the source run's arrays are safe
    assert new["Conv_0"]["kernel"][0, 0, 0, 0] != cnn1["Conv_0"]["kernel"][0, 0, 0, 0]
    with pytest.raises(P.ParamsError, match="--only pattern 'Conv_1/\\*' matches no parameter"):
        P.transfer(cnn1, target, only=["Conv_1/*"])


def test_frozen_arrays_stay_bit_identical_through_training_and_the_others_move():
    model = SingleLayerCNN()
    tx = P.freeze(optax.adam(1e-3), ["Conv_0/*", "Dense_1/bias"])
    state = create_train_state(model, jax.random.key(0), tx)
    start = jax.device_get(state.params)
    state, history = fit(state, make_digits(320), epochs=2, batch_size=64, verbose=False)
    end = jax.device_get(state.params)
    for path in CNN1_PATHS:
        same = np.array_equal(P.get(end, path), P.get(start, path))
        assert same == (path in ("Conv_0/bias", "Conv_0/kernel", "Dense_1/bias")), path
    assert history["train_loss"][-1] < history["train_loss"][0]


def test_freeze_labels():
    labels = P.freeze_labels(init(SoftmaxRegression()), ["*/kernel"])
    assert labels == {"Dense_0": {"bias": "trainable", "kernel": "frozen"}}


def test_lineage_records_replace_transfer_and_freeze(cnn1):
    lineage = P.Lineage()
    zeros = np.zeros((10,), np.float32)
    edited = lineage.replace(cnn1, "Dense_1/bias", zeros)
    target = jax.device_get(init(SingleLayerCNN(), seed=1))
    lineage.transfer(edited, target, only=["Dense_1/*"], source_run="runs/A")
    lineage.freeze(target, ["Dense_1/bias"])
    replace, transfer, freeze = lineage.records
    assert replace == {
        "op": "replace", "path": "Dense_1/bias", "shape": [10], "dtype": "float32",
        "sha256": P.array_sha256(zeros), "sha256_before": P.array_sha256(cnn1["Dense_1"]["bias"]),
    }  # fmt: skip
    assert transfer["op"] == "transfer" and transfer["source_run"] == "runs/A"
    assert [a["path"] for a in transfer["arrays"]] == ["Dense_1/bias", "Dense_1/kernel"]
    assert transfer["arrays"][0]["sha256"] == P.array_sha256(zeros)  # of the source arrays
    assert freeze["patterns"] == ["Dense_1/bias"]
    assert freeze["arrays"][0]["sha256"] == P.array_sha256(target["Dense_1"]["bias"])


def test_params_of_a_trained_state_can_be_read_and_rewritten_on_device():
    state = create_train_state(SoftmaxRegression(), jax.random.key(0))
    kernel = P.get(state.params, "Dense_0/kernel")
    assert isinstance(kernel, jax.Array)
    edited = P.replace(state.params, "Dense_0/kernel", jnp.zeros_like(kernel))
    assert float(jnp.abs(P.get(edited, "Dense_0/kernel")).sum()) == 0.0
