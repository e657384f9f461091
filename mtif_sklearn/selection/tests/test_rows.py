"""NegativeTransferSelector: what it removes, that removal helps, and the meta-estimator API."""

import pickle

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.base import clone
from sklearn.model_selection import (
    GridSearchCV,
    KFold,
    StratifiedKFold,
    StratifiedShuffleSplit,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from mtif_sklearn import MTIFInfluence, MultitaskLogistic, MultitaskRidge, NegativeTransferSelector
from mtif_sklearn.datasets import make_multitask_classification, make_multitask_regression
from mtif_sklearn.selection._rows import _pair_scores, pick_rows


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
    # The guard may keep fewer than the cap of 30, but not give up on real errors: at least
    # two thirds of the cap go (every round of the default three kept rows here).
    assert 20 <= len(selector.removed_) <= 30
    assert precision >= 0.6


def test_selection_lowers_clean_test_error_on_corrupted_data(corrupted_fit):
    selector, (X, y, tasks, _, X_test, y_test, tasks_test) = corrupted_fit
    baseline = MultitaskRidge(alpha=0.1).fit(X, y, tasks=tasks)
    mse_before = np.mean((baseline.predict(X_test, tasks=tasks_test) - y_test) ** 2)
    mse_after = np.mean((selector.predict(X_test, tasks=tasks_test) - y_test) ** 2)
    # Noise variance is 1; the corrupted rows inflate the baseline well above it.
    assert mse_after < mse_before - 0.05


def test_two_rounds_find_at_least_as_many_errors_as_one(corrupted_fit):
    _, (X, y, tasks, corrupted, *_) = corrupted_fit
    # The selector before size weights and the guard (equal task weights, no limits), where
    # one round misses errors masked by others; with size weights one round finds all 30.
    old = {"task_weights": "equal", "max_task_fraction": None, "guard": False}
    found = []
    for n_rounds in (1, 2):
        selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1), fraction=0.03,
                                            n_rounds=n_rounds, random_state=0,
                                            **old).fit(X, y, tasks=tasks)
        assert len(selector.removed_) <= 30  # the total cap is still fraction * n
        found.append(np.isin(selector.removed_, corrupted).sum())
    assert found[0] <= found[1]


# The cap semantics on their own: no guard, one round, no per-task limit.
PLAIN = {"guard": False, "n_rounds": 1, "max_task_fraction": None}
# For the meta-estimator API tests that are not about which rows go: one cheap round.
FAST = {"guard": False, "n_rounds": 1}


def test_only_negative_rows_are_removed_and_fraction_caps_the_count():
    X, y, tasks = small_regression()
    generous = NegativeTransferSelector(MultitaskRidge(alpha=0.1), fraction=0.9,
                                        random_state=0, **PLAIN).fit(X, y, tasks=tasks)
    assert np.all(generous.scores_[generous.removed_] < 0)
    # A cap above the number of negative rows removes exactly the negative rows.
    assert len(generous.removed_) == generous.n_candidates_ == np.sum(generous.scores_ < 0)
    tight = NegativeTransferSelector(MultitaskRidge(alpha=0.1), fraction=0.05,
                                     random_state=0, **PLAIN).fit(X, y, tasks=tasks)
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


def _size_weighted_effects(X, y, tasks, folds, targets, task_weights="size", **params):
    """The reference of a cross-fitted score: every fold's (n, K) effects (stored
    influence_), weighted by the targets' validation rows ("size") or equally, averaged over
    the folds where the row was trained."""
    total, count = np.zeros(len(y)), np.zeros(len(y))
    for train, val in folds:
        influence = MTIFInfluence(MultitaskRidge(alpha=0.1), store_influence=True,
                                  **params).fit(
            X[train], y[train], tasks=tasks[train], X_val=X[val], y_val=y[val],
            tasks_val=tasks[val])
        columns = [influence.tasks_.tolist().index(t) for t in targets]
        counts = np.array([np.sum(tasks[val] == t) for t in targets], dtype=float)
        weights = counts / counts.sum() if task_weights == "size" else np.ones(len(targets))
        total[train] += influence.influence_[:, columns] @ weights
        count[train] += 1
    return total / count


@pytest.mark.parametrize("task_weights", ["size", "equal"])
def test_scores_are_weighted_effects_averaged_over_the_folds_where_the_row_was_trained(
        task_weights):
    X, y, tasks = small_regression()
    tasks = tasks.copy()
    keep = ~((tasks == 3) & (np.arange(len(y)) % 4 != 0))  # task 3 small: sizes differ
    X, y, tasks = X[keep], y[keep], tasks[keep]
    selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1), cv=3, n_rounds=1,
                                        task_weights=task_weights,
                                        random_state=0).fit(X, y, tasks=tasks)
    assert len(selector.folds_) == len(selector.influence_) == 3
    for _, val in selector.folds_:  # every fold validates every task (stratified by task)
        assert set(tasks[val]) == set(tasks)
    # Against the stored n x K effects of each fold; round-off only (the same algebra summed
    # in another order).
    expected = _size_weighted_effects(X, y, tasks, selector.folds_, [0, 1, 2, 3], task_weights)
    np.testing.assert_allclose(selector.scores_, expected, rtol=1e-9, atol=1e-14)
    # ... and the public cross-fitted summary on the same folds gives the same numbers.
    crossfit = MTIFInfluence(MultitaskRidge(alpha=0.1), cv=selector.folds_).fit(
        X, y, tasks=tasks)
    np.testing.assert_allclose(selector.scores_, crossfit.row_scores(
        task_weights=task_weights), rtol=1e-9, atol=1e-14)
    assert not hasattr(selector, "effects_")  # the n x K attribute is gone


def test_size_weights_stop_small_tasks_filling_the_removal_list():
    # A task with 15 rows beside five of 150: with equal task weights its validation mean
    # counts as much as a whole large task, so its rows get the largest scores.
    X, y, tasks = make_multitask_regression(n_tasks=6, n_samples_per_task=150, n_features=4,
                                            delta=0.5, random_state=0)
    keep = (tasks != 0) | (np.arange(len(y)) < 15)
    X, y, tasks = X[keep], y[keep], tasks[keep]
    share = {}
    for weights in ("size", "equal"):
        selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1), fraction=0.03,
                                            task_weights=weights, random_state=0,
                                            **PLAIN).fit(X, y, tasks=tasks)
        share[weights] = np.mean(tasks[selector.removed_] == 0)
    # Task 0 holds 2.0% of the rows. Measured on seeds 0-2 of this generator: 27%, 14% and
    # 23% of the removed rows from it with equal weights, 9% in each with size weights.
    assert share["equal"] > 2 * share["size"]
    assert share["size"] <= 0.1


def test_max_task_fraction_caps_each_task_and_a_task_keeps_a_row():
    X, y, tasks = small_regression()
    selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1), fraction=0.9,
                                        max_task_fraction=0.1, guard=False, n_rounds=2,
                                        random_state=0).fit(X, y, tasks=tasks)
    per_task = np.bincount(tasks[selector.removed_], minlength=4)
    assert per_task.max() <= 4 and per_task.sum() > 0  # floor(0.1 * 40), over both rounds
    unlimited = NegativeTransferSelector(MultitaskRidge(alpha=0.1), fraction=0.9,
                                         random_state=0, **PLAIN).fit(X, y, tasks=tasks)
    assert np.bincount(tasks[unlimited.removed_], minlength=4).max() > 4


def test_target_tasks_choose_whose_validation_loss_counts():
    X, y, tasks = small_regression()
    selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1), target_tasks=[2, 0],
                                        fraction=0.9, random_state=0,
                                        **PLAIN).fit(X, y, tasks=tasks)
    np.testing.assert_array_equal(selector.target_tasks_, [0, 2])
    expected = _size_weighted_effects(X, y, tasks, selector.folds_, [0, 2])
    np.testing.assert_allclose(selector.scores_, expected, rtol=1e-9, atol=1e-14)
    assert selector.report_["target"] == [True, False, True, False]
    # The targets' own rows are scored but not removed (include_target_rows=False).
    assert not np.isin(tasks[selector.removed_], [0, 2]).any()
    assert np.isfinite(selector.scores_[np.isin(tasks, [0, 2])]).all()
    single = NegativeTransferSelector(MultitaskRidge(alpha=0.1), target_tasks=1, n_rounds=1,
                                      random_state=0).fit(X, y, tasks=tasks)
    np.testing.assert_allclose(single.scores_,
                               _size_weighted_effects(X, y, tasks, single.folds_, [1]),
                               rtol=1e-9, atol=1e-14)


def test_include_target_rows_lets_the_targets_own_rows_go():
    X, y, tasks = small_regression()
    y = y.copy()
    y[[0, 1, 2]] += 30.0  # gross errors in the target's own rows
    kept_out = NegativeTransferSelector(MultitaskRidge(alpha=0.1), target_tasks=0,
                                        fraction=0.05, random_state=0,
                                        **PLAIN).fit(X, y, tasks=tasks)
    assert not np.isin(kept_out.removed_, np.flatnonzero(tasks == 0)).any()
    included = clone(kept_out).set_params(include_target_rows=True).fit(X, y, tasks=tasks)
    assert set(included.removed_[:3].tolist()) == {0, 1, 2}  # the most harmful of all rows


def targeted_transfer(seed=0, n_target=30, n_sources=6, n_conflicting=4, n_per_source=120):
    """A 30-row target task 0 and sources whose sub-population (10-30% of the rows of the
    conflicting ones) has the NEGATIVE of the target's coefficients on a block of features
    (x_s) that only that sub-population and half the target's rows use; the conflicting
    sources also carry a "region" block x_r the target needs (same coefficients). Each source
    fits its sub-population well (its own coefficients), so only the shared parameters carry
    the conflict. Returns the data, the conflicting mask and 2000 target test rows."""
    rng = np.random.default_rng([seed, 16])
    w, v, u = rng.standard_normal(5), rng.standard_normal(5), 1.5 * rng.standard_normal(3)

    def rows(n, w_k, p_region, p_sub, u_k):
        X_c = rng.standard_normal((n, 5))
        X_r = rng.standard_normal((n, 5)) * (rng.random(n) < p_region)[:, None]
        sub = rng.random(n) < p_sub
        X_s = rng.standard_normal((n, 3)) * sub[:, None]
        y = X_c @ w_k + X_r @ v + X_s @ u_k + rng.standard_normal(n)
        return np.hstack([X_c, X_r, X_s]), y, sub

    w_target = w + 0.3 * rng.standard_normal(5)
    parts = [(*rows(n_target, w_target, 0.5, 0.5, u)[:2], np.zeros(n_target, bool))]
    for k in range(1, n_sources + 1):
        w_k = w + 0.3 * rng.standard_normal(5)
        if k <= n_conflicting:
            parts.append(rows(n_per_source, w_k, 1.0, rng.uniform(0.1, 0.3), -u))
        else:
            X_k, y_k, _ = rows(n_per_source, w_k, 0.0, 0.0, u)
            parts.append((X_k, y_k, np.zeros(n_per_source, bool)))
    X = np.vstack([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    tasks = np.repeat(np.arange(n_sources + 1), [len(p[1]) for p in parts])
    conflicting = np.concatenate([p[2] for p in parts])
    X_test, y_test, _ = rows(2000, w_target, 0.5, 0.5, u)
    return X, y, tasks, conflicting, X_test, y_test


def test_targeted_selection_removes_conflicting_source_rows_and_helps_the_target():
    # Seed 1; on seeds 0-5 of this generator the precision was 0.62-1.00 (median 0.92) and
    # the target's test MSE fell in all six (by 0.4 to 5.6).
    X, y, tasks, conflicting, X_test, y_test = targeted_transfer(seed=1)
    target_test = np.zeros(len(y_test), dtype=int)
    model = MultitaskRidge(alpha=1.0)
    selector = NegativeTransferSelector(model, target_tasks=[0], fraction=0.1,
                                        random_state=0).fit(X, y, tasks=tasks)
    removed = selector.removed_
    # Conflicting rows are 15% of the rows (the chance precision); the benchmark measured
    # 0.91 at this setting over 5 seeds of a larger problem.
    assert len(removed) >= 20 and conflicting[removed].mean() >= 0.7
    assert not np.any(tasks[removed] == 0)  # the target's own rows stay
    mse_all = np.mean((clone(model).fit(X, y, tasks=tasks).predict(
        X_test, tasks=target_test) - y_test) ** 2)
    mse_selected = np.mean((selector.predict(X_test, tasks=target_test) - y_test) ** 2)
    # With every row the conflicting sub-populations pull the shared coefficients away from
    # the target; removing them must recover a clear part of that (noise variance is 1).
    assert mse_selected < mse_all - 1.0
    # A loss ranking does not see these rows: each source fits its sub-population.
    from mtif_sklearn.selection import highest_loss_rows

    by_loss = highest_loss_rows(model, X, y, tasks=tasks, fraction=0.1, exclude_tasks=[0],
                                random_state=0)
    assert conflicting[by_loss].mean() < conflicting[removed].mean() - 0.3


def test_guard_keeps_nothing_on_clean_data_and_reports_why():
    X, y, tasks = make_multitask_regression(n_tasks=4, n_samples_per_task=80, n_features=4,
                                            delta=0.5, random_state=5)
    guarded = NegativeTransferSelector(MultitaskRidge(alpha=0.1), fraction=0.05,
                                       random_state=0).fit(X, y, tasks=tasks)
    unguarded = clone(guarded).set_params(guard=False).fit(X, y, tasks=tasks)
    # Nothing is wrong with these rows: unguarded, the cap's worth of rows with negative
    # (noise) scores goes; the guard sees no held-out gain and keeps them all.
    assert len(unguarded.removed_) == 16
    assert len(guarded.removed_) == 0 and guarded.support_.all()
    report = guarded.guard_report_
    assert report["round"] == [1] and report["n_kept"] == [0]
    assert report["n_proposed"][0] > 0
    assert report["heldout_loss_after"][0] > report["heldout_loss_before"][0] - report[
        "change_se"][0]
    assert "guard (nested CV, margin 1 se): round 1 kept 0 of" in guarded.selection_report()


def test_guard_scores_never_see_the_held_out_fold():
    X, y, tasks = small_regression()
    selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1), n_rounds=1,
                                        random_state=0).fit(X, y, tasks=tasks)
    folds = selector.folds_
    data = MultitaskRidge(alpha=0.1)._mtif_data(X, y, tasks, reset=True)
    rows, on_b, on_a = _pair_scores(MultitaskRidge(alpha=0.1), data, (X, y, tasks, None),
                                    selector.influence_[0].estimator_, np.arange(len(y)), folds,
                                    0, 1, [0, 1, 2, 3], "size", 0.0, "auto", "first_order")
    # The model behind the scores of held-out fold 0 trained on neither fold 0 nor fold 1
    # (its validation rows): the nested choice cannot depend on fold 0's labels.
    assert not np.isin(rows, np.concatenate([folds[0][1], folds[1][1]])).any()
    assert rows.size == len(y) - folds[0][1].size - folds[1][1].size
    reference = MTIFInfluence(MultitaskRidge(alpha=0.1)).fit(
        X[rows], y[rows], tasks=tasks[rows], X_val=X[folds[1][1]], y_val=y[folds[1][1]],
        tasks_val=tasks[folds[1][1]]).row_scores()
    np.testing.assert_allclose(on_b, reference, rtol=1e-8, atol=1e-14)
    assert on_a.shape == on_b.shape and not np.allclose(on_a, on_b)


def test_cv_none_scores_the_training_split_only():
    X, y, tasks = small_regression()
    selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1), cv=None, fraction=0.9,
                                        validation_fraction=0.25, random_state=0, **PLAIN)
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


@pytest.mark.parametrize("seed", [35, 38])
def test_refit_on_the_split_keeps_every_task_over_several_rounds(seed):
    # Each round draws a new split; the refit uses the first one's training rows. The last-row
    # rule counted the current round's split, so later rounds could take a task's last rows
    # of the refit (these seeds lost three and two of the six tasks before the fix).
    X, y, tasks = make_multitask_regression(n_tasks=6, n_samples_per_task=5, n_features=2,
                                            random_state=seed)
    y = y + np.random.default_rng(seed).normal(0, 3, y.size)
    selector = NegativeTransferSelector(
        MultitaskRidge(alpha=0.1), fraction=0.9, max_task_fraction=None, cv=None,
        refit_on="split", n_rounds=3, guard=False, validation_fraction=0.3,
        random_state=seed).fit(X, y, tasks=tasks)
    train = selector._first_folds[0][0]
    kept = train[selector.support_[train]]
    assert set(tasks[kept]) == set(tasks)
    np.testing.assert_array_equal(selector.estimator_.tasks_, np.unique(tasks))
    assert selector.removed_.size > 0


def test_a_task_never_loses_its_last_row_nor_more_than_its_quota():
    scores = np.array([-5.0, -4.0, -3.0, -2.0, 1.0, -1.0])
    codes = np.array([0, 0, 1, 1, 1, 1])
    eligible = np.ones(6, dtype=bool)
    removed = pick_rows(scores, eligible, codes, 4, available=[2, 4])
    np.testing.assert_array_equal(removed, [0, 2, 3, 5])
    np.testing.assert_array_equal(pick_rows(scores, eligible, codes, 4, available=[2, 4],
                                            quota=[1, 1]), [0, 2])
    eligible[2] = False
    np.testing.assert_array_equal(pick_rows(scores, eligible, codes, 9, available=[2, 4],
                                            negative_only=False), [0, 3, 5, 4])


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
    # Unguarded: these 10 flips among 400 noisy rows are too few for the nested-CV guard to
    # confirm on held-out rows (it keeps nothing here); the test is about the ranking.
    selector = NegativeTransferSelector(MultitaskLogistic(alpha=0.1), fraction=0.025,
                                        guard=False, random_state=0).fit(X, y_noisy,
                                                                         tasks=tasks)
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
    assert "cross-fitted over 5 folds" in text and len(text.splitlines()) == 5 + 10


def test_report_survives_task_labels_with_newlines_and_spaces():
    X, y, tasks = small_regression()
    labels = np.array(["a\nb", "c", " d", "e\tf"], dtype=object)[tasks]
    selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1), random_state=0,
                                        **FAST).fit(X, y, tasks=labels)
    lines = selector.selection_report().splitlines()
    assert len(lines) == 5 + 4  # one line per task: the newline did not split a row
    rows = lines[5:]
    assert [row.strip()[:6] for row in rows] == ["' d'  ", "'a\\nb'", "c     ", "'e\\tf'"]
    assert len({len(row) for row in rows}) == 1  # aligned: width from the printed names


def test_verbose_prints_validation_loss_before_and_after(capsys):
    X, y, tasks, corrupted, *_ = corrupted_regression(n_per_task=60, n_tasks=5)
    selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1), fraction=0.03, verbose=1,
                                        guard=False, random_state=0).fit(X, y, tasks=tasks)
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
            MultitaskRidge(alpha=0.1), random_state=0))  # defaults: routing reaches the guard
        pipe.fit(X, y, tasks=tasks)
        assert pipe.predict(X[:5], tasks=tasks[:5]).shape == (5,)
        assert pipe.score(X, y, tasks=tasks) > 0.5
        search = GridSearchCV(NegativeTransferSelector(MultitaskRidge(alpha=0.1),
                                                       random_state=0, **FAST),
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
    # one round, guarded: the guard's nested fits take rows of the DataFrame too
    by_column = NegativeTransferSelector(MultitaskRidge(alpha=0.1, task_column="school"),
                                         n_rounds=1, random_state=0).fit(frame, y)
    by_keyword = NegativeTransferSelector(MultitaskRidge(alpha=0.1), n_rounds=1,
                                          random_state=0).fit(
        X, y, tasks=np.array([f"s{t}" for t in tasks]))
    np.testing.assert_array_equal(by_column.removed_, by_keyword.removed_)
    np.testing.assert_array_equal(by_column.tasks_, ["s0", "s1", "s2", "s3"])
    np.testing.assert_allclose(by_column.predict(frame), by_keyword.predict(
        X, tasks=frame["school"].to_numpy()))
    np.testing.assert_array_equal(by_column.feature_names_in_, frame.columns)
    # no routing needed on this path: a plain grid search over fraction works
    search = GridSearchCV(clone(by_column).set_params(**FAST), {"fraction": [0.0, 0.1]},
                          cv=KFold(3, shuffle=True, random_state=0)).fit(frame, y)
    assert search.best_estimator_.predict(frame.iloc[:3]).shape == (3,)


def test_any_task_stratified_splitter_can_be_passed_as_cv():
    X, y, tasks = small_regression()
    selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1),
                                        cv=StratifiedKFold(4, shuffle=True, random_state=1))
    selector.fit(X, y, tasks=tasks)
    assert len(selector.folds_) == 4
    # Overlapping validation sets (shuffle splits) are fine too, guard included: its pair
    # models train on the rows outside both validation sets.
    shuffled = NegativeTransferSelector(
        MultitaskRidge(alpha=0.1), fraction=0.1, n_rounds=1, random_state=0,
        cv=StratifiedShuffleSplit(3, test_size=0.25, random_state=0)).fit(X, y, tasks=tasks)
    assert len(shuffled.folds_) == 3 and shuffled.guard_report_["round"] == [1]
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
    selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1), random_state=0, **FAST)
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
    ({"max_task_fraction": 0.0}, InvalidParameterError, "max_task_fraction"),
    ({"task_weights": "pooled"}, InvalidParameterError, "task_weights"),
    ({"guard": -1.0}, InvalidParameterError, "guard"),
    ({"cv": None}, ValueError, r"guard=True needs cross-fitted scores .* Pass guard=False"),
    ({"cv": 2}, ValueError, "guard=True needs cv with at least 3 folds; got 2"),
])
def test_bad_parameters_raise_clear_errors(params, error, match):
    X, y, tasks = small_regression()
    selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1), **params)
    with pytest.raises(error, match=match):
        selector.fit(X, y, tasks=tasks)


def test_predict_without_tasks_on_a_multitask_model_raises():
    X, y, tasks = small_regression()
    selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1), random_state=0,
                                        **FAST).fit(X, y, tasks=tasks)
    with pytest.raises(ValueError, match="need the task of every row"):
        selector.predict(X)


def test_method_newton_is_passed_to_the_influence_it_builds():
    X, y, tasks = small_regression()
    newton = NegativeTransferSelector(MultitaskRidge(alpha=0.1), cv=3, method="newton",
                                      n_rounds=1, random_state=0).fit(X, y, tasks=tasks)
    first = NegativeTransferSelector(MultitaskRidge(alpha=0.1), cv=3, n_rounds=1,
                                     random_state=0).fit(X, y, tasks=tasks)
    assert all(inf.method == "newton" for inf in newton.influence_)
    expected = _size_weighted_effects(X, y, tasks, newton.folds_, [0, 1, 2, 3],
                                      method="newton")
    # Scores are the cross-fitted Newton (for ridge: exact leave-one-out) effects, which are
    # not the first-order ones.
    np.testing.assert_allclose(newton.scores_, expected, rtol=1e-9, atol=1e-14)
    assert not np.allclose(newton.scores_, first.scores_, rtol=1e-3)


def test_predicted_change_is_the_summed_effect_of_the_removed_rows():
    X, y, tasks, *_ = corrupted_regression(n_per_task=40, n_tasks=4)
    selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1), fraction=0.05, n_rounds=1,
                                        guard=False, random_state=0).fit(X, y, tasks=tasks)
    expected, rows = np.zeros(4), np.zeros(4)
    for train, val in selector.folds_:
        influence = MTIFInfluence(MultitaskRidge(alpha=0.1), store_influence=True).fit(
            X[train], y[train], tasks=tasks[train], X_val=X[val], y_val=y[val],
            tasks_val=tasks[val])
        counts = np.bincount(tasks[val], minlength=4)
        expected += influence.influence_[np.isin(train, selector.removed_)].sum(axis=0) * counts
        rows += counts
    # From the removed rows' summed gradients instead of the stored n x K matrix: round-off.
    np.testing.assert_allclose(selector.report_["predicted_change"], expected / rows,
                               rtol=1e-9, atol=1e-12)
