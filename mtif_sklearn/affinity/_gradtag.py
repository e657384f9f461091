"""Grad-TAG (Li et al. 2024): task affinities from a linearised base model, without retraining."""

from itertools import combinations
from numbers import Integral, Real

import numpy as np
from scipy.special import expit
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from ..backend import to_numpy
from ..utils._docstring import DOCS, Substitution
from ._trajectory import fitted_model, training_objective

__all__ = ["gradtag_affinity"]


def _surrogate_fit(Z, y, offset, weights, alpha, loss):
    """Minimise sum_i weights_i l(y_i, offset_i + z_i^T w) + alpha ||w||^2 over w (Newton)."""
    m = Z.shape[1]
    w = np.zeros(m)
    eye = np.eye(m)
    for _ in range(50):
        raw = offset + Z @ w
        if loss.quadratic:
            first, second = 2.0 * (raw - y), np.full_like(raw, 2.0)
        else:
            prob = expit(raw)
            first, second = prob - y, prob * (1.0 - prob)
        grad = Z.T @ (weights * first) + 2.0 * alpha * w
        hess = (Z * (weights * second)[:, None]).T @ Z + 2.0 * alpha * eye
        step = np.linalg.solve(hess, grad)
        w -= step
        if loss.quadratic or np.max(np.abs(step)) <= 1e-10 * max(1.0, np.max(np.abs(w))):
            break
    return w


class _Surrogates:
    """Projected-gradient features of the base model and the per-subset surrogate fits."""

    def __init__(self, model, X, y, tasks, sample_weight, X_val, y_val, tasks_val,
                 n_components, alpha, rng, task_blocks):
        needs = {"capability": "linearisation", "needed_by": "gradtag_affinity"}
        train = training_objective(model, X, y, tasks, sample_weight, **needs)
        val = training_objective(model, X_val, y_val, tasks_val, **needs)
        params = model._mtif_params(view="training")
        train_point = train.linearisation(params)
        self.loss = train_point.loss
        self.alpha = alpha
        K = train.n_tasks
        q_shared = train_point.shared_features.shape[1]
        q_task = train_point.task_features.shape[1]
        # One Gaussian projection of the whole parameter vector (shared block + K task blocks):
        # a row of task k has output gradient (x in the shared block, x in block k, 0 elsewhere),
        # so its projection is x @ P_shared + x @ P_k.
        scale = 1.0 / np.sqrt(n_components)
        self.P_shared = rng.standard_normal((q_shared, n_components)) * scale
        self.P_task = rng.standard_normal((K, q_task, n_components)) * scale
        if not task_blocks:
            self.P_task[:] = 0.0
        self.train = self._prepare(train, train_point)
        self.val = self._prepare(val, val.linearisation(params))
        self.n_tasks = K

    def _prepare(self, objective, point):
        codes = objective.codes
        Z = (point.shared_features @ self.P_shared
             + np.einsum("ij,ijm->im", point.task_features, self.P_task[codes]))
        return {"Z": Z, "y": point.targets, "offset": point.raw, "codes": codes,
                "weights": objective.row_weights}

    def task_losses(self, subset):
        """Estimated validation loss of every task of ``subset`` after training on it."""
        tr = self.train
        rows = np.isin(tr["codes"], subset)
        w = _surrogate_fit(tr["Z"][rows], tr["y"][rows], tr["offset"][rows],
                           tr["weights"][rows], self.alpha, self.loss)
        va = self.val
        rows = np.isin(va["codes"], subset)
        losses = self.loss.value(va["y"][rows], va["offset"][rows] + va["Z"][rows] @ w)
        counts = np.bincount(va["codes"][rows], minlength=self.n_tasks)
        sums = np.bincount(va["codes"][rows], weights=losses, minlength=self.n_tasks)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (sums / np.where(counts > 0, counts, np.nan))[subset]


@validate_params(
    {"estimator": [object], "X": ["array-like"], "y": ["array-like"], "X_val": ["array-like"],
     "y_val": ["array-like"], "tasks": ["array-like", None], "tasks_val": ["array-like", None],
     "sample_weight": ["array-like", None],
     "order": [StrOptions({"pairwise", "subsets"})],
     "n_components": [Interval(Integral, 1, None, closed="left")],
     "n_subsets": [Interval(Integral, 1, None, closed="left")],
     "subset_size": [Interval(Integral, 2, None, closed="left")],
     "surrogate_alpha": [Interval(Real, 0, None, closed="neither")],
     "task_blocks": ["boolean"],
     "random_state": ["random_state"], "return_details": ["boolean"]},
    prefer_skip_nested_validation=True)
@Substitution(**DOCS)
def gradtag_affinity(estimator, X, y, X_val, y_val, *, tasks=None, tasks_val=None,
                     sample_weight=None, order="pairwise", n_components=50, n_subsets=200,
                     subset_size=3, surrogate_alpha=1e-3, task_blocks=False, random_state=None,
                     return_details=False):
    """Grad-TAG task affinity (Li et al. 2024): subset losses estimated without retraining.

    A base model is fitted on all tasks. Every row's gradient of the model output with respect
    to the shared parameters (and, with ``task_blocks=True``, its task's own block) is
    projected to ``n_components`` dimensions with a Gaussian random matrix; the model trained
    on a task subset S is approximated by the first-order expansion
    ``f(x) = f_base(x) + z(x)^T w_S``, with ``w_S`` fitted by a ridge-penalised surrogate
    (least squares for the squared loss, logistic regression for the log loss) on the rows of
    S only (each task weighted 1/n_k like the objective). Each task's validation loss under S
    is then read off the surrogate.

    ``order="pairwise"``: ``[i, j] = L_j({j}) - L_j({i, j})``, the estimated drop of task j's
    validation loss when i joins it (K + K(K-1)/2 surrogate fits).
    ``order="subsets"`` (higher-order affinity): ``n_subsets`` random subsets of
    ``subset_size`` tasks; ``[i, j]`` = mean of ``L_j(S)`` over subsets holding j but not i,
    minus its mean over subsets holding both (NaN when a pair was never sampled that way).
    Either way positive means i helps j, the sign of ``MTIFInfluence.task_influence_``; the
    diagonal is 0.

    For a linear model the output gradients are the feature row, in the shared block (in
    ``theta_k = gamma + v_k`` coordinates) and in the task's own block; the expansion is exact
    before projection. By default only the shared block is used: the base model's task heads
    already fit their own task, so with head gradients the surrogate mostly refits each head
    alone and the estimated subset losses barely depend on the other members (measured: near
    zero affinities that do not separate two opposite clusters of tasks). Models without the
    "linearisation" capability (shared-bottom networks) are refused with a ValueError; use the
    other baselines for them.

    Parameters
    ----------
    estimator : multitask estimator
        Unfitted model (cloned and fitted on ``X, y``), or a fitted one wrapped in
        :class:`sklearn.frozen.FrozenEstimator`.
    X : array-like of shape (n_samples, n_features)
        Training rows.
    y : array-like of shape (n_samples,)
        Training targets.
    X_val : array-like of shape (n_val, n_features)
        Validation rows (define each task's loss).
    y_val : array-like of shape (n_val,)
        Validation targets.
    tasks : array-like of shape (n_samples,), default=None
        Task of every row (unless the model has a ``task_column``).
    tasks_val : array-like of shape (n_val,), default=None
        Task of every validation row.
    sample_weight : array-like of shape (n_samples,), default=None
        Row weights.
    order : {"pairwise", "subsets"}, default="pairwise"
        Pairwise affinities, or higher-order ones from random subsets.
    n_components : int, default=50
        Dimension of the random projection of the gradients.
    n_subsets : int, default=200
        Random subsets (``order="subsets"``).
    subset_size : int, default=3
        Tasks per random subset (``order="subsets"``).
    surrogate_alpha : float, default=1e-3
        Ridge penalty of the surrogate (keeps it near the base model).
    task_blocks : bool, default=False
        Also project the gradients of the task-specific parameters.
    random_state : int, RandomState instance or None, default=None
        Seed of the projection and of the subsets.
    return_details : bool, default=False
        Also return a dict with ``"subsets"`` (task-code arrays), ``"losses"`` (estimated
        validation losses of their tasks) and ``"fits"`` (number of surrogate fits).

    Returns
    -------
    affinity : ndarray of shape (n_tasks, n_tasks)
        ``[source, target]``, tasks in the model's ``tasks_`` order.
    details : dict
        Only with ``return_details=True``.

    References
    ----------
    {ref_mtif}
    {ref_gradtag}
    """
    rng = check_random_state(random_state)
    model = fitted_model(estimator, X, y, tasks, sample_weight)
    surrogates = _Surrogates(model, X, to_numpy(y), tasks, sample_weight, X_val, to_numpy(y_val),
                             tasks_val, n_components, surrogate_alpha, rng, task_blocks)
    K = surrogates.n_tasks
    affinity = np.zeros((K, K))
    if order == "pairwise":
        subsets = [np.array([k]) for k in range(K)]
        subsets += [np.array(pair) for pair in combinations(range(K), 2)]
        losses = [surrogates.task_losses(s) for s in subsets]
        single = np.array([loss[0] for loss in losses[:K]])
        for (i, j), loss in zip(combinations(range(K), 2), losses[K:], strict=True):
            affinity[i, j] = single[j] - loss[1]
            affinity[j, i] = single[i] - loss[0]
    else:
        if subset_size > K:
            raise ValueError(f"subset_size={subset_size} exceeds the number of tasks ({K}).")
        subsets = [np.sort(rng.choice(K, size=subset_size, replace=False))
                   for _ in range(n_subsets)]
        losses = [surrogates.task_losses(s) for s in subsets]
        member = np.zeros((n_subsets, K), dtype=bool)
        loss_matrix = np.zeros((n_subsets, K))
        for s, (subset, loss) in enumerate(zip(subsets, losses, strict=True)):
            member[s, subset] = True
            loss_matrix[s, subset] = loss
        with np.errstate(invalid="ignore", divide="ignore"):
            for i in range(K):
                both = member & member[:, [i]]
                without = member & ~member[:, [i]]
                mean_both = (loss_matrix * both).sum(0) / both.sum(0)
                mean_without = (loss_matrix * without).sum(0) / without.sum(0)
                affinity[i] = mean_without - mean_both
        np.fill_diagonal(affinity, 0.0)
    if return_details:
        return affinity, {"subsets": subsets, "losses": losses, "fits": len(subsets)}
    return affinity
