"""Decisions from influence: which rows to drop (NegativeTransferSelector), which tasks to train
each task with (TaskSelector), and the baselines a selection is measured against."""

from ._baselines import (
    cleanlab_label_issues,
    cross_fitted_losses,
    cross_fitted_proba,
    highest_loss_rows,
)
from ._rows import NegativeTransferSelector
from ._tasks_selector import TaskSelector

__all__ = [
    "NegativeTransferSelector",
    "TaskSelector",
    "cleanlab_label_issues",
    "cross_fitted_losses",
    "cross_fitted_proba",
    "highest_loss_rows",
]
