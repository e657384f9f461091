"""Multitask linear models whose Hessian is an arrow matrix."""

from ._logistic import MultitaskLogistic
from ._ridge import MultitaskRidge

__all__ = ["MultitaskLogistic", "MultitaskRidge"]
