"""MultitaskRidge / MultitaskLogistic on dask arrays and DataFrames equal the in-memory fit.

Ground truth is the in-memory fit of the same rows. The dask fit runs the same Newton solver on
the same per-task sums, only added up block by block in another order, so coefficients agree
to round-off: rtol 1e-10 (with atol 1e-12 for entries near 0) could fail on any real
difference (a lost row, a weight applied twice, a wrong task) but not on summation order.
"""

import sys

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
pd = pytest.importorskip("pandas")

import dask  # noqa: E402
from sklearn.base import clone  # noqa: E402

from mtif_sklearn import MultitaskLogistic, MultitaskRidge  # noqa: E402
from mtif_sklearn.datasets import (  # noqa: E402
    make_multitask_classification,
    make_multitask_regression,
)

RTOL, ATOL = 1e-10, 1e-12


def ran_on_workers(client):
    """Number of tasks the workers have run so far."""
    return sum(client.run(lambda dask_worker: len(dask_worker.state.log)).values())


def _uneven(n, sizes):
    """Row chunks of the given sizes, repeated, summing to n (uneven blocks)."""
    chunks, total, i = [], 0, 0
    while total < n:
        size = min(sizes[i % len(sizes)], n - total)
        chunks.append(size)
        total += size
        i += 1
    return tuple(chunks)


def uneven_tasks(X, y, tasks, sizes):
    """The first ``sizes[k]`` rows of every task k (tasks of uneven size)."""
    keep = np.concatenate([np.flatnonzero(tasks == k)[:size] for k, size in enumerate(sizes)])
    keep.sort()
    return X[keep], y[keep], tasks[keep]


@pytest.fixture(scope="module")
def regression():
    X, y, tasks = uneven_tasks(*make_multitask_regression(
        n_tasks=5, n_samples_per_task=45, n_features=4, random_state=0), [12, 30, 45, 7, 26])
    order = np.random.default_rng(0).permutation(len(y))  # tasks spread over every block
    return X[order], y[order], tasks[order]


@pytest.fixture(scope="module")
def classification():
    X, y, tasks = uneven_tasks(*make_multitask_classification(
        n_tasks=4, n_samples_per_task=60, n_features=3, random_state=1), [50, 20, 35, 60])
    labels = np.array([f"store-{t}" for t in tasks], dtype=object)
    return X, np.where(y == 1, "yes", "no"), labels  # sorted by task: tasks cross blocks


def _fitted(model):
    return np.column_stack([model.coef_, model.intercept_]), model.shared_coef_


def _assert_same_fit(dask_model, memory_model):
    for dask_part, memory_part in zip(_fitted(dask_model), _fitted(memory_model), strict=True):
        np.testing.assert_allclose(dask_part, memory_part, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(dask_model.tasks_, memory_model.tasks_)
    np.testing.assert_allclose(dask_model.task_weight_sum_, memory_model.task_weight_sum_,
                               rtol=1e-13)
    assert dask_model.n_iter_ == memory_model.n_iter_


@pytest.mark.parametrize("chunks", [(25,), (7, 40, 13), (200,)])
def test_ridge_on_dask_arrays_equals_in_memory_fit(regression, chunks):
    X, y, tasks = regression
    rows = _uneven(len(y), chunks)
    weights = np.random.default_rng(2).uniform(0.2, 2.0, len(y))
    memory = MultitaskRidge(alpha=0.3).fit(X, y, tasks=tasks, sample_weight=weights)
    model = MultitaskRidge(alpha=0.3).fit(
        da.from_array(X, chunks=(rows, 2)), da.from_array(y, chunks=(rows,)),
        tasks=da.from_array(tasks, chunks=(rows,)), sample_weight=weights)
    _assert_same_fit(model, memory)


@pytest.mark.parametrize("npartitions", [1, 3, 7])
def test_logistic_on_dask_dataframe_equals_pandas_fit(classification, npartitions):
    dd = pytest.importorskip("dask.dataframe")  # needs pyarrow too
    X, y, tasks = classification
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(store=tasks)
    memory = MultitaskLogistic(alpha=0.2, task_column="store").fit(frame, y)
    lazy = dd.from_pandas(frame, npartitions=npartitions)
    model = MultitaskLogistic(alpha=0.2, task_column="store").fit(
        lazy, dd.from_pandas(pd.Series(y), npartitions=npartitions))
    _assert_same_fit(model, memory)
    np.testing.assert_array_equal(model.classes_, ["no", "yes"])
    np.testing.assert_array_equal(model.feature_names_in_, ["a", "b", "c", "store"])
    assert model.n_features_in_ == 4


def test_task_column_position_of_a_dask_array(regression):
    X, y, tasks = regression
    X_with_tasks = np.column_stack([X[:, :2], tasks, X[:, 2:]])
    memory = MultitaskRidge(alpha=0.5, task_column=2).fit(X_with_tasks, y)
    model = MultitaskRidge(alpha=0.5, task_column=2).fit(
        da.from_array(X_with_tasks, chunks=(33, 5)), da.from_array(y, chunks=33))
    _assert_same_fit(model, memory)


def test_predictions_are_lazy_dask_arrays_equal_to_in_memory(classification):
    X, y, tasks = classification
    memory = MultitaskLogistic(alpha=0.2).fit(X, y, tasks=tasks)
    X_lazy, tasks_lazy = da.from_array(X, chunks=40), da.from_array(tasks, chunks=40)
    model = MultitaskLogistic(alpha=0.2).fit(X_lazy, da.from_array(y, chunks=40),
                                             tasks=tasks_lazy)
    for method in ("decision_function", "predict_proba", "predict_log_proba", "predict"):
        lazy = getattr(model, method)(X_lazy, tasks=tasks_lazy)
        assert dask.is_dask_collection(lazy), method
        expected = getattr(memory, method)(X, tasks=tasks)
        if method == "predict":
            np.testing.assert_array_equal(lazy.compute(), expected)
        else:
            np.testing.assert_allclose(lazy.compute(), expected, rtol=1e-9, atol=1e-12)
    assert model.score(X_lazy, y, tasks=tasks_lazy) == memory.score(X, y, tasks=tasks)


def test_r2_score_reduced_by_blocks_equals_in_memory(regression):
    X, y, tasks = regression
    y = y + 1e4  # a mean far from 0: a naive sum-of-squares formula would lose digits
    weights = np.random.default_rng(3).uniform(0.5, 1.5, len(y))
    memory = MultitaskRidge().fit(X, y, tasks=tasks)
    model = MultitaskRidge().fit(da.from_array(X, chunks=31), da.from_array(y, chunks=31),
                                 tasks=da.from_array(tasks, chunks=31))
    score = model.score(da.from_array(X, chunks=17), da.from_array(y, chunks=17),
                        tasks=da.from_array(tasks, chunks=17), sample_weight=weights)
    # Pairwise (Chan) combination of block moments: round-off only.
    assert score == pytest.approx(memory.score(X, y, tasks=tasks, sample_weight=weights),
                                  rel=1e-10)


def test_ridge_fit_is_one_pass_and_logistic_one_pass_per_newton_step(regression,
                                                                     classification,
                                                                     count_passes):
    X, y, tasks = regression
    X_lazy, y_lazy = da.from_array(X, chunks=30), da.from_array(y, chunks=30)
    codes = np.unique(tasks, return_inverse=True)[1]
    with count_passes() as counter:  # integer codes need no unique pass: tasks given
        MultitaskRidge().fit(X_lazy, y_lazy, tasks=codes)
    assert counter.passes == 1
    X, y, tasks = classification
    X_lazy = da.from_array(X, chunks=30)
    with count_passes() as counter:
        model = MultitaskLogistic().fit(X_lazy, da.from_array(y, chunks=30), tasks=tasks)
    # One pass for the classes; then one per Newton step, plus the starting point.
    assert counter.passes == 1 + model.n_iter_ + 1


@pytest.mark.parametrize("scheduler", ["synchronous", "threads"])
def test_fit_runs_on_other_schedulers(regression, scheduler):
    X, y, tasks = regression  # worker processes: test_fit_on_a_distributed_cluster_...
    memory = MultitaskRidge(alpha=0.3).fit(X, y, tasks=tasks)
    with dask.config.set(scheduler=scheduler):
        model = MultitaskRidge(alpha=0.3).fit(da.from_array(X, chunks=50),
                                              da.from_array(y, chunks=50),
                                              tasks=da.from_array(tasks, chunks=50))
    _assert_same_fit(model, memory)


@pytest.mark.parametrize("kind", ["ridge", "logistic"])
def test_fit_on_a_distributed_cluster_with_two_worker_processes(cluster_client, classification,
                                                                regression, kind):
    X, y, tasks = classification if kind == "logistic" else regression
    estimator = MultitaskLogistic(alpha=0.2) if kind == "logistic" else MultitaskRidge()
    memory = clone(estimator).fit(X, y, tasks=tasks)
    before = ran_on_workers(cluster_client)
    with dask.config.set(scheduler=cluster_client.get):
        model = clone(estimator).fit(da.from_array(X, chunks=45), da.from_array(y, chunks=45),
                                     tasks=da.from_array(tasks, chunks=45))
    assert ran_on_workers(cluster_client) > before  # the blocks really went to the workers
    _assert_same_fit(model, memory)


def test_unknown_chunk_sizes_are_refused_with_the_fix(regression):
    X, y, tasks = regression
    X_lazy = da.from_array(X, chunks=50)
    masked = X_lazy[X_lazy[:, 0] > -np.inf]  # boolean indexing: chunk sizes unknown
    with pytest.raises(ValueError, match="unknown chunk sizes.*compute_chunk_sizes"):
        MultitaskRidge().fit(masked, y, tasks=tasks)


@pytest.mark.parametrize("bad, match", [
    ("X", "Input X contains NaN or infinity \\(in rows 50 to 99\\)"),
    ("y", "Input y contains NaN"),
    ("weight", "Negative values in data passed to `sample_weight`"),
])
def test_bad_values_are_named_when_the_blocks_are_read(regression, bad, match):
    X, y, tasks = (values.copy() for values in regression)
    weights = np.ones(len(y))
    {"X": lambda: X.__setitem__((60, 1), np.nan), "y": lambda: y.__setitem__(3, np.inf),
     "weight": lambda: weights.__setitem__(5, -1.0)}[bad]()
    with pytest.raises(ValueError, match=match):
        MultitaskRidge().fit(da.from_array(X, chunks=50), da.from_array(y, chunks=50),
                             tasks=tasks, sample_weight=weights)


def test_task_labels_from_both_sources_are_refused(regression):
    X, y, tasks = regression
    with pytest.raises(ValueError, match="Both tasks= and task_column"):
        MultitaskRidge(task_column=0).fit(da.from_array(X, chunks=50), y, tasks=tasks)


def test_inputs_are_not_modified(classification):
    dd = pytest.importorskip("dask.dataframe")  # needs pyarrow too
    X, y, tasks = classification
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(store=tasks)
    original = frame.copy()
    lazy = dd.from_pandas(frame, npartitions=3)
    before = lazy.compute()
    MultitaskLogistic(task_column="store").fit(lazy, y)
    pd.testing.assert_frame_equal(lazy.compute(), before)
    pd.testing.assert_frame_equal(frame, original)


def test_numpy_path_never_imports_dask(monkeypatch, regression):
    from mtif_sklearn import MTIFInfluence

    for name in ("dask", "dask.array", "dask.dataframe", "distributed"):
        monkeypatch.setitem(sys.modules, name, None)  # any import of dask now fails
    X, y, tasks = regression
    model = MultitaskRidge().fit(X, y, tasks=tasks)
    model.predict(X, tasks=tasks)
    MTIFInfluence(MultitaskRidge(), random_state=0).fit(X, y, tasks=tasks).row_scores()


def test_score_per_task_of_dask_rows_equals_in_memory(regression, classification):
    for estimator, (X, y, tasks) in [(MultitaskRidge(), regression),
                                     (MultitaskLogistic(), classification)]:
        memory = clone(estimator).fit(X, y, tasks=tasks)
        model = clone(estimator).fit(da.from_array(X, chunks=40), y, tasks=tasks)
        weights = np.random.default_rng(4).uniform(0.5, 1.5, len(y))
        got = model.score_per_task(da.from_array(X, chunks=23), da.from_array(y, chunks=23),
                                   tasks=tasks, sample_weight=weights)
        expected = memory.score_per_task(X, y, tasks=tasks, sample_weight=weights)
        assert list(got) == list(expected)
        # Per-task moments combined over the blocks (Chan): round-off only.
        np.testing.assert_allclose(list(got.values()), list(expected.values()), rtol=1e-10)


def test_objective_protocol_on_dask_rows(regression):
    X, y, tasks = regression
    memory = MultitaskRidge().fit(X, y, tasks=tasks)
    model = MultitaskRidge().fit(da.from_array(X, chunks=40), y, tasks=tasks)
    objective = model._mtif_objective(model._mtif_data(da.from_array(X, chunks=40), y,
                                                       tasks, reset=False))
    reference = memory._mtif_objective(memory._mtif_data(X, y, tasks, reset=False))
    params = memory._mtif_params()
    losses = objective.row_losses(params)
    assert dask.is_dask_collection(losses)  # row-level methods are lazy maps
    np.testing.assert_allclose(losses.compute(), reference.row_losses(params), rtol=1e-12)
    np.testing.assert_allclose(objective.row_gradients(params)[0].compute(),
                               reference.row_gradients(params)[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(objective.task_sums(losses), reference.task_sums(
        reference.row_losses(params)), rtol=1e-12)
    np.testing.assert_allclose(objective.row_weights.compute(), reference.row_weights,
                               rtol=1e-15)
    for dask_part, memory_part in zip(objective.hessian_blocks(params),
                                      reference.hessian_blocks(params), strict=True):
        np.testing.assert_allclose(dask_part, memory_part, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(objective.task_values(params), reference.task_values(params),
                               rtol=1e-12)
