"""The multitask linear objective (paper eq. 2 / eq. 5, Example 1) as a stateless protocol object.

Parameters: a task block beta_k = (theta_k, b_k) of size q = d (+1 with an intercept) per task,
and a shared block g = (gamma, c) of the same size. The objective is

    L = sum_k [ (1/n_k) sum_i w_ki l(y_ki, x_ki^T theta_k + b_k) + sum_j a_kj (beta_kj - g_j)^2 ]
        + shared_alpha ||gamma||^2

with tie strengths a_kj = alpha_k on the coefficients and the task's intercept_alpha on the
intercept (alpha -> inf on both gives one pooled model; c itself is not shrunk towards 0). Rows
only touch their task block, so the Hessian is an arrow matrix (Lemma A.1) with
H_kk = (1/n_k) sum_i w_ki l'' x x^T + 2 diag(a_k), H_k,K+1 = -2 diag(a_k) and
H_K+1,K+1 = 2 diag(sum_k a_k) + 2 shared_alpha P.

Nothing here holds an iterate: parameters (:class:`~mtif_sklearn.base.Params`) are passed to
every method, as scikit-learn's ``LinearModelLoss`` takes ``coef``.

How it stays near one pass over the data:

- the intercept is an implicit column of ones (no (n, d + 1) copy of X);
- rows are grouped by task once (:class:`_TaskBatches`): every per-task reduction (Hessian
  blocks, task gradients, task sums) and every all-rows product with task parameters is a few
  batched products over stacks of tasks with equal row counts -- views of X when the rows are
  sorted by task -- instead of a Python loop over tasks or an (n, q) gather;
- the row pass at a point (outputs, first and second loss derivatives) is computed once and
  reused by the gradient, the Hessian and the row gradients at that same point (a one-entry
  cache keyed on the :class:`~mtif_sklearn.base.Params` object: parameters are values, never
  modified in place).
"""

from collections import namedtuple

import numpy as np
from scipy.special import expit

from .._tasks import group_rows_by_task
from ..base import ArrowBlocks, Params

__all__ = ["LOSSES", "InterceptAugmented", "LinearMultitaskObjective", "Linearisation",
           "augment", "raw_outputs"]


class _SquaredLoss:
    name = "squared_error"
    quadratic = True

    @staticmethod
    def value(y, raw):
        return (y - raw) ** 2

    @staticmethod
    def derivatives(y, raw):
        return 2.0 * (raw - y), np.full_like(raw, 2.0)


class _LogisticLoss:
    name = "log_loss"
    quadratic = False

    @staticmethod
    def value(y, raw):
        # log(1 + e^raw) - y raw as max(raw, 0) + log1p(e^-|raw|), in place: 2-3x faster than
        # logaddexp on the large (points, rows) batches of Newton removal.
        out = np.abs(raw)
        np.negative(out, out=out)
        np.exp(out, out=out)
        np.log1p(out, out=out)
        out += np.maximum(raw, 0.0)
        out -= y * raw
        return out

    @staticmethod
    def derivatives(y, raw):
        prob = expit(raw)
        return prob - y, prob * (1.0 - prob)


LOSSES = {"squared_error": _SquaredLoss, "log_loss": _LogisticLoss}

#: A model with one output linearised at a point (Grad-TAG): raw outputs, the per-row gradients
#: of the output with respect to the shared block and to the row's own task block, the targets
#: and the loss (``value(y, raw)``, ``quadratic``).
Linearisation = namedtuple("Linearisation",
                           ["raw", "shared_features", "task_features", "targets", "loss"])

#: Numbers (rows x columns) per batch of tasks: temporaries of a batch stay near 16 MiB.
BATCH_NUMBERS = 2**21


class InterceptAugmented:
    """Features with an intercept column of ones appended, without copying them.

    What :func:`augment` returns with ``fit_intercept=True``: it has the ``shape`` of the
    augmented matrix, :class:`LinearMultitaskObjective` reads the features and the implicit
    column of ones from it, and ``np.asarray`` materialises the (n, d + 1) matrix.

    Parameters
    ----------
    features : ndarray of shape (n, d)
    """

    def __init__(self, features):
        self.features = features

    @property
    def shape(self):
        """(n, d + 1)."""
        return (self.features.shape[0], self.features.shape[1] + 1)

    def __array__(self, dtype=None, copy=None):
        out = np.hstack([self.features, np.ones((self.features.shape[0], 1))])
        return out if dtype is None else out.astype(dtype, copy=False)


def augment(X, fit_intercept):
    """The features with the intercept column (no copy: :class:`InterceptAugmented`)."""
    if not fit_intercept:
        return np.asarray(X, dtype=np.float64)
    return InterceptAugmented(np.asarray(X, dtype=np.float64))


def _rows(rows):
    return slice(None) if rows is None else rows


def _as_slice(rows, n):
    """``rows`` as a slice when it selects consecutive rows (views instead of gathers)."""
    if rows is None:
        return slice(None)
    if isinstance(rows, slice):
        return rows
    rows = np.asarray(rows)
    if rows.dtype == bool or rows.ndim != 1:
        return rows
    if rows.size and rows[-1] - rows[0] == rows.size - 1 and 0 <= rows[0] and rows[-1] < n and (
            rows.size < 2 or np.all(rows[1:] - rows[:-1] == 1)):
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


class _Batch:
    """Some tasks with equal row counts: ``tasks`` (B,) and their rows, either a slice of
    consecutive rows (viewed as (B, m)) or an int array (B, m) of row positions."""

    __slots__ = ("tasks", "rows", "shape", "contiguous_tasks")

    def __init__(self, tasks, rows, shape):
        self.tasks, self.rows, self.shape = tasks, rows, shape
        self.contiguous_tasks = (slice(int(tasks[0]), int(tasks[-1]) + 1)
                                 if tasks[-1] - tasks[0] == tasks.size - 1 else tasks)

    def take(self, values):
        """``values`` (n, ...) of these rows as (B, m, ...) (a view for consecutive rows)."""
        if isinstance(self.rows, slice):
            return values[self.rows].reshape(self.shape + values.shape[1:])
        return values[self.rows]

    def take_columns(self, values):
        """``values`` (M, n) of these rows as (M, B, m)."""
        if isinstance(self.rows, slice):
            return values[:, self.rows].reshape((values.shape[0],) + self.shape)
        return values[:, self.rows]

    def put(self, out, values):
        """Write (B, m) values of these rows into ``out`` (n,)."""
        if isinstance(self.rows, slice):
            out[self.rows] = values.reshape(-1)
        else:
            out[self.rows] = values

    def put_columns(self, out, values):
        """Write (M, B, m) values of these rows into ``out`` (M, n)."""
        if isinstance(self.rows, slice):
            out[:, self.rows] = values.reshape(values.shape[0], -1)
        else:
            out[:, self.rows] = values


class _TaskBatches:
    """The rows of every task, grouped once: batches of tasks with equal row counts.

    Parameters
    ----------
    codes : ndarray of int, shape (n,)
    n_tasks : int
    """

    def __init__(self, codes, n_tasks):
        n = codes.shape[0]
        self.n_rows = n
        self.sorted = bool(np.all(codes[1:] >= codes[:-1]))
        self.order = None if self.sorted else np.argsort(codes, kind="stable")
        self.counts = np.bincount(codes, minlength=n_tasks)
        self.starts = np.concatenate(([0], np.cumsum(self.counts)))
        self._cache = {}

    def _rows_of(self, first_row, n_rows):
        """Rows first_row .. first_row + n_rows - 1 of the task-sorted order."""
        if self.order is None:
            return slice(first_row, first_row + n_rows)
        return self.order[first_row:first_row + n_rows]

    def batches(self, width):
        """Batches of at most about ``BATCH_NUMBERS / width`` rows (cached per width).

        A task with more rows than that comes as several one-task batches of row ranges, so
        callers accumulate (``+=``) into per-task outputs.
        """
        if width in self._cache:
            return self._cache[width]
        max_rows = max(1, BATCH_NUMBERS // max(int(width), 1))
        counts, starts = self.counts, self.starts
        by_count = np.argsort(counts, kind="stable")
        sorted_counts = counts[by_count]
        edges = np.flatnonzero(np.diff(sorted_counts)) + 1
        out = []
        for group in np.split(by_count, edges):
            m = int(counts[group[0]]) if group.size else 0
            if m == 0:
                continue
            if m > max_rows:  # one task per batch, in row ranges
                for task in group.tolist():
                    for offset in range(0, m, max_rows):
                        size = min(max_rows, m - offset)
                        rows = self._rows_of(int(starts[task]) + offset, size)
                        if not isinstance(rows, slice):
                            rows = rows[None, :]
                        out.append(_Batch(np.array([task]), rows, (1, size)))
                continue
            per_batch = max(1, max_rows // m)
            for begin in range(0, group.size, per_batch):
                tasks = group[begin:begin + per_batch]
                if self.order is None and tasks[-1] - tasks[0] == tasks.size - 1:
                    rows = slice(int(starts[tasks[0]]), int(starts[tasks[-1] + 1]))
                else:
                    rows = starts[tasks][:, None] + np.arange(m)
                    if self.order is not None:
                        rows = self.order[rows]
                out.append(_Batch(tasks, rows, (tasks.size, m)))
        if len(self._cache) > 8:
            self._cache.clear()
        self._cache[width] = out
        return out


#: Tasks with at least this many rows get their Gram matrix from one SYRK each (half the flops
#: of a GEMM and a better kernel for tall (rows x d) data: measured 2.2x faster at 10,000 x 50).
SYRK_MIN_ROWS = 128


def _add_gram(task_blocks, tasks, X, weights):
    """task_blocks[tasks, :d, :d] += X_b^T diag(w_b) X_b by SYRK of sqrt(w) X (w >= 0); returns
    w X (B, m, d) for the intercept column."""
    from scipy.linalg.blas import get_blas_funcs

    d = X.shape[2]
    root = np.sqrt(weights)
    scaled = X * root[..., None]
    syrk = get_blas_funcs("syrk", (scaled,))
    upper = np.triu_indices(d, 1)
    for position, task in enumerate(np.asarray(tasks).tolist()):
        # scaled[b].T is (d, m) and Fortran-contiguous: C = A A^T without a copy.
        gram = syrk(1.0, scaled[position].T, trans=0, lower=0)
        gram[upper[1], upper[0]] = gram[upper]
        task_blocks[task, :d, :d] += gram
    scaled *= root[..., None]
    return scaled


def _points_times_rows(coef, X):
    """Outputs (M, B, m) of B tasks' rows X (B, m, d) at M points (coefficients (M, B, d)):
    one BLAS product per task (einsum would not use BLAS here)."""
    return np.matmul(coef.transpose(1, 0, 2), X.transpose(0, 2, 1)).transpose(1, 0, 2)


def raw_outputs(X, codes, coef, intercept):
    """Raw outputs x_i^T theta_k + b_k of rows of tasks ``codes`` (in memory or one dask
    block; code -1 picks the last row of ``coef``: the shared model)."""
    return np.einsum("ij,ij->i", X, coef[codes]) + intercept[codes]


class LinearMultitaskObjective:
    """The objective of a multitask linear model on some rows (the multitask objective protocol).

    Parameters
    ----------
    X : ndarray of shape (n, q), or :class:`InterceptAugmented`
        Features: with the intercept column already appended when the model has one (the
        original form), or the features alone with ``fit_intercept=True`` (or wrapped in
        :class:`InterceptAugmented`): then the intercept is an implicit column of ones.
    y : ndarray of shape (n,)
        Targets (0/1 for the logistic loss).
    codes : ndarray of shape (n,)
        Task index of every row, in ``0..n_tasks-1``.
    row_weights : ndarray of shape (n,)
        w_ki / n_k: the weight of each row's loss in the objective (eq. 5).
    tie : ndarray of shape (n_tasks, q)
        Tie strength a_kj of every task and coordinate (alpha_k on coefficients,
        intercept_alpha_k on the intercept).
    shared_alpha : float
        Ridge penalty on gamma.
    shared_penalty_mask : ndarray of shape (q,)
        1 where ``shared_alpha`` applies (coefficients), 0 for the shared intercept.
    loss : {"squared_error", "log_loss"}
    fit_intercept : bool, default=False
        Whether ``X`` lacks the intercept column, which is then implicit (q = d + 1).
    """

    capabilities = frozenset({"newton", "affinity", "linearisation"})

    def __init__(self, X, y, codes, row_weights, tie, shared_alpha, shared_penalty_mask,
                 loss, *, fit_intercept=False):
        if isinstance(X, InterceptAugmented):
            X, fit_intercept = X.features, True
        self.X = X
        self.fit_intercept = bool(fit_intercept)
        self.y = y
        self.codes = np.asarray(codes, dtype=np.int64)
        self.row_weights = row_weights
        self.tie = np.asarray(tie, dtype=np.float64)
        self.shared_alpha = float(shared_alpha)
        self.shared_penalty_mask = shared_penalty_mask
        self.loss = LOSSES[loss]
        self.n_tasks = self.tie.shape[0]
        self.n_features = X.shape[1]
        self.n_task_params = self.n_shared_params = self.n_features + self.fit_intercept
        self._batches = None
        self._point = (None, None)

    def __getstate__(self):  # caches (row grouping, the row pass at a point) are rebuilt on use
        state = dict(self.__dict__)
        state["_batches"], state["_point"] = None, (None, None)
        return state

    @property
    def X_aug(self):
        """The features with the intercept column (a new (n, q) array when implicit)."""
        if not self.fit_intercept:
            return self.X
        return np.hstack([self.X, np.ones((self.X.shape[0], 1))])

    # -- rows ---------------------------------------------------------------------------------
    def _task_batches(self):
        """Rows grouped by task (cached: the rows never change)."""
        if self._batches is None:
            self._batches = _TaskBatches(self.codes, self.n_tasks)
        return self._batches

    def _split(self, task_params):
        """Coefficients (..., d) and intercepts (...) or None of task parameters (..., q)."""
        d = self.n_features
        return task_params[..., :d], task_params[..., d] if self.fit_intercept else None

    def _features(self, rows):
        """The rows' parameter gradients of the output, (m, q): x_i (and 1)."""
        X = self.X[rows]
        if not self.fit_intercept:
            return X
        out = np.empty((X.shape[0], self.n_task_params))
        out[:, :-1] = X
        out[:, -1] = 1.0
        return out

    def _outputs(self, task_params, rows=None):
        """x_i . theta_k(i) + b_k(i) at one point (task parameters (K, q)): (m,).

        Every row: one batched product per batch of tasks (no gather); a subset: a gather of
        the rows' parameters.
        """
        coef, intercept = self._split(task_params)
        rows = _as_slice(rows, self.codes.size)
        if isinstance(rows, slice) and rows == slice(None):
            raw = np.empty(self.codes.size)
            for batch in self._task_batches().batches(self.n_features):
                tasks = batch.contiguous_tasks
                values = np.einsum("kmd,kd->km", batch.take(self.X), coef[tasks])
                if intercept is not None:
                    values += intercept[tasks][:, None]
                batch.put(raw, values)
            return raw
        codes = self.codes[rows]
        raw = np.einsum("ij,ij->i", self.X[rows], coef[codes])
        if intercept is not None:
            raw += intercept[codes]
        return raw

    def _at(self, params):
        """The row pass at one point (outputs and loss derivatives of every row), computed on
        first use and kept while the same ``params`` object is asked about."""
        point, values = self._point
        if point is not params:
            values = {}
            self._point = (params, values)
        return values

    def _row_pass(self, params, *names):
        """Cached per-row arrays at ``params``: "raw", "first", "second" (every row)."""
        values = self._at(params)
        if "raw" not in values:
            values["raw"] = self._outputs(params.task)
        if ("first" in names or "second" in names) and "first" not in values:
            values["first"], values["second"] = self.loss.derivatives(self.y, values["raw"])
        return tuple(values[name] for name in names)

    def _raw(self, params, rows=None):
        """Raw outputs: (m,) at one point; (M, m) at a batch of points (every row, every point)."""
        if not params.batched:
            if rows is None:
                return self._row_pass(params, "raw")[0]
            values = self._at(params)
            if "raw" in values:
                return values["raw"][rows]
            return self._outputs(params.task, rows)
        coef, intercept = self._split(params.task)
        n_points = params.task.shape[0]
        rows = _as_slice(rows, self.codes.size)
        if isinstance(rows, slice) and rows == slice(None):
            raw = np.empty((n_points, self.codes.size))
            width = max(self.n_features, n_points)
            for batch in self._task_batches().batches(width):
                tasks = batch.contiguous_tasks
                values = _points_times_rows(coef[:, tasks], batch.take(self.X))
                if intercept is not None:
                    values += intercept[:, tasks, None]
                batch.put_columns(raw, values)
            return raw
        positions = np.arange(self.codes.size)[rows]
        raw = np.empty((n_points, positions.size))
        for task, local in group_rows_by_task(self.codes[positions]):
            if local[-1] - local[0] == local.size - 1:  # contiguous rows: a view, not a copy
                local = slice(local[0], local[-1] + 1)
            raw[:, local] = coef[:, task, :] @ self.X[positions[local]].T
            if intercept is not None:
                raw[:, local] += intercept[:, task, None]
        return raw

    def row_losses(self, params, rows=None):
        """Per-row loss l(y_i, f_i) (unweighted): (m,), or (M, m) at a batch of points."""
        y = self.y[_rows(rows)]
        return self.loss.value(y if not params.batched else y[None, :], self._raw(params, rows))

    def _first(self, params, rows):
        """First loss derivative of the rows at one point (from the row pass when made)."""
        values = self._at(params)
        if "first" in values or rows is None:
            return self._row_pass(params, "first")[0][_rows(rows)]
        return self.loss.derivatives(self.y[rows], self._raw(params, rows))[0]

    def row_gradients(self, params, rows=None):
        """Gradients of each row's loss: task part (m, q) and shared part (None: rows do not
        touch the shared block of a linear model). At a batch of points, row i at point i."""
        rows = _as_slice(rows, self.codes.size)
        if params.batched:
            codes = self.codes[rows]
            coef, intercept = self._split(params.task[np.arange(codes.size), codes])
            raw = np.einsum("mj,mj->m", self.X[rows], coef)
            if intercept is not None:
                raw += intercept
            first, _ = self.loss.derivatives(self.y[rows], raw)
        else:
            first = self._first(params, rows)
        X = self.X[rows]
        if not self.fit_intercept:
            return X * first[:, None], None
        out = np.empty((X.shape[0], self.n_task_params))
        np.multiply(X, first[:, None], out=out[:, :-1])
        out[:, -1] = first
        return out, None

    def row_gradient_dots(self, params, task_vectors, shared_vector=None, rows=None):
        """``g_i^t . u_task(i) (+ g_i^s . v)`` of every row without forming the gradients.

        A row's gradient is ``l'_i (x_i, 1)``, so the dot product with u_k is l'_i times the
        output of the row at parameters u: one pass over the rows (a fast path of
        :meth:`~mtif_sklearn.influence._first_order.FirstOrder.row_scores`).

        Parameters
        ----------
        params : Params
            One point.
        task_vectors : ndarray of shape (K, q)
        shared_vector : ndarray of shape (p,) or None
            Ignored: rows of a linear model do not touch the shared block.
        rows : slice or int array, optional

        Returns
        -------
        dots : ndarray of shape (m,), unweighted (multiply by ``row_weights``).
        """
        rows = None if rows is None else _as_slice(rows, self.codes.size)
        return self._first(params, rows) * self._outputs(task_vectors, rows)

    def row_curvatures(self, params, rows=None):
        """Each row's loss Hessian as ``curvature_i * c_i c_i^T`` (exact for a linear model).

        Returns (task part of c (m, q), shared part of c (None), curvature (m,)), unweighted.
        """
        rows = _as_slice(rows, self.codes.size)
        if not params.batched and isinstance(rows, slice) and rows == slice(None):
            second = self._row_pass(params, "second")[0]
        else:
            _, second = self.loss.derivatives(self.y[rows], self._raw(params, rows))
        return self._features(rows), None, second

    def linearisation(self, params, rows=None):
        """:data:`Linearisation` at ``params``: in ``theta_k = g + v_k`` coordinates the output
        gradient is the feature row in the shared block and in the row's own task block."""
        rows = _rows(rows)
        X = self._features(rows)
        return Linearisation(self._raw(params, rows), X, X, self.y[rows], self.loss)

    # -- tasks --------------------------------------------------------------------------------
    def task_sums(self, values):
        """Sum over each task's rows of ``values`` (n, ...) -> (n_tasks, ...)."""
        values = np.asarray(values, dtype=np.float64)
        out = np.zeros((self.n_tasks,) + values.shape[1:])
        width = int(np.prod(values.shape[1:], dtype=np.int64)) if values.ndim > 1 else 1
        for batch in self._task_batches().batches(width):
            out[batch.contiguous_tasks] += batch.take(values).sum(axis=1)
        return out

    def _weighted_feature_sums(self, row_values):
        """sum_i row_values_i (x_i, 1) over each task's rows: (K, q), batched products."""
        out = np.zeros((self.n_tasks, self.n_task_params))
        d = self.n_features
        for batch in self._task_batches().batches(d):
            tasks = batch.contiguous_tasks
            values = batch.take(row_values)
            out[tasks, :d] += np.einsum("kmd,km->kd", batch.take(self.X), values)
            if self.fit_intercept:
                out[tasks, d] += values.sum(axis=1)
        return out

    def task_abs_gradient_sums(self, params):
        """sum_i w_i |g_i| over each task's rows (task part (K, q); shared part None): the
        scale of the stationarity check of a frozen model, without (n, q) gradients."""
        first = self._row_pass(params, "first")[0]
        values = self.row_weights * np.abs(first)
        out = np.zeros((self.n_tasks, self.n_task_params))
        d = self.n_features
        for batch in self._task_batches().batches(d):
            tasks = batch.contiguous_tasks
            weights = batch.take(values)
            out[tasks, :d] += np.einsum("kmd,km->kd", np.abs(batch.take(self.X)), weights)
            if self.fit_intercept:
                out[tasks, d] += weights.sum(axis=1)
        return out, None

    def penalty_values(self, params):
        """Tie penalty sum_j a_kj (beta_kj - g_j)^2 of every task, and the shared penalty."""
        diff = params.task - params.shared
        task_penalty = np.einsum("kj,kj->k", self.tie * diff, diff)
        shared_penalty = self.shared_alpha * np.sum(self.shared_penalty_mask
                                                    * params.shared ** 2)
        return task_penalty, shared_penalty

    def task_values(self, params):
        """Each task's term T_k = (1/n_k) sum_i w_ki l_ki + its tie penalty."""
        data = np.bincount(self.codes, weights=self.row_weights * self.row_losses(params),
                           minlength=self.n_tasks)
        return data + self.penalty_values(params)[0]

    def task_gradients(self, params):
        """Gradient of each task's term T_k (data + its tie; eq. 13): task parts (K, q) and
        shared parts (K, q); a leading batch axis for a batch of points.

        The data part is the sum of the rows' weighted gradients, from the row pass at
        ``params`` (made once and shared with :meth:`hessian_blocks` and
        :meth:`row_gradients`).
        """
        if params.batched:
            data = self._batched_task_gradients(params)
            tie = 2.0 * self.tie[None] * (params.task - params.shared[:, None, :])
            return data + tie, -tie
        first = self._row_pass(params, "first")[0]
        data = self._weighted_feature_sums(self.row_weights * first)
        tie = 2.0 * self.tie * (params.task - params.shared)
        return data + tie, -tie

    def _batched_task_gradients(self, params):
        """Data part of the task gradients at M points, (M, K, q)."""
        coef, intercept = self._split(params.task)
        n_points = params.task.shape[0]
        d = self.n_features
        data = np.zeros_like(params.task)
        for batch in self._task_batches().batches(max(d, n_points)):
            tasks = batch.contiguous_tasks
            X = batch.take(self.X)
            raw = _points_times_rows(coef[:, tasks], X)
            if intercept is not None:
                raw += intercept[:, tasks, None]
            first, _ = self.loss.derivatives(batch.take(self.y)[None], raw)
            first *= batch.take(self.row_weights)[None]
            # (B, M, m) @ (B, m, d) per task: one BLAS product each.
            data[:, tasks, :d] += np.matmul(first.transpose(1, 0, 2), X).transpose(1, 0, 2)
            if self.fit_intercept:
                data[:, tasks, d] += first.sum(axis=-1)
        return data

    def shared_penalty_gradient(self, params):
        """Gradient of shared_alpha ||gamma||^2: (p,), or (M, p) at a batch of points."""
        return 2.0 * self.shared_alpha * self.shared_penalty_mask * params.shared

    def task_shared_hessian(self, params, task):
        """Task ``task``'s term's part of H_K+1,K+1: 2 diag(a_task) (its rows do not touch the
        shared parameters of a linear model)."""
        return 2.0 * np.diag(self.tie[task])

    def hessian_blocks(self, params, active=None):
        """:class:`~mtif_sklearn.base.ArrowBlocks` of the objective (Lemma A.1).

        ``active`` (bool, K) restricts the shared block to the tasks that take part in it. The
        task blocks sum_i c_i x_i x_i^T are batched products over stacks of tasks with equal
        row counts (:class:`_TaskBatches`), O(n q^2) in a few BLAS calls.
        """
        task_blocks, diagonals, shared_block = self.diagonal_hessian_blocks(params, active)
        q = self.n_task_params
        coupling = np.zeros((self.n_tasks, q, q))
        coupling[:, np.arange(q), np.arange(q)] = diagonals
        return ArrowBlocks(task_blocks, coupling, shared_block)

    def diagonal_hessian_blocks(self, params, active=None):
        """:meth:`hessian_blocks` with the coupling blocks as their diagonals, (K, q).

        H_k,K+1 = -2 diag(a_k) is diagonal for a linear model: the fit and the influence
        problem hand these diagonals to :func:`~mtif_sklearn._arrow.factor_arrow` instead of a
        dense (K, q, q) stack of zeros (K q^2 numbers written, read and freed per Newton step).
        """
        q, d = self.n_task_params, self.n_features
        second = self._row_pass(params, "second")[0]
        curvature = second * self.row_weights
        task_blocks = np.zeros((self.n_tasks, q, q))
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported just below
            for batch in self._task_batches().batches(d):
                tasks = batch.contiguous_tasks
                X = batch.take(self.X)
                weights = batch.take(curvature)
                if batch.shape[1] >= SYRK_MIN_ROWS and weights.min() >= 0:
                    weighted = _add_gram(task_blocks, batch.tasks, X, weights)
                else:
                    weighted = X * weights[..., None]
                    task_blocks[tasks, :d, :d] += np.matmul(np.swapaxes(X, 1, 2), weighted)
                if self.fit_intercept:
                    column = weighted.sum(axis=1)
                    task_blocks[tasks, :d, d] += column
                    task_blocks[tasks, d, :d] += column
                    task_blocks[tasks, d, d] += weights.sum(axis=1)
        if not np.all(np.isfinite(task_blocks)):
            raise ValueError(
                "The Hessian overflowed float64 (feature values too large: the largest "
                f"absolute value is {np.abs(self.X).max():.3g}). Scale the features, e.g. "
                "with sklearn.preprocessing.StandardScaler."
            )
        diagonal = np.arange(q)
        task_blocks[:, diagonal, diagonal] += 2.0 * self.tie
        tie_in_shared = self.tie if active is None else self.tie[np.asarray(active, bool)]
        shared_block = np.diag(2.0 * tie_in_shared.sum(axis=0)
                               + 2.0 * self.shared_alpha * self.shared_penalty_mask)
        return ArrowBlocks(task_blocks, -2.0 * self.tie, shared_block)

    # -- training dynamics (the affinity baselines) -------------------------------------------
    def shared_gradients(self, params):
        """Gradient of every task's mean data loss with respect to the shared parameters, (K, q).

        In ``theta_k = g + v_k`` coordinates (an exact reparametrisation of eq. 2, whose tie
        ``||v_k||^2`` does not involve g) it equals the gradient with respect to theta_k.
        """
        first = self._row_pass(params, "first")[0]
        return self._weighted_feature_sums(self.row_weights * first)

    def shared_step(self, params, direction):
        """Parameters after the shared step ``-direction``: every theta_k moves with g."""
        return Params(params.task - direction[None, :], params.shared - direction)

    def initial_params(self, seed=None):
        """Start of a training trajectory: zero (the objective is convex)."""
        q = self.n_task_params
        return Params(np.zeros((self.n_tasks, q)), np.zeros(q))
