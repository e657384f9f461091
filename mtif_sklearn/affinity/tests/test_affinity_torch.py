"""Affinity baselines on shared-bottom networks (the torch bridge), against hand computations.

The per-task gradients are recomputed here with ``torch.autograd.grad`` on the fitted module
itself (not through the functional objective), and the TAG lookahead by stepping a copy of the
module's shared layers and evaluating the losses directly.
"""

import copy
import warnings

import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator

from mtif_sklearn.affinity import (
    cosine_affinity,
    etap_affinity,
    gradtag_affinity,
    tag_affinity,
)
from mtif_sklearn.affinity._trajectory import (  # noqa: E402
    task_data_losses,
    training_objective,
    trajectory_points,
)

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from mtif_sklearn.torch import SharedBottomClassifier, SharedBottomRegressor  # noqa: E402


def _data(n_tasks=4, n_rows=25, d=3, seed=0):
    rng = np.random.default_rng(seed)
    coef = 1.0 + 0.7 * rng.standard_normal((n_tasks, d))
    X = rng.standard_normal((n_tasks * n_rows, d))
    tasks = np.repeat(np.arange(n_tasks), n_rows)
    y = np.tanh(np.einsum("ij,ij->i", X, coef[tasks])) + 0.1 * rng.standard_normal(len(tasks))
    return X, y, tasks


@pytest.fixture(scope="module")
def fitted():
    X, y, t = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = SharedBottomRegressor((3,), max_iter=40, random_state=0).fit(X, y, tasks=t)
    return model, X, y, t


def _task_losses(net, X, y, t, tasks_):
    """Mean squared error of every task, a differentiable tensor each."""
    x = torch.tensor(X, dtype=torch.float64)
    target = torch.tensor(y, dtype=torch.float64)
    losses = []
    for k, label in enumerate(tasks_):
        rows = torch.as_tensor(np.flatnonzero(t == label))
        out = net["heads"][k](net["shared"](x[rows]))[:, 0]
        losses.append(torch.mean((out - target[rows]) ** 2))
    return losses


def _hand_gradients(model, X, y, t):
    net = copy.deepcopy(model.module_)
    shared = list(net["shared"].parameters())
    grads = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, shared)])
             for loss in _task_losses(net, X, y, t, model.tasks_)]
    return torch.stack(grads).numpy()


def test_cosine_matches_autograd(fitted):
    model, X, y, t = fitted
    A = cosine_affinity(FrozenEstimator(model), X, y, tasks=t, trajectory="fitted")
    G = _hand_gradients(model, X, y, t)
    unit = G / np.linalg.norm(G, axis=1, keepdims=True)
    np.testing.assert_allclose(A, unit @ unit.T, rtol=1e-8, atol=1e-12)
    assert A.shape == (4, 4)
    np.testing.assert_allclose(np.diag(A), 1.0)


def test_tag_lookahead_matches_direct_evaluation(fitted):
    model, X, y, t = fitted
    lr = 0.05
    A = tag_affinity(FrozenEstimator(model), X, y, tasks=t, trajectory="fitted",
                     learning_rate=lr)
    G = _hand_gradients(model, X, y, t)
    with torch.no_grad():
        before = np.array([float(v) for v in _task_losses(model.module_, X, y, t, model.tasks_)])
    expected = np.empty((4, 4))
    for i in range(4):  # source i: step the shared layers with task i's gradient only
        net = copy.deepcopy(model.module_)
        flat = torch.as_tensor(G[i])
        start = 0
        with torch.no_grad():
            for p in net["shared"].parameters():
                p -= lr * flat[start:start + p.numel()].reshape(p.shape)
                start += p.numel()
            after = np.array([float(v) for v in _task_losses(net, X, y, t, model.tasks_)])
        expected[i] = 1.0 - after / before
    np.testing.assert_allclose(A, expected, rtol=1e-8, atol=1e-12)
    assert np.all(np.diag(A) > 0)  # a small step for a task lowers its own loss


def test_etap_is_first_order_tag(fitted):
    model, X, y, t = fitted
    lr = 1e-6
    tag = tag_affinity(FrozenEstimator(model), X, y, tasks=t, trajectory="fitted",
                       learning_rate=lr) / lr
    etap = etap_affinity(FrozenEstimator(model), X, y, tasks=t, trajectory="fitted")
    np.testing.assert_allclose(tag, etap, rtol=1e-4, atol=1e-6)


def test_task_order_follows_tasks_(fitted):
    model, X, y, t = fitted
    names = np.array(["d", "c", "b", "a"])[t]  # tasks_ = a, b, c, d: reversed codes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        A = cosine_affinity(SharedBottomRegressor((3,), max_iter=40, random_state=0), X, y,
                            tasks=t, trajectory="fitted")
        B = cosine_affinity(SharedBottomRegressor((3,), max_iter=40, random_state=0), X, y,
                            tasks=names, trajectory="fitted")
    # Same network up to the order of the heads: B's task m is A's task 3 - m.
    rev = np.arange(4)[::-1]
    model_b = SharedBottomRegressor((3,), max_iter=40, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model_b.fit(X, y, tasks=names)
    G = _hand_gradients(model_b, X, y, names)
    unit = G / np.linalg.norm(G, axis=1, keepdims=True)
    np.testing.assert_allclose(B, unit @ unit.T, rtol=1e-8, atol=1e-12)
    assert list(model_b.tasks_) == ["a", "b", "c", "d"]
    assert A.shape == B[np.ix_(rev, rev)].shape == (4, 4)


def test_gradient_descent_trajectory_on_a_network(fitted):
    model, X, y, t = fitted
    objective = training_objective(model, X, y, t)
    fitted_params = model._mtif_params(view="training")
    start = objective.initial_params()
    assert np.any(start.shared != 0) and not np.allclose(start.shared, fitted_params.shared)
    points, lr = trajectory_points(objective, fitted_params, "gradient_descent", 30, 4)
    assert len(points) == 4 and lr > 0
    np.testing.assert_array_equal(points[0].shared, start.shared)
    np.testing.assert_array_equal(model._mtif_params(view="training").shared,
                                  fitted_params.shared)  # the model is untouched
    values = []
    for params in points:  # the step 1/L decreases the objective along the run
        values.append(task_data_losses(objective, params).sum() + 0.5 * model.weight_decay * (
            np.sum(params.task ** 2) + np.sum(params.shared ** 2)))
    assert np.all(np.diff(values) < 0)
    A = tag_affinity(FrozenEstimator(model), X, y, tasks=t, n_steps=30, n_points=4)
    assert A.shape == (4, 4) and np.all(np.isfinite(A))


def test_classifier_and_gradtag_error():
    X, y, t = _data(n_tasks=3, n_rows=20)
    labels = (y > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = SharedBottomClassifier((3,), max_iter=20, random_state=0).fit(X, labels, tasks=t)
    A = cosine_affinity(FrozenEstimator(clf), X, labels, tasks=t, trajectory="path",
                        n_points=3)
    assert A.shape == (3, 3) and np.allclose(A, A.T)
    # Networks lack the "linearisation" capability Grad-TAG needs: refused up front, by name.
    with pytest.raises(ValueError, match="gradtag_affinity needs.*SharedBottomClassifier"):
        gradtag_affinity(FrozenEstimator(clf), X, labels, X, labels, tasks=t, tasks_val=t)
