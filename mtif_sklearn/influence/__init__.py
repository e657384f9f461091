"""Multitask influence functions on the arrow-shaped Hessian."""

from ._arrow import ArrowFactor, arrow_solve, arrow_to_dense, factor_arrow
from ._mtif import MTIFInfluence

__all__ = ["ArrowFactor", "MTIFInfluence", "arrow_solve", "arrow_to_dense", "factor_arrow"]
