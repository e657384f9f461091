"""Numerical edge cases: collinear/constant features, d > n_k, separable tasks, extreme scales,
a near-singular Schur complement and float32 input. Each gives a correct answer, a clear warning
or a clear error, never silently wrong numbers."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from mtif_sklearn import MTIFInfluence, MultitaskLogistic, MultitaskRidge
from mtif_sklearn.datasets import make_multitask_classification, make_multitask_regression
from mtif_sklearn.retrain import loo_effects, loto_effects


@pytest.fixture(scope="module")
def regression():
    return make_multitask_regression(n_tasks=3, n_samples_per_task=20, n_features=4,
                                     random_state=0)


@pytest.fixture(scope="module")
def classification():
    return make_multitask_classification(n_tasks=3, n_samples_per_task=30, n_features=4,
                                         random_state=0)


def _influence(estimator, X, y, tasks, **kwargs):
    X_val = np.asarray(X, dtype=np.float64) + 0.05  # float64 for every dtype of X
    return MTIFInfluence(estimator, **kwargs).fit(X, y, tasks=tasks, X_val=X_val, y_val=y,
                                                  tasks_val=tasks)


@pytest.mark.parametrize("extra", ["duplicate", "constant"])
def test_collinear_or_constant_feature_with_shared_alpha_is_well_posed(regression, extra):
    X, y, tasks = regression
    column = X[:, :1] if extra == "duplicate" else np.ones((len(X), 1))
    Xc = np.hstack([X, column])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no condition warning: shared_alpha pins gamma
        inf = _influence(MultitaskRidge(alpha=0.3, shared_alpha=1e-2), Xc, y, tasks)
    assert inf.schur_condition_ < 1e8
    # Newton removal is exact retraining for ridge: it must equal brute-force refits.
    newton = _influence(MultitaskRidge(alpha=0.3, shared_alpha=1e-2), Xc, y, tasks,
                        method="newton")
    rows = np.arange(0, len(y), 7)
    loo = loo_effects(MultitaskRidge(alpha=0.3, shared_alpha=1e-2), Xc, y, Xc + 0.05, y,
                      tasks=tasks, tasks_val=tasks, rows=rows)
    # Two exact methods (one Newton step vs refit) on a condition-1e8-bounded system.
    np.testing.assert_allclose(newton.influence_[rows], loo, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("extra", ["duplicate", "constant"])
def test_near_singular_schur_complement_warns_with_its_condition_number(regression, extra):
    # shared_alpha=0 and a direction no task's data determines (a duplicated column's
    # difference, or a constant column vs the intercept): the Schur complement is singular to
    # round-off. It must warn (>1e12) or refuse, never answer silently.
    X, y, tasks = regression
    column = X[:, :1] if extra == "duplicate" else np.ones((len(X), 1))
    Xc = np.hstack([X, column])
    _warns_or_refuses(MultitaskRidge(alpha=0.3, shared_alpha=0.0), Xc, y, tasks)


def _warns_or_refuses(estimator, X, y, tasks):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            inf = _influence(estimator, X, y, tasks)
        except ValueError as exc:  # round-off made it indefinite: a clear error instead
            assert "shared_alpha" in str(exc)
            return
    assert inf.schur_condition_ > 1e12
    assert any("condition number" in str(w.message) for w in caught)


def test_logistic_with_singular_shared_block_warns_or_refuses_and_shared_alpha_fixes_it(
        classification):
    X, y, tasks = classification
    Xc = np.hstack([X, X[:, :1]])
    _warns_or_refuses(MultitaskLogistic(alpha=0.3, shared_alpha=0.0), Xc, y, tasks)
    # A positive shared_alpha is the documented remedy: then it is finite and quiet.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inf = _influence(MultitaskLogistic(alpha=0.3, shared_alpha=1e-3), Xc, y, tasks)
    assert np.all(np.isfinite(inf.influence_))


def test_estimator_fit_on_a_singular_problem_names_shared_alpha_not_damping(classification):
    X, y, tasks = classification
    Xc = np.hstack([X, X[:, :1], X[:, :1]])
    with pytest.raises(ValueError, match=r"Cannot fit.*shared_alpha > 0") as info:
        # Exactly singular in exact arithmetic; round-off decides between this clear error
        # and a fit. Force the error deterministically with a zero tie and no shared penalty.
        MultitaskLogistic(alpha={0: 1e-300, 1: 1e-300, 2: 1e-300}, shared_alpha=0.0).fit(
            Xc, y, tasks=tasks)
    assert "damping" not in str(info.value).split("Set")[1]


@pytest.mark.parametrize("Model", [MultitaskRidge, MultitaskLogistic])
def test_more_features_than_rows_per_task_fits_and_has_finite_influence(Model):
    rng = np.random.default_rng(0)
    tasks = np.repeat(np.arange(4), 5)  # n_k = 5 < d = 12
    X = rng.normal(size=(20, 12))
    y = X[:, 0] + 0.1 * rng.normal(size=20)
    if Model is MultitaskLogistic:
        y = (y > 0).astype(int)
    inf = _influence(Model(alpha=0.5), X, y, tasks)
    assert np.all(np.isfinite(inf.influence_))
    assert np.all(np.isfinite(inf.task_influence_))
    assert inf.schur_condition_ < 1e12


def test_perfectly_separable_logistic_tasks_converge_thanks_to_the_tie():
    rng = np.random.default_rng(0)
    tasks = np.repeat(np.arange(3), 30)
    X = rng.normal(size=(90, 3))
    y = (X[:, 0] > 0).astype(int)  # every task perfectly separable by feature 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = MultitaskLogistic(alpha=0.1, shared_alpha=1e-3).fit(X, y, tasks=tasks)
    assert model.score(X, y, tasks=tasks) == 1.0
    # Bounded coefficients: the penalties keep the separable optimum finite.
    assert np.all(np.isfinite(model.coef_)) and np.abs(model.coef_).max() < 1e3
    inf = _influence(MultitaskLogistic(alpha=0.1), X, y, tasks)
    assert np.all(np.isfinite(inf.influence_))


def test_separable_logistic_without_any_shared_penalty_still_converges():
    # shared_alpha=0: gamma is only tied to the heads, but every head is tied to gamma, so a
    # separable direction still costs alpha_k ||theta_k - gamma||^2 ... except when all heads and
    # gamma grow together. That direction has zero penalty: it must converge or warn clearly.
    rng = np.random.default_rng(1)
    tasks = np.repeat(np.arange(2), 20)
    X = rng.normal(size=(40, 2))
    y = (X[:, 0] > 0).astype(int)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = MultitaskLogistic(alpha=0.1, shared_alpha=0.0, max_iter=50).fit(
                X, y, tasks=tasks)
        except ValueError as exc:
            assert "positive definite" in str(exc) or "damping" in str(exc)
            return
    converged = model.n_iter_ < 50 and not any(
        issubclass(w.category, ConvergenceWarning) for w in caught)
    assert converged or any("did not converge" in str(w.message) for w in caught)
    assert np.all(np.isfinite(model.coef_))


@pytest.mark.parametrize("scale", [1e-6, 1e6])
@pytest.mark.parametrize("Model", [MultitaskRidge, MultitaskLogistic])
def test_feature_scale_1e6_and_1e_minus_6_matches_the_rescaled_problem(Model, scale,
                                                                      classification,
                                                                      regression):
    # Scaling X by s and alpha/shared_alpha by s**2 is the same problem with coefficients / s:
    # an exact identity of the objective, so the fits must agree to round-off of the solve.
    X, y, tasks = regression if Model is MultitaskRidge else classification
    reference = Model(alpha=0.5, shared_alpha=0.1, fit_intercept=False).fit(X, y, tasks=tasks)
    # The logistic tol is absolute on the gradient, which scales with the features: scale it
    # too, or the 1e-6 problem stops (correctly, by its tol) about 1% from the optimum.
    extra = {} if Model is MultitaskRidge else {"tol": 1e-8 * min(scale, 1.0)}
    scaled = Model(alpha=0.5 * scale**2, shared_alpha=0.1 * scale**2, fit_intercept=False,
                   **extra).fit(X * scale, y, tasks=tasks)
    # Condition numbers are unchanged by the joint rescaling; 1e-6 relative is round-off with
    # headroom for the logistic stopping tolerance (tol=1e-8 on the scaled gradient).
    np.testing.assert_allclose(scaled.coef_ * scale, reference.coef_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(scaled.decision_function(X * scale, tasks=tasks)
                               if Model is MultitaskLogistic
                               else scaled.predict(X * scale, tasks=tasks),
                               reference.decision_function(X, tasks=tasks)
                               if Model is MultitaskLogistic
                               else reference.predict(X, tasks=tasks), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("scale", [1e-6, 1e6])
def test_extreme_feature_scale_gives_finite_influence_or_a_clear_error(scale, regression):
    X, y, tasks = regression
    inf = _influence(MultitaskRidge(alpha=0.5), X * scale, y, tasks)
    assert np.all(np.isfinite(inf.influence_))


@pytest.mark.parametrize("Model", [MultitaskRidge, MultitaskLogistic])
def test_features_so_large_that_the_hessian_overflows_raise_a_scaling_error(Model,
                                                                           classification):
    X, y, tasks = classification
    with pytest.raises(ValueError, match="overflowed.*StandardScaler"):
        Model().fit(X * 1e160, y, tasks=tasks)


@pytest.mark.parametrize("Model", [MultitaskRidge, MultitaskLogistic])
def test_float32_input_is_computed_in_float64_like_its_float64_cast(Model, regression,
                                                                   classification):
    X, y, tasks = regression if Model is MultitaskRidge else classification
    X32 = X.astype(np.float32)
    inf32 = _influence(Model(), X32, y, tasks)
    inf64 = _influence(Model(), X32.astype(np.float64), y, tasks)
    # Computed in float64 from the same float32 values: identical arithmetic.
    np.testing.assert_allclose(inf32.influence_, inf64.influence_, rtol=1e-12, atol=1e-15)
    assert inf32.estimator_.coef_.dtype == np.float64
    # And equal to the float64 data up to float32 input precision (eps32 ~ 6e-8 relative on
    # the inputs, amplified by a moderate condition number: 1e-4 relative is safe).
    inf_full = _influence(Model(), X, y, tasks)
    np.testing.assert_allclose(inf32.estimator_.coef_, inf_full.estimator_.coef_, rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(inf32.influence_, inf_full.influence_, rtol=1e-3,
                               atol=1e-6 * np.abs(inf_full.influence_).max())


def test_single_row_tasks_have_exact_newton_influence_equal_to_refits():
    X = np.array([[0.5], [1.0], [0.2], [-0.4]])
    y = np.array([0.4, 1.0, 0.3, -0.1])
    tasks = np.array([0, 1, 1, 2])
    model = MultitaskRidge(alpha=1.0, shared_alpha=0.1)
    inf = MTIFInfluence(model, method="newton").fit(X, y, tasks=tasks, X_val=X, y_val=y,
                                                    tasks_val=tasks)
    loo = loo_effects(model, X, y, X, y, tasks=tasks, tasks_val=tasks)
    # One Newton step on a quadratic objective is the exact refit: round-off only.
    np.testing.assert_allclose(inf.influence_, loo, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("rows, message", [
    (np.array([0.5, 1.0]), "integer row positions"),
    (np.array([0, 10_000]), r"positions in \[0, "),
    (np.ones(3, dtype=bool), "boolean mask of shape"),
])
def test_loo_effects_rejects_rows_it_would_misread(rows, message):
    # Float positions used to be truncated and a short boolean mask read as rows 0/1: both
    # silently answered a different question. Now they are errors.
    X, y, tasks = make_multitask_regression(n_tasks=2, n_samples_per_task=10, n_features=2,
                                            random_state=0)
    with pytest.raises(ValueError, match=message):
        loo_effects(MultitaskRidge(), X, y, X, y, tasks=tasks, tasks_val=tasks, rows=rows)


def test_loo_effects_boolean_mask_selects_those_rows():
    X, y, tasks = make_multitask_regression(n_tasks=2, n_samples_per_task=10, n_features=2,
                                            random_state=0)
    mask = np.zeros(len(y), dtype=bool)
    mask[[3, 12]] = True
    by_mask = loo_effects(MultitaskRidge(), X, y, X, y, tasks=tasks, tasks_val=tasks, rows=mask)
    by_index = loo_effects(MultitaskRidge(), X, y, X, y, tasks=tasks, tasks_val=tasks,
                           rows=[3, 12])
    np.testing.assert_array_equal(by_mask, by_index)


def test_retrain_needs_a_protocol_model():
    from sklearn.linear_model import Ridge

    X, y, tasks = make_multitask_regression(n_tasks=2, n_samples_per_task=10, n_features=2,
                                            random_state=0)
    with pytest.raises(TypeError, match="multitask objective protocol"):
        loto_effects(Ridge(), X, y, X, y, tasks=tasks, tasks_val=tasks)


# -- task labels that used to merge, slip through or be misreported (issue 18, items 5, 9, 17) --
def _three_tasks():
    return make_multitask_regression(n_tasks=3, n_samples_per_task=8, n_features=2,
                                     random_state=0)


def test_shared_unknown_task_warns_when_string_labels_meet_int_tasks():
    # "0" against a model fitted on 0 used to send every row to the shared model silently.
    X, y, tasks = _three_tasks()
    model = MultitaskRidge(unknown_task="shared").fit(X, y, tasks=tasks)
    with pytest.warns(UserWarning, match=r"24 of 24 rows match no task.*strings but the "
                                         r"model's tasks are numbers \('0' is not the task 0\)"):
        shared = model.predict(X, tasks=tasks.astype(str))
    # The documented behaviour is kept (a warning, not an error): the shared model predicts.
    np.testing.assert_allclose(shared, X @ model.shared_coef_ + model.shared_intercept_,
                               atol=1e-12)  # exact linear algebra
    # A genuinely new task of the same type is what "shared" is for: no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(X, tasks=np.full(len(y), 7))
    # unknown_task="error" names the type mismatch too.
    with pytest.raises(ValueError, match=r"Unknown task.*strings but the model's tasks are "
                                         "numbers"):
        MultitaskRidge().fit(X, y, tasks=tasks).predict(X, tasks=tasks.astype(str))


def test_float_labels_beyond_int64_stay_distinct_tasks():
    X, y, tasks = _three_tasks()
    labels = np.array([1e20, 2e20, 4e20])[tasks]  # integer-valued, but >= 2**63
    model = MultitaskRidge().fit(X, y, tasks=labels)
    # Cast to int64 they all became -2**63: one task. They must stay three.
    assert model.tasks_.tolist() == [1e20, 2e20, 4e20]
    as_objects = MultitaskRidge().fit(X, y, tasks=labels.astype(object))
    assert len(as_objects.tasks_) == 3


def test_python_ints_beyond_int64_are_refused_with_advice():
    X, y, tasks = _three_tasks()
    labels = [10**20 + int(k) for k in tasks]
    with pytest.raises(ValueError, match="outside the int64 range.*as strings"):
        MultitaskRidge().fit(X, y, tasks=labels)


def test_string_labels_differing_by_a_nul_character_are_refused_not_merged():
    X, y, tasks = _three_tasks()
    labels = ["a" if k == 0 else "a\x00" if k == 1 else "b" for k in tasks]
    # NumPy's fixed-width strings drop trailing NULs: "a" and "a\x00" became one task.
    with pytest.raises(ValueError, match="NUL characters"):
        MultitaskRidge().fit(X, y, tasks=labels)


@pytest.mark.parametrize("missing", ["pd.NA", "NaT"])
def test_pd_na_and_nat_task_labels_are_reported_as_missing(missing):
    pd = pytest.importorskip("pandas")
    X, y, tasks = _three_tasks()
    if missing == "pd.NA":
        labels = pd.Series([pd.NA, *tasks[1:].tolist()], dtype=object)
    else:
        labels = pd.Series([pd.NaT, *(pd.Timestamp(2020 + int(k), 1, 1) for k in tasks[1:])])
    # pd.NA used to be called "a mix of types" and NaT slipped through as a task.
    with pytest.raises(ValueError, match=r"missing labels .* at rows \[0\]"):
        MultitaskRidge().fit(X, y, tasks=labels)


@pytest.mark.parametrize("as_series", [False, True])
def test_a_boolean_among_int_labels_is_refused_naming_booleans(as_series):
    X, y, tasks = _three_tasks()
    labels = [True, *tasks[1:].tolist()]  # True == 1: used to merge with task 1 or call 0 unknown
    if as_series:
        labels = pytest.importorskip("pandas").Series(labels, dtype=object)
    with pytest.raises(ValueError, match="Booleans are not valid task labels") as info:
        MultitaskRidge().fit(X, y, tasks=labels)
    assert "nknown" not in str(info.value)
    # All-boolean labels are two consistent tasks.
    model = MultitaskRidge().fit(X, y, tasks=tasks == 1)
    assert model.tasks_.tolist() == [False, True]
