"""Synthetic multitask generators and loaders for the real data formats."""

from ._loaders import load_chemical, load_computer_survey, load_school
from ._synthetic import make_multitask_classification, make_multitask_regression

__all__ = [
    "load_chemical",
    "load_computer_survey",
    "load_school",
    "make_multitask_classification",
    "make_multitask_regression",
]
