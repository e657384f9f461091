"""Array backends: NumPy/SciPy on the CPU, CuPy on a CUDA GPU (imported lazily), resolved once.

:class:`ArrayBackend` is what the arrow solver and the influence algebra compute with: an
array-API namespace (array-api-compat) plus the few operations whose best implementation
differs between devices. The solver itself has no backend branches; it runs unchanged on NumPy,
CuPy and, in the tests, torch CPU tensors.
"""

import threading
from contextlib import contextmanager
from functools import cache

import numpy as np

__all__ = ["ArrayBackend", "resolve_backend", "rows_times_task_matrices_numpy",
           "single_blas_thread", "to_numpy"]

BACKENDS = ("auto", "numpy", "cupy")


def _import_cupy():
    try:
        import cupy
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise ImportError(
            "backend='cupy' needs CuPy and a CUDA GPU. Install the extra with "
            "`pip install mtif-sklearn[gpu]` (cupy-cuda12x), or use backend='numpy'."
        ) from exc
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # pragma: no cover - depends on the machine
        raise ImportError(
            f"backend='cupy': CuPy is installed but no CUDA device is usable ({exc}). "
            "Use backend='numpy'."
        ) from exc
    return cupy


def _module_root(array):
    return type(array).__module__.split(".")[0]


@cache
def _namespace(name):
    from array_api_compat import array_namespace

    if name == "numpy":
        # NumPy 2 is an array-API namespace itself: no Python wrapper around every call on the
        # CPU path (array-api-compat's wrappers cost microseconds per call, which adds up in
        # small problems). NumPy 1.x lacks some names (matrix_transpose): wrapped.
        if hasattr(np, "matrix_transpose"):
            return np
        return array_namespace(np.zeros(1))
    if name == "cupy":
        return array_namespace(_import_cupy().zeros(1))
    if name == "torch":
        import torch

        return array_namespace(torch.zeros(1))
    raise ValueError(f"Unknown array backend {name!r}.")


class ArrayBackend:
    """Where the linear algebra runs, and how arrays get there and back.

    Only the backend's name is stored (a namespace module does not pickle); the namespace is
    looked up on use.

    Parameters
    ----------
    name : {"numpy", "cupy", "torch"}
        "torch" (CPU tensors) exists for tests of the backend-agnostic code.
    """

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"ArrayBackend({self.name!r})"

    def __eq__(self, other):
        return isinstance(other, ArrayBackend) and other.name == self.name

    def __hash__(self):
        return hash(self.name)

    @classmethod
    def of(cls, *arrays):
        """The backend of the given arrays (NumPy for anything that is not CuPy or torch)."""
        for array in arrays:
            root = _module_root(array)
            if root in ("cupy", "torch"):
                return cls(root)
        return cls("numpy")

    @property
    def xp(self):
        """The array-API namespace."""
        return _namespace(self.name)

    @property
    def is_numpy(self):
        """True on the CPU with NumPy/SciPy."""
        return self.name == "numpy"

    def asarray(self, array):
        """``array`` in this backend (no copy when it is there already)."""
        if array is None:
            return None
        if self.is_numpy:
            return np.asarray(to_numpy(array))
        return self.xp.asarray(array)

    def rows_times_task_matrices(self, codes, vectors, matrices):
        """``vectors[i] @ matrices[codes[i]]`` for every row i: (m, a) x (K, a, b) -> (m, b).

        On NumPy no (m, a, b) gather: rows are grouped by task (see
        :func:`rows_times_task_matrices_numpy`); on a device one batched product over the
        gathered matrices.
        """
        if not self.is_numpy:
            gathered = matrices[self.asarray(np.asarray(codes))]
            return self.xp.matmul(vectors[:, None, :], gathered)[:, 0, :]
        return rows_times_task_matrices_numpy(np.asarray(codes), vectors, matrices)

    def blas_threads(self, block_size=0):
        """Context with one BLAS thread for small blocks on NumPy (see
        :func:`single_blas_thread`)."""
        return single_blas_thread(self.xp, block_size)


#: Runs of one task at least this long are multiplied one task at a time (a GEMM each);
#: shorter runs are batched by length (one batched product per distinct run length).
LONG_RUN = 64


def rows_times_task_matrices_numpy(codes, vectors, matrices, out=None):
    """``vectors[i] @ matrices[codes[i]]`` on NumPy, by runs of rows of one task.

    Rows are taken in task order (no sort when ``codes`` are already sorted, as in the
    contiguous chunks of a task-sorted data set). Long runs (>= :data:`LONG_RUN` rows) are
    one GEMM each on a view; the many short runs of data sets with few rows per task are
    grouped by run length and multiplied as stacks (``matmul`` of (n_runs, length, a) by
    (n_runs, a, b)), so the Python loop runs over distinct lengths, not over tasks. ``out``
    (m, b): written in place.
    """
    m = codes.shape[0]
    if out is None:
        out = np.empty((m, matrices.shape[2]), dtype=np.result_type(vectors, matrices))
    if m == 0:
        return out
    sorted_rows = bool(np.all(codes[1:] >= codes[:-1]))
    order = None if sorted_rows else np.argsort(codes, kind="stable")
    ordered = codes if sorted_rows else codes[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    lengths = np.diff(np.append(starts, m))
    tasks = ordered[starts]
    long_runs = lengths >= LONG_RUN
    for start, length, task in zip(starts[long_runs].tolist(), lengths[long_runs].tolist(),
                                   tasks[long_runs].tolist(), strict=True):
        if order is None:
            rows = slice(start, start + length)
            np.matmul(vectors[rows], matrices[task], out=out[rows])
        else:
            rows = order[start:start + length]
            out[rows] = vectors[rows] @ matrices[task]
    short = ~long_runs
    if not short.any():
        return out
    for length in np.unique(lengths[short]).tolist():
        runs = np.flatnonzero(short & (lengths == length))
        positions = starts[runs][:, None] + np.arange(length)  # (n_runs, length), task order
        if order is not None:
            positions = order[positions]
        out[positions] = np.matmul(vectors[positions], matrices[tasks[runs]])
    return out


def resolve_backend(backend, *arrays):
    """Resolve a ``backend`` parameter to an :class:`ArrayBackend`.

    Parameters
    ----------
    backend : {"auto", "numpy", "cupy"}
        "auto" follows the inputs: CuPy arrays in give CuPy, anything else NumPy.
    *arrays : array-like
        Inputs that "auto" looks at.

    Returns
    -------
    ArrayBackend
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}.")
    if backend == "auto":
        backend = "cupy" if any(_module_root(a) == "cupy" for a in arrays) else "numpy"
    if backend == "cupy":
        _import_cupy()
    return ArrayBackend(backend)


def is_numpy_namespace(xp):
    """True when ``xp`` is (a wrapper of) NumPy."""
    return xp.__name__ in ("numpy", "array_api_compat.numpy")


def to_numpy(array):
    """Bring an array from any backend back to NumPy (no copy for NumPy input)."""
    if isinstance(array, np.ndarray):
        return array
    if _module_root(array) == "cupy":
        return array.get()
    if hasattr(array, "detach"):  # torch tensor
        return array.detach().cpu().numpy()
    return np.asarray(array)


_blas_lock = threading.Lock()
_blas_state = {"depth": 0, "limiter": None, "controller": None}


# Blocks up to this size are factored and multiplied with one BLAS thread (see below).
SINGLE_THREAD_MAX_BLOCK = 512


@contextmanager
def single_blas_thread(xp, block_size=0):
    """Run NumPy's BLAS/LAPACK on one thread inside the block.

    Stacks of small task blocks (K x q x q with q in the tens to hundreds) and a small Schur
    complement gain little from BLAS threads, and OpenBLAS's threads can make them far slower
    when the cores are busy: a Cholesky of a (10, 181, 181) stack took 3.9 s with 2 threads on a
    loaded 2-core machine and 2 ms with one. A no-op for other namespaces and for blocks larger
    than ``SINGLE_THREAD_MAX_BLOCK``, where threads pay off. Nested and concurrent uses share one
    limit, set by the first entrant and lifted by the last.
    """
    if not is_numpy_namespace(xp) or block_size > SINGLE_THREAD_MAX_BLOCK:
        yield
        return
    with _blas_lock:
        if _blas_state["depth"] == 0:
            if _blas_state["controller"] is None:
                from threadpoolctl import ThreadpoolController

                _blas_state["controller"] = ThreadpoolController()
            _blas_state["limiter"] = _blas_state["controller"].limit(limits=1, user_api="blas")
        _blas_state["depth"] += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_state["depth"] -= 1
            if _blas_state["depth"] == 0:
                _blas_state["limiter"].restore_original_limits()
                _blas_state["limiter"] = None
