"""Decisions from influence: which rows to drop (NegativeTransferSelector), shared cross-fitting."""

from ._rows import NegativeTransferSelector

__all__ = ["NegativeTransferSelector"]
