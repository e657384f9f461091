"""Synthetic multitask generators and loaders for the real data formats.

The loaders read data the user already has (nothing is shipped or downloaded): from a folder
given as ``path``, or from ``<data home>/<data set>`` with the data home given as ``data_home=``
or by the ``MTIF_DATA`` environment variable (:func:`get_data_home`).
"""

from ._loaders import get_data_home, load_chemical, load_computer_survey, load_school
from ._synthetic import make_multitask_classification, make_multitask_regression

__all__ = [
    "get_data_home",
    "load_chemical",
    "load_computer_survey",
    "load_school",
    "make_multitask_classification",
    "make_multitask_regression",
]
