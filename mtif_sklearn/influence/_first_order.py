"""First-order removal effects: the MultiTask Influence Function of the paper (eq. 5, 11-13).

The effect of removing a term with gradient g (a row's weighted loss gradient, or a task's whole
term T_l with its regulariser) is ``v_k^T H^-1 g`` for every task k (see
:mod:`mtif_sklearn.influence._effects` for the arrow algebra).
"""

import threading

import numpy as np

from .._arrow import solve_schur
from ..backend import rows_times_task_matrices_numpy
from ._effects import (
    perturbation_effects,
    reduced_gradients,
    solve_rows_by_task,
    summed_perturbation_effects,
)
from ._strategy import CHUNK_NUMBERS, RemovalStrategy

#: Largest K q c (numbers) of the per-task effect matrices (:meth:`FirstOrder._effect_matrices`).
MATRIX_NUMBERS = 2**23

__all__ = ["FirstOrder", "scores_from_vectors"]


def scores_from_vectors(objective, rows, weights, params, u, v):
    """:meth:`FirstOrder.row_scores` given its vectors (u, v): ``w_i (g_i . u_task(i) +
    g^s_i . v)``, O(q + p) per row (the arrow algebra of Proposition 1, summed first)."""
    grad_task, grad_shared = objective.row_gradients(params, rows)
    scores = np.einsum("mq,mq->m", grad_task, u[objective.codes[rows]])
    if grad_shared is not None:
        scores = scores + grad_shared @ v
    return weights * scores


class FirstOrder(RemovalStrategy):
    """The influence function: effects linear in the removed term's gradient."""

    def __init__(self, problem):
        super().__init__(problem)
        self._lock = threading.Lock()
        self._eval_cache = None
        self._score_cache = {}
        self._row_dot_cache = None
        self._matrix_cache = {}
        self._task_gradient_cache = None

    def __getstate__(self):  # a lock does not pickle; the cache is rebuilt on use
        return {"problem": self.problem}

    def __setstate__(self, state):
        self.__init__(state["problem"])

    def row_chunk_size(self, n_eval=None):
        q, p = self.problem.factor.shape[1:]
        backend = self.problem.backend
        if n_eval is not None:  # sample_effects: three (rows, n_eval) arrays per chunk
            return max(1, CHUNK_NUMBERS // (q + p + 3 * max(n_eval, 1)))
        # gradient, reduced gradient, output row; on a device the gathered (q, p) block W_l too.
        per_row = q + p + self.problem.n_tasks + (0 if backend.is_numpy else q * p)
        return max(1, CHUNK_NUMBERS // per_row)

    def score_chunk_size(self):
        """Rows per chunk of :meth:`row_scores`: a gradient and a few numbers per row."""
        q, p = self.problem.factor.shape[1:]
        return max(1, CHUNK_NUMBERS // (q + p + 3))

    def _blas(self):
        """One BLAS thread for the row and task products (inner dimension q or p): with two
        threads on busy cores OpenBLAS made the n x K product 7x slower (measured)."""
        return self.problem.backend.blas_threads(max(self.problem.factor.shape[1:]))

    def row_effects(self, objective, rows, weights, out=None, columns=None):
        with self._blas():
            return self._row_effects(objective, rows, weights, out, columns)

    def _row_effects(self, objective, rows, weights, out, columns):
        problem, backend = self.problem, self.problem.backend
        grad_task, grad_shared = objective.row_gradients(problem.params, rows)
        weights = np.asarray(weights)[:, None]
        effect_matrices = self._effect_matrices(columns)
        if effect_matrices is not None:  # one product per task run, straight into ``out``
            effects = rows_times_task_matrices_numpy(np.asarray(objective.codes[rows]),
                                                     grad_task * weights, effect_matrices,
                                                     out=out)
            if grad_shared is not None:
                x_shared = problem.x_shared if columns is None else problem.x_shared[
                    :, np.asarray(columns)]
                effects += (grad_shared * weights) @ x_shared
            return effects
        return perturbation_effects(
            problem.factor, problem.z, problem.x_shared, objective.codes[rows],
            backend.asarray(grad_task * weights),
            None if grad_shared is None else backend.asarray(grad_shared * weights),
            out=out if backend.is_numpy else None, columns=columns)

    def summed_row_effects(self, objective, rows, weights, scale):
        """``sum_i scale_i * effect_i`` in O(q + p) per row (no (m, K) effects): first-order
        effects are linear in the gradients (:func:`summed_perturbation_effects`)."""
        problem, backend = self.problem, self.problem.backend
        with self._blas():
            grad_task, grad_shared = objective.row_gradients(problem.params, rows)
            weights = (np.asarray(weights) * np.asarray(scale))[:, None]
            return summed_perturbation_effects(
                problem.factor, problem.z, problem.x_shared, objective.codes[rows],
                backend.asarray(grad_task * weights),
                None if grad_shared is None else backend.asarray(grad_shared * weights))

    def _effect_matrices(self, columns):
        """``M_l = z_l e_l^T - W_l X_shared`` (K, q, c) when small (NumPy), else None.

        The effects of a row of task l with task gradient g^t (and no shared part) are
        ``g^t . M_l``: the within-task term and the shared path of Proposition 1 folded into
        one q x c matrix per task, so the rows cost one product with it (q c per row) instead
        of a q x p solve, a p x c product and a scatter. Kept while K q c <= 2**23 numbers
        (64 MiB).
        """
        problem = self.problem
        n_tasks, q, _ = problem.factor.shape
        n_columns = n_tasks if columns is None else len(columns)
        if not problem.backend.is_numpy or n_tasks * q * n_columns > MATRIX_NUMBERS:
            return None
        key = None if columns is None else np.asarray(columns, dtype=np.int64).tobytes()
        with self._lock:
            cached = self._matrix_cache.get(key)
            if cached is None:
                tasks = np.arange(n_tasks) if columns is None else np.asarray(columns)
                cached = -problem.factor.solved_coupling(problem.x_shared[:, tasks])
                cached[tasks, :, np.arange(tasks.size)] += problem.z[tasks]  # within task
                if len(self._matrix_cache) > 4:
                    self._matrix_cache.clear()
                self._matrix_cache[key] = cached
        return cached

    def row_scores(self, objective, rows, weights, task_weights):
        """``sum_k c_k effect_k`` in O(q + p) per row, never forming the (rows, K) effects.

        With c the task weights, v = X_shared c (p,) and u_l = c_l z_l - W_l v (q,) per task,
        the weighted sum of effect_k = [k == l] z_k . g^t + x_k . (g^s - W_l^T g^t) is
        ``g^t . u_l + g^s . v`` (the arrow algebra of Proposition 1, summed first).

        An objective with ``row_gradient_dots(params, u, v, rows)`` (the linear models: a
        row's gradient is its loss derivative times its features, so the dot product is one
        output at parameters u) gives these for every row in one pass over the data, without
        forming gradients; the scores of all the objective's rows are kept for the chunks
        that follow (n numbers).
        """
        u, v = self._score_vectors(task_weights)
        problem = self.problem
        weights = np.asarray(weights)
        if hasattr(objective, "row_gradient_dots"):
            return weights * self._all_row_dots(objective, task_weights, u, v)[rows]
        with self._blas():
            return scores_from_vectors(objective, rows, weights, problem.params, u, v)

    def _all_row_dots(self, objective, task_weights, u, v):
        """``g_i . (u, v)`` of every row of ``objective`` (cached for one objective and one
        set of task weights: the chunks of one ``row_scores`` call)."""
        key = (id(objective), np.asarray(task_weights, dtype=np.float64).tobytes())
        with self._lock:
            cached = self._row_dot_cache
            if cached is not None and cached[0] is objective and cached[1] == key:
                return cached[2]
            with self._blas():
                dots = np.asarray(objective.row_gradient_dots(self.problem.params, u, v))
            self._row_dot_cache = (objective, key, dots)
        return dots

    def _score_vectors(self, task_weights):
        """(u (K, q), v (p,)) of :meth:`row_scores` for these task weights (NumPy)."""
        from ..backend import to_numpy

        problem = self.problem
        key = np.asarray(task_weights, dtype=np.float64).tobytes()
        with self._lock:
            cached = self._score_cache.get(key)
            if cached is None:
                xp, factor = problem.backend.xp, problem.factor
                c = problem.backend.asarray(np.asarray(task_weights, dtype=np.float64))
                v = xp.matmul(problem.x_shared, c)
                u = c[:, None] * problem.z - factor.solved_coupling(v)  # c_l z_l - W_l v
                cached = self._score_cache[key] = (np.asarray(to_numpy(u)),
                                                   np.asarray(to_numpy(v)))
        return cached

    def _task_gradients(self):
        with self._lock:
            if self._task_gradient_cache is None:
                problem = self.problem
                self._task_gradient_cache = problem.train.task_gradients(problem.params)
        return self._task_gradient_cache

    def task_effects(self, tasks, columns=None):
        with self._blas():
            return self._task_effects(tasks, columns)

    def _task_effects(self, tasks, columns):
        problem, backend = self.problem, self.problem.backend
        task_grad, task_shared = self._task_gradients()
        tasks = np.asarray(tasks)
        return perturbation_effects(
            problem.factor, problem.z, problem.x_shared, tasks, backend.asarray(task_grad[tasks]),
            None if task_shared is None else backend.asarray(task_shared[tasks]),
            columns=columns)

    def sample_effects(self, evaluation, rows):
        with self._blas():
            return self._sample_effects(evaluation, rows)

    def _sample_effects(self, evaluation, rows):
        problem, backend = self.problem, self.problem.backend
        xp, factor, train = backend.xp, problem.factor, problem.train
        eval_task, eval_shared = self._evaluation_solves(evaluation)
        grad_task, grad_shared = train.row_gradients(problem.params, rows)
        weights = train.row_weights[rows][:, None]
        grad_task = backend.asarray(grad_task * weights)
        reduced = reduced_gradients(factor, train.codes[rows], grad_task,
                                    None if grad_shared is None
                                    else backend.asarray(grad_shared * weights))
        block = xp.matmul(reduced, eval_shared)
        # Within-task path: training row i and evaluation row e of the same task.
        same = backend.asarray((train.codes[rows][:, None] == evaluation.codes[None, :])
                               .astype(np.float64))
        within = xp.matmul(grad_task, xp.matrix_transpose(eval_task))
        return block + same * within

    def _evaluation_solves(self, evaluation):
        """H^-1 grad(loss_e) of every evaluation row: task part z_e (n_eval, q) and shared part
        x_e (p, n_eval); cached per evaluation objective."""
        with self._lock:  # chunks run in threads: solve once per evaluation objective
            if self._eval_cache is None or self._eval_cache[0] is not evaluation:
                self._eval_cache = (evaluation, self._solve_evaluation(evaluation))
            return self._eval_cache[1]

    def _solve_evaluation(self, evaluation):
        problem, backend = self.problem, self.problem.backend
        xp, factor = backend.xp, problem.factor
        eval_task, eval_shared = evaluation.row_gradients(problem.params)
        z_eval, pushed = solve_rows_by_task(factor, evaluation.codes, backend.asarray(eval_task))
        shared_rhs = -pushed if eval_shared is None else backend.asarray(eval_shared) - pushed
        return z_eval, solve_schur(factor, xp.matrix_transpose(shared_rhs))
