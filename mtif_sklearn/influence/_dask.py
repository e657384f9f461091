"""MTIFInfluence on dask rows: the factor on the client, every row-level output a map over blocks.

Influence needs, per split, the Hessian blocks and the validation gradients (per-task sums: one
pass over the blocks, shared with the fit's cached sums, see :mod:`mtif_sklearn.linear._dask`),
the arrow factor and the solves ``H^-1 v_k`` (on the client, K q^2 + p^2 numbers). Given those,
a row's effects depend on that row alone (Proposition 1), so

- ``influence_`` is a lazy dask array (n, K) computed block by block (write it to zarr with
  ``influence_.to_zarr(...)``, or to parquet through ``dask.dataframe.from_dask_array``);
- :meth:`row_scores` is a lazy dask array (n,) at O(q + p) per row;
- :meth:`harmful_rows` keeps each block's most negative rows per task and merges them;
- ``task_influence_`` comes from the per-task gradient sums (a blockwise reduction) on the
  client.

Validation rows are either given (``X_val``: a dask or an in-memory data set) or held out of X
by :func:`~mtif_sklearn._dask.assign_folds` (stratified by task, drawn block by block: the
client holds blocks x K counts, never the n rows); ``train_indices_``, ``val_indices_`` and
``folds_`` are lazy dask arrays of row numbers. Every split's models come from the same passes
(the block sums are kept apart by fold), so ``cv=5`` costs about the passes of one fit.
"""


import numpy as np
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils.validation import check_is_fitted, validate_data

from .._dask import (
    TRAIN_ONLY,
    DaskTaskData,
    assign_folds,
    block_index,
    block_starts,
    columns_of,
    member_mask,
    require_dask_model,
    shipped,
    unpack_block,
)
from .._tasks import TaskData
from ..backend import ArrayBackend, single_blas_thread
from ._first_order import FirstOrder, scores_from_vectors
from ._input import check_validation_args
from ._problem import STATIONARITY_TOL, InfluenceProblem, out_of_fold_loss
from ._strategy import CHUNK_NUMBERS
from ._summaries import (
    RowSource,
    map_row_chunks,
    merge_most_negative,
    most_negative,
    target_task_weights,
)

__all__ = ["DaskInfluence", "DaskInfluenceProblem", "fit_dask", "fit_state"]


def _dask_rows_of(objective):
    """The DaskTaskData of a dask objective (None for an in-memory one)."""
    data = getattr(objective, "data", None)
    return data if isinstance(data, DaskTaskData) else None


class DaskInfluenceProblem(InfluenceProblem):
    """An :class:`InfluenceProblem` whose training (and maybe validation) rows are dask blocks.

    The Hessian blocks come from the training objective's block sums (cached from the fit where
    possible); V_k and the validation gradients from one blockwise pass over the validation
    rows (or the in-memory computation when ``X_val`` is in memory). Everything else -- the
    factor, ``target_solves``, ``finish`` -- is the in-memory code.
    """

    def _validation_sums(self):
        if _dask_rows_of(self.val) is None:  # in-memory validation rows
            return super()._validation_sums()
        # V_k is a plain mean over task k's validation rows: unweighted sums ("unit").
        sums = self.val.statistics(self.params, kind="unit")
        counts = sums["count"]
        with np.errstate(invalid="ignore", divide="ignore"):
            validation_loss = np.where(counts > 0, sums["loss"] / counts, np.nan)
        return counts, validation_loss, sums["grad"], None

    def training_weight_per_task(self):
        """Each task's summed row weights w_i / n_k over the training rows (1 when these are
        the rows the model was fitted on, eq. 5)."""
        sums = self.train.statistics(self.params, hessian=True)
        return sums["weight"] / self.model.task_weight_sum_

    def relative_gradient_norm(self):
        """||grad L(params)|| / (sum of the row-gradient magnitudes): 0 at an exact fit."""
        task_grad, shared_parts = self.train.task_gradients(self.params)
        shared = shared_parts.sum(axis=0) + self.train.shared_penalty_gradient(self.params)
        norm = np.sqrt(np.sum(task_grad ** 2) + np.sum(shared ** 2))
        sums = self.train.statistics(self.params, hessian=True, abs_grad=True)
        scale = np.sqrt(np.sum((sums["abs_grad"] / self.model.task_weight_sum_[:, None]) ** 2))
        return float(norm / max(scale, np.finfo(np.float64).tiny))


class _ShippedProblem:
    """What a worker needs of a split to compute row effects: the parameters, the factor and the
    validation solves (no rows, no dask arrays)."""

    finish = InfluenceProblem.finish

    def __init__(self, problem):
        self.params, self.factor = problem.params, problem.factor
        self.z, self.x_shared = problem.z, problem.x_shared
        self.backend, self.n_tasks = problem.backend, problem.n_tasks
        self.val_missing, self.task_names = problem.val_missing, problem.task_names


class _DaskSplit:
    """One fitted model of MTIFInfluence on dask rows: its training rows (``member``), the
    influence problem and the first-order strategy."""

    def __init__(self, member, problem):
        self.member, self.problem = member, problem
        self.strategy = FirstOrder(problem)
        self.inverse_weight = 1.0 / problem.model.task_weight_sum_

    def shipped_strategy(self):
        return FirstOrder(_ShippedProblem(self.problem))


def _rows_kernel(*args, has_y, has_fold, context):
    """One block of a row-level output, averaged over the splits that trained each row."""
    with single_blas_thread(np):  # per-row products: one BLAS thread per dask thread
        return _block_rows(*args, has_y=has_y, has_fold=has_fold, context=context)


def _block_rows(*args, has_y, has_fold, context):
    X, codes, weight, y, fold, index = unpack_block(args, has_y, has_fold)
    model, labels, splits = context["model"], context["labels"], context["splits"]
    what, m = context["what"], codes.size
    objective = model._objective(TaskData(X, y, codes, labels, weight), weight)
    trained = [member_mask(split["member"], fold, m) for split in splits]
    held = np.any(trained, axis=0)
    out = np.flatnonzero(held | context["all_rows"])
    position = np.full(m, -1, dtype=np.int64)
    position[out] = np.arange(out.size)
    sources = []
    for split, mask in zip(splits, trained, strict=True):
        rows = np.flatnonzero(mask)
        sources.append(RowSource((split, rows), objective, weight * split["inverse"][codes],
                                 position[rows]))

    def compute(source, local):
        (split, rows), objective = source.split, source.objective
        rows = rows[local]
        weights = source.weights[rows]
        if what == "scores":
            return scores_from_vectors(objective, rows, weights, split["params"],
                               *split["payload"])[:, None]
        strategy = split["payload"]
        effects = strategy.row_effects(objective, rows, weights, columns=context["columns"])
        return strategy.problem.finish(effects, allow_nan=True, columns=context["columns"])

    global_rows = block_starts(context["chunks"])[index] + out
    if what == "harmful":
        n_keep = context["n_rows"]
        parts = map_row_chunks(sources, out.size, context["chunk_size"], compute,
                               lambda rows, mean: most_negative(
                                   np.full((rows.size, len(context["columns"])), np.nan)
                                   if mean is None else mean, global_rows[rows], n_keep),
                               n_jobs=1)
        labels_kept, values = (merge_most_negative(parts, n_keep) if parts else
                               most_negative(np.zeros((0, len(context["columns"]))),
                                             global_rows, n_keep))
        return np.concatenate([labels_kept.ravel().astype(np.float64), values.ravel()])[None]
    width = 1 if what == "scores" else len(context["columns"])
    result = np.full((out.size, width), np.nan)

    def reduce(rows, mean):
        if mean is not None:
            result[rows] = mean

    map_row_chunks(sources, out.size, context["chunk_size"], compute, reduce, n_jobs=1)
    return result[:, 0] if what == "scores" else result


class DaskInfluence:
    """The fitted state of MTIFInfluence on dask rows (stored as its ``_splits``)."""

    is_dask = True

    def __init__(self, data, splits, group_counts, *, crossfit):
        self.data, self.splits, self.crossfit = data, splits, crossfit
        self.group_counts = group_counts
        self.model = splits[0].problem.model

    # -- shapes ------------------------------------------------------------------------------
    def out_chunks(self, data=None, all_rows=False):
        """Output rows per block: the rows trained in some split (every row of ``data``)."""
        if data is not None or all_rows or self.group_counts is None:
            return (data or self.data).chunks
        groups = np.unique(np.concatenate([self.data.groups_of(split.member)
                                           for split in self.splits]))
        return tuple(int(n) for n in self.group_counts[:, groups].sum(axis=1))

    def _map_rows(self, what, splits_context, *, data=None, all_rows=False, columns=None,
                  chunk_size=None, n_rows=None):
        import dask.array as da

        rows = self.data if data is None else data
        chunks = rows.chunks
        context = {"model": self.model, "labels": rows.task_labels, "splits": splits_context,
                   "what": what, "all_rows": all_rows, "columns": columns,
                   "chunks": chunks, "chunk_size": chunk_size, "n_rows": n_rows}
        inputs = rows.blockwise_inputs() + [block_index(chunks), "i"]
        options = {"has_y": rows.y is not None, "has_fold": rows.fold is not None,
                   "context": shipped(context), "align_arrays": False, "concatenate": True,
                   "dtype": np.float64}
        if what == "harmful":
            width = 2 * len(columns) * n_rows
            return da.blockwise(_rows_kernel, "iz", *inputs, new_axes={"z": width},
                                adjust_chunks={"i": 1}, meta=np.empty((0, 0)), **options)
        out_chunks = self.out_chunks(data, all_rows)
        if what == "scores":
            return da.blockwise(_rows_kernel, "i", *inputs, adjust_chunks={"i": out_chunks},
                                meta=np.empty((0,)), **options)
        return da.blockwise(_rows_kernel, "ik", *inputs, new_axes={"k": len(columns)},
                            adjust_chunks={"i": out_chunks}, meta=np.empty((0, 0)), **options)

    def _effects_context(self, members=None):
        return [{"member": split.member if members is None else members,
                 "inverse": split.inverse_weight, "params": split.problem.params,
                 "payload": split.shipped_strategy()} for split in self.splits]

    # -- outputs -----------------------------------------------------------------------------
    def influence(self, *, all_rows=False):
        """The effects (n_out, K) as a lazy dask array (rows: ``train_indices_``)."""
        n_tasks = self.splits[0].problem.n_tasks
        strategy = self.splits[0].strategy
        return self._map_rows("effects", self._effects_context(), all_rows=all_rows,
                              columns=np.arange(n_tasks),
                              chunk_size=strategy.row_chunk_size())

    def scores(self, targets, task_weights, *, all_rows=False):
        """Lazy row scores (see :meth:`row_scores`)."""
        context = []
        for split in self.splits:
            u, v = split.strategy._score_vectors(
                target_task_weights(split.problem.val_counts, targets, task_weights))
            context.append({"member": split.member, "inverse": split.inverse_weight,
                            "params": split.problem.params, "payload": (u, v)})
        q, p = self.splits[0].problem.factor.shape[1:]
        return self._map_rows("scores", context, all_rows=all_rows,
                              chunk_size=max(1, CHUNK_NUMBERS // (2 * q + p + 2)))

    def row_scores(self, influence, target_tasks=None, task_weights="size"):
        """``MTIFInfluence.row_scores`` on dask rows: a lazy dask array (n_train,)."""
        check_is_fitted(influence, "tasks_")
        targets = influence._targets(target_tasks, task_weights)
        return self.scores(targets, task_weights)

    def harmful_rows(self, influence, n_rows=10, target_tasks=None):
        """``MTIFInfluence.harmful_rows`` on dask rows: each block keeps its ``n_rows`` most
        negative rows per target task, the client merges the blocks' lists."""
        check_is_fitted(influence, "tasks_")
        targets = influence._targets(target_tasks)
        q, p = self.splits[0].problem.factor.shape[1:]
        # Chunks of rows sized for the target columns only (not all K tasks' effects).
        packed = self._map_rows("harmful", self._effects_context(), columns=targets,
                                chunk_size=max(1, CHUNK_NUMBERS // (q + p + 2 * len(targets))),
                                n_rows=n_rows).compute()
        size = len(targets) * n_rows
        parts = [(block[:size].reshape(len(targets), n_rows).astype(np.int64),
                  block[size:].reshape(len(targets), n_rows)) for block in packed]
        rows, effects = merge_most_negative(parts, n_rows)
        found = {}
        for column, task in enumerate(targets):
            keep = rows[column] >= 0
            found[influence.tasks_[task].item()] = (rows[column, keep], effects[column, keep])
        return found

    def transform(self, influence, X, y=None, tasks=None):
        """``MTIFInfluence.transform`` of dask rows: a lazy dask array (n, K), every row's
        effect as if it had weight 1 in the training objective, averaged over the splits."""
        check_is_fitted(influence, "tasks_")
        if y is None:
            raise ValueError("MTIFInfluence.transform requires y: a row's influence depends on "
                             "its loss gradient. Call transform(X, y, tasks=...).")
        validate_data(influence, columns_of(X), skip_check_array=True, reset=False)
        rows = self.model._mtif_data(X, y, tasks, reset=False)
        n_tasks = self.splits[0].problem.n_tasks
        return self._map_rows("effects", self._effects_context(members=("all",)), data=rows,
                              columns=np.arange(n_tasks),
                              chunk_size=self.splits[0].strategy.row_chunk_size())

    def sample_influence(self, influence, X_eval, y_eval, tasks=None):
        raise NotImplementedError(
            "sample_influence is not available on dask rows: it is n_train x n_eval. Compute "
            "influence_ (per task) or fit MTIFInfluence on an in-memory sample of the rows.")


def _index_array(fold, chunks, groups, group_counts):
    """Lazy row numbers of X whose fold group is in ``groups`` (a dask int64 array)."""
    import dask.array as da

    starts = block_starts(chunks)
    codes = [TRAIN_ONLY if g == 0 else g - 1 for g in groups]

    def kernel(fold, index):
        return starts[int(index[0])] + np.flatnonzero(np.isin(fold, codes))

    out_chunks = tuple(int(n) for n in group_counts[:, groups].sum(axis=1))
    return da.blockwise(kernel, "i", fold, "i", block_index(chunks), "i",
                        adjust_chunks={"i": out_chunks}, align_arrays=False, dtype=np.int64,
                        meta=np.empty((0,), dtype=np.int64))


def fit_dask(influence, X, y, tasks=None, sample_weight=None, X_val=None, y_val=None,
             tasks_val=None):
    """``MTIFInfluence.fit`` on dask rows (see the module docstring)."""
    influence._validate_params()
    if y is None:
        raise ValueError("MTIFInfluence requires y: influence depends on every row's loss "
                         "gradient, so fit(X, y, ...) needs the targets.")
    if influence.method != "first_order":
        raise ValueError(
            "MTIFInfluence(method='newton') is not available on dask rows (its row-level "
            "Newton steps need every row's curvature against the factor per row). Use "
            "method='first_order', or fit on an in-memory sample.")
    if influence.backend == "cupy":
        raise ValueError("backend='cupy' is not available on dask rows: the blocks are "
                         "computed on the workers and the factor (K q^2 + p^2 numbers) on the "
                         "client's CPU. Use backend='auto' or 'numpy'.")
    frozen = isinstance(influence.estimator, FrozenEstimator)
    template = influence.estimator.estimator if frozen else clone(influence.estimator)
    require_dask_model(template)
    validate_data(influence, columns_of(X), skip_check_array=True, reset=True)
    data = template._mtif_data(X, y, tasks, sample_weight, reset=not frozen)
    group_counts = None
    check_validation_args(influence.cv, frozen, X_val, y_val, tasks_val)
    if X_val is not None:
        members = [("all",)]
    else:
        folds = assign_folds(data, influence.cv,
                             validation_fraction=influence.validation_fraction,
                             random_state=influence.random_state)
        data, group_counts = data.with_folds(folds.fold, folds.n_folds), folds.group_counts
        members = [("train", f) for f in range(folds.n_folds)]
    state = fit_state(influence.estimator, data, members, group_counts,
                      damping=influence.damping, crossfit=influence.cv is not None,
                      frozen=template if frozen else None,
                      validation=(X_val, y_val, tasks_val) if X_val is not None else None)
    if frozen:
        _check_frozen(state.splits[0].problem)
    estimator = (influence.estimator if frozen else state.model if not state.crossfit
                 else state.full_model)
    _set_fitted_state(influence, state, estimator, data, group_counts)
    return influence


def fit_state(estimator, data, members, group_counts, *, damping, crossfit, frozen=None,
              validation=None):
    """Fit the model of every split and build its influence problem: a :class:`DaskInfluence`.

    Parameters
    ----------
    estimator : estimator
        Cloned and fitted on every split's training rows (unless ``frozen``).
    data : DaskTaskData
        The rows, with their folds when validation rows are held out of them.
    members : list of tuple
        Training rows of every split (``("all",)`` or ``("train", f)``); validated on the
        rows ``("val", f)``, or on ``validation`` = (X_val, y_val, tasks_val) when given.
    group_counts : ndarray or None
        Rows per block and fold group (from :func:`~mtif_sklearn._dask.assign_folds`).
    damping : float
    crossfit : bool
        Whether the outputs average over the splits (``cv``); then a model of all rows is
        fitted alongside the splits' models (``state.full_model``).
    frozen : fitted estimator, default=None
        The model of the (single) split, already fitted.
    """
    from ..linear._dask import fit_together

    # Every fold's model from the same passes: the block sums are kept per fold group (ridge:
    # one pass for all), and the fits run together (logistic: one pass per Newton step of all).
    together = members + ([("all",)] if crossfit and frozen is None else [])
    models = ([frozen] if frozen is not None else fit_together(
        [clone(estimator) for _ in together], [data.rows(member) for member in together]))
    full_model = models.pop() if len(together) > len(members) else None
    if validation is not None:
        rows_val = [models[0]._mtif_data(*validation, reset=False)] * len(models)
    else:
        rows_val = [data.rows(("val", f)) for f in range(len(models))]
    _prefetch(data, models, members, rows_val, frozen is not None)
    backend = ArrayBackend("numpy")
    splits = [_DaskSplit(member, DaskInfluenceProblem(model, data.rows(member), val,
                                                      damping=damping, backend=backend))
              for member, model, val in zip(members, models, rows_val, strict=True)]
    state = DaskInfluence(data, splits, group_counts, crossfit=crossfit)
    state.full_model = full_model  # with crossfit: the model of every row (fitted alongside)
    return state


def _prefetch(data, models, members, validation, frozen):
    """One pass for every split's training sums and validation sums at its fitted point."""
    from ..linear._dask import evaluate_sums

    requests = []
    for member, model, val in zip(members, models, validation, strict=True):
        params = model._mtif_params()
        requests.append((data.rows(member), model, params, "sample", True, frozen))
        if isinstance(val, DaskTaskData):
            requests.append((val, model, params, "unit", False, False))
    evaluate_sums(requests)


def _check_frozen(problem):
    """A frozen model must be given the rows and weights it was fitted on (the in-memory
    checks of ``MTIFInfluence._check_frozen_rows``, from block sums)."""
    names = np.asarray(problem.task_names, dtype=object)
    per_task = problem.training_weight_per_task()
    mismatch = np.flatnonzero(~np.isclose(per_task, 1.0, rtol=1e-8, atol=0.0))
    if mismatch.size:
        raise ValueError(
            f"The rows (or sample_weight) passed to fit are not the ones the model was "
            f"fitted on: task(s) {names[mismatch].tolist()[:5]} carry "
            f"{per_task[mismatch][:5].round(6).tolist()} of their training weight. "
            "With a FrozenEstimator pass X, y, tasks and sample_weight exactly as fitted.")
    relative = problem.relative_gradient_norm()
    if relative > STATIONARITY_TOL:
        raise ValueError(
            f"The objective's gradient at the frozen parameters is {relative:.3g} of its scale "
            f"(a fitted minimum gives ~0; tolerance {STATIONARITY_TOL:g}): these are not the "
            "rows the model was fitted on (or it is not at a minimum). With a FrozenEstimator "
            "pass X, y, tasks and sample_weight exactly as fitted.")


def _set_fitted_state(influence, state, estimator, data, group_counts):
    """The fitted attributes of MTIFInfluence (as ``_set_fitted_state`` sets them in memory)."""
    import dask.array as da

    splits = state.splits
    n_tasks = splits[0].problem.n_tasks
    # The task level as in memory: now, unless store_influence=False (then on first access).
    task_level = (influence._task_level_of(splits, n_tasks)
                  if influence.store_influence is not False
                  and influence._task_level_fits(n_tasks, len(splits)) else None)
    influence._backend_name, influence._return_xp = "numpy", False
    influence._splits, influence._index, influence._n_samples = state, None, data.n_samples
    influence._influence = state.influence()  # lazy: costs nothing until computed
    influence._task_level = task_level
    influence.estimator_ = estimator
    influence.tasks_ = np.asarray(data.task_labels)
    influence.schur_condition_ = max(split.problem.schur_condition for split in splits)
    influence.__dict__.pop("folds_", None)
    everything = da.arange(data.n_samples, chunks=(data.chunks,))
    if not state.crossfit:
        if group_counts is None:  # X_val given: every row trained
            influence.train_indices_, influence.val_indices_ = everything, None
        else:
            influence.train_indices_ = _index_array(data.fold, data.chunks, [0], group_counts)
            influence.val_indices_ = _index_array(data.fold, data.chunks, [1], group_counts)
        influence.validation_loss_ = splits[0].problem.validation_loss
        return
    influence.train_indices_, influence.val_indices_ = everything, None
    n_groups = data.n_groups
    influence.folds_ = [
        (_index_array(data.fold, data.chunks, [g for g in range(n_groups) if g != f + 1],
                      group_counts),
         _index_array(data.fold, data.chunks, [f + 1], group_counts))
        for f in range(len(splits))]
    influence.validation_loss_ = out_of_fold_loss(splits, n_tasks)

