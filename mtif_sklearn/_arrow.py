"""The arrow-shaped multitask Hessian: factor it once, solve with it, update it; never dense.

The Hessian of a multitask objective (paper eq. 7, Lemmas A.1-A.2) is

    H = [[H_11,        0, ..., H_1,K+1],
         [   0,     H_22, ..., H_2,K+1],
         [ ...                        ],
         [H_K+1,1, ...,       H_K+1,K+1]]

Lemma A.6 inverts it through the K task blocks and the Schur complement of the shared block,

    N = H_K+1,K+1 - sum_k H_K+1,k H_kk^-1 H_k,K+1,

at cost sum_k d_k^3 + p^3 instead of (sum_k d_k + p)^3. Fitting (Newton steps), influence and
removal updates all use this one factorisation. Each task block is factored once: a Cholesky
decomposition proves it positive definite and its inverse (K q x q, the size of the blocks
themselves) turns every later solve into a matrix product, so nothing is factored twice.

Every function takes arrays of one namespace (NumPy, CuPy, torch through array-api-compat; see
:class:`~mtif_sklearn.backend.ArrayBackend`) and returns arrays of it, with no backend branch.
"""

from dataclasses import dataclass

import numpy as np

from .backend import ArrayBackend, to_numpy

__all__ = [
    "ArrowFactor",
    "NotPositiveDefiniteError",
    "arrow_solve",
    "arrow_to_dense",
    "factor_arrow",
    "solve_schur",
    "solve_task_blocks",
]


class NotPositiveDefiniteError(ValueError):
    """A block of the arrow Hessian (or its Schur complement) is not positive definite.

    The message names the block and the damping that would make it positive definite; callers
    add advice in their own terms (which regularisation parameters the model has).

    Parameters
    ----------
    block : str
        Which block, e.g. "block of task 'a'" or "shared block (Schur complement)".
    smallest_eigenvalue : float
        Its smallest eigenvalue (with the damping already added).
    damping : float
        The damping in effect.

    Attributes
    ----------
    suggested_damping : float
        A damping that makes the block positive definite.
    """

    def __init__(self, block, smallest_eigenvalue, damping):
        self.block = block
        self.smallest_eigenvalue = smallest_eigenvalue
        self.damping = damping
        self.suggested_damping = float(f"{max(damping - smallest_eigenvalue, 1e-12) * 1.1:.2g}")
        super().__init__(
            f"The Hessian {block} is not positive definite (smallest eigenvalue "
            f"{smallest_eigenvalue:.3g} with damping={damping:g}). The objective is not strictly "
            f"convex there; pass damping >= {self.suggested_damping:g} (damping is added to every "
            "block's diagonal)"
        )

    def with_advice(self, advice):
        """The same error with ``advice`` appended to the message (for the caller's model).

        Parameters
        ----------
        advice : str
            What the user of the caller's model can change.

        Returns
        -------
        error : NotPositiveDefiniteError
        """
        error = NotPositiveDefiniteError(self.block, self.smallest_eigenvalue, self.damping)
        error.args = (f"{self.args[0]}, {advice}",)
        return error


@dataclass
class ArrowFactor:
    """A factored arrow matrix (see :func:`factor_arrow`).

    The namespace is derived from the arrays rather than stored, so a factor pickles with
    whatever holds it.

    Parameters
    ----------
    task_inverse : array of shape (K, q, q)
        H_kk^-1 of the damped task blocks.
    coupling : array of shape (K, q, p)
        Task-shared blocks H_k,K+1.
    coupling_solved : array of shape (K, q, p)
        W_k = H_kk^-1 H_k,K+1 for every task.
    schur : array of shape (p, p)
        Schur complement N of the shared block (over the active tasks).
    schur_inverse : array of shape (p, p)
        N^-1.
    schur_condition : float
        2-norm condition number of ``schur``.
    active : ndarray of bool, shape (K,)
        Tasks that take part in the shared block (see :func:`factor_arrow`).
    """

    task_inverse: object
    coupling: object
    coupling_solved: object
    schur: object
    schur_inverse: object
    schur_condition: float
    active: np.ndarray

    @property
    def backend(self):
        """:class:`~mtif_sklearn.backend.ArrayBackend` of the factor's arrays."""
        return ArrayBackend.of(self.task_inverse)

    @property
    def xp(self):
        """Array namespace of the factor's arrays."""
        return self.backend.xp

    @property
    def shape(self):
        """(K, q, p)."""
        return tuple(self.coupling.shape)


def _diag_add(blocks, value, xp):
    if value == 0:
        return blocks
    return blocks + value * xp.eye(blocks.shape[-1], dtype=blocks.dtype)


def _smallest_eigenvalues(blocks, xp):
    return np.asarray(to_numpy(xp.min(xp.linalg.eigvalsh(blocks), axis=-1)),
                      dtype=np.float64).reshape(-1)


def _checked_cholesky(blocks, xp, names, damping):
    """Cholesky factors of a stack of blocks, or NotPositiveDefiniteError naming the first bad
    one."""
    try:
        chol = xp.linalg.cholesky(blocks)
    except Exception:  # numpy LinAlgError, torch RuntimeError, ...
        chol = None
    if chol is None or not bool(xp.all(xp.isfinite(chol))):
        smallest = _smallest_eigenvalues(blocks, xp)
        bad = int(np.argmin(smallest))
        raise NotPositiveDefiniteError(names[bad], float(smallest[bad]), damping)
    return chol


def _symmetric_inverse(blocks, xp):
    inverse = xp.linalg.inv(blocks)
    return (inverse + xp.matrix_transpose(inverse)) / 2


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
    NotPositiveDefiniteError
        If a task block or the Schur complement is not positive definite; the message names the
        block and the damping that would make it positive definite.
    """
    backend = ArrayBackend.of(task_blocks)
    xp = backend.xp
    n_tasks = task_blocks.shape[0]
    active = np.ones(n_tasks, dtype=bool) if active is None else np.asarray(active, dtype=bool)
    labels = task_names if task_names is not None else range(n_tasks)
    task_blocks = _diag_add(task_blocks, damping, xp)
    shared_block = _diag_add(shared_block, damping, xp)
    with backend.blas_threads(task_blocks.shape[-1]):
        if n_tasks:
            _checked_cholesky(task_blocks, xp, [f"block of task {t!r}" for t in labels], damping)
        task_inverse = _symmetric_inverse(task_blocks, xp)
        coupling_solved = xp.matmul(task_inverse, coupling)
    mask = xp.reshape(xp.asarray(active.astype(np.float64), dtype=task_blocks.dtype),
                      (n_tasks, 1, 1))
    # N = H_K+1,K+1 - sum_k H_K+1,k H_kk^-1 H_k,K+1 (Lemma A.5), over the active tasks only.
    correction = xp.sum(xp.matmul(xp.matrix_transpose(coupling), coupling_solved) * mask, axis=0)
    schur = shared_block - correction
    schur = (schur + xp.matrix_transpose(schur)) / 2
    with backend.blas_threads(schur.shape[-1]):
        _checked_cholesky(schur[None], xp, ["shared block (Schur complement)"], damping)
        schur_inverse = _symmetric_inverse(schur, xp)
        eigenvalues = np.asarray(to_numpy(xp.linalg.eigvalsh(schur)), dtype=np.float64)
    condition = float(eigenvalues.max() / eigenvalues.min()) if eigenvalues.size else 1.0
    return ArrowFactor(task_inverse, coupling, coupling_solved, schur, schur_inverse, condition,
                       active)


def solve_task_blocks(factor, rhs):
    """H_kk^-1 rhs_k for every task; rhs of shape (K, q) or (K, q, m)."""
    xp = factor.xp
    if rhs.ndim == 2:
        return xp.matmul(factor.task_inverse, rhs[..., None])[..., 0]
    return xp.matmul(factor.task_inverse, rhs)


def solve_schur(factor, rhs):
    """N^-1 rhs for rhs of shape (p,) or (p, m)."""
    return factor.xp.matmul(factor.schur_inverse, rhs)


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
    vector = rhs_task.ndim == 2
    if vector:
        rhs_task, rhs_shared = rhs_task[..., None], rhs_shared[:, None]
    task_solved = solve_task_blocks(factor, rhs_task)  # H_kk^-1 b_k
    mask = xp.asarray(factor.active.astype(np.float64), dtype=factor.schur.dtype)
    pushed = xp.sum(xp.matmul(xp.matrix_transpose(factor.coupling), task_solved)
                    * mask[:, None, None], axis=0)
    x_shared = solve_schur(factor, rhs_shared - pushed)
    x_task = task_solved - xp.matmul(factor.coupling_solved, x_shared)
    if vector:
        return x_task[..., 0], x_shared[:, 0]
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
    task_blocks, coupling, shared_block = (np.asarray(to_numpy(a)) for a in
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
