"""MTIFInfluence on dask rows equals MTIFInfluence on the same rows in memory.

Ground truth: the in-memory MTIFInfluence given the SAME training and validation rows (the dask
split and folds are drawn block by block, so their rows are read back with ``.compute()`` and
passed to the in-memory fit as X_val / cv=[(train, val), ...]). Both sides run the same solver,
factor and influence algebra on per-task sums added up in another order, so effects agree to
round-off: relative 1e-10 of the largest effect (effects of rows near the optimum of their own
task are close to 0, so an entrywise rtol would compare round-off with round-off).
"""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
pd = pytest.importorskip("pandas")

import dask  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.frozen import FrozenEstimator  # noqa: E402

from mtif_sklearn import MTIFInfluence, MultitaskLogistic, MultitaskRidge  # noqa: E402
from mtif_sklearn.datasets import (  # noqa: E402
    make_multitask_classification,
    make_multitask_regression,
)

RTOL = 1e-10


def assert_effects_equal(actual, expected):
    actual = actual.compute() if dask.is_dask_collection(actual) else actual
    scale = np.nanmax(np.abs(expected))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=RTOL * scale)


def _uneven(X, y, tasks, sizes, seed):
    keep = np.sort(np.concatenate([np.flatnonzero(tasks == k)[:n] for k, n in enumerate(sizes)]))
    order = keep[np.random.default_rng(seed).permutation(keep.size)]  # tasks over all blocks
    return X[order], y[order], tasks[order]


@pytest.fixture(scope="module", params=["ridge", "logistic"])
def problem(request):
    """(estimator, X, y, tasks, X_val, y_val, tasks_val): tasks of uneven size, unsorted."""
    if request.param == "ridge":
        make, estimator = make_multitask_regression, MultitaskRidge(alpha=0.3)
    else:
        make, estimator = make_multitask_classification, MultitaskLogistic(alpha=0.3)
    X, y, tasks = _uneven(*make(n_tasks=4, n_samples_per_task=50, n_features=3,
                                random_state=0), [50, 14, 33, 21], seed=0)
    Xv, yv, tv = _uneven(*make(n_tasks=4, n_samples_per_task=15, n_features=3,
                               random_state=1), [15, 6, 9, 12], seed=1)
    return estimator, X, y, tasks, Xv, yv, tv


def lazy(values, chunks):
    return da.from_array(values, chunks=(chunks,) + values.shape[1:])


@pytest.mark.parametrize("rows", [(29, 40, 11, 38), 200])  # uneven blocks; one block
def test_influence_with_validation_rows_equals_in_memory(problem, rows):
    estimator, X, y, tasks, Xv, yv, tv = problem
    memory = MTIFInfluence(estimator).fit(X, y, tasks=tasks, X_val=Xv, y_val=yv, tasks_val=tv)
    inf = MTIFInfluence(estimator)
    effects = inf.fit_transform(lazy(X, rows), lazy(y, rows), tasks=lazy(tasks, rows),
                                X_val=lazy(Xv, 13), y_val=lazy(yv, 13), tasks_val=tv)
    assert dask.is_dask_collection(effects) and dask.is_dask_collection(inf.influence_)
    assert_effects_equal(effects, memory.influence_)
    assert_effects_equal(inf.influence_, memory.influence_)
    assert_effects_equal(inf.task_influence_, memory.task_influence_)
    np.testing.assert_allclose(inf.validation_loss_, memory.validation_loss_, rtol=1e-12)
    for targets, weights in [(None, "size"), ([0, 2], "equal")]:
        scores = inf.row_scores(target_tasks=targets, task_weights=weights)
        assert dask.is_dask_collection(scores)
        assert_effects_equal(scores, memory.row_scores(target_tasks=targets,
                                                       task_weights=weights))
    harmful, expected = inf.harmful_rows(4), memory.harmful_rows(4)
    for task, (rows_found, effects) in expected.items():
        np.testing.assert_array_equal(harmful[task][0], rows_found)
        assert_effects_equal(harmful[task][1], effects)
    assert_effects_equal(inf.transform(lazy(Xv, 10), lazy(yv, 10), tasks=lazy(tv, 10)),
                         memory.transform(Xv, yv, tasks=tv))


def test_in_memory_validation_rows_with_dask_training_rows(problem):
    estimator, X, y, tasks, Xv, yv, tv = problem
    memory = MTIFInfluence(estimator).fit(X, y, tasks=tasks, X_val=Xv, y_val=yv, tasks_val=tv)
    inf = MTIFInfluence(estimator).fit(lazy(X, 45), lazy(y, 45), tasks=tasks, X_val=Xv,
                                       y_val=yv, tasks_val=tv)
    assert_effects_equal(inf.influence_, memory.influence_)
    assert_effects_equal(inf.task_influence_, memory.task_influence_)


def test_held_out_split_is_stratified_and_equals_in_memory_on_its_rows(problem):
    estimator, X, y, tasks, *_ = problem
    inf = MTIFInfluence(estimator, validation_fraction=0.25, random_state=0).fit(
        lazy(X, 37), lazy(y, 37), tasks=lazy(tasks, 37))
    train, val = inf.train_indices_.compute(), inf.val_indices_.compute()
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(len(y)))
    # The in-memory rule: round(0.25 n_k) validation rows of every task, at least 1.
    counts = np.bincount(tasks)
    np.testing.assert_array_equal(np.bincount(tasks[val]),
                                  [round(0.25 * n) for n in counts])
    memory = MTIFInfluence(estimator).fit(X[train], y[train], tasks=tasks[train],
                                          X_val=X[val], y_val=y[val], tasks_val=tasks[val])
    assert inf.influence_.shape == memory.influence_.shape
    assert_effects_equal(inf.influence_, memory.influence_)
    assert_effects_equal(inf.row_scores(), memory.row_scores())
    harmful, expected = inf.harmful_rows(3), memory.harmful_rows(3)
    for task, (rows_found, _) in expected.items():  # rows of X on both sides
        np.testing.assert_array_equal(harmful[task][0], train[rows_found])
    again = MTIFInfluence(estimator, validation_fraction=0.25, random_state=0).fit(
        lazy(X, 37), lazy(y, 37), tasks=lazy(tasks, 37))
    np.testing.assert_array_equal(again.val_indices_.compute(), val)  # reproducible


def test_cross_fitting_equals_in_memory_on_the_same_folds_in_three_passes(problem,
                                                                           count_passes):
    estimator, X, y, tasks, *_ = problem
    with count_passes() as counter:
        inf = MTIFInfluence(estimator, cv=3, random_state=1).fit(lazy(X, 41), lazy(y, 41),
                                                                 tasks=tasks)
    if isinstance(estimator, MultitaskRidge):
        # Fold counts, every fold's fit (one pass: sums kept per fold), every fold's
        # validation and task gradients (one pass): cross-fitting costs about one fit.
        assert counter.passes == 3
    folds = [(train.compute(), val.compute()) for train, val in inf.folds_]
    for train, val in folds:  # folds are stratified: sizes differ by <= 1 row per task
        assert np.ptp([np.bincount(tasks[v], minlength=4) for _, v in folds], axis=0).max() <= 1
        np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(len(y)))
    memory = MTIFInfluence(estimator, cv=folds).fit(X, y, tasks=tasks)
    assert_effects_equal(inf.influence_, memory.influence_)
    assert_effects_equal(inf.task_influence_, memory.task_influence_)
    assert_effects_equal(inf.task_influence_se_, memory.task_influence_se_)
    assert_effects_equal(inf.row_scores(), memory.row_scores())
    np.testing.assert_allclose(inf.validation_loss_, memory.validation_loss_, rtol=1e-12)
    np.testing.assert_allclose(inf.estimator_.coef_, memory.estimator_.coef_, rtol=1e-10,
                               atol=1e-12)


def test_dask_dataframe_with_task_column_equals_pandas(problem):
    dd = pytest.importorskip("dask.dataframe")  # needs pyarrow too
    estimator, X, y, tasks, Xv, yv, tv = problem
    stores = np.array(["north", "south", "east", "west"], dtype=object)
    frame = pd.DataFrame(X, columns=["price", "promo", "temp"]).assign(store=stores[tasks])
    frame_val = pd.DataFrame(Xv, columns=["price", "promo", "temp"]).assign(store=stores[tv])
    estimator = clone(estimator).set_params(task_column="store")
    memory = MTIFInfluence(estimator).fit(frame, y, X_val=frame_val, y_val=yv)
    inf = MTIFInfluence(estimator).fit(
        dd.from_pandas(frame, npartitions=4), dd.from_pandas(pd.Series(y), npartitions=4),
        X_val=dd.from_pandas(frame_val, npartitions=2), y_val=yv)
    np.testing.assert_array_equal(inf.tasks_, memory.tasks_)
    np.testing.assert_array_equal(inf.feature_names_in_, memory.feature_names_in_)
    assert_effects_equal(inf.influence_, memory.influence_)
    assert_effects_equal(inf.task_influence_, memory.task_influence_)


def test_frozen_model_fitted_on_dask_rows(problem):
    estimator, X, y, tasks, Xv, yv, tv = problem
    fitted = clone(estimator).fit(lazy(X, 50), lazy(y, 50), tasks=tasks)
    frozen = MTIFInfluence(FrozenEstimator(fitted)).fit(lazy(X, 33), lazy(y, 33), tasks=tasks,
                                                        X_val=Xv, y_val=yv, tasks_val=tv)
    memory = MTIFInfluence(estimator).fit(X, y, tasks=tasks, X_val=Xv, y_val=yv, tasks_val=tv)
    assert_effects_equal(frozen.influence_, memory.influence_)
    with pytest.raises(ValueError, match="not the rows the model was fitted on"):
        MTIFInfluence(FrozenEstimator(fitted)).fit(lazy(X[::-1], 33), lazy(y, 33),
                                                   tasks=tasks, X_val=Xv, y_val=yv,
                                                   tasks_val=tv)


def test_influence_on_a_distributed_cluster(cluster_client, problem):
    estimator, X, y, tasks, Xv, yv, tv = problem
    # Ridge cross-fitted (three passes); logistic with validation rows (one pass per Newton
    # step, each a round trip to the workers).
    cv, validation = ((3, {}) if isinstance(estimator, MultitaskRidge)
                      else (None, {"X_val": lazy(Xv, 20), "y_val": lazy(yv, 20),
                                   "tasks_val": tv}))
    with dask.config.set(scheduler=cluster_client.get):
        inf = MTIFInfluence(estimator, cv=cv, random_state=2).fit(
            lazy(X, 60), lazy(y, 60), tasks=tasks, **validation)
        scores = inf.row_scores().compute()
        folds = [(train.compute(), val.compute()) for train, val in inf.folds_] if cv else None
    if cv:
        memory = MTIFInfluence(estimator, cv=folds).fit(X, y, tasks=tasks)
    else:
        memory = MTIFInfluence(estimator).fit(X, y, tasks=tasks, X_val=Xv, y_val=yv,
                                              tasks_val=tv)
    assert_effects_equal(scores, memory.row_scores())
    assert_effects_equal(inf.task_influence_, memory.task_influence_)


@pytest.mark.parametrize("params, match", [
    ({"method": "newton"}, "method='newton'\\) is not available on dask rows"),
    ({"backend": "cupy"}, "backend='cupy' is not available on dask rows"),
    ({"cv": [(np.arange(5), np.arange(5, 10))]}, "cv must be an int or None"),
])
def test_what_dask_rows_do_not_support_is_refused_clearly(problem, params, match):
    estimator, X, y, tasks, *_ = problem
    with pytest.raises(ValueError, match=match):
        MTIFInfluence(estimator, **params).fit(lazy(X, 50), lazy(y, 50), tasks=tasks)


def test_a_task_too_small_to_split_is_named(problem):
    estimator, X, y, tasks, *_ = problem
    tasks = tasks.copy()
    tasks[np.flatnonzero(tasks == 1)[0]] = 7  # task 7 has one row
    with pytest.raises(ValueError, match="Task 7 has 1 row"):
        MTIFInfluence(estimator).fit(lazy(X, 50), lazy(y, 50), tasks=tasks)


def test_a_bad_block_stops_every_fold_fit_with_its_error(problem):
    # The fold models are fitted together in threads that share their passes: an error in a
    # block must reach every one of them (and the caller), never leave one waiting.
    estimator, X, y, tasks, *_ = problem
    X = X.copy()
    X[100, 2] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN or infinity \\(in rows 100"):
        MTIFInfluence(estimator, cv=3, random_state=0).fit(lazy(X, 50), lazy(y, 50),
                                                           tasks=tasks)
