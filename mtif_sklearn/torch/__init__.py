"""Shared-bottom neural networks (paper Example 2) through the multitask objective protocol.

:class:`SharedBottomRegressor` and :class:`SharedBottomClassifier` train shared-bottom MLPs on
tabular multitask data; :class:`SharedBottomAdapter` wraps a shared-bottom torch model trained
elsewhere (LibMTL-style models are duck-typed). All three expose the protocol that
:class:`~mtif_sklearn.MTIFInfluence`, :class:`~mtif_sklearn.NegativeTransferSelector` and
:mod:`mtif_sklearn.retrain` use. PyTorch is an optional extra (``pip install
mtif-sklearn[torch]``) and is imported only when a model is fitted or evaluated.
"""

from ._adapter import SharedBottomAdapter
from ._estimator import SharedBottomClassifier, SharedBottomRegressor

__all__ = ["SharedBottomAdapter", "SharedBottomClassifier", "SharedBottomRegressor"]
