"""Sphinx configuration: numpydoc API pages, a sphinx-gallery over ../examples, pydata theme.

Build with ``pip install -e ".[docs]" && sphinx-build -b html docs docs/_build/html``.
"""

import mtif_sklearn

project = "mtif-sklearn"
release = version = mtif_sklearn.__version__
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
autosummary_generate = True
numpydoc_show_class_members = False
html_theme = "pydata_sphinx_theme"
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py"]
# Offline builds skip the inventories with a warning.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable", None),
    "sklearn": ("https://scikit-learn.org/stable", None),
}
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"plot_",
}
