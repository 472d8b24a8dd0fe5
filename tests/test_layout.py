"""The tree shows the architecture: data flows one way through folders by stage."""

import ast
from pathlib import Path

import pytest

import flaxfit
from flaxfit._moved import MOVED

PACKAGE = Path(flaxfit.__file__).parent
#: Each stage may import from itself and the stages before it, never after.
STAGES = ("files", "data", "models", "training", "runs", "tools", "cli")


def stage(module: str) -> str | None:
    """'flaxfit.runs.lock' -> 'runs'; None for the package itself and its private glue."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("flaxfit.")}


GLUE = ("__init__.py", "__main__.py", "_moved.py")  # the package's own, at its top
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.name not in GLUE)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_later_stage(path):
    module = "flaxfit." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    own = STAGES.index(stage(module))
    for name in imports(path):
        other = stage(name)
        if other is None:  # the version, and the import glue packages use for their modules
            assert name in ("flaxfit.__version__", "flaxfit._moved.submodule"), (
                f"{module} imports {name}"
            )
            continue
        assert STAGES.index(other) <= own, f"{module} ({STAGES[own]}) imports {name} ({other})"


def test_the_old_module_paths_are_the_new_modules():
    import importlib

    for old, new in MOVED.items():
        assert importlib.import_module(f"flaxfit.{old}") is importlib.import_module(
            f"flaxfit.{new}"
        )
    from flaxfit.serve.app import create_app

    from flaxfit.tools.serve.app import create_app as same

    assert create_app is same
    from importlib import resources

    import flaxfit.serve

    # Still the package it was: its files are found (the page of the digit pad).
    assert flaxfit.serve.__spec__.name == "flaxfit.tools.serve"
    assert (resources.files("flaxfit.tools.serve") / "static" / "index.html").is_file()


def test_no_module_is_left_at_the_top_but_the_base_ones():
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert top == ["__init__", "__main__", "_moved", "cli", "files"]


def test_every_stage_folder_is_a_regular_package():
    # Without its __init__.py a folder still imports (as a namespace package), but a
    # built wheel leaves it out; once a .gitignore rule kept runs/__init__.py out of git.
    for name in STAGES[1:-1]:
        assert (PACKAGE / name / "__init__.py").is_file(), name


@pytest.mark.parametrize("package", ["flaxfit", "flaxfit.models"])
def test_the_lazy_exports_are_the_imports_type_checkers_see(package):
    # Both __init__.py files import their public names on first use; the table that does
    # it at run time must say what their `if TYPE_CHECKING:` imports say.
    import importlib

    module = importlib.import_module(package)
    tree = ast.parse(Path(module.__file__).read_text())
    checked = next(node for node in tree.body if isinstance(node, ast.If))
    seen = {
        alias.asname: (node.module, alias.name)
        for node in checked.body
        for alias in node.names
        if isinstance(node, ast.ImportFrom)
    }
    table = {
        name: where if isinstance(where, tuple) else (where, name)
        for name, where in module._EXPORTS.items()
    }
    # `from flaxfit.models import nnx`, a module of the package itself, needs no entry.
    own = {name for name, (where, _) in seen.items() if where == package}
    assert {name: seen[name] for name in seen if name not in own} == table
    assert sorted(module.__all__) == sorted(seen)
    for name in module.__all__:  # every name resolves, to what the import statement gives
        where, attr = seen[name]
        assert getattr(module, name) is getattr(importlib.import_module(where), attr)
