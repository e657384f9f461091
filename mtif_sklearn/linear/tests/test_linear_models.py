"""MultitaskRidge and MultitaskLogistic: exactness, limits, scikit-learn integration, bad input.

Ground truth here never comes from package internals: the ridge optimum is the solution of the
dense normal equations written out below from the objective's formula, the logistic optimum is
found by scipy.optimize on the objective written out below, and the limits are compared with
plain scikit-learn estimators.

Objective (both models, see the class docstrings)::

    sum_k [ (1/n_k) sum_i w_ki loss(y_ki, x_ki @ theta_k + b_k)
            + alpha_k (||theta_k - gamma||^2 + (b_k - c)^2) ] + shared_alpha ||gamma||^2

with n_k the total sample weight of task k and the shared intercept c not penalised.
"""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
from scipy import optimize
from scipy.special import expit
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import GridSearchCV, KFold, cross_val_predict, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mtif_sklearn import MultitaskLogistic, MultitaskRidge
from mtif_sklearn.utils._testing import DenseLinearObjective

MODELS = [MultitaskRidge, MultitaskLogistic]


# --- data and independent references -----------------------------------------------------------
def _regression_data(sizes=(12, 17, 25), n_features=3, seed=0):
    """Small multitask regression: related tasks with different intercepts, unequal sizes."""
    rng = np.random.default_rng(seed)
    tasks = np.repeat(np.arange(len(sizes)), sizes)
    X = rng.standard_normal((tasks.size, n_features))
    coef = np.array([1.0, -2.0, 0.5])[:n_features] + 0.5 * rng.standard_normal(
        (len(sizes), n_features))
    y = np.einsum("ij,ij->i", X, coef[tasks]) + tasks - 1.0 + 0.5 * rng.standard_normal(tasks.size)
    return X, y, tasks


def _classification_data(sizes=(30, 40, 50), n_features=3, seed=1):
    """Small, noisy (not separable) binary multitask data with both classes in every task."""
    rng = np.random.default_rng(seed)
    tasks = np.repeat(np.arange(len(sizes)), sizes)
    X = rng.standard_normal((tasks.size, n_features))
    coef = np.array([1.5, -1.0, 0.5])[:n_features] + 0.3 * rng.standard_normal(
        (len(sizes), n_features))
    raw = np.einsum("ij,ij->i", X, coef[tasks]) + 0.3 * (tasks - 1)
    y = (rng.uniform(size=tasks.size) < expit(raw)).astype(int)
    return X, y, tasks


def _alpha_vector(alpha, task_labels):
    if isinstance(alpha, dict):
        return np.array([alpha[t] for t in task_labels], dtype=float)
    return np.full(len(task_labels), float(alpha))


def _dense(X, y, tasks, *, alpha, shared_alpha, fit_intercept=True, loss="squared_error",
           sample_weight=None):
    """The objective written densely from its formula (mtif_sklearn.utils._testing)."""
    labels = np.unique(tasks)
    return DenseLinearObjective(X, y, np.searchsorted(labels, tasks), len(labels),
                                alpha=_alpha_vector(alpha, labels), shared_alpha=shared_alpha,
                                fit_intercept=fit_intercept, loss=loss,
                                sample_weight=sample_weight)


def _dense_ridge_solution(X, y, tasks, *, alpha, shared_alpha, fit_intercept, sample_weight=None):
    """Minimiser of the ridge objective from its full dense normal equations."""
    dense = _dense(X, y, tasks, alpha=alpha, shared_alpha=shared_alpha,
                   fit_intercept=fit_intercept, sample_weight=sample_weight)
    z = dense.minimise()
    K = dense.K
    return z[: K * dense.q].reshape(K, dense.q), z[K * dense.q:]


def _scipy_logistic_solution(X, y01, tasks, *, alpha, shared_alpha, sample_weight=None):
    """Minimiser of the dense logistic objective by scipy's trust-region Newton (an optimiser
    independent of the package's)."""
    dense = _dense(X, y01, tasks, alpha=alpha, shared_alpha=shared_alpha, loss="log_loss",
                   sample_weight=sample_weight)
    result = optimize.minimize(lambda z: (dense.value(z), dense.gradient(z)),
                               np.zeros(dense.size), jac=True, hess=dense.hessian,
                               method="trust-exact", options={"gtol": 1e-11, "maxiter": 1000})
    # The reference itself must be converged, otherwise a mismatch proves nothing.
    assert np.abs(dense.gradient(result.x)).max() < 1e-10
    K, q = dense.K, dense.q
    return result.x[: K * q].reshape(K, q), result.x[K * q:]


# --- exactness ----------------------------------------------------------------------------------
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("alpha", [0.3, {0: 0.01, 1: 2.0, 2: 0.2}])
def test_ridge_fit_equals_dense_normal_equations(fit_intercept, weighted, alpha):
    X, y, tasks = _regression_data()
    sw = np.random.default_rng(5).uniform(0.2, 3.0, len(y)) if weighted else None
    model = MultitaskRidge(alpha=alpha, shared_alpha=0.05, fit_intercept=fit_intercept)
    model.fit(X, y, tasks=tasks, sample_weight=sw)
    betas, g = _dense_ridge_solution(X, y, tasks, alpha=alpha, shared_alpha=0.05,
                                     fit_intercept=fit_intercept, sample_weight=sw)
    d = X.shape[1]
    # Both sides solve the same well-conditioned (cond ~ 1e3) linear system in float64:
    # agreement to ~1e-12 is expected; 1e-8 leaves room and still catches any formula slip.
    np.testing.assert_allclose(model.coef_, betas[:, :d], rtol=0, atol=1e-8)
    np.testing.assert_allclose(model.shared_coef_, g[:d], rtol=0, atol=1e-8)
    if fit_intercept:
        np.testing.assert_allclose(model.intercept_, betas[:, d], rtol=0, atol=1e-8)
        assert model.shared_intercept_ == pytest.approx(g[d], abs=1e-8)
    else:
        assert np.all(model.intercept_ == 0) and model.shared_intercept_ == 0


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("alpha", [0.1, {0: 0.02, 1: 1.0, 2: 0.3}])
def test_logistic_fit_equals_scipy_minimiser_of_full_objective(weighted, alpha):
    X, y, tasks = _classification_data()
    sw = np.random.default_rng(6).uniform(0.2, 3.0, len(y)) if weighted else None
    model = MultitaskLogistic(alpha=alpha, shared_alpha=0.01).fit(X, y, tasks=tasks,
                                                                   sample_weight=sw)
    betas, g = _scipy_logistic_solution(X, y.astype(float), tasks, alpha=alpha,
                                        shared_alpha=0.01, sample_weight=sw)
    # The model stops at gradient <= 1e-8, scipy's trust-region Newton at <= 1e-10; the
    # smallest Hessian eigenvalue is ~1e-2, so both are within ~1e-6 of the true minimiser
    # (in practice ~1e-9, Newton converges quadratically).
    np.testing.assert_allclose(model.coef_, betas[:, :-1], rtol=0, atol=1e-6)
    np.testing.assert_allclose(model.intercept_, betas[:, -1], rtol=0, atol=1e-6)
    np.testing.assert_allclose(model.shared_coef_, g[:-1], rtol=0, atol=1e-6)
    assert model.shared_intercept_ == pytest.approx(g[-1], abs=1e-6)


def test_logistic_probabilities_follow_classes_order_with_string_labels():
    X, y, tasks = _classification_data()
    y_str = np.array(["no", "yes"])[y]
    model = MultitaskLogistic().fit(X, y_str, tasks=tasks)
    reference = MultitaskLogistic().fit(X, y, tasks=tasks)
    assert model.classes_.tolist() == ["no", "yes"]
    proba = model.predict_proba(X, tasks=tasks)
    raw = model.decision_function(X, tasks=tasks)
    # Same 0/1 coding, same fit: bit-for-bit up to round-off.
    np.testing.assert_allclose(raw, reference.decision_function(X, tasks=tasks), atol=1e-12)
    # Column 1 is P(classes_[1]) = sigmoid(decision_function); rows sum to one.
    np.testing.assert_allclose(proba[:, 1], expit(raw), atol=1e-12)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(model.predict_log_proba(X, tasks=tasks), np.log(proba), atol=1e-10)
    np.testing.assert_array_equal(model.predict(X, tasks=tasks), np.where(raw > 0, "yes", "no"))


@pytest.mark.parametrize("Model", MODELS)
def test_integer_sample_weight_equals_repeating_rows(Model):
    X, y, tasks = _classification_data() if Model is MultitaskLogistic else _regression_data()
    counts = np.random.default_rng(2).integers(0, 3, len(y))
    counts[np.searchsorted(tasks, np.unique(tasks))] = 1  # every task keeps some weight
    weighted = Model(alpha=0.2).fit(X, y, tasks=tasks, sample_weight=counts)
    repeated = Model(alpha=0.2).fit(np.repeat(X, counts, axis=0), np.repeat(y, counts),
                                    tasks=np.repeat(tasks, counts))
    # n_k is the total weight, so weights are exactly row multiplicities; only round-off (and
    # the logistic Newton tolerance 1e-8) separates the two fits.
    np.testing.assert_allclose(weighted.coef_, repeated.coef_, atol=1e-7)
    np.testing.assert_allclose(weighted.intercept_, repeated.intercept_, atol=1e-7)


# --- limits -------------------------------------------------------------------------------------
def test_ridge_large_alpha_pools_tasks_into_one_weighted_ridge():
    X, y, tasks = _regression_data()
    n_k = np.bincount(tasks)
    model = MultitaskRidge(alpha=1e8, shared_alpha=0.05).fit(X, y, tasks=tasks)
    # alpha -> inf forces theta_k = gamma, b_k = c; what remains is
    # sum_k (1/n_k) sum_i (y - x gamma - c)^2 + shared_alpha ||gamma||^2, i.e. sklearn Ridge with
    # sample_weight 1/n_k and penalty shared_alpha (its intercept is unpenalised too).
    pooled = Ridge(alpha=0.05).fit(X, y, sample_weight=1.0 / n_k[tasks])
    # Distance to the limit is O(gradient / alpha) ~ 1e-8 here, round-off in the Schur
    # complement ~ K * alpha * eps ~ 1e-7 relative: 1e-6 is tight but safe.
    np.testing.assert_allclose(model.coef_, np.tile(pooled.coef_, (3, 1)), atol=1e-6)
    np.testing.assert_allclose(model.intercept_, pooled.intercept_, atol=1e-6)
    np.testing.assert_allclose(model.shared_coef_, pooled.coef_, atol=1e-6)
    assert np.ptp(model.coef_, axis=0).max() < 1e-6  # all task models coincide


def test_logistic_large_alpha_pools_tasks_into_one_weighted_logistic_regression():
    X, y, tasks = _classification_data()
    n_k = np.bincount(tasks)
    model = MultitaskLogistic(alpha=1e6, shared_alpha=0.01).fit(X, y, tasks=tasks)
    # Limit: sum_i (1/n_k) logloss + shared_alpha ||gamma||^2 = (1 / (2 C)) * sklearn's objective
    # C sum_i sw_i logloss + ||w||^2 / 2 with C = 1 / (2 shared_alpha), sw = 1/n_k.
    pooled = LogisticRegression(C=1 / (2 * 0.01), tol=1e-12, solver="newton-cholesky",
                                max_iter=1000).fit(X, y, sample_weight=1.0 / n_k[tasks])
    # O(1/alpha) = 1e-6 from the limit (measured ~1e-7): 1e-5.
    np.testing.assert_allclose(model.coef_, np.tile(pooled.coef_[0], (3, 1)), atol=1e-5)
    np.testing.assert_allclose(model.intercept_, pooled.intercept_[0], atol=1e-5)
    assert np.ptp(model.coef_, axis=0).max() < 1e-5


def test_ridge_tiny_alpha_gives_independent_least_squares_per_task():
    X, y, tasks = _regression_data()
    model = MultitaskRidge(alpha=1e-10).fit(X, y, tasks=tasks)
    for k in range(3):
        rows = tasks == k
        ols = LinearRegression().fit(X[rows], y[rows])
        # The tie shifts the task optimum by ~ alpha * ||theta_k - gamma|| / lambda_min(X_k^T
        # X_k / n_k) ~ 1e-10 * 3 / 0.2 ~ 1e-9; 1e-6 allows for round-off, far below the
        # differences between tasks (~0.5).
        np.testing.assert_allclose(model.coef_[k], ols.coef_, atol=1e-6)
        assert model.intercept_[k] == pytest.approx(ols.intercept_, abs=1e-6)


def test_logistic_tiny_alpha_gives_independent_unpenalised_logistic_per_task():
    X, y, tasks = _classification_data()
    model = MultitaskLogistic(alpha=1e-10).fit(X, y, tasks=tasks)
    for k in range(3):
        rows = tasks == k
        # C=inf: no penalty (sklearn >= 1.8). Data are noisy, so the MLE exists.
        mle = LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-12,
                                 max_iter=1000).fit(X[rows], y[rows])
        # Shift from the tie ~ alpha * ||theta|| / lambda_min(Hessian of the task loss ~ 0.05)
        # ~ 1e-8, plus both solvers' tolerances (~1e-8 gradient): 1e-6.
        np.testing.assert_allclose(model.coef_[k], mle.coef_[0], atol=1e-6)
        assert model.intercept_[k] == pytest.approx(mle.intercept_[0], abs=1e-6)


def test_ridge_with_zero_shared_model_equals_separate_sklearn_ridge_with_matching_penalty():
    # With gamma pinned to 0 (huge shared_alpha) and no intercept, task k minimises
    # (1/n_k) sum_i w_i (y_i - x_i theta)^2 + alpha_k ||theta||^2, i.e. n_k times sklearn's
    # sum_i w_i (...)^2 + (n_k alpha_k) ||theta||^2: Ridge(alpha = n_k * alpha_k).
    X, y, tasks = _regression_data()
    sw = np.random.default_rng(3).uniform(0.5, 2.0, len(y))
    alpha = {0: 0.05, 1: 0.5, 2: 2.0}
    model = MultitaskRidge(alpha=alpha, shared_alpha=1e10, fit_intercept=False)
    model.fit(X, y, tasks=tasks, sample_weight=sw)
    assert np.abs(model.shared_coef_).max() < 1e-9  # gamma ~ sum alpha theta / shared_alpha
    for k in range(3):
        rows = tasks == k
        n_k = sw[rows].sum()
        ref = Ridge(alpha=n_k * alpha[k], fit_intercept=False).fit(X[rows], y[rows],
                                                                    sample_weight=sw[rows])
        # Residual gamma ~ 1e-11 moves theta_k by less than that: 1e-8 is pure round-off room.
        np.testing.assert_allclose(model.coef_[k], ref.coef_, atol=1e-8)


def test_logistic_with_zero_shared_model_equals_separate_sklearn_logistic_with_matching_c():
    # (1/n_k) sum logloss + alpha_k ||theta||^2 = 2 alpha_k * [C sum logloss + ||theta||^2 / 2]
    # with C = 1 / (2 alpha_k n_k).
    X, y, tasks = _classification_data()
    alpha = {0: 0.01, 1: 0.05, 2: 0.2}
    model = MultitaskLogistic(alpha=alpha, shared_alpha=1e10, fit_intercept=False)
    model.fit(X, y, tasks=tasks)
    for k in range(3):
        rows = tasks == k
        ref = LogisticRegression(C=1 / (2 * alpha[k] * rows.sum()), fit_intercept=False,
                                 solver="newton-cholesky", tol=1e-12).fit(X[rows], y[rows])
        # Newton tolerance 1e-8 on the gradient, curvature >= 2 alpha_k >= 0.02: ~1e-6 at worst.
        np.testing.assert_allclose(model.coef_[k], ref.coef_[0], atol=1e-6)


# --- scikit-learn integration --------------------------------------------------------------------
def test_pipeline_with_scaler_routes_tasks_and_equals_manual_scaling():
    X, y, tasks = _regression_data()
    X = X * [1.0, 100.0, 0.01] + 5.0
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = make_pipeline(StandardScaler(), MultitaskRidge(alpha=0.1))
        pipe.fit(X, y, tasks=tasks)
        pred = pipe.predict(X, tasks=tasks)
        score = pipe.score(X, y, tasks=tasks)
    Xs = StandardScaler().fit_transform(X)
    manual = MultitaskRidge(alpha=0.1).fit(Xs, y, tasks=tasks)
    # Identical arithmetic on identical scaled data.
    np.testing.assert_allclose(pred, manual.predict(Xs, tasks=tasks), atol=1e-10)
    assert score == pytest.approx(r2_score(y, pred), abs=1e-12)


def test_gridsearch_over_alpha_routes_tasks_to_fit_and_default_score():
    X, y, tasks = _regression_data(sizes=(20, 20, 20))
    cv = KFold(3, shuffle=True, random_state=0)  # shuffled: every fold sees every task
    grid = [0.01, 1.0, 100.0]
    with sklearn.config_context(enable_metadata_routing=True):
        search = GridSearchCV(MultitaskRidge(), {"alpha": grid}, cv=cv, scoring=None)
        search.fit(X, y, tasks=tasks)
    # Recompute each fold's default score (R^2 of score()) by hand: tasks must have been split
    # with the rows for both fit and score.
    for i, alpha in enumerate(grid):
        manual = [
            MultitaskRidge(alpha=alpha).fit(X[tr], y[tr], tasks=tasks[tr])
            .score(X[te], y[te], tasks=tasks[te])
            for tr, te in cv.split(X)
        ]
        # Same fits, same data: only summation order differs.
        assert search.cv_results_["mean_test_score"][i] == pytest.approx(np.mean(manual),
                                                                          abs=1e-12)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert search.best_estimator_.tasks_.tolist() == [0, 1, 2]


def _task_frame(X, tasks):
    df = pd.DataFrame(X * [1.0, 10.0, 0.1] + 3.0, columns=["f0", "f1", "f2"])
    df["task"] = np.array(["north", "south", "west"])[tasks]
    return df


@pytest.mark.parametrize("output", ["pandas_plain_names", "pandas_prefixed_names", "numpy"])
def test_task_column_survives_column_transformer_in_cross_val_predict_and_r2(output):
    # Scale only the numeric columns and pass the task column through. With pandas output the
    # task column keeps its name ("task", or "remainder__task" with verbose names); with NumPy
    # output it is the last column, so task_column=-1.
    X, y, tasks = _regression_data(sizes=(20, 20, 20))
    df = _task_frame(X, tasks)
    numeric = ["f0", "f1", "f2"]
    ct = ColumnTransformer([("num", StandardScaler(), numeric)], remainder="passthrough",
                           verbose_feature_names_out=output != "pandas_plain_names")
    task_column = {"pandas_plain_names": "task", "pandas_prefixed_names": "remainder__task",
                   "numpy": -1}[output]
    if output != "numpy":
        ct.set_output(transform="pandas")
    pipe = make_pipeline(ct, MultitaskRidge(alpha=0.1, task_column=task_column))
    cv = KFold(3, shuffle=True, random_state=0)
    pred = cross_val_predict(pipe, df, y, cv=cv)
    r2 = cross_val_score(pipe, df, y, cv=cv, scoring="r2")
    # Ground truth: scale by hand per fold and pass tasks= explicitly.
    expected = np.empty_like(y)
    expected_r2 = []
    for tr, te in cv.split(df):
        scaler = StandardScaler().fit(df[numeric].iloc[tr])
        model = MultitaskRidge(alpha=0.1).fit(scaler.transform(df[numeric].iloc[tr]), y[tr],
                                              tasks=df["task"].iloc[tr])
        expected[te] = model.predict(scaler.transform(df[numeric].iloc[te]),
                                     tasks=df["task"].iloc[te])
        expected_r2.append(r2_score(y[te], expected[te]))
    # Same arithmetic both ways: round-off only.
    np.testing.assert_allclose(pred, expected, atol=1e-10)
    np.testing.assert_allclose(r2, expected_r2, atol=1e-12)


def test_task_column_on_dataframe_is_not_a_feature_and_names_are_checked():
    X, y, tasks = _regression_data()
    df = _task_frame(X, tasks)
    model = MultitaskRidge(task_column="task").fit(df, y)
    assert model.tasks_.tolist() == ["north", "south", "west"]
    assert model.coef_.shape == (3, 3)
    assert model.n_features_in_ == 4 and model.feature_names_in_.tolist() == list(df.columns)
    reference = MultitaskRidge().fit(df[["f0", "f1", "f2"]].to_numpy(), y, tasks=df["task"])
    np.testing.assert_allclose(model.coef_, reference.coef_, atol=1e-12)  # same fit
    with pytest.raises(ValueError, match="Both tasks= and task_column"):
        model.predict(df, tasks=df["task"])
    with pytest.raises(ValueError, match="not a column of X"):
        MultitaskRidge(task_column="group").fit(df, y)


@pytest.mark.parametrize("Model", MODELS)
def test_clone_and_pickle_round_trip_keep_predictions(Model):
    X, y, tasks = _classification_data() if Model is MultitaskLogistic else _regression_data()
    model = Model(alpha={0: 0.1, 1: 1.0, 2: 10.0}, shared_alpha=0.01).fit(X, y, tasks=tasks)
    fresh = clone(model)
    assert fresh.get_params() == model.get_params()
    assert fresh.alpha is not model.alpha  # the dict is copied, not shared
    with pytest.raises(NotFittedError):
        fresh.predict(X, tasks=tasks)
    # Deterministic fit: a refit of the clone is bit-for-bit the same.
    np.testing.assert_array_equal(fresh.fit(X, y, tasks=tasks).coef_, model.coef_)
    restored = pickle.loads(pickle.dumps(model))
    method = "predict_proba" if Model is MultitaskLogistic else "predict"
    np.testing.assert_array_equal(getattr(restored, method)(X, tasks=tasks),
                                  getattr(model, method)(X, tasks=tasks))


# --- task labels and unknown tasks ---------------------------------------------------------------
@pytest.mark.parametrize("Model", MODELS)
def test_string_and_int_task_labels_give_the_same_model_in_sorted_order(Model):
    X, y, tasks = _classification_data() if Model is MultitaskLogistic else _regression_data()
    names = np.array(["c", "a", "b"])  # int 0 -> "c": sorted order differs from code order
    by_int = Model().fit(X, y, tasks=tasks)
    by_str = Model().fit(X, y, tasks=names[tasks].tolist())  # a plain list of str
    assert by_int.tasks_.tolist() == [0, 1, 2]
    assert by_str.tasks_.tolist() == ["a", "b", "c"]
    order = np.argsort(names)  # row k of by_str.coef_ is task names[order[k]]
    # Same problem with relabelled tasks: identical up to round-off / the Newton tolerance.
    np.testing.assert_allclose(by_str.coef_, by_int.coef_[order], atol=1e-8)
    np.testing.assert_allclose(by_str.predict(X, tasks=names[tasks]) if Model is MultitaskRidge
                               else by_str.decision_function(X, tasks=names[tasks]),
                               by_int.predict(X, tasks=tasks) if Model is MultitaskRidge
                               else by_int.decision_function(X, tasks=tasks), atol=1e-8)


@pytest.mark.parametrize("Model", MODELS)
def test_unseen_task_at_predict_raises_by_default(Model):
    X, y, tasks = _classification_data() if Model is MultitaskLogistic else _regression_data()
    model = Model().fit(X, y, tasks=tasks)
    unseen = tasks.copy()
    unseen[0] = 7
    with pytest.raises(ValueError, match=r"Unknown task label\(s\) \[7\].*unknown_task='shared'"):
        model.predict(X, tasks=unseen)
    with pytest.raises(ValueError, match=r"Unknown task label\(s\) \['x'\]"):
        model.predict(X[:2], tasks=["x", "x"])


@pytest.mark.parametrize("Model", MODELS)
def test_unseen_task_with_unknown_shared_predicts_with_shared_coef(Model):
    X, y, tasks = _classification_data() if Model is MultitaskLogistic else _regression_data()
    model = Model(unknown_task="shared").fit(X, y, tasks=tasks)
    mixed = tasks.copy()
    mixed[:5] = 99
    raw = (model.predict(X, tasks=mixed) if Model is MultitaskRidge
           else model.decision_function(X, tasks=mixed))
    # Unseen rows: x @ gamma + c; known rows: their own task model. Exact linear algebra.
    np.testing.assert_allclose(raw[:5], X[:5] @ model.shared_coef_ + model.shared_intercept_,
                               atol=1e-12)
    k = tasks[5:]
    np.testing.assert_allclose(raw[5:], np.einsum("ij,ij->i", X[5:], model.coef_[k])
                               + model.intercept_[k], atol=1e-12)


@pytest.mark.parametrize("Model", MODELS)
def test_predict_without_tasks_after_multitask_fit_raises_naming_tasks_and_task_column(Model):
    X, y, tasks = _classification_data() if Model is MultitaskLogistic else _regression_data()
    model = Model().fit(X, y, tasks=tasks)
    with pytest.raises(ValueError, match=r"fitted on 3 tasks.*tasks=.*task_column"):
        model.predict(X)
    with pytest.raises(ValueError, match=r"tasks=.*task_column"):
        model.score(X, y)


def test_scorer_that_drops_tasks_raises_instead_of_guessing():
    # scikit-learn issue 27977: string scorers do not forward tasks= to predict.
    X, y, tasks = _regression_data(sizes=(20, 20, 20))
    with sklearn.config_context(enable_metadata_routing=True):
        with pytest.raises(ValueError, match=r"need the task of every row.*task_column"):
            cross_val_score(MultitaskRidge(), X, y, params={"tasks": tasks}, scoring="r2",
                            cv=KFold(3, shuffle=True, random_state=0), error_score="raise")


@pytest.mark.parametrize("Model", MODELS)
def test_fit_without_tasks_is_one_task_and_predicts_without_tasks(Model):
    X, y, _ = _classification_data() if Model is MultitaskLogistic else _regression_data()
    model = Model().fit(X, y)
    assert model.tasks_.tolist() == [0] and model.coef_.shape == (1, X.shape[1])
    np.testing.assert_array_equal(model.predict(X), model.predict(X, tasks=np.zeros(len(y))))


# --- bad or unusual input -----------------------------------------------------------------------
@pytest.mark.parametrize("Model", MODELS)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_x_raises_in_fit_and_predict(Model, bad):
    X, y, tasks = _classification_data() if Model is MultitaskLogistic else _regression_data()
    X_bad = X.copy()
    X_bad[3, 1] = bad
    with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
        Model().fit(X_bad, y, tasks=tasks)
    model = Model().fit(X, y, tasks=tasks)
    with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
        model.predict(X_bad, tasks=tasks)
    y_bad = y.astype(float)
    y_bad[0] = bad
    with pytest.raises(ValueError, match="Input y contains (NaN|infinity)"):
        Model().fit(X, y_bad, tasks=tasks)


@pytest.mark.parametrize("Model", MODELS)
def test_task_labels_of_wrong_length_raise(Model):
    X, y, tasks = _classification_data() if Model is MultitaskLogistic else _regression_data()
    with pytest.raises(ValueError, match=r"tasks has \d+ labels but X has \d+ rows"):
        Model().fit(X, y, tasks=tasks[:-1])
    model = Model().fit(X, y, tasks=tasks)
    with pytest.raises(ValueError, match=r"tasks has \d+ labels but X has \d+ rows"):
        model.predict(X, tasks=np.append(tasks, 0))


@pytest.mark.parametrize("Model", MODELS)
def test_missing_task_labels_raise(Model):
    X, y, tasks = _classification_data() if Model is MultitaskLogistic else _regression_data()
    labels = tasks.astype(object)
    labels[4] = None
    with pytest.raises(ValueError, match="missing labels"):
        Model().fit(X, y, tasks=labels)


@pytest.mark.parametrize("Model", MODELS)
def test_mixed_int_and_string_task_labels_raise(Model):
    X, y, tasks = _classification_data() if Model is MultitaskLogistic else _regression_data()
    labels = tasks.astype(object)
    labels[labels == 2] = "two"
    with pytest.raises(ValueError, match="all ints or all strings"):
        Model().fit(X, y, tasks=labels)


def test_logistic_stopping_at_max_iter_warns_and_reports_n_iter():
    X, y, tasks = _classification_data()
    with pytest.warns(ConvergenceWarning, match="did not converge in max_iter=1"):
        model = MultitaskLogistic(max_iter=1).fit(X, y, tasks=tasks)
    assert model.n_iter_ == 1
    # Converged fits report the Newton steps they took (quadratic convergence: a handful).
    assert 2 <= MultitaskLogistic().fit(X, y, tasks=tasks).n_iter_ <= 20


def test_ridge_task_with_a_single_row_fits_and_is_shrunk_to_the_shared_model():
    # Documented behaviour: the tie regularises a task with one row. Its head solves
    # min (y - x~ beta)^2 + alpha ||beta - g||^2, whose closed form (Sherman-Morrison) is
    # beta = g + x~ (y - x~ g) / (alpha + ||x~||^2), given the fitted shared g.
    X, y, tasks = _regression_data()
    tasks = tasks.copy()
    tasks[0] = 5
    model = MultitaskRidge(alpha=0.5).fit(X, y, tasks=tasks)
    assert model.tasks_.tolist() == [0, 1, 2, 5]
    x_aug = np.append(X[0], 1.0)
    g = np.append(model.shared_coef_, model.shared_intercept_)
    expected = g + x_aug * (y[0] - x_aug @ g) / (0.5 + x_aug @ x_aug)
    # Closed form versus the arrow solve: round-off only.
    np.testing.assert_allclose(np.append(model.coef_[3], model.intercept_[3]), expected,
                               atol=1e-10)
    assert "single row" in MultitaskRidge.__doc__


def test_logistic_task_with_a_single_row_fits():
    X, y, tasks = _classification_data()
    tasks = tasks.copy()
    tasks[0] = 5
    model = MultitaskLogistic(alpha=0.5).fit(X, y, tasks=tasks)
    assert np.all(np.isfinite(model.coef_))
    # One row pulls the head only a little away from the shared model (the tie dominates).
    assert np.linalg.norm(model.coef_[3] - model.shared_coef_) < 1.0
    assert "single row" in MultitaskLogistic.__doc__


def test_logistic_with_one_class_overall_raises():
    X, _, tasks = _classification_data()
    with pytest.raises(ValueError, match="needs exactly 2 classes in y; got 1"):
        MultitaskLogistic().fit(X, np.ones(len(tasks)), tasks=tasks)
    with pytest.raises(ValueError, match="needs exactly 2 classes in y; got 3"):
        MultitaskLogistic().fit(X, tasks, tasks=tasks)


def test_logistic_task_whose_labels_are_all_one_class_still_fits():
    X, y, tasks = _classification_data()
    y = y.copy()
    y[tasks == 2] = 1
    model = MultitaskLogistic(alpha=0.1).fit(X, y, tasks=tasks)
    assert np.all(np.isfinite(model.coef_)) and np.all(np.isfinite(model.intercept_))
    assert model.n_iter_ < model.max_iter
    # The tie keeps the one-class task finite but it does lean towards its only class.
    proba = model.predict_proba(X[tasks == 2], tasks=tasks[tasks == 2])[:, 1]
    assert proba.mean() > 0.8
    # Optimality of the task's head, written out by hand (gradient of its terms = 0): checks
    # that the fit really minimises the objective rather than stopping early.
    rows = tasks == 2
    Xa = np.hstack([X[rows], np.ones((rows.sum(), 1))])
    beta = np.append(model.coef_[2], model.intercept_[2])
    g = np.append(model.shared_coef_, model.shared_intercept_)
    grad = Xa.T @ (expit(Xa @ beta) - 1.0) / rows.sum() + 2 * 0.1 * (beta - g)
    assert np.abs(grad).max() < 1e-7  # Newton tolerance is 1e-8 on the full gradient


@pytest.mark.parametrize("Model", MODELS)
def test_empty_input_raises(Model):
    X, y, tasks = _classification_data() if Model is MultitaskLogistic else _regression_data()
    with pytest.raises(ValueError, match="0 sample"):
        Model().fit(X[:0], y[:0], tasks=tasks[:0])
    df = _task_frame(X, tasks)
    with pytest.raises(ValueError, match="0 sample"):
        Model(task_column="task").fit(df.iloc[:0], y[:0])


@pytest.mark.parametrize("Model", MODELS)
@pytest.mark.parametrize("alpha", [-1.0, 0.0])
def test_non_positive_alpha_raises(Model, alpha):
    X, y, tasks = _classification_data() if Model is MultitaskLogistic else _regression_data()
    with pytest.raises(ValueError, match=r"'alpha' parameter .* must be a float in the range"):
        Model(alpha=alpha).fit(X, y, tasks=tasks)
    with pytest.raises(ValueError, match=r"'shared_alpha' parameter"):
        Model(shared_alpha=-1.0).fit(X, y, tasks=tasks)
    with pytest.raises(ValueError, match=r"alpha\[2\]=" + str(alpha)):
        Model(alpha={0: 1.0, 1: 1.0, 2: alpha}).fit(X, y, tasks=tasks)
    with pytest.raises(ValueError, match=r"no value for task\(s\) \[2\]"):
        Model(alpha={0: 1.0, 1: 1.0}).fit(X, y, tasks=tasks)


@pytest.mark.parametrize("Model", MODELS)
def test_bad_sample_weight_raises(Model):
    X, y, tasks = _classification_data() if Model is MultitaskLogistic else _regression_data()
    with pytest.raises(ValueError, match="Negative values"):
        Model().fit(X, y, tasks=tasks, sample_weight=np.full(len(y), -1.0))
    sw = np.ones(len(y))
    sw[tasks == 1] = 0.0
    with pytest.raises(ValueError, match=r"Task\(s\) \[1\] have total sample_weight 0"):
        Model().fit(X, y, tasks=tasks, sample_weight=sw)


@pytest.mark.parametrize("Model", MODELS)
def test_inputs_are_never_modified(Model):
    X, y, tasks = _classification_data() if Model is MultitaskLogistic else _regression_data()
    sw = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    labels = np.array(["a", "b", "c"])[tasks]
    df = _task_frame(X, tasks)
    originals = [a.copy() for a in (X, y, labels, sw)]
    df_original = df.copy(deep=True)
    model = Model().fit(X, y, tasks=labels, sample_weight=sw)
    model.predict(X, tasks=labels)
    model.score(X, y, tasks=labels, sample_weight=sw)
    model.score_per_task(X, y, tasks=labels, sample_weight=sw)
    by_column = Model(task_column="task").fit(df, y, sample_weight=sw)
    by_column.predict(df)
    by_column.score_per_task(df, y)
    for before, after in zip(originals, (X, y, labels, sw)):
        np.testing.assert_array_equal(before, after)
    pd.testing.assert_frame_equal(df, df_original)


# --- per-task diagnostics -----------------------------------------------------------------------
def test_ridge_score_per_task_equals_r2_on_each_task():
    X, y, tasks = _regression_data()
    labels = np.array(["b", "a", "c"])[tasks]
    model = MultitaskRidge().fit(X, y, tasks=labels)
    scores = model.score_per_task(X, y, tasks=labels)
    assert list(scores) == ["a", "b", "c"]  # tasks_ order
    pred = model.predict(X, tasks=labels)
    for name, value in scores.items():
        rows = labels == name
        assert value == pytest.approx(r2_score(y[rows], pred[rows]), abs=1e-12)


def test_logistic_score_per_task_is_weighted_accuracy_and_groups_unseen_tasks_as_shared():
    X, y, tasks = _classification_data()
    sw = np.random.default_rng(4).uniform(0.5, 2.0, len(y))
    model = MultitaskLogistic(unknown_task="shared").fit(X, y, tasks=tasks)
    test_tasks = tasks.copy()
    test_tasks[tasks == 1] = 8  # task 1's rows now belong to an unseen task
    scores = model.score_per_task(X, y, tasks=test_tasks, sample_weight=sw)
    assert list(scores) == [0, 2, "<shared>"]
    pred = model.predict(X, tasks=test_tasks)
    for key, rows in [(0, tasks == 0), (2, tasks == 2), ("<shared>", tasks == 1)]:
        assert scores[key] == pytest.approx(
            accuracy_score(y[rows], pred[rows], sample_weight=sw[rows]), abs=1e-12)


def test_score_per_task_with_task_column():
    X, y, tasks = _regression_data()
    df = _task_frame(X, tasks)
    model = MultitaskRidge(task_column="task").fit(df, y)
    scores = model.score_per_task(df, y)
    pred = model.predict(df)
    assert list(scores) == ["north", "south", "west"]
    for name, value in scores.items():
        rows = (df["task"] == name).to_numpy()
        assert value == pytest.approx(r2_score(y[rows], pred[rows]), abs=1e-12)


def test_logistic_converges_on_uncentred_features_without_warning():
    # Features around 100 make the objective flat to round-off near the optimum; Newton must
    # still stop (accepting steps that keep the value flat and shrink the gradient) instead of
    # running into max_iter. Reference: scikit-learn's lbfgs on the same single-task objective
    # (no intercept tie matters with one task: theta = gamma up to the tiny shared penalty).
    # (Seed 7 is one where the earlier solver stalled at a gradient of ~5e-8 for 50 steps.)
    rng = np.random.default_rng(7)
    X = 100.0 + rng.standard_normal((80, 2))
    y = (rng.standard_normal(80) + X[:, 0] - X[:, 1] > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = MultitaskLogistic(max_iter=50).fit(X, y)
    assert model.n_iter_ < 20
    objective = model._mtif_objective(model._mtif_data(X, y, reset=False))
    task_term, _ = objective.task_gradients(model._mtif_params())
    # Stationary to well below the default tol scale of the fit's own objective.
    assert np.abs(task_term).max() < 1e-6
