"""MTIFInfluence(method="newton"): exact for ridge, a dense reference, closer to refits."""

import warnings

import numpy as np
import pytest
from scipy.stats import spearmanr

from mtif_sklearn import MTIFInfluence, MultitaskLogistic, MultitaskRidge
from mtif_sklearn.datasets import make_multitask_regression
from mtif_sklearn.retrain import loo_effects, loto_effects
from mtif_sklearn.utils._testing import DenseLinearObjective, dense_newton_influence


def relative_error(estimate, truth):
    return np.abs(estimate - truth).max() / np.abs(truth).max()


@pytest.fixture(scope="module")
def regression_split():
    X, y, tasks = make_multitask_regression(n_tasks=4, n_samples_per_task=30, n_features=5,
                                            random_state=0)
    Xv, yv, tv = make_multitask_regression(n_tasks=4, n_samples_per_task=12, n_features=5,
                                           random_state=1)
    return X, y, tasks, Xv + 0.1, yv, tv


@pytest.fixture(scope="module")
def logistic_truth(classification_split):
    X, y, tasks, Xv, yv, tv = classification_split
    estimator = MultitaskLogistic(alpha=0.2)
    return (loo_effects(estimator, X, y, Xv, yv, tasks=tasks, tasks_val=tv),
            loto_effects(estimator, X, y, Xv, yv, tasks=tasks, tasks_val=tv))


@pytest.mark.parametrize("config", ["intercept_weights", "dict_alpha_no_intercept"])
def test_ridge_newton_equals_brute_force_refits(config, regression_split):
    X, y, tasks, Xv, yv, tv = regression_split
    if config == "intercept_weights":
        estimator = MultitaskRidge(alpha=0.2, shared_alpha=0.1)
        weights = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    else:
        estimator = MultitaskRidge(alpha={0: 0.05, 1: 0.5, 2: 2.0, 3: 0.2}, fit_intercept=False)
        weights = None
    inf = MTIFInfluence(estimator, method="newton").fit(
        X, y, tasks=tasks, sample_weight=weights, X_val=Xv, y_val=yv, tasks_val=tv)
    loo = loo_effects(estimator, X, y, Xv, yv, tasks=tasks, tasks_val=tv, sample_weight=weights)
    loto = loto_effects(estimator, X, y, Xv, yv, tasks=tasks, tasks_val=tv,
                        sample_weight=weights)
    # Quadratic objective: one Newton step on the objective without the row / task is the
    # refit (Sherman-Morrison / Schur update are exact), so only round-off separates them
    # (measured ~1e-14); first order is off by O(1) relative here.
    np.testing.assert_allclose(inf.influence_, loo, rtol=1e-8, atol=1e-8 * np.abs(loo).max())
    np.testing.assert_allclose(inf.task_influence_, loto, rtol=1e-8,
                               atol=1e-8 * np.abs(loto).max())
    first = MTIFInfluence(estimator).fit(X, y, tasks=tasks, sample_weight=weights, X_val=Xv,
                                         y_val=yv, tasks_val=tv)
    assert relative_error(first.task_influence_, loto) > 1e-3  # the test can tell them apart


def dense_newton_reference(model, X, y, tasks, Xv, yv, tv, *, damping, steps):
    """Newton removal effects from dense formulas (the package's one dense reference)."""
    train, z = DenseLinearObjective.from_model(model, X, y, tasks)
    val, _ = DenseLinearObjective.from_model(model, Xv, yv, tv)
    return dense_newton_influence(train, val, z, damping=damping, steps=steps)


@pytest.mark.parametrize(("damping", "steps"), [(0.0, 1), (0.05, 1), (0.0, 2)])
def test_logistic_newton_equals_dense_reference(damping, steps, classification_split):
    X, y, tasks, Xv, yv, tv = classification_split
    inf = MTIFInfluence(MultitaskLogistic(alpha=0.2, shared_alpha=0.01), method="newton",
                        newton_steps=steps, damping=damping).fit(
        X, y, tasks=tasks, X_val=Xv, y_val=yv, tasks_val=tv)
    rows, task_level = dense_newton_reference(inf.estimator_, X, y, tasks, Xv, yv, tv,
                                              damping=damping, steps=steps)
    # Same steps, different linear algebra (Sherman-Morrison and a Schur update against dense
    # solves of the removed objective): round-off only.
    np.testing.assert_allclose(inf.influence_, rows, rtol=1e-7, atol=1e-9 * np.abs(rows).max())
    np.testing.assert_allclose(inf.task_influence_, task_level, rtol=1e-7,
                               atol=1e-9 * np.abs(task_level).max())


def test_logistic_newton_is_closer_to_refits_than_first_order(classification_split,
                                                              logistic_truth):
    X, y, tasks, Xv, yv, tv = classification_split
    loo, loto = logistic_truth
    errors = {}
    for method, steps in [("first_order", 1), ("newton", 1), ("newton", 2), ("newton", 3)]:
        inf = MTIFInfluence(MultitaskLogistic(alpha=0.2), method=method, newton_steps=steps)
        inf.fit(X, y, tasks=tasks, X_val=Xv, y_val=yv, tasks_val=tv)
        errors[method, steps] = (relative_error(inf.influence_, loo),
                                 relative_error(inf.task_influence_, loto))
    # Measured (rows, tasks): first order (0.20, 0.38), one step (0.049, 0.094), two (0.006,
    # 0.0025), three (0.0008, 2e-6): tasks converge quadratically (full Newton), rows linearly
    # (chord steps). Bounds at about twice the measured ratios.
    for level in (0, 1):
        assert errors["newton", 1][level] < 0.5 * errors["first_order", 1][level], errors
    assert errors["newton", 2][0] < 0.3 * errors["newton", 1][0], errors
    assert errors["newton", 3][0] < 0.3 * errors["newton", 2][0], errors
    assert errors["newton", 2][1] < 0.1 * errors["newton", 1][1], errors
    assert errors["newton", 3][1] < 1e-3 * errors["newton", 1][1], errors


def test_newton_transform_sample_influence_and_chunks_agree(classification_split):
    X, y, tasks, Xv, yv, tv = classification_split
    inf = MTIFInfluence(MultitaskLogistic(alpha=0.2), method="newton").fit(
        X, y, tasks=tasks, X_val=Xv, y_val=yv, tasks_val=tv)
    # Unit sample weights: transform of the training rows removes exactly those rows.
    np.testing.assert_allclose(inf.transform(X, y, tasks=tasks), inf.influence_, rtol=1e-12,
                               atol=1e-15)
    per_row = inf.sample_influence(Xv, yv, tasks=tv)
    assert per_row.shape == (len(y), len(yv))
    # V_k is the mean of task k's validation-row losses, evaluated at the same new parameters.
    for k, label in enumerate(inf.tasks_):
        np.testing.assert_allclose(per_row[:, tv == label].mean(axis=1), inf.influence_[:, k],
                                   rtol=1e-10, atol=1e-14)
    chunked = MTIFInfluence(MultitaskLogistic(alpha=0.2), method="newton", batch_size=7,
                            n_jobs=2, newton_steps=1).fit(
        X, y, tasks=tasks, X_val=Xv, y_val=yv, tasks_val=tv)
    np.testing.assert_allclose(chunked.influence_, inf.influence_, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(chunked.task_influence_, inf.task_influence_, rtol=1e-12,
                               atol=1e-15)


def test_newton_keeps_shapes_nan_columns_and_sign(regression_split):
    X, y, tasks, Xv, yv, tv = regression_split
    keep = tv != 2  # task 2 has no validation rows: its column is NaN, as in first order
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        first = MTIFInfluence(MultitaskRidge(alpha=0.2)).fit(
            X, y, tasks=tasks, X_val=Xv[keep], y_val=yv[keep], tasks_val=tv[keep])
        newton = MTIFInfluence(MultitaskRidge(alpha=0.2), method="newton").fit(
            X, y, tasks=tasks, X_val=Xv[keep], y_val=yv[keep], tasks_val=tv[keep])
    assert newton.influence_.shape == first.influence_.shape == (len(y), 4)
    assert newton.task_influence_.shape == (4, 4)
    np.testing.assert_array_equal(np.isnan(newton.influence_), np.isnan(first.influence_))
    assert np.isnan(newton.task_influence_[:, 2]).all()
    # Same sign convention: the two estimates of the same quantity agree in sign nearly always.
    finite = np.isfinite(first.influence_)
    assert np.mean(np.sign(newton.influence_[finite]) == np.sign(first.influence_[finite])) > 0.9


def test_newton_without_a_determined_shared_block_warns_and_gives_nan():
    # One task, unpenalised shared intercept: without the task the shared block is singular.
    X, y, tasks = make_multitask_regression(n_tasks=1, n_samples_per_task=30, n_features=3,
                                            random_state=0)
    inf = MTIFInfluence(MultitaskRidge(shared_alpha=0.0), method="newton", random_state=0)
    with pytest.warns(UserWarning, match="without task 0 is not positive definite.*damping"):
        inf.fit(X, y, tasks=tasks)
    assert np.isnan(inf.task_influence_).all()
    assert np.isfinite(inf.influence_).all()


def test_invalid_method_is_rejected(regression_split):
    X, y, tasks, Xv, yv, tv = regression_split
    with pytest.raises(ValueError, match="method"):
        MTIFInfluence(MultitaskRidge(), method="exact").fit(X, y, tasks=tasks)
    with pytest.raises(ValueError, match="newton_steps"):
        MTIFInfluence(MultitaskRidge(), method="newton", newton_steps=0).fit(X, y, tasks=tasks)


@pytest.mark.slow
def test_chemical_task_level_newton_ranks_like_loto():
    """Real data (10 tasks, 20% validation): Newton ranks tasks closer to LOTO than first order."""
    from pathlib import Path

    from mtif_sklearn.datasets import load_chemical

    path = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "chemical"
    if not path.exists():
        pytest.skip("shared chemical data not available")
    X, y, tasks = load_chemical(path)
    estimator = MultitaskLogistic(alpha=0.01)  # as in tests/test_real_data.py
    spearman = {}
    for method in ("first_order", "newton"):
        inf = MTIFInfluence(estimator, method=method, random_state=0).fit(X, y, tasks=tasks)
        spearman[method] = inf.task_influence_
    tr, va = inf.train_indices_, inf.val_indices_
    truth = loto_effects(estimator, X[tr], y[tr], X[va], y[va], tasks=tasks[tr],
                         tasks_val=tasks[va])
    K = truth.shape[0]
    means, diagonal = {}, {}
    for method, matrix in spearman.items():
        means[method] = np.mean([spearmanr(matrix[np.arange(K) != k, k],
                                           truth[np.arange(K) != k, k])[0] for k in range(K)])
        diagonal[method] = relative_error(np.diag(matrix), np.diag(truth))
    # Measured with this split (benchmarks/bench_newton.py (b)): mean Spearman 0.993 first
    # order, 0.998 newton; max relative error of the diagonal 0.98 first order, 0.31 newton.
    assert means["newton"] >= 0.97, means
    assert means["newton"] >= means["first_order"] - 0.005, means
    assert diagonal["newton"] < 0.5 * diagonal["first_order"], diagonal
