"""Ground truth by refitting: leave-one-out (LOO) and leave-one-task-out (LOTO) effects.

Both return exactly the quantity that :class:`~mtif_sklearn.MTIFInfluence` estimates
(DESIGN.md section 2): ``V_k(refit without the row/task) - V_k(fit on everything)``, with V_k the
mean loss on task k's validation rows. A removed row gets weight 0 while every task's normaliser
1/n_k stays at its full-data value (paper eq. 5). A removed task loses its rows and its
regulariser (eq. 11); its own head is then refitted against the shared parameters learnt without
it, which defines the diagonal of the task-level matrix consistently with MTIF.
"""

import numpy as np
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils.parallel import Parallel, delayed

from .backend import to_numpy

__all__ = ["group_gains", "loo_effects", "loto_effects", "validation_losses"]


def _unfrozen(estimator):
    return estimator.estimator if isinstance(estimator, FrozenEstimator) else estimator


def validation_losses(model, X_val, y_val, tasks_val=None):
    """Mean validation loss V_k of a fitted multitask model, one value per task of ``tasks_``.

    Parameters
    ----------
    model : fitted multitask estimator
    X_val, y_val : array-like
        Validation rows and targets.
    tasks_val : array-like, default=None
        Task of every validation row (unless the model has a ``task_column``).

    Returns
    -------
    losses : ndarray of shape (n_tasks,)
        NaN for tasks without validation rows.
    """
    objective = model._mtif_objective(X_val, to_numpy(y_val), tasks=tasks_val)
    n_tasks = len(model.tasks_)
    counts = np.bincount(objective.codes, minlength=n_tasks).astype(np.float64)
    sums = np.bincount(objective.codes, weights=objective.row_losses(), minlength=n_tasks)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / np.where(counts > 0, counts, np.nan)


def _check_rows(rows, n_samples):
    """Row indices to remove: integers in [-n, n) (a boolean mask is read as a mask)."""
    if rows is None:
        return np.arange(n_samples)
    rows = np.asarray(rows)
    if rows.dtype == bool:
        if rows.shape != (n_samples,):
            raise ValueError(f"rows is a boolean mask of shape {rows.shape}; it needs one entry "
                             f"per training row ({n_samples}).")
        return np.flatnonzero(rows)
    if rows.ndim != 1 or not (rows.size == 0 or np.issubdtype(rows.dtype, np.integer)):
        raise ValueError("rows must be a 1-d array of integer row positions (or a boolean "
                         f"mask); got dtype {rows.dtype} and shape {rows.shape}.")
    if rows.size and (rows.min() < -n_samples or rows.max() >= n_samples):
        raise ValueError(f"rows must be positions in [0, {n_samples}); got values from "
                         f"{rows.min()} to {rows.max()}.")
    return rows.astype(np.int64) % max(n_samples, 1)


def _full_fit(estimator, X, y, tasks, sample_weight):
    if not hasattr(_unfrozen(estimator), "_mtif_fit"):
        raise TypeError(
            f"{type(_unfrozen(estimator)).__name__} does not implement the multitask objective "
            "protocol (_mtif_fit); use MultitaskRidge, MultitaskLogistic or a model from "
            "mtif_sklearn.torch."
        )
    model = clone(_unfrozen(estimator))
    model._mtif_fit(X, y, tasks, sample_weight)
    weights = (np.ones(len(y)) if sample_weight is None
               else np.asarray(sample_weight, dtype=np.float64))
    return model, weights


def _refit_losses(estimator, X, y, tasks, weights, normaliser, init, X_val, y_val, tasks_val,
                  dropped_tasks=()):
    model = clone(_unfrozen(estimator))
    model._mtif_fit(X, y, tasks, weights, task_weight_sum=normaliser,
                    dropped_tasks=dropped_tasks, init=init)
    return validation_losses(model, X_val, y_val, tasks_val)


def loo_effects(estimator, X, y, X_val, y_val, *, tasks=None, tasks_val=None, rows=None,
                sample_weight=None, n_jobs=None, verbose=0):
    """Leave-one-out effects by refitting: the ground truth of ``MTIFInfluence.influence_``.

    Parameters
    ----------
    estimator : multitask estimator
        Unfitted (or FrozenEstimator-wrapped) model; refitted from a clone for every row.
    X, y : array-like
        Training rows and targets.
    X_val, y_val : array-like
        Validation rows and targets (define V_k).
    tasks, tasks_val : array-like, default=None
        Task labels (not needed with ``task_column``).
    rows : array-like of int, default=None
        Which training rows to remove one at a time (default: all).
    sample_weight : array-like of shape (n_samples,), default=None
        Training row weights.
    n_jobs : int, default=None
        Parallel refits through joblib.
    verbose : int, default=0
        joblib progress messages.

    Returns
    -------
    effects : ndarray of shape (len(rows), n_tasks)
        ``V_k(without row) - V_k(all rows)``; positive means the row helps task k.
    """
    base, weights = _full_fit(estimator, X, y, tasks, sample_weight)
    reference = validation_losses(base, X_val, y_val, tasks_val)
    rows = _check_rows(rows, len(y))
    init = base._mtif_init()

    def without(row):
        reduced = weights.copy()
        reduced[row] = 0.0
        return _refit_losses(estimator, X, y, tasks, reduced, base.task_weight_sum_, init,
                             X_val, y_val, tasks_val)

    losses = Parallel(n_jobs=n_jobs, verbose=verbose)(delayed(without)(r) for r in rows)
    return np.asarray(losses).reshape(len(rows), -1) - reference


def loto_effects(estimator, X, y, X_val, y_val, *, tasks=None, tasks_val=None,
                 sample_weight=None, n_jobs=None, verbose=0):
    """Leave-one-task-out effects by refitting: the ground truth of ``task_influence_``.

    Parameters
    ----------
    estimator : multitask estimator
        Unfitted (or FrozenEstimator-wrapped) model.
    X, y : array-like
        Training rows and targets.
    X_val, y_val : array-like
        Validation rows and targets.
    tasks, tasks_val : array-like, default=None
        Task labels (not needed with ``task_column``).
    sample_weight : array-like, default=None
        Training row weights.
    n_jobs : int, default=None
        Parallel refits through joblib.
    verbose : int, default=0
        joblib progress messages.

    Returns
    -------
    effects : ndarray of shape (n_tasks, n_tasks)
        ``[l, k] = V_k(without task l) - V_k(all tasks)``. Task l is removed with its rows and
        regulariser; on the diagonal, task l's head is refitted against the shared parameters
        learnt without it.
    """
    base, weights = _full_fit(estimator, X, y, tasks, sample_weight)
    reference = validation_losses(base, X_val, y_val, tasks_val)
    init = base._mtif_init()
    losses = Parallel(n_jobs=n_jobs, verbose=verbose)(
        delayed(_refit_losses)(estimator, X, y, tasks, weights, base.task_weight_sum_, init,
                               X_val, y_val, tasks_val, dropped_tasks=[label])
        for label in base.tasks_)
    return np.asarray(losses) - reference


def _fit_on_tasks(estimator, X, y, labels, sample_weight, X_val, y_val, labels_val, tasks_given,
                  group):
    """Fit a clone on the rows of the tasks in ``group``; validation loss of each of them."""
    from sklearn.utils import _safe_indexing

    rows = np.flatnonzero(np.isin(labels, group))
    rows_val = np.flatnonzero(np.isin(labels_val, group))
    model = clone(_unfrozen(estimator))
    model._mtif_fit(_safe_indexing(X, rows), to_numpy(y)[rows],
                    labels[rows] if tasks_given else None,
                    None if sample_weight is None else np.asarray(sample_weight)[rows])
    losses = validation_losses(model, _safe_indexing(X_val, rows_val), to_numpy(y_val)[rows_val],
                               labels_val[rows_val] if tasks_given else None)
    return dict(zip(model.tasks_.tolist(), losses.tolist(), strict=True))


def group_gains(estimator, X, y, X_val, y_val, groups, *, tasks=None, tasks_val=None,
                sample_weight=None, relative=False, return_losses=False, n_jobs=None,
                verbose=0):
    """Ground-truth multitask gain of task groups over single-task learning, by refitting.

    For every group, the model is fitted on the rows of the group's tasks only, and every
    member's mean validation loss is compared with the same model fitted on that task alone
    (single-task learning, STL). Used to evaluate task groupings and to train ETAP's refinement.

    Parameters
    ----------
    estimator : multitask estimator
        Unfitted (or FrozenEstimator-wrapped) model; refitted from a clone for every group.
    X : array-like of shape (n_samples, n_features)
        Training rows.
    y : array-like of shape (n_samples,)
        Training targets.
    X_val : array-like of shape (n_val, n_features)
        Validation rows (every task of every group needs some).
    y_val : array-like of shape (n_val,)
        Validation targets.
    groups : sequence of sequences of task labels
        The task groups (they may overlap).
    tasks : array-like of shape (n_samples,), default=None
        Task labels (not needed with ``task_column``).
    tasks_val : array-like of shape (n_val,), default=None
        Validation task labels.
    sample_weight : array-like of shape (n_samples,), default=None
        Training row weights.
    relative : bool, default=False
        Report ``(L_STL - L_group) / L_STL`` instead of ``L_STL - L_group``.
    return_losses : bool, default=False
        Also return the group losses and the single-task losses.
    n_jobs : int, default=None
        Parallel refits through joblib (one per group and one per task).
    verbose : int, default=0
        joblib progress messages.

    Returns
    -------
    gains : ndarray of shape (n_groups, n_tasks)
        ``[g, k]``: validation-loss decrease of task k when trained in group g rather than
        alone (positive: the group helps k); NaN when k is not in group g. Columns follow the
        sorted task labels (``tasks_`` of a model fitted on all of X).
    group_losses : ndarray of shape (n_groups, n_tasks)
        Validation loss of each member in its group model (only with ``return_losses``).
    single_losses : ndarray of shape (n_tasks,)
        Validation loss of every task trained alone (only with ``return_losses``).
    """
    from ._tasks import resolve_tasks, unique_tasks

    base = _unfrozen(estimator)
    task_column = getattr(base, "task_column", None)
    _, labels = resolve_tasks(X, tasks, task_column)
    _, labels_val = resolve_tasks(X_val, tasks_val, task_column)
    if labels is None or labels_val is None:
        raise ValueError("group_gains needs the task of every row: pass tasks= and tasks_val= "
                         "or use a model with task_column.")
    all_tasks = unique_tasks(labels)
    groups = [np.asarray(list(g)) for g in groups]
    for g in groups:
        unknown = np.setdiff1d(g, all_tasks)
        if unknown.size:
            raise ValueError(f"groups name unknown task(s) {unknown.tolist()[:5]}.")
    tasks_given = task_column is None
    jobs = [g for g in groups] + [np.array([t]) for t in all_tasks]
    results = Parallel(n_jobs=n_jobs, verbose=verbose)(
        delayed(_fit_on_tasks)(estimator, X, y, labels, sample_weight, X_val, y_val, labels_val,
                               tasks_given, g) for g in jobs)
    index = {t: k for k, t in enumerate(all_tasks.tolist())}
    single = np.full(len(all_tasks), np.nan)
    for t, result in zip(all_tasks.tolist(), results[len(groups):], strict=True):
        single[index[t]] = result[t]
    group_losses = np.full((len(groups), len(all_tasks)), np.nan)
    for g, result in enumerate(results[:len(groups)]):
        for t, loss in result.items():
            group_losses[g, index[t]] = loss
    gains = single[None, :] - group_losses
    if relative:
        gains = gains / single[None, :]
    if return_losses:
        return gains, group_losses, single
    return gains
