"""The outputs of MTIFInfluence: the effects matrix, transform, sample_influence, containers."""

import numpy as np
from sklearn.utils._set_output import _get_output_config
from sklearn.utils.validation import check_is_fitted, validate_data

from ..backend import to_numpy
from ._input import check_dense, host_input
from ._strategy import map_chunks
from ._summaries import INFLUENCE_MEMORY_BUDGET, RowSource, map_row_chunks

__all__ = ["InfluenceOutputsMixin"]


class InfluenceOutputsMixin:
    """Row-level outputs of a fitted MTIFInfluence (chunked maps over the fitted splits)."""

    # -- the chunked row maps ------------------------------------------------------------------
    def _training_sources(self, splits):
        """The training rows of every split, by output row (train positions without cv)."""
        return [RowSource(split, split.problem.train, split.problem.train.row_weights,
                          np.arange(split.train_rows.size) if self.cv is None
                          else split.train_rows) for split in splits]

    def _row_map(self, sources, n_out, compute, reduce, per_row=None, desc=None):
        """:func:`map_row_chunks` with this estimator's chunking, threads and progress.

        ``per_row``: None (effects on every task), an int (effects on that many evaluation
        rows) or "scores" (one number per row).
        """
        strategy = sources[0].split.strategy
        size = self.batch_size or (strategy.score_chunk_size() if per_row == "scores"
                                   else strategy.row_chunk_size(per_row))
        n_jobs = self.n_jobs if sources[0].split.problem.backend.is_numpy else 1
        return map_row_chunks(sources, n_out, size, compute, reduce, n_jobs=n_jobs,
                              verbose=self.verbose, desc=desc)

    def _effects_matrix(self, sources, n_out, n_tasks):
        """Effects (n_out, K) of removing every row of the sources, averaged over them."""
        effects = np.empty((n_out, n_tasks))
        if len(sources) == 1:  # one split: the GEMM writes straight into the output
            source = sources[0]
            strategy, backend = source.split.strategy, source.split.problem.backend

            def chunk(rows):  # output rows are the objective's rows here
                part = strategy.row_effects(source.objective, rows, source.weights[rows],
                                            out=effects[rows] if backend.is_numpy else None)
                if not backend.is_numpy:
                    effects[rows] = to_numpy(part)
                # checked while the chunk is in cache (NaN for tasks without validation)
                source.split.problem.finish(effects[rows], allow_nan=strategy.allows_nan)

            map_chunks(chunk, n_out, self.batch_size or strategy.row_chunk_size(),
                       n_jobs=self.n_jobs if backend.is_numpy else 1, verbose=self.verbose,
                       desc="MTIF row effects")
            return effects

        def reduce(rows, mean):
            effects[rows] = mean

        self._row_map(sources, n_out, lambda src, local: src.split.problem.finish(
            src.split.strategy.row_effects(src.objective, local, src.weights[local]),
            allow_nan=src.split.strategy.allows_nan), reduce, desc="MTIF row effects")
        return effects

    # -- outputs -----------------------------------------------------------------------------
    def set_output(self, *, transform=None):
        """Choose the container of ``fit_transform``, ``transform`` and ``sample_influence``.

        Parameters
        ----------
        transform : {"default", "pandas", "polars"}, default=None
            "pandas" / "polars": DataFrames whose columns are the task labels (pandas: indexed
            by the rows of ``X`` they belong to); "default": arrays; None: unchanged.

        Returns
        -------
        self : MTIFInfluence
        """
        if transform is not None:
            if transform not in ("default", "pandas", "polars"):
                raise ValueError("transform must be 'default', 'pandas' or 'polars'; got "
                                 f"{transform!r}.")
            self._sklearn_output_config = {**getattr(self, "_sklearn_output_config", {}),
                                           "transform": transform}
        return self

    def _wrap(self, effects, index=None, columns=None):
        """NumPy (or CuPy for CuPy input with backend="auto"), or a DataFrame if configured."""
        container = _get_output_config("transform", self)["dense"]
        names = self.get_feature_names_out() if columns is None else columns
        if container == "pandas":
            import pandas as pd

            return pd.DataFrame(effects, index=index, columns=names)
        if container == "polars":
            import polars as pl

            return pl.DataFrame(effects, schema=[str(name) for name in names], orient="row")
        if self._return_xp:
            from ..backend import ArrayBackend

            return ArrayBackend(self._backend_name).asarray(effects)
        return effects

    def _row_index(self, rows):
        """Index of output rows: the input DataFrame's index, else the row positions in X."""
        return rows if self._index is None else self._index[rows]

    @property
    def influence_(self):
        """ndarray of shape (n_train, n_tasks): the data-level effects (see the class
        docstring); not stored when larger than the ``store_influence`` budget."""
        if "_influence" not in self.__dict__:
            raise AttributeError("influence_ exists only after fit.")
        if self._influence is None:
            n_rows = self.train_indices_.size
            why = ("store_influence=False" if self.store_influence is False else
                   f"{n_rows} rows x {len(self.tasks_)} tasks take "
                   f"{n_rows * len(self.tasks_) * 8 / 2**30:.3g} GiB, more than the "
                   f"store_influence='auto' budget of {INFLUENCE_MEMORY_BUDGET / 2**30:g} GiB")
            raise AttributeError(
                f"influence_ was not stored ({why}). Use row_scores() or harmful_rows() (they "
                "never form it), fit_transform() to get it once, or store_influence=True.")
        return self._influence

    def fit_transform(self, X, y, tasks=None, sample_weight=None, X_val=None, y_val=None,
                      tasks_val=None):
        """Fit and return the data-level effects of the training rows.

        Parameters
        ----------
        X, y, tasks, sample_weight, X_val, y_val, tasks_val
            As in :meth:`fit`.

        Returns
        -------
        influence : ndarray or DataFrame of shape (n_train, n_tasks)
            ``influence_``: rows are ``X``'s rows at ``train_indices_`` (every row with
            ``cv``), columns ``tasks_``. Computed even when too large to keep as
            ``influence_`` (``store_influence``).
        """
        self.fit(X, y, tasks=tasks, sample_weight=sample_weight, X_val=X_val, y_val=y_val,
                 tasks_val=tasks_val)
        effects = self._influence
        if effects is None:
            effects = self._effects_matrix(self._training_sources(self._splits),
                                           self.train_indices_.size, len(self.tasks_))
        return self._wrap(effects, index=self._row_index(self.train_indices_))

    def _objective_of(self, split, X, y, tasks):
        model = split.problem.model
        return model._mtif_objective(model._mtif_data(X, to_numpy(y), tasks, reset=False))

    def transform(self, X, y=None, tasks=None):
        """Effects of removing these rows (as if each had weight 1 in the training objective).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows (with the task column when the model uses one).
        y : array-like of shape (n_samples,)
            Their targets (the effect depends on the row's loss gradient). Required; the
            default None only exists so that a missing ``y`` gets a clear error.
        tasks : array-like of shape (n_samples,), default=None
            Task of every row.

        Returns
        -------
        effects : ndarray or DataFrame of shape (n_samples, n_tasks)
            With ``cv``: averaged over the fold models.
        """
        check_is_fitted(self, "tasks_")
        if getattr(self._splits, "is_dask", False):  # fitted on dask rows: lazy, by block
            return self._splits.transform(self, X, y, tasks)
        X = host_input(X)
        check_dense(X, "X")
        validate_data(self, X, skip_check_array=True, reset=False)
        if y is None:
            raise ValueError("MTIFInfluence.transform requires y: a row's influence depends on "
                             "its loss gradient. Call transform(X, y, tasks=...).")
        sources = []
        for split in self._splits:
            objective = self._objective_of(split, X, y, tasks)
            sources.append(RowSource(split, objective, objective.row_weights,
                                     np.arange(len(objective.codes))))
        effects = self._effects_matrix(sources, len(sources[0].out_rows), len(self.tasks_))
        return self._wrap(effects, index=getattr(X, "index", None))

    def _summed_effects(self, X, y, tasks=None, sample_weight=None):
        """``(transform(X, y, tasks) * sample_weight[:, None]).sum(axis=0)``, (K,), without the
        (rows, K) effects (first order: O(q + p) per row); NaN where a task has no validation
        rows. The selectors' predicted change of the validation losses."""
        check_is_fitted(self, "tasks_")
        if getattr(self._splits, "is_dask", False):
            raise ValueError("_summed_effects is for rows in memory; on dask rows the selector "
                             "sums gradients block by block (selection._dask).")
        X = host_input(X)
        check_dense(X, "X")
        total = np.zeros(len(self.tasks_))
        for split in self._splits:
            objective, strategy = self._objective_of(split, X, y, tasks), split.strategy
            scale = (np.ones(len(objective.codes)) if sample_weight is None
                     else np.asarray(sample_weight, dtype=np.float64))
            n_rows, size = len(objective.codes), self.batch_size or strategy.score_chunk_size()
            summed = np.zeros(len(self.tasks_))
            for start in range(0, n_rows, size):
                rows = np.arange(start, min(start + size, n_rows))
                summed += strategy.summed_row_effects(objective, rows,
                                                      objective.row_weights[rows], scale[rows])
            total += split.problem.finish(summed[None], allow_nan=True)[0]
        return total / len(self._splits)

    def sample_influence(self, X_eval, y_eval, tasks=None):
        """Effect of every training row on the loss of every evaluation row (paper Figure 1).

        Parameters
        ----------
        X_eval : array-like of shape (n_eval, n_features)
            Evaluation rows.
        y_eval : array-like of shape (n_eval,)
            Their targets.
        tasks : array-like of shape (n_eval,), default=None
            Task of every evaluation row.

        Returns
        -------
        effects : ndarray or DataFrame of shape (n_train, n_eval)
            ``effects[i, e]``: change of row e's loss when training row i is removed
            (positive: row i helps row e), estimated by ``method``; with ``cv`` averaged over
            the folds where row i was trained.
        """
        check_is_fitted(self, "tasks_")
        if getattr(self._splits, "is_dask", False):  # fitted on dask rows
            return self._splits.sample_influence(self, X_eval, y_eval, tasks)
        X_eval, y_eval = host_input(X_eval), host_input(y_eval)
        evaluation = {id(split): self._objective_of(split, X_eval, y_eval, tasks)
                      for split in self._splits}
        n_eval = len(next(iter(evaluation.values())).codes)
        effects = np.full((self.train_indices_.size, n_eval), np.nan)

        def reduce(rows, mean):
            if mean is not None:
                effects[rows] = mean

        self._row_map(self._training_sources(self._splits), self.train_indices_.size,
                      lambda src, local: to_numpy(src.split.strategy.sample_effects(
                          evaluation[id(src.split)], local)), reduce, per_row=n_eval,
                      desc="MTIF sample effects")
        columns = np.asarray([f"eval{i}" for i in range(n_eval)], dtype=object)
        return self._wrap(effects, index=self._row_index(self.train_indices_), columns=columns)

    def get_feature_names_out(self, input_features=None):
        """Output column names: one per task, ``tasks_`` as strings.

        Parameters
        ----------
        input_features : ignored
            Present for API consistency.

        Returns
        -------
        names : ndarray of str objects, shape (n_tasks,)
        """
        check_is_fitted(self, "tasks_")
        return np.asarray([str(t) for t in self.tasks_], dtype=object)
