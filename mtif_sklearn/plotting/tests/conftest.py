"""A fitted influence shared by the Display tests, and figures closed after every test.

The test modules skip without matplotlib (``pytest.importorskip``) and draw on Agg.
"""

import numpy as np
import pytest

from mtif_sklearn import MTIFInfluence, MultitaskRidge
from mtif_sklearn.datasets import make_multitask_regression


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


@pytest.fixture(scope="module")
def fitted():
    """An MTIFInfluence on four string-labelled ridge tasks: (influence, X, y, tasks)."""
    X, y, tasks = make_multitask_regression(n_tasks=4, n_samples_per_task=40, n_features=5,
                                            random_state=0)
    tasks = np.array(["a", "b", "c", "d"])[tasks]
    influence = MTIFInfluence(MultitaskRidge(alpha=0.1), random_state=0).fit(X, y, tasks=tasks)
    return influence, X, y, tasks
