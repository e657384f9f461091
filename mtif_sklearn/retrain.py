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

__all__ = ["loo_effects", "loto_effects", "validation_losses"]


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


def _full_fit(estimator, X, y, tasks, sample_weight):
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
    rows = np.arange(len(y)) if rows is None else np.asarray(rows, dtype=np.int64)
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
