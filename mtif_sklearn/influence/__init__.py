"""Multitask influence functions on the arrow-shaped Hessian."""

from .._arrow import (
    ArrowFactor,
    NotPositiveDefiniteError,
    arrow_solve,
    arrow_to_dense,
    factor_arrow,
)
from ._mtif import MTIFInfluence

__all__ = ["ArrowFactor", "MTIFInfluence", "NotPositiveDefiniteError", "arrow_solve",
           "arrow_to_dense", "factor_arrow"]
