"""Utilities shared across the package: docstring fragments, objective checks, test references."""

from .estimator_checks import check_multitask_objective

__all__ = ["check_multitask_objective"]
