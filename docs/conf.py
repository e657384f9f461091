"""Sphinx configuration: numpydoc API pages, a sphinx-gallery over ../examples, pydata theme.

Build with ``pip install -e ".[docs]" && make -C docs html`` (or
``sphinx-build -W -b html docs docs/_build/html``). The build needs no network:

- Maths is rendered by MathJax 3 shipped in the ``sphinx-mathjax-offline`` package (copied to
  ``_static/mathjax``), not loaded from a CDN. LaTeX-based ``sphinx.ext.imgmath`` was not an
  option (no LaTeX on the build machines).
- ``[source]`` links go to highlighted copies of the modules inside the site
  (``sphinx.ext.viewcode``), so they work offline and in any fork.
- Links to the Python, NumPy and scikit-learn docs (intersphinx) are made only when their
  inventories are reachable; ``MTIF_DOCS_INTERSPHINX=0`` / ``=1`` forces them off / on.
- The real-data examples read ``$MTIF_DATA``; it defaults here to ``../shared/data`` next to
  the repository, and the examples fall back to synthetic data when it is absent.
"""

import configparser
import os
import re
import socket
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx_gallery.sorting import ExplicitOrder

import mtif_sklearn

_REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("MTIF_DATA", str(_REPO.parent / "shared" / "data"))

project = "mtif-sklearn"
author = "mtif-sklearn developers"
copyright = f"2026, {author}"
release = version = mtif_sklearn.__version__
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
templates_path = ["_templates"]
autosummary_generate = True
# Every public method with its parameters on the class page (scikit-learn's layout): autodoc
# renders the members (also those of the package's own base classes and mixins, not those of
# scikit-learn's BaseEstimator), numpydoc the "Methods" summary table linking to them.
autodoc_default_options = {"members": True, "inherited-members": "BaseEstimator"}
autodoc_typehints = "none"
numpydoc_show_class_members = True
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False
html_theme = "pydata_sphinx_theme"
html_title = "mtif-sklearn"
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.md5", "sg_execution_times.rst",
                    "auto_examples/sg_execution_times.rst"]


def _source_url():
    """The "Source" project URL of setup.cfg (one place to change it)."""
    config = configparser.ConfigParser()
    config.read(_REPO / "setup.cfg")
    urls = dict(line.split("=", 1) for line in
                config["metadata"]["project_urls"].strip().splitlines())
    return {key.strip(): value.strip() for key, value in urls.items()}["Source"]


SOURCE_URL = _source_url()
html_theme_options = {
    "icon_links": [{"name": "Source code", "url": SOURCE_URL, "icon": "fa-brands fa-github"}],
    "navigation_with_keys": False,
}
rst_epilog = f"\n.. |source_url| replace:: {SOURCE_URL}\n"


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
    # A newcomer's order: the quick start first, the GPU example last.
    "within_subsection_order": ExplicitOrder([
        "plot_quickstart.py",
        "plot_task_relatedness_school.py",
        "plot_harmful_rows_chemical.py",
        "*",
        "plot_grid_search.py",
        "plot_gpu_backend.py",
    ]),
    # "Examples using ..." on every API page, and API links inside the example code.
    "doc_module": ("mtif_sklearn",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"mtif_sklearn": None},
    "show_memory": False,
}


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


_SKLEARN_ROLE = re.compile(r":(?:term|ref):`(?:([^`<]*?)\s*<[^`>]*>|([^`]*))`")


def _plain_sklearn_roles(app, what, name, obj, options, lines):
    """Methods scikit-learn generates on our classes (``set_fit_request`` and friends) carry
    its glossary terms and labels, which exist only in scikit-learn's own docs: keep their
    text, drop the broken link (a -W error otherwise)."""
    if getattr(obj, "__module__", "").startswith("sklearn"):
        lines[:] = [_SKLEARN_ROLE.sub(lambda m: m.group(1) or m.group(2), line)
                    for line in lines]


def setup(app):
    app.add_directive("benchmarks-readme", BenchmarksReadme)
    app.connect("autodoc-process-docstring", _quote_shape_names)
    app.connect("autodoc-process-docstring", _plain_sklearn_roles)
