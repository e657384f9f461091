"""``intercept_alpha``: the tie of every task's intercept to the shared one, in the fit, the
influence Hessian and every refit.

Ground truth is the package's one dense reference (:class:`DenseLinearObjective`, written from
the objective's formula with its own ``intercept_alpha``) and brute-force refits.
"""

import numpy as np
import pytest
import sklearn
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold

from mtif_sklearn import MTIFInfluence, MultitaskLogistic, MultitaskRidge
from mtif_sklearn.retrain import loto_effects
from mtif_sklearn.utils._testing import DenseLinearObjective, dense_influence


def levels_data(seed=0, n_tasks=4, n_per_task=20, n_features=3, n_val=10):
    """Tasks with shared slopes but very different levels (as respondents' rating scales)."""
    rng = np.random.default_rng(seed)
    coef = np.array([1.0, -0.5, 0.25])[:n_features]
    offsets = np.linspace(-4.0, 4.0, n_tasks)

    def draw(n):
        tasks = np.repeat(np.arange(n_tasks), n)
        X = rng.standard_normal((tasks.size, n_features))
        y = X @ coef + offsets[tasks] + 0.5 * rng.standard_normal(tasks.size)
        return X, y, tasks

    return draw(n_per_task) + draw(n_val)


def as_labels(y, tasks):
    """Binary labels with both classes in every task (a free intercept needs both)."""
    medians = np.array([np.median(y[tasks == k]) for k in range(tasks.max() + 1)])
    return (y > medians[tasks]).astype(int)


INTERCEPT_ALPHAS = [0.7, {0: 0.0, 1: 0.3, 2: 2.0, 3: 0.0}, None]


def dense_optimum(model, X, y, tasks, sample_weight=None):
    """The dense reference's minimiser (the shared intercept pinned at 0 when no intercept is
    tied, where the objective does not involve it)."""
    objective, z_model = DenseLinearObjective.from_model(model, X, y, tasks, sample_weight)
    if np.any(objective.tie[:, -1] > 0):
        return objective, objective.minimise(), z_model
    free = np.arange(objective.size) != objective.size - 1  # drop the shared intercept c
    z = np.zeros(objective.size)
    for _ in range(1 if not objective.logistic else 100):
        grad, hess = objective.gradient(z), objective.hessian(z)
        step = np.linalg.solve(hess[np.ix_(free, free)], grad[free])
        z[free] -= step
        if np.abs(step).max() < 1e-13:
            break
    return objective, z, z_model


# --- the fit --------------------------------------------------------------------------------------
@pytest.mark.parametrize("intercept_alpha", INTERCEPT_ALPHAS + [0.0])
@pytest.mark.parametrize("Model", [MultitaskRidge, MultitaskLogistic])
def test_fit_equals_the_dense_reference(Model, intercept_alpha):
    X, y, tasks, *_ = levels_data()
    y = as_labels(y, tasks) if Model is MultitaskLogistic else y
    weights = np.random.default_rng(1).uniform(0.5, 2.0, y.size)
    model = Model(alpha=0.4, intercept_alpha=intercept_alpha).fit(X, y, tasks=tasks,
                                                                  sample_weight=weights)
    objective, z_dense, z_model = dense_optimum(model, X, y, tasks, weights)
    q = objective.q
    # Two solvers of the same strictly convex problem: round-off (ridge) or Newton's tol.
    tol = 1e-10 if Model is MultitaskRidge else 1e-7
    np.testing.assert_allclose(z_model[:-1], z_dense[:-1], atol=tol)
    # The objective's gradient vanishes at the fit (c included: with free intercepts nothing
    # depends on it, so any reported c is a minimiser).
    assert np.abs(objective.gradient(z_model)).max() < tol
    if np.any(objective.tie[:, -1] > 0):
        np.testing.assert_allclose(z_model[-1], z_dense[-1], atol=tol)
    assert z_model.size == (len(np.unique(tasks)) + 1) * q


def test_free_intercepts_fit_every_task_level():
    X, y, tasks, *_ = levels_data()
    model = MultitaskRidge(alpha=5.0, intercept_alpha=0).fit(X, y, tasks=tasks)
    # The derivative in b_k has no tie term: every task's residuals sum to zero.
    residuals = y - model.predict(X, tasks=tasks)
    np.testing.assert_allclose(np.bincount(tasks, weights=residuals), 0.0, atol=1e-10)
    tied = MultitaskRidge(alpha=5.0).fit(X, y, tasks=tasks)
    # With the slopes' alpha on the intercepts the levels (-4 .. 4) are shrunk together.
    assert np.ptp(tied.intercept_) < 0.8 * np.ptp(model.intercept_)


def test_all_free_intercepts_report_the_weighted_mean_as_shared_intercept():
    X, y, tasks, *_ = levels_data(n_per_task=20)
    keep = np.ones(y.size, dtype=bool)
    keep[:15] = False  # task 0 keeps 5 rows: unequal n_k
    X, y, tasks = X[keep], y[keep], tasks[keep]
    model = MultitaskRidge(alpha=0.4, intercept_alpha=0.0, unknown_task="shared").fit(
        X, y, tasks=tasks)
    sizes = np.bincount(tasks)
    assert model.shared_intercept_ == pytest.approx(np.average(model.intercept_, weights=sizes),
                                                    abs=1e-12)
    # The objective's own c is pinned at 0 (it is in no term); the protocol sees that point.
    assert model._mtif_params().shared[-1] == 0.0
    new_rows = np.random.default_rng(3).standard_normal((4, X.shape[1]))
    np.testing.assert_allclose(model.predict(new_rows, tasks=np.full(4, 99)),
                               new_rows @ model.shared_coef_ + model.shared_intercept_)


def test_float_and_mapping_of_the_same_values_agree():
    X, y, tasks, *_ = levels_data()
    as_float = MultitaskRidge(alpha=0.4, intercept_alpha=0.2).fit(X, y, tasks=tasks)
    as_mapping = MultitaskRidge(alpha=0.4, intercept_alpha=dict.fromkeys(range(4), 0.2)).fit(
        X, y, tasks=tasks)
    np.testing.assert_allclose(as_float.intercept_, as_mapping.intercept_, atol=1e-12)
    default = MultitaskRidge(alpha=0.4).fit(X, y, tasks=tasks)
    same_as_alpha = MultitaskRidge(alpha=0.4, intercept_alpha=0.4).fit(X, y, tasks=tasks)
    np.testing.assert_allclose(default.coef_, same_as_alpha.coef_, atol=1e-12)


@pytest.mark.parametrize("value, match", [
    (-1.0, "intercept_alpha"),
    ({0: 0.1, 1: 0.1}, "no value for task"),
    ({0: 0.1, 1: -2.0, 2: 0.0, 3: 0.1}, r"intercept_alpha\[1\]=-2.0"),
])
def test_bad_intercept_alpha_is_a_clear_error(value, match):
    X, y, tasks, *_ = levels_data()
    with pytest.raises(ValueError, match=match):
        MultitaskRidge(intercept_alpha=value).fit(X, y, tasks=tasks)


def test_free_intercept_of_a_one_class_task_is_refused():
    X, y, tasks, *_ = levels_data()
    labels = as_labels(y, tasks)
    labels[tasks == 2] = 1
    with pytest.raises(ValueError, match=r"Task\(s\) \[2\] have rows of one class"):
        MultitaskLogistic(intercept_alpha={0: 0.0, 1: 0.0, 2: 0.0, 3: 1.0}).fit(X, labels,
                                                                               tasks=tasks)
    # tied, the same task fits (the tie regularises its intercept)
    MultitaskLogistic(intercept_alpha={0: 0.0, 1: 0.0, 2: 1.0, 3: 1.0}).fit(X, labels,
                                                                           tasks=tasks)


# --- influence and refits see the same penalty ----------------------------------------------------
@pytest.mark.parametrize("intercept_alpha", INTERCEPT_ALPHAS + [0.0])
@pytest.mark.parametrize("Model", [MultitaskRidge, MultitaskLogistic])
def test_influence_equals_the_dense_influence(Model, intercept_alpha):
    X, y, tasks, Xv, yv, tv = levels_data()
    if Model is MultitaskLogistic:
        y, yv = as_labels(y, tasks), as_labels(yv, tv)
    inf = MTIFInfluence(Model(alpha=0.4, intercept_alpha=intercept_alpha)).fit(
        X, y, tasks=tasks, X_val=Xv, y_val=yv, tasks_val=tv)
    train, z = DenseLinearObjective.from_model(inf.estimator_, X, y, tasks)
    val, _ = DenseLinearObjective.from_model(inf.estimator_, Xv, yv, tv)
    if not np.any(train.tie[:, -1] > 0):
        # c is in no term: pin it in the dense Hessian too (any positive curvature: nothing
        # couples to c, so the influence does not depend on its value).
        train.penalty[-1] = 1.0
        z[-1] = 0.0
    rows, task_level = dense_influence(train, val, z)
    np.testing.assert_allclose(inf.influence_, rows, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(inf.task_influence_, task_level, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("intercept_alpha", [{0: 0.0, 1: 0.3, 2: 2.0, 3: 0.0}, 0.0, 1.5])
def test_newton_task_removal_is_the_loto_refit_for_ridge(intercept_alpha):
    X, y, tasks, Xv, yv, tv = levels_data()
    model = MultitaskRidge(alpha=0.4, intercept_alpha=intercept_alpha)
    newton = MTIFInfluence(model, method="newton").fit(X, y, tasks=tasks, X_val=Xv, y_val=yv,
                                                       tasks_val=tv)
    refits = loto_effects(model, X, y, Xv, yv, tasks=tasks, tasks_val=tv)
    # One Newton step on a quadratic objective is its minimiser: equal to round-off.
    np.testing.assert_allclose(newton.task_influence_, refits, rtol=1e-8, atol=1e-10)


def test_refit_without_tasks_uses_the_same_intercept_penalty():
    X, y, tasks, *_ = levels_data()
    model = MultitaskRidge(alpha=0.4, intercept_alpha={0: 0.0, 1: 0.3, 2: 2.0, 3: 0.0})
    data = clone(model)._mtif_data(X, y, tasks, reset=True)
    refit = clone(model)._mtif_refit(data, dropped_tasks=[2])
    keep = tasks != 2
    reduced = DenseLinearObjective(X[keep], y[keep], np.searchsorted([0, 1, 3], tasks[keep]), 3,
                                   alpha=0.4, shared_alpha=model.shared_alpha,
                                   intercept_alpha=np.array([0.0, 0.3, 0.0]))
    z = reduced.minimise()
    q = reduced.q
    kept_blocks = np.column_stack([refit.coef_, refit.intercept_])[[0, 1, 3]]
    np.testing.assert_allclose(kept_blocks.ravel(), z[:3 * q], atol=1e-10)
    np.testing.assert_allclose(np.append(refit.shared_coef_, refit.shared_intercept_), z[3 * q:],
                               atol=1e-10)


def test_only_free_intercepts_left_after_dropping_still_fit():
    # Dropping the only tasks that tie their intercepts leaves c in no term of the shared fit;
    # the refit pins it like the all-free model instead of failing.
    X, y, tasks, *_ = levels_data()
    model = MultitaskRidge(alpha=0.4, intercept_alpha={0: 0.0, 1: 0.5, 2: 0.0, 3: 0.0})
    data = clone(model)._mtif_data(X, y, tasks, reset=True)
    refit = clone(model)._mtif_refit(data, dropped_tasks=[1])
    free = MultitaskRidge(alpha=0.4, intercept_alpha=0.0)
    keep = tasks != 1
    alone = free.fit(X[keep], y[keep], tasks=tasks[keep])
    np.testing.assert_allclose(refit.coef_[[0, 2, 3]], alone.coef_, atol=1e-10)
    np.testing.assert_allclose(refit.intercept_[[0, 2, 3]], alone.intercept_, atol=1e-10)


# --- tuning ---------------------------------------------------------------------------------------
def test_grid_search_tunes_intercept_alpha_and_finds_free_levels():
    X, y, tasks, *_ = levels_data(n_per_task=30)
    with sklearn.config_context(enable_metadata_routing=True):
        search = GridSearchCV(MultitaskRidge(alpha=5.0), {"intercept_alpha": [None, 1.0, 0.0]},
                              cv=KFold(3, shuffle=True, random_state=0))
        search.fit(X, y, tasks=tasks)
    # Levels from -4 to 4 with strong slope pooling: tying the intercepts costs R^2.
    assert search.best_params_["intercept_alpha"] == 0.0
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


def test_free_intercepts_lower_held_out_error_when_task_levels_differ():
    X, y, tasks, Xt, yt, tt = levels_data(n_per_task=15, n_val=200)
    tied = MultitaskRidge(alpha=5.0).fit(X, y, tasks=tasks)
    free = MultitaskRidge(alpha=5.0, intercept_alpha=0).fit(X, y, tasks=tasks)
    mse_tied = np.mean((tied.predict(Xt, tasks=tt) - yt) ** 2)
    mse_free = np.mean((free.predict(Xt, tasks=tt) - yt) ** 2)
    assert mse_free < 0.8 * mse_tied  # noise variance 0.25: the tie's bias dominates
