"""Input handling shared by MTIFInfluence's fit and outputs."""

from scipy.sparse import issparse

from ..backend import to_numpy

__all__ = ["check_dense", "host_input"]


def host_input(array):
    """DataFrames, sparse and NumPy arrays as they are; CuPy/torch arrays brought to NumPy."""
    if array is None or hasattr(array, "iloc") or issparse(array):
        return array
    return to_numpy(array)


def check_dense(X, name):
    """Refuse sparse input clearly (the multitask models need dense features)."""
    if X is not None and issparse(X):
        raise TypeError(
            f"MTIFInfluence does not support sparse input {name}: the multitask models need "
            "dense features. Convert it with .toarray() (fine for moderate n_features)."
        )
