"""Input handling shared by MTIFInfluence's fit and outputs."""

from scipy.sparse import issparse

from ..backend import to_numpy

__all__ = ["check_dense", "check_validation_args", "host_input"]


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


def check_validation_args(cv, frozen, X_val, y_val, tasks_val):
    """Refuse validation arguments that do not go together (cv with X_val, y_val without
    X_val, ...) and a frozen model without validation rows."""
    if X_val is not None:
        if cv is not None:
            raise ValueError("cv and X_val cannot both be given: cv cross-fits validation "
                             "rows out of X. Pass one of them.")
        if y_val is None:
            raise ValueError("X_val was given without y_val.")
        return
    if y_val is not None or tasks_val is not None:
        raise ValueError("y_val/tasks_val were given without X_val.")
    if frozen:
        raise ValueError(
            "A FrozenEstimator is already fitted, so no validation rows can be held out of "
            "its training data: pass X_val, y_val (and tasks_val), and X, y, tasks, "
            "sample_weight exactly as the model was fitted."
        )
