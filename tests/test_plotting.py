"""Display objects: figures with the expected axes, labels and numbers."""

import doctest
import importlib

import numpy as np
import pytest
from sklearn.base import clone

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

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
from mtif_sklearn.plotting import (  # noqa: E402
    InfluenceAgreementDisplay,
    SelectionDisplay,
    TaskInfluenceDisplay,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def fitted():
    X, y, tasks = make_multitask_regression(n_tasks=4, n_samples_per_task=40, n_features=5,
                                            random_state=0)
    tasks = np.array(["a", "b", "c", "d"])[tasks]
    influence = MTIFInfluence(MultitaskRidge(alpha=0.1), random_state=0).fit(X, y, tasks=tasks)
    return influence, X, y, tasks


def test_task_influence_display_heatmap(fitted):
    influence = fitted[0]
    display = TaskInfluenceDisplay.from_estimator(influence)
    assert display.ax_.get_xlabel() == "target task k (validation loss)"
    assert display.ax_.get_ylabel() == "removed task l"
    assert [t.get_text() for t in display.ax_.get_xticklabels()] == ["a", "b", "c", "d"]
    assert [t.get_text() for t in display.ax_.get_yticklabels()] == ["a", "b", "c", "d"]
    assert display.figure_ is display.ax_.figure
    image = display.im_.get_array()
    # The diagonal is masked; the colour scale is symmetric about 0 (diverging, centred).
    assert np.all(np.ma.getmaskarray(image).diagonal())
    low, high = display.im_.get_clim()
    assert low == pytest.approx(-high)
    off = ~np.eye(4, dtype=bool)
    assert high == pytest.approx(np.abs(influence.task_influence_[off]).max())
    assert display.text_[0, 0].get_text() == "self"
    assert display.colorbar_ is not None


def test_task_influence_display_many_tasks_unmasked_on_given_axes():
    fig, ax = plt.subplots()
    matrix = np.random.default_rng(0).standard_normal((40, 40))
    display = TaskInfluenceDisplay(matrix).plot(ax=ax, mask_diagonal=False, colorbar=False)
    assert display.ax_ is ax and display.text_ is None  # no values for 40 tasks
    assert len(ax.get_xticks()) <= 25  # thinned tick labels stay readable
    assert not np.ma.getmaskarray(display.im_.get_array()).any()
    with pytest.raises(ValueError, match="square"):
        TaskInfluenceDisplay(np.zeros((2, 3))).plot()


def test_agreement_display_task_level_against_loto(fitted):
    influence, X, y, tasks = fitted
    display = InfluenceAgreementDisplay.from_estimator(influence, X, y, tasks=tasks,
                                                       level="task")
    assert display.mtif.shape == (12,)  # off-diagonal pairs of 4 tasks
    # Ridge: the first-order estimate tracks refitting closely (package tests: Spearman >= 0.9).
    assert display.spearman_ > 0.8
    assert "leave-one-task-out" in display.ax_.get_ylabel()
    assert "MTIF" in display.ax_.get_xlabel()
    assert "Pearson" in display.ax_.get_title()


def test_agreement_display_row_level_against_loo(fitted):
    influence, X, y, tasks = fitted
    rows = np.arange(0, len(influence.train_indices_), 8)
    display = InfluenceAgreementDisplay.from_estimator(influence, X, y, tasks=tasks,
                                                       level="row", rows=rows)
    assert display.truth.shape == (rows.size, 4)
    assert display.pearson_ > 0.9  # paper Figure 1 regime
    assert "leave-one-out" in display.ax_.get_ylabel()


def test_agreement_display_from_predictions_and_errors():
    display = InfluenceAgreementDisplay.from_predictions([1.0, 2.0, np.nan, 4.0],
                                                         [1.1, 2.1, 5.0, 3.9])
    assert display.pearson_ == pytest.approx(np.corrcoef([1, 2, 4], [1.1, 2.1, 3.9])[0, 1])
    assert display.ax_.get_ylabel() == "effect measured by refitting"
    with pytest.raises(ValueError, match="same number"):
        InfluenceAgreementDisplay.from_predictions([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="level"):
        InfluenceAgreementDisplay.from_predictions([1.0, 2.0], [1.0, 2.0], level="rows")


def test_selection_display_from_fitted_selector():
    X, y, tasks = make_multitask_regression(n_tasks=3, n_samples_per_task=60, n_features=4,
                                            random_state=1)
    train = np.arange(len(y)) % 3 != 0
    selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1), fraction=0.05, cv=3,
                                        random_state=0).fit(X[train], y[train],
                                                            tasks=tasks[train])
    baseline = clone(selector.estimator).fit(X[train], y[train], tasks=tasks[train])
    display = SelectionDisplay.from_estimator(selector, X[~train], y[~train],
                                              tasks=tasks[~train], baseline=baseline)
    assert len(display.before) == len(display.after) == 3
    assert display.ax_.get_ylabel() == "held-out MSE (lower is better)"
    assert display.ax_.get_xlabel() == "task"
    assert len(display.bars_[0]) == len(display.bars_[1]) == 3
    mask = tasks[~train] == 0
    expected = np.mean((baseline.predict(X[~train][mask], tasks=tasks[~train][mask])
                        - y[~train][mask]) ** 2)
    assert display.before[0] == pytest.approx(expected)


def test_selection_display_classifier_and_scatter():
    X, y, tasks = make_multitask_classification(n_tasks=3, n_samples_per_task=60,
                                                n_features=4, random_state=0)
    selector = NegativeTransferSelector(MultitaskLogistic(alpha=0.1), fraction=0.05, cv=3,
                                        random_state=0).fit(X, y, tasks=tasks)
    baseline = clone(selector.estimator).fit(X, y, tasks=tasks)
    display = SelectionDisplay.from_estimator(selector, X, y, tasks=tasks, baseline=baseline,
                                              kind="scatter")
    assert "accuracy" in display.ax_.get_xlabel() and display.scatter_ is not None


@pytest.mark.parametrize("module_name", ["mtif_sklearn.plotting._task_influence",
                                         "mtif_sklearn.plotting._agreement",
                                         "mtif_sklearn.plotting._selection"])
def test_display_doctests_pass(module_name):
    result = doctest.testmod(importlib.import_module(module_name), verbose=False)
    assert result.attempted > 0 and result.failed == 0
