"""MTIF against brute-force refitting on the shared real data sets.

The issue: "Real data: MultitaskLogistic on ../shared/data/chemical (10 tasks): task-level Spearman
vs LOTO reported per task; MultitaskRidge on ../shared/data/school (139 tasks): the same, mean
reported." Ground truth is :func:`mtif_sklearn.retrain.loto_effects` / ``loo_effects``, which refit
the model without the task / row and share nothing with MTIF's Hessian solve. For every target task
k the off-diagonal column ``[:, k]`` (effect on k of removing each OTHER task) of
``task_influence_`` is ranked against the same column of the LOTO matrix, as in the paper's
Table 1 (which reports 0.65-0.84 on its synthetic data).

Thresholds were set after measuring (numbers in the comments; benchmarks/bench_real_data.py prints
them for more alphas and splits) with a margin for BLAS/platform differences, but tight enough that
a wrong sign, a wrong regulariser term or a wrong Schur solve would fail them. Tests skip when
../shared/data is not there.
"""

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from threadpoolctl import threadpool_limits

from mtif_sklearn import MTIFInfluence, MultitaskLogistic, MultitaskRidge
from mtif_sklearn.datasets import load_chemical, load_school
from mtif_sklearn.retrain import loo_effects, loto_effects

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SEED = 0
# Chemical: 0/1 fingerprints, already on one scale, so no standardising. alpha=0.01 is close to
# the best held-out log loss of the grid 0.001..1 on the chemical test split (0.433 vs 0.395 at
# 0.001 and 0.518 at the default 0.1) while the tasks still share a lot through gamma.
CHEMICAL_ALPHA = 0.01
# School: attributes standardised (two are percentages on a 0-100 scale next to 0/1 one-hots);
# alpha=10 had the lowest held-out MSE of 0.01..100 on a random 25% of the rows.
SCHOOL_ALPHA = 10.0


def _needs(name):
    folder = DATA / name
    return pytest.mark.skipif(not folder.is_dir(), reason=f"{folder} is not available")


def _per_task_spearman(estimate, truth):
    """Spearman over the other tasks (diagonal excluded) for every target task k."""
    K = truth.shape[0]
    out = np.empty(K)
    for k in range(K):
        others = np.arange(K) != k
        out[k] = spearmanr(estimate[others, k], truth[others, k]).statistic
    return out


def _one_blas_thread():
    # The work is many small (181 x 181) factorisations: one BLAS thread is as fast on an idle
    # machine and avoids 10-20x slowdowns of multithreaded OpenBLAS when the cores are shared.
    return threadpool_limits(limits=1, user_api="blas")


def _mtif_and_loto(estimator, X, y, tasks):
    with _one_blas_thread():
        inf = MTIFInfluence(estimator, validation_fraction=0.2, random_state=SEED)
        inf.fit(X, y, tasks=tasks)
        train, val = inf.train_indices_, inf.val_indices_
        loto = loto_effects(estimator, X[train], y[train], X[val], y[val], tasks=tasks[train],
                            tasks_val=tasks[val], n_jobs=2)
    return inf, loto


@pytest.fixture(scope="module")
def chemical():
    X, y, tasks = load_chemical(DATA / "chemical")
    inf, loto = _mtif_and_loto(MultitaskLogistic(alpha=CHEMICAL_ALPHA), X, y, tasks)
    return X, y, tasks, inf, loto


@_needs("chemical")
def test_chemical_logistic_task_influence_ranks_like_loto(chemical):
    *_, inf, loto = chemical
    assert inf.task_influence_.shape == loto.shape == (10, 10)
    rho = _per_task_spearman(inf.task_influence_, loto)
    print("chemical per-task Spearman (MTIF vs LOTO):",
          dict(zip(inf.tasks_.tolist(), np.round(rho, 3).tolist())))
    # Measured (seed 0, alpha 0.01): 0.967 0.983 1 1 1 1 1 0.983 1 1, mean 0.993. The paper's
    # synthetic Table 1 has 0.65-0.84 per task; the exact arrow solve on a convex model should
    # do clearly better. 0.9 for the mean leaves room for a few adjacent rank swaps only.
    assert np.mean(rho) > 0.9, rho
    # With 9 other tasks, 0.5 allows ~8 adjacent swaps in one column; a sign error or a wrong
    # coupling term puts columns near 0 or negative. (Over seeds 0-2 the benchmark's worst single
    # column was 0.633, task 80 at seed 1 or 2, whose LOTO values are nearly tied; seed 0: 0.967.)
    assert np.min(rho) > 0.5, rho


@_needs("chemical")
def test_chemical_logistic_task_influence_magnitudes_match_loto(chemical):
    *_, inf, loto = chemical
    off = ~np.eye(10, dtype=bool)
    estimate, truth = inf.task_influence_[off], loto[off]
    # Rank agreement could hide a scale error (e.g. a factor 2 in the regulariser gradient);
    # the values themselves must agree. Removing a whole task is not an infinitesimal change, so
    # first order is not exact: measured (seed 0, alpha 0.01) Pearson 0.993, least-squares
    # slope of MTIF on LOTO 0.85, relative error 0.235 (0.26 at alpha 0.1). A factor 2 either
    # way would give a slope near 1.7 or 0.42 and a relative error >= 0.5.
    assert pearsonr(estimate, truth).statistic > 0.95
    slope = (estimate @ truth) / (truth @ truth)
    assert 0.65 < slope < 1.25, slope
    assert np.linalg.norm(estimate - truth) / np.linalg.norm(truth) < 0.4
    # Same sign on the entries that matter, the larger half of |LOTO| (measured: all 45).
    big = np.abs(truth) >= np.median(np.abs(truth))
    assert np.mean(np.sign(estimate[big]) == np.sign(truth[big])) > 0.9


@_needs("chemical")
@pytest.mark.slow
def test_chemical_logistic_row_influence_matches_leave_one_out(chemical):
    X, y, tasks, inf, _ = chemical
    train, val = inf.train_indices_, inf.val_indices_
    rows = np.random.default_rng(SEED).choice(len(train), size=40, replace=False)
    with _one_blas_thread():
        loo = loo_effects(MultitaskLogistic(alpha=CHEMICAL_ALPHA), X[train], y[train], X[val],
                          y[val], tasks=tasks[train], tasks_val=tasks[val], rows=rows, n_jobs=2)
    estimate = inf.influence_[rows]
    assert loo.shape == estimate.shape == (40, 10)
    own = tasks[train][rows][:, None] == inf.tasks_[None, :]
    r_all = pearsonr(estimate.ravel(), loo.ravel()).statistic
    r_within = pearsonr(estimate[own], loo[own]).statistic
    r_between = pearsonr(estimate[~own], loo[~own]).statistic
    print(f"chemical LOO Pearson: all {r_all:.4f}, within-task {r_within:.4f}, "
          f"between-task {r_between:.4f}")
    # One row of ~500 training rows per task is a small perturbation, but with 181 parameters
    # per task head the leverage h_ii = g_i^T H^-1 g_i of a row on its own task is not small
    # (~p/n). Measured (seed 0, alpha 0.01): Pearson all 0.995, within-task (the row's own task)
    # 0.996, between-task 0.998. 0.98 fails if a path is mis-signed or mis-shaped.
    assert r_all > 0.98
    assert r_within > 0.98
    assert r_between > 0.98
    # Pearson ignores a common scale; the least-squares slope of MTIF on LOO does not. First
    # order drops the 1/(1 - h_ii) >= 1 amplification of the exact leave-one-out, so MTIF
    # underestimates: measured slope within 0.800, between 0.915 (all 0.829). A factor 2 in
    # either path (0.4 / 1.6-1.8) fails these bounds.
    s_own = (estimate[own] @ loo[own]) / (loo[own] @ loo[own])
    s_other = (estimate[~own] @ loo[~own]) / (loo[~own] @ loo[~own])
    print(f"chemical LOO slope: within {s_own:.4f}, between {s_other:.4f}")
    assert 0.65 < s_own < 1.0, s_own
    assert 0.75 < s_other < 1.05, s_other


@_needs("school")
@pytest.mark.slow
def test_school_ridge_task_influence_ranks_like_loto():
    X, y, tasks = load_school(DATA / "school")
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    inf, loto = _mtif_and_loto(MultitaskRidge(alpha=SCHOOL_ALPHA), X, y, tasks)
    assert inf.task_influence_.shape == loto.shape == (139, 139)
    rho = _per_task_spearman(inf.task_influence_, loto)
    print(f"school Spearman (MTIF vs LOTO) over 139 target tasks: mean {rho.mean():.4f}, "
          f"median {np.median(rho):.4f}, min {rho.min():.4f}")
    # Measured (seed 0, alpha 10): mean 0.9994, min 0.9948. Each school is < 2% of the rows, so
    # removing one is a small perturbation of a quadratic objective and first order is close to
    # exact; 0.97 for the mean and 0.8 for the worst of 139 columns leave margin but would catch
    # a wrong shared-block term (which degrades every column).
    assert rho.mean() > 0.97, rho.mean()
    assert rho.min() > 0.8, rho.min()
    off = ~np.eye(139, dtype=bool)
    # Values, not only ranks: relative error of the off-diagonal matrix (measured 0.050).
    assert (np.linalg.norm(inf.task_influence_[off] - loto[off])
            / np.linalg.norm(loto[off])) < 0.2
