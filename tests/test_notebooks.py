"""Every notebook is committed without outputs and runs top to bottom (quick, no network)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from helpers import write_digits_dir

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name} has outputs; clear them before committing"
            )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_digits_dir(tmp_path_factory.mktemp("idx"), 2000, 300)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FLAXFIT_QUICK", "1")
    monkeypatch.setenv("FLAXFIT_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})  # fmt: skip
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]  # fmt: skip
    assert not errors
    printed = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code"
                      for o in c.outputs)  # fmt: skip
    for line in printed.splitlines():  # the training notebooks really learned
        if line.startswith("test accuracy:"):
            assert float(line.split()[-1].rstrip("%")) > 80, line
        if "filters moved:" in line:  # notebook 5: frozen filters stayed bit-identical
            frozen = line.startswith("dense layers only")
            assert line.strip().endswith("False" if frozen else "True"), line
