"""The docs build's own checks, each shown to catch what it is for: a public name with no
docstring of its own, a table's `#:` comment found where the name is defined, and an
executed notebook that no longer matches the committed one."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import nbformat
import pytest

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS))

import flaxfit_docs  # noqa: E402

import build  # noqa: E402


def test_own_docstring_ignores_inherited_and_generated_ones():
    class Documented(ValueError):
        """Raised when the documented thing happens."""

    class Undocumented(ValueError):  # inherits ValueError's docstring
        pass

    @dataclasses.dataclass
    class Record:  # the dataclass makes up "Record(a: int)"
        a: int

    assert flaxfit_docs.own_docstring(Documented) == "Raised when the documented thing happens."
    assert flaxfit_docs.own_docstring(Undocumented) is None
    assert flaxfit_docs.own_docstring(Record) is None
    assert flaxfit_docs.own_docstring(lambda: None) is None


def test_every_public_name_is_documented():
    """What the API page enforces at build time, checked without building it."""
    import flaxfit

    missing = [name for name in flaxfit.__all__
               if not flaxfit_docs._rst_for(name, getattr(flaxfit, name))[2]]  # fmt: skip
    assert not missing, missing


def test_a_table_is_documented_where_it_is_defined():
    module = flaxfit_docs.defining_module("flaxfit.models", "MODELS")
    assert module == "flaxfit.models.registry"
    assert "cnn1" in flaxfit_docs.data_docstring(module, "MODELS")
    assert flaxfit_docs.data_docstring(module, "NOT_THERE") is None


def test_a_stale_executed_notebook_is_refused(tmp_path):
    source = tmp_path / "notebook.ipynb"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    nbformat.write(notebook, source)
    executed = tmp_path / "executed.ipynb"
    assert not build.is_current(executed, source)  # no copy at all

    notebook.metadata["flaxfit"] = {build.STAMP: build.source_sha256(source)}
    nbformat.write(notebook, executed)
    assert build.is_current(executed, source)

    notebook.cells[0].source = "print(2)"  # the committed notebook changes afterwards
    nbformat.write(notebook, source)
    assert not build.is_current(executed, source)


def test_no_execute_names_the_stale_notebook(tmp_path, monkeypatch):
    (tmp_path / "nb").mkdir()
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "nb" / "a.ipynb")
    monkeypatch.setattr(build, "NOTEBOOKS", tmp_path / "nb")
    monkeypatch.setattr(build, "EXECUTED", tmp_path / "executed")
    with pytest.raises(SystemExit, match=r"a\.ipynb is missing or was executed from another"):
        build.executed_notebooks(run_stale=False)
