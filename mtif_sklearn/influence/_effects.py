"""Influence algebra on a factored arrow Hessian (Propositions 1-2, Lemmas A.3-A.6).

Sign convention (DESIGN.md section 2): an effect is the first-order estimate of
``V_k(without the term) - V_k(with everything)``. Removing a term whose gradient at the optimum is
g moves the parameters by ``H^-1 g`` (the Newton step of the objective without it, Lemma A.3), so
the effect on task k is ``v_k^T H^-1 g`` with v_k the gradient of task k's validation loss.

With the arrow inverse (Lemma A.6), for a term of task l with task part g^t and shared part g^s,

    effect_k = [k == l] z_k . g^t + x_k . (g^s - W_l^T g^t),

where z_k = H_kk^-1 v_k^t, W_l = H_ll^-1 H_l,K+1 and x_k = N^-1 (v_k^s - H_K+1,k z_k) is the
shared part of H^-1 v_k. The second term is the between-task (shared) path of Proposition 1.
"""

import numpy as np

from .._tasks import group_rows_by_task
from ..backend import is_numpy_namespace, single_blas_thread
from ._arrow import solve_schur, solve_task_blocks

__all__ = ["perturbation_effects", "target_solves"]


def target_solves(factor, val_task, val_shared):
    """H^-1 v_k for the validation-loss gradient of every task k.

    Parameters
    ----------
    factor : ArrowFactor
    val_task : array of shape (K, q)
        Task part of the gradient of V_k (only block k is non-zero, so one row per task).
    val_shared : array of shape (K, p)
        Shared part of the gradient of V_k.

    Returns
    -------
    z : array of shape (K, q)
        H_kk^-1 v_k^t.
    x_shared : array of shape (p, K)
        Shared part of H^-1 v_k, one column per task.
    """
    xp = factor.xp
    z = solve_task_blocks(factor, val_task)
    pushed = xp.matmul(xp.matrix_transpose(factor.coupling), z[..., None])[..., 0]
    x_shared = solve_schur(factor, xp.matrix_transpose(val_shared - pushed))
    return z, x_shared


def solve_rows_by_task(factor, codes, rhs_task):
    """z_e = H_kk^-1 g_e for rows e of task k, and H_K+1,k z_e; one solve per task present.

    (A per-row gather of H_kk^-1 would hold an (n_rows, q, q) array.)
    """
    xp = factor.xp
    if not is_numpy_namespace(xp):
        blocks = xp.linalg.inv(factor.task_blocks)[xp.asarray(codes)]
        z = xp.matmul(blocks, xp.asarray(rhs_task)[..., None])[..., 0]
        coupling_t = xp.matrix_transpose(factor.coupling)[xp.asarray(codes)]
        return z, xp.matmul(coupling_t, z[..., None])[..., 0]
    z = np.empty((len(codes), factor.task_blocks.shape[-1]))
    pushed = np.empty((len(codes), factor.coupling.shape[-1]))
    with single_blas_thread(xp, factor.task_blocks.shape[-1]):
        for task, rows in group_rows_by_task(codes):
            z[rows] = np.linalg.solve(factor.task_blocks[task], rhs_task[rows].T).T
            pushed[rows] = z[rows] @ factor.coupling[task]
    return z, pushed


def reduced_gradients(factor, codes, grad_task, grad_shared):
    """g^s - W_l^T g^t for every row (its gradient pushed onto the shared block)."""
    xp = factor.xp
    if is_numpy_namespace(xp):
        # One GEMM per task present (rows grouped by task) instead of a (m, q, p) gather.
        reduced = np.empty((len(codes), factor.coupling_solved.shape[2]))
        for task, rows in group_rows_by_task(codes):
            reduced[rows] = -(grad_task[rows] @ factor.coupling_solved[task])
    else:
        solved = factor.coupling_solved[codes]  # (m, q, p): one batched product on the device
        reduced = -xp.matmul(grad_task[:, None, :], solved)[:, 0, :]
    if grad_shared is not None:
        reduced = reduced + grad_shared
    return reduced


def perturbation_effects(factor, z, x_shared, codes, grad_task, grad_shared, *,
                         return_reduced=False, out=None):
    """Effects on every task's validation loss of removing terms with the given gradients.

    Parameters
    ----------
    factor : ArrowFactor
    z, x_shared : arrays
        From :func:`target_solves`.
    codes : array of int, shape (m,)
        Task of each term.
    grad_task : array of shape (m, q)
        Task part of each term's gradient (already weighted as in the objective).
    grad_shared : array of shape (m, p) or None
        Shared part (None: zero).
    return_reduced : bool, default=False
        Also return the reduced gradients (m, p).
    out : ndarray of shape (m, K), optional
        NumPy only: write the effects into this array (no temporary, no copy).

    Returns
    -------
    effects : array of shape (m, K)
    """
    xp = factor.xp
    reduced = reduced_gradients(factor, codes, grad_task, grad_shared)
    if out is not None and is_numpy_namespace(xp):
        effects = np.matmul(reduced, x_shared, out=out)
    else:
        effects = xp.matmul(reduced, x_shared)
    # Within-task path: only column codes[i] of row i (Proposition 1, first term).
    within = xp.sum(grad_task * z[codes], axis=1)
    effects[xp.arange(effects.shape[0]), codes] += within
    if return_reduced:
        return effects, reduced
    return effects

