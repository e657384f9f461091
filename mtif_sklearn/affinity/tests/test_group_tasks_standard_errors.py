"""group_tasks on cross-fitted task influence: the matrix with its standard errors."""

import numpy as np
import pytest

from mtif_sklearn import MTIFInfluence, MultitaskRidge
from mtif_sklearn.affinity import group_tasks
from mtif_sklearn.affinity._grouping import _shrink_by_standard_errors
from mtif_sklearn.datasets import make_multitask_regression


def co_membership(labels):
    return labels[:, None] == labels[None, :]


def test_a_cross_fitted_influence_groups_like_its_matrix_and_errors():
    X, y, tasks = make_multitask_regression(n_tasks=6, n_samples_per_task=40, n_features=4,
                                            delta=0.3, eps=0.0, random_state=0)
    y = np.where(tasks >= 3, -y, y)  # two clusters with opposite relations
    inf = MTIFInfluence(MultitaskRidge(alpha=1.0), cv=5, random_state=0).fit(X, y, tasks=tasks)
    from_object = group_tasks(inf, 2, random_state=0)
    from_arrays = group_tasks(inf.task_influence_, 2, standard_errors=inf.task_influence_se_,
                              random_state=0)
    np.testing.assert_array_equal(from_object, from_arrays)
    np.testing.assert_array_equal(co_membership(from_object), co_membership(np.arange(6) >= 3))


def test_noisy_entries_do_not_decide_the_groups():
    truth = np.repeat([0, 1], 3)
    A = np.where(co_membership(truth), 1.0, -0.2)
    se = np.full_like(A, 0.1)
    # One small task's scores are huge but pure noise: they would pull task 5 into group 0.
    A[:3, 5] = A[5, :3] = 3.0
    se[:3, 5] = se[5, :3] = 5.0
    without = group_tasks(A, 2, random_state=0)
    with_se = group_tasks(A, 2, standard_errors=se, random_state=0)
    assert not np.array_equal(co_membership(without), co_membership(truth))
    np.testing.assert_array_equal(co_membership(with_se), co_membership(truth))
    for method in ("spectral", "exhaustive"):
        labels = group_tasks(A, 2, standard_errors=se, n_se=1.0, method=method, random_state=0)
        np.testing.assert_array_equal(co_membership(labels), co_membership(truth))


def test_shrinkage_is_a_soft_threshold_in_standard_errors():
    A = np.array([[0.0, 3.0], [-1.0, 0.5]])
    se = np.array([[1.0, 1.0], [1.0, 1.0]])
    np.testing.assert_allclose(_shrink_by_standard_errors(A, se, 2.0), [[0.0, 1.0], [0.0, 0.0]])
    # n_se=0 leaves the matrix as it is
    np.testing.assert_array_equal(group_tasks(A, 2, standard_errors=se, n_se=0.0),
                                  group_tasks(A, 2))


@pytest.mark.parametrize("affinity, errors, match", [
    (np.eye(3), np.ones((2, 2)), "standard_errors has shape"),
    (np.eye(3), -np.ones((3, 3)), ">= 0"),
    (np.eye(3), np.full((3, 3), np.nan), "standard_errors has NaN"),
    (MTIFInfluence(MultitaskRidge()), None, "not fitted"),
])
def test_bad_standard_errors_are_clear_errors(affinity, errors, match):
    with pytest.raises(ValueError, match=match):
        group_tasks(affinity, 2, standard_errors=errors)
