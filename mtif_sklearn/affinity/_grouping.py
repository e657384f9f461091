"""Task grouping from a task-affinity matrix."""

from numbers import Integral, Real

import numpy as np
from sklearn.cluster import SpectralClustering
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

__all__ = ["group_tasks", "grouping_score"]


def _check_affinity(affinity, name="affinity"):
    A = np.asarray(affinity, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"{name} must be a square (n_tasks, n_tasks) matrix; got {A.shape}.")
    if not np.all(np.isfinite(A)):
        raise ValueError(f"{name} has NaN or infinite entries; fill or drop them first.")
    return A


def _affinity_and_errors(affinity, standard_errors):
    """The matrix and its standard errors from arrays or a fitted (cross-fitted) MTIFInfluence."""
    if hasattr(affinity, "task_influence_") or hasattr(affinity, "fit"):
        if not hasattr(affinity, "task_influence_"):
            raise ValueError(f"{type(affinity).__name__} is not fitted: fit it first, or pass a "
                             "(n_tasks, n_tasks) affinity matrix.")
        if standard_errors is None:
            standard_errors = getattr(affinity, "task_influence_se_", None)
        affinity = affinity.task_influence_
    A = _check_affinity(affinity)
    if standard_errors is None:
        return A, None
    se = _check_affinity(standard_errors, "standard_errors")
    if se.shape != A.shape:
        raise ValueError(f"standard_errors has shape {se.shape}, the affinity {A.shape}.")
    if np.any(se < 0):
        raise ValueError("standard_errors must be >= 0.")
    return A, se


def _shrink_by_standard_errors(affinity, standard_errors, n_se):
    """Soft-threshold every entry towards 0 by ``n_se`` standard errors.

    ``sign(a) * max(|a| - n_se * se, 0)``: entries within ``n_se`` standard errors of 0 become
    0 (no evidence either way) and the others keep only their part beyond that margin, so that
    noisy entries (small tasks, unstable folds) weigh less in the grouping.

    Parameters
    ----------
    affinity : ndarray of shape (n_tasks, n_tasks)
        Mean affinity (e.g. the cross-fitted ``task_influence_``).
    standard_errors : ndarray of shape (n_tasks, n_tasks)
        Its standard errors (``task_influence_se_``).
    n_se : float
        Margin in standard errors.

    Returns
    -------
    shrunk : ndarray of shape (n_tasks, n_tasks)
    """
    return np.sign(affinity) * np.maximum(np.abs(affinity) - n_se * standard_errors, 0.0)


def grouping_score(affinity, labels):
    """Total within-group affinity of a partition of the tasks (the exhaustive search's objective).

    Every task j scores the mean of ``affinity[i, j]`` over the other members i of its group
    (0 when alone); the partition's score is the sum over tasks.

    Parameters
    ----------
    affinity : array-like of shape (n_tasks, n_tasks)
        ``[source, target]`` affinity, larger = source helps target more.
    labels : array-like of shape (n_tasks,)
        Group of every task.

    Returns
    -------
    score : float
    """
    A = _check_affinity(affinity)
    labels = np.asarray(labels)
    total = 0.0
    for g in np.unique(labels):
        members = np.flatnonzero(labels == g)
        if members.size < 2:
            continue
        block = A[np.ix_(members, members)]
        total += (block.sum() - np.trace(block)) / (members.size - 1)
    return float(total)


def _partitions(n, k):
    """All partitions of range(n) into exactly k non-empty groups, as label arrays."""
    labels = np.zeros(n, dtype=np.int64)

    def rec(i, used):
        if n - i < k - used:
            return
        if i == n:
            if used == k:
                yield labels.copy()
            return
        for g in range(min(used + 1, k)):
            labels[i] = g
            yield from rec(i + 1, max(used, g + 1))

    yield from rec(0, 0)


def _stirling2(n, k):
    table = [[0] * (k + 1) for _ in range(n + 1)]
    table[0][0] = 1
    for i in range(1, n + 1):
        for j in range(1, min(i, k) + 1):
            table[i][j] = j * table[i - 1][j] + table[i - 1][j - 1]
    return table[n][k]


@validate_params(
    {"affinity": "no_validation",
     "n_groups": [Interval(Integral, 1, None, closed="left")],
     "standard_errors": ["array-like", None], "n_se": [Interval(Real, 0, None, closed="left")],
     "method": [StrOptions({"spectral", "exhaustive"})], "random_state": ["random_state"],
     "max_partitions": [Interval(Integral, 1, None, closed="left")]},
    prefer_skip_nested_validation=True)
def group_tasks(affinity, n_groups, *, standard_errors=None, n_se=1.0, method="spectral",
                random_state=None, max_partitions=2_000_000):
    """Split the tasks into ``n_groups`` groups to train together, from a task-affinity matrix.

    ``method="spectral"``: scikit-learn's :class:`~sklearn.cluster.SpectralClustering` on the
    symmetrised affinity ``(A + A^T) / 2`` with its off-diagonal entries min-max scaled to
    [0, 1] (spectral clustering needs non-negative similarities; scaling keeps their order)
    and a unit diagonal. ``method="exhaustive"``: the TAG-style search (Fifty et al. 2021) over
    every partition into exactly ``n_groups`` non-empty groups, maximising
    :func:`grouping_score` (each task's mean affinity from its group mates, summed); exact, for
    small numbers of tasks (the count of partitions is a Stirling number; above
    ``max_partitions`` it raises). TAG also allows overlapping groups; here groups are disjoint.
    The semi-definite program of Grad-TAG is not provided (it needs an SDP solver such as
    cvxpy, which is not a dependency).

    With standard errors (``standard_errors=``, or a cross-fitted
    :class:`~mtif_sklearn.MTIFInfluence` passed as ``affinity``), every entry is first shrunk
    towards 0 by ``n_se`` standard errors, ``sign(a) * max(|a| - n_se * se, 0)``: entries that
    the folds do not agree on carry no weight, so that a small task's large but noisy scores do not
    decide the groups. Task scores from one validation split are mostly split noise
    (DESIGN.md); group from cross-fitted ones.

    Parameters
    ----------
    affinity : array-like of shape (n_tasks, n_tasks) or fitted MTIFInfluence
        ``[source, target]`` affinity, larger = source helps target more (the convention of
        every function in :mod:`mtif_sklearn.affinity` and of ``task_influence_``).
        The diagonal is ignored. A fitted :class:`~mtif_sklearn.MTIFInfluence` stands for its
        ``task_influence_`` (and, with ``cv``, its ``task_influence_se_``).
    n_groups : int
        Number of groups (at most n_tasks).
    standard_errors : array-like of shape (n_tasks, n_tasks), default=None
        Standard errors of ``affinity`` (e.g. ``task_influence_se_`` of a cross-fitted
        MTIFInfluence). None: the affinity is used as it is (or, for an MTIFInfluence, its
        ``task_influence_se_`` when it has one).
    n_se : float, default=1.0
        Shrinkage margin in standard errors (ignored without standard errors).
    method : {"spectral", "exhaustive"}, default="spectral"
        Clustering method.
    random_state : int, RandomState instance or None, default=None
        Seed of spectral clustering's k-means.
    max_partitions : int, default=2_000_000
        Largest number of partitions the exhaustive search may enumerate.

    Returns
    -------
    labels : ndarray of shape (n_tasks,)
        Group index (0 .. n_groups - 1) of every task, in the affinity's task order.
    """
    A, se = _affinity_and_errors(affinity, standard_errors)
    if se is not None and n_se > 0:
        A = _shrink_by_standard_errors(A, se, n_se)
    K = A.shape[0]
    if n_groups > K:
        raise ValueError(f"n_groups={n_groups} exceeds the number of tasks ({K}).")
    if n_groups == 1:
        return np.zeros(K, dtype=np.int64)
    if n_groups == K:
        return np.arange(K, dtype=np.int64)
    if method == "exhaustive":
        count = _stirling2(K, n_groups)
        if count > max_partitions:
            digits = len(str(count))
            shown = f"{count:,}" if digits <= 12 else f"about 10^{digits - 1}"
            raise ValueError(
                f"The exhaustive search would enumerate {shown} partitions of {K} tasks into "
                f"{n_groups} groups (max_partitions={max_partitions}); use method='spectral' "
                "or raise max_partitions.")
        # Vectorised scoring: per partition, sum over tasks of the mean in-group affinity.
        off = A - np.diag(np.diag(A))
        best, best_score = None, -np.inf
        batch = []

        def flush(batch):
            L = np.array(batch)  # (b, K)
            same = L[:, :, None] == L[:, None, :]  # (b, K, K): [source, target] in one group
            sizes = same.sum(axis=1)  # (b, K): size of the target's group
            gain = (same * off[None]).sum(axis=1)  # (b, K)
            scores = np.where(sizes > 1, gain / np.maximum(sizes - 1, 1), 0.0).sum(axis=1)
            idx = int(np.argmax(scores))
            return L[idx], scores[idx]

        for labels in _partitions(K, n_groups):
            batch.append(labels)
            if len(batch) == 4096:
                cand, score = flush(batch)
                batch = []
                if score > best_score + 1e-12:
                    best, best_score = cand, score
        if batch:
            cand, score = flush(batch)
            if score > best_score + 1e-12:
                best, best_score = cand, score
        return best.astype(np.int64)
    sym = (A + A.T) / 2.0
    mask = ~np.eye(K, dtype=bool)
    low, high = sym[mask].min(), sym[mask].max()
    similarity = (sym - low) / (high - low) if high > low else np.ones_like(sym)
    np.fill_diagonal(similarity, 1.0)
    clustering = SpectralClustering(n_clusters=n_groups, affinity="precomputed",
                                    random_state=random_state, assign_labels="kmeans")
    labels = clustering.fit_predict(similarity)
    # Relabel in order of first appearance so that equal partitions give equal labels.
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(first)
    remap = np.empty_like(order)
    remap[order] = np.arange(order.size)
    return remap[labels].astype(np.int64)
