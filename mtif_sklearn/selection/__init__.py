"""Decisions from influence: which rows to drop (NegativeTransferSelector), which tasks to train
each task with (TaskSelector), shared cross-fitting."""

from ._rows import NegativeTransferSelector
from ._tasks_selector import TaskSelector

__all__ = ["NegativeTransferSelector", "TaskSelector"]
