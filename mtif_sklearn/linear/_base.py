"""Shared machinery of MultitaskRidge and MultitaskLogistic: validation, task handling, fitting."""

import copy
import warnings
from collections.abc import Mapping
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
)

from .._dask import is_dask
from .._tasks import TaskData, fit_task_codes, prediction_task_codes, validate_task_data
from ..base import Params
from . import _dask
from ._objective import LinearMultitaskObjective, augment, raw_outputs
from ._solver import fit_linear_multitask


class _BaseMultitaskLinear(BaseEstimator):
    """Base class: the multitask linear objective (paper eq. 2) with arrow-structured Newton."""

    __metadata_request__fit = {"tasks": True}
    __metadata_request__predict = {"tasks": True}
    __metadata_request__score = {"tasks": True}

    _parameter_constraints: dict = {
        "alpha": [Interval(Real, 0, None, closed="neither"), Mapping],
        "shared_alpha": [Interval(Real, 0, None, closed="left")],
        "intercept_alpha": [Interval(Real, 0, None, closed="left"), Mapping, None],
        "fit_intercept": ["boolean"],
        "task_column": [str, Integral, None],
        "unknown_task": [StrOptions({"error", "shared"})],
    }

    _loss = None  # "squared_error" or "log_loss", set by subclasses

    # -- task identity and validation -------------------------------------------------------
    def _validate_features(self, X, tasks, *, reset, y=None):
        """Validate X (and y) and return (X_features, labels, y); labels None if absent."""
        return validate_task_data(self, X, tasks, reset=reset, y=y,
                                  y_numeric=self._loss == "squared_error")

    def _task_codes(self, labels, n_samples, *, unknown="error"):
        """Task codes for prediction-time rows (-1 means: use the shared model)."""
        return prediction_task_codes(self, labels, n_samples, unknown=unknown)

    @staticmethod
    def _strength_per_task(name, value, tasks_, *, zero_allowed):
        """One tie strength per task from a float or a {task label: value} mapping."""
        if isinstance(value, Mapping):
            missing = [t for t in tasks_.tolist() if t not in value]
            if missing:
                raise ValueError(
                    f"{name} is a dict but has no value for task(s) {missing[:5]}; give every "
                    "task a strength, or pass one float for all."
                )
            values = [value[t] for t in tasks_.tolist()]
            bad = [(t, v) for t, v in zip(tasks_.tolist(), values, strict=True)
                   if not isinstance(v, Real) or isinstance(v, bool) or not np.isfinite(v)
                   or v < 0 or (v == 0 and not zero_allowed)]
            if bad:
                bound = ">= 0" if zero_allowed else "> 0"
                raise ValueError(
                    f"Every {name} value must be a finite number {bound}; got "
                    + ", ".join(f"{name}[{t!r}]={v!r}" for t, v in bad[:5]) + "."
                )
            return np.asarray(values, dtype=np.float64)
        return np.full(len(tasks_), float(value))

    def _alpha_per_task(self, tasks_):
        return self._strength_per_task("alpha", self.alpha, tasks_, zero_allowed=False)

    def _intercept_alpha_per_task(self, tasks_):
        """The tie of every task's intercept b_k to the shared c (None: the task's alpha)."""
        intercept_alpha = getattr(self, "intercept_alpha", None)
        if intercept_alpha is None:
            return self._alpha_per_task(tasks_)
        return self._strength_per_task("intercept_alpha", intercept_alpha, tasks_,
                                       zero_allowed=True)

    def _intercepts_free(self, tasks_):
        """True when no task's intercept is tied to c: c then enters no term of the objective.

        The objective is then flat in c (its Schur complement singular), so c is pinned at 0 by
        a penalty of its own (see :meth:`_objective`) and ``shared_intercept_`` reports the
        n_k-weighted mean task intercept instead, which is what ``unknown_task="shared"``
        predicts with.
        """
        return bool(self.fit_intercept) and not np.any(self._intercept_alpha_per_task(tasks_) > 0)

    def _check_free_intercepts(self, data):
        """Raise when a free intercept has no finite optimum (the logistic loss overrides)."""

    def _encode_targets(self, y, *, reset):
        """Targets in the loss's own coding (float for ridge, 0/1 for logistic)."""
        return np.asarray(y, dtype=np.float64)

    # -- fitting -----------------------------------------------------------------------------
    def _fit(self, X, y, tasks=None, sample_weight=None):
        """Validate (X, y, tasks, sample_weight) once, then fit on the validated rows (the
        parameters are validated by ``fit``'s ``_fit_context``)."""
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        return self._mtif_fit(self._mtif_data(X, y, tasks, sample_weight, reset=True))

    def _objective(self, data, row_weights, active=None):
        """The objective on the rows of ``data`` with the given row weights.

        The tie of every task is ``alpha_k`` on the coefficients and ``intercept_alpha_k`` on
        the intercept (one (K, q) array), so the fit, the Hessian blocks of the influence and
        every refit see the same intercept penalty. When no intercept is tied (every
        ``intercept_alpha_k`` is 0; with ``active`` (bool, K), every active task's), c is in
        no term of the shared fit and the Hessian's shared block would be singular: c then gets
        a penalty of its own, ``mean(alpha) c^2``, which fixes it at 0 without touching any
        other parameter of the shared fit (none depends on c), so the problem stays strictly
        convex and the task intercepts stay free.
        """
        X_aug = augment(data.X, self.fit_intercept)
        shared_alpha = float(self.shared_alpha)
        penalty_mask = np.ones(X_aug.shape[1])
        alpha = self._alpha_per_task(data.task_labels)
        tie = np.repeat(alpha[:, None], X_aug.shape[1], axis=1)
        if self.fit_intercept:
            penalty_mask[-1] = 0.0
            tie[:, -1] = self._intercept_alpha_per_task(data.task_labels)
            in_shared_fit = tie[:, -1] if active is None else tie[np.asarray(active, bool), -1]
            if not np.any(in_shared_fit > 0):
                pin = float(np.mean(alpha))  # the scale of the other shared curvatures
                if shared_alpha > 0:
                    penalty_mask[-1] = pin / shared_alpha
                else:
                    shared_alpha, penalty_mask[:] = pin, 0.0
                    penalty_mask[-1] = 1.0
        return LinearMultitaskObjective(X_aug, data.y, data.codes, row_weights, tie,
                                        shared_alpha, penalty_mask, self._loss)

    def _set_parameters(self, params, n_features):
        coef_aug, shared_aug = params
        self.coef_ = coef_aug[:, :n_features].copy()
        self.shared_coef_ = shared_aug[:n_features].copy()
        if self.fit_intercept:
            self.intercept_ = coef_aug[:, n_features].copy()
            self.shared_intercept_ = float(shared_aug[n_features])
            if self._intercepts_free(self.tasks_):  # c is pinned at 0 in the objective
                self.shared_intercept_ = float(np.average(self.intercept_,
                                                          weights=self.task_weight_sum_))
        else:
            self.intercept_ = np.zeros(coef_aug.shape[0])
            self.shared_intercept_ = 0.0

    def _parameters_augmented(self):
        if self.fit_intercept:
            coef = np.hstack([self.coef_, self.intercept_[:, None]])
            # Free intercepts: the objective's c is pinned at 0 (shared_intercept_ is a summary).
            shared_intercept = 0.0 if self._intercepts_free(self.tasks_) \
                else self.shared_intercept_
            shared = np.append(self.shared_coef_, shared_intercept)
        else:
            coef, shared = self.coef_, self.shared_coef_
        return Params(coef, shared)

    # -- prediction --------------------------------------------------------------------------
    def _raw_predict(self, X, tasks):
        if is_dask(X):  # dask rows: a lazy dask array (mtif_sklearn.linear._dask)
            return _dask.dask_decision_function(self, X, tasks)
        data = self._mtif_data(X, None, tasks, reset=False, unknown=self.unknown_task)
        return raw_outputs(data.X, data.codes, *self._prediction_parameters())

    def _prediction_parameters(self):
        """(coef (K + 1, d), intercept (K + 1,)): the tasks', then the shared model's (the row
        code -1 of an unknown task)."""
        return (np.vstack([self.coef_, self.shared_coef_[None]]),
                np.append(self.intercept_, self.shared_intercept_))

    def score_per_task(self, X, y, tasks=None, sample_weight=None):
        """The model's ``score`` computed separately on each task's rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input rows (including the task column when ``task_column`` is set).
        y : array-like of shape (n_samples,)
            True targets.
        tasks : array-like of shape (n_samples,), default=None
            Task label of every row (unless ``task_column`` is set).
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights.

        Returns
        -------
        scores : dict
            ``{task label: score}`` for every task present in ``X``, in ``tasks_`` order;
            rows of unseen tasks (``unknown_task="shared"``) are scored together under the
            key ``"<shared>"``, last.
        """
        check_is_fitted(self)
        if is_dask(X):  # dask rows: one pass of per-task parts (mtif_sklearn.linear._dask)
            return _dask.dask_score_per_task(self, X, y, tasks, sample_weight)
        _, labels, _ = self._validate_features(X, tasks, reset=False)
        codes = self._task_codes(labels, len(y), unknown=self.unknown_task)
        y = np.asarray(y)
        scores = {}
        # tasks_ order, then the shared model's rows (unknown tasks, unknown_task="shared").
        for k in sorted(np.unique(codes).tolist(), key=lambda code: (code < 0, code)):
            rows = np.flatnonzero(codes == k)
            label = self.tasks_[k] if k >= 0 else "<shared>"
            X_rows = X.iloc[rows] if hasattr(X, "iloc") else np.asarray(X)[rows]
            weight = None if sample_weight is None else np.asarray(sample_weight)[rows]
            task_rows = None if tasks is None else np.asarray(tasks)[rows]
            scores[label.item() if hasattr(label, "item") else label] = self.score(
                X_rows, y[rows], tasks=task_rows, sample_weight=weight)
        return scores

    # -- estimator hooks of the multitask objective protocol (mtif_sklearn.base) --------------
    _mtif_capabilities = frozenset({"refit"})

    def _mtif_data(self, X, y=None, tasks=None, sample_weight=None, *, reset,
                   unknown="error"):
        """Validate rows once into a :class:`~mtif_sklearn._tasks.TaskData`.

        ``reset=True`` (before fitting): the task labels define the tasks and the estimator
        records ``n_features_in_`` (and ``classes_``). ``reset=False``: checked against the
        fitted model; ``unknown`` as in :func:`~mtif_sklearn._tasks.encode_tasks`.
        """
        if is_dask(X):  # dask rows (mtif_sklearn.linear._dask)
            return _dask.dask_task_data(self, X, y, tasks, sample_weight, reset=reset,
                                        unknown=unknown)
        if not reset:
            check_is_fitted(self)
        X_features, labels, y = self._validate_features(X, tasks, reset=reset, y=y)
        n_samples = X_features.shape[0]
        if reset:
            task_labels, codes = fit_task_codes(labels, n_samples)
        else:
            task_labels = self.tasks_
            codes = self._task_codes(labels, n_samples, unknown=unknown)
        y_coded = None if y is None else self._encode_targets(y, reset=reset)
        sample_weight = _check_sample_weight(sample_weight, X_features, dtype=np.float64,
                                             ensure_non_negative=True)
        recorded = {name: getattr(self, name, None)
                    for name in ("n_features_in_", "feature_names_in_", "classes_")}
        return TaskData(X_features, y_coded, codes, task_labels, sample_weight,
                        recorded if reset else {}, getattr(X, "index", None))

    def _mtif_fit(self, data, *, task_weight_sum=None, dropped_tasks=(), init=None):
        """Fit on validated rows (see :class:`mtif_sklearn.base.MultitaskModel`).

        ``task_weight_sum`` fixes the normalisers n_k (paper eq. 5 keeps 1/n_k when a row's
        weight goes to 0); ``dropped_tasks`` (task codes) are removed from the shared fit with
        their regulariser (eq. 11) and get a head fitted against the resulting shared
        parameters; ``init`` (:class:`~mtif_sklearn.base.Params`) warm-starts Newton.
        """
        if is_dask(data.X):  # dask rows: the same solver, sums by block (linear._dask)
            return _dask.fit_dask(self, data, task_weight_sum=task_weight_sum,
                                  dropped_tasks=dropped_tasks, init=init)
        data.record_on(self, task_weight_sum)
        n_tasks = data.n_tasks
        self._check_free_intercepts(data)
        active = np.ones(n_tasks, dtype=bool)
        active[np.asarray(dropped_tasks, dtype=np.int64)] = False
        objective = self._objective(data, data.sample_weight / self.task_weight_sum_[data.codes],
                                    active=active)
        params, n_iter, converged = fit_linear_multitask(
            objective, init, active=active, max_iter=getattr(self, "max_iter", 1),
            tol=getattr(self, "tol", 0.0), task_names=self.tasks_.tolist(),
        )
        if not converged:
            warnings.warn(
                f"{type(self).__name__} did not converge in max_iter={self.max_iter} Newton "
                "iterations; increase max_iter or tol, or scale the features.",
                ConvergenceWarning,
                stacklevel=3,
            )
        self.n_iter_ = n_iter
        self._set_parameters(params, data.X.shape[1])
        return self

    def _mtif_objective(self, data, *, view="influence"):
        """The fitted objective on the rows of ``data`` (one view for linear models).

        Every row's weight is ``sample_weight / task_weight_sum_`` (the normaliser 1/n_k of the
        training fit, eq. 5).
        """
        check_is_fitted(self)
        if is_dask(data.X):  # dask rows (mtif_sklearn.linear._dask)
            return _dask.DaskLinearObjective(self, data, self.task_weight_sum_)
        return self._objective(data, data.sample_weight / self.task_weight_sum_[data.codes])

    def _mtif_params(self, view="influence"):
        """The fitted parameters (task blocks with intercepts, shared block; one view)."""
        check_is_fitted(self)
        return self._parameters_augmented()

    def _mtif_warm_start(self):
        """The fitted parameters, to warm-start a refit."""
        return self._mtif_params()
    _mtif_refit = _mtif_fit
    _mtif_regularisers = ("alpha", "shared_alpha", "intercept_alpha")
    _mtif_exact_fit = True  # fit() reaches the minimum (to round-off / tol)

    def _mtif_with_task_params(self, task_params):
        """A fitted copy of this model whose task blocks are ``task_params`` (K, q).

        Used by :class:`~mtif_sklearn.TaskSelector` to put every target task's own head (fitted
        without some source tasks) into one model: a linear model predicts task k from
        (theta_k, b_k) alone, so the heads of different fits can sit side by side. The shared
        parameters (what ``unknown_task="shared"`` predicts with) stay those of this model.
        """
        check_is_fitted(self)
        model = copy.deepcopy(self)
        shared = self._parameters_augmented().shared
        model._set_parameters(Params(np.asarray(task_params, dtype=np.float64), shared),
                              self.coef_.shape[1])
        return model
