"""mtif-sklearn: MultiTask Influence Functions for scikit-learn.

Which tasks help or hurt each other, which training rows cause negative transfer, and a
selector that removes them; exact arrow-Hessian solves on NumPy/SciPy or CuPy.
"""

from .influence import MTIFInfluence
from .linear import MultitaskLogistic, MultitaskRidge
from .selection import NegativeTransferSelector

__version__ = "0.1.0"

__all__ = [
    "MTIFInfluence",
    "MultitaskLogistic",
    "MultitaskRidge",
    "NegativeTransferSelector",
    "__version__",
]
