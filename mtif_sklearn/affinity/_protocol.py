"""Shared machinery of the affinity baselines: the fitted objective, per-task gradients of the
shared parameters, and the first-order training trajectory along which TAG, cosine and ETAP are
averaged.

The baselines talk to a model through the multitask objective protocol (DESIGN.md section 4)
plus a few operations on its parameters: per-task gradients of the shared parameters, a step on
the shared parameters only, per-task mean data losses, per-row gradients of the model output,
reading/setting the parameters, an initial point and a curvature bound. They are gathered in
:class:`_LinearAdapter` for the linear models and :class:`_TorchAdapter` for shared-bottom
networks (the torch bridge: ``SharedBottomRegressor``, ``SharedBottomClassifier``,
``SharedBottomAdapter``); :func:`adapter_for` picks one from the model's objective, so torch is
only imported when a torch model is passed (by the model itself).

Shared parameters of the linear models. In ``theta_k = gamma + v_k`` coordinates (an exact
reparametrisation of paper eq. 2, whose regulariser ``alpha_k ||v_k||^2`` does not involve gamma)
a step on the shared gamma moves every task's predictor, and the gradient of task k's data loss
with respect to gamma equals its gradient with respect to theta_k. So "the per-task gradient of
the shared parameters" of a linear model is the gradient of the task's mean training loss
``(1/n_k) sum_i w_ki l(y_ki, x_ki^T theta_k + b_k)`` at its current theta_k, and "a step on
the shared parameters using only task i" shifts every theta_j by ``-lr * grad_i``.

Shared parameters of a network. ``f_k(x) = head_k(shared(x))``: the shared parameters are *all*
trainable parameters of the shared bottom, whatever the estimator's ``attribute`` (that option
only sizes MTIF's Hessian; TAG and the gradient cosine are defined by a step of the whole shared
encoder). Per-task gradients are those of ``(1/n_k) sum_i w_ki l(y_ki, f_k(x_ki))`` with respect
to these parameters (torch autograd, float64); a shared step leaves every head unchanged. The
training trajectory starts from a seeded default initialisation of the same architecture (every
submodule's ``reset_parameters()``, seeded with the estimator's integer ``random_state``, else
0), not from zero, where a tanh network is degenerate.
"""

import copy
from numbers import Integral

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
    if hasattr(model, "_mtif_fit"):
        model._mtif_fit(X, to_numpy(y), tasks, sample_weight)
    else:  # e.g. SharedBottomAdapter: fit records the tasks of an already trained network
        model.fit(X, to_numpy(y), tasks=tasks, sample_weight=sample_weight)
    return model


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

    def initial_params(self):
        """Start of the gradient-descent trajectory: zero for the (convex) linear models."""
        return self.zero_params()

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
        blocks = self.objective.hessian_blocks()
        self.set_params(saved)
        return _arrow_top_eigenvalue(*blocks)

    def output_features(self):
        """Per-row gradients of the model output w.r.t. (shared, own task block), each (n, q).

        For a linear model both are the augmented feature row (theta_k = gamma + v_k).
        """
        obj = self.objective
        return obj.X_aug, obj.X_aug


class _TorchAdapter:
    """Parameter-level operations of a shared-bottom network's ``TorchMultitaskObjective``.

    Parameters are ``(theta (K, q), gamma (p,))`` as NumPy arrays: the flat heads in task-code
    order and *all* trainable shared parameters (see the module docstring), float64.
    """

    def __init__(self, objective, seed=0):
        from ..torch._objective import FunctionalSharedBottom

        fn = objective.functional
        self.torch = torch = fn.torch
        # The same network with every shared parameter attributed (trainable ones).
        full = FunctionalSharedBottom(fn.shared, [fn.head], "all", fn.device)
        full.theta = fn.theta.clone()
        self.functional = full
        self.objective = copy.copy(objective)
        self.objective.functional = full
        self.objective.hessian = "gauss_newton"  # for the curvature bound only
        self.seed = int(seed)
        self._rows = []
        for k in range(objective.n_tasks):
            rows = np.flatnonzero((objective.codes == k) & (objective.row_weights != 0))
            index = torch.as_tensor(rows, device=objective.X.device)
            weights = torch.as_tensor(objective.row_weights[rows], dtype=torch.float64,
                                      device=objective.X.device)
            self._rows.append((index, weights))

    @property
    def n_tasks(self):
        return self.objective.n_tasks

    def _numpy(self, tensor):
        return tensor.detach().cpu().numpy().astype(np.float64, copy=True)

    def _tensor(self, array):
        return self.torch.as_tensor(np.asarray(array, dtype=np.float64),
                                    device=self.functional.device).clone()

    def get_params(self):
        return self._numpy(self.functional.theta), self._numpy(self.functional.gamma)

    def set_params(self, params):
        self.functional.theta = self._tensor(params[0])
        self.functional.gamma = self._tensor(params[1])

    def zero_params(self):
        theta, gamma = self.get_params()
        return np.zeros_like(theta), np.zeros_like(gamma)

    def initial_params(self):
        """A seeded default initialisation (``reset_parameters()``) of the same architecture."""
        torch, fn = self.torch, self.functional
        shared = copy.deepcopy(fn.shared)
        heads = [copy.deepcopy(fn.head) for _ in range(self.n_tasks)]
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(self.seed)
            for module in [shared, *heads]:
                for sub in module.modules():
                    if hasattr(sub, "reset_parameters"):
                        sub.reset_parameters()
        params = dict(shared.named_parameters())
        gamma = torch.cat([params[n].detach().reshape(-1) for n in fn.attr_names])
        theta = torch.stack([torch.cat([p.detach().reshape(-1) for p in head.parameters()])
                             for head in heads])
        return self._numpy(theta), self._numpy(gamma)

    def _task_terms(self, theta, gamma):
        """Every task's weighted mean data loss ``sum_i w_i l_i`` as a list of scalar tensors."""
        obj, fn = self.objective, self.functional
        terms = []
        for k, (index, weights) in enumerate(self._rows):
            if index.numel() == 0:
                terms.append(self.torch.zeros((), dtype=self.torch.float64))
                continue
            out = fn.output(theta[k], gamma, obj.X[index])
            terms.append(self.torch.sum(weights * obj.losses[k](out, obj.Y[index])))
        return terms

    def data_losses(self):
        """Mean (sigma-weighted) data loss of every task at the current parameters, (K,)."""
        with self.torch.no_grad():
            terms = self._task_terms(self.functional.theta, self.functional.gamma)
        return np.array([float(t) for t in terms])

    def shared_gradients(self):
        """Gradient of every task's mean data loss w.r.t. the shared parameters, (K, p)."""
        torch = self.torch
        gamma = self.functional.gamma.detach().clone().requires_grad_(True)
        terms = self._task_terms(self.functional.theta.detach(), gamma)
        grads = []
        for term in terms:
            if term.requires_grad:
                grads.append(torch.autograd.grad(term, gamma)[0])
            else:
                grads.append(torch.zeros_like(gamma))
        return self._numpy(torch.stack(grads))

    def shared_step(self, params, direction):
        """Parameters after the shared step ``-direction``: the heads do not move."""
        theta, gamma = params
        return theta.copy(), gamma - direction

    def objective_gradient(self):
        """Gradient of the whole training objective (data terms plus L2) w.r.t. (heads, shared)."""
        torch = self.torch
        theta = self.functional.theta.detach().clone().requires_grad_(True)
        gamma = self.functional.gamma.detach().clone().requires_grad_(True)
        total = sum(self._task_terms(theta, gamma))
        task_grad, shared_grad = torch.autograd.grad(total, (theta, gamma), allow_unused=True)
        task_grad = torch.zeros_like(theta) if task_grad is None else task_grad
        shared_grad = torch.zeros_like(gamma) if shared_grad is None else shared_grad
        decay = self.objective.weight_decay
        return (self._numpy(task_grad + decay * theta.detach()),
                self._numpy(shared_grad + decay * gamma.detach()))

    def lipschitz(self):
        """Curvature estimate: largest eigenvalue of the Gauss-Newton Hessian (plus L2) of the
        objective over heads and all shared parameters, the larger of its values at the initial
        point and at the fitted parameters (a network has no global bound; the trajectory
        functions use 1/L as the step)."""
        saved = self.get_params()
        values = []
        for params in (self.initial_params(), saved):
            self.set_params(params)
            values.append(_arrow_top_eigenvalue(*self.objective.hessian_blocks()))
        self.set_params(saved)
        return max(values)

    def output_features(self):
        """Not available for networks: Grad-TAG supports the linear models only."""
        raise NotImplementedError(
            "gradtag_affinity supports the linear models (MultitaskRidge, MultitaskLogistic) "
            "only; for shared-bottom networks (SharedBottomRegressor, SharedBottomClassifier, "
            "SharedBottomAdapter) use cosine_affinity, tag_affinity or etap_affinity.")


def adapter_for(model, X, y, tasks=None, sample_weight=None):
    """The training objective of a fitted model, wrapped for the affinity baselines.

    A network's objective (it carries a ``functional`` network, see
    ``mtif_sklearn.torch._objective``) gets a :class:`_TorchAdapter`, anything else a
    :class:`_LinearAdapter`.
    """
    objective = model._mtif_objective(X, to_numpy(y), tasks=tasks, sample_weight=sample_weight)
    if getattr(objective, "functional", None) is not None:
        seed = getattr(model, "random_state", None)
        return _TorchAdapter(objective, seed if isinstance(seed, Integral) else 0)
    return _LinearAdapter(objective)


def trajectory_points(adapter, trajectory, n_steps, n_points):
    """Parameter points along which the gradient baselines are averaged, and the step size.

    ``"gradient_descent"``: full-batch gradient descent on the model's own training objective
    from the initial point (zero for the linear models, a seeded default initialisation for a
    network) with step 1/L (L: the adapter's curvature bound, :meth:`_LinearAdapter.lipschitz`),
    ``n_steps`` steps, ``n_points`` iterates kept evenly spaced (the first is the initial point).
    ``"path"``: ``n_points`` points on the segment from the initial point to the fitted solution.
    ``"fitted"``: the fitted solution only.
    """
    fitted = adapter.get_params()
    lr = 1.0 / adapter.lipschitz()
    if trajectory == "fitted":
        return [fitted], lr
    start = adapter.initial_params()
    if trajectory == "path":
        return [(t * fitted[0] + (1 - t) * start[0], t * fitted[1] + (1 - t) * start[1])
                for t in np.linspace(0.0, 1.0, n_points)], lr
    keep = set(np.unique(np.linspace(0, n_steps, n_points).round().astype(int)).tolist())
    points, params = [], start
    for step in range(n_steps + 1):
        if step in keep:
            points.append(params)
        adapter.set_params(params)
        task_grad, shared_grad = adapter.objective_gradient()
        params = (params[0] - lr * task_grad, params[1] - lr * shared_grad)
    adapter.set_params(fitted)
    return points, lr
