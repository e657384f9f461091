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
"""

from collections import namedtuple

import numpy as np
from scipy.sparse import csr_matrix
from scipy.special import expit

from .._tasks import group_rows_by_task
from ..base import ArrowBlocks, Params

__all__ = ["LOSSES", "LinearMultitaskObjective", "Linearisation"]


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


def augment(X, fit_intercept):
    """Append the intercept column of ones (a new array)."""
    if not fit_intercept:
        return np.asarray(X, dtype=np.float64)
    return np.hstack([X, np.ones((X.shape[0], 1))])


def _rows(rows):
    return slice(None) if rows is None else rows


class LinearMultitaskObjective:
    """The objective of a multitask linear model on some rows (the multitask objective protocol).

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
    tie : ndarray of shape (n_tasks, q)
        Tie strength a_kj of every task and coordinate (alpha_k on coefficients,
        intercept_alpha_k on the intercept).
    shared_alpha : float
        Ridge penalty on gamma.
    shared_penalty_mask : ndarray of shape (q,)
        1 where ``shared_alpha`` applies (coefficients), 0 for the shared intercept.
    loss : {"squared_error", "log_loss"}
    """

    capabilities = frozenset({"newton", "affinity", "linearisation"})

    def __init__(self, X_aug, y, codes, row_weights, tie, shared_alpha, shared_penalty_mask,
                 loss):
        self.X_aug = X_aug
        self.y = y
        self.codes = np.asarray(codes, dtype=np.int64)
        self.row_weights = row_weights
        self.tie = np.asarray(tie, dtype=np.float64)
        self.shared_alpha = float(shared_alpha)
        self.shared_penalty_mask = shared_penalty_mask
        self.loss = LOSSES[loss]
        self.n_tasks = self.tie.shape[0]
        self.n_task_params = self.n_shared_params = X_aug.shape[1]
        self._groups = None

    # -- rows ---------------------------------------------------------------------------------
    def _task_groups(self):
        """Row positions of every task (cached: the rows never change)."""
        if self._groups is None:
            self._groups = group_rows_by_task(self.codes)
        return self._groups

    def _raw(self, params, rows=None):
        """Raw outputs: (m,) at one point; (M, m) at a batch of points (every row, every point)."""
        rows = _rows(rows)
        if not params.batched:
            return np.einsum("ij,ij->i", self.X_aug[rows], params.task[self.codes[rows]])
        if isinstance(rows, slice) and rows == slice(None):
            positions, groups = np.arange(self.codes.size), self._task_groups()
        else:
            positions = np.arange(self.codes.size)[rows]
            groups = group_rows_by_task(self.codes[positions])
        raw = np.empty((params.task.shape[0], positions.size))
        for task, local in groups:
            if local[-1] - local[0] == local.size - 1:  # contiguous rows: a view, not a copy
                local = slice(local[0], local[-1] + 1)
            raw[:, local] = params.task[:, task, :] @ self.X_aug[positions[local]].T
        return raw

    def row_losses(self, params, rows=None):
        """Per-row loss l(y_i, f_i) (unweighted): (m,), or (M, m) at a batch of points."""
        y = self.y[_rows(rows)]
        return self.loss.value(y if not params.batched else y[None, :], self._raw(params, rows))

    def row_gradients(self, params, rows=None):
        """Gradients of each row's loss: task part (m, q) and shared part (None: rows do not
        touch the shared block of a linear model). At a batch of points, row i at point i."""
        rows = _rows(rows)
        X = self.X_aug[rows]
        codes = self.codes[rows]
        if params.batched:
            raw = np.einsum("mj,mj->m", X, params.task[np.arange(codes.size), codes])
        else:
            raw = np.einsum("mj,mj->m", X, params.task[codes])
        first, _ = self.loss.derivatives(self.y[rows], raw)
        return X * first[:, None], None

    def row_curvatures(self, params, rows=None):
        """Each row's loss Hessian as ``curvature_i * c_i c_i^T`` (exact for a linear model).

        Returns (task part of c (m, q), shared part of c (None), curvature (m,)), unweighted.
        """
        rows = _rows(rows)
        _, second = self.loss.derivatives(self.y[rows], self._raw(params, rows))
        return self.X_aug[rows], None, second

    def linearisation(self, params, rows=None):
        """:data:`Linearisation` at ``params``: in ``theta_k = g + v_k`` coordinates the output
        gradient is the feature row in the shared block and in the row's own task block."""
        rows = _rows(rows)
        X = self.X_aug[rows]
        return Linearisation(self._raw(params, rows), X, X, self.y[rows], self.loss)

    # -- tasks --------------------------------------------------------------------------------
    def _task_indicator(self, row_values=None):
        """Sparse (n_tasks, n) matrix with ``row_values`` (default 1) at [code_i, i]."""
        n = self.codes.shape[0]
        data = np.ones(n) if row_values is None else row_values
        return csr_matrix((data, (self.codes, np.arange(n))), shape=(self.n_tasks, n))

    def task_sums(self, values):
        """Sum over each task's rows of ``values`` (n, ...) -> (n_tasks, ...)."""
        values = np.asarray(values, dtype=np.float64)
        flat = values.reshape(values.shape[0], -1)
        return np.asarray(self._task_indicator() @ flat).reshape(
            (self.n_tasks,) + values.shape[1:])

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
        shared parts (K, q); a leading batch axis for a batch of points."""
        if params.batched:
            data = np.zeros_like(params.task)
            for task, rows in self._task_groups():
                X = self.X_aug[rows]
                first, _ = self.loss.derivatives(self.y[rows][None, :],
                                                 params.task[:, task, :] @ X.T)
                data[:, task, :] = (first * self.row_weights[rows][None, :]) @ X
            tie = 2.0 * self.tie[None] * (params.task - params.shared[:, None, :])
            return data + tie, -tie
        first, _ = self.loss.derivatives(self.y, self._raw(params))
        # sum_i w_i l'_i x_i per task as one sparse product (no (n, q) temporary).
        data = np.asarray(self._task_indicator(self.row_weights * first) @ self.X_aug)
        tie = 2.0 * self.tie * (params.task - params.shared)
        return data + tie, -tie

    def shared_penalty_gradient(self, params):
        """Gradient of shared_alpha ||gamma||^2: (p,), or (M, p) at a batch of points."""
        return 2.0 * self.shared_alpha * self.shared_penalty_mask * params.shared

    def task_shared_hessian(self, params, task):
        """Task ``task``'s term's part of H_K+1,K+1: 2 diag(a_task) (its rows do not touch the
        shared parameters of a linear model)."""
        return 2.0 * np.diag(self.tie[task])

    def hessian_blocks(self, params, active=None):
        """:class:`~mtif_sklearn.base.ArrowBlocks` of the objective (Lemma A.1).

        ``active`` (bool, K) restricts the shared block to the tasks that take part in it.
        """
        q = self.n_task_params
        _, second = self.loss.derivatives(self.y, self._raw(params))
        curvature = second * self.row_weights
        task_blocks = np.zeros((self.n_tasks, q, q))
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported just below
            for task, rows in self._task_groups():  # one task's rows at a time: O(n_k q)
                X_task = self.X_aug[rows]
                task_blocks[task] = X_task.T @ (X_task * curvature[rows, None])
        if not np.all(np.isfinite(task_blocks)):
            raise ValueError(
                "The Hessian overflowed float64 (feature values too large: the largest "
                f"absolute value is {np.abs(self.X_aug).max():.3g}). Scale the features, e.g. "
                "with sklearn.preprocessing.StandardScaler."
            )
        diagonal = np.arange(q)
        task_blocks[:, diagonal, diagonal] += 2.0 * self.tie
        coupling = np.zeros((self.n_tasks, q, q))
        coupling[:, diagonal, diagonal] = -2.0 * self.tie
        tie_in_shared = self.tie if active is None else self.tie[np.asarray(active, bool)]
        shared_block = np.diag(2.0 * tie_in_shared.sum(axis=0)
                               + 2.0 * self.shared_alpha * self.shared_penalty_mask)
        return ArrowBlocks(task_blocks, coupling, shared_block)

    # -- training dynamics (the affinity baselines) -------------------------------------------
    def shared_gradients(self, params):
        """Gradient of every task's mean data loss with respect to the shared parameters, (K, q).

        In ``theta_k = g + v_k`` coordinates (an exact reparametrisation of eq. 2, whose tie
        ``||v_k||^2`` does not involve g) it equals the gradient with respect to theta_k.
        """
        task_part, _ = self.row_gradients(params)
        return self.task_sums(task_part * self.row_weights[:, None])

    def shared_step(self, params, direction):
        """Parameters after the shared step ``-direction``: every theta_k moves with g."""
        return Params(params.task - direction[None, :], params.shared - direction)

    def initial_params(self, seed=None):
        """Start of a training trajectory: zero (the objective is convex)."""
        q = self.n_task_params
        return Params(np.zeros((self.n_tasks, q)), np.zeros(q))
