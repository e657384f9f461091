"""The arrow-shaped multitask Hessian: factor it and solve with it, never forming it densely.

The Hessian of a multitask objective (paper eq. 7, Lemmas A.1-A.2) is

    H = [[H_11,        0, ..., H_1,K+1],
         [   0,     H_22, ..., H_2,K+1],
         [ ...                        ],
         [H_K+1,1, ...,       H_K+1,K+1]]

Lemma A.6 inverts it through the K task blocks and the Schur complement of the shared block,

    N = H_K+1,K+1 - sum_k H_K+1,k H_kk^-1 H_k,K+1,

at cost sum_k d_k^3 + p^3 instead of (sum_k d_k + p)^3. Every function here takes arrays of
one namespace ``xp`` (NumPy, CuPy, torch via array-api-compat) and returns arrays of it.
"""

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from ..backend import is_numpy_namespace, single_blas_thread

__all__ = ["ArrowFactor", "arrow_solve", "arrow_to_dense", "factor_arrow"]


@dataclass
class ArrowFactor:
    """A factored arrow matrix (see :func:`factor_arrow`).

    The array namespace ``xp`` (NumPy, CuPy or torch through array-api-compat) is derived from
    the arrays rather than stored, so a factor pickles with whatever holds it.

    Parameters
    ----------
    task_blocks : array of shape (K, q, q)
        Damped task blocks H_kk.
    coupling : array of shape (K, q, p)
        Task-shared blocks H_k,K+1.
    coupling_solved : array of shape (K, q, p)
        H_kk^-1 H_k,K+1 for every task.
    schur : array of shape (p, p)
        Schur complement N of the shared block (over the active tasks).
    schur_factor : object
        Cholesky factor of ``schur`` (SciPy ``cho_factor`` tuple on NumPy, a lower-triangular
        array otherwise).
    schur_condition : float
        2-norm condition number of ``schur``.
    active : ndarray of bool, shape (K,)
        Tasks that take part in the shared block (see :func:`factor_arrow`).
    """

    task_blocks: object
    coupling: object
    coupling_solved: object
    schur: object
    schur_factor: object
    schur_condition: float
    active: np.ndarray

    @property
    def xp(self):
        """Array namespace of the factor's arrays."""
        from array_api_compat import array_namespace

        return array_namespace(self.task_blocks)


def _diag_add(blocks, value, xp):
    if value == 0:
        return blocks
    size = blocks.shape[-1]
    return blocks + value * xp.eye(size, dtype=blocks.dtype)


def _raise_not_positive_definite(blocks, xp, names, damping):
    """Find the first non-positive-definite block and say which damping would fix it."""
    with single_blas_thread(xp, blocks.shape[-1]):
        eigenvalues = xp.linalg.eigvalsh(blocks)
    smallest = np.asarray(
        [float(v) for v in np.asarray(_to_host(xp.min(eigenvalues, axis=-1))).reshape(-1)]
    )
    bad = int(np.argmin(smallest))
    needed = damping - smallest[bad]
    suggestion = float(f"{max(needed, 1e-12) * 1.1:.2g}")
    raise ValueError(
        f"The Hessian {names[bad]} is not positive definite (smallest eigenvalue "
        f"{smallest[bad]:.3g} with damping={damping:g}). The objective is not strictly convex "
        f"there; pass damping >= {suggestion:g} (damping is added to every block's diagonal), "
        "or increase the model's regularisation (alpha / shared_alpha for the linear models, "
        "weight_decay for networks)."
    )


def _to_host(array):
    if hasattr(array, "get"):
        return array.get()
    if hasattr(array, "detach"):
        return array.detach().cpu().numpy()
    return array


def _cholesky_or_raise(blocks, xp, names, damping):
    try:
        chol = xp.linalg.cholesky(blocks)
    except Exception:  # numpy LinAlgError, torch RuntimeError, ...
        chol = None
    if chol is None or not bool(xp.all(xp.isfinite(chol))):
        _raise_not_positive_definite(blocks, xp, names, damping)
    return chol


def factor_arrow(task_blocks, coupling, shared_block, *, damping=0.0, active=None,
                 task_names=None):
    """Factor an arrow matrix through its task blocks and Schur complement (Lemma A.6).

    Parameters
    ----------
    task_blocks : array of shape (K, q, q)
        Symmetric task blocks H_kk.
    coupling : array of shape (K, q, p)
        Task-shared blocks H_k,K+1.
    shared_block : array of shape (p, p)
        Shared block H_K+1,K+1 (only the active tasks' contributions).
    damping : float, default=0.0
        Added to the diagonal of every task block and of the shared block.
    active : array of bool, shape (K,), optional
        Tasks that enter the Schur complement. An inactive task is solved *given* the shared
        solution (its block row only), which is how a task removed from the shared fit (paper
        eq. 11 with sigma_l -> 0) keeps a well-defined head. Default: all tasks.
    task_names : sequence of length K, optional
        Task labels for error messages.

    Returns
    -------
    ArrowFactor

    Raises
    ------
    ValueError
        If a task block or the Schur complement is not positive definite; the message names the
        block and the damping that would make it positive definite.
    """
    from array_api_compat import array_namespace

    xp = array_namespace(task_blocks, coupling, shared_block)
    n_tasks = task_blocks.shape[0]
    if active is None:
        active = np.ones(n_tasks, dtype=bool)
    active = np.asarray(active, dtype=bool)
    labels = task_names if task_names is not None else range(n_tasks)
    names = [f"block of task {t!r}" for t in labels]
    task_blocks = _diag_add(task_blocks, damping, xp)
    shared_block = _diag_add(shared_block, damping, xp)
    if n_tasks:
        with single_blas_thread(xp, task_blocks.shape[-1]):
            _cholesky_or_raise(task_blocks, xp, names, damping)
            coupling_solved = xp.linalg.solve(task_blocks, coupling)
    else:
        coupling_solved = coupling
    mask = xp.asarray(active.astype(np.float64), dtype=task_blocks.dtype)
    mask = xp.reshape(mask, (n_tasks, 1, 1))
    # N = H_K+1,K+1 - sum_k H_K+1,k H_kk^-1 H_k,K+1 (Lemma A.5), over the active tasks only.
    correction = xp.sum(xp.matmul(xp.matrix_transpose(coupling), coupling_solved) * mask, axis=0)
    schur = shared_block - correction
    schur = (schur + xp.matrix_transpose(schur)) / 2
    if is_numpy_namespace(xp):
        try:
            schur_factor = scipy.linalg.cho_factor(np.asarray(schur), lower=True)
        except np.linalg.LinAlgError:
            schur_factor = None
        if schur_factor is None or not np.all(np.isfinite(schur_factor[0])):
            _raise_not_positive_definite(schur[None], xp, ["shared block (Schur complement)"],
                                         damping)
    else:
        schur_factor = _cholesky_or_raise(
            schur[None], xp, ["shared block (Schur complement)"], damping)[0]
    eigenvalues = np.asarray(_to_host(xp.linalg.eigvalsh(schur)), dtype=np.float64)
    condition = float(eigenvalues.max() / eigenvalues.min()) if eigenvalues.size else 1.0
    return ArrowFactor(task_blocks, coupling, coupling_solved, schur, schur_factor,
                       condition, active)


def solve_task_blocks(factor, rhs):
    """H_kk^-1 rhs_k for every task; rhs of shape (K, q) or (K, q, m)."""
    xp = factor.xp
    with single_blas_thread(xp, factor.task_blocks.shape[-1]):
        if rhs.ndim == 2:
            return xp.linalg.solve(factor.task_blocks, rhs[..., None])[..., 0]
        return xp.linalg.solve(factor.task_blocks, rhs)


def solve_schur(factor, rhs):
    """N^-1 rhs for rhs of shape (p,) or (p, m)."""
    xp = factor.xp
    if is_numpy_namespace(xp):
        return scipy.linalg.cho_solve(factor.schur_factor, np.asarray(rhs))
    chol = factor.schur_factor
    vector = rhs.ndim == 1
    rhs2 = rhs[:, None] if vector else rhs
    # Two triangular solves through the generic solve (array API has no triangular solve).
    inner = xp.linalg.solve(chol, rhs2)
    out = xp.linalg.solve(xp.matrix_transpose(chol), inner)
    return out[:, 0] if vector else out


def arrow_solve(factor, rhs_task, rhs_shared):
    """Solve H x = b for an arrow matrix factored by :func:`factor_arrow`.

    Parameters
    ----------
    factor : ArrowFactor
    rhs_task : array of shape (K, q) or (K, q, m)
        Task parts b_k of the right-hand side(s).
    rhs_shared : array of shape (p,) or (p, m)
        Shared part b_K+1.

    Returns
    -------
    x_task : array like ``rhs_task``
    x_shared : array like ``rhs_shared``
    """
    xp = factor.xp
    many = rhs_task.ndim == 3
    task_solved = solve_task_blocks(factor, rhs_task)  # H_kk^-1 b_k
    mask = xp.asarray(factor.active.astype(np.float64), dtype=factor.schur.dtype)
    coupling_t = xp.matrix_transpose(factor.coupling)  # (K, p, q)
    if many:
        pushed = xp.sum(xp.matmul(coupling_t, task_solved) * mask[:, None, None], axis=0)
    else:
        pushed = xp.sum(xp.matmul(coupling_t, task_solved[..., None])[..., 0] * mask[:, None],
                        axis=0)
    x_shared = solve_schur(factor, rhs_shared - pushed)
    if many:
        x_task = task_solved - xp.matmul(factor.coupling_solved, x_shared)
    else:
        x_task = task_solved - xp.matmul(factor.coupling_solved, x_shared[:, None])[..., 0]
    return x_task, x_shared


def arrow_to_dense(task_blocks, coupling, shared_block):
    """The dense matrix of an arrow (NumPy; for tests and the dense baseline only).

    Parameters
    ----------
    task_blocks : array of shape (K, q, q)
        Task blocks H_kk.
    coupling : array of shape (K, q, p)
        Task-shared blocks H_k,K+1.
    shared_block : array of shape (p, p)
        Shared block H_K+1,K+1.

    Returns
    -------
    dense : ndarray of shape (K q + p, K q + p)
        The full symmetric matrix, with zero blocks H_kl for k != l.
    """
    task_blocks, coupling, shared_block = (np.asarray(a) for a in
                                           (task_blocks, coupling, shared_block))
    n_tasks, q, _ = task_blocks.shape
    p = shared_block.shape[0]
    dense = np.zeros((n_tasks * q + p, n_tasks * q + p))
    for k in range(n_tasks):
        sl = slice(k * q, (k + 1) * q)
        dense[sl, sl] = task_blocks[k]
        dense[sl, n_tasks * q:] = coupling[k]
        dense[n_tasks * q:, sl] = coupling[k].T
    dense[n_tasks * q:, n_tasks * q:] = shared_block
    return dense
