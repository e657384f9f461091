"""The row-selection baselines: cross-fitted losses, highest-loss rows, cleanlab's label issues."""

import sys

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

from mtif_sklearn import MultitaskLogistic, MultitaskRidge
from mtif_sklearn._tasks import task_folds
from mtif_sklearn.datasets import make_multitask_classification, make_multitask_regression
from mtif_sklearn.selection import (
    cleanlab_label_issues,
    cross_fitted_losses,
    cross_fitted_proba,
    highest_loss_rows,
)


def regression(seed=0):
    return make_multitask_regression(n_tasks=3, n_samples_per_task=40, n_features=4,
                                     delta=0.5, random_state=seed)


def classification(seed=0):
    return make_multitask_classification(n_tasks=3, n_samples_per_task=60, n_features=4,
                                         delta=0.5, random_state=seed)


def test_cross_fitted_losses_are_out_of_fold_squared_errors():
    X, y, tasks = regression()
    losses = cross_fitted_losses(MultitaskRidge(alpha=0.1), X, y, tasks=tasks, random_state=0)
    # Reference: the same folds (the package's fold helper, same seed) fitted by hand.
    expected = np.empty(len(y))
    for train, val in task_folds(tasks, [0, 1, 2], 5, random_state=0):
        model = MultitaskRidge(alpha=0.1).fit(X[train], y[train], tasks=tasks[train])
        expected[val] = (model.predict(X[val], tasks=tasks[val]) - y[val]) ** 2
    np.testing.assert_allclose(losses, expected, rtol=1e-12)


def test_a_single_task_estimator_is_fitted_per_task_and_fold():
    X, y, tasks = make_multitask_classification(n_tasks=2, n_samples_per_task=40, n_features=3,
                                                delta=0.5, random_state=0)
    proba = cross_fitted_proba(LogisticRegression(), X, y, tasks=tasks, cv=3, random_state=0)
    expected = np.empty((len(y), 2))
    for train, val in task_folds(tasks, [0, 1], 3, random_state=0):
        for task in range(2):
            fit_rows, rows = train[tasks[train] == task], val[tasks[val] == task]
            expected[rows] = LogisticRegression().fit(X[fit_rows], y[fit_rows]).predict_proba(
                X[rows])
    np.testing.assert_allclose(proba, expected, rtol=1e-10)
    losses = cross_fitted_losses(LogisticRegression(), X, y, tasks=tasks, cv=3, random_state=0)
    np.testing.assert_allclose(losses, -np.log(expected[np.arange(len(y)), y]), rtol=1e-10)
    X, y, tasks = regression()
    regressor = cross_fitted_losses(Ridge(), X, y, tasks=tasks, cv=3, random_state=0)
    assert regressor.shape == (120,) and np.all(regressor >= 0)


def test_highest_loss_rows_follow_the_selectors_caps():
    X, y, tasks = regression()
    y = y.copy()
    y[[0, 1, 2, 3, 40]] += np.array([30.0, -30.0, 25.0, 20.0, 30.0])  # four in task 0
    losses = cross_fitted_losses(MultitaskRidge(alpha=0.1), X, y, tasks=tasks, random_state=0)
    rows = highest_loss_rows(MultitaskRidge(alpha=0.1), X, y, tasks=tasks, fraction=0.05,
                             max_task_fraction=None, random_state=0)
    # floor(0.05 * 120) = 6 rows, highest loss first
    np.testing.assert_array_equal(rows, np.argsort(-losses, kind="stable")[:6])
    assert set(rows[:5].tolist()) == {0, 1, 2, 3, 40}
    capped = highest_loss_rows(MultitaskRidge(alpha=0.1), X, y, tasks=tasks, fraction=0.05,
                               max_task_fraction=0.05, random_state=0)
    assert np.bincount(tasks[capped], minlength=3).max() <= 2  # floor(0.05 * 40)
    excluded = highest_loss_rows(MultitaskRidge(alpha=0.1), X, y, tasks=tasks, fraction=0.05,
                                 exclude_tasks=[0], random_state=0)
    assert not np.any(tasks[excluded] == 0) and 40 in excluded


def test_cleanlab_flags_flipped_labels_under_the_caps():
    pytest.importorskip("cleanlab")
    from cleanlab.filter import find_label_issues

    X, y, tasks, coef, _ = make_multitask_classification(
        n_tasks=3, n_samples_per_task=100, n_features=4, delta=0.5, random_state=0,
        return_coef=True)
    confident = np.abs(np.einsum("ij,ij->i", X, coef[tasks])) > 3
    flipped = np.flatnonzero(confident)[:6]
    y = y.copy()
    y[flipped] = 1 - y[flipped]
    rows = cleanlab_label_issues(MultitaskLogistic(alpha=0.1), X, y, tasks=tasks, fraction=0.05,
                                 max_task_fraction=None, random_state=0)
    proba = cross_fitted_proba(MultitaskLogistic(alpha=0.1), X, y, tasks=tasks, random_state=0)
    issues = find_label_issues(y, proba, return_indices_ranked_by="self_confidence")
    # cleanlab's own ranking, cut at floor(0.05 * 300) = 15 rows
    np.testing.assert_array_equal(rows, issues[:15])
    assert np.isin(flipped, rows).mean() >= 0.5  # confident flips are what it finds


def test_cleanlab_missing_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cleanlab", None)
    monkeypatch.setitem(sys.modules, "cleanlab.filter", None)
    X, y, tasks = classification()
    with pytest.raises(ImportError, match=r"pip install cleanlab.*mtif-sklearn\[cleanlab\]"):
        cleanlab_label_issues(MultitaskLogistic(), X, y, tasks=tasks)


@pytest.mark.parametrize("call, match", [
    (lambda X, y, t: cleanlab_label_issues(MultitaskRidge(), X, y, tasks=t),
     "needs a classifier"),
    (lambda X, y, t: cross_fitted_proba(MultitaskRidge(), X, y, tasks=t), "needs a classifier"),
    (lambda X, y, t: highest_loss_rows(MultitaskRidge(), X, y, tasks=t, cv=None),
     "cv=None leaves rows without an out-of-fold prediction"),
    (lambda X, y, t: highest_loss_rows(MultitaskRidge(), X, y, tasks=t, exclude_tasks=[7]),
     r"unknown task\(s\) \[7\]"),
])
def test_bad_input_gets_a_clear_error(call, match):
    X, y, tasks = regression()
    with pytest.raises(ValueError, match=match):
        call(X, y, tasks)


def test_inputs_are_not_modified():
    X, y, tasks = regression()
    copies = [a.copy() for a in (X, y, tasks)]
    highest_loss_rows(MultitaskRidge(), X, y, tasks=tasks, random_state=0)
    for original, copy in zip((X, y, tasks), copies, strict=True):
        np.testing.assert_array_equal(original, copy)


def test_examples_run():
    import doctest

    import mtif_sklearn.selection._baselines as module

    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
