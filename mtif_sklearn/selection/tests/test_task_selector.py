"""TaskSelector: what it drops, that dropping helps, exact per-target models, the meta-estimator
API."""

import pickle

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mtif_sklearn import MTIFInfluence, MultitaskLogistic, MultitaskRidge, TaskSelector
from mtif_sklearn.datasets import make_multitask_regression
from mtif_sklearn.selection._tasks_selector import drop_matrix


def sign_flipped(seed=0, n_tasks=8, n_per_task=40, n_features=5, n_flipped=2, n_test=200):
    """Related regression tasks, ``n_flipped`` of them with the relation's sign flipped (they
    clearly hurt the others when trained together), plus held-out rows from the same tasks."""
    X, y, tasks, coef, _ = make_multitask_regression(
        n_tasks=n_tasks, n_samples_per_task=n_per_task, n_features=n_features, delta=0.5,
        eps=0.0, random_state=seed, return_coef=True)
    rng = np.random.default_rng(seed)
    flipped = np.sort(rng.choice(n_tasks, size=n_flipped, replace=False))
    sign = np.where(np.isin(np.arange(n_tasks), flipped), -1.0, 1.0)
    tasks_test = np.repeat(np.arange(n_tasks), n_test)
    X_test = rng.standard_normal((tasks_test.size, n_features))
    y_test = (sign[tasks_test] * np.einsum("ij,ij->i", X_test, coef[tasks_test])
              + rng.standard_normal(tasks_test.size))
    return X, y * sign[tasks], tasks, X_test, y_test, tasks_test, flipped


@pytest.fixture(scope="module")
def flipped_fit():
    X, y, tasks, *rest = data = sign_flipped()
    selector = TaskSelector(MultitaskRidge(alpha=1.0), random_state=0).fit(X, y, tasks=tasks)
    return selector, data


def mse(model, X, y, tasks):
    return np.mean((model.predict(X, tasks=tasks) - y) ** 2)


def brute_force_heads(estimator, X, y, tasks, dropped, sample_weight=None):
    """Every target's head from a refit without its dropped sources (rows and regulariser)."""
    data = clone(estimator)._mtif_data(X, y, tasks, sample_weight, reset=True)
    heads = {}
    for target, sources in dropped.items():
        refit = clone(estimator)._mtif_refit(
            data, dropped_tasks=np.searchsorted(data.task_labels, sources))
        k = np.searchsorted(data.task_labels, target)
        heads[target] = np.append(refit.coef_[k], refit.intercept_[k])
    return heads


def heads_of(model):
    return {task.item(): np.append(model.coef_[k], model.intercept_[k])
            for k, task in enumerate(model.tasks_)}


# --- what gets dropped, and that it helps -----------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_task_selector_drops_sign_flipped_tasks_and_beats_all_together(seed):
    X, y, tasks, X_test, y_test, tasks_test, flipped = sign_flipped(seed)
    selector = TaskSelector(MultitaskRidge(alpha=1.0), random_state=seed).fit(X, y, tasks=tasks)
    together = MultitaskRidge(alpha=1.0).fit(X, y, tasks=tasks)
    normal = np.setdiff1d(np.arange(8), flipped)
    # Most ordinary tasks are trained without both flipped ones, and the flipped ones drop the
    # ordinary tasks (the guard may keep a task whose drops did not pay off on held-out folds).
    rid_of_flipped = [set(flipped) <= set(selector.dropped_[k].tolist()) for k in normal]
    assert np.mean(rid_of_flipped) >= 0.6
    for k in flipped:
        assert set(selector.dropped_[k].tolist()) <= set(normal.tolist())
    # Noise variance 1; training with the flipped tasks costs far more than that.
    assert mse(selector, X_test, y_test, tasks_test) < 0.8 * mse(together, X_test, y_test,
                                                                  tasks_test)


def test_sources_dropped_and_proposed_are_consistent(flipped_fit):
    selector, _ = flipped_fit
    for target in selector.tasks_.tolist():
        sources, dropped = selector.sources_[target], selector.dropped_[target]
        assert target in sources.tolist()
        assert sorted(sources.tolist() + dropped.tolist()) == selector.tasks_.tolist()
        assert set(dropped.tolist()) <= set(selector.proposed_[target].tolist())


def test_rule_drops_sources_below_threshold_standard_errors(flipped_fit):
    selector, _ = flipped_fit
    scores, se = selector.task_influence_, selector.task_influence_se_
    for k, target in enumerate(selector.tasks_.tolist()):
        expected = [source for source in range(8) if source != k and scores[source, k] < 0]
        assert selector.proposed_[target].tolist() == expected
    strict = drop_matrix(scores, se, threshold=2.0)
    np.testing.assert_array_equal(strict, (scores + 2.0 * se < 0) & ~np.eye(8, dtype=bool))
    assert strict.sum() <= drop_matrix(scores, se).sum()


def test_scores_are_the_cross_fitted_influence(flipped_fit):
    selector, _ = flipped_fit
    folds = selector.influence_.fold_task_influence_
    assert folds.shape == (5, 8, 8)
    np.testing.assert_allclose(selector.task_influence_, folds.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(selector.task_influence_se_,
                               folds.std(axis=0, ddof=1) / np.sqrt(5), rtol=1e-12)


def test_a_high_threshold_drops_nothing_and_keeps_the_all_together_model():
    X, y, tasks, *_ = sign_flipped()
    selector = TaskSelector(MultitaskRidge(alpha=1.0), threshold=1e6, random_state=0).fit(
        X, y, tasks=tasks)
    together = MultitaskRidge(alpha=1.0).fit(X, y, tasks=tasks)
    assert all(dropped.size == 0 for dropped in selector.dropped_.values())
    np.testing.assert_allclose(selector.estimator_.coef_, together.coef_, atol=1e-12)
    assert selector.folds_ == []  # nothing to guard


# --- per-target models: Schur-complement updates equal brute-force refits ---------------------
@pytest.mark.parametrize("intercept_alpha", [None, 0.0, {k: [0.0, 0.5][k % 2] for k in range(8)}])
def test_schur_updated_ridge_heads_equal_brute_force_refits(intercept_alpha):
    X, y, tasks, *_ = sign_flipped(n_tasks=8)
    weights = np.random.default_rng(0).uniform(0.5, 2.0, y.size)
    estimator = MultitaskRidge(alpha=1.0, intercept_alpha=intercept_alpha)
    selector = TaskSelector(estimator, guard=False, random_state=0).fit(
        X, y, tasks=tasks, sample_weight=weights)
    assert any(d.size for d in selector.dropped_.values())
    expected = brute_force_heads(estimator, X, y, tasks, selector.dropped_, weights)
    heads = heads_of(selector.estimator_)
    for target, head in expected.items():
        # One Newton step on a quadratic objective is the refit: equal to round-off.
        np.testing.assert_allclose(heads[target], head, rtol=1e-8, atol=1e-8)


def test_warm_started_logistic_heads_equal_brute_force_refits():
    X, y, tasks, *_ = sign_flipped(n_tasks=6)
    labels = (y > 0).astype(int)
    estimator = MultitaskLogistic(alpha=0.3)
    selector = TaskSelector(estimator, guard=False, random_state=0).fit(X, labels, tasks=tasks)
    assert any(d.size for d in selector.dropped_.values())
    expected = brute_force_heads(estimator, X, labels, tasks, selector.dropped_)
    heads = heads_of(selector.estimator_)
    for target, head in expected.items():
        # Both are Newton fits stopped at a gradient below tol=1e-8.
        np.testing.assert_allclose(heads[target], head, atol=1e-6)


def test_targets_that_drop_nothing_keep_the_all_together_head(flipped_fit):
    selector, _ = flipped_fit
    together = selector.influence_.estimator_
    kept = [k for k, t in enumerate(selector.tasks_.tolist()) if selector.dropped_[t].size == 0]
    changed = [k for k, t in enumerate(selector.tasks_.tolist()) if selector.dropped_[t].size]
    np.testing.assert_array_equal(selector.estimator_.coef_[kept], together.coef_[kept])
    assert changed and not np.allclose(selector.estimator_.coef_[changed],
                                       together.coef_[changed])
    np.testing.assert_array_equal(selector.estimator_.shared_coef_, together.shared_coef_)


def test_target_tasks_limit_whose_sources_are_selected():
    X, y, tasks, *_ = sign_flipped()
    selector = TaskSelector(MultitaskRidge(alpha=1.0), target_tasks=[0, 3], guard=False,
                            random_state=0).fit(X, y, tasks=tasks)
    assert sorted(selector.dropped_) == [0, 3]
    together = selector.influence_.estimator_
    others = np.setdiff1d(np.arange(8), [0, 3])
    np.testing.assert_array_equal(selector.estimator_.coef_[others], together.coef_[others])
    np.testing.assert_array_equal(selector.target_tasks_, [0, 3])


# --- the guard ------------------------------------------------------------------------------------
def test_guard_keeps_drops_only_where_they_lowered_the_held_out_loss():
    # Identical tasks: every negative score is noise, so most proposed drops should not pay.
    X, y, tasks = make_multitask_regression(n_tasks=6, n_samples_per_task=30, n_features=3,
                                            delta=0.0, eps=0.0, random_state=0)
    selector = TaskSelector(MultitaskRidge(alpha=0.3), random_state=0).fit(X, y, tasks=tasks)
    report = selector.report_
    assert any(report["proposed"])
    for i, target in enumerate(report["task"]):
        kept = report["validation_loss_selected"][i] < report["validation_loss_all"][i]
        if report["proposed"][i]:
            assert report["guard"][i] == ("kept" if kept else "rejected")
            assert report["dropped"][i] == (report["proposed"][i] if kept else [])
        assert selector.dropped_[target].tolist() == report["dropped"][i]


def test_guard_losses_are_outer_fold_losses_of_models_that_never_saw_those_rows(flipped_fit):
    selector, (X, y, tasks, *_) = flipped_fit
    assert len(selector.folds_) == 5
    totals, counts = np.zeros(8), np.zeros(8)
    for train, val in selector.folds_:
        assert np.intersect1d(train, val).size == 0
        model = MultitaskRidge(alpha=1.0).fit(X[train], y[train], tasks=tasks[train])
        residual = (model.predict(X[val], tasks=tasks[val]) - y[val]) ** 2
        totals += np.bincount(tasks[val], weights=residual, minlength=8)
        counts += np.bincount(tasks[val], minlength=8)
    np.testing.assert_allclose(selector.report_["validation_loss_all"], totals / counts,
                               rtol=1e-10)


def test_guard_off_uses_every_proposed_drop():
    X, y, tasks, *_ = sign_flipped()
    selector = TaskSelector(MultitaskRidge(alpha=1.0), guard=False, random_state=0).fit(
        X, y, tasks=tasks)
    for target in selector.tasks_.tolist():
        np.testing.assert_array_equal(selector.dropped_[target], selector.proposed_[target])
    assert np.all(np.isnan(selector.report_["validation_loss_all"]))
    assert "guard: off" in selector.selection_report()


def test_selection_report_names_targets_drops_and_verdicts(flipped_fit):
    selector, _ = flipped_fit
    text = selector.selection_report()
    assert text.startswith("TaskSelector:")
    assert "nested cross-validation over 5 outer folds" in text
    assert "kept" in text and "loss: all" in text
    assert pd.DataFrame(selector.report_).shape[0] == 8


# --- meta-estimator API ---------------------------------------------------------------------------
def test_metadata_routing_in_pipeline_and_grid_search_over_threshold():
    X, y, tasks, *_ = sign_flipped(n_tasks=5, n_per_task=30)
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = make_pipeline(StandardScaler(), TaskSelector(MultitaskRidge(alpha=1.0),
                                                            random_state=0))
        pipe.fit(X, y, tasks=tasks)
        assert pipe.predict(X[:5], tasks=tasks[:5]).shape == (5,)
        search = GridSearchCV(TaskSelector(MultitaskRidge(alpha=1.0), guard=False,
                                           random_state=0),
                              {"threshold": [0.0, 2.0, 1e6]},
                              cv=KFold(3, shuffle=True, random_state=0))
        search.fit(X, y, tasks=tasks)  # scoring=None: score() gets tasks routed
        assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
        # dropping the flipped tasks beats dropping nothing (threshold 1e6)
        assert search.best_params_["threshold"] in (0.0, 2.0)
        search = GridSearchCV(TaskSelector(MultitaskRidge(), guard=False, random_state=0),
                              {"estimator__alpha": [0.3, 3.0]},
                              cv=KFold(3, shuffle=True, random_state=0))
        search.fit(X, y, tasks=tasks)
        assert search.best_estimator_.predict(X[:3], tasks=tasks[:3]).shape == (3,)


def test_task_column_path_matches_tasks_keyword():
    X, y, tasks, *_ = sign_flipped(n_tasks=5, n_per_task=30)
    names = np.array([f"s{t}" for t in tasks])
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(5)]).assign(school=names)
    by_column = TaskSelector(MultitaskRidge(alpha=1.0, task_column="school"),
                             random_state=0).fit(frame, y)
    by_keyword = TaskSelector(MultitaskRidge(alpha=1.0), random_state=0).fit(X, y, tasks=names)
    assert {k: v.tolist() for k, v in by_column.dropped_.items()} == {
        k: v.tolist() for k, v in by_keyword.dropped_.items()}
    np.testing.assert_allclose(by_column.predict(frame), by_keyword.predict(X, tasks=names))
    np.testing.assert_array_equal(by_column.feature_names_in_, frame.columns)
    # no routing needed on this path
    search = GridSearchCV(clone(by_column), {"threshold": [0.0, 2.0]},
                          cv=KFold(3, shuffle=True, random_state=0))
    search.fit(frame, y)
    assert search.best_estimator_.predict(frame.iloc[:3]).shape == (3,)


def test_classifier_routes_predict_proba_and_score():
    X, y, tasks, *_ = sign_flipped(n_tasks=5, n_per_task=40)
    labels = np.where(y > 0, "yes", "no")
    selector = TaskSelector(MultitaskLogistic(alpha=0.3), random_state=0).fit(X, labels,
                                                                              tasks=tasks)
    np.testing.assert_array_equal(selector.classes_, ["no", "yes"])
    proba = selector.predict_proba(X[:4], tasks=tasks[:4])
    assert proba.shape == (4, 2)
    np.testing.assert_allclose(proba, selector.estimator_.predict_proba(X[:4], tasks=tasks[:4]))
    assert 0.5 < selector.score(X, labels, tasks=tasks) <= 1.0


def test_each_row_is_predicted_by_its_own_task_head(flipped_fit):
    selector, (X, y, tasks, X_test, y_test, tasks_test, _) = flipped_fit
    model = selector.estimator_
    expected = np.einsum("ij,ij->i", X_test, model.coef_[tasks_test]) + model.intercept_[
        tasks_test]
    np.testing.assert_allclose(selector.predict(X_test, tasks=tasks_test), expected)
    with pytest.raises(ValueError, match="task"):
        selector.predict(X_test[:3])  # several tasks: refuse to guess


def test_clone_and_pickle_round_trip(flipped_fit):
    selector, (*_, X_test, _, tasks_test, _) = flipped_fit
    assert clone(selector).get_params()["threshold"] == 0.0
    restored = pickle.loads(pickle.dumps(selector))
    np.testing.assert_array_equal(restored.predict(X_test, tasks=tasks_test),
                                  selector.predict(X_test, tasks=tasks_test))
    assert restored.selection_report() == selector.selection_report()


def test_method_newton_is_passed_to_the_influence():
    X, y, tasks, *_ = sign_flipped(n_tasks=5, n_per_task=30)
    selector = TaskSelector(MultitaskRidge(alpha=1.0), method="newton", guard=False,
                            random_state=0).fit(X, y, tasks=tasks)
    assert selector.influence_.method == "newton"
    reference = MTIFInfluence(MultitaskRidge(alpha=1.0), method="newton",
                              cv=selector.influence_.folds_).fit(X, y, tasks=tasks)
    np.testing.assert_allclose(selector.task_influence_, reference.task_influence_, rtol=1e-10)


def test_any_task_stratified_splitter_can_be_passed_as_cv():
    X, y, tasks, *_ = sign_flipped(n_tasks=5, n_per_task=30)
    selector = TaskSelector(MultitaskRidge(alpha=1.0),
                            cv=StratifiedKFold(4, shuffle=True, random_state=1))
    selector.fit(X, y, tasks=tasks)
    assert len(selector.influence_.folds_) == 4
    with pytest.raises(ValueError, match="trains on no row of task"):
        TaskSelector(MultitaskRidge(alpha=1.0), cv=KFold(4)).fit(X, y, tasks=tasks)


@pytest.mark.parametrize("params, match", [
    ({"cv": None}, "cross-fitted"),
    ({"cv": 1}, "cv"),
    ({"guard": "yes"}, "guard"),
    ({"method": "exact"}, "method"),
    ({"target_tasks": ["nope"]}, "unknown task"),
])
def test_bad_parameters_raise_clear_errors(params, match):
    X, y, tasks, *_ = sign_flipped(n_tasks=4, n_per_task=20)
    with pytest.raises(ValueError, match=match):
        TaskSelector(MultitaskRidge(), **params).fit(X, y, tasks=tasks)


def test_a_model_whose_tasks_share_predictions_is_refused():
    X, y, tasks, *_ = sign_flipped(n_tasks=4, n_per_task=20)

    class NoHeads:  # a protocol model without per-task heads (as a shared-bottom network)
        def fit(self, X, y):
            return self

        def _mtif_objective(self, data):
            return None

        def get_params(self, deep=True):
            return {}

    with pytest.raises(ValueError, match="predict from their own parameters"):
        TaskSelector(NoHeads()).fit(X, y, tasks=tasks)
