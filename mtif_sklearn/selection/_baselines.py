"""Baselines for row selection: what NegativeTransferSelector has to beat, as functions.

Both rank rows by how badly a model fitted WITHOUT them predicts them (cross-fitted, with the
package's fold helper), and pick the rows to remove with the selector's rule
(:func:`~mtif_sklearn.selection._rows.pick_rows`: a total ``fraction`` cap, per-task quotas,
never a task's last row), so that a benchmark compares rankings, not removal budgets.

- :func:`highest_loss_rows`: the rows with the highest out-of-fold loss.
- :func:`cleanlab_label_issues`: cleanlab's ``find_label_issues`` on out-of-fold predicted
  probabilities (classification; cleanlab is an optional dependency, imported lazily).

Neither can see negative transfer: a row that its own task fits well but that pulls the shared
parameters away from another task has a small loss.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.base import clone, is_classifier
from sklearn.utils import _safe_indexing
from sklearn.utils._param_validation import HasMethods, Interval, validate_params

from .._tasks import (
    fit_task_codes,
    group_rows_by_task,
    resolve_tasks,
    target_task_codes,
    task_folds,
)
from ..utils._docstring import Substitution
from ._base import task_column
from ._rows import pick_rows, task_quota

__all__ = ["cleanlab_label_issues", "cross_fitted_losses", "cross_fitted_proba",
           "highest_loss_rows"]

_docs = Substitution(
    tasks_weights="""
        tasks : array-like of shape (n_samples,), default=None
            Task label of every row.
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights of the fits.""",
    folds="""
        cv : int, cross-validation generator or iterable, default=5
            Folds, stratified by task.
        random_state : int, RandomState instance or None, default=None
            Seed of the folds.""",
    removal_rule="""
        fraction : float in [0, 1), default=0.05
            Share of the rows removed at most.
        max_task_fraction : float in (0, 1] or None, default=0.2
            Share of one task's rows removed at most (None: no limit).
        exclude_tasks : label or array-like of labels, default=None
            Tasks whose rows are never removed (e.g. the target of
            ``NegativeTransferSelector(target_tasks=..., include_target_rows=False)``).""")


_PROBA_FLOOR = 1e-12  # log loss of a probability 0: finite, and the worst possible rank


def _is_multitask(estimator):
    return hasattr(estimator, "_mtif_objective")


def _take(values, rows):
    return None if values is None else _safe_indexing(values, rows)


def _task_codes(estimator, X, tasks, n_samples):
    """(task labels sorted, code of every row) from ``tasks=`` or the estimator's task column."""
    _, labels = resolve_tasks(X, tasks, task_column(estimator))
    return fit_task_codes(labels, n_samples)


def _fit(estimator, X, y, tasks, sample_weight, rows):
    """``estimator`` fitted on ``rows`` (``tasks`` None: a single-task fit)."""
    params = {}
    if tasks is not None:
        params["tasks"] = _take(tasks, rows)
    if sample_weight is not None:
        params["sample_weight"] = _take(sample_weight, rows)
    return clone(estimator).fit(_take(X, rows), _take(y, rows), **params)


def _predict(model, X, tasks, rows, proba):
    method = model.predict_proba if proba else model.predict
    if tasks is not None:
        return np.asarray(method(_take(X, rows), tasks=_take(tasks, rows)))
    return np.asarray(method(_take(X, rows)))


def _out_of_fold(estimator, X, y, tasks, sample_weight, cv, random_state, proba):
    """Out-of-fold predictions (or probabilities, columns = the sorted classes of y) of every
    row, with the task codes and the folds; a single-task estimator is fitted per task."""
    if cv is None:
        raise ValueError("cv=None leaves rows without an out-of-fold prediction; pass an int "
                         "(e.g. cv=5) or a splitter.")
    n_samples = len(y)
    y = np.asarray(y)
    names, codes = _task_codes(estimator, X, tasks, n_samples)
    folds = task_folds(codes, names.tolist(), cv, random_state=random_state)
    classes = np.unique(y) if proba else None
    out = np.full((n_samples, len(classes)) if proba else n_samples, np.nan)
    multitask = _is_multitask(estimator)
    for train, val in folds:
        if multitask:
            model = _fit(estimator, X, y, tasks, sample_weight, train)
            values = _predict(model, X, tasks, val, proba)
            out[val] = _align_proba(values, model.classes_, classes) if proba else values
            continue
        # One model per task, as a user without MTL would (rows by task in one sort each).
        fit_rows_of = dict(group_rows_by_task(codes[train]))
        for k, positions in group_rows_by_task(codes[val]):
            pred_rows = val[positions]
            fit_rows = train[fit_rows_of.get(k, np.zeros(0, dtype=np.int64))]
            present = np.unique(y[fit_rows])
            if proba and present.size < 2:  # a classifier cannot fit one class
                out[pred_rows] = _align_proba(np.ones((pred_rows.size, 1)), present, classes)
                continue
            model = _fit(estimator, X, y, None, sample_weight, fit_rows)
            values = _predict(model, X, None, pred_rows, proba)
            out[pred_rows] = (_align_proba(values, model.classes_, classes) if proba
                              else values)
    return out, codes, names, classes


def _align_proba(values, model_classes, classes):
    """Probabilities with one column per class of ``classes`` (absent classes: a floor)."""
    aligned = np.full((values.shape[0], len(classes)), _PROBA_FLOOR)
    aligned[:, np.searchsorted(classes, model_classes)] = values
    return aligned / aligned.sum(axis=1, keepdims=True)


def _row_loss(y, predictions, classes):
    if classes is not None:
        column = np.searchsorted(classes, np.asarray(y))
        picked = predictions[np.arange(len(y)), column]
        return -np.log(np.clip(picked, _PROBA_FLOOR, 1.0))
    return (np.asarray(y, dtype=np.float64) - predictions) ** 2


_COMMON = {
    "estimator": [HasMethods(["fit"])],
    "X": ["array-like"],
    "y": ["array-like"],
    "tasks": ["array-like", None],
    "sample_weight": ["array-like", None],
    "cv": [Interval(Integral, 2, None, closed="left"), "cv_object"],
    "random_state": ["random_state"],
}
_SELECTION = {
    "fraction": [Interval(Real, 0, 1, closed="left")],
    "max_task_fraction": [Interval(Real, 0, 1, closed="right"), None],
    "exclude_tasks": ["array-like", str, Integral, None],
}


@_docs
@validate_params(_COMMON, prefer_skip_nested_validation=True)
def cross_fitted_losses(estimator, X, y, *, tasks=None, sample_weight=None, cv=5,
                        random_state=None):
    """Every row's loss under a model fitted without it (cross-fitted over folds per task).

    Parameters
    ----------
    estimator : estimator object
        A multitask model (:class:`MultitaskRidge`, :class:`MultitaskLogistic`: fitted once per
        fold on all tasks, ``tasks`` passed to it) or any single-task scikit-learn estimator
        (e.g. ``LogisticRegression``: fitted per task and fold, as a user without multitask
        learning would).
    X : array-like of shape (n_samples, n_features)
        Rows (with the task column when the estimator has a ``task_column``).
    y : array-like of shape (n_samples,)
        Targets.
    {tasks_weights}
    cv : int, cross-validation generator or iterable, default=5
        Folds, stratified by task (the package's fold helper, as in
        :class:`NegativeTransferSelector`).
    random_state : int, RandomState instance or None, default=None
        Seed of the folds.

    Returns
    -------
    losses : ndarray of shape (n_samples,)
        Squared error for regressors, log loss (natural log) for classifiers.

    Examples
    --------
    >>> from mtif_sklearn import MultitaskRidge
    >>> from mtif_sklearn.datasets import make_multitask_regression
    >>> from mtif_sklearn.selection import cross_fitted_losses
    >>> X, y, tasks = make_multitask_regression(n_tasks=3, n_samples_per_task=30,
    ...                                         n_features=4, random_state=0)
    >>> cross_fitted_losses(MultitaskRidge(), X, y, tasks=tasks, random_state=0).shape
    (90,)
    """
    proba = is_classifier(estimator)
    predictions, _, _, classes = _out_of_fold(estimator, X, y, tasks, sample_weight, cv,
                                              random_state, proba)
    return _row_loss(y, predictions, classes)


@_docs
@validate_params(_COMMON, prefer_skip_nested_validation=True)
def cross_fitted_proba(estimator, X, y, *, tasks=None, sample_weight=None, cv=5,
                       random_state=None):
    """Every row's predicted class probabilities from a model fitted without it.

    Parameters
    ----------
    estimator : classifier
        A multitask classifier (fitted per fold on all tasks) or a single-task classifier
        (fitted per task and fold).
    X : array-like of shape (n_samples, n_features)
        Rows.
    y : array-like of shape (n_samples,)
        Class labels.
    {tasks_weights}
    {folds}

    Returns
    -------
    proba : ndarray of shape (n_samples, n_classes)
        Columns in the order of the sorted classes of ``y``.
    """
    if not is_classifier(estimator):
        raise ValueError(f"cross_fitted_proba needs a classifier; {type(estimator).__name__} "
                         "is not one.")
    return _out_of_fold(estimator, X, y, tasks, sample_weight, cv, random_state, True)[0]


def _removable(codes, names, exclude_tasks):
    eligible = np.ones(codes.size, dtype=bool)
    if exclude_tasks is not None:
        eligible &= ~np.isin(codes, target_task_codes(exclude_tasks, names))
    return eligible


def _pick(order_scores, eligible, codes, names, fraction, max_task_fraction, negative_only):
    n_rows = np.bincount(codes, minlength=len(names))
    return pick_rows(order_scores, eligible, codes,
                     int(np.floor(fraction * codes.size + 1e-9)), available=n_rows,
                     quota=task_quota(max_task_fraction, n_rows), negative_only=negative_only)


@_docs
@validate_params({**_COMMON, **_SELECTION}, prefer_skip_nested_validation=True)
def highest_loss_rows(estimator, X, y, *, tasks=None, sample_weight=None, fraction=0.05,
                      max_task_fraction=0.2, exclude_tasks=None, cv=5, random_state=None):
    """The rows with the highest cross-fitted loss: the plain baseline of row selection.

    The removal rule is :class:`NegativeTransferSelector`'s: at most
    ``floor(fraction * n_samples)`` rows, at most ``floor(max_task_fraction * n_k)`` of task
    k's rows, never a task's last row. Refit the model on the other rows to compare.

    Parameters
    ----------
    estimator : estimator object
        A multitask model or a single-task estimator (see :func:`cross_fitted_losses`).
    X : array-like of shape (n_samples, n_features)
        Rows.
    y : array-like of shape (n_samples,)
        Targets.
    {tasks_weights}
    {removal_rule}
    {folds}

    Returns
    -------
    rows : ndarray of int
        Indices of the rows to remove, highest loss first.

    See Also
    --------
    NegativeTransferSelector : Rows ranked by their effect on the other rows' loss.
    cleanlab_label_issues : Rows cleanlab flags as label issues.

    Examples
    --------
    >>> import numpy as np
    >>> from mtif_sklearn import MultitaskRidge
    >>> from mtif_sklearn.datasets import make_multitask_regression
    >>> from mtif_sklearn.selection import highest_loss_rows
    >>> X, y, tasks = make_multitask_regression(n_tasks=3, n_samples_per_task=40,
    ...                                         n_features=4, random_state=0)
    >>> y[[3, 50]] += 25.0  # two gross errors
    >>> rows = highest_loss_rows(MultitaskRidge(alpha=0.1), X, y, tasks=tasks, fraction=0.02,
    ...                          random_state=0)
    >>> sorted(rows.tolist())
    [3, 50]
    """
    proba = is_classifier(estimator)
    predictions, codes, names, classes = _out_of_fold(estimator, X, y, tasks, sample_weight, cv,
                                                      random_state, proba)
    losses = _row_loss(y, predictions, classes)
    return _pick(-losses, _removable(codes, names, exclude_tasks), codes, names, fraction,
                 max_task_fraction, negative_only=False)


@_docs
@validate_params({**_COMMON, **_SELECTION, "filter_by": [str]},
                 prefer_skip_nested_validation=True)
def cleanlab_label_issues(estimator, X, y, *, tasks=None, sample_weight=None, fraction=0.05,
                          max_task_fraction=0.2, exclude_tasks=None, cv=5, random_state=None,
                          filter_by="prune_by_noise_rate"):
    """cleanlab's label issues on cross-fitted probabilities, under the selector's caps.

    Runs ``cleanlab.filter.find_label_issues(y, proba, filter_by=filter_by,
    return_indices_ranked_by="self_confidence")`` on out-of-fold probabilities
    (:func:`cross_fitted_proba`) and keeps the flagged rows, most likely issues first, under
    the removal rule of :class:`NegativeTransferSelector` (``fraction`` cap, per-task quota,
    never a task's last row). Fewer rows come back when cleanlab flags fewer. On
    :class:`MultitaskLogistic` probabilities this ranks like :func:`highest_loss_rows`; on
    per-task ``LogisticRegression`` probabilities it is the usual single-task label-noise
    tool (measured in ``benchmarks/README.md``).

    Needs the optional dependency cleanlab (``pip install cleanlab``, or the package's
    ``cleanlab`` extra); it is imported only here.

    Parameters
    ----------
    estimator : classifier
        A multitask classifier or a single-task classifier (see :func:`cross_fitted_proba`).
    X : array-like of shape (n_samples, n_features)
        Rows.
    y : array-like of shape (n_samples,)
        Class labels.
    {tasks_weights}
    {removal_rule}
    {folds}
    filter_by : str, default="prune_by_noise_rate"
        cleanlab's method for counting label issues.

    Returns
    -------
    rows : ndarray of int
        Indices of the rows to remove, most likely label issues first.

    See Also
    --------
    highest_loss_rows : The loss ranking without cleanlab.
    """
    if not is_classifier(estimator):
        raise ValueError("cleanlab_label_issues needs a classifier; "
                         f"{type(estimator).__name__} is not one. For regression use "
                         "highest_loss_rows.")
    try:
        from cleanlab.filter import find_label_issues
    except ImportError as exc:
        raise ImportError(
            "cleanlab_label_issues needs cleanlab, an optional dependency: install it with "
            "`pip install cleanlab` (or `pip install mtif-sklearn[cleanlab]`).") from exc
    proba, codes, names, classes = _out_of_fold(estimator, X, y, tasks, sample_weight, cv,
                                                random_state, True)
    labels = np.searchsorted(classes, np.asarray(y))
    ranked = np.asarray(find_label_issues(labels, proba, filter_by=filter_by,
                                          return_indices_ranked_by="self_confidence"),
                        dtype=np.int64)
    order = np.full(codes.size, np.nan)
    order[ranked] = np.arange(ranked.size) - ranked.size  # negative: flagged, first is lowest
    return _pick(order, _removable(codes, names, exclude_tasks), codes, names, fraction,
                 max_task_fraction, negative_only=True)
