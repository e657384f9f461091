"""mtif-sklearn: MultiTask Influence Functions for scikit-learn.

Which tasks help or hurt each other, which training rows cause negative transfer, selectors
that drop harmful rows or choose which tasks each task is trained with; exact arrow-Hessian
solves on NumPy/SciPy or CuPy.
"""

from .influence import MTIFInfluence
from .linear import MultitaskLogistic, MultitaskRidge
from .selection import NegativeTransferSelector, TaskSelector

__version__ = "0.1.0"

__all__ = [
    "MTIFInfluence",
    "MultitaskLogistic",
    "MultitaskRidge",
    "NegativeTransferSelector",
    "TaskSelector",
    "__version__",
]
