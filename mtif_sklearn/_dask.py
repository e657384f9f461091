"""Rows in dask blocks: the dask branch of task identity, folds drawn block by block, block maps.

A multitask model is determined by per-task sums over rows (Hessian blocks, gradients, losses)
and, given the factored Hessian, every data-level output is a map over row blocks. So on dask
inputs (``dask.array`` / ``dask.dataframe``, larger than one machine's memory) the sums are
computed block by block and reduced on the workers to K q^2 + p^2 numbers, the arrow factor and
its solves run on the client, and row-level outputs are lazy dask arrays computed block by block
(users ``.compute()`` them or write them to zarr / parquet). Any dask scheduler works (threads,
processes, a ``distributed.Client``).

This module owns what the dask branch shares: :func:`is_dask` (no dask import),
:class:`DaskTaskData` (the :class:`~mtif_sklearn._tasks.TaskData` of dask rows, with folds
stored as one small integer per row), :func:`assign_folds` (stratified-by-task folds drawn
block by block, so the client never holds n numbers) and the block helpers. dask is imported
inside the functions, so the NumPy path never imports it.
"""

import math
from dataclasses import dataclass, field, replace
from numbers import Integral

import numpy as np
from sklearn.utils import check_random_state

from ._tasks import TaskData

__all__ = ["DaskTaskData", "Folds", "assign_folds", "block_index", "block_starts", "columns_of",
           "is_dask", "member_mask", "require_dask_model", "require_known_rows", "row_array",
           "rows_mask", "shipped", "unpack_block"]

#: Fold code of a row that takes part in no split (removed in an earlier selection round).
EXCLUDED = -2
#: Fold code of a row that is trained in every split and never validated (``cv=None``).
TRAIN_ONLY = -1


def is_dask(obj):
    """Whether ``obj`` is a dask collection (array, DataFrame, Series), without importing dask."""
    return (type(obj).__module__.split(".")[0] == "dask"
            and callable(getattr(obj, "__dask_graph__", None)))


def columns_of(X):
    """What ``validate_data(..., skip_check_array=True)`` should see of dask X: a DataFrame's
    empty pandas meta (its column names), an array itself (its shape)."""
    return X._meta if hasattr(X, "columns") else X


def require_dask_model(model):
    """Refuse, before any row is read, a model whose hooks do not take dask rows."""
    from .linear._base import _BaseMultitaskLinear

    if not isinstance(model, _BaseMultitaskLinear):
        raise TypeError(
            f"{type(model).__name__} does not take dask rows; MultitaskRidge and "
            "MultitaskLogistic do. Pass in-memory arrays (e.g. X.compute() of a sample).")


def require_known_rows(array, name):
    """Refuse a dask array whose row-chunk sizes are unknown (NaN), with the fix."""
    if any(math.isnan(size) for size in array.chunks[0]):
        raise ValueError(
            f"{name} is a dask array with unknown chunk sizes (NaN), e.g. from boolean indexing "
            "or a DataFrame's .values; the rows of X, y, tasks and sample_weight must line up "
            f"block by block. Call {name} = {name}.compute_chunk_sizes() first, or pass the "
            "dask DataFrame / Series itself (its partition lengths are computed once).")


def row_array(values, chunks, name, *, dtype=None):
    """``values`` (dask array or Series, NumPy array, list) as a 1-d dask array with the row
    chunks ``chunks`` of X."""
    import dask.array as da

    n_rows = sum(chunks)
    if is_dask(values):
        if hasattr(values, "to_dask_array"):  # dask Series
            values = values.to_dask_array(lengths=True)
        require_known_rows(values, name)
    else:
        values = np.asarray(values.to_numpy() if hasattr(values, "to_numpy") else values)
    if values.ndim == 2 and 1 in values.shape[1:]:
        values = values.reshape(-1) if not is_dask(values) else values[:, 0]
    if values.ndim != 1 or values.shape[0] != n_rows:
        raise ValueError(f"{name} must have one value per row of X ({n_rows} rows); got shape "
                         f"{values.shape}.")
    if dtype is not None:
        values = values.astype(dtype)
    if is_dask(values):
        return values.rechunk((chunks,)) if values.chunks[0] != tuple(chunks) else values
    return da.from_array(values, chunks=(tuple(chunks),))


def block_index(chunks):
    """A dask array holding its own block number (one per row block of ``chunks``); the kernels
    of this package take it to know which block they work on (with ``align_arrays=False``)."""
    import dask.array as da

    return da.arange(len(chunks), chunks=1)


def shipped(value):
    """``value`` as one dask key, so that it travels to each worker once rather than inside
    every block's task (the factor, the parameters, the fold allocation)."""
    import dask

    return dask.delayed(value, pure=True, traverse=False)


def block_starts(chunks):
    """First row of every block."""
    return np.concatenate([[0], np.cumsum(chunks)[:-1]]).astype(np.int64)


def member_mask(member, fold_block, n_rows):
    """Boolean mask of a block's rows that belong to ``member`` (see :class:`DaskTaskData`)."""
    if fold_block is None:
        return np.ones(n_rows, dtype=bool)
    if member[0] == "all":
        return fold_block != EXCLUDED
    if member[0] == "train":
        return (fold_block != member[1]) & (fold_block != EXCLUDED)
    return fold_block == member[1]


@dataclass
class DaskTaskData(TaskData):
    """Rows of a multitask problem held as dask arrays with the same row blocks (dask inputs).

    ``X`` (n, d) float64 with one column block, ``y`` coded, ``codes`` int64, ``sample_weight``
    float64: dask arrays; ``task_labels`` and ``fitted_attributes`` as in
    :class:`~mtif_sklearn._tasks.TaskData`. Rows are never gathered: subsets (training and
    validation rows, folds, rows left after a selection round) are selected by ``fold`` and
    ``member`` instead of being indexed out, so every objective keeps the blocks of X.

    Parameters
    ----------
    fold : dask array of int16, shape (n,), or None
        Validation fold of every row (``TRAIN_ONLY``: trained in every split, ``EXCLUDED``: in
        none); None: no folds.
    n_folds : int
        Number of validation folds in ``fold``.
    member : tuple
        Which rows these data are: ``("all",)``, ``("train", f)`` (rows not validated in fold
        f) or ``("val", f)``.
    unit_weights : bool
        True when no sample_weight was given (all ones): then the validation statistics
        (unweighted) are the training ones and a pass serves both.
    cache : dict
        Per-task block sums already computed on these rows (shared by every ``member`` view
        of the same rows and folds; see :mod:`mtif_sklearn.linear._dask`).
    """

    fold: object = None
    n_folds: int = 0
    member: tuple = ("all",)
    unit_weights: bool = True
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def chunks(self):
        """Row-block sizes."""
        return self.codes.chunks[0]

    @property
    def n_groups(self):
        """Row groups the block sums are kept apart by: 1, or every fold plus the rows that are
        never validated."""
        return 1 if self.fold is None else self.n_folds + 1

    def groups_of(self, member=None):
        """Group numbers (see :attr:`n_groups`) that make up ``member`` (default: own)."""
        member = self.member if member is None else member
        groups = np.arange(self.n_groups)
        if member[0] == "all":
            return groups
        if member[0] == "train":
            return groups[groups != member[1] + 1]
        return np.array([member[1] + 1])

    def rows(self, member):
        """The same rows viewed as ``member`` (sharing the cache)."""
        return replace(self, member=tuple(member))

    def with_folds(self, fold, n_folds):
        """These rows with the folds ``fold`` (a new cache)."""
        return replace(self, fold=fold, n_folds=int(n_folds), member=("all",), cache={})

    def with_weights(self, sample_weight):
        """The same rows with other sample weights (a dask array with the same blocks)."""
        weights = row_array(sample_weight, self.chunks, "sample_weight", dtype=np.float64)
        return replace(self, sample_weight=weights, unit_weights=False, cache={})

    def take(self, rows):
        raise TypeError("Rows of dask data are selected with folds and weights, never gathered "
                        "to the client (DaskTaskData.rows / with_weights).")

    def restrict_tasks(self, task_codes):
        raise TypeError("Restricting dask data to some tasks is not supported; pass the rows "
                        "of those tasks (e.g. X[mask] of a dask DataFrame).")

    def blockwise_inputs(self):
        """``(array, index)`` pairs for ``da.blockwise`` of the row arrays a kernel reads, in
        the order X, codes, sample_weight, y (if any), fold (if any)."""
        pairs = [self.X, "ij", self.codes, "i", self.sample_weight, "i"]
        if self.y is not None:
            pairs += [self.y, "i"]
        if self.fold is not None:
            pairs += [self.fold, "i"]
        return pairs


def unpack_block(args, has_y, has_fold):
    """``(X, codes, weight, y, fold, block index)`` of one block from the kernel arguments of
    :meth:`DaskTaskData.blockwise_inputs` followed by the block index (y, fold: None when
    absent)."""
    X, codes, weight, *rest = args
    y = rest.pop(0) if has_y else None
    fold = rest.pop(0) if has_fold else None
    return X, codes, weight, y, fold, int(rest[0][0])


def _fold_sizes(counts, cv, validation_fraction, task_names):
    """Rows of every task in every validation fold, (K, F): the in-memory rules of
    :func:`~mtif_sklearn._tasks.task_folds` (a validation split keeps 1 <= n_val <= n_k - 1
    rows, rounded; ``cv`` folds differ in size by at most one row per task)."""
    counts = np.asarray(counts, dtype=np.int64)
    if cv is None:
        small = np.flatnonzero(counts < 2)
        if small.size:
            k = small[0]
            raise ValueError(
                f"Task {task_names[k]!r} has {counts[k]} row(s); a validation split needs at "
                "least 2 rows per task (one to train, one to validate). Drop the task, or "
                "pass X_val.")
        sizes = np.array([int(np.clip(round(validation_fraction * n), 1, n - 1))
                          for n in counts.tolist()], dtype=np.int64)
        return sizes[:, None]
    small = np.flatnonzero(counts < cv)
    if small.size:
        raise ValueError(
            f"Task(s) {[task_names[k] for k in small[:5]]} have fewer than cv={cv} rows "
            f"(smallest: {counts.min()}); every fold must validate every task. Lower cv, "
            "use cv=None (one validation_fraction split), or drop the small tasks.")
    base, extra = counts // cv, counts % cv
    # The folds that get a task's extra rows rotate over the tasks, so folds stay even overall.
    offsets = np.concatenate([[0], np.cumsum(extra)[:-1]]) % cv
    folds = np.arange(cv)
    return base[:, None] + (((folds[None, :] - offsets[:, None]) % cv) < extra[:, None])


def assign_folds(data, cv, *, validation_fraction=0.2, random_state=None, excluded=None):
    """Stratified-by-task validation folds of dask rows, drawn block by block.

    The same distribution as :func:`~mtif_sklearn._tasks.task_folds` (every task's rows are
    shuffled and dealt into folds of sizes differing by at most one; ``cv=None``: one split
    holding out ``validation_fraction`` of every task), but the client never holds the n rows:
    one pass counts every task's rows per block (blocks x K numbers); on the client each task's
    fold sizes are dealt over the blocks by multivariate hypergeometric draws (exactly the
    block counts of a uniformly random deal); each block then shuffles its rows of every task
    with its own seed and deals them. For the same ``random_state`` the rows differ from the
    in-memory split (another random stream), but the folds are reproducible and exact in size.

    Parameters
    ----------
    data : DaskTaskData
        The rows (their ``codes``).
    cv : int or None
        Number of folds, or None for one ``validation_fraction`` split.
    validation_fraction : float, default=0.2
        Held-out share of every task when ``cv`` is None.
    random_state : int, RandomState instance or None, default=None
        Seed.
    excluded : ndarray of int, default=None
        Sorted rows of X that take part in no fold (removed in an earlier selection round).

    Returns
    -------
    folds : Folds
    """
    import dask.array as da

    if cv is not None and not isinstance(cv, Integral):
        raise ValueError(
            f"On dask inputs cv must be an int or None; got {type(cv).__name__}. The folds are "
            "drawn block by block (stratified by task); a splitter would need every row on the "
            "client. Pass cv=<number of folds>.")
    n_tasks, chunks = data.n_tasks, data.chunks
    task_names = data.task_labels.tolist()
    starts = block_starts(chunks)
    excluded = None if excluded is None or len(excluded) == 0 else np.sort(excluded)
    excluded_key = shipped(excluded)

    def block_excluded(index, size, excluded):
        return _block_mask(excluded, starts[index], size)

    def count_kernel(codes, index, excluded):
        keep = ~block_excluded(int(index[0]), codes.size, excluded)
        return np.bincount(codes[keep], minlength=n_tasks)[None, :]

    blocks = block_index(chunks)
    counts = da.blockwise(count_kernel, "ik", data.codes, "i", blocks, "i",
                          excluded=excluded_key, new_axes={"k": n_tasks},
                          adjust_chunks={"i": 1}, align_arrays=False, dtype=np.int64,
                          meta=np.empty((0, 0), dtype=np.int64)).compute()
    totals = counts.sum(axis=0)
    sizes = _fold_sizes(totals, cv, validation_fraction, task_names)
    n_folds = sizes.shape[1]
    rng = np.random.default_rng(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    n_blocks = len(chunks)
    # allocation[b, k, f]: rows of task k in block b that go to fold f.
    allocation = np.zeros((n_blocks, n_tasks, n_folds), dtype=np.int64)
    for k in range(n_tasks):
        remaining = counts[:, k].copy()
        holders = np.flatnonzero(remaining)
        for f in range(n_folds):
            if holders.size == 1:
                drawn = np.array([sizes[k, f]])
            else:
                drawn = rng.multivariate_hypergeometric(remaining[holders], int(sizes[k, f]))
            allocation[holders, k, f] = drawn
            remaining[holders] -= drawn
    seeds = rng.integers(np.iinfo(np.int64).max, size=n_blocks)
    bounds = np.cumsum(allocation, axis=2)  # per block and task: fold f takes ranks < bounds[f]

    def fold_kernel(codes, index, bounds, seeds, excluded):
        b = int(index[0])
        fold = np.full(codes.size, TRAIN_ONLY, dtype=np.int16)
        fold[block_excluded(b, codes.size, excluded)] = EXCLUDED
        rows = np.flatnonzero(fold != EXCLUDED)
        block_rng = np.random.default_rng(seeds[b])
        # Rows sorted by task, randomly within a task (code + a uniform [0, 1) key): a row's
        # rank in its task is its place in the deal; the first bounds[k, 0] ranks form fold 0,
        # and so on.
        order = rows[np.argsort(codes[rows] + block_rng.random(rows.size))]
        sorted_codes = codes[order]
        starts = np.flatnonzero(np.diff(sorted_codes, prepend=-1))
        rank = np.arange(order.size) - np.repeat(starts, np.diff(starts, append=order.size))
        dealt = np.sum(rank[:, None] >= bounds[b][sorted_codes], axis=1)
        fold[order] = np.where(dealt < n_folds, dealt, TRAIN_ONLY)
        return fold

    fold = da.blockwise(fold_kernel, "i", data.codes, "i", blocks, "i",
                        bounds=shipped(bounds), seeds=shipped(seeds), excluded=excluded_key,
                        align_arrays=False, dtype=np.int16, meta=np.empty((0,), dtype=np.int16))
    per_block = counts.sum(axis=1)
    in_folds = allocation.sum(axis=1)  # (n_blocks, n_folds)
    group_counts = np.column_stack([per_block - in_folds.sum(axis=1), in_folds])
    return Folds(fold, n_folds, group_counts, totals, sizes)


@dataclass
class Folds:
    """Validation folds of dask rows (:func:`assign_folds`).

    Parameters
    ----------
    fold : dask array of int16, shape (n,)
        Validation fold of every row (-1: never validated, -2: excluded).
    n_folds : int
    group_counts : ndarray of shape (n_blocks, n_folds + 1)
        Rows of every block in each group (group 0: never validated, group f + 1: fold f).
    task_counts : ndarray of shape (n_tasks,)
        Rows of every task that take part (not excluded).
    fold_sizes : ndarray of shape (n_tasks, n_folds)
        Validation rows of every task in every fold.
    """

    fold: object
    n_folds: int
    group_counts: np.ndarray
    task_counts: np.ndarray
    fold_sizes: np.ndarray


def _block_mask(sorted_rows, start, size):
    """True at the rows among ``sorted_rows`` (row numbers, sorted; None: none) of the block
    of ``size`` rows starting at row ``start``."""
    mask = np.zeros(size, dtype=bool)
    if sorted_rows is not None:
        lo, hi = np.searchsorted(sorted_rows, [start, start + size])
        mask[sorted_rows[lo:hi] - start] = True
    return mask


def rows_mask(rows, chunks):
    """A lazy boolean dask array (n,) that is True at the sorted row numbers ``rows``."""
    import dask.array as da

    starts = block_starts(chunks)

    def kernel(index, rows):
        return _block_mask(rows, starts[int(index[0])], chunks[int(index[0])])

    return da.blockwise(kernel, "i", block_index(chunks), "i", rows=shipped(np.sort(rows)),
                        adjust_chunks={"i": tuple(chunks)}, dtype=bool,
                        meta=np.empty((0,), dtype=bool))
