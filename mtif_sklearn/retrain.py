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

from .backend import to_numpy
from .base import require_capability
from .influence._problem import mean_task_losses
from .utils._docstring import DOCS, Substitution
from .utils._progress import parallel_map

__all__ = ["group_gains", "loo_effects", "loto_effects", "validation_losses"]


def _unfrozen(estimator):
    return estimator.estimator if isinstance(estimator, FrozenEstimator) else estimator


def _losses_on(model, data):
    """Mean loss V_k of a fitted model on validated rows (NaN for tasks without rows)."""
    return mean_task_losses(model._mtif_objective(data), model._mtif_params(), len(model.tasks_))


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
    return _losses_on(model, model._mtif_data(X_val, to_numpy(y_val), tasks_val, reset=False))


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


def _reference(estimator, X, y, tasks, sample_weight, X_val, y_val, tasks_val):
    """Validated training rows, the reference fit on all of them and the validation rows."""
    base = _unfrozen(estimator)
    require_capability(base, "refit", model=base, needed_by="mtif_sklearn.retrain")
    data = clone(base)._mtif_data(X, to_numpy(y), tasks, sample_weight, reset=True)
    model = clone(base)._mtif_refit(data)
    val = model._mtif_data(X_val, to_numpy(y_val), tasks_val, reset=False)
    return base, data, model, val


def _refit_losses(base, data, val, **options):
    return _losses_on(clone(base)._mtif_refit(data, **options), val)


@Substitution(**DOCS)
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
        A progress bar over the refits when > 0 (tqdm); joblib's messages too when > 1.

    Returns
    -------
    effects : ndarray of shape (len(rows), n_tasks)
        ``V_k(without row) - V_k(all rows)``; positive means the row helps task k.

    References
    ----------
    {ref_mtif}
    """
    base, data, model, val = _reference(estimator, X, y, tasks, sample_weight, X_val, y_val,
                                        tasks_val)
    reference = _losses_on(model, val)
    rows = _check_rows(rows, data.n_samples)
    options = {"task_weight_sum": model.task_weight_sum_, "init": model._mtif_warm_start()}

    def without(row):
        reduced = data.sample_weight.copy()
        reduced[row] = 0.0
        return _refit_losses(base, data.with_weights(reduced), val, **options)

    losses = parallel_map(without, rows, n_jobs=n_jobs, verbose=verbose,
                          desc="leave-one-out refits")
    return np.asarray(losses).reshape(len(rows), -1) - reference


@Substitution(**DOCS)
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
        A progress bar over the refits when > 0 (tqdm); joblib's messages too when > 1.

    Returns
    -------
    effects : ndarray of shape (n_tasks, n_tasks)
        ``[l, k] = V_k(without task l) - V_k(all tasks)``. Task l is removed with its rows and
        regulariser; on the diagonal, task l's head is refitted against the shared parameters
        learnt without it.

    References
    ----------
    {ref_mtif}
    """
    base, data, model, val = _reference(estimator, X, y, tasks, sample_weight, X_val, y_val,
                                        tasks_val)
    reference = _losses_on(model, val)
    options = {"task_weight_sum": model.task_weight_sum_, "init": model._mtif_warm_start()}
    losses = parallel_map(
        lambda task: _refit_losses(base, data, val, dropped_tasks=[task], **options),
        range(data.n_tasks), n_jobs=n_jobs, verbose=verbose,
        desc="leave-one-task-out refits")
    return np.asarray(losses) - reference


def _fit_on_tasks(base, data, val, group):
    """Fit a clone on the rows of the tasks in ``group`` (codes); each member's validation
    loss."""
    model = clone(base)._mtif_refit(data.restrict_tasks(group))
    losses = _losses_on(model, val.restrict_tasks(group))
    return dict(zip(np.asarray(group).tolist(), losses.tolist(), strict=True))


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
        A progress bar over the refits when > 0 (tqdm); joblib's messages too when > 1.

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
    base, data, _, val = _reference(estimator, X, y, tasks, sample_weight, X_val, y_val,
                                    tasks_val)
    all_tasks = data.task_labels
    codes_of = {t: k for k, t in enumerate(all_tasks.tolist())}
    group_codes = []
    for group in groups:
        members = [g.item() if isinstance(g, np.generic) else g for g in group]
        unknown = [t for t in members if t not in codes_of]
        if unknown:
            raise ValueError(f"groups name unknown task(s) {unknown[:5]}.")
        group_codes.append(np.unique([codes_of[t] for t in members]))
    jobs = group_codes + [np.array([k]) for k in range(len(all_tasks))]
    results = parallel_map(lambda group: _fit_on_tasks(base, data, val, group), jobs,
                           n_jobs=n_jobs, verbose=verbose, desc="group refits")
    single = np.array([results[len(groups) + k][k] for k in range(len(all_tasks))])
    group_losses = np.full((len(groups), len(all_tasks)), np.nan)
    for g, result in enumerate(results[:len(groups)]):
        for k, loss in result.items():
            group_losses[g, k] = loss
    gains = single[None, :] - group_losses
    if relative:
        gains = gains / single[None, :]
    if return_losses:
        return gains, group_losses, single
    return gains
