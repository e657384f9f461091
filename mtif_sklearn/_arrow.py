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
themselves) turns every later solve into a matrix product, so nothing is factored twice. On
NumPy the inverse comes from the Cholesky factor itself (LAPACK potrf then potri, one call each
per block, tasks in chunks so that temporaries stay small); other namespaces use batched
``cholesky`` and ``inv``. Coupling blocks that are diagonal (the linear models) are kept as
their diagonals, so W_k = H_kk^-1 H_k,K+1 is a column scaling that is never stored.

Every function takes arrays of one namespace (NumPy, CuPy, torch through array-api-compat; see
:class:`~mtif_sklearn.backend.ArrayBackend`) and returns arrays of it, with no backend branch.
"""

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


class ArrowFactor:
    """A factored arrow matrix (see :func:`factor_arrow`).

    The namespace is derived from the arrays rather than stored, so a factor pickles with
    whatever holds it.

    A coupling block that is diagonal for every task (``H_k,K+1 = diag(c_k)``, q = p: the
    linear models, whose tasks meet the shared block only through the tie ``alpha ||beta_k -
    g||^2``) is kept as its diagonals ``coupling_diagonal`` (K, p); then ``W_k`` is
    ``H_kk^-1 diag(c_k)``, a column scaling of the inverse, and is never stored: products with
    ``coupling`` and ``coupling_solved`` go through :meth:`couple`, :meth:`solved_coupling`
    and their row versions. The dense ``coupling`` / ``coupling_solved`` attributes still
    exist (built on first use and kept) for code that wants the blocks themselves.

    Parameters
    ----------
    task_inverse : array of shape (K, q, q)
        H_kk^-1 of the damped task blocks.
    coupling : array of shape (K, q, p) or None
        Task-shared blocks H_k,K+1 (None when ``coupling_diagonal`` holds them).
    coupling_solved : array of shape (K, q, p) or None
        W_k = H_kk^-1 H_k,K+1 for every task (None with ``coupling_diagonal``).
    schur : array of shape (p, p)
        Schur complement N of the shared block (over the active tasks).
    schur_inverse : array of shape (p, p)
        N^-1.
    schur_condition : float
        2-norm condition number of ``schur``.
    active : ndarray of bool, shape (K,)
        Tasks that take part in the shared block (see :func:`factor_arrow`).
    coupling_diagonal : array of shape (K, p) or None
        The diagonals c_k of diagonal coupling blocks.
    """

    def __init__(self, task_inverse, coupling, coupling_solved, schur, schur_inverse,
                 schur_condition, active, coupling_diagonal=None):
        self.task_inverse = task_inverse
        self._coupling = coupling
        self._coupling_solved = coupling_solved
        self.schur = schur
        self.schur_inverse = schur_inverse
        self.schur_condition = schur_condition
        self.active = active
        self.coupling_diagonal = coupling_diagonal

    def __getstate__(self):  # the dense blocks of a diagonal coupling are rebuilt on use
        state = dict(self.__dict__)
        if self.coupling_diagonal is not None:
            state["_coupling"] = state["_coupling_solved"] = None
        return state

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
        n_tasks, q, _ = self.task_inverse.shape
        return (n_tasks, q, self.schur.shape[0])

    @property
    def coupling(self):
        """H_k,K+1 of every task, (K, q, p) (dense; built once from the diagonals)."""
        if self._coupling is None:
            self._coupling = _diagonal_blocks(self.coupling_diagonal, self.xp)
        return self._coupling

    @property
    def coupling_solved(self):
        """W_k = H_kk^-1 H_k,K+1 of every task, (K, q, p) (dense; built once)."""
        if self._coupling_solved is None:
            self._coupling_solved = self.task_inverse * self.coupling_diagonal[:, None, :]
        return self._coupling_solved

    # -- products with the coupling blocks (diagonal: elementwise; dense: GEMMs) --------------
    def couple(self, task_vectors):
        """H_K+1,k y_k = H_k,K+1^T y_k for every task.

        Parameters
        ----------
        task_vectors : array of shape (K, q) or (K, q, m)
            One vector (or m columns) y_k per task.

        Returns
        -------
        coupled : array of shape (K, p) or (K, p, m)
        """
        xp = self.xp
        if self.coupling_diagonal is not None:
            scale = self.coupling_diagonal
            return scale * task_vectors if task_vectors.ndim == 2 else (
                scale[..., None] * task_vectors)
        if task_vectors.ndim == 2:
            return xp.matmul(xp.matrix_transpose(self._coupling), task_vectors[..., None])[..., 0]
        return xp.matmul(xp.matrix_transpose(self._coupling), task_vectors)

    def solved_coupling(self, shared):
        """W_k x = H_kk^-1 H_k,K+1 x for every task k.

        Parameters
        ----------
        shared : array of shape (p,) or (p, m)
            One shared vector x (or m columns).

        Returns
        -------
        solved : array of shape (K, q) or (K, q, m)
        """
        xp = self.xp
        if self.coupling_diagonal is not None:
            if shared.ndim == 1:
                return xp.matmul(self.task_inverse,
                                 (self.coupling_diagonal * shared)[..., None])[..., 0]
            return xp.matmul(self.task_inverse, self.coupling_diagonal[..., None] * shared)
        return xp.matmul(self._coupling_solved, shared)

    def rows_couple(self, codes, rows):
        """z_e^T H_k,K+1 for rows z_e of task k = ``codes[e]``.

        Parameters
        ----------
        codes : array of int, shape (m,)
            Task of each row.
        rows : array of shape (m, q)
            The rows z_e.

        Returns
        -------
        coupled : array of shape (m, p)
        """
        if self.coupling_diagonal is not None:
            return rows * self.coupling_diagonal[self.backend.asarray(np.asarray(codes))]
        return self.backend.rows_times_task_matrices(codes, rows, self._coupling)

    def rows_solved_coupling(self, codes, rows):
        """g_e^T W_k for rows g_e of task k = ``codes[e]`` (W_k = H_kk^-1 H_k,K+1).

        Parameters
        ----------
        codes : array of int, shape (m,)
            Task of each row.
        rows : array of shape (m, q)
            The rows g_e.

        Returns
        -------
        solved : array of shape (m, p)
        """
        backend = self.backend
        if self.coupling_diagonal is not None:
            solved = backend.rows_times_task_matrices(codes, rows, self.task_inverse)
            solved *= self.coupling_diagonal[backend.asarray(np.asarray(codes))]
            return solved
        return backend.rows_times_task_matrices(codes, rows, self._coupling_solved)


def _diagonal_blocks(diagonals, xp):
    """(K, p) diagonals -> (K, p, p) diagonal matrices."""
    n_tasks, p = diagonals.shape
    eye = xp.eye(p, dtype=diagonals.dtype)
    return diagonals[:, :, None] * eye[None]


def _diag_add(blocks, value, xp):
    if value == 0:
        return blocks
    return blocks + value * xp.eye(blocks.shape[-1], dtype=blocks.dtype)


def _smallest_eigenvalues(blocks, xp):
    try:
        values = xp.linalg.eigvalsh(blocks)
    except Exception:  # non-finite blocks: no eigenvalues
        return np.full(blocks.shape[0], np.nan)
    return np.asarray(to_numpy(xp.min(values, axis=-1)), dtype=np.float64).reshape(-1)


def _checked_cholesky(blocks, xp, names, damping):
    """Cholesky factors of a stack of blocks, or NotPositiveDefiniteError naming the first bad
    one."""
    try:
        chol = xp.linalg.cholesky(blocks)
    except Exception:  # numpy LinAlgError, torch RuntimeError, ...
        chol = None
    if chol is None or not bool(xp.all(xp.isfinite(chol))):
        smallest = _smallest_eigenvalues(blocks, xp)
        bad = int(np.nanargmin(smallest)) if np.isfinite(smallest).any() else 0
        raise NotPositiveDefiniteError(names[bad], float(smallest[bad]), damping)
    return chol


def _symmetric_inverse(blocks, xp):
    inverse = xp.linalg.inv(blocks)
    return (inverse + xp.matrix_transpose(inverse)) / 2


#: Numbers per chunk of task blocks factored together (temporaries stay near 16 MiB).
FACTOR_CHUNK_NUMBERS = 2**21


def _invert_spd_in_place(blocks, damping):
    """H^-1 of a stack of symmetric blocks, in place, by one Cholesky per block (LAPACK potrf)
    and its triangular inverse product (potri): no second (LU) factorisation.

    Returns the index of the first block that is not positive definite (or not finite), or
    -1. NumPy's batched ``cholesky`` + ``inv`` would factor every block twice; one potrf +
    potri call per block costs about half (measured: 0.06 s vs 0.17 s for 10,000 blocks of
    21 x 21, 1.5 s vs 3.9 s for 100,000).
    """
    from scipy.linalg.lapack import get_lapack_funcs

    n_blocks, q, _ = blocks.shape
    if n_blocks == 0:
        return -1
    if damping:
        diagonal = np.einsum("kii->ki", blocks)
        diagonal += damping
    potrf, potri = get_lapack_funcs(("potrf", "potri"), (blocks,))
    # blocks[k].T is the same symmetric matrix, Fortran-ordered: LAPACK works in place
    # (checked on the first block; f2py copies only for other layouts or types).
    in_place = True
    for k, block in enumerate(blocks):
        factor, info = potrf(block.T, lower=1, clean=0, overwrite_a=1)
        if info != 0:
            return k
        inverse, info = potri(factor, lower=1, overwrite_c=1)
        if info != 0:
            return k
        if k == 0:
            in_place = np.shares_memory(inverse, block)
        if not in_place:  # pragma: no cover - depends on f2py
            block[...] = inverse.T
    # potri filled the lower triangle of the Fortran view: the upper one of each C block.
    lower = np.tril_indices(q, -1)
    blocks[:, lower[0], lower[1]] = blocks[:, lower[1], lower[0]]
    finite = np.isfinite(blocks.reshape(n_blocks, -1)).all(axis=1)
    return -1 if finite.all() else int(np.argmin(finite))


def _factor_task_blocks_numpy(task_blocks, coupling, diagonal, active, damping, labels,
                              in_place=False):
    """Task inverses, coupling solves and the Schur correction on NumPy, in chunks of tasks
    (``in_place``: the inverses overwrite ``task_blocks``)."""
    n_tasks, q, _ = task_blocks.shape
    p = coupling.shape[-1]
    task_inverse = task_blocks if in_place else np.empty((n_tasks, q, q))
    coupling_solved = None if diagonal is not None else np.empty((n_tasks, q, p))
    correction = np.zeros((p, p))
    chunk = max(1, FACTOR_CHUNK_NUMBERS // max(q * max(q, p), 1))
    for start in range(0, n_tasks, chunk):
        tasks = slice(start, min(start + chunk, n_tasks))
        inverse = task_inverse[tasks]
        original = inverse.copy() if in_place else task_blocks[tasks]  # for the error message
        if not in_place:
            inverse[...] = original
        bad = _invert_spd_in_place(inverse, damping)
        if bad >= 0:
            block = original[bad] + damping * np.eye(q)
            raise NotPositiveDefiniteError(f"block of task {labels[start + bad]!r}",
                                           float(_smallest_eigenvalues(block[None], np)[0]),
                                           damping)
        weight = active[tasks].astype(np.float64)
        # N = H_K+1,K+1 - sum_k H_K+1,k H_kk^-1 H_k,K+1 (Lemma A.5), over the active tasks.
        if diagonal is not None:
            scaled = diagonal[tasks] * weight[:, None]
            correction += np.einsum("kij,ki,kj->ij", inverse, scaled, diagonal[tasks])
        else:
            solved = np.matmul(inverse, coupling[tasks], out=coupling_solved[tasks])
            # sum_k w_k C_k^T W_k as one GEMM over the stacked (k, q) rows.
            weighted = (coupling[tasks] * weight[:, None, None]).reshape(-1, p)
            correction += weighted.T @ solved.reshape(-1, p)
    return task_inverse, coupling_solved, correction


def _coupling_diagonal(coupling):
    """The diagonals (K, p) of a NumPy coupling stack that is diagonal in every task, else
    None (one pass over the stack; the linear models' tie blocks are diagonal)."""
    if not isinstance(coupling, np.ndarray) or coupling.ndim != 3 or (
            coupling.shape[1] != coupling.shape[2]):
        return None
    diagonal = np.diagonal(coupling, axis1=1, axis2=2)
    if np.count_nonzero(coupling) != np.count_nonzero(diagonal):
        return None
    return np.ascontiguousarray(diagonal, dtype=np.float64)


def factor_arrow(task_blocks, coupling, shared_block, *, damping=0.0, active=None,
                 task_names=None, overwrite_blocks=False):
    """Factor an arrow matrix through its task blocks and Schur complement (Lemma A.6).

    Parameters
    ----------
    task_blocks : array of shape (K, q, q)
        Symmetric task blocks H_kk.
    coupling : array of shape (K, q, p), or (K, p) when q = p
        Task-shared blocks H_k,K+1; a 2-d array gives the diagonals of diagonal blocks.
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
    overwrite_blocks : bool, default=False
        NumPy: factor ``task_blocks`` in place (they become the inverses), saving a copy of
        K q^2 numbers; for callers that own the blocks and do not use them afterwards.

    Returns
    -------
    ArrowFactor

    Raises
    ------
    NotPositiveDefiniteError
        If a task block or the Schur complement is not positive definite; the message names the
        block and the damping that would make it positive definite.

    Notes
    -----
    On NumPy each task block is factored once (Cholesky, then the inverse from its factor),
    tasks are processed in chunks so that temporaries stay small, and a coupling that is
    diagonal in every task is stored as its diagonals (see :class:`ArrowFactor`). Other
    namespaces take batched ``cholesky`` (the positive-definiteness check) and ``inv``.
    """
    backend = ArrayBackend.of(task_blocks)
    xp = backend.xp
    n_tasks = task_blocks.shape[0]
    active = np.ones(n_tasks, dtype=bool) if active is None else np.asarray(active, dtype=bool)
    labels = task_names if task_names is not None else range(n_tasks)
    shared_block = _diag_add(shared_block, damping, xp)
    diagonal = None
    if coupling.ndim == 2:  # the diagonals of diagonal blocks
        if task_blocks.shape[-1] != coupling.shape[-1]:
            raise ValueError("A 2-d coupling gives the diagonals of square (q = p) blocks; got "
                             f"task blocks of size {task_blocks.shape[-1]} and "
                             f"{coupling.shape[-1]} diagonal entries.")
        if not backend.is_numpy:
            coupling = _diagonal_blocks(coupling, xp)
    if backend.is_numpy:
        task_blocks, coupling = np.asarray(task_blocks), np.asarray(coupling)
        diagonal = (np.ascontiguousarray(coupling, dtype=np.float64) if coupling.ndim == 2
                    else _coupling_diagonal(coupling))
        with backend.blas_threads(task_blocks.shape[-1]):
            task_inverse, coupling_solved, correction = _factor_task_blocks_numpy(
                task_blocks, coupling, diagonal, active, damping, list(labels),
                overwrite_blocks and task_blocks.dtype == np.float64
                and task_blocks.flags.c_contiguous and task_blocks.flags.writeable)
    else:
        task_blocks = _diag_add(task_blocks, damping, xp)
        with backend.blas_threads(task_blocks.shape[-1]):
            if n_tasks:
                _checked_cholesky(task_blocks, xp, [f"block of task {t!r}" for t in labels],
                                  damping)
            task_inverse = _symmetric_inverse(task_blocks, xp)
            coupling_solved = xp.matmul(task_inverse, coupling)
        mask = xp.reshape(xp.asarray(active.astype(np.float64), dtype=task_blocks.dtype),
                          (n_tasks, 1, 1))
        # N = H_K+1,K+1 - sum_k H_K+1,k H_kk^-1 H_k,K+1 (Lemma A.5), over the active tasks.
        correction = xp.sum(xp.matmul(xp.matrix_transpose(coupling), coupling_solved) * mask,
                            axis=0)
    schur = shared_block - correction
    schur = (schur + xp.matrix_transpose(schur)) / 2
    with backend.blas_threads(schur.shape[-1]):
        _checked_cholesky(schur[None], xp, ["shared block (Schur complement)"], damping)
        schur_inverse = _symmetric_inverse(schur, xp)
        eigenvalues = np.asarray(to_numpy(xp.linalg.eigvalsh(schur)), dtype=np.float64)
    condition = float(eigenvalues.max() / eigenvalues.min()) if eigenvalues.size else 1.0
    if diagonal is not None:
        return ArrowFactor(task_inverse, None, None, schur, schur_inverse, condition, active,
                           coupling_diagonal=diagonal)
    return ArrowFactor(task_inverse, coupling, coupling_solved, schur, schur_inverse,
                       condition, active)


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
    task_solved = solve_task_blocks(factor, rhs_task)  # H_kk^-1 b_k
    mask = xp.asarray(factor.active.astype(np.float64), dtype=factor.schur.dtype)
    weights = mask[:, None] if rhs_task.ndim == 2 else mask[:, None, None]
    pushed = xp.sum(factor.couple(task_solved) * weights, axis=0)
    x_shared = solve_schur(factor, rhs_shared - pushed)
    x_task = task_solved - factor.solved_coupling(x_shared)
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
