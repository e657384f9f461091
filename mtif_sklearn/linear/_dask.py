"""MultitaskRidge and MultitaskLogistic on dask arrays and DataFrames (larger than memory).

The linear multitask objective is determined by per-task sums over rows: every task's loss,
gradient sum_i w_i l'_i x_i and Hessian block sum_i w_i l''_i x_i x_i^T (paper eq. 2 / Lemma A.1).
:class:`DaskLinearObjective` computes them block by block, each block's K x (q^2 + q + 2) sums
reduced on the workers, and hands the Newton solver of :mod:`~mtif_sklearn.linear._solver`
exactly what it asks the in-memory objective for; so a dask fit runs the SAME solver, with the
arrow factor and solve on the client. One pass over the blocks per Newton iteration: the pass
that evaluates a point (for the line search) also computes its gradient and Hessian, which the
next iteration needs if the point is accepted. A ridge fit is one pass.

Block sums are kept apart by fold (:class:`~mtif_sklearn._dask.DaskTaskData`), so the models of
every cross-validation fold come from the same pass (the training sums of fold f are the sums
of the other groups), and cached per point, so the influence computation that follows a fit
re-reads nothing it already has. Row weights w_i / n_k enter as ``1 / n_k`` per task applied
on the client: the sums themselves carry the sample weights only.
"""

import math
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.base import is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted, validate_data

from .._dask import (
    DaskTaskData,
    block_index,
    block_starts,
    columns_of,
    is_dask,
    member_mask,
    require_known_rows,
    row_array,
    shipped,
    unpack_block,
)
from .._tasks import (
    TaskData,
    check_task_labels,
    check_task_weight_sums,
    encode_tasks,
    group_rows_by_task,
    prediction_task_codes,
    unique_tasks,
)
from ..backend import single_blas_thread
from ..base import ArrowBlocks, Params
from ._objective import raw_outputs
from ._solver import fit_linear_multitask

__all__ = ["DaskLinearObjective", "dask_decision_function", "dask_predict",
           "dask_predict_log_proba", "dask_predict_proba", "dask_score", "dask_score_per_task",
           "dask_task_data",
           "evaluate_sums", "fit_dask", "fit_together"]

#: Points whose block sums stay cached on the client per data set (each K x (q^2 + q + 3)
#: numbers per fold group).
CACHED_POINTS = 4


# -- inputs ------------------------------------------------------------------------------------
def _partition_lengths(*collections):
    """Partition lengths of the dask DataFrames / Series among ``collections`` (one compute)."""
    import dask

    frames = [c for c in collections if is_dask(c) and hasattr(c, "map_partitions")]
    lengths = dask.compute(*(frame.map_partitions(len) for frame in frames))
    found = {id(frame): tuple(int(n) for n in length)
             for frame, length in zip(frames, lengths, strict=True)}
    return [found.get(id(c)) for c in collections]


def _frame_to_array(frame, lengths):
    """A dask DataFrame / Series as a dask array with known row blocks (strings -> object)."""
    with warnings.catch_warnings():  # "converting string to object dtype": what we want
        warnings.simplefilter("ignore", UserWarning)
        return frame.to_dask_array(lengths=lengths)


def _column_name(columns, task_column):
    """The name of ``task_column`` among ``columns`` (as ``split_task_column`` resolves it)."""
    if isinstance(task_column, Integral) and task_column not in columns:
        if not -len(columns) <= task_column < len(columns):
            raise ValueError(f"task_column={task_column} is out of range for X with "
                             f"{len(columns)} columns.")
        return columns[task_column]
    if task_column not in columns:
        raise ValueError(
            f"task_column={task_column!r} is not a column of X; columns are {columns[:10]}"
            f"{' ...' if len(columns) > 10 else ''}. Pass the name of the column that "
            "holds the task labels.")
    return task_column


def _features_and_labels(model, X, tasks, y, sample_weight):
    """(features (n, d) float64 dask array with one column block, task labels (dask array) or
    None, the labels when they were given in memory, and y, sample_weight (DataFrame partitions
    as dask arrays with known lengths))."""
    task_column = model.task_column
    if task_column is not None and tasks is not None:
        raise ValueError("Both tasks= and task_column are set; pass the task labels one way "
                         "only.")
    lengths = _partition_lengths(X, y, tasks, sample_weight)
    others = [(value if length is None else _frame_to_array(value, length))
              for value, length in zip((y, tasks, sample_weight), lengths[1:], strict=True)]
    labels = None
    if hasattr(X, "columns"):  # dask DataFrame
        columns = list(X.columns)
        if task_column is not None:
            name = _column_name(columns, task_column)
            labels = _frame_to_array(X[name], lengths[0])
            X = X.drop(columns=[name])
        from pandas.api.types import is_numeric_dtype

        bad = [str(c) for c, kind in zip(X.columns, X.dtypes, strict=True)
               if not is_numeric_dtype(kind)]
        if bad:
            raise ValueError(f"The feature columns of X must be numeric; {bad[:5]} are not. "
                             "Encode them first (e.g. with dask-ml's Categorizer + "
                             "DummyEncoder) or drop them.")
        features = _frame_to_array(X, lengths[0])
    else:
        if X.ndim != 2:
            raise ValueError(f"X must be 2-dimensional; got a dask array of shape {X.shape}.")
        require_known_rows(X, "X")
        features = X
        if task_column is not None:
            if not isinstance(task_column, Integral):
                raise ValueError(
                    f"task_column={task_column!r} is a name but X has no column names (it is a "
                    "dask array). Pass a dask DataFrame or an integer column position.")
            n_columns = X.shape[1]
            if not -n_columns <= task_column < n_columns:
                raise ValueError(f"task_column={task_column} is out of range for X with "
                                 f"{n_columns} columns.")
            import dask.array as da

            labels = X[:, task_column]
            features = da.delete(X, task_column % n_columns, axis=1)
    if features.dtype.kind not in "biuf":
        raise ValueError(f"X must be numeric; got a dask array of dtype {features.dtype}. "
                         "Convert the features (X.astype(float)).")
    features = features.astype(np.float64).rechunk({1: -1})
    chunks = features.chunks[0]
    y, tasks, sample_weight = others
    in_memory = None  # task labels given as an in-memory array need no pass to be read
    if tasks is not None and not is_dask(tasks):
        in_memory = check_task_labels(tasks, sum(chunks))
        labels = row_array(in_memory, chunks, "tasks")
    elif tasks is not None:
        labels = row_array(tasks, chunks, "tasks")
    elif labels is not None:
        labels = labels.rechunk((chunks,))
    return features, labels, in_memory, y, sample_weight


def _as_object(labels):
    out = np.empty(labels.shape[0], dtype=object)
    out[:] = labels.tolist()
    return out


def _block_unique_labels(block):
    labels = check_task_labels(block, block.shape[0])
    return _as_object(unique_tasks(labels))


def _block_codes(block, task_labels, unknown):
    return encode_tasks(check_task_labels(block, block.shape[0]), task_labels, unknown=unknown)


def _block_unique_targets(block):
    return _as_object(np.unique(block))


def dask_task_data(model, X, y=None, tasks=None, sample_weight=None, *, reset,
                   unknown="error"):
    """The dask branch of ``_BaseMultitaskLinear._mtif_data``: rows as a :class:`DaskTaskData`.

    Task labels come from a blockwise unique (and the classes of a classifier from the same
    pass); codes, encoded targets and the checks of every value (NaN, negative weights) are
    computed block by block when the rows are first read. A dask DataFrame's partition
    lengths are computed once (the rows of X, y, tasks must line up block by block).

    Parameters
    ----------
    model : MultitaskRidge or MultitaskLogistic
    X : dask array or dask DataFrame of shape (n_samples, n_columns)
    y, tasks, sample_weight : dask arrays / Series, NumPy arrays or None
    reset : bool
        True before fitting (task labels define ``tasks_``; ``n_features_in_`` is recorded).
    unknown : {"error", "shared"}
        Unknown task labels at prediction time (see :func:`~mtif_sklearn._tasks.encode_tasks`).

    Returns
    -------
    data : DaskTaskData
    """
    import dask
    import dask.array as da

    if not reset:
        check_is_fitted(model)
    validate_data(model, columns_of(X), skip_check_array=True, reset=reset)
    features, labels, in_memory, y, sample_weight = _features_and_labels(
        model, X, tasks, y, sample_weight)
    chunks = features.chunks[0]
    n_samples = int(sum(chunks))
    y = None if y is None else row_array(y, chunks, "y")
    wanted = {}
    if reset and labels is not None and in_memory is None:
        # Unknown output sizes given block by block (dask 2024.1 takes no bare NaN here).
        wanted["tasks"] = labels.map_blocks(_block_unique_labels,
                                            chunks=((np.nan,) * labels.numblocks[0],),
                                            dtype=object)
    if reset and y is not None and is_classifier(model):
        wanted["y"] = y.map_blocks(_block_unique_targets, chunks=((np.nan,) * y.numblocks[0],),
                                   dtype=object)
    found = dict(zip(wanted, dask.compute(*wanted.values()), strict=True))
    if reset and labels is None:
        task_labels = np.zeros(1, dtype=np.int64)
    elif reset:
        uniques = found["tasks"] if in_memory is None else in_memory
        task_labels = unique_tasks(check_task_labels(uniques, len(uniques)))
    else:
        task_labels = model.tasks_
    if labels is None:
        prediction_task_codes(model, None, n_samples)  # raises for several tasks
        codes = da.zeros(n_samples, chunks=(chunks,), dtype=np.int64)
    elif in_memory is not None:  # encoded here: they are in memory already
        codes = da.from_array(encode_tasks(in_memory, task_labels, unknown=unknown),
                              chunks=(chunks,))
    else:
        codes = labels.map_blocks(_block_codes, task_labels=task_labels, unknown=unknown,
                                  dtype=np.int64, meta=np.empty((0,), dtype=np.int64))
    if y is not None:
        if "y" in found:
            model._encode_targets(np.unique(found["y"].tolist()), reset=True)
        y = y.map_blocks(model._encode_targets, reset=False, dtype=np.float64,
                         meta=np.empty((0,)))
    unit = sample_weight is None
    sample_weight = (da.ones(n_samples, chunks=(chunks,)) if unit
                     else row_array(sample_weight, chunks, "sample_weight", dtype=np.float64))
    recorded = {name: getattr(model, name, None)
                for name in ("n_features_in_", "feature_names_in_", "classes_")}
    return DaskTaskData(features, y, codes, task_labels, sample_weight,
                        recorded if reset else {}, None, unit_weights=unit)


# -- block sums --------------------------------------------------------------------------------
def _check_block(X, y, weight, start):
    """The value checks of ``validate_data`` / ``_check_sample_weight``, on one block."""
    stop = start + X.shape[0]
    if not np.all(np.isfinite(X)):
        raise ValueError(f"Input X contains NaN or infinity (in rows {start} to {stop - 1}); "
                         "impute or drop those rows first (dask DataFrame.fillna / dropna).")
    if y is not None and not np.all(np.isfinite(y)):
        raise ValueError(f"Input y contains NaN or infinity (in rows {start} to {stop - 1}); "
                         "drop those rows first.")
    if not np.all(np.isfinite(weight)):
        raise ValueError(f"sample_weight contains NaN or infinity (in rows {start} to "
                         f"{stop - 1}).")
    if np.any(weight < 0):
        raise ValueError("Negative values in data passed to `sample_weight` (in rows "
                         f"{start} to {stop - 1}); weights must be >= 0.")


def _sums_kernel(*args, has_y, has_fold, context):
    """Per (fold group, task) sums of one block at every requested point, flattened."""
    # Small products (q x q per task): one BLAS thread per dask thread is fastest (backend.py).
    with single_blas_thread(np, context["q"]):
        return _block_sums(*args, has_y=has_y, has_fold=has_fold, context=context)


def _block_sums(*args, has_y, has_fold, context):
    X, codes, weight, y, fold, index = unpack_block(args, has_y, has_fold)
    model, labels = context["model"], context["labels"]
    n_groups, n_tasks, q = context["n_groups"], len(labels), context["q"]
    _check_block(X, y, weight, int(context["starts"][index]))
    m = codes.size
    group = np.zeros(m, dtype=np.int64) if fold is None else fold.astype(np.int64) + 1
    keep = group >= 0  # EXCLUDED rows (fold -2) are in no group
    key = np.where(keep, group * n_tasks + codes, 0)
    cells = n_groups * n_tasks
    out = [np.bincount(key[keep], minlength=cells).astype(np.float64)]
    if not context["evaluations"]:
        return np.concatenate(out)[None, :]
    objective = model._objective(TaskData(X, y, codes, labels, weight), weight)
    triu = np.triu_indices(q)
    groups = None
    for params, kind, hessian, abs_grad in context["evaluations"]:
        row_weights = (weight if kind == "sample" else np.ones(m)) * keep
        indicator = csr_matrix((row_weights, (key, np.arange(m))), shape=(cells, m))
        # A linear model's rows at a point: raw outputs and features, once (then the loss,
        # its gradient x l'(raw) and curvature x x^T l''(raw) of every row).
        raw, _, features, targets, loss = objective.linearisation(params)
        first, second = loss.derivatives(targets, raw)
        grads = features * first[:, None]
        out += [np.bincount(key, weights=row_weights, minlength=cells),
                np.bincount(key, weights=row_weights * loss.value(targets, raw),
                            minlength=cells),
                np.asarray(indicator @ grads)]
        if abs_grad:
            out.append(np.asarray(indicator @ np.abs(grads)))
        if hessian:
            scaled = row_weights * second
            blocks = np.zeros((cells, triu[0].size))
            if groups is None:  # one small product per (group, task) present: O(m q^2)
                groups = group_rows_by_task(np.where(keep, key, cells))
            for cell, rows in groups:
                if cell < cells:
                    rows_x = features[rows]
                    blocks[cell] = (rows_x.T @ (rows_x * scaled[rows, None]))[triu]
            out.append(blocks)
    return np.concatenate([a.ravel() for a in out])[None, :]


def _layout(evaluations, cells, q):
    """Names and shapes of the flattened kernel output."""
    tri = q * (q + 1) // 2
    layout = [("count", None, (cells,))]
    for number, (_, _, hessian, abs_grad) in enumerate(evaluations):
        layout += [("weight", number, (cells,)), ("loss", number, (cells,)),
                   ("grad", number, (cells, q))]
        if abs_grad:
            layout.append(("abs_grad", number, (cells, q)))
        if hessian:
            layout.append(("hess", number, (cells, tri)))
    return layout


def _sums_graph(data, model, evaluations):
    """The lazy (flat) sums of ``evaluations`` over the blocks of ``data``."""
    import dask.array as da

    q = data.X.shape[1] + (1 if model.fit_intercept else 0)
    layout = _layout(evaluations, data.n_groups * data.n_tasks, q)
    width = sum(math.prod(shape) for _, _, shape in layout)
    context = {"model": model, "labels": data.task_labels, "n_groups": data.n_groups, "q": q,
               "evaluations": evaluations, "starts": block_starts(data.chunks)}
    inputs = data.blockwise_inputs() + [block_index(data.chunks), "i"]
    per_block = da.blockwise(
        _sums_kernel, "iz", *inputs, new_axes={"z": width}, adjust_chunks={"i": 1},
        align_arrays=False, concatenate=True, dtype=np.float64, meta=np.empty((0, 0)),
        has_y=data.y is not None, has_fold=data.fold is not None, context=shipped(context))
    return per_block.sum(axis=0, split_every=4), layout, q


def _unpack(flat, layout, data, q, n_evaluations):
    """The flat sums as one dict per evaluation of arrays (n_groups, K, ...)."""
    shape = (data.n_groups, data.n_tasks)
    found = [{} for _ in range(n_evaluations)]
    position = 0
    counts = None
    triu = np.triu_indices(q)
    for name, number, part in layout:
        size = math.prod(part)
        values = flat[position:position + size].reshape(shape + part[1:])
        position += size
        if name == "count":
            counts = values
            continue
        if name == "hess":
            full = np.zeros(shape + (q, q))
            full[..., triu[0], triu[1]] = values
            full[..., triu[1], triu[0]] = values
            values = full
        found[number][name] = values
    for entry in found:
        entry["count"] = counts
    return found


def _point_key(model, params, kind):
    return (model._loss, params.task.shape, kind, params.task.tobytes(),
            np.asarray(params.shared).tobytes())


def evaluate_sums(requests):
    """Per (fold group, task) block sums at some points, computing what is not cached in one
    pass over every data set involved.

    Parameters
    ----------
    requests : list of (DaskTaskData, model, Params, kind, hessian, abs_grad)
        ``kind``: "sample" (rows weighted by sample_weight) or "unit" (unweighted: the
        validation loss V_k is a plain mean). ``hessian``: also the Hessian sums;
        ``abs_grad``: also sums of absolute gradients (the frozen-model check).

    Returns
    -------
    sums : list of dict
        For every request: "count", "weight", "loss" (n_groups, K), "grad" (n_groups, K, q) and,
        when asked, "abs_grad", "hess" (n_groups, K, q, q), all unnormalised (no 1/n_k).
    """
    batcher = getattr(_fitting_together, "batcher", None)
    if batcher is not None and _missing(requests):
        return batcher.submit(requests)
    return _evaluate_now(requests)


def _missing(requests):
    """Whether some request is not answered by the caches."""
    for data, model, params, kind, hessian, abs_grad in requests:
        kind = "sample" if kind == "unit" and data.unit_weights else kind
        entry = data.cache.get(_point_key(model, params, kind), {})
        quadratic = ("hess", model._loss, params.task.shape, kind) in data.cache
        if ("grad" not in entry or hessian and "hess" not in entry and not quadratic
                or abs_grad and "abs_grad" not in entry):
            return True
    return False


def _evaluate_now(requests):
    import dask

    # Views of the same rows (their members) share one cache and one set of group sums.
    pending = {}  # id(data.cache) -> (data, model, [(key, evaluation)])
    for data, model, params, kind, hessian, abs_grad in requests:
        kind = "sample" if kind == "unit" and data.unit_weights else kind
        key = _point_key(model, params, kind)
        entry = data.cache.get(key, {})
        quadratic_hessian = data.cache.get(("hess", model._loss, params.task.shape, kind))
        need_hessian = hessian and "hess" not in entry and quadratic_hessian is None
        need_abs = abs_grad and "abs_grad" not in entry
        if "grad" in entry and not need_hessian and not need_abs:
            continue
        _, _, queued = pending.setdefault(id(data.cache), (data, model, []))
        for number, (queued_key, (p, k, h, a)) in enumerate(queued):
            if queued_key == key:
                queued[number] = (key, (p, k, h or need_hessian, a or need_abs))
                break
        else:
            queued.append((key, (params, kind, need_hessian, need_abs)))
    if pending:
        graphs = [(data, _sums_graph(data, model, [e for _, e in queued]), queued, model)
                  for data, model, queued in pending.values()]
        flats = dask.compute(*(graph for _, (graph, _, _), _, _ in graphs))
        for (data, (_, layout, q), queued, model), flat in zip(graphs, flats, strict=True):
            for (key, evaluation), sums in zip(queued, _unpack(flat, layout, data, q,
                                                              len(queued)), strict=True):
                _store(data, model, key, evaluation, sums)
            # Keep the points asked for now and the most recent others: a bounded cache.
            asked = {_point_key(m, p, "sample" if k == "unit" and d.unit_weights else k)
                     for d, m, p, k, _, _ in requests if d.cache is data.cache}
            points = [k for k in data.cache if k[0] != "hess"]
            for old in points[:-CACHED_POINTS]:
                if old not in asked:
                    del data.cache[old]
    results = []
    for data, model, params, kind, hessian, _ in requests:
        kind = "sample" if kind == "unit" and data.unit_weights else kind
        entry = dict(data.cache[_point_key(model, params, kind)])
        if hessian and "hess" not in entry:
            entry["hess"] = data.cache[("hess", model._loss, params.task.shape, kind)]
        results.append(entry)
    return results


class _PassBatcher:
    """Lets several fits running in threads share their passes over the blocks.

    A fit that needs block sums waits until every other live fit also waits (or has finished);
    then all their requests are computed in one pass. K-fold fits of a non-quadratic loss (one
    pass per Newton step each) so take as many passes as the slowest fit, not their sum.
    """

    def __init__(self, n_fits):
        self.condition = threading.Condition()
        self.live, self.waiting = n_fits, []

    def submit(self, requests):
        box = {}
        with self.condition:
            self.waiting.append((requests, box))
            self._run_when_all_wait()
            while not box:
                self.condition.wait()
        if "error" in box:
            raise box["error"]
        return box["sums"]

    def leave(self):
        with self.condition:
            self.live -= 1
            self._run_when_all_wait()

    def _run_when_all_wait(self):
        if not self.waiting or len(self.waiting) < self.live:
            return
        batch, self.waiting = self.waiting, []
        try:
            sums = _evaluate_now([request for requests, _ in batch for request in requests])
        except BaseException as exc:  # every waiting fit gets the error (e.g. NaN in a block)
            for _, box in batch:
                box["error"] = exc
        else:
            start = 0
            for requests, box in batch:
                box["sums"] = sums[start:start + len(requests)]
                start += len(requests)
        self.condition.notify_all()


_fitting_together = threading.local()


def fit_together(models, datasets):
    """``model._mtif_fit(data)`` for every pair, the fits sharing their passes (threads and a
    :class:`_PassBatcher`); returns the fitted models in order."""
    if len(models) == 1:
        return [models[0]._mtif_fit(datasets[0])]
    batcher = _PassBatcher(len(models))

    def fit(model, data):
        _fitting_together.batcher = batcher
        try:
            return model._mtif_fit(data)
        finally:
            _fitting_together.batcher = None
            batcher.leave()

    with ThreadPoolExecutor(max_workers=len(models)) as pool:
        futures = [pool.submit(fit, model, data) for model, data in
                   zip(models, datasets, strict=True)]
        return [future.result() for future in futures]


def _store(data, model, key, evaluation, sums):
    params, kind, hessian, _ = evaluation
    entry = data.cache.pop(key, {})
    entry.update(sums)
    data.cache[key] = entry  # most recent last
    if hessian and model._loss == "squared_error":
        # A quadratic loss has the same Hessian at every point: keep it for the others.
        data.cache[("hess", model._loss, params.task.shape, kind)] = sums["hess"]


# -- the objective -----------------------------------------------------------------------------
class DaskLinearObjective:
    """The multitask linear objective on dask rows: the protocol of
    :class:`~mtif_sklearn.base.MultitaskObjective`, with every per-task sum computed block by
    block (the row-level methods return lazy dask arrays).

    Parameters
    ----------
    model : MultitaskRidge or MultitaskLogistic
        Gives the objective of every block (``model._objective``) and the regulariser.
    data : DaskTaskData
        The rows (its ``member`` view).
    task_weight_sum : ndarray of shape (n_tasks,), default=None
        n_k, the normaliser of every task's loss (eq. 5); set before the per-task methods are
        used (the fit learns it from its first pass).
    """

    capabilities = frozenset()

    def __init__(self, model, data, task_weight_sum=None):
        self.model, self.data = model, data
        # The objective on one zero row of weight 0: exactly the regularisers (the tie of
        # every task and the shared penalty), whatever the model's regularisation is.
        weightless = TaskData(np.zeros((1, data.X.shape[1])), np.zeros(1),
                              np.zeros(1, np.int64), data.task_labels, np.zeros(1))
        self.regulariser = model._objective(weightless, np.zeros(1))
        self.loss = self.regulariser.loss
        self.shared_alpha = self.regulariser.shared_alpha
        self.n_tasks = self.regulariser.n_tasks
        self.n_task_params = self.regulariser.n_task_params
        self.n_shared_params = self.regulariser.n_shared_params
        self.task_weight_sum = task_weight_sum

    @property
    def codes(self):
        """Task code of every row (dask array)."""
        return self.data.codes

    @property
    def row_weights(self):
        """w_i / n_k of every member row, 0 for the others (dask array)."""
        inverse = 1.0 / np.asarray(self.task_weight_sum, dtype=np.float64)
        member = self.data.member

        def kernel(codes, weight, *fold):
            return weight * inverse[codes] * member_mask(member, fold[0] if fold else None,
                                                         codes.size)

        return self._map_rows(kernel, with_fold=True)

    def _map_rows(self, kernel, with_fold=False):
        import dask.array as da

        args = [self.data.codes, "i", self.data.sample_weight, "i"]
        if with_fold and self.data.fold is not None:
            args += [self.data.fold, "i"]
        return da.blockwise(kernel, "i", *args, dtype=np.float64, meta=np.empty((0,)))

    def statistics(self, params, *, hessian=False, abs_grad=False, kind="sample"):
        """Per-task sums over the member rows at ``params`` (see :func:`evaluate_sums`)."""
        sums = evaluate_sums([(self.data, self.model, params, kind, hessian, abs_grad)])[0]
        groups = self.data.groups_of()
        return {name: values[groups].sum(axis=0) for name, values in sums.items()}

    def _inverse_weight(self):
        if self.task_weight_sum is None:
            raise RuntimeError("task_weight_sum must be set before the objective is used.")
        with np.errstate(divide="ignore"):
            return np.where(self.task_weight_sum > 0, 1.0 / self.task_weight_sum, 0.0)

    # The solver evaluates a point for its line search, then needs its gradient and Hessian if
    # it is accepted: asking for all three at once keeps a fit at one pass per iteration.
    def task_values(self, params):
        """Each task's term T_k (data + its tie penalty), (K,)."""
        sums = self.statistics(params, hessian=True)
        return sums["loss"] * self._inverse_weight() + self.penalty_values(params)[0]

    def penalty_values(self, params):
        """Tie penalties of every task and the shared penalty."""
        return self.regulariser.penalty_values(params)

    def task_gradients(self, params):
        """Gradient of every task's term: task parts (K, q), shared parts (K, q)."""
        sums = self.statistics(params, hessian=True)
        tie_task, tie_shared = self.regulariser.task_gradients(params)
        return sums["grad"] * self._inverse_weight()[:, None] + tie_task, tie_shared

    def shared_penalty_gradient(self, params):
        """Gradient of the shared penalty, (p,)."""
        return self.regulariser.shared_penalty_gradient(params)

    def hessian_blocks(self, params, active=None):
        """:class:`~mtif_sklearn.base.ArrowBlocks` of the objective (Lemma A.1)."""
        sums = self.statistics(params, hessian=True)
        data_blocks = sums["hess"] * self._inverse_weight()[:, None, None]
        if not np.all(np.isfinite(data_blocks)):
            raise ValueError("The Hessian overflowed float64 (feature values too large). Scale "
                             "the features, e.g. with dask-ml's StandardScaler.")
        task, coupling, shared = self.regulariser.hessian_blocks(params, active=active)
        return ArrowBlocks(task + data_blocks, coupling, shared)

    def task_sums(self, values):
        """Sums over each task's member rows of ``values`` (dask (n,) or (n, c)) -> (K, ...)."""
        import dask.array as da

        one_column = values.ndim == 1
        values = values[:, None] if one_column else values
        n_tasks, member = self.n_tasks, self.data.member

        def kernel(values, codes, *fold):
            mask = member_mask(member, fold[0] if fold else None, codes.size)
            indicator = csr_matrix((mask.astype(np.float64), (codes, np.arange(codes.size))),
                                   shape=(n_tasks, codes.size))
            return np.asarray(indicator @ values)[None]

        args = [values.rechunk({1: -1}), "ij", self.data.codes, "i"]
        if self.data.fold is not None:
            args += [self.data.fold, "i"]
        sums = da.blockwise(kernel, "ikj", *args, new_axes={"k": n_tasks},
                            adjust_chunks={"i": 1}, concatenate=True, dtype=np.float64,
                            meta=np.empty((0, 0, 0)))
        result = sums.sum(axis=0).compute()
        return result[:, 0] if one_column else result

    def _row_map(self, compute, params, out_columns=None):
        import dask.array as da

        model, labels = self.model, self.data.task_labels

        def kernel(X, codes, weight, *y, params):
            objective = model._objective(TaskData(X, y[0] if y else None, codes, labels,
                                                  weight), weight)
            return compute(objective, params)

        args = [self.data.X, "ij", self.data.codes, "i", self.data.sample_weight, "i"]
        if self.data.y is not None:
            args += [self.data.y, "i"]
        index = "iq" if out_columns else "i"
        extra = {"new_axes": {"q": out_columns}} if out_columns else {}
        return da.blockwise(kernel, index, *args, params=shipped(params), concatenate=True,
                            dtype=np.float64, **extra)

    def row_losses(self, params, rows=None):
        """Per-row losses at one point (lazy dask array over all rows)."""
        _all_rows(rows)
        return self._row_map(lambda objective, p: objective.row_losses(p), params)

    def row_gradients(self, params, rows=None):
        """Per-row loss gradients: task part (lazy dask (n, q)) and None (no shared part)."""
        _all_rows(rows)
        return self._row_map(lambda objective, p: objective.row_gradients(p)[0], params,
                             out_columns=self.n_task_params), None


def _all_rows(rows):
    if rows is not None:
        raise ValueError("On dask rows the row-level methods map over all rows (rows=None).")


# -- fitting and predicting --------------------------------------------------------------------
def fit_dask(model, data, *, task_weight_sum=None, dropped_tasks=(), init=None):
    """``_mtif_fit`` on dask rows: the same Newton solver, its sums computed block by block.

    Parameters
    ----------
    model : MultitaskRidge or MultitaskLogistic
    data : DaskTaskData
    task_weight_sum, dropped_tasks, init
        As in ``_BaseMultitaskLinear._mtif_fit``.

    Returns
    -------
    model : the fitted model
    """
    data.record_labels_on(model)
    n_tasks = data.n_tasks
    objective = DaskLinearObjective(model, data)
    q = objective.n_task_params
    start = init if init is not None else Params(np.zeros((n_tasks, q)), np.zeros(q))
    if task_weight_sum is None:
        # n_k comes with the first Newton pass (its gradient and Hessian are cached).
        task_weight_sum = objective.statistics(start, hessian=True)["weight"]
        check_task_weight_sums(model.tasks_, task_weight_sum)
    model.task_weight_sum_ = np.asarray(task_weight_sum, dtype=np.float64)
    objective.task_weight_sum = model.task_weight_sum_
    active = np.ones(n_tasks, dtype=bool)
    active[np.asarray(dropped_tasks, dtype=np.int64)] = False
    params, n_iter, converged = fit_linear_multitask(
        objective, start, active=active, max_iter=getattr(model, "max_iter", 1),
        tol=getattr(model, "tol", 0.0), task_names=model.tasks_.tolist())
    if not converged:
        warnings.warn(
            f"{type(model).__name__} did not converge in max_iter={model.max_iter} Newton "
            "iterations; increase max_iter or tol, or scale the features.",
            ConvergenceWarning, stacklevel=4)
    model.n_iter_ = n_iter
    model._set_parameters(params, data.X.shape[1])
    return model


def dask_decision_function(model, X, tasks=None):
    """Raw outputs x_i^T theta_k + b_k of dask rows: a lazy dask array (n_samples,)."""
    return _decision_of(model, model._mtif_data(X, None, tasks, reset=False,
                                                unknown=model.unknown_task))


def _decision_of(model, data):
    import dask.array as da

    coef, intercept = model._prediction_parameters()
    return da.blockwise(raw_outputs, "i", data.X, "ij", data.codes, "i", coef=coef,
                        intercept=intercept, concatenate=True, dtype=np.float64,
                        meta=np.empty((0,)))


def _proba_block(raw):
    from scipy.special import expit

    positive = expit(raw)
    return np.column_stack([1.0 - positive, positive])


def _log_proba_block(raw):
    return np.column_stack([-np.logaddexp(0.0, raw), -np.logaddexp(0.0, -raw)])


def dask_predict_proba(model, X, tasks=None):
    """Class probabilities of dask rows: a lazy dask array (n_samples, 2)."""
    raw = dask_decision_function(model, X, tasks)
    return raw.map_blocks(_proba_block, new_axis=1, chunks=(raw.chunks[0], (2,)),
                          dtype=np.float64)


def dask_predict_log_proba(model, X, tasks=None):
    """Log class probabilities of dask rows: a lazy dask array (n_samples, 2)."""
    raw = dask_decision_function(model, X, tasks)
    return raw.map_blocks(_log_proba_block, new_axis=1, chunks=(raw.chunks[0], (2,)),
                          dtype=np.float64)


def dask_predict(model, X, tasks=None):
    """Predictions of dask rows (lazy): targets for a regressor, class labels for a
    classifier."""
    return _predict_of(model, dask_decision_function(model, X, tasks))


def _predict_of(model, raw):
    if not is_classifier(model):
        return raw
    classes = model.classes_
    return raw.map_blocks(lambda values: classes[(values > 0).astype(int)], dtype=classes.dtype)


def _score_parts(y, predicted, weight, codes, *, n_groups, classifier):
    """Per group (task code + 1; 0: the shared model) of a block: for a regressor (rows, sum w,
    weighted mean of y, sum w (y - mean)^2, sum w (y - predicted)^2), for a classifier (rows,
    sum w, sum w [correct])."""
    group = codes + 1
    rows = np.bincount(group, minlength=n_groups).astype(np.float64)
    total = np.bincount(group, weights=weight, minlength=n_groups)
    if classifier:
        correct = np.bincount(group, weights=weight * (y == predicted), minlength=n_groups)
        return np.column_stack([rows, total, correct])[None]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nan_to_num(np.bincount(group, weights=weight * y, minlength=n_groups) / total)
    spread = np.bincount(group, weights=weight * (y - mean[group]) ** 2, minlength=n_groups)
    residual = np.bincount(group, weights=weight * (y - predicted) ** 2, minlength=n_groups)
    return np.column_stack([rows, total, mean, spread, residual])[None]


def _combined_scores(parts, classifier):
    """Scores of every group from the blocks' parts: accuracy, or R^2 whose denominator is
    combined over the blocks with the pairwise update of Chan et al. (no cancellation when y
    is far from 0). NaN for a group without rows (or, R^2, with fewer than two)."""
    rows = parts[..., 0].sum(axis=0)
    if classifier:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(rows > 0, parts[..., 2].sum(axis=0) / parts[..., 1].sum(axis=0),
                            np.nan)
    n_groups = parts.shape[1]
    total, mean, spread = np.zeros(n_groups), np.zeros(n_groups), np.zeros(n_groups)
    for _, block_total, block_mean, block_spread, _ in parts.transpose(0, 2, 1):
        merged = total + block_total
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = block_mean - mean
            share = np.where(merged > 0, block_total / merged, 0.0)
            spread = spread + block_spread + np.where(
                merged > 0, delta ** 2 * total * block_total / merged, 0.0)
        mean, total = mean + delta * share, merged
    residual = parts[..., 4].sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        # scikit-learn's r2_score (force_finite=True): 1 if perfect, 0 if y is constant.
        scores = np.where(spread > 0, 1.0 - residual / spread,
                          np.where(residual == 0, 1.0, 0.0))
    return np.where(rows >= 2, scores, np.nan)


def _parts(model, X, y, tasks, sample_weight):
    import dask.array as da

    data = model._mtif_data(X, None, tasks, reset=False, unknown=model.unknown_task)
    predicted = _predict_of(model, _decision_of(model, data))
    chunks = predicted.chunks[0]
    y = row_array(y, chunks, "y")
    weight = (da.ones(sum(chunks), chunks=(chunks,)) if sample_weight is None
              else row_array(sample_weight, chunks, "sample_weight", dtype=np.float64))
    classifier = is_classifier(model)
    n_groups, width = len(model.tasks_) + 1, 3 if classifier else 5
    parts = da.blockwise(_score_parts, "igz", y, "i", predicted, "i", weight, "i",
                         data.codes, "i", new_axes={"g": n_groups, "z": width},
                         adjust_chunks={"i": 1}, n_groups=n_groups, classifier=classifier,
                         dtype=np.float64, meta=np.empty((0, 0, 0))).compute()
    return parts, classifier


def dask_score(model, X, y, tasks=None, sample_weight=None):
    """R^2 (regressor) or accuracy (classifier) of dask rows, reduced block by block."""
    parts, classifier = _parts(model, X, y, tasks, sample_weight)
    # Every (block, group) part as a block of one pooled group: the same pairwise combination.
    return float(_combined_scores(parts.reshape(-1, 1, parts.shape[-1]), classifier)[0])


def dask_score_per_task(model, X, y, tasks=None, sample_weight=None):
    """``score_per_task`` of dask rows: one pass, the per-task parts combined by block."""
    parts, classifier = _parts(model, X, y, tasks, sample_weight)
    scores = _combined_scores(parts, classifier)
    present = parts[..., 0].sum(axis=0) > 0
    found = {}
    for group in [*range(1, len(scores)), 0]:  # tasks_ order, then the shared model's rows
        if present[group]:
            label = model.tasks_[group - 1] if group else "<shared>"
            found[label.item() if hasattr(label, "item") else label] = float(scores[group])
    return found
