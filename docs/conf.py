"""Sphinx configuration of geoslide's documentation site (``make docs``).

Offline by design: no intersphinx inventories are fetched; links to the libraries geoslide
builds on are plain URLs (``extlinks`` below). Warnings are errors (``-W --keep-going`` in the
Makefile); MyST checks internal links and heading anchors.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import geoslide  # noqa: E402

project = "geoslide"
author = "the geoslide authors"
copyright = "geoslide authors, MIT licence"
version = release = geoslide.__version__

extensions = [
    "myst_nb",                    # MyST markdown pages and notebooks (includes myst_parser)
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",        # one docstring style: numpy (napoleon), mostly prose
    "sphinx.ext.extlinks",
    "sphinxarg.ext",              # the command-line reference from geoslide.cli.build_parser
    "geoslide_results",           # results pages rendered from the scripts' JSON
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
exclude_patterns = ["_build", "_templates", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints",
                    "results/*.json"]
templates_path = ["_templates"]

# MyST: anchors for headings (``[text](page.md#a-heading)`` is checked), a few extensions
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence", "deflist"]
suppress_warnings: list[str] = []

# notebooks: stored outputs only, never executed by the build (a slow test executes them)
nb_execution_mode = "off"
nb_merge_streams = True
nb_render_markdown_format = "myst"   # Markdown(...) outputs: tables rendered on every page

# API reference
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True,
                           "member-order": "bysource"}
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = False
autodoc_mock_imports: list[str] = []
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = False

# links into the libraries geoslide builds on, as plain URLs (no network at build time)
extlinks = {
    "xarray": ("https://docs.xarray.dev/en/stable/generated/%s.html", "%s"),
    "dask": ("https://docs.dask.org/en/stable/%s", "%s"),
    "numpy": ("https://numpy.org/doc/stable/reference/generated/%s.html", "%s"),
    "rioxarray": ("https://corteva.github.io/rioxarray/stable/%s", "%s"),
    "torch": ("https://docs.pytorch.org/docs/stable/%s", "%s"),
    "sklearn": ("https://scikit-learn.org/stable/modules/generated/%s.html", "%s"),
}

html_theme = "pydata_sphinx_theme"
html_title = "geoslide"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_static_path: list[str] = []
html_show_sourcelink = False

# The docstrings' one style: numpy sections (napoleon), written ``name : what it is`` in
# prose (no separate type; the signature's annotations carry the types). Before napoleon
# reads them, such a line becomes ``name`` + an indented description, and a paragraph after
# the last field opens a Notes section, so the prose never lands in the type slot.
import re  # noqa: E402

_FIELDS = {"Parameters", "Other Parameters", "Raises", "Warns", "Keyword Arguments"}
_HEADER = re.compile(r"^-{3,}$")
_FIELD = re.compile(r"^(\*{0,2}[A-Za-z_][\w, *]*?) : (.+)$")


def _prose_fields(app, what, name, obj, options, lines):  # noqa: ANN001, ARG001
    out: list[str] = []
    in_fields = False
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if _HEADER.match(nxt.strip()) and line.strip():
            in_fields = line.strip() in _FIELDS
            out += [line, nxt]
            i += 2
            continue
        if in_fields:
            m = _FIELD.match(line)
            if m:
                out += [m[1], "    " + m[2]]
            elif line and not line[0].isspace() and out and not out[-1].strip():
                out += ["Notes", "-----", line]   # prose after the fields
                in_fields = False
            else:
                out.append(line)
        else:
            out.append(line)
        i += 1
    lines[:] = out


# The CLI's help texts are plain text (argparse's): shown as written, not parsed as
# reStructuredText (``out/*.pt`` is no emphasis); indented epilog lines are examples.
import textwrap  # noqa: E402

import sphinxarg.ext  # noqa: E402
from docutils import nodes  # noqa: E402

_render_list = sphinxarg.ext.render_list


def _plain_render_list(items, markdown_help, settings=None):  # noqa: ANN001, ANN202
    out = []
    for item in items:
        if not isinstance(item, str):
            out += _render_list([item], markdown_help, settings)
            continue
        for chunk in re.split(r"\n\s*\n", item.strip("\n")):
            lines = chunk.split("\n")
            if all(line.startswith(" ") for line in lines if line.strip()):
                code = textwrap.dedent(chunk)
                out.append(nodes.literal_block(code, code, language="bash"))
            else:
                out.append(nodes.paragraph(text=" ".join(s.strip() for s in lines)))
    return out


sphinxarg.ext.render_list = _plain_render_list


def setup(app):  # noqa: ANN001, ANN201
    app.connect("autodoc-process-docstring", _prose_fields, priority=100)
