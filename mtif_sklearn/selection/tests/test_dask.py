"""NegativeTransferSelector on dask rows equals the in-memory selector on the same folds.

The dask folds are drawn block by block (stratified by task), so the in-memory ground truth is
given the same folds (``cv=[(train, val), ...]`` read back from ``folds_``). Scores are sums of
the same effects computed in another order: round-off only, so the removed rows (a ranking of
scores) are identical and scores agree to 1e-10 of the largest. A tie in scores within 1e-12
would be needed to break that, and these data have none.
"""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
pd = pytest.importorskip("pandas")

import dask  # noqa: E402
from sklearn.base import clone  # noqa: E402

from mtif_sklearn import (  # noqa: E402
    MTIFInfluence,
    MultitaskLogistic,
    MultitaskRidge,
    NegativeTransferSelector,
)
from mtif_sklearn.datasets import (  # noqa: E402
    make_multitask_classification,
    make_multitask_regression,
)
from mtif_sklearn.selection._dask import _sketch_block, _threshold  # noqa: E402

RTOL = 1e-10


def assert_close(actual, expected):
    actual = actual.compute() if dask.is_dask_collection(actual) else np.asarray(actual)
    expected = np.asarray(expected)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    scale = np.nanmax(np.abs(expected))
    np.testing.assert_allclose(np.nan_to_num(actual), np.nan_to_num(expected), rtol=0,
                               atol=RTOL * scale)


@pytest.fixture(scope="module", params=["ridge", "logistic"])
def corrupted(request):
    """Four tasks of uneven size with gross label errors in three of them (unsorted rows)."""
    rng = np.random.default_rng(0)
    if request.param == "ridge":
        X, y, tasks = make_multitask_regression(n_tasks=4, n_samples_per_task=60, n_features=4,
                                                random_state=0)
        y = y.copy()
        y[[0, 1, 60, 61, 120, 121]] += np.array([20.0, -20.0] * 3)
        estimator = MultitaskRidge(alpha=0.1)
    else:
        X, y, tasks = make_multitask_classification(n_tasks=4, n_samples_per_task=60,
                                                    n_features=4, random_state=0)
        y = y.copy()
        flip = rng.choice(180, 12, replace=False)
        y[flip] = 1 - y[flip]
        estimator = MultitaskLogistic(alpha=0.1)
    keep = np.concatenate([np.flatnonzero(tasks == k)[:n] for k, n in enumerate([60, 35, 50, 24])])
    order = rng.permutation(keep)
    return estimator, X[order], y[order], tasks[order]


def lazy(values, chunks):
    return da.from_array(values, chunks=(chunks,) + values.shape[1:])


def folds_of(selector):
    return [(train.compute(), val.compute()) for train, val in selector.folds_]


def assert_same_selection(selector, memory):
    np.testing.assert_array_equal(selector.removed_, memory.removed_)
    np.testing.assert_array_equal(selector.support_.compute(), memory.support_)
    assert_close(selector.scores_, memory.scores_)
    np.testing.assert_allclose(selector.estimator_.coef_, memory.estimator_.coef_, rtol=1e-10,
                               atol=1e-12)
    assert selector.n_candidates_ == memory.n_candidates_
    for key in ("n_rows", "n_removed", "task", "target"):
        assert selector.report_[key] == memory.report_[key], key
    for key in ("validation_loss_before", "predicted_change"):
        assert_close(selector.report_[key], memory.report_[key])
    for fold, fold_memory in zip(selector.influence_, memory.influence_, strict=True):
        assert_close(fold.row_scores(), fold_memory.row_scores())  # each fold's training rows


@pytest.mark.parametrize("cv, target_tasks", [(5, None), (3, [0, 2])])
def test_selector_on_dask_arrays_equals_in_memory_on_the_same_folds(corrupted, cv,
                                                                     target_tasks):
    estimator, X, y, tasks = corrupted
    selector = NegativeTransferSelector(estimator, guard=False, n_rounds=1, fraction=0.05, cv=cv,
                                        target_tasks=target_tasks, random_state=0).fit(
        lazy(X, 47), lazy(y, 47), tasks=lazy(tasks, 47))
    assert dask.is_dask_collection(selector.support_)
    memory = NegativeTransferSelector(estimator, guard=False, n_rounds=1,
                                      fraction=0.05, cv=folds_of(selector),
                                      target_tasks=target_tasks).fit(X, y, tasks=tasks)
    assert_same_selection(selector, memory)
    predicted = selector.predict(lazy(X, 30), tasks=lazy(tasks, 30))
    assert dask.is_dask_collection(predicted)
    np.testing.assert_array_equal(predicted.compute() if estimator._loss == "log_loss" else
                                  np.round(predicted.compute(), 8),
                                  memory.predict(X, tasks=tasks) if estimator._loss ==
                                  "log_loss" else np.round(memory.predict(X, tasks=tasks), 8))


def test_many_blocks_pick_candidates_below_a_sketched_threshold(corrupted):
    # 12-row blocks: each block holds few negative scores, the cap (plus K) is far below all
    # negative rows, so the selection goes through the threshold and the gathering pass.
    estimator, X, y, tasks = corrupted
    selector = NegativeTransferSelector(estimator, guard=False, n_rounds=1,
                                        fraction=0.03, cv=4, random_state=1).fit(
        lazy(X, 12), lazy(y, 12), tasks=tasks)
    memory = NegativeTransferSelector(estimator, guard=False, n_rounds=1, fraction=0.03,
                                      cv=folds_of(selector)).fit(X, y, tasks=tasks)
    assert_same_selection(selector, memory)


def test_dask_dataframe_with_task_column_equals_pandas(corrupted):
    dd = pytest.importorskip("dask.dataframe")  # needs pyarrow too
    estimator, X, y, tasks = corrupted
    frame = pd.DataFrame(X, columns=list("abcd")).assign(shop=np.array(list("wxyz"))[tasks])
    estimator = clone(estimator).set_params(task_column="shop")
    selector = NegativeTransferSelector(estimator, guard=False, n_rounds=1,
                                        fraction=0.05, cv=3, random_state=0).fit(
        dd.from_pandas(frame, npartitions=3), dd.from_pandas(pd.Series(y), npartitions=3))
    memory = NegativeTransferSelector(estimator, guard=False, n_rounds=1,
                                      fraction=0.05, cv=folds_of(selector)).fit(
        frame, y)
    assert_same_selection(selector, memory)
    np.testing.assert_array_equal(selector.tasks_, ["w", "x", "y", "z"])


def test_single_split_refit_on_the_split_equals_in_memory_influence(corrupted):
    estimator, X, y, tasks = corrupted
    selector = NegativeTransferSelector(estimator, guard=False, n_rounds=1,
                                        fraction=0.05, cv=None, refit_on="split",
                                        random_state=0).fit(lazy(X, 40), lazy(y, 40),
                                                            tasks=tasks)
    (train, val), = folds_of(selector)
    # In memory: the same split's influence, the targets weighted by size (the default).
    influence = MTIFInfluence(estimator).fit(X[train], y[train], tasks=tasks[train],
                                             X_val=X[val], y_val=y[val], tasks_val=tasks[val])
    expected = np.full(len(y), np.nan)
    expected[train] = influence.row_scores(task_weights="size")
    assert_close(selector.scores_, expected)
    assert np.all(np.isin(selector.removed_, train))
    assert len(selector.removed_) == int(np.floor(0.05 * train.size + 1e-9))
    kept = np.setdiff1d(train, selector.removed_)
    refit = clone(estimator).fit(X[kept], y[kept], tasks=tasks[kept])
    np.testing.assert_allclose(selector.estimator_.coef_, refit.coef_, rtol=1e-10, atol=1e-12)


def test_rounds_remove_the_cap_in_all_and_never_a_tasks_last_row(corrupted):
    estimator, X, y, tasks = corrupted
    selector = NegativeTransferSelector(estimator, guard=False, fraction=0.06, cv=3, n_rounds=2,
                                        random_state=0).fit(lazy(X, 50), lazy(y, 50),
                                                            tasks=tasks)
    removed = selector.removed_
    assert len(np.unique(removed)) == len(removed) <= int(np.floor(0.06 * len(y) + 1e-9))
    assert np.all(np.bincount(tasks[removed], minlength=4) < np.bincount(tasks))
    scores = selector.scores_.compute()
    assert np.all(scores[removed] < 0)  # each removed in the round that scored it negative
    assert len(selector.influence_) == 3
    assert "over 2 rounds" in selector.selection_report()


def test_selector_on_a_distributed_cluster(cluster_client, corrupted):
    estimator, X, y, tasks = corrupted
    with dask.config.set(scheduler=cluster_client.get):
        selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1) if estimator._loss ==
                                            "squared_error" else estimator, fraction=0.05,
                                            cv=3, guard=False, n_rounds=1, random_state=0).fit(
            lazy(X, 70), lazy(y, 70), tasks=tasks)
        folds = folds_of(selector)
        support = selector.support_.compute()
    memory = NegativeTransferSelector(estimator, guard=False, n_rounds=1,
                                      fraction=0.05, cv=folds).fit(X, y,
                                                                              tasks=tasks)
    np.testing.assert_array_equal(selector.removed_, memory.removed_)
    np.testing.assert_array_equal(support, memory.support_)


def test_verbose_measures_the_loss_after_as_in_memory(corrupted, capsys):
    estimator, X, y, tasks = corrupted
    selector = NegativeTransferSelector(estimator, guard=False, n_rounds=1,
                                        fraction=0.05, cv=3, random_state=0,
                                        verbose=1).fit(lazy(X, 60), lazy(y, 60), tasks=tasks)
    memory = NegativeTransferSelector(estimator, guard=False, n_rounds=1,
                                      fraction=0.05, cv=folds_of(selector),
                                      verbose=1).fit(X, y, tasks=tasks)
    assert_close(selector.report_["validation_loss_after"],
                 memory.report_["validation_loss_after"])
    assert "measured" in capsys.readouterr().out


def test_sketched_threshold_leaves_enough_rows_and_not_many_more():
    rng = np.random.default_rng(0)
    blocks = [rng.normal(size=n) for n in (5000, 3000, 10, 7000)]
    sketches = np.vstack([_sketch_block(block, 64) for block in blocks])
    every = np.concatenate(blocks)
    for needed in (1, 50, 500, 4000):
        t = _threshold(sketches, needed)
        below = np.sum((every < 0) & (every <= t))
        # At least `needed`; at most one sketch step per block more (the sketch's resolution).
        assert needed <= below <= needed + sketches[:, 2].sum() + len(blocks)
    assert _threshold(sketches, every.size) == 0.0  # fewer negatives than needed: take all


def test_a_model_without_dask_support_is_refused_before_reading_rows(corrupted):
    from sklearn.linear_model import Ridge

    _, X, y, tasks = corrupted

    class NotMultitask(Ridge):
        def _mtif_objective(self, data):  # passes the parameter check, not the dask one
            raise AssertionError

    with pytest.raises(TypeError, match="does not take dask rows"):
        NegativeTransferSelector(NotMultitask(), guard=False).fit(lazy(X, 50), lazy(y, 50),
                                                                 tasks=tasks)


def test_the_guard_is_refused_clearly_on_dask_rows(corrupted):
    estimator, X, y, tasks = corrupted
    with pytest.raises(ValueError, match="guard.*not available on dask rows yet: pass guard=False"):
        NegativeTransferSelector(estimator, random_state=0).fit(lazy(X, 47), lazy(y, 47),
                                                                tasks=lazy(tasks, 47))


def test_task_selector_refuses_dask_rows_with_the_way_out(corrupted):
    from mtif_sklearn import TaskSelector

    estimator, X, y, tasks = corrupted
    with pytest.raises(TypeError, match=r"TaskSelector does not take dask rows yet.*MTIFInfluence"):
        TaskSelector(estimator).fit(lazy(X, 47), lazy(y, 47), tasks=lazy(tasks, 47))
