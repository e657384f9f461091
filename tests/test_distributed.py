"""All parallel work goes through joblib, so a dask.distributed cluster can run it.

Under ``joblib.parallel_config(backend="dask")`` every ``Parallel`` call of the package (the
brute-force refits of ``mtif_sklearn.retrain``, the fold models of
``NegativeTransferSelector`` and the row chunks of ``MTIFInfluence``) is sent to the workers of
the active ``distributed.Client``. The cluster here has two separate worker PROCESSES, so
arguments and results really are pickled between processes, as on a multi-machine cluster.

Tolerance: each task is the same deterministic NumPy computation on the same inputs, only run in
another process (with its own single BLAS thread per worker instead of the caller's pool); the
order of the results is kept by joblib. Results can therefore differ only by BLAS round-off
(a different thread count may change the summation order of a GEMM), hence rtol=1e-10 and a
tiny atol for entries that are zero up to round-off, not exact equality.
"""

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import joblib  # noqa: E402
from numpy.testing import assert_allclose  # noqa: E402

from mtif_sklearn import MTIFInfluence, MultitaskRidge, NegativeTransferSelector  # noqa: E402
from mtif_sklearn.datasets import make_multitask_regression  # noqa: E402
from mtif_sklearn.retrain import loo_effects, loto_effects  # noqa: E402

RTOL, ATOL = 1e-10, 1e-13

# MTIFInfluence's row chunks write into one shared array; they ask joblib for shared memory
# (require="sharedmem"), so under the dask backend they run as threads in this process instead of
# losing their writes in worker processes (a bug found by these tests: influence_ came back as
# uninitialised memory). The refits of retrain and the selector's folds do go to the workers.


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=None, silence_logs=40)
    with distributed.Client(cluster) as dask_client:
        yield dask_client
    cluster.close()


@pytest.fixture(scope="module")
def data():
    X, y, tasks = make_multitask_regression(n_tasks=4, n_samples_per_task=30, n_features=4,
                                            random_state=0)
    val = np.arange(len(y)) % 3 == 0
    return X[~val], y[~val], tasks[~val], X[val], y[val], tasks[val]


def _on_cluster(func):
    with joblib.parallel_config(backend="dask"):
        return func()


def _ran_on_workers(client):
    """Number of tasks the workers have run so far (to check the work really went there)."""
    return sum(client.run(lambda dask_worker: len(dask_worker.state.log)).values())


def test_loto_effects_on_cluster(client, data):
    X, y, t, Xv, yv, tv = data
    local = loto_effects(MultitaskRidge(alpha=0.1), X, y, Xv, yv, tasks=t, tasks_val=tv,
                         n_jobs=1)
    before = _ran_on_workers(client)
    remote = _on_cluster(lambda: loto_effects(MultitaskRidge(alpha=0.1), X, y, Xv, yv,
                                              tasks=t, tasks_val=tv, n_jobs=2))
    assert _ran_on_workers(client) > before
    assert_allclose(remote, local, rtol=RTOL, atol=ATOL)


def test_loo_effects_on_cluster(client, data):
    X, y, t, Xv, yv, tv = data
    rows = np.arange(0, len(y), 7)
    local = loo_effects(MultitaskRidge(alpha=0.1), X, y, Xv, yv, tasks=t, tasks_val=tv,
                        rows=rows, n_jobs=1)
    remote = _on_cluster(lambda: loo_effects(MultitaskRidge(alpha=0.1), X, y, Xv, yv, tasks=t,
                                             tasks_val=tv, rows=rows, n_jobs=2))
    assert_allclose(remote, local, rtol=RTOL, atol=ATOL)


def test_selector_on_cluster(client, data):
    X, y, t = data[:3]
    params = dict(fraction=0.05, cv=3, random_state=0)
    local = NegativeTransferSelector(MultitaskRidge(alpha=0.1), n_jobs=1, **params).fit(
        X, y, tasks=t)
    remote = _on_cluster(lambda: NegativeTransferSelector(
        MultitaskRidge(alpha=0.1), n_jobs=2, **params).fit(X, y, tasks=t))
    assert_allclose(remote.scores_, local.scores_, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(remote.support_, local.support_)
    assert_allclose(remote.estimator_.coef_, local.estimator_.coef_, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("method", ["first_order", "newton"])
def test_mtif_influence_row_chunks_on_cluster(client, data, method):
    # batch_size=10 makes many row chunks, so n_jobs=2 really has parallel work to hand out.
    X, y, t, Xv, yv, tv = data
    params = dict(batch_size=10, method=method)
    local = MTIFInfluence(MultitaskRidge(alpha=0.1), n_jobs=1, **params).fit(
        X, y, tasks=t, X_val=Xv, y_val=yv, tasks_val=tv)
    remote = _on_cluster(lambda: MTIFInfluence(MultitaskRidge(alpha=0.1), n_jobs=2,
                                               **params).fit(X, y, tasks=t, X_val=Xv, y_val=yv,
                                                             tasks_val=tv))
    assert_allclose(remote.influence_, local.influence_, rtol=RTOL, atol=ATOL)
    assert_allclose(remote.task_influence_, local.task_influence_, rtol=RTOL, atol=ATOL)
    assert_allclose(remote.transform(X[:20], y[:20], tasks=t[:20]),
                    local.transform(X[:20], y[:20], tasks=t[:20]), rtol=RTOL, atol=ATOL)
