"""Decisions from influence: which rows to drop (NegativeTransferSelector), shared cross-fitting."""

from ._rows import NegativeTransferSelector

__all__ = ["NegativeTransferSelector"]
from ._baselines import cleanlab_label_issues, cross_fitted_losses, cross_fitted_proba, highest_loss_rows  # noqa: E402, E501, I001
__all__ += ["cleanlab_label_issues", "cross_fitted_losses", "cross_fitted_proba", "highest_loss_rows"]  # noqa: E501
