"""Sphinx configuration for the strokes documentation.

Build (warnings are errors, as in ``tests/test_docs.py``)::

    .venv/bin/python -m sphinx -W --keep-going -n -b html docs docs/_build/html

The pictures of the rasterizer's channels (and the other figures on the
representations page) are drawn at build time by ``docs/figures.py`` into
``docs/_generated/`` (gitignored), from the real rasterizer and the built-in
synthetic ink, so they always show what the code does now.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # import strokes, rendering, models from this checkout
sys.path.insert(0, str(DOCS))  # figures.py

os.environ.setdefault("MPLBACKEND", "Agg")

import strokes  # noqa: E402

# -- Project -----------------------------------------------------------------
project = "strokes"
author = "the strokes authors"
copyright = "the strokes authors"
release = strokes.__version__
version = release

# -- General -----------------------------------------------------------------
extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

# MyST: $...$ is not math here (LaTeX commands appear as code), but allow
# ```{directive}``` fences, :::{note} blocks and definition lists.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# -- autodoc / napoleon (Google style only) ----------------------------------
autodoc_default_options = {
    "members": True,
    "member-order": "bysource",
}
autodoc_typehints = "signature"
# Overrides without a docstring (the models' ``forward``) would otherwise show
# torch's generic ``nn.Module.forward`` text; every method documents itself.
autodoc_inherit_docstrings = False
autodoc_class_signature = "mixed"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_include_init_with_doc = False
napoleon_use_rtype = False
# Headings of long module docstrings, written as Google sections
# ("Geometry:" and an indented block); each renders as a rubric.
napoleon_custom_sections = ["Formats", "Geometry", "What is drawn", "Channels"]

# -- nitpicky: every reference must resolve ----------------------------------
# There is no intersphinx (the build runs offline), so references to other
# projects' objects cannot resolve. These, and only these, are ignored:
nitpicky = True  # the same as -n: every cross-reference must resolve
nitpick_ignore_regex = [
    ("py:.*", r"numpy(\..+)?"),  # numpy.ndarray, numpy.random.Generator, ...
    ("py:.*", r"torch(\..+)?"),  # torch.Tensor, torch.nn.Sequential, ...
    ("py:class", r"pathlib\.Path"),
]

# -- HTML --------------------------------------------------------------------
html_theme = "furo"
html_title = f"strokes {release}"
html_static_path: list[str] = []


_MISSING = object()


def _import_name(name: str):
    """The object a dotted name denotes (``pkg.mod.Class.attr``), or ``_MISSING``."""
    import importlib

    parts = name.split(".")
    if not all(part.isidentifier() for part in parts):
        return _MISSING  # not a Python name at all (e.g. prose taken for a type)
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except Exception:  # AttributeError, or a property that raises on the class
            return _MISSING
        return obj
    return _MISSING


def _identity_key(obj):
    """An identity for objects that are unique (functions, classes, modules), else None."""
    import inspect

    if inspect.ismodule(obj) or inspect.isclass(obj) or inspect.isroutine(obj) or isinstance(obj, property):
        return id(getattr(obj, "__func__", obj))
    return None


def _resolve_reexport(app, env, node, contnode):
    """Resolve a Python reference to an object documented under another of its names.

    Packages document what they re-export under the name users import
    (``strokes.as_ink``, not ``strokes.ink.as_ink``; see ``docs/api/index.md``),
    and docstrings may name an object by either path, e.g. ``:func:`kfold``` in
    :mod:`strokes.splits`. Only a reference that imports to the very same
    function, class or module as a documented object is resolved; everything
    else stays unresolved and fails the build as usual.
    """
    from sphinx.util.nodes import make_refnode

    if node.get("refdomain") != "py" or node.get("refspecific"):
        return None
    domain = env.get_domain("py")
    # object identities are only meaningful in this process: the index lives on
    # the app (never in the pickled environment) and is rebuilt when objects change
    index = getattr(app, "_strokes_identity_index", None)
    if index is None or index[0] != len(domain.objects):
        table = {}
        for name, entry in domain.objects.items():
            if entry.aliased:
                continue
            key = _identity_key(_import_name(name))
            if key is not None:
                table.setdefault(key, (name, entry))
        index = app._strokes_identity_index = (len(domain.objects), table)
    target = node["reftarget"]
    modname, clsname = node.get("py:module"), node.get("py:class")
    candidates = [target]
    if modname:
        candidates.insert(0, f"{modname}.{target}")
        if clsname:
            candidates.insert(0, f"{modname}.{clsname}.{target}")
    for candidate in candidates:
        key = _identity_key(_import_name(candidate))
        if key is not None and key in index[1]:
            name, entry = index[1][key]
            return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, name)
    return None


def _drop_type_docstrings(app, what, name, obj, options, lines) -> None:
    """Drop the docstring a plain value inherits from its type.

    ``.. autodata:: strokes.FORMATS`` would otherwise print ``tuple.__doc__``
    ("Built-in immutable sequence...") above the text written for it.
    """
    type_doc = getattr(type(obj), "__doc__", None)
    if what in ("data", "attribute") and lines and isinstance(type_doc, str):
        if " ".join(" ".join(lines).split()) == " ".join(type_doc.split()):
            lines.clear()


def _draw_figures(app) -> None:
    """Draw the figures of the representations page before reading any source."""
    import figures

    figures.draw_all(DOCS / "_generated")


def setup(app):
    app.connect("builder-inited", _draw_figures)
    app.connect("missing-reference", _resolve_reexport)
    app.connect("autodoc-process-docstring", _drop_type_docstrings)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
