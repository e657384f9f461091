"""Newton's method with arrow solves for the multitask linear objective.

Each step solves the arrow-shaped Hessian through its task blocks and the Schur complement
(:func:`~mtif_sklearn._arrow.factor_arrow`), never a dense (Kq + p)^2 system. The squared loss
is quadratic, so one step from any point is the exact minimiser; the logistic loss takes damped
steps with a backtracking line search.
"""

import numpy as np

from .._arrow import NotPositiveDefiniteError, arrow_solve, factor_arrow, solve_task_blocks
from ..backend import single_blas_thread
from ..base import Params, hessian_blocks_to_factor

__all__ = ["fit_linear_multitask"]


def fit_linear_multitask(objective, init=None, *, active=None, max_iter=100, tol=1e-8,
                         task_names=None):
    """Minimise the multitask objective by Newton's method with arrow solves.

    Tasks outside ``active`` (paper eq. 11 with sigma_l = 0) do not enter the shared block; their
    head is fitted afterwards against the final shared parameters, which is the limit of the
    sigma_l-weighted objective as sigma_l -> 0.

    Parameters
    ----------
    objective : LinearMultitaskObjective
    init : Params, default=None
        Starting point (zero when None).
    active : ndarray of bool, shape (K,), default=None
        Tasks of the shared fit (all when None).
    max_iter : int, default=100
        Newton steps at most (per phase).
    tol : float, default=1e-8
        Stop when the largest absolute gradient entry is below ``tol``.
    task_names : list, default=None
        Task labels for error messages.

    Returns
    -------
    params : Params
    n_iter : int
        Newton iterations of the shared fit.
    converged : bool
    """
    n_tasks, q = objective.n_tasks, objective.n_task_params
    active = np.ones(n_tasks, dtype=bool) if active is None else np.asarray(active, dtype=bool)
    params = init if init is not None else Params(np.zeros((n_tasks, q)), np.zeros(q))
    with single_blas_thread(np, q):
        params, n_iter, converged = _newton(objective, params, active, True, max_iter, tol,
                                            task_names)
        if not active.all():
            params, _, heads_converged = _newton(objective, params, ~active, False, max_iter,
                                                 tol, task_names)
            converged = converged and heads_converged
    return params, n_iter, converged


def _gradient(objective, params, tasks_mask, update_shared):
    task_grad, shared_parts = objective.task_gradients(params)
    task_grad = task_grad * tasks_mask[:, None]
    shared_grad = (shared_parts[tasks_mask].sum(axis=0)
                   + objective.shared_penalty_gradient(params))
    if not update_shared:
        shared_grad = np.zeros_like(shared_grad)
    return task_grad, shared_grad


def _merit(objective, params, tasks_mask, with_shared):
    value = float(np.sum(objective.task_values(params)[tasks_mask]))
    if with_shared:
        value += objective.penalty_values(params)[1]
    return value


def _newton_step(objective, params, task_grad, shared_grad, tasks_mask, update_shared,
                 task_names):
    blocks = hessian_blocks_to_factor(objective, params, active=tasks_mask)
    if not update_shared:  # heads only, given the shared parameters
        factor = factor_arrow(blocks.task, blocks.coupling, np.eye(blocks.shared.shape[0]),
                              active=np.zeros(len(tasks_mask), dtype=bool),
                              task_names=task_names, overwrite_blocks=True)
        return -solve_task_blocks(factor, task_grad), np.zeros_like(shared_grad)
    try:
        # The blocks are this step's own: factored in place (no second K q^2 array).
        factor = factor_arrow(*blocks, active=tasks_mask, task_names=task_names,
                              overwrite_blocks=True)
    except NotPositiveDefiniteError as exc:
        # The estimators have no damping parameter: say what the user can change.
        raise ValueError(
            f"Cannot fit: the Hessian {exc.block} is not positive definite (smallest eigenvalue "
            f"{exc.smallest_eigenvalue:.3g}), so the shared parameters are not determined "
            f"(shared_alpha={objective.shared_alpha:g}; typical causes: collinear or constant "
            "features, more features than rows, or huge feature values). Set shared_alpha > 0 "
            "(e.g. 1e-3), increase alpha, scale the features or drop redundant ones."
        ) from exc
    return arrow_solve(factor, -task_grad, -shared_grad)


def _newton(objective, params, tasks_mask, update_shared, max_iter, tol, task_names):
    """Newton iterations over the tasks in ``tasks_mask`` (and the shared block if asked)."""
    for iteration in range(1, max_iter + 1):
        task_grad, shared_grad = _gradient(objective, params, tasks_mask, update_shared)
        grad_norm = max(np.abs(task_grad).max(initial=0.0), np.abs(shared_grad).max(initial=0.0))
        if grad_norm <= tol and iteration > 1:
            return params, iteration - 1, True
        step_task, step_shared = _newton_step(objective, params, task_grad, shared_grad,
                                              tasks_mask, update_shared, task_names)
        step_task = step_task * tasks_mask[:, None]
        if objective.loss.quadratic:  # one step is the exact minimiser
            return Params(params.task + step_task, params.shared + step_shared), iteration, True
        # Backtracking (Armijo) line search on the objective restricted to the updated tasks.
        start_value = _merit(objective, params, tasks_mask, update_shared)
        slope = float(np.sum(task_grad * step_task) + np.sum(shared_grad * step_shared))
        # Near the optimum the decrease is below the round-off of the objective's value (badly
        # scaled features): a step that keeps the value flat to round-off and shrinks the
        # gradient is progress too (as in scikit-learn's Newton solvers).
        flat = start_value + 64 * np.finfo(np.float64).eps * max(1.0, abs(start_value))
        step = 1.0
        for _ in range(50):
            trial = Params(params.task + step * step_task, params.shared + step * step_shared)
            value = _merit(objective, trial, tasks_mask, update_shared)
            if value <= start_value + 1e-4 * step * slope:
                break
            if value <= flat and _gradient_norm(objective, trial, tasks_mask,
                                                update_shared) < grad_norm:
                break
            step *= 0.5
        else:  # no step makes progress: the iterate is optimal to working precision
            return params, iteration, False
        params = trial
        if abs(slope) < 1e-30:
            return params, iteration, True
    return params, max_iter, False


def _gradient_norm(objective, params, tasks_mask, with_shared):
    task_grad, shared_grad = _gradient(objective, params, tasks_mask, with_shared)
    return max(np.abs(task_grad).max(initial=0.0), np.abs(shared_grad).max(initial=0.0))
