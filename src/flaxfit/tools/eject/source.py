"""Python source of the functions and classes fit() runs, with what they need from their modules.

`closure([obj, ...])` collects each object's source (`inspect.getsource`), then,
name by name, what that source uses from its module: another function or class
of flaxfit or of the user's model file (its source, recursively), a module-level
assignment (`NUM_CLASSES = 10`, `Impl = Literal[...]`: the statement itself), or
an import of an allowed package (the module's own import line). Anything else, a
flaxfit module used as a namespace, say, or a package outside jax, flax, optax,
numpy and the standard library, raises `EjectError` naming it and why.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import sys
import textwrap
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

#: Top-level packages an ejected file may import, besides the standard library.
ALLOWED_PACKAGES = frozenset({"jax", "flax", "optax", "numpy"})
LINE_LENGTH = 100


class EjectError(ValueError):
    """The run or config cannot be written out as a plain file; says which part and why."""


def is_allowed_module(name: str) -> bool:
    """Whether an ejected file may import module `name`: jax, flax, optax, numpy or stdlib."""
    top = name.split(".")[0]
    return top in ALLOWED_PACKAGES or top in sys.stdlib_module_names


def strip_docstring(source: str) -> str:
    """`source` (one def or class) with its docstrings cut to their first line.

    The first line says what the piece is; the rest documents flaxfit's options,
    which the ejected file does not have.
    """
    tree = ast.parse(source)
    lines = source.splitlines()
    cuts = []
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
            continue
        first = body[0] if body else None
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
            and "\n\n" in first.value.value.strip()
        ):
            cuts.append(first)
    for node in sorted(cuts, key=lambda n: -n.lineno):
        indent = lines[node.lineno - 1][: node.col_offset]
        quote = lines[node.lineno - 1][node.col_offset :][:3]
        # The first paragraph, as it was written (its lines already fit the line length).
        paragraph = lines[node.lineno - 1 : node.end_lineno]
        end = next((i for i, line in enumerate(paragraph) if not line.strip()), len(paragraph))
        kept = paragraph[:end]
        if len(kept) == 1 and len(kept[0]) + len(quote) <= LINE_LENGTH:
            kept[0] += quote
        else:
            kept.append(f"{indent}{quote}")
        lines[node.lineno - 1 : node.end_lineno] = kept
    return "\n".join(lines)


def _used_names(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def _module_tree(module: ModuleType) -> ast.Module:
    return ast.parse(inspect.getsource(module))


@dataclass
class Closure:
    """Definitions in dependency order (each after what it uses) and the import lines."""

    definitions: list[str] = field(default_factory=list)
    imports: set[str] = field(default_factory=set)
    origins: dict[str, str] = field(default_factory=dict)  # name -> "module.qualname"
    #: Names the ejected file defines itself (the run's constants), with their values.
    provided: dict[str, Any] = field(default_factory=dict)
    _done: set[tuple[str, str]] = field(default_factory=set)

    def add(self, obj: Any, *, strip_docs: bool = True) -> None:
        """Add the source of the function or class `obj` and everything it uses."""
        module = sys.modules[obj.__module__]
        self._add_name(module, obj.__name__, obj, strip_docs)

    def add_global(self, module: str, name: str) -> None:
        """Add the module-level definition `name` of `module` (e.g. a constant)."""
        found = sys.modules[module]
        self._add_name(found, name, vars(found)[name], True)

    def _claim(self, name: str, origin: str) -> bool:
        """Record that `name` is `origin`; False if already there, EjectError on a clash."""
        known = self.origins.get(name)
        if known == origin:
            return False
        if known is not None:
            raise EjectError(
                f"{name!r} is both {known} and {origin}; one file cannot hold both under one "
                "name (rename one of them in your model file)"
            )
        self.origins[name] = origin
        return True

    def _add_name(self, module: ModuleType, name: str, value: Any, strip_docs: bool) -> None:
        key = (module.__name__, name)
        if key in self._done:
            return
        self._done.add(key)
        tree = _module_tree(module)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == name:
                if not self._claim(name, f"{module.__name__}.{name}"):
                    return
                source = textwrap.dedent(inspect.getsource(value))
                self._add_uses(module, tree, ast.parse(source), strip_docs)
                self.definitions.append(strip_docstring(source) if strip_docs else source)
                return
        if name in self.provided:
            # flaxfit's modules use NUM_CLASSES (MNIST's 10) only as the default of a
            # `num_classes` option, which the ejected constructor passes when the run's
            # differs; a user's module may use a name anywhere, so a clash there is refused.
            if not _same(self.provided[name], value) and not module.__name__.startswith("flaxfit."):
                raise EjectError(
                    f"{module.__name__} uses {name} = {value!r}, but the run's {name} is "
                    f"{self.provided[name]!r}; pass it to the model as an option instead"
                )
            return
        for node in tree.body:  # a module-level assignment: the statement itself
            targets = _assigned_names(node)
            if name in targets:
                for target in targets:
                    self._claim(target, f"{module.__name__}.{target}")
                    self._done.add((module.__name__, target))
                self._add_uses(module, tree, node, strip_docs)
                self.definitions.append(ast.get_source_segment(inspect.getsource(module), node))
                return
        self._add_import(module, tree, name, value, strip_docs)

    def _add_uses(self, module: ModuleType, tree: ast.Module, node: ast.AST, strip: bool) -> None:
        namespace = vars(module)
        for name in sorted(_used_names(node)):
            if name in namespace and not (
                hasattr(builtins, name) and namespace[name] is getattr(builtins, name)
            ):
                self._add_name(module, name, namespace[name], strip)

    def _add_import(
        self, module: ModuleType, tree: ast.Module, name: str, value: Any, strip: bool
    ) -> None:
        for node in tree.body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if (alias.asname or alias.name.split(".")[0]) == name:
                        self._import_line(module, name, alias.name, None, alias.asname)
                        return
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if (alias.asname or alias.name) != name:
                        continue
                    source = _absolute(module, node)
                    if source.split(".")[0] == "flaxfit" or source == module.__name__:
                        # flaxfit's own (or the model file's) definitions are inlined.
                        origin = importlib.import_module(source)
                        if isinstance(value, ModuleType):
                            raise EjectError(
                                f"{module.__name__} uses the module {source}.{alias.name} as "
                                f"{name!r}; only its functions and classes can be inlined"
                            )
                        self._add_name(origin, alias.name, value, strip)
                        return
                    self._import_line(module, name, source, alias.name, alias.asname)
                    return
        raise EjectError(
            f"{module.__name__} uses {name!r}, which is neither defined nor imported at the top "
            "of its file; define it there so the ejector can copy it"
        )

    def _import_line(
        self, module: ModuleType, name: str, source: str, what: str | None, alias: str | None
    ) -> None:
        if not is_allowed_module(source):
            raise EjectError(
                f"{module.__name__} imports {name!r} from {source}; an ejected file imports only "
                "jax, flax, optax, numpy and the standard library"
            )
        if not self._claim(name, f"import {source}.{what or ''}"):
            return
        tail = f" as {alias}" if alias else ""
        self.imports.add(f"from {source} import {what}{tail}" if what else f"import {source}{tail}")


def _same(a: Any, b: Any) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # values without a plain ==
        return False


def _assigned_names(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        targets = [node.target]
    else:
        return []
    return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]


def _absolute(module: ModuleType, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.__name__ if hasattr(module, "__path__") else module.__name__.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def sorted_imports(lines: set[str]) -> str:
    """Import lines in isort's order: stdlib, then third party; `import` before `from`."""

    def key(line: str) -> tuple[int, int, str]:
        module = line.split()[1]
        third_party = module.split(".")[0] in ALLOWED_PACKAGES
        return (third_party, line.startswith("from"), module.lower() + " " + line)

    merged: dict[str, list[str]] = {}
    for line in lines:
        if line.startswith("from "):
            _, module, _, names = line.split(" ", 3)
            merged.setdefault(f"from {module} import ", []).append(names)
    lines = {line for line in lines if not line.startswith("from ")}
    for head, names in merged.items():
        # "x as y" stays on a line of its own, as isort writes it.
        plain = sorted(n for n in names if " as " not in n)
        lines |= {head + n for n in names if " as " in n}
        if plain:
            lines.add(head + ", ".join(plain))
    ordered = sorted(lines, key=key)
    out: list[str] = []
    for i, line in enumerate(ordered):
        if i and key(line)[0] != key(ordered[i - 1])[0]:
            out.append("")
        out.append(line)
    return "\n".join(out)
