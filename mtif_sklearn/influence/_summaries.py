"""Summaries of a fitted MTIFInfluence streamed over chunks, never forming n x K (or K x K).

Row-level effects are averaged over the splits (folds) whose model a row trained; the chunked
map here averages each chunk of rows over the splits, then reduces it (a weighted score, the
most negative rows per task, or a block of the stored matrix), so memory stays at one chunk.
"""

from dataclasses import dataclass

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .._tasks import target_task_codes
from ._strategy import map_chunks

__all__ = ["INFLUENCE_MEMORY_BUDGET", "InfluenceSummariesMixin", "RowSource", "map_row_chunks",
           "map_task_chunks", "merge_most_negative", "most_negative"]

#: ``store_influence="auto"`` keeps ``influence_`` (n x K) and ``task_influence_`` (K x K, times
#: the folds) while each takes at most this many bytes (1 GiB = 134 million float64 numbers).
INFLUENCE_MEMORY_BUDGET = 2**30


@dataclass
class RowSource:
    """Rows of one split whose removal is measured: the objective holding them, each row's weight
    in the training objective, and the output row of each of them."""

    split: object
    objective: object
    weights: np.ndarray
    out_rows: np.ndarray


def map_row_chunks(sources, n_out, chunk_size, compute, reduce, *, n_jobs=None, verbose=0,
                   desc=None):
    """For chunks of output rows: average ``compute(source, local_rows)`` over the sources
    holding each row (NaN: none), then ``reduce(out_rows, averaged)``; results in order."""
    inverse = []
    for source in sources:
        positions = np.full(n_out, -1, dtype=np.int64)
        positions[source.out_rows] = np.arange(len(source.out_rows))
        inverse.append(positions)

    if len(sources) == 1 and np.array_equal(sources[0].out_rows, np.arange(n_out)):
        source = sources[0]

        def single(rows):  # one source holding every output row in order: no averaging
            values = np.asarray(compute(source, rows), dtype=np.float64)
            values = np.where(np.isfinite(values), values, np.nan)
            return reduce(np.arange(rows.start, rows.stop), values)

        return map_chunks(single, n_out, chunk_size, n_jobs=n_jobs, verbose=verbose,
                          desc=desc)

    def chunk(rows):
        out_rows = np.arange(rows.start, rows.stop)  # map_chunks hands out slices
        sums = counts = None
        for source, positions in zip(sources, inverse, strict=True):
            local = positions[out_rows]
            held = local >= 0
            if not held.any():
                continue
            values = np.asarray(compute(source, local[held]), dtype=np.float64)
            if sums is None:
                sums = np.zeros((out_rows.size,) + values.shape[1:])
                counts = np.zeros_like(sums)
            known = np.isfinite(values)
            sums[held] += np.where(known, values, 0.0)
            counts[held] += known
        if sums is None:
            return reduce(out_rows, None)
        with np.errstate(invalid="ignore", divide="ignore"):
            return reduce(out_rows, np.where(counts > 0, sums / counts, np.nan))

    return map_chunks(chunk, n_out, chunk_size, n_jobs=n_jobs, verbose=verbose, desc=desc)


def map_task_chunks(splits, n_tasks, chunk_size, columns, reduce, *, verbose=0, desc=None):
    """For chunks of source tasks: every split's effects on the tasks ``columns``, stacked
    (n_splits, M, len(columns)), then ``reduce(source_tasks, stacked)``."""

    def chunk(sources):
        tasks = np.arange(sources.start, sources.stop)
        stacked = np.stack([split.problem.finish(
            split.strategy.task_effects(tasks, columns=columns), allow_nan=True,
            columns=columns) for split in splits])
        return reduce(tasks, stacked)

    return map_chunks(chunk, n_tasks, chunk_size, verbose=verbose, desc=desc)


def most_negative(values, labels, n_keep):
    """Per column of ``values`` (m, c): the ``n_keep`` most negative entries (negative only),
    as (labels (c, n_keep), values (c, n_keep)) padded with -1 / NaN."""
    m, c = values.shape
    keep = min(n_keep, m)
    out_labels = np.full((c, n_keep), -1, dtype=np.int64)
    out_values = np.full((c, n_keep), np.nan)
    if keep == 0:
        return out_labels, out_values
    filled = np.where(np.isnan(values) | (values >= 0), np.inf, values)
    best = np.argpartition(filled, keep - 1, axis=0)[:keep] if keep < m else np.argsort(
        filled, axis=0)
    for column in range(c):
        rows = best[:, column]
        rows = rows[np.argsort(filled[rows, column], kind="stable")]
        rows = rows[np.isfinite(filled[rows, column])]
        out_labels[column, :rows.size] = labels[rows]
        out_values[column, :rows.size] = values[rows, column]
    return out_labels, out_values


def merge_most_negative(parts, n_keep):
    """Merge :func:`most_negative` results of several chunks into one."""
    labels = np.concatenate([part[0] for part in parts], axis=1)
    values = np.concatenate([part[1] for part in parts], axis=1)
    merged_labels, merged_values = most_negative(values.T, np.arange(values.shape[1]), n_keep)
    out_labels = np.full_like(merged_labels, -1)
    for column in range(values.shape[0]):
        picked = merged_labels[column]
        valid = picked >= 0
        out_labels[column, valid] = labels[column, picked[valid]]
    return out_labels, merged_values


def target_task_weights(val_counts, targets, task_weights):
    """Weights c_k of the ``targets`` from a split's validation rows per task: their shares
    (``"size"``) or 1 (``"equal"``); 0 for other tasks and tasks without validation rows."""
    weights = np.zeros(len(val_counts))
    weights[targets] = (val_counts[targets] if task_weights == "size"
                        else val_counts[targets] > 0)
    if task_weights == "size" and weights.sum() > 0:
        weights /= weights.sum()
    return weights


class InfluenceSummariesMixin:
    """Summaries of a fitted MTIFInfluence that never form the n x K matrix."""

    def _task_weights(self, split, targets, task_weights):
        """Weights c_k of the target tasks in one split (0 elsewhere and without validation)."""
        return target_task_weights(split.problem.val_counts, targets, task_weights)

    def row_scores(self, target_tasks=None, task_weights="size"):
        """Each training row's summed effect on the target tasks' validation loss, in O(n p).

        ``score_i = sum_k c_k influence_[i, k]`` over the target tasks, computed from the
        factor without forming ``influence_`` (first order: ``g_i . u_task(i)``, one product
        per row; Newton: in chunks). Negative: removing the row is predicted to lower the
        targets' (weighted) validation loss.

        Parameters
        ----------
        target_tasks : label or array-like of labels, default=None
            Tasks whose validation loss counts (None: all).
        task_weights : {"size", "equal"}, default="size"
            "size": c_k = task k's share of the targets' validation rows (the score is the
            effect on the pooled validation loss); "equal": c_k = 1 (the sum of per-task mean
            losses; small tasks count as much as large ones).

        Returns
        -------
        scores : ndarray of shape (n_train,)
            One score per row of ``influence_`` (``X``'s rows at ``train_indices_``; every row
            with ``cv``, averaged over the folds in which it was trained).
        """
        check_is_fitted(self, "tasks_")
        if getattr(self._splits, "is_dask", False):  # fitted on dask rows: lazy, by block
            return self._splits.row_scores(self, target_tasks, task_weights)
        targets = self._targets(target_tasks, task_weights)
        weights = {id(split): self._task_weights(split, targets, task_weights)
                   for split in self._splits}
        scores = np.full(self.train_indices_.size, np.nan)

        def reduce(rows, mean):
            if mean is not None:
                scores[rows] = mean[:, 0]

        self._row_map(self._training_sources(self._splits), self.train_indices_.size,
                      lambda src, local: src.split.strategy.row_scores(
                          src.objective, local, src.weights[local], weights[id(src.split)])[
                          :, None], reduce, per_row="scores", desc="MTIF row scores")
        return scores

    def harmful_rows(self, n_rows=10, target_tasks=None):
        """The rows that hurt each target task most (most negative effects), streamed.

        Parameters
        ----------
        n_rows : int, default=10
            Rows per task at most (only rows with a negative effect are listed).
        target_tasks : label or array-like of labels, default=None
            Tasks to list harmful rows for (None: all).

        Returns
        -------
        harmful : dict
            ``{task label: (rows, effects)}``: row indices into ``X`` and their effects on the
            task, most harmful first (at most ``n_rows``; fewer when fewer rows hurt it).
        """
        check_is_fitted(self, "tasks_")
        if getattr(self._splits, "is_dask", False):  # fitted on dask rows: merged by block
            return self._splits.harmful_rows(self, n_rows, target_tasks)
        targets = self._targets(target_tasks)
        n_out = self.train_indices_.size

        def compute(source, local):
            return source.split.problem.finish(source.split.strategy.row_effects(
                source.objective, local, source.weights[local], columns=targets),
                allow_nan=True, columns=targets)

        parts = self._row_map(self._training_sources(self._splits), n_out, compute,
                              lambda rows, mean: most_negative(
                                  np.full((rows.size, targets.size), np.nan) if mean is None
                                  else mean, rows, n_rows), desc="MTIF harmful rows")
        rows, effects = merge_most_negative(parts, n_rows)
        found = {}
        for column, task in enumerate(targets):
            keep = rows[column] >= 0
            found[self.tasks_[task].item()] = (self.train_indices_[rows[column, keep]],
                                               effects[column, keep])
        return found

    def _targets(self, target_tasks, task_weights="size"):
        if task_weights not in ("size", "equal"):
            raise ValueError(f"task_weights must be 'size' or 'equal'; got {task_weights!r}.")
        return target_task_codes(target_tasks, self.tasks_)
