"""Shared machinery of the affinity baselines: the fitted objective, per-task gradients of the
shared parameters, and the first-order training trajectory along which TAG, cosine and ETAP are
averaged.

The baselines talk to a model through the multitask objective protocol (DESIGN.md section 4)
plus three operations on its parameters, gathered in :class:`_LinearAdapter` for the linear
models. A shared-bottom network (the torch bridge) plugs in by providing the same operations:
per-task gradients of the shared parameters, a step on the shared parameters only, per-task mean
data losses, per-row gradients of the model output, and reading/setting the parameters.

Shared parameters of the linear models. In ``theta_k = gamma + v_k`` coordinates (an exact
reparametrisation of paper eq. 2, whose regulariser ``alpha_k ||v_k||^2`` does not involve gamma)
a step on the shared gamma moves every task's predictor, and the gradient of task k's data loss
with respect to gamma equals its gradient with respect to theta_k. So "the per-task gradient of
the shared parameters" of a linear model is the gradient of the task's mean training loss
``(1/n_k) sum_i w_ki l(y_ki, x_ki^T theta_k + b_k)`` at its current theta_k, and "a step on
the shared parameters using only task i" shifts every theta_j by ``-lr * grad_i``.
"""

import numpy as np
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils._param_validation import StrOptions

from ..backend import to_numpy

TRAJECTORIES = StrOptions({"gradient_descent", "path", "fitted"})


def fitted_model(estimator, X, y, tasks=None, sample_weight=None):
    """A fitted multitask model: the FrozenEstimator's, or a fitted clone of ``estimator``."""
    if isinstance(estimator, FrozenEstimator):
        return estimator.estimator
    model = clone(estimator)
    model._mtif_fit(X, to_numpy(y), tasks, sample_weight)
    return model


class _LinearAdapter:
    """Parameter-level operations of the linear models' ``LinearMultitaskObjective``."""

    def __init__(self, objective):
        self.objective = objective

    @property
    def n_tasks(self):
        return self.objective.n_tasks

    def get_params(self):
        return self.objective.coef.copy(), self.objective.shared.copy()

    def set_params(self, params):
        self.objective.coef, self.objective.shared = params[0].copy(), params[1].copy()

    def zero_params(self):
        coef, shared = self.get_params()
        return np.zeros_like(coef), np.zeros_like(shared)

    def data_losses(self):
        """Mean (sigma-weighted) data loss of every task at the current parameters, (K,)."""
        obj = self.objective
        return np.bincount(obj.codes, weights=obj.row_weights * obj.row_losses(),
                           minlength=obj.n_tasks)

    def shared_gradients(self):
        """Gradient of every task's mean data loss w.r.t. the shared parameters, (K, p)."""
        obj = self.objective
        task_part, shared_part = obj.row_gradients()
        part = task_part if shared_part is None else shared_part
        return obj.task_sums(part * obj.row_weights[:, None])

    def shared_step(self, params, direction):
        """Parameters after the shared step ``-direction`` (every theta_j moves with gamma)."""
        coef, shared = params
        return coef - direction[None, :], shared - direction

    def objective_gradient(self):
        """Gradient of the whole training objective w.r.t. (task blocks, shared block)."""
        obj = self.objective
        task_grad, shared_grad = obj.task_gradients()
        return task_grad, shared_grad.sum(axis=0) + obj.shared_penalty_gradient()

    def lipschitz(self):
        """Largest Hessian eigenvalue of the objective at zero parameters (power iteration).

        The squared loss has constant curvature and the logistic loss has its largest curvature
        (1/4) at raw score 0, so this bounds the curvature everywhere: 1/L is a safe step.
        """
        saved = self.get_params()
        self.set_params(self.zero_params())
        task_blocks, coupling, shared_block = self.objective.hessian_blocks()
        self.set_params(saved)
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
        return 1.01 * value  # power iteration approaches from below

    def output_features(self):
        """Per-row gradients of the model output w.r.t. (shared, own task block), each (n, q).

        For a linear model both are the augmented feature row (theta_k = gamma + v_k).
        """
        obj = self.objective
        return obj.X_aug, obj.X_aug


def adapter_for(model, X, y, tasks=None, sample_weight=None):
    """The training objective of a fitted model, wrapped for the affinity baselines."""
    objective = model._mtif_objective(X, to_numpy(y), tasks=tasks, sample_weight=sample_weight)
    return _LinearAdapter(objective)


def trajectory_points(adapter, trajectory, n_steps, n_points):
    """Parameter points along which the gradient baselines are averaged, and the step size.

    ``"gradient_descent"``: full-batch gradient descent on the model's own training objective
    from zero parameters with step 1/L (L: curvature bound of :meth:`_LinearAdapter.lipschitz`),
    ``n_steps`` steps, ``n_points`` iterates kept evenly spaced (the first is the initial point).
    ``"path"``: ``n_points`` points on the segment from zero to the fitted solution.
    ``"fitted"``: the fitted solution only.
    """
    fitted = adapter.get_params()
    lr = 1.0 / adapter.lipschitz()
    if trajectory == "fitted":
        return [fitted], lr
    zero = adapter.zero_params()
    if trajectory == "path":
        return [(t * fitted[0] + (1 - t) * zero[0], t * fitted[1] + (1 - t) * zero[1])
                for t in np.linspace(0.0, 1.0, n_points)], lr
    keep = set(np.unique(np.linspace(0, n_steps, n_points).round().astype(int)).tolist())
    points, params = [], zero
    for step in range(n_steps + 1):
        if step in keep:
            points.append(params)
        adapter.set_params(params)
        task_grad, shared_grad = adapter.objective_gradient()
        params = (params[0] - lr * task_grad, params[1] - lr * shared_grad)
    adapter.set_params(fitted)
    return points, lr
