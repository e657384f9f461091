"""The meta-estimator machinery the selectors share: metadata routing, validation, delegation.

A selector reads the task labels in ``fit`` (its folds are stratified by task) and routes
``tasks`` (and requested metadata) to the inner estimator; prediction methods delegate to the
refitted model ``estimator_``.
"""

import numpy as np
from sklearn.base import BaseEstimator, MetaEstimatorMixin
from sklearn.utils import get_tags
from sklearn.utils.metadata_routing import (
    UNUSED,
    MetadataRouter,
    MethodMapping,
    _routing_enabled,
    process_routing,
)
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .._dask import columns_of, is_dask
from ..utils._docstring import (
    DECISION_FUNCTION,
    PREDICT,
    PREDICT_LOG_PROBA,
    PREDICT_PROBA,
    SCORE_DELEGATED,
    doc,
)

__all__ = ["BaseSelector"]

_DELEGATED = ("predict", "predict_proba", "predict_log_proba", "decision_function", "score")


def task_column(estimator):
    """The ``task_column`` parameter of an estimator (None when it has none)."""
    params = estimator.get_params(deep=False) if hasattr(estimator, "get_params") else {}
    return params.get("task_column")


class BaseSelector(MetaEstimatorMixin, BaseEstimator):
    """Routing, input validation and delegation of a multitask selector (not public).

    Subclasses implement ``fit`` and set ``estimator_`` (the model ``predict`` and friends
    delegate to).
    """

    # The selector itself reads the task labels in fit (folds stratified by task); everything
    # else is only routed to the inner estimator.
    __metadata_request__fit = {"tasks": True, "sample_weight": UNUSED}
    __metadata_request__predict = {"tasks": UNUSED}
    __metadata_request__predict_proba = {"tasks": UNUSED}
    __metadata_request__predict_log_proba = {"tasks": UNUSED}
    __metadata_request__decision_function = {"tasks": UNUSED}
    __metadata_request__score = {"tasks": UNUSED, "sample_weight": UNUSED}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = get_tags(self.estimator)
        tags.estimator_type = inner.estimator_type
        tags.classifier_tags = inner.classifier_tags
        tags.regressor_tags = inner.regressor_tags
        tags.target_tags = inner.target_tags
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        return tags

    # -- metadata routing --------------------------------------------------------------------
    def get_metadata_routing(self):
        """Route ``tasks`` (and requested metadata) to the inner estimator.

        Returns
        -------
        routing : MetadataRouter
            The selector's own request (it reads ``tasks`` in ``fit``) and the inner
            estimator's, mapped method to same-named method.
        """
        mapping = MethodMapping().add(caller="fit", callee="fit")
        for method in _DELEGATED:
            mapping.add(caller=method, callee=method)
        return (MetadataRouter(owner=self.__class__.__name__)
                .add_self_request(self)
                .add(estimator=self.estimator, method_mapping=mapping))

    def _routed_params(self, method, **params):
        """Params for the inner estimator's ``method`` (None values dropped)."""
        params = {name: value for name, value in params.items() if value is not None}
        if _routing_enabled():
            return dict(process_routing(self, method, **params).estimator[method])
        return params

    def _fit_inputs(self, X, y, tasks, sample_weight):
        """``fit``'s input validated and routed: (X, y, the sample_weight for the inner fits).

        ``sample_weight`` is None unless it was given and (with metadata routing enabled) the
        inner estimator requests it.
        """
        X, y = self._validate_X(X, y, reset=True)
        sample_weight = self._routed_params("fit", tasks=tasks,
                                            sample_weight=sample_weight).get("sample_weight")
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                                 ensure_non_negative=True)
        return X, y, sample_weight

    def _validate_X(self, X, y=None, *, reset):
        if is_dask(X):  # dask rows stay lazy: only the columns are checked
            validate_data(self, columns_of(X), skip_check_array=True, reset=reset)
            return X, y
        if task_column(self.estimator) is not None:
            validate_data(self, X, skip_check_array=True, reset=reset)
            return X, y
        if y is None and not reset:
            return validate_data(self, X, reset=False), None
        return validate_data(self, X, y, reset=reset, ensure_min_samples=2)

    # -- delegation --------------------------------------------------------------------------
    def _estimator_has(attr):
        def check(self):
            estimator = getattr(self, "estimator_", self.estimator)
            getattr(estimator, attr)
            return True

        return check

    @property
    def classes_(self):
        """Class labels of the refitted classifier."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.classes_

    def _delegate(self, method, X, y=None, **params):
        check_is_fitted(self, "estimator_")
        X, _ = self._validate_X(X, reset=False)
        routed = self._routed_params(method, **params)
        target = getattr(self.estimator_, method)
        return target(X, **routed) if y is None else target(X, y, **routed)

    @available_if(_estimator_has("predict"))
    @doc(PREDICT)
    def predict(self, X, tasks=None):
        return self._delegate("predict", X, tasks=tasks)

    @available_if(_estimator_has("predict_proba"))
    @doc(PREDICT_PROBA)
    def predict_proba(self, X, tasks=None):
        return self._delegate("predict_proba", X, tasks=tasks)

    @available_if(_estimator_has("predict_log_proba"))
    @doc(PREDICT_LOG_PROBA)
    def predict_log_proba(self, X, tasks=None):
        return self._delegate("predict_log_proba", X, tasks=tasks)

    @available_if(_estimator_has("decision_function"))
    @doc(DECISION_FUNCTION)
    def decision_function(self, X, tasks=None):
        return self._delegate("decision_function", X, tasks=tasks)

    @available_if(_estimator_has("score"))
    @doc(SCORE_DELEGATED)
    def score(self, X, y, tasks=None, sample_weight=None):
        return self._delegate("score", X, y, tasks=tasks, sample_weight=sample_weight)

