"""Array backends: NumPy/SciPy on the CPU, CuPy on a CUDA GPU (imported lazily).

The arrow solver is written against the array namespace returned here (array-api-compat), so
the same code runs on NumPy, CuPy and, in the tests, torch CPU tensors.
"""

import numpy as np

__all__ = ["get_backend", "to_numpy"]

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
