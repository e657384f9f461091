"""SelectionDisplay: honest axes, a view that scales to many tasks, better/worse colours."""

import numpy as np
import pytest
from sklearn.base import clone

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
from matplotlib.colors import to_rgba  # noqa: E402

from mtif_sklearn import (  # noqa: E402
    MultitaskLogistic,
    MultitaskRidge,
    NegativeTransferSelector,
)
from mtif_sklearn.datasets import (  # noqa: E402
    make_multitask_classification,
    make_multitask_regression,
)
from mtif_sklearn.plotting import SelectionDisplay  # noqa: E402


def test_from_fitted_selector_scores_each_task_on_held_out_rows():
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
    assert display.kind_ == "bar"
    assert display.ax_.get_ylabel() == "held-out MSE (lower is better)"
    assert display.ax_.get_xlabel() == "task"
    assert len(display.bars_[0]) == len(display.bars_[1]) == 3
    mask = tasks[~train] == 0
    expected = np.mean((baseline.predict(X[~train][mask], tasks=tasks[~train][mask])
                        - y[~train][mask]) ** 2)
    assert display.before[0] == pytest.approx(expected)


def test_bars_start_at_zero_so_small_changes_look_small():
    # The issue: accuracies 0.53-0.56 drawn on an axis from 0.53 made 0.01 look like a halving.
    display = SelectionDisplay([0.55, 0.56, 0.53], [0.56, 0.55, 0.54],
                               metric_name="accuracy", greater_is_better=True).plot()
    assert display.ax_.get_ylim()[0] == 0.0
    np.testing.assert_array_equal(display.improved_, [True, False, True])
    negative = SelectionDisplay([0.2, -0.4], [0.3, -0.1], metric_name="R^2").plot(kind="bar")
    assert negative.ax_.get_ylim()[0] <= -0.4 and negative.ax_.get_ylim()[1] >= 0.3


def test_many_tasks_get_a_sorted_change_plot_of_bounded_width():
    rng = np.random.default_rng(0)
    before = rng.uniform(50, 150, 139)
    after = before + rng.normal(scale=5, size=139)
    display = SelectionDisplay(before, after, metric_name="MSE").plot()
    assert display.kind_ == "change"
    with pytest.warns(UserWarning, match="sorted per-task change"):
        asked_for_bars = SelectionDisplay(before, after, metric_name="MSE").plot(kind="bar")
    assert asked_for_bars.kind_ == "change"
    assert asked_for_bars.figure_.get_size_inches()[0] <= 12  # was 64 inches at 139 tasks
    heights = np.array([bar.get_height() for bar in display.bars_])
    assert np.all(np.diff(heights) >= 0)  # lower MSE is better: most negative change first
    better = to_rgba("tab:blue")
    assert all((bar.get_facecolor() == better) == (height < 0)
               for bar, height in zip(display.bars_, heights))
    # Bars on a few tasks stay grouped and narrow enough to read.
    assert SelectionDisplay(before[:30], after[:30]).plot().figure_.get_size_inches()[0] <= 12


def test_scatter_colours_tasks_by_better_or_worse():
    X, y, tasks = make_multitask_classification(n_tasks=3, n_samples_per_task=60,
                                                n_features=4, random_state=0)
    selector = NegativeTransferSelector(MultitaskLogistic(alpha=0.1), fraction=0.05, cv=3,
                                        random_state=0).fit(X, y, tasks=tasks)
    baseline = clone(selector.estimator).fit(X, y, tasks=tasks)
    display = SelectionDisplay.from_estimator(selector, X, y, tasks=tasks, baseline=baseline,
                                              kind="scatter")
    assert "accuracy" in display.ax_.get_xlabel() and display.scatter_ is not None
    assert display.greater_is_better_  # accuracy: higher is better
    colours = SelectionDisplay([1.0, 1.0, 1.0], [0.5, 1.5, 1.0]).plot(kind="scatter")
    np.testing.assert_allclose(colours.scatter_.get_facecolor()[:, :3],
                               [to_rgba(c)[:3] for c in ("tab:blue", "tab:red", "0.6")])
    assert "better on 1, worse on 1 of 3" in colours.ax_.get_title()
    # Without greater_is_better the metric's name decides (the command line's labels say it).
    named = SelectionDisplay([0.5], [0.6], metric_name="accuracy (higher is better)").plot()
    assert named.greater_is_better_ and named.improved_.all()


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="one value per task"):
        SelectionDisplay([1.0, 2.0], [1.0]).plot()
    with pytest.raises(ValueError, match="kind must be"):
        SelectionDisplay([1.0], [1.0]).plot(kind="pie")
    with pytest.raises(ValueError, match="names for"):
        SelectionDisplay([1.0, 2.0], [1.0, 2.0], task_labels=["a"]).plot()
