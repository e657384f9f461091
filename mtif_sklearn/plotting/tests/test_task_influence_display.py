"""TaskInfluenceDisplay: the heatmap's scale, ticks, cell text and uncertainty marks."""

import doctest
import importlib
import itertools

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mtif_sklearn.plotting import TaskInfluenceDisplay  # noqa: E402


def _off_diagonal(matrix):
    return matrix[~np.eye(len(matrix), dtype=bool)]


def test_heatmap_from_estimator_labels_axes_and_masks_the_diagonal(fitted):
    influence = fitted[0]
    display = TaskInfluenceDisplay.from_estimator(influence)
    assert display.ax_.get_xlabel() == "target task k (validation loss)"
    assert display.ax_.get_ylabel() == "removed task l"
    assert [t.get_text() for t in display.ax_.get_xticklabels()] == ["a", "b", "c", "d"]
    assert [t.get_text() for t in display.ax_.get_yticklabels()] == ["a", "b", "c", "d"]
    assert display.figure_ is display.ax_.figure
    image = display.im_.get_array()
    assert np.all(np.ma.getmaskarray(image).diagonal())
    # Symmetric about 0 (diverging, centred), at the 99th percentile of the off-diagonal |values|.
    low, high = display.im_.get_clim()
    assert low == pytest.approx(-high)
    assert high == pytest.approx(np.percentile(np.abs(_off_diagonal(influence.task_influence_)),
                                               99))
    assert display.text_[0, 0].get_text() == "self"
    assert display.colorbar_ is not None
    assert display.uncertain_ is None  # a single split has no standard errors


def test_one_extreme_pair_does_not_set_the_colour_scale():
    rng = np.random.default_rng(0)
    matrix = rng.normal(scale=0.1, size=(60, 60))
    matrix[3, 7] = 50.0  # one pair 500x the others
    display = TaskInfluenceDisplay(matrix).plot()
    low, high = display.im_.get_clim()
    assert high == pytest.approx(np.percentile(np.abs(_off_diagonal(matrix)), 99))
    assert high < 1.0 and low == pytest.approx(-high)
    # Cells beyond the limits take the end colours, and the colour bar says so.
    assert display.colorbar_.extend == "both"


def test_explicit_limits_mirror_around_zero_and_are_checked():
    matrix = np.array([[0.0, 0.5, -2.0], [1.0, 0.0, 0.1], [-0.2, 0.3, 0.0]])
    assert TaskInfluenceDisplay(matrix).plot(vmax=0.4).im_.get_clim() == (-0.4, 0.4)
    assert TaskInfluenceDisplay(matrix).plot(vmin=-1.0).im_.get_clim() == (-1.0, 1.0)
    display = TaskInfluenceDisplay(matrix).plot(vmin=-3.0, vmax=1.0)
    assert display.im_.get_clim() == (-3.0, 1.0)
    assert display.im_.norm(0.0) == pytest.approx(0.5)  # 0 stays the white centre
    assert display.colorbar_.extend == "neither"
    with pytest.raises(ValueError, match="vmin must be smaller"):
        TaskInfluenceDisplay(matrix).plot(vmin=1.0, vmax=0.5)


def _overlaps(extents):
    return [(a, b) for a, b in itertools.pairwise(extents) if a.overlaps(b)]


@pytest.mark.parametrize("n_tasks", [6, 40, 139, 400])
@pytest.mark.parametrize("style", ["index", "name"])
def test_tick_labels_never_collide_and_rotate_together(n_tasks, style):
    labels = (np.arange(n_tasks) if style == "index"
              else np.array([f"school {i:03d}" for i in range(n_tasks)]))
    matrix = np.random.default_rng(n_tasks).normal(size=(n_tasks, n_tasks))
    display = TaskInfluenceDisplay(matrix, task_labels=labels).plot()
    display.figure_.canvas.draw()
    renderer = display.figure_.canvas.get_renderer()
    for axis in (display.ax_.xaxis, display.ax_.yaxis):
        shown = [label for label in axis.get_ticklabels() if label.get_text()]
        assert len(shown) >= min(n_tasks, 5)  # thinned, not emptied
        assert not _overlaps([label.get_window_extent(renderer) for label in shown])
    rotations = {label.get_rotation() for label in display.ax_.get_xticklabels()}
    assert len(rotations) == 1  # all horizontal or all vertical, never a mix
    # Tick steps a reader can count with.
    ticks = display.ax_.get_xticks()
    assert len(set(np.diff(ticks))) <= 1 and (len(ticks) < 2 or ticks[1] in (1, 2, 5, 10, 20,
                                                                            25, 50, 100))


def test_labels_with_dollar_signs_are_printed_not_read_as_mathtext():
    labels = ["cost $5$", "b", "$x$"]
    display = TaskInfluenceDisplay(np.eye(3), task_labels=labels).plot()
    display.figure_.canvas.draw()  # mathtext would render "cost 5" (and "$x$" in italics)
    ticks = display.ax_.get_xticklabels()
    assert [t.get_text() for t in ticks] == labels
    assert not any(t.get_parse_math() for t in ticks)


def test_cell_values_keep_two_significant_digits():
    # The issue: with the scale set by a 4.13 cell, 0.031 printed as "0.0".
    matrix = np.array([[0.0, 0.031, 4.13], [0.66, 0.0, -0.2], [0.0123, -0.5, 0.0]])
    display = TaskInfluenceDisplay(matrix).plot(include_values=True)
    assert display.text_[0, 1].get_text() == "0.031"
    assert display.text_[2, 0].get_text() == "0.012"
    assert display.text_[1, 2].get_text() == "-0.2"
    assert display.text_[0, 2].get_text() == "4.1"  # beyond the colour limit, still written
    custom = TaskInfluenceDisplay(matrix).plot(include_values=True, values_format=".3f")
    assert custom.text_[0, 1].get_text() == "0.031"
    assert TaskInfluenceDisplay(np.ones((11, 11))).plot().text_ is None  # only small K


def test_values_far_from_one_are_written_in_a_common_unit():
    matrix = 1e-5 * np.array([[0.0, 3.1, -1.2], [0.5, 0.0, 2.0], [-2.5, 1.0, 0.0]])
    display = TaskInfluenceDisplay(matrix).plot(include_values=True)
    assert display.text_[0, 1].get_text() == "3.1"
    assert "units of 1e-5" in display.colorbar_.ax.get_ylabel()


def test_cells_within_n_standard_errors_of_zero_are_marked():
    matrix = np.array([[9.0, 0.5, -0.1], [-0.4, 9.0, 0.05], [0.3, -0.02, 9.0]])
    se = np.full((3, 3), 0.1)
    display = TaskInfluenceDisplay(matrix, standard_errors=se).plot(n_se=2.0)
    expected = np.array([[False, False, True], [False, False, True], [False, True, False]])
    np.testing.assert_array_equal(display.uncertain_, expected)  # |mean| < 2 se; no diagonal
    assert len(display.uncertain_markers_.get_offsets()) == expected.sum()
    assert "standard errors" in display.ax_.get_title()
    wider = TaskInfluenceDisplay(matrix, standard_errors=se).plot(n_se=5.0)
    assert wider.uncertain_.sum() == 5
    plain = TaskInfluenceDisplay(matrix, standard_errors=se).plot(n_se=None)
    assert plain.uncertain_ is None and plain.uncertain_markers_ is None
    with pytest.raises(ValueError, match="shape of task_influence"):
        TaskInfluenceDisplay(matrix, standard_errors=np.ones((2, 2))).plot()


def test_from_estimator_uses_cross_fitted_standard_errors_when_present():
    from mtif_sklearn import MTIFInfluence, MultitaskRidge
    from mtif_sklearn.datasets import make_multitask_regression

    X, y, tasks = make_multitask_regression(n_tasks=4, n_samples_per_task=60, n_features=3,
                                            random_state=0)
    y = np.where(tasks == 3, -y, y)  # a sign-flipped task: some pairs clearly hurt
    influence = MTIFInfluence(MultitaskRidge(alpha=1.0), cv=3, random_state=0).fit(
        X, y, tasks=tasks)
    display = TaskInfluenceDisplay.from_estimator(influence)  # n_se=2 by default
    within = (np.abs(influence.task_influence_) < 2 * influence.task_influence_se_)
    np.fill_diagonal(within, False)  # the diagonal is masked, never marked
    np.testing.assert_array_equal(display.uncertain_, within)
    assert 0 < within.sum() < 12  # some cells are marked and some are not: a real check


def test_style_dicts_reach_their_artists():
    matrix = np.array([[0.0, 0.2], [-0.1, 0.0]])
    display = TaskInfluenceDisplay(matrix, standard_errors=np.ones((2, 2))).plot(
        include_values=True, imshow_kw={"cmap": "PuOr"}, text_kw={"fontsize": 5},
        colorbar_kw={"orientation": "horizontal"}, uncertain_kw={"color": "magenta"})
    assert display.im_.get_cmap().name.startswith("PuOr")
    assert display.text_[0, 1].get_fontsize() == 5
    assert display.colorbar_.orientation == "horizontal"
    assert tuple(display.uncertain_markers_.get_facecolor()[0]) == (1.0, 0.0, 1.0, 1.0)


def test_many_tasks_unmasked_on_given_axes():
    fig, ax = plt.subplots()
    matrix = np.random.default_rng(0).standard_normal((40, 40))
    display = TaskInfluenceDisplay(matrix).plot(ax=ax, mask_diagonal=False, colorbar=False)
    assert display.ax_ is ax and display.text_ is None  # no values for 40 tasks
    assert not np.ma.getmaskarray(display.im_.get_array()).any()
    with pytest.raises(ValueError, match="square"):
        TaskInfluenceDisplay(np.zeros((2, 3))).plot()
    with pytest.raises(ValueError, match="names for"):
        TaskInfluenceDisplay(np.zeros((2, 2)), task_labels=["a"]).plot()


@pytest.mark.parametrize("module_name", ["mtif_sklearn.plotting._task_influence",
                                         "mtif_sklearn.plotting._agreement",
                                         "mtif_sklearn.plotting._selection"])
def test_display_doctests_pass(module_name):
    result = doctest.testmod(importlib.import_module(module_name), verbose=False)
    assert result.attempted > 0 and result.failed == 0
