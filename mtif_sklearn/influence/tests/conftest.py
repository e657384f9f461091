"""Data shared by the influence tests."""

import pytest

from mtif_sklearn.datasets import make_multitask_classification


@pytest.fixture(scope="module")
def classification_split():
    """Four logistic tasks with a separate validation draw: (X, y, tasks, Xv, yv, tv)."""
    X, y, tasks = make_multitask_classification(n_tasks=4, n_samples_per_task=40, n_features=5,
                                                random_state=1)
    Xv, yv, tv = make_multitask_classification(n_tasks=4, n_samples_per_task=15, n_features=5,
                                               random_state=2)
    return X, y, tasks, Xv, yv, tv
