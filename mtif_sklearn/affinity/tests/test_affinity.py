"""Tests of the task-affinity baselines, task grouping and group_gains.

Each check compares against an independent computation (a hand-written gradient, a direct loss
evaluation, brute force, manual refits) with tolerances that a wrong sign, a wrong direction or
a wrong normalisation would break.
"""

from itertools import product

import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.frozen import FrozenEstimator

from mtif_sklearn import MTIFInfluence, MultitaskLogistic, MultitaskRidge
from mtif_sklearn.affinity import (
    cosine_affinity,
    etap_affinity,
    gradtag_affinity,
    group_tasks,
    grouping_score,
    tag_affinity,
)
from mtif_sklearn.affinity._gradtag import _surrogate_fit
from mtif_sklearn.affinity._trajectory import lipschitz, training_objective, trajectory_points
from mtif_sklearn.linear._objective import LOSSES
from mtif_sklearn.retrain import group_gains


def _data(n_tasks=5, n_rows=40, d=4, seed=0):
    rng = np.random.default_rng(seed)
    coef = 1.0 + 0.5 * rng.standard_normal((n_tasks, d))
    X = rng.standard_normal((n_tasks * n_rows, d))
    tasks = np.repeat(np.arange(n_tasks), n_rows)
    y = np.einsum("ij,ij->i", X, coef[tasks]) + 0.5 * rng.standard_normal(len(tasks))
    return X, y, tasks


def _two_clusters(seed=0, n_rows=60, d=5):
    """Tasks 0-3 share one direction, tasks 4-7 the opposite one: two clear clusters."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(d)
    u /= np.linalg.norm(u)
    coef = np.array([2 * u] * 4 + [-2 * u] * 4) + 0.1 * rng.standard_normal((8, d))
    X = rng.standard_normal((8 * n_rows, d))
    tasks = np.repeat(np.arange(8), n_rows)
    y = np.einsum("ij,ij->i", X, coef[tasks]) + 0.3 * rng.standard_normal(len(tasks))
    return X, y, tasks


def _hand_gradients(model, X, y, tasks):
    """Per-task gradient of the mean squared error w.r.t. (theta_k, b_k), written out."""
    grads, losses = [], []
    for k in model.tasks_:
        rows = tasks == k
        resid = X[rows] @ model.coef_[k] + model.intercept_[k] - y[rows]
        grads.append(np.append(2 * resid @ X[rows], 2 * resid.sum()) / rows.sum())
        losses.append(np.mean(resid ** 2))
    return np.array(grads), np.array(losses)


def test_cosine_matches_hand_computation():
    # At the fitted point, cos(g_i, g_j) of hand-written gradients (independent of the
    # objective class); a missing 1/n_k or a wrong sign of the residual would not matter to a
    # cosine, but a wrong task order or a task/shared mix-up would.
    X, y, t = _data()
    model = MultitaskRidge(alpha=0.5).fit(X, y, tasks=t)
    G, _ = _hand_gradients(model, X, y, t)
    unit = G / np.linalg.norm(G, axis=1, keepdims=True)
    A = cosine_affinity(FrozenEstimator(model), X, y, tasks=t, trajectory="fitted")
    np.testing.assert_allclose(A, unit @ unit.T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.diag(A), 1.0)


def test_tag_lookahead_matches_direct_evaluation():
    # Z[i, j] = 1 - L_j(theta_j - lr g_i) / L_j(theta_j), evaluated directly from coef_.
    X, y, t = _data()
    model = MultitaskRidge(alpha=0.5).fit(X, y, tasks=t)
    G, L = _hand_gradients(model, X, y, t)
    lr = 0.05
    expected = np.empty((5, 5))
    for i, j in product(range(5), range(5)):
        rows = t == j
        theta = model.coef_[j] - lr * G[i, :-1]
        bias = model.intercept_[j] - lr * G[i, -1]
        expected[i, j] = 1 - np.mean((X[rows] @ theta + bias - y[rows]) ** 2) / L[j]
    A = tag_affinity(FrozenEstimator(model), X, y, tasks=t, trajectory="fitted",
                     learning_rate=lr)
    np.testing.assert_allclose(A, expected, rtol=1e-10, atol=1e-12)


def test_etap_score_is_first_order_tag():
    # ETAP's score <g_j, lr g_i> / (lr L_j) is the derivative of the TAG lookahead at lr -> 0.
    X, y, t = _data()
    model = FrozenEstimator(MultitaskRidge(alpha=0.5).fit(X, y, tasks=t))
    lr = 1e-6
    tag = tag_affinity(model, X, y, tasks=t, trajectory="fitted", learning_rate=lr) / lr
    etap = etap_affinity(model, X, y, tasks=t, trajectory="fitted")
    np.testing.assert_allclose(tag, etap, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("cls", [MultitaskRidge, MultitaskLogistic])
def test_gradient_descent_trajectory_reaches_the_fit(cls):
    # The curvature bound must be at least the true largest Hessian eigenvalue (dense check),
    # and gradient descent with step 1/L must converge to the Newton solution.
    X, y, t = _data(n_tasks=3, n_rows=30, d=3)
    if cls is MultitaskLogistic:
        y = (y > np.median(y)).astype(int)
    model = cls(alpha=1.0, shared_alpha=0.1).fit(X, y, tasks=t)
    objective = training_objective(model, X, y, t)
    saved, start = model._mtif_params(), objective.initial_params()
    task_blocks, coupling, shared_block = objective.hessian_blocks(start)
    K, q = task_blocks.shape[:2]
    dense = np.zeros(((K + 1) * q, (K + 1) * q))
    for k in range(K):
        dense[k * q:(k + 1) * q, k * q:(k + 1) * q] = task_blocks[k]
        dense[k * q:(k + 1) * q, K * q:] = coupling[k]
        dense[K * q:, k * q:(k + 1) * q] = coupling[k].T
    dense[K * q:, K * q:] = shared_block
    top = np.linalg.eigvalsh(dense)[-1]
    assert top <= lipschitz(objective, [start, saved]) <= 1.02 * top
    points, _ = trajectory_points(objective, saved, "gradient_descent", 4000, 3)
    np.testing.assert_allclose(points[-1].task, saved.task, atol=2e-3)
    assert np.linalg.norm(points[0].task) == 0.0  # starts at zero


def test_surrogate_fit_matches_generic_optimiser():
    # The Newton surrogate of Grad-TAG against scipy's BFGS on the same penalised objective.
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((80, 4))
    offset = 0.3 * rng.standard_normal(80)
    weights = rng.uniform(0.5, 1.5, 80) / 80
    for name in ("squared_error", "log_loss"):
        loss = LOSSES[name]
        y = (rng.uniform(size=80) < 0.5).astype(float) if name == "log_loss" else (
            Z @ np.array([1.0, -1.0, 0.5, 0.0]) + rng.standard_normal(80))
        w = _surrogate_fit(Z, y, offset, weights, 0.01, loss)

        def f(v, y=y, loss=loss):
            return np.sum(weights * loss.value(y, offset + Z @ v)) + 0.01 * v @ v

        ref = minimize(f, np.zeros(4), method="BFGS", options={"gtol": 1e-10}).x
        np.testing.assert_allclose(w, ref, atol=1e-5)


def test_gradtag_pairwise_is_loss_drop_of_the_surrogate():
    # [i, j] = L_j({j}) - L_j({i, j}) from the surrogate's own subset losses (direction check).
    X, y, t = _data(n_tasks=4)
    A, details = gradtag_affinity(MultitaskRidge(alpha=0.5), X[::2], y[::2], X[1::2], y[1::2],
                                  tasks=t[::2], tasks_val=t[1::2], n_components=8,
                                  random_state=0, return_details=True)
    subsets = [tuple(s.tolist()) for s in details["subsets"]]
    losses = dict(zip(subsets, details["losses"], strict=True))
    assert details["fits"] == 4 + 6
    assert np.isclose(A[2, 1], losses[(1,)][0] - losses[(1, 2)][0])
    assert np.isclose(A[1, 2], losses[(2,)][0] - losses[(1, 2)][1])
    assert np.all(np.diag(A) == 0)


def _brute_force_best(A, n_groups):
    """Best partition score over every labelling in {0..n_groups-1}^K with no empty group."""
    K = A.shape[0]
    best = -np.inf
    for labels in product(range(n_groups), repeat=K):
        if len(set(labels)) < n_groups:
            continue
        score = 0.0
        for j in range(K):
            mates = [i for i in range(K) if i != j and labels[i] == labels[j]]
            score += np.mean([A[i, j] for i in mates]) if mates else 0.0
        best = max(best, score)
    return best


@pytest.mark.parametrize("n_groups", [2, 3])
def test_exhaustive_grouping_matches_brute_force(n_groups):
    A = np.random.default_rng(n_groups).standard_normal((6, 6))  # asymmetric on purpose
    labels = group_tasks(A, n_groups, method="exhaustive")
    assert len(np.unique(labels)) == n_groups
    assert np.isclose(grouping_score(A, labels), _brute_force_best(A, n_groups))


def test_group_tasks_recovers_block_structure():
    rng = np.random.default_rng(0)
    truth = np.array([0, 0, 1, 1, 1, 2, 2, 0, 2])
    A = (truth[:, None] == truth[None, :]) + 0.3 * rng.standard_normal((9, 9))
    for method in ("spectral", "exhaustive"):
        labels = group_tasks(A, 3, method=method, random_state=0)
        # Same partition up to renaming: co-membership matrices agree.
        assert np.array_equal(labels[:, None] == labels[None, :],
                              truth[:, None] == truth[None, :]), method


def test_two_task_clusters_recovered_from_every_affinity():
    # Tasks 0-3 and 4-7 have opposite coefficients: every method must say within-cluster tasks
    # help each other more than across (direction [source, target], larger = helps), and
    # group_tasks must recover the two clusters from it.
    X, y, t = _two_clusters()
    tr, va = np.arange(len(y)) % 4 != 0, np.arange(len(y)) % 4 == 0
    model = MultitaskRidge(alpha=0.1)
    inf = MTIFInfluence(model).fit(X[tr], y[tr], tasks=t[tr], X_val=X[va], y_val=y[va],
                                   tasks_val=t[va])
    kw = dict(tasks=t[tr], n_steps=30, n_points=4)
    affinities = {
        "mtif": inf.task_influence_,
        "cosine": cosine_affinity(model, X[tr], y[tr], **kw),
        "tag": tag_affinity(model, X[tr], y[tr], **kw),
        "etap": etap_affinity(model, X[tr], y[tr], **kw),
        "gradtag": gradtag_affinity(model, X[tr], y[tr], X[va], y[va], tasks=t[tr],
                                    tasks_val=t[va], n_components=10, random_state=0),
    }
    cluster = np.repeat([0, 1], 4)
    same = (cluster[:, None] == cluster[None, :]) & ~np.eye(8, dtype=bool)
    across = cluster[:, None] != cluster[None, :]
    for name, A in affinities.items():
        assert A[same].mean() > A[across].mean(), name
        labels = group_tasks(A, 2, random_state=0)
        assert np.array_equal(labels, cluster), name


def test_group_gains_matches_manual_refits():
    X, y, t = _data(n_tasks=4, n_rows=30)
    tr, va = np.arange(len(y)) % 3 != 0, np.arange(len(y)) % 3 == 0
    model = MultitaskRidge(alpha=0.3)
    groups = [[0, 2], [1, 2, 3]]
    gains, group_losses, single = group_gains(model, X[tr], y[tr], X[va], y[va], groups,
                                              tasks=t[tr], tasks_val=t[va], return_losses=True)
    for g, members in enumerate(groups):
        rows, rows_val = np.isin(t[tr], members), np.isin(t[va], members)
        fit = MultitaskRidge(alpha=0.3).fit(X[tr][rows], y[tr][rows], tasks=t[tr][rows])
        pred = fit.predict(X[va][rows_val], tasks=t[va][rows_val])
        for k in members:
            sel = t[va][rows_val] == k
            np.testing.assert_allclose(group_losses[g, k],
                                       np.mean((pred[sel] - y[va][rows_val][sel]) ** 2),
                                       rtol=1e-10)
    for k in range(4):
        fit = MultitaskRidge(alpha=0.3).fit(X[tr][t[tr] == k], y[tr][t[tr] == k])
        loss = np.mean((fit.predict(X[va][t[va] == k]) - y[va][t[va] == k]) ** 2)
        np.testing.assert_allclose(single[k], loss, rtol=1e-10)
    np.testing.assert_allclose(gains, single[None, :] - group_losses)
    assert np.isnan(gains[0, 1]) and np.isnan(gains[0, 3]) and np.isnan(gains[1, 0])
    relative = group_gains(model, X[tr], y[tr], X[va], y[va], groups, tasks=t[tr],
                           tasks_val=t[va], relative=True)
    np.testing.assert_allclose(relative, gains / single[None, :])


def test_etap_refinement_uses_true_gains():
    # The refinement's training targets are group_gains of the sampled groups; on its training
    # pairs the refined map must beat a constant (it learnt something from the gains).
    X, y, t = _data(n_tasks=5, n_rows=30)
    tr, va = np.arange(len(y)) % 3 != 0, np.arange(len(y)) % 3 == 0
    model = MultitaskRidge(alpha=0.3)
    A, details = etap_affinity(model, X[tr], y[tr], tasks=t[tr], X_val=X[va], y_val=y[va],
                               tasks_val=t[va], n_train_groups=6, group_size=2, random_state=0,
                               n_steps=20, n_points=3, return_details=True)
    direct = group_gains(model, X[tr], y[tr], X[va], y[va], details["groups"], tasks=t[tr],
                         tasks_val=t[va], relative=True)
    np.testing.assert_allclose(details["gains"], direct, rtol=1e-10)
    assert np.all(np.diag(A) == 0) and details["refits"] == 6 + 5
    truth, pred = [], []
    for g, (i, j) in enumerate(details["groups"]):
        truth += [direct[g, j], direct[g, i]]
        pred += [A[i, j], A[j, i]]
    truth, pred = np.array(truth), np.array(pred)
    assert np.mean((truth - pred) ** 2) < np.var(truth)


def test_string_labels_and_task_order():
    # Affinities follow the sorted task labels, like task_influence_.
    X, y, t = _data(n_tasks=3)
    names = np.array(["c", "a", "b"])[t]
    A = cosine_affinity(MultitaskRidge(), X, y, tasks=t, trajectory="fitted")
    B = cosine_affinity(MultitaskRidge(), X, y, tasks=names, trajectory="fitted")
    order = [1, 2, 0]  # sorted labels a, b, c are the integer tasks 1, 2, 0
    np.testing.assert_allclose(B, A[np.ix_(order, order)], rtol=1e-10)


def test_errors():
    X, y, t = _data(n_tasks=3)
    with pytest.raises(ValueError, match="X_val"):
        etap_affinity(MultitaskRidge(), X, y, tasks=t, n_train_groups=2)
    with pytest.raises(ValueError, match="exceeds"):
        group_tasks(np.eye(3), 4)
    with pytest.raises(ValueError, match="max_partitions"):
        group_tasks(np.zeros((12, 12)), 4, method="exhaustive", max_partitions=100)
    with pytest.raises(ValueError, match="NaN"):
        group_tasks(np.full((3, 3), np.nan), 2)
    with pytest.raises(ValueError, match="unknown task"):
        group_gains(MultitaskRidge(), X, y, X, y, [[0, 7]], tasks=t, tasks_val=t)


def test_exhaustive_grouping_refusal_is_short_for_huge_counts():
    from mtif_sklearn.affinity import group_tasks

    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"about 10\^\d+ partitions of 200 tasks") as info:
        group_tasks(rng.random((200, 200)), n_groups=5, method="exhaustive")
    assert len(str(info.value)) < 200  # was 1,679 characters with a 1,500-digit number
