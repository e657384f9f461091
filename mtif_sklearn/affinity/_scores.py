"""Gradient-based task affinities: cosine similarity, TAG lookahead and ETAP's affinity score."""

from numbers import Integral, Real

import numpy as np
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import SplineTransformer
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params

from ..utils._docstring import DOCS, Substitution
from ._trajectory import (
    TRAJECTORIES,
    fitted_model,
    task_data_losses,
    training_objective,
    trajectory_points,
)

__all__ = ["cosine_affinity", "etap_affinity", "tag_affinity"]

_COMMON = {
    "estimator": [object],
    "X": ["array-like"],
    "y": ["array-like"],
    "tasks": ["array-like", None],
    "sample_weight": ["array-like", None],
    "trajectory": [TRAJECTORIES],
    "n_steps": [Interval(Integral, 0, None, closed="left")],
    "n_points": [Interval(Integral, 1, None, closed="left")],
}


_affinity_docs = Substitution(
    **DOCS,
    training_rows="""
        X : array-like of shape (n_samples, n_features)
            Training rows.
        y : array-like of shape (n_samples,)
            Training targets.
        tasks : array-like of shape (n_samples,), default=None
            Task of every row (unless the model has a ``task_column``).
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights.""",
    trajectory_steps="""
        n_steps : int, default=100
            Gradient-descent steps (``trajectory="gradient_descent"``).
        n_points : int, default=10
            Trajectory points averaged over.""")


def _points(estimator, X, y, tasks, sample_weight, trajectory, n_steps, n_points):
    model = fitted_model(estimator, X, y, tasks, sample_weight)
    objective = training_objective(model, X, y, tasks, sample_weight)
    points, lr = trajectory_points(objective, model._mtif_params(view="training"), trajectory,
                                   n_steps, n_points)
    return objective, points, lr


def _gradients_at(objective, params):
    return objective.shared_gradients(params), task_data_losses(objective, params)


@validate_params(_COMMON, prefer_skip_nested_validation=True)
@_affinity_docs
def cosine_affinity(estimator, X, y, *, tasks=None, sample_weight=None,
                    trajectory="gradient_descent", n_steps=100, n_points=10):
    """Cosine similarity of the tasks' gradients of the shared parameters (Azorin et al. 2023).

    ``[i, j] = cos(g_i, g_j)`` with ``g_k`` the gradient of task k's mean training loss with
    respect to the shared parameters, averaged over the points of a training trajectory.
    Symmetric; positive means the two tasks pull the shared parameters the same way (task i
    helps task j), as for ``MTIFInfluence.task_influence_``. The diagonal is 1.

    For the linear models the shared parameters are gamma in the exact reparametrisation
    ``theta_k = gamma + v_k``, so ``g_k`` is the gradient of task k's data loss at theta_k.
    For a shared-bottom network (``mtif_sklearn.torch``) they are all trainable parameters of
    the shared bottom (whatever the estimator's ``attribute``), ``g_k`` comes from torch
    autograd in float64, and the trajectory starts from a seeded default initialisation of the
    same architecture instead of zero, with L the Gauss-Newton curvature at the start and at the
    fit (an estimate: a network has no global bound).

    Parameters
    ----------
    estimator : multitask estimator
        Unfitted model (cloned and fitted on ``X, y``), or a fitted one wrapped in
        :class:`sklearn.frozen.FrozenEstimator`.
    {training_rows}
    trajectory : {"gradient_descent", "path", "fitted"}, default="gradient_descent"
        Where the gradients are taken: ``n_points`` evenly spaced iterates of ``n_steps`` steps
        of full-batch gradient descent on the model's training objective from zero with step
        1/L (L a bound on the curvature); ``n_points`` points on the straight path from zero to
        the fitted solution; or the fitted solution only.
    {trajectory_steps}

    Returns
    -------
    affinity : ndarray of shape (n_tasks, n_tasks)
        ``[source, target]``, tasks in the model's ``tasks_`` order.

    References
    ----------
    {ref_mtif}
    {ref_cosine}
    """
    objective, points, _ = _points(estimator, X, y, tasks, sample_weight, trajectory, n_steps,
                                 n_points)
    total = np.zeros((objective.n_tasks, objective.n_tasks))
    for params in points:
        grads, _ = _gradients_at(objective, params)
        norms = np.linalg.norm(grads, axis=1)
        unit = grads / np.where(norms > 0, norms, 1.0)[:, None]
        total += unit @ unit.T
    return total / len(points)


@validate_params({**_COMMON, "learning_rate": [Interval(Real, 0, None, closed="neither"), None]},
                 prefer_skip_nested_validation=True)
@_affinity_docs
def tag_affinity(estimator, X, y, *, tasks=None, sample_weight=None,
                 trajectory="gradient_descent", n_steps=100, n_points=10, learning_rate=None):
    """TAG inter-task affinity (Fifty et al. 2021): the lookahead loss change.

    At a point of training, take one gradient step on the shared parameters using only task i,
    ``gamma' = gamma - lr * g_i``, and measure the relative change of task j's training loss:
    ``Z[i, j] = 1 - L_j(gamma', theta_j) / L_j(gamma, theta_j)``, averaged over the points of a
    first-order training trajectory. Positive: a step for task i lowers task j's loss (i helps
    j), the sign of ``MTIFInfluence.task_influence_``. The diagonal is each task's own lookahead.

    For the linear models there is no stochastic training run, so the run is full-batch gradient
    descent on the same objective (or points on the path to the solution, see ``trajectory``);
    with ``theta_k = gamma + v_k`` a shared step moves every theta_j by ``-lr * g_i``. For a
    shared-bottom network the step moves all shared-bottom parameters and no head, along the
    same kind of run started from a seeded default initialisation (see :func:`cosine_affinity`).

    Parameters
    ----------
    estimator : multitask estimator
        Unfitted model (cloned and fitted on ``X, y``), or a fitted one wrapped in
        :class:`sklearn.frozen.FrozenEstimator`.
    {training_rows}
    trajectory : {"gradient_descent", "path", "fitted"}, default="gradient_descent"
        Points of training at which the lookahead is taken (see :func:`cosine_affinity`).
    {trajectory_steps}
    learning_rate : float, default=None
        Lookahead step; default the trajectory's step 1/L.

    Returns
    -------
    affinity : ndarray of shape (n_tasks, n_tasks)
        ``[source, target]``, tasks in the model's ``tasks_`` order.

    References
    ----------
    {ref_mtif}
    {ref_tag}
    """
    objective, points, lr = _points(estimator, X, y, tasks, sample_weight, trajectory,
                                    n_steps, n_points)
    lr = lr if learning_rate is None else float(learning_rate)
    K = objective.n_tasks
    total = np.zeros((K, K))
    for params in points:
        grads, losses = _gradients_at(objective, params)
        for i in range(K):
            lookahead = objective.shared_step(params, lr * grads[i])
            total[i] += 1.0 - task_data_losses(objective, lookahead) / losses
    return total / len(points)


def _group_scores(score, groups, n_tasks):
    """ETAP's group extension: target j in G scores the mean of score[i, j] over i in G, i != j.

    Returns rows (group index, target code, group score) for groups of at least two tasks.
    """
    rows = []
    for g, members in enumerate(groups):
        members = np.asarray(members)
        if members.size < 2:
            continue
        for j in members:
            others = members[members != j]
            rows.append((g, j, float(np.mean(score[others, j]))))
    return rows


def _refine_features(members_list, targets, n_tasks):
    features = np.zeros((len(targets), 2 * n_tasks))
    for r, (members, j) in enumerate(zip(members_list, targets, strict=True)):
        features[r, members] = 1.0
        features[r, n_tasks + j] = 1.0
    return features


@validate_params(
    {**_COMMON, "X_val": ["array-like", None], "y_val": ["array-like", None],
     "tasks_val": ["array-like", None], "n_train_groups": [Interval(Integral, 0, None,
                                                                     closed="left")],
     "group_size": [Interval(Integral, 2, None, closed="left")],
     "ridge_alpha": [Interval(Real, 0, None, closed="neither")], "random_state": ["random_state"],
     "n_jobs": [Integral, None], "return_details": ["boolean"]},
    prefer_skip_nested_validation=True)
@_affinity_docs
def etap_affinity(estimator, X, y, *, tasks=None, sample_weight=None,
                  trajectory="gradient_descent", n_steps=100, n_points=10, X_val=None,
                  y_val=None, tasks_val=None, n_train_groups=0, group_size=3, ridge_alpha=1.0,
                  random_state=None, n_jobs=None, return_details=False):
    """ETAP task affinity (Ayman et al. 2026): affinity score, optionally refined on true gains.

    Affinity score: the inner product of target task j's gradient of the shared parameters with
    the shared update made for source task i, normalised by the step size and by task j's loss,
    ``A[i, j] = <g_j, lr g_i> / (lr L_j)`` (the first-order change of j's loss relative to its
    value, i.e. the linearised TAG lookahead), averaged over a training trajectory. A group's
    score for its task j is the mean of ``A[i, j]`` over the other members i.

    Refinement (``n_train_groups > 0``): ``n_train_groups`` random groups of ``group_size``
    tasks are trained (:func:`mtif_sklearn.retrain.group_gains`) to get every member's true
    relative gain over single-task learning on ``(X_val, y_val)``. A spline map of the group
    score (SplineTransformer + Ridge) is fitted to these gains, then a Ridge model of the
    residuals on the group's membership and the target task. The returned matrix is then the
    refined prediction of the relative gain of task j when trained in the pair {i, j}.

    Either way ``[i, j]`` is larger when source i helps target j, the sign of
    ``MTIFInfluence.task_influence_``. The diagonal: raw score ``||g_j||^2 / L_j``; refined 0.

    Parameters
    ----------
    estimator : multitask estimator
        Unfitted model (cloned and fitted on ``X, y``), or a fitted one wrapped in
        :class:`sklearn.frozen.FrozenEstimator` (the refinement's refits use clones).
    {training_rows}
    trajectory : {"gradient_descent", "path", "fitted"}, default="gradient_descent"
        Points of training at which gradients are taken (see :func:`cosine_affinity`).
    {trajectory_steps}
    X_val : array-like, default=None
        Validation rows for the true gains (needed when ``n_train_groups > 0``).
    y_val : array-like, default=None
        Validation targets.
    tasks_val : array-like, default=None
        Task of every validation row.
    n_train_groups : int, default=0
        Random groups trained for the refinement; 0: return the raw affinity score.
    group_size : int, default=3
        Tasks per training group.
    ridge_alpha : float, default=1.0
        Ridge penalty of the spline map and of the residual model.
    random_state : int, RandomState instance or None, default=None
        Seed of the training groups.
    n_jobs : int, default=None
        Parallel refits for the true gains (joblib).
    return_details : bool, default=False
        Also return a dict with ``"score"`` (raw (K, K) score) and, when refined,
        ``"groups"`` (code arrays), ``"gains"`` (true relative gains) and ``"refits"``.

    Returns
    -------
    affinity : ndarray of shape (n_tasks, n_tasks)
        ``[source, target]``, tasks in the model's ``tasks_`` order.
    details : dict
        Only with ``return_details=True``.

    References
    ----------
    {ref_mtif}
    {ref_etap}
    """
    objective, points, lr = _points(estimator, X, y, tasks, sample_weight, trajectory,
                                    n_steps, n_points)
    K = objective.n_tasks
    score = np.zeros((K, K))
    for params in points:
        grads, losses = _gradients_at(objective, params)
        update = lr * grads  # the shared update of a gradient step for each source task
        score += (update @ grads.T) / (lr * losses[None, :])
    score /= len(points)
    details = {"score": score}
    if n_train_groups == 0:
        return (score, details) if return_details else score
    if X_val is None or y_val is None:
        raise ValueError("etap_affinity needs X_val and y_val to refine on true gains "
                         "(n_train_groups > 0).")
    if group_size > K:
        raise ValueError(f"group_size={group_size} exceeds the number of tasks ({K}).")
    from ..retrain import group_gains

    rng = check_random_state(random_state)
    model = fitted_model(estimator, X, y, tasks, sample_weight)
    groups = [np.sort(rng.choice(K, size=group_size, replace=False))
              for _ in range(n_train_groups)]
    gains = group_gains(estimator, X, y, X_val, y_val, [model.tasks_[g] for g in groups],
                        tasks=tasks, tasks_val=tasks_val, sample_weight=sample_weight,
                        relative=True, n_jobs=n_jobs)
    rows = _group_scores(score, groups, K)
    group_idx = np.array([r[0] for r in rows])
    targets = np.array([r[1] for r in rows])
    x = np.array([r[2] for r in rows])[:, None]
    target_gain = gains[group_idx, targets]
    ok = np.isfinite(target_gain)
    spline = make_pipeline(
        SplineTransformer(n_knots=4, degree=3, extrapolation="linear"), Ridge(alpha=ridge_alpha))
    spline.fit(x[ok], target_gain[ok])
    residual = Ridge(alpha=ridge_alpha)
    features = _refine_features([groups[g] for g in group_idx], targets, K)
    residual.fit(features[ok], target_gain[ok] - spline.predict(x[ok]))
    source, target = np.meshgrid(np.arange(K), np.arange(K), indexing="ij")
    source, target = source.ravel(), target.ravel()
    pair_features = _refine_features([np.array([i, j]) for i, j in zip(source, target,
                                                                       strict=True)],
                                     target, K)
    refined = (spline.predict(score[source, target][:, None])
               + residual.predict(pair_features)).reshape(K, K)
    np.fill_diagonal(refined, 0.0)
    details.update(groups=groups, gains=gains, refits=len(groups) + K)
    return (refined, details) if return_details else refined
