"""flaxfit's own Sphinx pieces, small enough to read in one go.

- ``{flaxfit-api}``: the API reference of everything in ``flaxfit.__all__``, grouped by
  stage (data, models, train step and loop, runs), so a name added to the package
  appears in the docs without anyone editing a page. A public name without a docstring
  is a warning, which the build (``-W``) turns into an error.
- ``flaxfit-cli``: the command-line reference, read from the parser `flaxfit` itself
  runs (`flaxfit.cli.build_parser()`), so it cannot disagree with `--help`. Help texts
  are shown as written (plain text, never parsed as markup).
- The language switch: every page links to the same page of the other language's site
  (docs/build.py builds ``en/`` and ``ja/`` side by side); a page with no counterpart is
  a warning too.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import types
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import make_refnode, nested_parse_with_titles

logger = logging.getLogger(__name__)

# Stage of the package -> heading; the order data flows in (see the layout guide).
STAGES = {
    "flaxfit.data": "Data",
    "flaxfit.models": "Models and params",
    "flaxfit.training": "Train step, fit() and callbacks",
    "flaxfit.runs": "Runs: config, checkpoints, manifests",
}
LANGUAGES = ("en", "ja")
LANGUAGE_NAMES = {"en": "English", "ja": "日本語"}


def own_docstring(obj: object) -> str | None:
    """The docstring written for `obj` itself: not one inherited from a base class, nor the
    signature a dataclass makes up when it has none."""
    if isinstance(obj, type):
        doc = vars(obj).get("__doc__")
        if doc and doc.startswith(f"{obj.__name__}("):  # dataclass's generated signature
            return None
        return inspect.cleandoc(doc) if doc else None
    return inspect.getdoc(obj)


def data_docstring(module: str, name: str) -> str | None:
    """The `#:` comment above `name = ...` in `module`, as autodoc reads it."""
    docs = ModuleAnalyzer.for_module(module).find_attr_docs()
    lines = docs.get(("", name))
    return "\n".join(lines).strip() or None if lines else None


def _is_flax_module(cls: type) -> bool:
    from flax import linen, nnx

    return issubclass(cls, (linen.Module, nnx.Module))


def _stage(module: str) -> str:
    return next((stage for stage in STAGES if module.startswith(stage)), "")


def _class_rst(target: str, cls: type) -> list[str]:
    """The autodoc entry of a class or an exception, with its documented members."""
    kind = "autoexception" if issubclass(cls, BaseException) else "autoclass"
    # A Flax module's fields (dtype, parent, name) are its constructor's arguments,
    # shown in its signature; listing them again as members only adds noise.
    members = [] if _is_flax_module(cls) else ["   :members:"]
    return [f".. {kind}:: {target}", *members, ""]


def _parse_rst(directive: SphinxDirective, source: list[str]) -> list[nodes.Node]:
    """`source` (reST, titles allowed) parsed in place of `directive`."""
    node = nodes.section()
    node.document = directive.state.document
    lines = StringList(source, directive.get_source_info()[0])
    nested_parse_with_titles(directive.state, lines, node)
    return node.children


def _rst_for(name: str, obj: object) -> tuple[str, list[str], bool]:
    """(defining module, reST lines, has a docstring) for the public name `name`."""
    target = f"flaxfit.{name}"
    if isinstance(obj, types.ModuleType):
        functions = [n for n, f in vars(obj).items()
                     if inspect.isfunction(f) and f.__module__ == obj.__name__
                     and not n.startswith("_")]  # fmt: skip
        lines = [f".. py:module:: {target}", "", f"``{target}``", "",
                 *(own_docstring(obj) or "").splitlines(), ""]  # fmt: skip
        for function in functions:
            lines += [f".. autofunction:: {target}.{function}", ""]
        return obj.__name__, lines, bool(own_docstring(obj))
    module = getattr(obj, "__module__", None) or ""
    if isinstance(obj, type):
        return module, _class_rst(target, obj), own_docstring(obj) is not None
    if callable(obj):
        return module, [f".. autofunction:: {target}", ""], bool(own_docstring(obj))
    # Data (a table such as MODELS): documented by the `#:` comment where it is defined.
    defined_in = defining_module(flaxfit_exports()[name][0], name)
    doc = data_docstring(defined_in, name)
    lines = [f".. py:data:: {target}", f"   :type: {type(obj).__name__}", ""]
    lines += ["   " + line for line in (doc or "").splitlines()] + [""]
    return defined_in, lines, doc is not None


def defining_module(module: str, name: str) -> str:
    """Follow the lazy packages' `_EXPORTS` tables (name -> module) to where `name` is
    assigned."""
    table = getattr(importlib.import_module(module), "_EXPORTS", {})
    while name in table and isinstance(table[name], str) and table[name] != module:
        module = table[name]
        table = getattr(importlib.import_module(module), "_EXPORTS", {})
    return module


def flaxfit_exports() -> dict[str, tuple[str, str]]:
    import flaxfit

    return flaxfit._EXPORTS


class FlaxfitApi(SphinxDirective):
    """``{flaxfit-api}``: one section per stage, one entry per name of flaxfit.__all__."""

    def run(self) -> list[nodes.Node]:
        import flaxfit

        by_stage: dict[str, list[str]] = {stage: [] for stage in [*STAGES, ""]}
        for name in sorted(flaxfit.__all__, key=str.lower):
            obj = getattr(flaxfit, name)
            module, lines, documented = _rst_for(name, obj)
            if not documented:
                logger.warning(f"flaxfit.{name} has no docstring: every public name needs one "
                               f"(write it where it is defined, in {module})",
                               location=self.get_location())  # fmt: skip
            by_stage[_stage(module)] += lines
        source = []
        for stage, lines in by_stage.items():
            if lines:
                title = STAGES.get(stage, "Other")
                source += [title, "-" * len(title), "", *lines]
        return _parse_rst(self, source)


class FlaxfitTypes(SphinxDirective):
    """``flaxfit-types:: dotted.Name ...``: the result types and errors the public
    functions return or raise, documented where they are defined (they are reached
    through those functions, not imported from `flaxfit`)."""

    has_content = True

    def run(self) -> list[nodes.Node]:
        source = []
        for target in self.content:
            target = target.strip()
            if not target:
                continue
            module, _, name = target.rpartition(".")
            obj = getattr(importlib.import_module(module), name)
            if own_docstring(obj) is None:
                logger.warning(f"{target} has no docstring", location=self.get_location())
            source += _class_rst(target, obj)
        return _parse_rst(self, source)


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each subcommand, in the order `--help` lists them."""
    found = []
    for action in parser._actions:  # argparse keeps no public list of subcommands
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            found += [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return found


def _option_entry(action: argparse.Action) -> nodes.definition_list_item:
    if action.option_strings:
        metavar = "" if action.nargs == 0 else " " + " ".join(
            argparse.HelpFormatter("x")._format_args(action, action.dest.upper()).split())
        term = ", ".join(action.option_strings) + metavar
    else:
        term = action.metavar or action.dest
    text = action.help or ""
    if action.choices and "{" not in term and not isinstance(action, argparse._SubParsersAction):
        text += f" (one of: {', '.join(map(str, action.choices))})"
    if action.default not in (None, False, argparse.SUPPRESS, [], ()) and action.option_strings:
        text += f" (default: {action.default})"
    definition = nodes.definition("", nodes.paragraph(text=text.replace("%%", "%")))
    return nodes.definition_list_item("", nodes.term("", "", nodes.literal(text=term)), definition)


class FlaxfitCli(SphinxDirective):
    """``flaxfit-cli``: one section per command of `flaxfit`, each with its usage line and
    its options."""

    def _section(self, title: str, parser: argparse.ArgumentParser, summary: str) -> nodes.section:
        section = nodes.section(ids=[nodes.make_id(title)])
        section += nodes.title(text=title)
        for text in (summary, parser.description):
            if text:
                section += nodes.paragraph(text=text)
        section += nodes.literal_block(text=parser.format_usage().strip())
        actions = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)
                   and not isinstance(a, argparse._SubParsersAction)]  # fmt: skip
        if actions:
            section += nodes.definition_list("", *map(_option_entry, actions))
        for name, help_text, sub in _subcommands(parser):
            section += self._section(f"{title} {name}", sub, help_text)
        return section

    def run(self) -> list[nodes.Node]:
        from flaxfit.cli import build_parser

        parser = build_parser()
        top = self._section(parser.prog, parser, "")
        return list(top.children[1:])  # the page's own title stands for "flaxfit"


def resolve_short_name(app: Sphinx, env, node: nodes.Element, contnode: nodes.Node):
    """A docstring's `Raises: ManifestError` or a type hint's `Restored` names a class by
    its short name; resolve it when exactly one documented object has that name."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].split(".")[-1]
    domain = env.domains["py"]
    matches = [name for name in domain.objects if name.rsplit(".", 1)[-1] == target]
    if len(matches) != 1:
        return None
    entry = domain.objects[matches[0]]
    return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode,
                        matches[0])


def _counterpart(app: Sphinx, pagename: str, other: str) -> Path | None:
    """The other language's staged source of `pagename`, if it has one."""
    source_root = Path(app.srcdir).parent / f"src-{other}"
    for suffix in (".md", ".ipynb", ".rst"):
        if (source_root / f"{pagename}{suffix}").is_file():
            return source_root / f"{pagename}{suffix}"
    return None


def add_language_switch(app: Sphinx, pagename: str, templatename: str, context: dict,
                        doctree: nodes.document | None) -> None:  # fmt: skip
    """Give the page's template `language_switch`: (label, link to the other site's page)."""
    language = app.config.language
    other = "ja" if language == "en" else "en"
    target = pagename
    if doctree is not None and _counterpart(app, pagename, other) is None:
        logger.warning(f"{pagename}: there is no {LANGUAGE_NAMES[other]} version of this page; "
                       f"add docs/{other}/{pagename}.md (or list it as shared in docs/build.py)",
                       location=pagename)  # fmt: skip
        target = "index"
    # From LANG/dir/page.html to OTHER/dir/page.html: up one level per folder, then one more.
    up = "../" * (pagename.count("/") + 1)
    context["language_switch"] = (LANGUAGE_NAMES[other], f"{up}{other}/{target}.html", other)


def setup(app: Sphinx) -> dict:
    app.add_directive("flaxfit-api", FlaxfitApi)
    app.add_directive("flaxfit-types", FlaxfitTypes)
    app.add_directive("flaxfit-cli", FlaxfitCli)
    app.connect("missing-reference", resolve_short_name)
    app.connect("html-page-context", add_language_switch)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
