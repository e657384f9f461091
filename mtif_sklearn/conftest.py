"""Fixtures shared by the dask tests of the influence, linear and selection packages."""

import pytest


@pytest.fixture(scope="module")
def cluster_client():
    """A LocalCluster with two worker PROCESSES (blocks, models and factors are pickled between
    processes, as on a cluster of machines); used explicitly, not as the default scheduler.
    One per test module: a worker's task log is bounded, so a cluster shared by all modules
    would leave tests that count the tasks run on the workers nothing to count."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=None, silence_logs=40)
    with distributed.Client(cluster, set_as_default=False) as client:
        client.run(lambda: __import__("mtif_sklearn.selection"))  # the workers' imports, once
        yield client
    cluster.close()


@pytest.fixture
def count_passes():
    """A dask callback class counting the scheduler runs (each one pass over the blocks it
    needs): ``with count_passes() as counter: ...; counter.passes``."""
    from dask.callbacks import Callback

    class CountPasses(Callback):
        def __init__(self):
            super().__init__()
            self.passes = 0

        def _start(self, dsk):
            self.passes += 1

    return CountPasses
