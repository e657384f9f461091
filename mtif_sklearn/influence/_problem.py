"""One influence problem: a fitted model, its training objective, a validation set, the factor.

:class:`InfluenceProblem` is what every removal strategy works from: the training and validation
objectives at the fitted parameters, the factored (damped) arrow Hessian, the validation-loss
gradients solved against it (``H^-1 v_k``), and V_k itself.
"""

import warnings

import numpy as np

from .._arrow import NotPositiveDefiniteError, factor_arrow
from ..base import hessian_blocks_to_factor
from ._effects import target_solves
from ._strategy import CHUNK_NUMBERS

__all__ = ["InfluenceProblem", "mean_task_losses", "out_of_fold_loss"]

# Stationarity check of a frozen model: the relative gradient norm of the training objective at
# its parameters. An exact fit sits at round-off (ridge: ~1e-15; logistic: below its tol);
# another data set gives O(1) (measured: 9.07 on rows of the same count per task).
STATIONARITY_TOL = 1e-4


def mean_task_losses(objective, params, n_tasks):
    """Mean row loss of every task at one point (K,) or a batch of points (M, K); NaN: task
    without rows."""
    losses = objective.row_losses(params)
    counts = np.bincount(objective.codes, minlength=n_tasks).astype(np.float64)
    present = counts > 0
    if losses.ndim == 1:
        sums = np.bincount(objective.codes, weights=losses, minlength=n_tasks)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(present, sums / np.where(present, counts, 1.0), np.nan)
    order = np.argsort(objective.codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts.astype(np.int64))[:-1]])
    sums = np.full((losses.shape[0], n_tasks), np.nan)
    if present.any():
        sums[:, present] = np.add.reduceat(losses[:, order], starts[present], axis=1)
    return sums / np.where(present, counts, np.nan)


def out_of_fold_loss(splits, n_tasks):
    """V_k of every task over all folds: the folds' validation losses weighted by their
    validation rows (NaN: a task never validated)."""
    total, rows = np.zeros(n_tasks), np.zeros(n_tasks)
    for split in splits:
        counts = split.problem.val_counts
        total += np.nan_to_num(split.problem.validation_loss) * counts
        rows += counts
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / rows


def _regularisation_advice(model):
    names = getattr(model, "_mtif_regularisers", ())
    if names:
        return f"or increase the model's regularisation ({', '.join(names)})."
    return "or regularise the model more strongly."


class InfluenceProblem:
    """The fitted model, its objectives and the factored Hessian that influence is computed from.

    Parameters
    ----------
    model : fitted multitask estimator
        Exposes the hooks of :class:`mtif_sklearn.base.MultitaskModel`.
    train_data, val_data : TaskData
        Training rows (as fitted) and validation rows.
    damping : float
        Added to every Hessian block's diagonal.
    backend : ArrayBackend
        Where the linear algebra runs.

    Attributes
    ----------
    train, val : MultitaskObjective
        The objective on the training and the validation rows.
    params : Params
        The fitted parameters.
    factor : ArrowFactor
        The factored, damped arrow Hessian of the training objective.
    z, x_shared : arrays
        ``H^-1 v_k`` for every task's validation gradient (:func:`target_solves`).
    validation_loss : ndarray of shape (K,)
        V_k at the fit (NaN for tasks without validation rows).
    val_missing : ndarray of int
        Tasks without validation rows.
    """

    def __init__(self, model, train_data, val_data, *, damping, backend):
        self.model = model
        self.backend = backend
        self.damping = damping
        self.task_names = np.asarray(model.tasks_).tolist()
        self.n_tasks = len(self.task_names)
        self.train = model._mtif_objective(train_data)
        self.val = model._mtif_objective(val_data)
        self.params = model._mtif_params()
        q, p = self.train.n_task_params, self.train.n_shared_params
        with backend.blas_threads(max(q, p)):
            self.factor = self._factor(hessian_blocks_to_factor(self.train, self.params), backend)
            self._solve_targets()
        self.schur_condition = self.factor.schur_condition
        if self.schur_condition > 1e12:
            warnings.warn(
                f"The Schur complement of the shared block has condition number "
                f"{self.schur_condition:.2g}: the shared parameters are barely determined and "
                "influence values may be inaccurate. Increase shared_alpha or damping.",
                UserWarning, stacklevel=5)

    def _factor(self, blocks, backend):
        try:
            # The blocks were made for this factor: on NumPy factored in place.
            return factor_arrow(*(backend.asarray(b) for b in blocks), damping=self.damping,
                                task_names=self.task_names, overwrite_blocks=True)
        except NotPositiveDefiniteError as exc:
            raise exc.with_advice(_regularisation_advice(self.model)) from None

    def host_factor(self):
        """The factor on NumPy (the Newton strategy runs on the host)."""
        if self.backend.is_numpy:
            return self.factor
        from ..backend import ArrayBackend

        blocks = hessian_blocks_to_factor(self.train, self.params)
        return self._factor(blocks, ArrayBackend("numpy"))

    def _solve_targets(self):
        """V_k and H^-1 v_k for the gradient v_k of every task's mean validation loss."""
        counts, self.validation_loss, task_sums, shared_sums = self._validation_sums()
        self.val_counts = counts.astype(np.int64)
        self._check_validation(counts)
        scale = 1.0 / np.where(counts, counts, np.nan)
        val_task = np.nan_to_num(task_sums * scale[:, None])
        val_shared = (np.zeros((self.n_tasks, self.train.n_shared_params)) if shared_sums is None
                      else np.nan_to_num(shared_sums * scale[:, None]))
        xp = self.backend
        self.z, self.x_shared = target_solves(self.factor, xp.asarray(val_task),
                                              xp.asarray(val_shared))

    def _validation_sums(self):
        """Per task: validation rows (float), V_k, and the summed task and shared parts of the
        validation rows' loss gradients (shared: None when the objective has none)."""
        val, n_tasks = self.val, self.n_tasks
        counts = np.bincount(val.codes, minlength=n_tasks).astype(np.float64)
        val_task, val_shared = val.row_gradients(self.params)
        return (counts, mean_task_losses(val, self.params, n_tasks), val.task_sums(val_task),
                None if val_shared is None else val.task_sums(val_shared))

    def _check_validation(self, counts):
        """Refuse non-finite V_k; set ``val_missing`` (tasks without validation rows), warn."""
        if not np.all(np.isfinite(self.validation_loss[counts > 0])):
            bad = np.flatnonzero((counts > 0) & ~np.isfinite(self.validation_loss))
            raise ValueError(
                f"The validation loss of task(s) {[self.task_names[k] for k in bad[:5]]} is not "
                "finite (overflow: targets or features of extreme magnitude?). Influence is "
                "undefined there; scale the targets and features (e.g. StandardScaler).")
        self.val_missing = np.flatnonzero(counts == 0)
        if self.val_missing.size:
            warnings.warn(
                f"Task(s) {[self.task_names[k] for k in self.val_missing[:5]]} have no "
                "validation rows; their columns of influence_ and task_influence_ are NaN.",
                UserWarning, stacklevel=7)

    def finish(self, effects, *, allow_nan=False, columns=None):
        """Effects as float64 NumPy, NaN in the columns of tasks without validation rows.

        Non-finite effects are an error, not a silent answer; ``allow_nan`` lets NaN through
        (Newton removals whose Hessian is singular: documented and warned about). ``columns``:
        the tasks of the effects' columns (default all). The check reads the effects in
        place (no copy, no full-size boolean temporaries: ``effects`` may be n x K).
        """
        from ..backend import to_numpy

        effects = np.asarray(to_numpy(effects), dtype=np.float64)
        missing = self.val_missing
        if columns is not None:
            missing = np.flatnonzero(np.isin(np.asarray(columns), missing))
        if missing.size:
            effects[..., missing] = np.nan
        if not _all_finite(effects, missing, allow_nan):
            raise ValueError(
                "Some influence values are not finite (overflow or an ill-posed removal). Scale "
                "the targets and features (e.g. StandardScaler) or add damping.")
        return effects

    def relative_gradient_norm(self):
        """||grad L(params)|| / (||row-gradient part|| + tiny): 0 at an exact fit.

        The scale is ``sqrt(sum_k ||sum_{i in k} w_i |g_i| ||^2)`` (task and shared parts
        separately), summed over chunks of rows: no (n, q) temporaries.
        """
        train, params = self.train, self.params
        task_grad, shared_parts = train.task_gradients(params)
        shared = shared_parts.sum(axis=0) + train.shared_penalty_gradient(params)
        norm = np.sqrt(np.sum(task_grad ** 2) + np.sum(shared ** 2))
        n_rows = train.codes.shape[0]
        q, p = train.n_task_params, train.n_shared_params
        task_scale = np.zeros((self.n_tasks, q))
        shared_scale = None
        chunk = max(1, CHUNK_NUMBERS // (q + p))
        if hasattr(train, "task_abs_gradient_sums"):  # the linear models: one pass over X
            task_scale, shared_scale = train.task_abs_gradient_sums(params)
            n_rows = 0
        for start in range(0, n_rows, chunk):
            rows = slice(start, min(start + chunk, n_rows))
            row_task, row_shared = train.row_gradients(params, rows)
            weights = train.row_weights[rows][:, None]
            codes = train.codes[rows]
            task_scale += _task_sums(codes, _abs_weighted(row_task, weights), self.n_tasks)
            if row_shared is not None:
                part = _task_sums(codes, _abs_weighted(row_shared, weights), self.n_tasks)
                shared_scale = part if shared_scale is None else shared_scale + part
        scale = np.sqrt(np.sum(task_scale ** 2))
        if shared_scale is not None:
            scale += np.sqrt(np.sum(shared_scale ** 2))
        return float(norm / max(scale, np.finfo(np.float64).tiny))


def _abs_weighted(values, weights):
    """|values| * weights with one temporary (the objective's arrays are never written)."""
    out = np.abs(np.asarray(values, dtype=np.float64))
    out *= weights
    return out


def _task_sums(codes, values, n_tasks):
    """Sums of ``values`` (m, c) over the rows of every task, (n_tasks, c), by runs of sorted
    codes (no sort when they are sorted already)."""
    out = np.zeros((n_tasks, values.shape[1]))
    if codes.size == 0:
        return out
    if not np.all(codes[1:] >= codes[:-1]):
        order = np.argsort(codes, kind="stable")
        codes, values = codes[order], values[order]
    starts = np.flatnonzero(np.concatenate(([True], codes[1:] != codes[:-1])))
    out[codes[starts]] = np.add.reduceat(values, starts, axis=0)
    return out


def _all_finite(effects, missing, allow_nan):
    """Whether ``effects`` (..., c) are finite outside the columns ``missing`` (NaN allowed
    with ``allow_nan``): one sum decides almost always; chunks of rows otherwise."""
    if not missing.size:
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(np.sum(effects)):
                return True
    keep = np.ones(effects.shape[-1], dtype=bool)
    keep[missing] = False
    rows = effects.reshape(-1, effects.shape[-1])
    chunk = max(1, CHUNK_NUMBERS // max(rows.shape[1], 1))
    for start in range(0, rows.shape[0], chunk):
        block = rows[start:start + chunk][:, keep]
        if np.any(np.isinf(block)) or (not allow_nan and np.any(np.isnan(block))):
            return False
    return True
