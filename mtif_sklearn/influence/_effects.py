"""Influence algebra on a factored arrow Hessian (Propositions 1-2, Lemmas A.3-A.6).

Sign convention (DESIGN.md section 2): an effect is the first-order estimate of
``V_k(without the term) - V_k(with everything)``. Removing a term whose gradient at the optimum is
g moves the parameters by ``H^-1 g`` (the Newton step of the objective without it, Lemma A.3), so
the effect on task k is ``v_k^T H^-1 g`` with v_k the gradient of task k's validation loss.

With the arrow inverse (Lemma A.6), for a term of task l with task part g^t and shared part g^s,

    effect_k = [k == l] z_k . g^t + x_k . (g^s - W_l^T g^t),

where z_k = H_kk^-1 v_k^t, W_l = H_ll^-1 H_l,K+1 and x_k = N^-1 (v_k^s - H_K+1,k z_k) is the
shared part of H^-1 v_k. The second term is the between-task (shared) path of Proposition 1.
Every function runs unchanged on any backend of :class:`~mtif_sklearn.backend.ArrayBackend`.
"""

import numpy as np

from .._arrow import solve_schur, solve_task_blocks
from ..backend import to_numpy

__all__ = ["perturbation_effects", "reduced_gradients", "solve_rows_by_task",
           "summed_perturbation_effects", "target_solves"]


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
    pushed = factor.couple(z)  # H_K+1,k z_k
    x_shared = solve_schur(factor, xp.matrix_transpose(val_shared - pushed))
    return z, x_shared


def solve_rows_by_task(factor, codes, rhs_task):
    """z_e = H_kk^-1 g_e for rows e of task k, and H_K+1,k z_e (no (rows, q, q) gather on
    NumPy: one product per task present)."""
    z = factor.backend.rows_times_task_matrices(codes, rhs_task, factor.task_inverse)
    return z, factor.rows_couple(codes, z)


def reduced_gradients(factor, codes, grad_task, grad_shared):
    """g^s - W_l^T g^t for every row (its gradient pushed onto the shared block)."""
    reduced = factor.rows_solved_coupling(codes, grad_task)
    reduced *= -1.0
    if grad_shared is not None:
        reduced += grad_shared
    return reduced


def perturbation_effects(factor, z, x_shared, codes, grad_task, grad_shared, *,
                         return_reduced=False, out=None, columns=None):
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
    out : array of shape (m, K), optional
        Write the effects into this array (no temporary, no copy).
    columns : array of int, optional
        Only the effects on these tasks (in this order): (m, len(columns)).

    Returns
    -------
    effects : array of shape (m, K) or (m, len(columns))
    """
    xp, backend = factor.xp, factor.backend
    reduced = reduced_gradients(factor, codes, grad_task, grad_shared)
    if columns is not None:
        x_shared = x_shared[:, backend.asarray(np.asarray(columns))]
    if out is not None:
        xp.matmul(reduced, x_shared, out=out)
        effects = out
    else:
        effects = xp.matmul(reduced, x_shared)
    # Within-task path: only column codes[i] of row i (Proposition 1, first term).
    codes = np.asarray(to_numpy(codes))
    rows = np.arange(len(codes))
    if columns is None:
        column = codes
    else:
        column_of = np.full(z.shape[0], -1)
        column_of[np.asarray(columns)] = np.arange(len(columns))
        column = column_of[codes]
        rows, column, codes = rows[column >= 0], column[column >= 0], codes[column >= 0]
    if backend.is_numpy:  # no (m, q) product temporary
        subset = grad_task if rows.size == grad_task.shape[0] else grad_task[rows]
        within = np.einsum("mq,mq->m", subset, z[codes])
    else:
        rows, column, codes = (backend.asarray(a) for a in (rows, column, codes))
        within = xp.sum(grad_task[rows] * z[codes], axis=1)
    effects[rows, column] += within
    if return_reduced:
        return effects, reduced
    return effects


def summed_perturbation_effects(factor, z, x_shared, codes, grad_task, grad_shared):
    """Sum over the terms of :func:`perturbation_effects`, (K,) NumPy, without the (m, K) effects.

    Summed over terms i of tasks l_i, effect_k is ``z_k . sum_{i: l_i = k} g^t_i
    + x_k . sum_i (g^s_i - W_{l_i}^T g^t_i)`` (Proposition 1 summed first): one sum of reduced
    gradients (p,) and one scatter of within-task dots, O(m q p + K (q + p)) instead of
    O(m K p). Arguments as in :func:`perturbation_effects`.
    """
    xp, backend = factor.xp, factor.backend
    reduced = reduced_gradients(factor, codes, grad_task, grad_shared)
    shared_path = np.asarray(to_numpy(xp.matmul(xp.sum(reduced, axis=0), x_shared)))
    codes = np.asarray(to_numpy(codes))
    if backend.is_numpy:  # no (m, q) product temporary
        within = np.einsum("mq,mq->m", grad_task, z[codes])
    else:
        within = to_numpy(xp.sum(grad_task * z[backend.asarray(codes)], axis=1))
    return shared_path + np.bincount(codes, weights=np.asarray(within), minlength=z.shape[0])
