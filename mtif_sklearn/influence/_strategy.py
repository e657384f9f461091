"""The interface of removal strategies, and the one chunked, parallel map they run in.

A removal strategy answers "what happens to every task's validation loss V_k when this row / task
is removed?" for an :class:`~mtif_sklearn.influence._problem.InfluenceProblem`.
:class:`FirstOrder` is the influence function of the paper; :class:`Newton` takes Newton steps on
the objective without the row or task. :class:`~mtif_sklearn.MTIFInfluence` only picks one.
"""

from abc import ABC, abstractmethod

from ..utils._progress import parallel_map

__all__ = ["RemovalStrategy", "map_chunks"]

# Numbers per chunk of per-row work arrays: about 2**22 (32 MiB of float64).
CHUNK_NUMBERS = 2**22


def map_chunks(func, n_items, chunk_size, *, n_jobs=None, verbose=0, desc=None):
    """``func(chunk)`` for consecutive slices of at most ``chunk_size`` items, results in order.

    Chunks run in threads that share memory: functions may write into a shared output (a
    process-based joblib backend such as loky or dask falls back to threads instead of losing
    the writes). With ``verbose > 0`` and tqdm installed, a progress bar counts the chunks.
    """
    chunk_size = max(1, int(chunk_size))
    chunks = [slice(start, min(start + chunk_size, n_items))
              for start in range(0, n_items, chunk_size)]
    if len(chunks) <= 1:  # nothing to spread: no joblib set-up (about 0.5 ms a call)
        return [func(chunk) for chunk in chunks]
    return parallel_map(func, chunks, n_jobs=n_jobs, verbose=verbose, desc=desc,
                        require="sharedmem")


class RemovalStrategy(ABC):
    """How removing a row or a task changes every task's validation loss.

    Parameters
    ----------
    problem : InfluenceProblem
        The fitted model, its objectives and factor.
    """

    #: Whether some removals may legitimately have no answer (NaN), e.g. a Newton step whose
    #: Hessian without the row or task is singular.
    allows_nan = False

    def __init__(self, problem):
        self.problem = problem

    @abstractmethod
    def row_chunk_size(self, n_eval=None):
        """Rows per chunk that keep the work arrays near :data:`CHUNK_NUMBERS`."""

    def score_chunk_size(self):
        """Rows per chunk of :meth:`row_scores` (by default that of :meth:`row_effects`)."""
        return self.row_chunk_size()

    @abstractmethod
    def row_effects(self, objective, rows, weights, out=None, columns=None):
        """Effects (m, K) on every V_k of removing ``rows`` of ``objective`` (each carrying
        ``weights`` in the training objective); written into ``out`` when given; only the
        tasks ``columns`` when given."""

    def row_scores(self, objective, rows, weights, task_weights):
        """``sum_k task_weights[k] * effect_k`` of every row, (m,); tasks of weight 0 and
        without validation rows do not count."""
        import numpy as np

        from ..backend import to_numpy

        columns = np.flatnonzero(task_weights)
        effects = np.asarray(to_numpy(self.row_effects(objective, rows, weights,
                                                       columns=columns)))
        return np.nan_to_num(effects) @ task_weights[columns]

    def summed_row_effects(self, objective, rows, weights, scale):
        """``sum_i scale_i * effect_i`` over ``rows`` of :meth:`row_effects`, (K,) NumPy (NaN
        effects count as 0)."""
        import numpy as np

        from ..backend import to_numpy

        effects = np.asarray(to_numpy(self.row_effects(objective, rows, weights)))
        return np.nan_to_num(effects * np.asarray(scale)[:, None]).sum(axis=0)

    @abstractmethod
    def task_effects(self, tasks, columns=None):
        """Effects (M, K) on every V_k (or the tasks ``columns``) of removing each task in
        ``tasks`` (codes) with its regulariser (eq. 11)."""

    @abstractmethod
    def sample_effects(self, evaluation, rows):
        """Effects (m, n_eval) of removing training ``rows`` on the loss of every row of the
        ``evaluation`` objective."""
