"""Array backends: NumPy/SciPy on the CPU, CuPy on a CUDA GPU (imported lazily).

The arrow solver is written against the array namespace returned here (array-api-compat), so
the same code runs on NumPy, CuPy and, in the tests, torch CPU tensors.
"""

import threading
from contextlib import contextmanager

import numpy as np

__all__ = ["get_backend", "single_blas_thread", "to_numpy"]

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


def _is_cupy_array(array):
    return type(array).__module__.split(".")[0] == "cupy"


def get_backend(backend, *arrays):
    """Resolve ``backend`` to an array-API namespace.

    Parameters
    ----------
    backend : {"auto", "numpy", "cupy"}
        "auto" follows the inputs: CuPy arrays in give CuPy, anything else NumPy.
    *arrays : array-like
        Inputs that "auto" looks at.

    Returns
    -------
    xp : namespace
        An array-API compatible namespace (``array_api_compat.numpy`` or ``.cupy``).
    """
    from array_api_compat import array_namespace

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}.")
    if backend == "auto":
        backend = "cupy" if any(_is_cupy_array(a) for a in arrays) else "numpy"
    if backend == "cupy":
        cupy = _import_cupy()
        return array_namespace(cupy.zeros(1))
    return array_namespace(np.zeros(1))


def is_numpy_namespace(xp):
    """True when ``xp`` is (a wrapper of) NumPy."""
    return xp.__name__ in ("numpy", "array_api_compat.numpy")


def to_numpy(array):
    """Bring an array from any backend back to NumPy (no copy for NumPy input)."""
    if isinstance(array, np.ndarray):
        return array
    if _is_cupy_array(array):
        return array.get()
    if hasattr(array, "detach"):  # torch tensor
        return array.detach().cpu().numpy()
    return np.asarray(array)


def asarray(array, xp):
    """Move a NumPy array into namespace ``xp`` (float64 unless already floating)."""
    if is_numpy_namespace(xp):
        return np.asarray(array)
    return xp.asarray(array)


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
