"""Build flaxfit's documentation site: `make docs`, or `python docs/build.py`.

1. Notebooks. Each notebooks/*.ipynb is rendered with its outputs. The notebooks are
   committed without outputs, so they come executed from build/notebooks: the test
   suite leaves a copy there of each notebook it ran and checked (`make test` sets
   FLAXFIT_EXECUTED_NOTEBOOKS), stamped with the sha256 of the notebook it ran. A copy
   whose stamp differs from the committed notebook is stale and is not used: the
   notebook is executed here instead, on the real MNIST, the way the tests run it.
2. Sources. Each language's site is staged in build/docs/src-LANG: its guides
   (docs/LANG), the shared reference pages (docs/reference, in English), the pictures
   (docs/images) and the executed notebooks.
3. Sphinx builds each into docs/_build/html/LANG with warnings as errors (a broken
   link or cross-reference, a public name without a docstring, a page missing in one
   language); docs/_build/html/index.html leads to en/.

Open docs/_build/html/index.html in a browser, or serve the folder:
`python -m http.server -d docs/_build/html 8000 --bind 127.0.0.1`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
NOTEBOOKS = ROOT / "notebooks"
EXECUTED = Path(os.environ.get("FLAXFIT_EXECUTED_NOTEBOOKS", ROOT / "build" / "notebooks"))
STAGE = ROOT / "build" / "docs"
OUT = DOCS / "_build" / "html"
LANGUAGES = ("en", "ja")
SHARED = ("reference", "images")  # staged into both sites as they are
STAMP = "source_sha256"  # metadata["flaxfit"][STAMP]: the notebook an executed copy ran


def source_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_current(executed: Path, source: Path) -> bool:
    """Whether `executed` holds the outputs of `source` exactly as committed."""
    import nbformat

    if not executed.is_file():
        return False
    notebook = nbformat.read(executed, as_version=4)
    return notebook.metadata.get("flaxfit", {}).get(STAMP) == source_sha256(source)


def execute(source: Path, executed: Path) -> None:
    """Run `source` top to bottom in a fresh kernel, as a learner opens it, into `executed`."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(source, as_version=4)
    os.environ.pop("MPLBACKEND", None)  # the kernel inherits it: keep its inline backend
    with tempfile.TemporaryDirectory() as cwd:
        client = NotebookClient(notebook, timeout=1800, kernel_name="python3",
                                resources={"metadata": {"path": cwd}})  # fmt: skip
        client.execute()  # raises CellExecutionError, naming the cell, on any error
    notebook.metadata.setdefault("flaxfit", {})[STAMP] = source_sha256(source)
    executed.parent.mkdir(parents=True, exist_ok=True)
    partial = executed.with_suffix(".ipynb.partial")
    nbformat.write(notebook, partial)
    partial.replace(executed)


def executed_notebooks(run_stale: bool) -> list[Path]:
    """One current executed copy per notebook, executing the ones that have none."""
    copies = []
    for source in sorted(NOTEBOOKS.glob("*.ipynb")):
        executed = EXECUTED / source.name
        if not is_current(executed, source):
            if not run_stale:
                raise SystemExit(f"error: {executed} is missing or was executed from another "
                                 f"version of {source.name}; run `make test` (which leaves "
                                 "executed copies) or build without --no-execute")  # fmt: skip
            print(f"executing {source.relative_to(ROOT)} (no current copy in {EXECUTED})",
                  flush=True)  # fmt: skip
            started = time.perf_counter()
            execute(source, executed)
            print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)
        copies.append(executed)
    return copies


def stage(language: str, notebooks: list[Path]) -> Path:
    """build/docs/src-LANG, made afresh: the guides, the shared pages and the notebooks."""
    source = STAGE / f"src-{language}"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(DOCS / language, source)
    for shared in SHARED:
        shutil.copytree(DOCS / shared, source / shared)
    (source / "notebooks").mkdir()
    for notebook in notebooks:
        shutil.copy2(notebook, source / "notebooks" / notebook.name)
    return source


def sphinx(language: str, source: Path) -> None:
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-E", "-q", "-W", "--keep-going",
               "-c", str(DOCS), "-D", f"language={language}", str(source), str(OUT / language)]
    result = subprocess.run(command, cwd=ROOT)  # fmt: skip
    if result.returncode:
        raise SystemExit(f"error: the {language} site has warnings or errors (above); "
                         "the docs build treats every warning as an error")  # fmt: skip


ROOT_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>flaxfit</title>
<meta http-equiv="refresh" content="0; url=en/index.html"></head>
<body><p><a href="en/index.html">flaxfit documentation</a> ·
<a href="ja/index.html" lang="ja">flaxfit ドキュメント</a></p></body></html>
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-execute", action="store_true",
                        help="fail instead of executing a notebook that has no current "
                             "executed copy")  # fmt: skip
    args = parser.parse_args(argv)
    started = time.perf_counter()
    notebooks = executed_notebooks(run_stale=not args.no_execute)
    staged = {language: stage(language, notebooks) for language in LANGUAGES}
    for language in LANGUAGES:
        sphinx(language, staged[language])
    (OUT / "index.html").write_text(ROOT_PAGE, encoding="utf-8")
    print(f"docs: {OUT / 'index.html'} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
