"""Specialise the ejected file's copied source to the run: no branches for options it never uses.

The source eject copies is written for every option; the run uses one value of each.
`specialise(source)` rewrites the text (comments and layout kept, edits made on lines
and spans, never by unparsing) with three rules, repeated until none applies:

- a parameter (or a Flax module's field) gets the same literal at every call in the
  file, and the name is used nowhere but in those calls: an `if` whose test is then
  known keeps only the branch taken, statements after a `return` or `raise` go, and
  the parameter, once unused, leaves the signature and every call;
- in the functions named in `validated` (ones eject has already called with the run's
  values), a guard `if ...: raise ...` at the top of the body goes;
- a module-level definition that the edits left unused goes (one unused before stays).

Anything it cannot follow (a name passed around as a value, `*args`, a decorated function,
a class with its own `__init__` or subclasses) it leaves as written.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from typing import Any

_UNKNOWN = object()


def _offsets(text: str) -> list[int]:
    """Character offset of the start of each line (1-based line numbers: index 0 unused)."""
    starts = [0, 0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def _at(text: str, starts: list[int], line: int, col: int) -> int:
    """Character offset of (line, utf-8 byte column), as ast reports positions."""
    begin = starts[line]
    end = text.find("\n", begin)
    row = text[begin : end if end >= 0 else len(text)]
    return begin + len(row.encode()[:col].decode())


def _span(text: str, starts: list[int], node: ast.AST) -> tuple[int, int]:
    return (_at(text, starts, node.lineno, node.col_offset),
            _at(text, starts, node.end_lineno, node.end_col_offset))  # fmt: skip


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


class _Facts:
    """What is known of each function's parameters and each module class's fields."""

    def __init__(self, tree: ast.Module) -> None:
        # A decorator (jax.jit's static_argnames, say) may name the parameters: not followed.
        self.functions = {
            n.name: n for n in tree.body if isinstance(n, ast.FunctionDef) and not n.decorator_list
        }
        bases = {b.id for n in ast.walk(tree) if isinstance(n, ast.ClassDef) for b in n.bases
                 if isinstance(b, ast.Name)}  # fmt: skip
        self.classes = {
            n.name: n
            for n in tree.body
            if isinstance(n, ast.ClassDef) and n.bases and n.name not in bases
            and not n.decorator_list
            and not any(isinstance(s, ast.FunctionDef) and s.name in ("__init__", "__post_init__",
                        "setup") for s in n.body)
        }  # fmt: skip
        self.calls: dict[str, list[ast.Call]] = {}
        escaped = set()
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        self.parents = parents
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in self.functions | self.classes:
                parent = parents.get(node)
                if isinstance(parent, ast.Call) and parent.func is node:
                    self.calls.setdefault(node.id, []).append(parent)
                else:
                    escaped.add(node.id)
        self.tracked = {name for name in self.calls if name not in escaped}
        self.known: dict[str, dict[str, Any]] = {}
        for _ in range(20):  # each round may learn what the next depends on
            known = {name: self._learn(name) for name in self.tracked}
            if known == self.known:
                break
            self.known = known

    def parameters(self, name: str) -> list[tuple[str, ast.expr | None, bool]]:
        """(name, default, positional) of a function's parameters or a class's fields."""
        if name in self.functions:
            args = self.functions[name].args
            positional = args.posonlyargs + args.args
            defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
            out = [(a.arg, d, True) for a, d in zip(positional, defaults, strict=True)]
            return out + [(a.arg, d, False) for a, d in
                          zip(args.kwonlyargs, args.kw_defaults, strict=True)]  # fmt: skip
        return [(s.target.id, s.value, True) for s in self.classes[name].body
                if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)]  # fmt: skip

    def bind(self, name: str, call: ast.Call) -> dict[str, ast.expr | None] | None:
        """The argument (or default) each parameter gets at `call`; None when unclear."""
        params = self.parameters(name)
        if name in self.functions:
            a = self.functions[name].args
            if a.vararg or a.kwarg:
                return None
        if any(isinstance(arg, ast.Starred) for arg in call.args):
            return None
        positional = [p for p in params if p[2]]
        if len(call.args) > len(positional):
            return None
        bound: dict[str, ast.expr | None] = {
            p[0]: arg for p, arg in zip(positional, call.args, strict=False)
        }
        names = {p[0] for p in params}
        for keyword in call.keywords:
            if keyword.arg is None:
                return None
            if keyword.arg in names:
                bound[keyword.arg] = keyword.value
            elif name not in self.classes or keyword.arg not in ("name", "parent"):
                return None
        for param, default, _ in params:
            if param not in bound:
                if default is None:
                    return None
                bound[param] = default
        return bound

    def _learn(self, name: str) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for call in self.calls[name]:
            bound = self.bind(name, call)
            if bound is None:
                return {}
            for param, expr in bound.items():
                value = self.value(expr, call)
                if value is _UNKNOWN or (param in values and not _same(values[param], value)):
                    values[param] = _UNKNOWN
                else:
                    values.setdefault(param, value)
        return {p: v for p, v in values.items() if v is not _UNKNOWN}

    def enclosing(self, node: ast.AST) -> tuple[ast.FunctionDef | None, ast.ClassDef | None]:
        function = cls = None
        while node in self.parents:
            node = self.parents[node]
            if isinstance(node, ast.FunctionDef) and function is None:
                function = node
            if isinstance(node, ast.ClassDef):
                cls = node
                break
        return function, cls

    def value(self, expr: ast.expr | None, where: ast.AST) -> Any:
        """The value of `expr` at `where` if known: a literal, a known parameter, self.field."""
        if isinstance(expr, ast.Constant):
            return expr.value
        function, cls = self.enclosing(where)
        if isinstance(expr, ast.Name) and function is not None:
            owner = function.name if cls is None else None
            if (
                owner in self.known
                and expr.id in self.known[owner]
                and not _stored(function, expr.id)
            ):
                return self.known[owner][expr.id]
        if (
            isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name)
            and expr.value.id == "self" and cls is not None and cls.name in self.known
            and expr.attr in self.known[cls.name]
        ):  # fmt: skip
            return self.known[cls.name][expr.attr]
        return _UNKNOWN

    def test(self, expr: ast.expr) -> Any:
        """The truth of an `if` test when it is known (a comparison of known values, not, and,
        or); _UNKNOWN otherwise."""
        if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.Not):
            inner = self.test(expr.operand)
            return _UNKNOWN if inner is _UNKNOWN else not inner
        if isinstance(expr, ast.BoolOp):
            stop = isinstance(expr.op, ast.Or)  # the value that decides the whole
            for result in (self.test(v) for v in expr.values):  # left to right, as Python
                if result is _UNKNOWN:
                    return _UNKNOWN
                if bool(result) == stop:
                    return stop
            return not stop
        if isinstance(expr, ast.Compare) and len(expr.ops) == 1:
            left, right = self.value(expr.left, expr), _literal(expr.comparators[0], self, expr)
            if left is _UNKNOWN or right is _UNKNOWN:
                return _UNKNOWN
            op = type(expr.ops[0])
            compare = {ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b,
                       ast.Is: lambda a, b: a is b, ast.IsNot: lambda a, b: a is not b,
                       ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}  # fmt: skip
            return compare[op](left, right) if op in compare else _UNKNOWN
        value = self.value(expr, expr)
        return _UNKNOWN if value is _UNKNOWN else bool(value)


def _literal(expr: ast.expr, facts: _Facts, where: ast.AST) -> Any:
    if isinstance(expr, ast.Tuple | ast.List | ast.Set) and all(
        isinstance(e, ast.Constant) for e in expr.elts
    ):
        return tuple(e.value for e in expr.elts)
    return facts.value(expr, where)


def _stored(function: ast.FunctionDef, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Store)
               for n in ast.walk(function))  # fmt: skip


def _uses(node: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(node))


def _uses_field(cls: ast.ClassDef, name: str) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr == name and isinstance(n.value, ast.Name)
               and n.value.id == "self" for n in ast.walk(cls))  # fmt: skip


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _replace_lines(text: str, first: int, last: int, new: list[str]) -> str:
    lines = _lines(text)
    lines[first - 1 : last] = new
    return "".join(lines)


def _dedent(lines: list[str], by: int) -> list[str]:
    return [line[by:] if line[:by].strip() == "" else line for line in lines]


def _fold_if(text: str, node: ast.If, taken: bool) -> str:
    """`node` replaced by the branch `taken` selects (its lines dedented to the if's)."""
    lines = _lines(text)
    if taken:
        body = node.body
    elif node.orelse and lines[node.orelse[0].lineno - 1].lstrip().startswith("elif"):
        # `if A: ... elif B: ...` with A false: B's `elif` becomes the `if`.
        head = node.orelse[0].lineno
        lines[head - 1] = re.sub(r"^(\s*)elif", r"\1if", lines[head - 1])
        return _replace_lines("".join(lines), node.lineno, head - 1, [])
    else:
        body = node.orelse
    if not body:
        return _replace_lines(text, node.lineno, node.end_lineno, [])
    first = node.test.end_lineno + 1 if taken else _else_line(lines, node) + 1
    kept = _dedent(lines[first - 1 : body[-1].end_lineno], body[0].col_offset - node.col_offset)
    return _replace_lines(text, node.lineno, node.end_lineno, kept)


def _else_line(lines: list[str], node: ast.If) -> int:
    line = node.body[-1].end_lineno + 1
    while not lines[line - 1].lstrip().startswith("else"):
        line += 1
    return line


def _blocks(tree: ast.AST) -> Iterable[list[ast.stmt]]:
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                yield block


def _argument_range(text: str, starts: list[int], call: ast.Call, node: ast.AST) -> tuple[int, int]:
    """Where `call`'s argument `node` is, with the comma that separates it."""
    items = sorted([*call.args, *call.keywords], key=lambda n: (n.lineno, n.col_offset))
    index = items.index(node)
    begin, end = _span(text, starts, node)
    if index > 0:
        begin = _span(text, starts, items[index - 1])[1]
    elif index + 1 < len(items):
        end = _span(text, starts, items[index + 1])[0]
    return begin, end


def _parameter_range(text: str, starts: list[int], function: ast.FunctionDef, name: str
                     ) -> tuple[int, int]:  # fmt: skip
    """Where parameter `name` (annotation and default too) is in the signature, with its comma."""
    args = function.args
    defaults = dict(zip(args.args[len(args.args) - len(args.defaults) :], args.defaults,
                        strict=True))  # fmt: skip
    index = [a.arg for a in args.args].index(name)

    def end_of(a: ast.arg) -> int:
        return _span(text, starts, defaults.get(a, a))[1]

    begin, end = _span(text, starts, args.args[index])[0], end_of(args.args[index])
    if index > 0:
        begin = end_of(args.args[index - 1])
    elif index + 1 < len(args.args):
        end = _span(text, starts, args.args[index + 1])[0]
    return begin, end


def _drop_parameter(text: str, tree: ast.Module, facts: _Facts, name: str, param: str
                    ) -> str | None:  # fmt: skip
    """`text` without `name`'s parameter (or field) `param` and its argument at every call, if
    `name` no longer reads it; None if it does (or the signature is one not rewritten)."""
    starts = _offsets(text)
    if name in facts.functions:
        function = facts.functions[name]
        a = function.args
        if a.posonlyargs or a.kwonlyargs or any(_uses(s, param) for s in function.body):
            return None
        ranges = [_parameter_range(text, starts, function, param)]
    else:
        cls = facts.classes[name]
        read_elsewhere = any(
            isinstance(n, ast.Attribute) and n.attr == param
            and not (isinstance(n.value, ast.Name) and n.value.id == "self")
            for n in ast.walk(tree)
        )  # fmt: skip
        if read_elsewhere or _uses_field(cls, param):
            return None
        field = next(s for s in cls.body if isinstance(s, ast.AnnAssign)
                     and isinstance(s.target, ast.Name) and s.target.id == param)  # fmt: skip
        ranges = [(starts[field.lineno], starts[field.end_lineno + 1])]
    for call in facts.calls[name]:
        bound = facts.bind(name, call)
        given = [a for a in [*call.args, *call.keywords]
                 if (a.value if isinstance(a, ast.keyword) else a) is bound[param]]  # fmt: skip
        if given:
            ranges.append(_argument_range(text, starts, call, given[0]))
    ranges.sort(reverse=True)
    for (_, end), (later, _) in zip(ranges[1:], ranges, strict=False):
        if end > later:
            return None  # one argument inside another's: left as written
    for begin, end in ranges:
        text = text[:begin] + text[end:]
    return text


def _edits(text: str, validated: frozenset[str], unused_before: set[str]) -> Iterable[str]:
    """Candidate one-step edits of `text`, in the order they are tried."""
    tree = ast.parse(text)
    facts = _Facts(tree)
    for function in facts.functions.values():  # guards eject has already run
        if function.name in validated:
            for statement in function.body:
                guard = isinstance(statement, ast.If) and not statement.orelse
                if guard and [type(s) for s in statement.body] == [ast.Raise]:
                    yield _replace_lines(text, statement.lineno, statement.end_lineno, [])
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and node.body[0].lineno > node.test.end_lineno:
            result = facts.test(node.test)
            if result is not _UNKNOWN:
                yield _fold_if(text, node, bool(result))
    for block in _blocks(tree):
        for statement in block[:-1]:
            if isinstance(statement, ast.Return | ast.Raise):
                yield _replace_lines(text, statement.end_lineno + 1, block[-1].end_lineno, [])
                break
    for name in sorted(facts.tracked):
        for param in facts.known.get(name, {}):
            edited = _drop_parameter(text, tree, facts, name, param)
            if edited is not None:
                yield edited
    used = _used(tree)
    for statement in tree.body:
        names = _defined(statement)
        if names and not names & unused_before and not names & used:
            yield _remove_statement(text, statement)


def _defined(statement: ast.stmt) -> set[str]:
    if isinstance(statement, ast.FunctionDef | ast.ClassDef):
        return {statement.name}
    if isinstance(statement, ast.Assign | ast.AnnAssign):
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        if all(isinstance(t, ast.Name) for t in targets):
            return {t.id for t in targets}
    return set()


def _used(tree: ast.Module) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _remove_statement(text: str, statement: ast.stmt) -> str:
    """A top-level statement removed, with its decorators and the blank lines after it."""
    lines = _lines(text)
    first = min([statement.lineno, *(d.lineno for d in getattr(statement, "decorator_list", []))])
    last = statement.end_lineno
    while last < len(lines) and not lines[last].strip():
        last += 1
    return _replace_lines(text, first, last, [])


def unused_definitions(text: str) -> set[str]:
    tree = ast.parse(text)
    used = _used(tree)
    return {n for s in tree.body for n in _defined(s) if n not in used}


def specialise(source: str, *, validated: Iterable[str] = ()) -> str:
    """`source` (a module's text) with the branches, guards, parameters and definitions the
    run cannot reach or use taken out, as the module docstring says."""
    validated = frozenset(validated)
    unused_before = unused_definitions(source)
    for _ in range(1000):
        for edited in _edits(source, validated, unused_before):
            try:
                ast.parse(edited)
            except SyntaxError:  # e.g. a block left empty: that edit is not made
                continue
            source = edited
            break
        else:
            return source
    raise RuntimeError("specialise did not settle")  # an edit that undoes another: a bug


__all__ = ["specialise"]
