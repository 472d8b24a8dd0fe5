"""Sphinx configuration of flaxfit's documentation, one site per language.

docs/build.py stages each language's sources (docs/en or docs/ja, plus the shared
reference pages, pictures and executed notebooks) into build/docs/src-LANG and runs
Sphinx on it with this file and `-D language=LANG`; `make docs` calls it. Warnings
are errors there, so a broken reference or a public name without a docstring fails.
"""

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS.parent / "src"))  # the checkout's flaxfit, installed or not

import flaxfit  # noqa: E402

project = "flaxfit"
author = "the flaxfit authors"
copyright = "2026, the flaxfit authors"
version = release = flaxfit.__version__
language = "en"  # docs/build.py passes -D language=ja for the Japanese site

extensions = [
    "myst_nb",  # Markdown pages (MyST) and the notebooks with their outputs
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # the docstrings' "Args:" / "Returns:" sections
    "sphinx.ext.viewcode",
    "sphinx_copybutton",
    "flaxfit_docs",  # docs/_ext: the API and CLI references, the language switch
]

root_doc = "index"
# The docstrings are written for readers of the source: `name` in single backticks is
# code, as in Markdown, not reST's interpreted text.
default_role = "literal"
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
templates_path = [str(DOCS / "_templates")]
html_static_path = [str(DOCS / "_static")]
html_css_files = ["flaxfit.css"]

# The notebooks arrive executed (docs/build.py checks they match notebooks/), so the
# build never runs them itself; a cell that raised fails the build.
nb_execution_mode = "off"
nb_execution_raise_on_error = True
nb_output_stderr = "show"
nb_merge_streams = True
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# Every Python cross-reference must resolve, except to the libraries flaxfit builds
# on: without network the build cannot fetch their inventories (intersphinx).
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(jax|jaxlib|flax|optax|orbax|numpy|np|jnp|nn|nnx|PIL|matplotlib|"
               r"collections|typing|pathlib|os|argparse|concurrent|types|enum)(\..*)?"),
    (r"py:class", r"(Path|PyTree|Array|ArrayLike|Callable|Iterable|Iterator|Mapping|"
                  r"Sequence|Any|Literal|Self|TextIO|datetime|Module|Optimizer|"
                  r"GradientTransformation|Initializer|Shape|Dtype|DTypeLike|"
                  r"optional|callable|array|int32|float32|uint8|ArrayTree)"),
]  # fmt: skip

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
add_module_names = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "sphinx_book_theme"
html_title = "flaxfit"
html_last_updated_fmt = None
html_copy_source = False
html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 2,
    "article_header_end": ["lang-switch.html", "article-header-buttons.html"],
    "use_download_button": False,
}
