"""The fold helper: the folds of scikit-learn's StratifiedKFold, fast for many tasks."""

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold

from mtif_sklearn._tasks import _stratified_folds, task_folds


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("n_folds", [2, 3, 5])
def test_folds_are_exactly_stratified_kfold(seed, n_folds):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 40, size=600)  # uneven tasks, shuffled rows
    codes[:40 * n_folds] = np.repeat(np.arange(40), n_folds)  # every task has n_folds rows
    rng.shuffle(codes)
    expected = list(StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(
        np.zeros((codes.size, 1)), codes))
    ours = _stratified_folds(codes, n_folds, seed)
    for (train, test), (our_train, our_test) in zip(expected, ours, strict=True):
        np.testing.assert_array_equal(our_train, train)
        np.testing.assert_array_equal(our_test, test)


def test_task_folds_stratify_every_task_and_cover_every_row():
    codes = np.repeat(np.arange(500), 7)
    folds = task_folds(codes, list(range(500)), 5, random_state=0)
    validated = np.concatenate([test for _, test in folds])
    assert np.array_equal(np.sort(validated), np.arange(codes.size))  # every row once
    for train, test in folds:
        counts = np.bincount(codes[test], minlength=500)
        assert counts.min() >= 1 and counts.max() <= 2  # 7 rows over 5 folds: 1 or 2 each
        assert np.setdiff1d(np.arange(500), codes[train]).size == 0
