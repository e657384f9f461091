"""InfluenceAgreementDisplay: MTIF against refits on the same rows and weights."""

import numpy as np
import pytest

pytest.importorskip("matplotlib").use("Agg")

from mtif_sklearn import MTIFInfluence, MultitaskRidge  # noqa: E402
from mtif_sklearn.datasets import make_multitask_regression  # noqa: E402
from mtif_sklearn.plotting import InfluenceAgreementDisplay  # noqa: E402


def test_task_level_against_loto(fitted):
    influence, X, y, tasks = fitted
    display = InfluenceAgreementDisplay.from_estimator(influence, X, y, tasks=tasks,
                                                       level="task")
    assert display.mtif.shape == (12,)  # off-diagonal pairs of 4 tasks
    # Ridge: the first-order estimate tracks refitting closely (package tests: Spearman >= 0.9).
    assert display.spearman_ > 0.8
    assert "leave-one-task-out" in display.ax_.get_ylabel()
    assert "MTIF" in display.ax_.get_xlabel()
    assert "Pearson" in display.ax_.get_title()


def test_row_level_against_loo(fitted):
    influence, X, y, tasks = fitted
    rows = np.arange(0, len(influence.train_indices_), 8)
    display = InfluenceAgreementDisplay.from_estimator(influence, X, y, tasks=tasks,
                                                       level="row", rows=rows)
    assert display.truth.shape == (rows.size, 4)
    assert display.pearson_ > 0.9  # paper Figure 1 regime
    assert "leave-one-out" in display.ax_.get_ylabel()


@pytest.mark.parametrize("level", ["task", "row"])
def test_refits_use_the_sample_weight_the_influence_used(level):
    # method="newton" on ridge is exact retraining, so against refits with the same weights
    # the agreement is perfect up to round-off. Refits that dropped the weights (the old
    # behaviour) compared another model: Pearson 0.96 (task) and 0.72 (row) here.
    X, y, tasks = make_multitask_regression(n_tasks=5, n_samples_per_task=40, n_features=4,
                                            random_state=0)
    weights = np.random.default_rng(0).uniform(0.2, 3.0, len(y))
    influence = MTIFInfluence(MultitaskRidge(alpha=0.1), method="newton", random_state=0).fit(
        X, y, tasks=tasks, sample_weight=weights)
    rows = np.arange(0, len(influence.train_indices_), 7) if level == "row" else None
    display = InfluenceAgreementDisplay.from_estimator(
        influence, X, y, tasks=tasks, sample_weight=weights, level=level, rows=rows)
    assert display.pearson_ > 0.999
    np.testing.assert_allclose(display.mtif, display.truth, rtol=0, atol=1e-10)
    unweighted = InfluenceAgreementDisplay.from_estimator(influence, X, y, tasks=tasks,
                                                          level=level, rows=rows)
    assert unweighted.pearson_ < 0.99


def test_from_predictions_style_dicts_and_errors():
    display = InfluenceAgreementDisplay.from_predictions(
        [1.0, 2.0, np.nan, 4.0], [1.1, 2.1, 5.0, 3.9], scatter_kw={"color": "black"},
        line_kw={"color": "red"})
    assert display.pearson_ == pytest.approx(np.corrcoef([1, 2, 4], [1.1, 2.1, 3.9])[0, 1])
    assert display.ax_.get_ylabel() == "effect measured by refitting"
    assert tuple(display.scatter_.get_facecolor()[0]) == (0.0, 0.0, 0.0, 0.6)
    assert display.ax_.get_lines()[0].get_color() == "red"
    with pytest.raises(ValueError, match="same number"):
        InfluenceAgreementDisplay.from_predictions([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="level"):
        InfluenceAgreementDisplay.from_predictions([1.0, 2.0], [1.0, 2.0], level="rows")
