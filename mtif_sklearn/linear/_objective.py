"""The multitask linear objective (paper eq. 2 / eq. 5, Example 1) and its Newton solver.

Parameters: a task block beta_k = (theta_k, b_k) of size q = d (+1 with an intercept) per task, and
a shared block g = (gamma, c) of the same size. The objective is

    L = sum_k [ (1/n_k) sum_i w_ki l(y_ki, x_ki^T theta_k + b_k) + alpha_k ||beta_k - g||^2 ]
        + shared_alpha ||gamma||^2

(the intercepts are tied to the shared intercept c exactly like the coefficients, so alpha -> inf
gives one pooled model; c itself is not shrunk towards 0). Rows only touch their task block, so
the Hessian is an arrow matrix with H_kk = (1/n_k) sum_i w_ki l'' x x^T + 2 alpha_k I,
H_k,K+1 = -2 alpha_k I and H_K+1,K+1 = 2 sum_k alpha_k I + 2 shared_alpha P (Lemma A.1).

This module also implements the multitask objective protocol of DESIGN.md section 4 for these
models (:class:`LinearMultitaskObjective`).
"""

import copy

import numpy as np
from scipy.sparse import csr_matrix
from scipy.special import expit

from .._tasks import group_rows_by_task
from ..backend import single_blas_thread
from ..influence._arrow import arrow_solve, factor_arrow, solve_task_blocks

__all__ = ["LOSSES", "LinearMultitaskObjective", "fit_linear_multitask"]


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


def augment(X, fit_intercept):
    """Append the intercept column of ones (a new array)."""
    if not fit_intercept:
        return np.asarray(X, dtype=np.float64)
    return np.hstack([X, np.ones((X.shape[0], 1))])


def task_row_slices(codes, n_tasks):
    """Order rows by task: (order, starts), rows of task k are order[starts[k]:starts[k+1]]."""
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(n_tasks + 1))
    return order, starts


class LinearMultitaskObjective:
    """The objective of a multitask linear model evaluated on some rows (the MTIF protocol).

    Parameters
    ----------
    X_aug : ndarray of shape (n, q)
        Features (with the intercept column appended when the model has one).
    y : ndarray of shape (n,)
        Targets (0/1 for the logistic loss).
    codes : ndarray of shape (n,)
        Task index of every row, in ``0..n_tasks-1``.
    row_weights : ndarray of shape (n,)
        w_ki / n_k: the weight of each row's loss in the objective (eq. 5).
    alpha : ndarray of shape (n_tasks,)
        Per-task tie strength alpha_k.
    shared_alpha : float
        Ridge penalty on gamma.
    shared_penalty_mask : ndarray of shape (q,)
        1 where ``shared_alpha`` applies (coefficients), 0 for the shared intercept.
    loss : {"squared_error", "log_loss"}
    coef : ndarray of shape (n_tasks, q), optional
        Task blocks beta_k at which everything is evaluated.
    shared : ndarray of shape (q,), optional
        Shared block g.

    Notes
    -----
    The protocol that :class:`~mtif_sklearn.MTIFInfluence` talks to (any multitask model can
    implement it; the torch bridge does). First order uses ``codes``, ``row_weights``,
    ``n_task_params``, ``n_shared_params``, ``row_losses``, ``row_gradients``, ``task_sums``,
    ``task_gradients`` and ``hessian_blocks``. ``method="newton"`` also uses

    - ``parameters()`` / ``with_parameters(task_params, shared_params)``: the point of
      evaluation, and the same rows evaluated at another point;
    - ``shared_penalty_gradient()``: gradient of the penalty on the shared block alone;
    - ``task_shared_hessian(k)``: task k's term's part of H_K+1,K+1 (removing task k removes it);
    - ``row_curvatures(rows)``: each row's loss Hessian as ``curvature * c c^T`` (rank one: exact
      for a linear model, the Gauss-Newton term for a network with one output);
    - ``row_losses_at(task_params, shared_params, rows)`` and
      ``row_gradients_at(rows, task_params, shared_params)``: row losses / gradients at a batch of
      M parameter points, ``task_params`` of shape (M, K, q) and ``shared_params`` (M, p);
    - ``gradient_at(task_params, shared_params)``: the whole objective's gradient at a batch of
      points (row-level ``newton_steps > 1`` only).
    """

    def __init__(self, X_aug, y, codes, row_weights, alpha, shared_alpha, shared_penalty_mask,
                 loss, coef=None, shared=None):
        self.X_aug = X_aug
        self.y = y
        self.codes = codes
        self.row_weights = row_weights
        self.alpha = np.asarray(alpha, dtype=np.float64)
        self.shared_alpha = float(shared_alpha)
        self.shared_penalty_mask = shared_penalty_mask
        self.loss = LOSSES[loss]
        self.n_tasks = self.alpha.shape[0]
        q = X_aug.shape[1]
        self.coef = np.zeros((self.n_tasks, q)) if coef is None else coef
        self.shared = np.zeros(q) if shared is None else shared
        self._order, self._starts = task_row_slices(codes, self.n_tasks)

    @property
    def n_task_params(self):
        return self.X_aug.shape[1]

    @property
    def n_shared_params(self):
        return self.X_aug.shape[1]

    def raw(self, rows=slice(None)):
        X = self.X_aug[rows]
        return np.einsum("ij,ij->i", X, self.coef[self.codes[rows]])

    def row_losses(self, rows=slice(None)):
        """Per-row loss l(y_i, f_i) at the current parameters (unweighted)."""
        return self.loss.value(self.y[rows], self.raw(rows))

    def row_gradients(self, rows=slice(None)):
        """Gradients of each row's loss: task part (m, q) and shared part (None: rows do not
        touch the shared block of a linear model)."""
        first, _ = self.loss.derivatives(self.y[rows], self.raw(rows))
        return self.X_aug[rows] * first[:, None], None

    def _task_indicator(self, row_values=None):
        """Sparse (n_tasks, n) matrix with ``row_values`` (default 1) at [code_i, i]."""
        n = self.codes.shape[0]
        data = np.ones(n) if row_values is None else row_values
        return csr_matrix((data, (self.codes, np.arange(n))), shape=(self.n_tasks, n))

    def task_sums(self, values):
        """sum over each task's rows of ``values`` (n, ...) -> (n_tasks, ...)."""
        values = np.asarray(values, dtype=np.float64)
        flat = values.reshape(values.shape[0], -1)
        return np.asarray(self._task_indicator() @ flat).reshape(
            (self.n_tasks,) + values.shape[1:])

    def penalty_values(self):
        """alpha_k ||beta_k - g||^2 for every task, and the shared penalty."""
        diff = self.coef - self.shared
        task_penalty = self.alpha * np.einsum("kj,kj->k", diff, diff)
        shared_penalty = self.shared_alpha * np.sum(self.shared_penalty_mask * self.shared ** 2)
        return task_penalty, shared_penalty

    def task_values(self):
        """Each task's term T_k = (1/n_k) sum_i w_ki l_ki + alpha_k ||beta_k - g||^2."""
        data = np.bincount(self.codes, weights=self.row_weights * self.row_losses(),
                           minlength=self.n_tasks)
        return data + self.penalty_values()[0]

    def task_gradients(self):
        """Gradient of each task's term T_k (data + its regulariser; eq. 13):
        task parts (n_tasks, q) and shared parts (n_tasks, q)."""
        first, _ = self.loss.derivatives(self.y, self.raw())
        # sum_i w_i l'_i x_i per task as one sparse product (no (n, q) temporary).
        data = np.asarray(self._task_indicator(self.row_weights * first) @ self.X_aug)
        tie = 2.0 * self.alpha[:, None] * (self.coef - self.shared)
        return data + tie, -tie

    def shared_penalty_gradient(self):
        return 2.0 * self.shared_alpha * self.shared_penalty_mask * self.shared

    # -- protocol for Newton-step removal effects (MTIFInfluence(method="newton")) -----------
    def parameters(self):
        """The point of evaluation: task parameters (K, q) and shared parameters (p,)."""
        return self.coef, self.shared

    def with_parameters(self, task_params, shared_params):
        """The same rows and objective evaluated at other parameters (a shallow copy)."""
        other = copy.copy(self)
        other.coef = np.asarray(task_params, dtype=np.float64)
        other.shared = np.asarray(shared_params, dtype=np.float64)
        return other

    def task_shared_hessian(self, task):
        """Task ``task``'s term's part of the shared block H_K+1,K+1: 2 alpha_k I here (its rows
        do not touch the shared parameters of a linear model)."""
        return 2.0 * self.alpha[task] * np.eye(self.n_shared_params)

    def row_curvatures(self, rows=slice(None)):
        """Each row's loss Hessian as ``curvature_i * c_i c_i^T`` (exact for a linear model).

        Returns (task part of c (m, q), shared part of c (None: rows do not touch the shared
        block), curvature (m,)), unweighted like :meth:`row_gradients`.
        """
        _, second = self.loss.derivatives(self.y[rows], self.raw(rows))
        return self.X_aug[rows], None, second

    def _raw_at(self, task_params, rows):
        """Raw outputs (M, m) of ``rows`` at a batch of task parameters (M, K, q)."""
        every = isinstance(rows, slice) and rows == slice(None)
        rows = np.arange(len(self.codes))[rows]
        if every:  # the cached task order of all rows
            groups = [(k, self._order[self._starts[k]:self._starts[k + 1]])
                      for k in range(self.n_tasks)]
        else:
            groups = group_rows_by_task(self.codes[rows])
        raw = np.empty((task_params.shape[0], rows.size))
        for task, local in groups:
            if local.size == 0:
                continue
            # one GEMM per task present
            if local[-1] - local[0] == local.size - 1:  # rows of the task are contiguous
                local = slice(local[0], local[-1] + 1)
            raw[:, local] = task_params[:, task, :] @ self.X_aug[rows[local]].T
        return raw, rows

    def row_losses_at(self, task_params, shared_params, rows=slice(None)):
        """Row losses (unweighted) at a batch of parameter points.

        Parameters
        ----------
        task_params : ndarray of shape (M, K, q)
        shared_params : ndarray of shape (M, p)
        rows : slice or array of int, default=slice(None)

        Returns
        -------
        losses : ndarray of shape (M, m)
        """
        raw, rows = self._raw_at(np.asarray(task_params), rows)
        return self.loss.value(self.y[rows][None, :], raw)

    def row_gradients_at(self, rows, task_params, shared_params):
        """Gradient of row ``rows[m]``'s loss at parameter point m (unweighted).

        Returns task parts (M, q) and shared parts (None for a linear model).
        """
        rows = np.asarray(rows)
        X = self.X_aug[rows]
        raw = np.einsum("mj,mj->m", X, task_params[np.arange(rows.size), self.codes[rows]])
        first, _ = self.loss.derivatives(self.y[rows], raw)
        return X * first[:, None], None

    def gradient_at(self, task_params, shared_params):
        """Gradient of the whole objective (data, ties, shared penalty) at a batch of points.

        Parameters
        ----------
        task_params : ndarray of shape (M, K, q)
        shared_params : ndarray of shape (M, p)

        Returns
        -------
        task_grad : ndarray of shape (M, K, q)
        shared_grad : ndarray of shape (M, p)
        """
        task_params = np.asarray(task_params)
        shared_params = np.asarray(shared_params)
        task_grad = np.zeros_like(task_params)
        for k in range(self.n_tasks):
            rows = self._order[self._starts[k]:self._starts[k + 1]]
            if rows.size == 0:
                continue
            X = self.X_aug[rows]
            raw = task_params[:, k, :] @ X.T  # (M, n_k)
            first, _ = self.loss.derivatives(self.y[rows][None, :], raw)
            task_grad[:, k, :] = (first * self.row_weights[rows][None, :]) @ X
        tie = 2.0 * self.alpha[None, :, None] * (task_params - shared_params[:, None, :])
        task_grad += tie
        shared_grad = (-tie.sum(axis=1)
                       + 2.0 * self.shared_alpha * self.shared_penalty_mask * shared_params)
        return task_grad, shared_grad

    def hessian_blocks(self, active=None):
        """Arrow blocks (H_tt (K, q, q), H_ts (K, q, q), H_ss (q, q)) of the objective (Lemma A.1).

        ``active`` (bool, K) restricts the shared block to the tasks that take part in it.
        """
        q = self.n_task_params
        _, second = self.loss.derivatives(self.y, self.raw())
        curvature = second * self.row_weights
        task_blocks = np.empty((self.n_tasks, q, q))
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported just below
            for k in range(self.n_tasks):  # one task's rows at a time: memory O(n_k q)
                rows = self._order[self._starts[k]:self._starts[k + 1]]
                X_task = self.X_aug[rows]
                task_blocks[k] = X_task.T @ (X_task * curvature[rows, None])
        eye = np.eye(q)
        if not np.all(np.isfinite(task_blocks)):
            raise ValueError(
                "The Hessian overflowed float64 (feature values too large: the largest "
                f"absolute value is {np.abs(self.X_aug).max():.3g}). Scale the features, e.g. with "
                "sklearn.preprocessing.StandardScaler."
            )
        task_blocks += 2.0 * self.alpha[:, None, None] * eye
        coupling = -2.0 * self.alpha[:, None, None] * eye
        alpha_in_shared = self.alpha if active is None else self.alpha[active]
        shared_block = (2.0 * alpha_in_shared.sum() * eye
                        + 2.0 * self.shared_alpha * np.diag(self.shared_penalty_mask))
        return task_blocks, coupling, shared_block


def fit_linear_multitask(objective, *, active=None, max_iter=100, tol=1e-8, task_names=None):
    """Minimise the multitask objective by Newton's method with arrow solves.

    The parameters of ``objective`` are updated in place (it is the solver's own workspace).
    Tasks outside ``active`` (paper eq. 11 with sigma_l = 0) do not enter the shared block; their
    head is fitted afterwards against the final shared parameters, which is the limit of the
    sigma_l-weighted objective as sigma_l -> 0.

    Returns
    -------
    n_iter : int
        Newton iterations of the shared fit.
    converged : bool
    """
    n_tasks = objective.n_tasks
    active = np.ones(n_tasks, dtype=bool) if active is None else np.asarray(active, dtype=bool)
    with single_blas_thread(np, objective.n_task_params):
        n_iter, converged = _newton(objective, active, True, max_iter, tol, task_names)
        if not active.all():
            _, heads_converged = _newton(objective, ~active, False, max_iter, tol, task_names)
            converged = converged and heads_converged
    return n_iter, converged


def _merit(objective, tasks_mask, with_shared):
    value = float(np.sum(objective.task_values()[tasks_mask]))
    if with_shared:
        value += objective.penalty_values()[1]
    return value


def _newton(objective, tasks_mask, update_shared, max_iter, tol, task_names):
    """Newton iterations over the tasks in ``tasks_mask`` (and the shared block if asked)."""
    quadratic = objective.loss.quadratic
    for iteration in range(1, max_iter + 1):
        task_grad, shared_grad = objective.task_gradients()
        task_grad = task_grad * tasks_mask[:, None]
        shared_grad = shared_grad[tasks_mask].sum(axis=0) + objective.shared_penalty_gradient()
        if not update_shared:
            shared_grad = np.zeros_like(shared_grad)
        grad_norm = max(np.abs(task_grad).max(initial=0.0), np.abs(shared_grad).max(initial=0.0))
        if grad_norm <= tol and iteration > 1:
            return iteration - 1, True
        task_blocks, coupling, shared_block = objective.hessian_blocks(active=tasks_mask)
        if update_shared:
            try:
                factor = factor_arrow(task_blocks, coupling, shared_block, active=tasks_mask,
                                      task_names=task_names)
            except ValueError as exc:
                if "not positive definite" not in str(exc):
                    raise
                # The estimators have no damping parameter: say what the user can change.
                raise ValueError(
                    f"Cannot fit: {str(exc).split('. ')[0]}, so the shared parameters are not "
                    f"determined (shared_alpha={objective.shared_alpha:g}; typical causes: "
                    "collinear or constant features, more features than rows, or huge "
                    "feature values). Set shared_alpha > 0 (e.g. 1e-3), increase alpha, scale "
                    "the features or drop redundant ones."
                ) from exc
            step_task, step_shared = arrow_solve(factor, -task_grad, -shared_grad)
        else:
            factor = factor_arrow(task_blocks, coupling, np.eye(coupling.shape[2]),
                                  active=np.zeros(len(tasks_mask), dtype=bool),
                                  task_names=task_names)
            step_task = -solve_task_blocks(factor, task_grad)
            step_shared = np.zeros_like(shared_grad)
        step_task *= tasks_mask[:, None]
        if quadratic:
            objective.coef = objective.coef + step_task
            objective.shared = objective.shared + step_shared
            if iteration >= 2:  # one step is exact; a second one only polishes round-off
                return iteration, True
            continue
        # Backtracking (Armijo) line search on the objective restricted to the updated tasks.
        start_coef, start_shared = objective.coef, objective.shared
        start_value = _merit(objective, tasks_mask, update_shared)
        slope = float(np.sum(task_grad * step_task) + np.sum(shared_grad * step_shared))
        # Near the optimum the decrease is below the round-off of the objective's value (badly
        # scaled features): a step that keeps the value flat to round-off and shrinks the
        # gradient is progress too (as in scikit-learn's Newton solvers).
        flat = start_value + 64 * np.finfo(np.float64).eps * max(1.0, abs(start_value))
        step = 1.0
        for _ in range(50):
            objective.coef = start_coef + step * step_task
            objective.shared = start_shared + step * step_shared
            value = _merit(objective, tasks_mask, update_shared)
            if value <= start_value + 1e-4 * step * slope:
                break
            if value <= flat and _gradient_norm(objective, tasks_mask, update_shared) < grad_norm:
                break
            step *= 0.5
        else:  # no step makes progress: the iterate is optimal to working precision
            objective.coef, objective.shared = start_coef, start_shared
            return iteration, False
        if abs(slope) < 1e-30:
            return iteration, True
    return max_iter, False


def _gradient_norm(objective, tasks_mask, with_shared):
    task_grad, shared_grad = objective.task_gradients()
    norm = np.abs(task_grad[tasks_mask]).max(initial=0.0)
    if with_shared:
        shared = shared_grad[tasks_mask].sum(axis=0) + objective.shared_penalty_gradient()
        norm = max(norm, np.abs(shared).max(initial=0.0))
    return norm
