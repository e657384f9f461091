"""Plots in scikit-learn's Display style: task influence, agreement with retraining, selection.

matplotlib is imported only when a plot is drawn (``pip install "mtif-sklearn[plot]"``).
"""

from ._agreement import InfluenceAgreementDisplay
from ._selection import SelectionDisplay
from ._task_influence import TaskInfluenceDisplay

__all__ = ["InfluenceAgreementDisplay", "SelectionDisplay", "TaskInfluenceDisplay"]
