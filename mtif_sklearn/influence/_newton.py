"""Removal effects beyond first order: Newton steps on the objective without the row / task.

``MTIFInfluence(method="newton")`` estimates ``V_k(without) - V_k(with everything)`` by taking
Newton steps from the fitted parameters theta on the objective with the row or task actually
removed, then evaluating the true validation loss there (not its linearisation). For a quadratic
objective (MultitaskRidge) one step lands exactly on the refit.

All of it reuses the arrow factor of the full Hessian H (task blocks H_kk, couplings
H_k,K+1 = H_ks, Schur complement N); r denotes the gradient of the full objective at theta
(zero at an exact optimum, kept so that the steps are true Newton steps).

Task l removed (its rows and regulariser T_l; paper eq. 11). The Hessian of L - T_l over the other
tasks and the shared block is the arrow without block l, whose Schur complement is

    N_-l = N + H_sl H_ll^-1 H_ls - S_l,      S_l = task l's part of H_ss,

one p x p Cholesky per task. With u_k = H_kk^-1 r_k and W_k = H_kk^-1 H_ks, the step is

    dg = -N_-l^-1 [(r_s - dT_l/dg) - sum_{k != l} H_sk u_k],     dbeta_k = -u_k - W_k dg,

and the same formula for k = l is the Newton step of task l's own head against the new shared
parameters (its term T_l with g fixed), which is how ``loto_effects`` defines the diagonal.

Row i of task l removed (weight w_i -> 0, 1/n_l fixed; eq. 5). Its loss Hessian is rank one,
``s_i c_i c_i^T`` (exact for a linear model; the Gauss-Newton term of a network with one
output), so by Sherman-Morrison, with A = H^-1, e = A c,
a = A r, b = A grad(l_i) and rho = w_i s_i,

    (H - rho c c^T)^-1 = A + rho e e^T / (1 - rho c^T e),
    step = -a + w b - rho e (c^T a - w c^T b) / (1 - rho c^T e).

A c and A grad(l_i) have a compact form (block l and the shared block; block k != l is
-W_k times the shared part), so each row costs two small solves and a leverage c^T e, in row
chunks; only the validation-loss evaluation at the M new points touches all tasks.

Further steps (``newton_steps > 1``, which matter only for non-quadratic losses):
- tasks: a full Newton step on L - T_l at the current point (gradient and Hessian blocks there,
  one arrow factorisation per task and step), the head again stepped against the new shared
  parameters;
- rows: a quasi-Newton (chord) step that reuses the removed-row Hessian at the full solution,
  H - rho c c^T, with the true gradient of L - w_i l_i at the current point. That gradient needs
  every training row at every removal's parameters, O(n_train) per row and step (O(n_train^2)
  in all); refactorising per row would cost a full arrow factorisation per row.
"""

import warnings

import numpy as np
import scipy.linalg

from .._arrow import (
    NotPositiveDefiniteError,
    arrow_solve,
    factor_arrow,
    solve_schur,
    solve_task_blocks,
)
from .._tasks import group_rows_by_task
from ..base import Params
from ._effects import reduced_gradients, solve_rows_by_task
from ._problem import mean_task_losses
from ._strategy import CHUNK_NUMBERS, RemovalStrategy

__all__ = ["Newton"]


def _cholesky_or_warn(matrix, what, damping):
    """Cholesky factor, or None with a warning when ``matrix`` is not positive definite."""
    try:
        factor = scipy.linalg.cho_factor(matrix, lower=True)
    except np.linalg.LinAlgError:
        factor = None
    if factor is None or not np.all(np.isfinite(factor[0])):
        smallest = float(np.linalg.eigvalsh(matrix).min())
        suggestion = float(f"{max(damping - smallest, 1e-12) * 1.1:.2g}")
        warnings.warn(
            f"The Hessian of the objective without {what} is not positive definite on the "
            f"shared block (smallest eigenvalue of its Schur complement {smallest:.3g} with "
            f"damping={damping:g}): the shared parameters are not determined without it, so "
            f"its Newton removal effects are NaN. Pass damping >= {suggestion:g} or increase "
            "shared_alpha.", UserWarning, stacklevel=2)
        return None
    return factor


def _dot(task_a, shared_a, task_b, shared_b):
    value = np.einsum("mq,mq->m", task_a, task_b)
    if shared_a is not None:
        value = value + np.einsum("mp,mp->m", shared_a, shared_b)
    return value


class Newton(RemovalStrategy):
    """Removal effects from Newton steps on the objective without the row or task (NumPy).

    Parameters
    ----------
    problem : InfluenceProblem
        The fitted model, its objectives and factor (refactored on the host for a device
        backend).
    n_steps : int
        Newton steps.
    """

    allows_nan = True

    def __init__(self, problem, n_steps=1):
        super().__init__(problem)
        self.n_steps = n_steps
        self.factor = factor = problem.host_factor()
        self.train, self.params = problem.train, problem.params
        self.damping, self.task_names = problem.damping, problem.task_names
        q, p = factor.shape[1:]
        self.task_params = np.asarray(self.params.task, dtype=np.float64)
        self.shared_params = np.asarray(self.params.shared, dtype=np.float64)
        with problem.backend.blas_threads(max(q, p)):
            task_grad, shared_parts = self.train.task_gradients(self.params)
            self.task_shared_grad = np.asarray(shared_parts)  # dT_l/dg, (K, p)
            self.residual_task = np.asarray(task_grad)
            self.residual_shared = (self.task_shared_grad.sum(axis=0)
                                    + np.asarray(self.train.shared_penalty_gradient(self.params)))
            # u_k = H_kk^-1 r_k and a = H^-1 r (a full arrow solve), both constant.
            self.u = solve_task_blocks(factor, self.residual_task)
            self.a_task, self.a_shared = arrow_solve(factor, self.residual_task,
                                                     self.residual_shared)

    # -- the strategy interface ------------------------------------------------------------
    def row_chunk_size(self, n_eval=None):
        """Removals per chunk: keeps the (M, K, q) points and (M, n_eval) losses near 2**22."""
        n_tasks, q, p = self.factor.shape
        n_eval = len(self.problem.val.codes) if n_eval is None else n_eval
        return max(1, CHUNK_NUMBERS // (n_tasks * q + p + n_eval + q * p))

    def _effects(self, points):
        problem = self.problem
        return (mean_task_losses(problem.val, points, problem.n_tasks)
                - problem.validation_loss)

    def row_effects(self, objective, rows, weights, out=None, columns=None):
        with self.problem.backend.blas_threads(max(self.factor.shape[1:])):
            effects = self._effects(self.row_points(objective, rows, np.asarray(weights)))
        if columns is not None:
            effects = effects[:, np.asarray(columns)]
        if out is not None:
            out[...] = effects
        return effects

    def task_effects(self, tasks, columns=None):
        with self.problem.backend.blas_threads(max(self.factor.shape[1:])):
            effects = self._effects(self.task_points(np.asarray(tasks)))
        return effects if columns is None else effects[:, np.asarray(columns)]

    def sample_effects(self, evaluation, rows):
        train = self.train
        with self.problem.backend.blas_threads(max(self.factor.shape[1:])):
            points = self.row_points(train, rows, train.row_weights[rows])
            return evaluation.row_losses(points) - evaluation.row_losses(self.params)

    # -- shared helpers --------------------------------------------------------------------
    def pushed_back(self, shared):
        """-W_k shared for every task k: (M, p) -> (M, K, q), one GEMM."""
        coupling_solved = self.factor.coupling_solved  # (K, q, p)
        n_tasks, q, p = coupling_solved.shape
        return -(shared @ coupling_solved.reshape(n_tasks * q, p).T).reshape(-1, n_tasks, q)

    def expand(self, codes, own_task, shared):
        """Full task parameters (M, K, q) of perturbations whose task part is -W_k shared in
        every block except block codes[m], which is own_task[m]."""
        full = self.pushed_back(shared)
        full[np.arange(codes.size), codes] = own_task
        return full

    # -- tasks -----------------------------------------------------------------------------
    def task_points(self, tasks):
        """Parameters after ``n_steps`` Newton steps without each task in ``tasks`` (codes):
        a batch of M points."""
        factor, train = self.factor, self.train
        coupling = factor.coupling
        pushed_all = np.einsum("kqp,kq->p", coupling, self.u)
        # N_-l for every l of the chunk, (M, p, p), and the shared right-hand sides (M, p).
        schur = (factor.schur[None]
                 + np.matmul(np.swapaxes(coupling[tasks], 1, 2), factor.coupling_solved[tasks])
                 - np.stack([np.asarray(train.task_shared_hessian(self.params, task))
                             for task in tasks]))
        schur = (schur + np.swapaxes(schur, 1, 2)) / 2
        rhs = -(self.residual_shared[None] - self.task_shared_grad[tasks]) + (
            pushed_all[None] - np.einsum("mqp,mq->mp", coupling[tasks], self.u[tasks]))
        try:  # one batched Cholesky for the chunk
            chol = np.linalg.cholesky(schur)
            ok = np.all(np.isfinite(chol), axis=(1, 2))
        except np.linalg.LinAlgError:
            ok = np.zeros(tasks.size, dtype=bool)
        step_shared = np.full((tasks.size, self.shared_params.size), np.nan)
        if ok.all():  # all positive definite: one batched solve
            step_shared = np.linalg.solve(schur, rhs[..., None])[..., 0]
        else:
            for m, task in enumerate(tasks):
                factor_m = _cholesky_or_warn(schur[m], f"task {self.task_names[task]!r}",
                                             self.damping)
                if factor_m is not None:
                    step_shared[m] = scipy.linalg.cho_solve(factor_m, rhs[m])
        # dbeta_k = -u_k - W_k dg for every task k (the removed head included), one GEMM.
        out_task = self.task_params[None] - self.u[None] + self.pushed_back(step_shared)
        out_shared = self.shared_params[None] + step_shared
        if self.n_steps > 1:
            for m, task in enumerate(tasks):
                if np.isfinite(out_shared[m]).all():
                    out_task[m], out_shared[m] = self._more_task_steps(task, out_task[m],
                                                                       out_shared[m])
        return Params(out_task, out_shared)

    def _more_task_steps(self, task, task_params, shared_params):
        """Steps 2.. without ``task``: a Newton step at the current point (new Hessian)."""
        active = np.ones(self.task_params.shape[0], dtype=bool)
        active[task] = False
        for _ in range(self.n_steps - 1):
            point = Params(task_params, shared_params)
            task_grad, shared_parts = self.train.task_gradients(point)
            shared_grad = (np.asarray(shared_parts)[active].sum(axis=0)
                           + np.asarray(self.train.shared_penalty_gradient(point)))
            blocks = self.train.hessian_blocks(point, active=active)
            try:
                factor = factor_arrow(*blocks, damping=self.damping, active=active,
                                      task_names=self.task_names)
            except NotPositiveDefiniteError as exc:
                warnings.warn(
                    f"Newton step {_ + 2} without task {self.task_names[task]!r}: {exc}; its "
                    "Newton removal effects are NaN.", UserWarning, stacklevel=3)
                return np.full_like(task_params, np.nan), np.full_like(shared_params, np.nan)
            # Inactive task: its block row only, i.e. its head's Newton step given the new g.
            step_task, step_shared = arrow_solve(factor, -np.asarray(task_grad), -shared_grad)
            task_params = task_params + step_task
            shared_params = shared_params + step_shared
        return task_params, shared_params

    # -- rows ------------------------------------------------------------------------------
    def _compact_solve(self, codes, vec_task, vec_shared):
        """H^-1 v for v with a task part in block codes[m] only: (block codes[m], shared)."""
        factor = self.factor
        reduced = reduced_gradients(factor, codes, vec_task, vec_shared)  # v_s - W_l^T v_t
        x_shared = solve_schur(factor, reduced.T).T  # (M, p)
        x_task, _ = solve_rows_by_task(factor, codes, vec_task)  # H_ll^-1 v_t
        for task, rows in group_rows_by_task(codes):  # - W_l x_shared
            x_task[rows] -= x_shared[rows] @ factor.coupling_solved[task].T
        return x_task, x_shared

    def row_points(self, objective, rows, weights):
        """Parameters after ``n_steps`` (quasi-)Newton steps without each row: a batch of
        points, one per row.

        Parameters
        ----------
        objective : MultitaskObjective
            Holds the rows (the training objective, or other rows for ``transform``).
        rows : slice or array of int, selecting M rows
        weights : array of shape (M,)
            Each row's weight in the training objective (what removing it takes away).
        """
        params = self.params
        codes = np.asarray(objective.codes)[rows]
        grad_task, grad_shared = objective.row_gradients(params, rows)
        curv_task, curv_shared, curvature = objective.row_curvatures(params, rows)
        e_task, e_shared = self._compact_solve(codes, curv_task, curv_shared)
        b_task, b_shared = self._compact_solve(codes, grad_task, grad_shared)
        leverage = _dot(curv_task, curv_shared, e_task, e_shared)
        c_dot_a = _dot(curv_task, curv_shared, self.a_task[codes],
                       None if curv_shared is None else
                       np.broadcast_to(self.a_shared, e_shared.shape))
        c_dot_b = _dot(curv_task, curv_shared, b_task, b_shared)
        rho = weights * curvature
        denominator = 1.0 - rho * leverage
        # H - rho c c^T is the Hessian without the row; positive definite, so the denominator
        # is positive (H^-1 exists). Round-off guard only.
        denominator = np.where(denominator > 1e-12, denominator, np.nan)
        gain = rho * (c_dot_a - weights * c_dot_b) / denominator
        own_task = weights[:, None] * b_task - gain[:, None] * e_task
        own_shared = weights[:, None] * b_shared - gain[:, None] * e_shared
        step_task = self.expand(codes, own_task, own_shared) - self.a_task[None]
        task_params = self.task_params[None] + step_task
        shared_params = self.shared_params[None] + own_shared - self.a_shared[None]
        for _ in range(self.n_steps - 1):
            # Chord step: the true gradient of L - w_i l_i here, the Hessian of step 1.
            point = Params(task_params, shared_params)
            full_task, shared_parts = self.train.task_gradients(point)
            full_shared = (np.asarray(shared_parts).sum(axis=1)
                           + np.asarray(self.train.shared_penalty_gradient(point)))
            row_task, row_shared = objective.row_gradients(point, rows)
            full_task = np.array(full_task)
            full_task[np.arange(codes.size), codes] -= weights[:, None] * row_task
            if row_shared is not None:
                full_shared = full_shared - weights[:, None] * row_shared
            solved_task, solved_shared = arrow_solve(
                self.factor, np.moveaxis(full_task, 0, -1), full_shared.T)
            solved_task = np.moveaxis(solved_task, -1, 0)  # A g, (M, K, q)
            solved_shared = solved_shared.T
            c_dot = _dot(curv_task, curv_shared, solved_task[np.arange(codes.size), codes],
                         solved_shared)
            gain = rho * c_dot / denominator
            task_params = (task_params - solved_task
                           - self.expand(codes, gain[:, None] * e_task,
                                         gain[:, None] * e_shared))
            shared_params = shared_params - solved_shared - gain[:, None] * e_shared
        return Params(task_params, shared_params)
