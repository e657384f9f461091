"""Sphinx configuration: numpydoc API pages, a sphinx-gallery over ../examples, pydata theme.

Build with ``pip install -e ".[docs]" && make -C docs html`` (or
``sphinx-build -W -b html docs docs/_build/html``). Links to the Python, NumPy and
scikit-learn docs (intersphinx) are made only when their inventories are reachable, so that an
offline ``-W`` build passes; ``MTIF_DOCS_INTERSPHINX=0`` / ``=1`` forces them off / on.
"""

import os
import re
import socket
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive

import mtif_sklearn

project = "mtif-sklearn"
release = version = mtif_sklearn.__version__
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
autosummary_generate = True
numpydoc_show_class_members = False
html_theme = "pydata_sphinx_theme"
html_title = "mtif-sklearn"
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.md5", "sg_execution_times.rst"]


def _online(host="docs.python.org", timeout=2.0):
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


_intersphinx = os.environ.get("MTIF_DOCS_INTERSPHINX")
if _intersphinx == "1" or (_intersphinx is None and _online()):
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "sklearn": ("https://scikit-learn.org/stable", None),
        "matplotlib": ("https://matplotlib.org/stable", None),
    }

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"plot_",
    "download_all_examples": False,
    "within_subsection_order": "FileNameSortKey",
}

_REPO = Path(__file__).resolve().parent.parent


class BenchmarksReadme(Directive):
    """``.. benchmarks-readme::``: benchmarks/README.md as a literal block, or a note if absent.

    A directive (not ``literalinclude``) so that a checkout without the file still builds
    with ``-W``.
    """

    def run(self):
        path = _REPO / "benchmarks" / "README.md"
        if not path.is_file():
            return [nodes.paragraph(text="benchmarks/README.md is not in this checkout; run the "
                                    "scripts in benchmarks/ to produce it.")]
        self.state.document.settings.record_dependencies.add(str(path))
        text = path.read_text(encoding="utf-8")
        block = nodes.literal_block(text, text)
        block["language"] = "markdown"
        return [block]


_BARE_SHAPE_NAME = re.compile(r"shape \((\w+_),\)")


def _quote_shape_names(app, what, name, obj, options, lines):
    """``shape (n_features_in_,)`` -> ``shape (`n_features_in_`,)``.

    In reST a bare name ending in ``_`` is a link to a target that does not exist (a -W
    error); scikit-learn writes it quoted. Quote the ones a docstring left bare.
    """
    lines[:] = [_BARE_SHAPE_NAME.sub(r"shape (`\1`,)", line) for line in lines]


def setup(app):
    app.add_directive("benchmarks-readme", BenchmarksReadme)
    app.connect("autodoc-process-docstring", _quote_shape_names)
