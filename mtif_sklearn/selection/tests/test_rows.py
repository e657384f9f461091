"""NegativeTransferSelector: what it removes, that removal helps, and the meta-estimator API."""

import pickle

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from mtif_sklearn import MTIFInfluence, MultitaskLogistic, MultitaskRidge, NegativeTransferSelector
from mtif_sklearn.datasets import make_multitask_classification, make_multitask_regression
from mtif_sklearn.selection._rows import _select_harmful


def corrupted_regression(seed=0, n_tasks=10, n_per_task=100, n_features=5, share=0.03):
    """Regression tasks with gross label errors (+-15, noise sd 1) in 3 tasks, ``share`` of all
    rows, plus clean test rows from the same true coefficients."""
    X, y, tasks, coef, _ = make_multitask_regression(
        n_tasks=n_tasks, n_samples_per_task=n_per_task, n_features=n_features, delta=0.5,
        eps=0.2, random_state=seed, return_coef=True)
    rng = np.random.default_rng(seed)
    bad_tasks = rng.choice(n_tasks, size=3, replace=False)
    corrupted = rng.choice(np.flatnonzero(np.isin(tasks, bad_tasks)),
                           size=int(share * len(y)), replace=False)
    y = y.copy()
    y[corrupted] += rng.choice([-15.0, 15.0], size=corrupted.size)
    tasks_test = np.repeat(np.arange(n_tasks), 300)
    X_test = rng.standard_normal((tasks_test.size, n_features))
    y_test = np.einsum("ij,ij->i", X_test, coef[tasks_test]) + rng.standard_normal(tasks_test.size)
    return X, y, tasks, corrupted, X_test, y_test, tasks_test


@pytest.fixture(scope="module")
def corrupted_fit():
    X, y, tasks, corrupted, X_test, y_test, tasks_test = corrupted_regression()
    selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1), fraction=0.03,
                                        random_state=0).fit(X, y, tasks=tasks)
    return selector, (X, y, tasks, corrupted, X_test, y_test, tasks_test)


def small_regression(seed=0, n_tasks=4, n_per_task=40):
    return make_multitask_regression(n_tasks=n_tasks, n_samples_per_task=n_per_task,
                                     n_features=4, delta=0.5, random_state=seed)


# --- what gets removed, and that it helps ---------------------------------------------------
def test_gross_label_errors_are_what_gets_removed(corrupted_fit):
    selector, (_, _, _, corrupted, *_) = corrupted_fit
    precision = np.isin(selector.removed_, corrupted).mean()
    # Chance is 3% (the corrupted share). The design measured 84% at this setting on larger
    # data; 0.6 leaves room for seed-to-seed variation while staying 20x above chance.
    assert len(selector.removed_) == 30
    assert precision >= 0.6


def test_selection_lowers_clean_test_error_on_corrupted_data(corrupted_fit):
    selector, (X, y, tasks, _, X_test, y_test, tasks_test) = corrupted_fit
    baseline = MultitaskRidge(alpha=0.1).fit(X, y, tasks=tasks)
    mse_before = np.mean((baseline.predict(X_test, tasks=tasks_test) - y_test) ** 2)
    mse_after = np.mean((selector.predict(X_test, tasks=tasks_test) - y_test) ** 2)
    # Noise variance is 1; the corrupted rows inflate the baseline well above it.
    assert mse_after < mse_before - 0.05


def test_two_rounds_find_at_least_as_many_errors_as_one(corrupted_fit):
    selector, (X, y, tasks, corrupted, *_) = corrupted_fit
    two_rounds = NegativeTransferSelector(MultitaskRidge(alpha=0.1), fraction=0.03, n_rounds=2,
                                          random_state=0).fit(X, y, tasks=tasks)
    assert len(two_rounds.removed_) <= 30  # the total cap is still fraction * n
    assert np.isin(two_rounds.removed_, corrupted).sum() >= np.isin(selector.removed_,
                                                                    corrupted).sum()


def test_only_negative_rows_are_removed_and_fraction_caps_the_count():
    X, y, tasks = small_regression()
    generous = NegativeTransferSelector(MultitaskRidge(alpha=0.1), fraction=0.9,
                                        random_state=0).fit(X, y, tasks=tasks)
    assert np.all(generous.scores_[generous.removed_] < 0)
    # A cap above the number of negative rows removes exactly the negative rows.
    assert len(generous.removed_) == generous.n_candidates_ == np.sum(generous.scores_ < 0)
    tight = NegativeTransferSelector(MultitaskRidge(alpha=0.1), fraction=0.05,
                                     random_state=0).fit(X, y, tasks=tasks)
    assert len(tight.removed_) == int(0.05 * len(y)) == 8
    # The removed rows are the most negative ones, most harmful first.
    order = np.argsort(tight.scores_)[:8]
    np.testing.assert_array_equal(tight.removed_, order)
    np.testing.assert_array_equal(tight.support_, ~np.isin(np.arange(len(y)), order))


def test_fraction_zero_removes_nothing_and_refits_on_everything():
    X, y, tasks = small_regression()
    selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1), fraction=0.0,
                                        random_state=0).fit(X, y, tasks=tasks)
    assert selector.removed_.size == 0 and selector.support_.all()
    plain = MultitaskRidge(alpha=0.1).fit(X, y, tasks=tasks)
    np.testing.assert_allclose(selector.estimator_.coef_, plain.coef_, rtol=1e-12)


def test_refit_is_the_estimator_fitted_on_the_kept_rows(corrupted_fit):
    selector, (X, y, tasks, *_) = corrupted_fit
    kept = selector.support_
    direct = MultitaskRidge(alpha=0.1).fit(X[kept], y[kept], tasks=tasks[kept])
    np.testing.assert_allclose(selector.estimator_.coef_, direct.coef_, rtol=1e-10)


def test_scores_are_effects_averaged_over_the_folds_where_the_row_was_trained():
    X, y, tasks = small_regression()
    selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1), cv=3,
                                        random_state=0).fit(X, y, tasks=tasks)
    assert len(selector.folds_) == len(selector.influence_) == 3
    manual_sum = np.zeros((len(y), 4))
    for train, val in selector.folds_:
        # every fold validates every task (stratified by task)
        assert set(tasks[val]) == set(tasks)
        influence = MTIFInfluence(MultitaskRidge(alpha=0.1)).fit(
            X[train], y[train], tasks=tasks[train], X_val=X[val], y_val=y[val],
            tasks_val=tasks[val])
        manual_sum[train] += influence.influence_
    # with 3 folds every row is a training row in exactly 2 of them
    np.testing.assert_allclose(selector.effects_, manual_sum / 2, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(selector.scores_, selector.effects_.sum(axis=1), rtol=1e-12)


def test_target_tasks_choose_whose_validation_loss_counts():
    X, y, tasks = small_regression()
    selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1), target_tasks=[2, 0],
                                        fraction=0.9, random_state=0).fit(X, y, tasks=tasks)
    np.testing.assert_array_equal(selector.target_tasks_, [0, 2])
    np.testing.assert_allclose(selector.scores_, selector.effects_[:, [0, 2]].sum(axis=1))
    assert selector.report_["target"] == [True, False, True, False]
    single = NegativeTransferSelector(MultitaskRidge(alpha=0.1), target_tasks=1,
                                      random_state=0).fit(X, y, tasks=tasks)
    np.testing.assert_allclose(single.scores_, single.effects_[:, 1])


def test_cv_none_scores_the_training_split_only():
    X, y, tasks = small_regression()
    selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1), cv=None, fraction=0.9,
                                        validation_fraction=0.25, random_state=0)
    selector.fit(X, y, tasks=tasks)
    (train, val), = selector.folds_
    assert val.size == 40 and np.all(np.isnan(selector.scores_[val]))
    assert np.all(np.isfinite(selector.scores_[train]))
    assert not np.isin(selector.removed_, val).any()
    # refit_on="train": the validation rows are kept and used in the refit
    assert selector.estimator_.task_weight_sum_.sum() == len(y) - len(selector.removed_)
    paper = clone(selector).set_params(refit_on="split").fit(X, y, tasks=tasks)
    np.testing.assert_array_equal(paper.removed_, selector.removed_)
    assert paper.estimator_.task_weight_sum_.sum() == train.size - len(paper.removed_)


def test_a_task_never_loses_its_last_row():
    scores = np.array([-5.0, -4.0, -3.0, -2.0, 1.0])
    codes = np.array([0, 0, 1, 1, 1])
    removed = _select_harmful(scores, codes, available=[2, 3], max_remove=4)
    np.testing.assert_array_equal(removed, [0, 2, 3])


def test_logistic_removes_rows_labelled_against_the_true_model():
    X, y, tasks, coef, _ = make_multitask_classification(
        n_tasks=4, n_samples_per_task=100, n_features=4, delta=0.5, random_state=0,
        return_coef=True)
    true_logit = np.einsum("ij,ij->i", X, coef[tasks])
    rng = np.random.default_rng(0)
    flipped = rng.choice(np.flatnonzero((tasks < 2) & (np.abs(true_logit) > 2.5)), size=10,
                         replace=False)
    y_noisy = y.copy()
    y_noisy[flipped] = 1 - y_noisy[flipped]
    selector = NegativeTransferSelector(MultitaskLogistic(alpha=0.1), fraction=0.025,
                                        random_state=0).fit(X, y_noisy, tasks=tasks)
    assert np.all(selector.scores_[selector.removed_] < 0)
    # The generator's labels are noisy by themselves (about 23% disagree with the sign of the
    # true logit), and a confidently wrong natural label is as harmful as a flipped one, so
    # the specification is "removed rows are labelled against the true model", not "flipped".
    against_truth = y_noisy != (true_logit > 0)
    assert against_truth[selector.removed_].mean() >= 0.8 > 3 * against_truth.mean()
    assert np.isin(selector.removed_, flipped).sum() >= 2  # chance: 0.25 of 10
    np.testing.assert_array_equal(selector.classes_, [0, 1])
    assert selector.predict_proba(X[:3], tasks=tasks[:3]).shape == (3, 2)
    assert selector.decision_function(X[:3], tasks=tasks[:3]).shape == (3,)
    assert 0.5 < selector.score(X, y, tasks=tasks) <= 1.0


# --- report ---------------------------------------------------------------------------------
def test_report_says_which_tasks_lost_how_many_rows(corrupted_fit):
    selector, (_, _, tasks, corrupted, *_) = corrupted_fit
    report = pd.DataFrame(selector.report_)
    assert list(report["task"]) == list(range(10))
    assert report["n_removed"].sum() == len(selector.removed_)
    np.testing.assert_array_equal(report["n_removed"],
                                  np.bincount(tasks[selector.removed_], minlength=10))
    # the corrupted tasks lose the rows, and their validation loss is predicted to fall
    bad_tasks = np.unique(tasks[corrupted])
    assert report.loc[bad_tasks, "n_removed"].sum() >= 0.6 * len(selector.removed_)
    assert np.all(report.loc[bad_tasks, "predicted_change"] < 0)
    assert report["validation_loss_after"].isna().all()  # measured only with verbose
    text = selector.selection_report()
    assert f"removed {len(selector.removed_)} of 1000 rows" in text
    assert "cross-fitted over 5 folds" in text and len(text.splitlines()) == 4 + 10


def test_verbose_prints_validation_loss_before_and_after(capsys):
    X, y, tasks, corrupted, *_ = corrupted_regression(n_per_task=60, n_tasks=5)
    selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1), fraction=0.03, verbose=1,
                                        random_state=0).fit(X, y, tasks=tasks)
    printed = capsys.readouterr().out
    assert "measured" in printed and "after" in printed
    before = np.array(selector.report_["validation_loss_before"])
    after = np.array(selector.report_["validation_loss_after"])
    assert np.all(np.isfinite(after))
    assert np.mean(after) < np.mean(before)  # in-sample for the selection, so it must fall


# --- meta-estimator API -----------------------------------------------------------------------
def test_metadata_routing_in_pipeline_and_grid_search():
    X, y, tasks = small_regression(n_per_task=50)
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = make_pipeline(StandardScaler(), NegativeTransferSelector(
            MultitaskRidge(alpha=0.1), random_state=0))
        pipe.fit(X, y, tasks=tasks)
        assert pipe.predict(X[:5], tasks=tasks[:5]).shape == (5,)
        assert pipe.score(X, y, tasks=tasks) > 0.5
        search = GridSearchCV(NegativeTransferSelector(MultitaskRidge(alpha=0.1),
                                                       random_state=0),
                              {"fraction": [0.0, 0.05]}, cv=KFold(3, shuffle=True,
                                                                  random_state=0))
        search.fit(X, y, tasks=tasks)  # scoring=None: score() gets tasks routed
        assert search.best_params_["fraction"] in (0.0, 0.05)
        assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
        assert search.best_estimator_.predict(X[:5], tasks=tasks[:5]).shape == (5,)


def test_sample_weight_routing_follows_the_inner_request():
    X, y, tasks = small_regression()
    weights = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    direct = NegativeTransferSelector(MultitaskRidge(alpha=0.1), random_state=0).fit(
        X, y, tasks=tasks, sample_weight=weights)
    with sklearn.config_context(enable_metadata_routing=True):
        with pytest.raises(ValueError, match="sample_weight"):
            NegativeTransferSelector(MultitaskRidge(alpha=0.1), random_state=0).fit(
                X, y, tasks=tasks, sample_weight=weights)
        routed = NegativeTransferSelector(
            MultitaskRidge(alpha=0.1).set_fit_request(sample_weight=True), random_state=0).fit(
            X, y, tasks=tasks, sample_weight=weights)
    np.testing.assert_array_equal(routed.removed_, direct.removed_)
    np.testing.assert_allclose(routed.estimator_.coef_, direct.estimator_.coef_)
    unweighted = NegativeTransferSelector(MultitaskRidge(alpha=0.1), random_state=0).fit(
        X, y, tasks=tasks)
    assert not np.allclose(unweighted.scores_, direct.scores_)  # the weights were used


def test_task_column_path_matches_tasks_keyword():
    X, y, tasks = small_regression()
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(4)]).assign(
        school=[f"s{t}" for t in tasks])
    by_column = NegativeTransferSelector(MultitaskRidge(alpha=0.1, task_column="school"),
                                         random_state=0).fit(frame, y)
    by_keyword = NegativeTransferSelector(MultitaskRidge(alpha=0.1), random_state=0).fit(
        X, y, tasks=np.array([f"s{t}" for t in tasks]))
    np.testing.assert_array_equal(by_column.removed_, by_keyword.removed_)
    np.testing.assert_array_equal(by_column.tasks_, ["s0", "s1", "s2", "s3"])
    np.testing.assert_allclose(by_column.predict(frame), by_keyword.predict(
        X, tasks=frame["school"].to_numpy()))
    np.testing.assert_array_equal(by_column.feature_names_in_, frame.columns)
    # no routing needed on this path: a plain grid search over fraction works
    search = GridSearchCV(clone(by_column), {"fraction": [0.0, 0.1]},
                          cv=KFold(3, shuffle=True, random_state=0)).fit(frame, y)
    assert search.best_estimator_.predict(frame.iloc[:3]).shape == (3,)


def test_any_task_stratified_splitter_can_be_passed_as_cv():
    X, y, tasks = small_regression()
    selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1),
                                        cv=StratifiedKFold(4, shuffle=True, random_state=1))
    selector.fit(X, y, tasks=tasks)
    assert len(selector.folds_) == 4
    with pytest.raises(ValueError, match="trains on no row of task"):
        # unshuffled KFold on task-sorted rows holds out whole tasks
        NegativeTransferSelector(MultitaskRidge(alpha=0.1), cv=KFold(4)).fit(X, y, tasks=tasks)


def test_clone_and_pickle_round_trip(corrupted_fit):
    selector, (_, _, _, _, X_test, _, tasks_test) = corrupted_fit
    assert clone(selector).get_params()["fraction"] == 0.03
    restored = pickle.loads(pickle.dumps(selector))
    np.testing.assert_array_equal(restored.predict(X_test, tasks=tasks_test),
                                  selector.predict(X_test, tasks=tasks_test))
    np.testing.assert_array_equal(restored.removed_, selector.removed_)


def test_regressor_has_no_predict_proba():
    X, y, tasks = small_regression()
    selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1), random_state=0)
    assert not hasattr(selector, "predict_proba")
    assert not hasattr(selector.fit(X, y, tasks=tasks), "decision_function")


def test_inputs_are_not_modified():
    X, y, tasks = small_regression()
    weights = np.ones(len(y))
    copies = [a.copy() for a in (X, y, tasks, weights)]
    NegativeTransferSelector(MultitaskRidge(alpha=0.1), random_state=0).fit(
        X, y, tasks=tasks, sample_weight=weights)
    for original, copy in zip((X, y, tasks, weights), copies, strict=True):
        np.testing.assert_array_equal(original, copy)


@pytest.mark.parametrize("params, error, match", [
    ({"fraction": 1.0}, InvalidParameterError, "fraction"),
    ({"fraction": -0.1}, InvalidParameterError, "fraction"),
    ({"n_rounds": 0}, InvalidParameterError, "n_rounds"),
    ({"target_tasks": [0, "nope"]}, ValueError, r"target_tasks has unknown task\(s\) \['nope'\]"),
    ({"target_tasks": []}, ValueError, "target_tasks is empty"),
    ({"cv": 50}, ValueError, "fewer than cv=50 rows"),
])
def test_bad_parameters_raise_clear_errors(params, error, match):
    X, y, tasks = small_regression()
    selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1), **params)
    with pytest.raises(error, match=match):
        selector.fit(X, y, tasks=tasks)


def test_predict_without_tasks_on_a_multitask_model_raises():
    X, y, tasks = small_regression()
    selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1), random_state=0).fit(
        X, y, tasks=tasks)
    with pytest.raises(ValueError, match="need the task of every row"):
        selector.predict(X)


def test_method_newton_is_passed_to_the_influence_it_builds():
    X, y, tasks = small_regression()
    newton = NegativeTransferSelector(MultitaskRidge(alpha=0.1), cv=3, method="newton",
                                      random_state=0).fit(X, y, tasks=tasks)
    first = NegativeTransferSelector(MultitaskRidge(alpha=0.1), cv=3,
                                     random_state=0).fit(X, y, tasks=tasks)
    assert all(inf.method == "newton" for inf in newton.influence_)
    manual_sum = np.zeros((len(y), 4))
    for train, val in newton.folds_:
        manual_sum[train] += MTIFInfluence(MultitaskRidge(alpha=0.1), method="newton").fit(
            X[train], y[train], tasks=tasks[train], X_val=X[val], y_val=y[val],
            tasks_val=tasks[val]).influence_
    # Scores are the cross-fitted Newton (for ridge: exact leave-one-out) effects, which are
    # not the first-order ones.
    np.testing.assert_allclose(newton.effects_, manual_sum / 2, rtol=1e-9, atol=1e-14)
    assert not np.allclose(newton.effects_, first.effects_, rtol=1e-3)
