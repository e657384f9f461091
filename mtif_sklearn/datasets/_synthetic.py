"""Synthetic multitask data of the MTIF paper, Appendix C.1.1 (after Duan & Wang, 2023)."""

from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params

__all__ = ["make_multitask_classification", "make_multitask_regression"]


def _task_parameters(n_tasks, n_features, delta, eps, rng):
    """theta_k = 2 e_1 + delta u_k with u_k uniform on the unit sphere; a fraction eps of the
    tasks get an unrelated direction of the same norm (2) instead."""
    base = np.zeros(n_features)
    base[0] = 2.0
    directions = rng.standard_normal((n_tasks, n_features))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    coef = base + delta * directions
    n_unrelated = int(round(eps * n_tasks))
    unrelated = np.zeros(n_tasks, dtype=bool)
    if n_unrelated:
        idx = rng.choice(n_tasks, size=n_unrelated, replace=False)
        unrelated[idx] = True
        random_dirs = rng.standard_normal((n_unrelated, n_features))
        coef[idx] = 2.0 * random_dirs / np.linalg.norm(random_dirs, axis=1, keepdims=True)
    return coef, unrelated


_PARAMS = {
    "n_tasks": [Interval(Integral, 1, None, closed="left")],
    "n_samples_per_task": [Interval(Integral, 1, None, closed="left")],
    "n_features": [Interval(Integral, 1, None, closed="left")],
    "delta": [Interval(Real, 0, None, closed="left")],
    "eps": [Interval(Real, 0, 1, closed="both")],
    "random_state": ["random_state"],
    "return_coef": ["boolean"],
}


def _make(n_tasks, n_samples_per_task, n_features, delta, eps, random_state):
    rng = check_random_state(random_state)
    coef, unrelated = _task_parameters(n_tasks, n_features, delta, eps, rng)
    X = rng.standard_normal((n_tasks * n_samples_per_task, n_features))
    tasks = np.repeat(np.arange(n_tasks), n_samples_per_task)
    raw = np.einsum("ij,ij->i", X, coef[tasks])
    return X, raw, tasks, coef, unrelated, rng


@validate_params({**_PARAMS, "noise": [Interval(Real, 0, None, closed="left")]},
                 prefer_skip_nested_validation=True)
def make_multitask_regression(n_tasks=10, n_samples_per_task=200, n_features=50, *, delta=1.0,
                              eps=0.2, noise=1.0, random_state=None, return_coef=False):
    """Multitask linear regression data of the MTIF paper (Appendix C.1.1).

    Task k has ``theta_k = 2 e_1 + delta u_k`` with ``u_k`` uniform on the unit sphere; a fraction
    ``eps`` of the tasks is unrelated (an independent direction of norm 2). Rows are
    ``x ~ N(0, I_d)`` and ``y = x @ theta_k + noise * N(0, 1)``.

    Parameters
    ----------
    n_tasks : int, default=10
        Number of tasks K.
    n_samples_per_task : int, default=200
        Rows per task.
    n_features : int, default=50
        Dimension d.
    delta : float, default=1.0
        Norm of each task's perturbation of the common vector (task dissimilarity).
    eps : float, default=0.2
        Fraction of unrelated tasks.
    noise : float, default=1.0
        Standard deviation of the Gaussian noise.
    random_state : int, RandomState instance or None, default=None
        Seed.
    return_coef : bool, default=False
        Also return the true coefficients and the unrelated-task mask.

    Returns
    -------
    X : ndarray of shape (n_tasks * n_samples_per_task, n_features)
    y : ndarray of shape (n_tasks * n_samples_per_task,)
    tasks : ndarray of shape (n_tasks * n_samples_per_task,)
        Integer task label of every row.
    coef : ndarray of shape (n_tasks, n_features)
        True theta_k (only with ``return_coef=True``).
    unrelated : ndarray of bool, shape (n_tasks,)
        Which tasks are unrelated (only with ``return_coef=True``).

    Examples
    --------
    >>> from mtif_sklearn.datasets import make_multitask_regression
    >>> X, y, tasks = make_multitask_regression(n_tasks=4, n_samples_per_task=10, n_features=3,
    ...                                         random_state=0)
    >>> X.shape, y.shape, sorted(set(tasks.tolist()))
    ((40, 3), (40,), [0, 1, 2, 3])
    """
    X, raw, tasks, coef, unrelated, rng = _make(n_tasks, n_samples_per_task, n_features, delta,
                                                eps, random_state)
    y = raw + noise * rng.standard_normal(raw.shape[0])
    if return_coef:
        return X, y, tasks, coef, unrelated
    return X, y, tasks


@validate_params(_PARAMS, prefer_skip_nested_validation=True)
def make_multitask_classification(n_tasks=10, n_samples_per_task=200, n_features=50, *,
                                  delta=1.0, eps=0.2, random_state=None, return_coef=False):
    """Multitask binary classification data: the regression generator through a logistic link.

    ``P(y = 1 | x) = 1 / (1 + exp(-x @ theta_k))`` with the task parameters of
    :func:`make_multitask_regression`.

    Parameters
    ----------
    n_tasks : int, default=10
        Number of tasks K.
    n_samples_per_task : int, default=200
        Rows per task.
    n_features : int, default=50
        Dimension d.
    delta : float, default=1.0
        Norm of each task's perturbation of the common vector.
    eps : float, default=0.2
        Fraction of unrelated tasks.
    random_state : int, RandomState instance or None, default=None
        Seed.
    return_coef : bool, default=False
        Also return the true coefficients and the unrelated-task mask.

    Returns
    -------
    X : ndarray of shape (n_tasks * n_samples_per_task, n_features)
    y : ndarray of shape (n_tasks * n_samples_per_task,)
        Labels 0/1.
    tasks : ndarray of shape (n_tasks * n_samples_per_task,)
    coef : ndarray of shape (n_tasks, n_features)
        Only with ``return_coef=True``.
    unrelated : ndarray of bool, shape (n_tasks,)
        Only with ``return_coef=True``.

    Examples
    --------
    >>> from mtif_sklearn.datasets import make_multitask_classification
    >>> X, y, tasks = make_multitask_classification(n_tasks=2, n_samples_per_task=5,
    ...                                             n_features=3, random_state=0)
    >>> sorted(set(y.tolist())) == [0, 1]
    True
    """
    X, raw, tasks, coef, unrelated, rng = _make(n_tasks, n_samples_per_task, n_features, delta,
                                                eps, random_state)
    y = (rng.uniform(size=raw.shape[0]) < 1.0 / (1.0 + np.exp(-raw))).astype(np.int64)
    if return_coef:
        return X, y, tasks, coef, unrelated
    return X, y, tasks
