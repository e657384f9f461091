"""The training trajectory along which TAG, cosine and ETAP are averaged, through the protocol.

The baselines talk to a model only through the multitask objective protocol
(:mod:`mtif_sklearn.base`): the model's ``view="training"`` objective (every trainable parameter
as the optimiser sees it) with the "affinity" capability -- per-task gradients of the shared
parameters (``shared_gradients``), a step on the shared parameters only (``shared_step``) and a
start of training (``initial_params``) -- plus per-row losses, task gradients and Hessian blocks.

Shared parameters of the linear models. In ``theta_k = gamma + v_k`` coordinates (an exact
reparametrisation of paper eq. 2, whose regulariser ``alpha_k ||v_k||^2`` does not involve gamma)
a step on the shared gamma moves every task's predictor, and the gradient of task k's data loss
with respect to gamma equals its gradient with respect to theta_k.

Shared parameters of a network. ``f_k(x) = head_k(shared(x))``: the shared parameters are *all*
trainable parameters of the shared bottom, whatever the estimator's ``attribute`` (that option
only sizes MTIF's Hessian; TAG and the gradient cosine are defined by a step of the whole shared
encoder). A shared step leaves every head unchanged. The training trajectory starts from a
seeded default initialisation of the same architecture (every submodule's
``reset_parameters()``, seeded with the estimator's integer ``random_state``, else 0), not from
zero, where a tanh network is degenerate.
"""

import numpy as np
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils._param_validation import StrOptions

from ..backend import to_numpy
from ..base import Params, require_capability

TRAJECTORIES = StrOptions({"gradient_descent", "path", "fitted"})


def fitted_model(estimator, X, y, tasks=None, sample_weight=None):
    """A fitted multitask model: the FrozenEstimator's, or a fitted clone of ``estimator``."""
    if isinstance(estimator, FrozenEstimator):
        return estimator.estimator
    model = clone(estimator)
    return model._mtif_fit(model._mtif_data(X, to_numpy(y), tasks, sample_weight, reset=True))


def training_objective(model, X, y, tasks=None, sample_weight=None, *, capability="affinity",
                       needed_by="The affinity baselines"):
    """The model's ``view="training"`` objective on these rows, checked for ``capability``."""
    data = model._mtif_data(X, to_numpy(y), tasks, sample_weight, reset=False)
    objective = model._mtif_objective(data, view="training")
    require_capability(objective, capability, model=model, needed_by=needed_by)
    return objective


def task_data_losses(objective, params):
    """Mean (sigma-weighted) data loss of every task at ``params``, (K,)."""
    return objective.task_sums(objective.row_weights * objective.row_losses(params))


def objective_gradient(objective, params):
    """Gradient of the whole training objective w.r.t. (task blocks, shared block)."""
    task_grad, shared_parts = objective.task_gradients(params)
    return task_grad, shared_parts.sum(axis=0) + objective.shared_penalty_gradient(params)


def _arrow_top_eigenvalue(task_blocks, coupling, shared_block):
    """Largest eigenvalue of an arrow matrix (power iteration), times 1.01.

    Power iteration approaches from below, hence the small margin.
    """
    rng = np.random.default_rng(0)
    v_t = rng.standard_normal(task_blocks.shape[:2])
    v_s = rng.standard_normal(shared_block.shape[0])
    value = 1.0
    for _ in range(200):
        out_t = (np.einsum("kij,kj->ki", task_blocks, v_t)
                 + np.einsum("kij,j->ki", coupling, v_s))
        out_s = np.einsum("kji,kj->i", coupling, v_t) + shared_block @ v_s
        norm = np.sqrt(np.sum(out_t ** 2) + np.sum(out_s ** 2))
        new_value = norm / np.sqrt(np.sum(v_t ** 2) + np.sum(v_s ** 2))
        v_t, v_s = out_t / norm, out_s / norm
        if abs(new_value - value) <= 1e-6 * new_value:
            value = new_value
            break
        value = new_value
    return 1.01 * value


def lipschitz(objective, points):
    """Curvature bound for the step size 1/L: the largest Hessian eigenvalue over ``points``.

    For the linear models the squared loss has constant curvature and the logistic loss its
    largest (1/4) at raw score 0, so the value at the initial point (zero) bounds the curvature
    everywhere. A network has no global bound: its (Gauss-Newton) curvature at the start and at
    the fit is an estimate.
    """
    return max(_arrow_top_eigenvalue(*objective.hessian_blocks(point)) for point in points)


def trajectory_points(objective, fitted, trajectory, n_steps, n_points):
    """Parameter points along which the gradient baselines are averaged, and the step size.

    ``"gradient_descent"``: full-batch gradient descent on the model's own training objective
    from the initial point (zero for the linear models, a seeded default initialisation for a
    network) with step 1/L (:func:`lipschitz`), ``n_steps`` steps, ``n_points`` iterates kept
    evenly spaced (the first is the initial point). ``"path"``: ``n_points`` points on the segment
    from the initial point to the fitted solution. ``"fitted"``: the fitted solution only.
    """
    start = objective.initial_params()
    lr = 1.0 / lipschitz(objective, [start, fitted])
    if trajectory == "fitted":
        return [fitted], lr
    if trajectory == "path":
        return [Params(t * fitted.task + (1 - t) * start.task,
                       t * fitted.shared + (1 - t) * start.shared)
                for t in np.linspace(0.0, 1.0, n_points)], lr
    keep = set(np.unique(np.linspace(0, n_steps, n_points).round().astype(int)).tolist())
    points, params = [], start
    for step in range(n_steps + 1):
        if step in keep:
            points.append(params)
        task_grad, shared_grad = objective_gradient(objective, params)
        params = Params(params.task - lr * task_grad, params.shared - lr * shared_grad)
    return points, lr
