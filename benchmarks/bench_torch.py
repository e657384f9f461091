"""MTIF on shared-bottom networks (paper Example 2, Section 5.2): task level and data selection.

1. Task level (the paper's Table 2 / Table 12 protocol on our data). For every seed, a
   stratified 80/20 split per task; a shared-bottom MLP (``SharedBottomClassifier``: one shared
   tanh layer of 8 units, a linear head per task, weight decay 0.05, full-batch L-BFGS) is
   trained on the 80%; MTIF's ``task_influence_`` (Gauss-Newton and exact Hessian blocks of
   all shared parameters) is compared with leave-one-task-out refits (``loto_effects``,
   warm-started from the full model). For each target task k, the Spearman correlation
   between column k of both matrices over the other tasks (diagonal excluded) is reported,
   as mean +- standard error over seeds. Next to MTIF, the TAG lookahead (``tag_affinity``)
   and the gradient cosine (``cosine_affinity``) of the same fitted network, scored the same
   way: both averaged over 10 points of 100 full-batch gradient-descent steps (step 1/L, L the
   Gauss-Newton curvature bound) on the network's own objective from a seeded default
   initialisation, shared parameters = the whole shared layer. They use training rows only
   (no validation set), while MTIF and LOTO measure the validation loss.
2. Data selection: ``NegativeTransferSelector(fraction=0.05, cv=5)`` around the same network,
   before/after metrics on held-out rows (chemical: its test files; synthetic: fresh rows of
   the same tasks, labels clean, while 15% of the training labels of tasks 0-2 are flipped),
   3 seeds (the seed sets the folds and the initialisation).

Data sets: the chemical data (../shared/data/chemical, 10 binary tasks, 180 features, all 8023
training rows) and ``make_multitask_classification`` (10 tasks, 50 features). Run from the
project root: ``python benchmarks/bench_torch.py [--quick]``.
"""

import argparse
import statistics
import time
import warnings

import numpy as np
import torch
from _common import DATA, fmt_time, load_info, machine_info, print_table
from scipy.stats import spearmanr
from sklearn.frozen import FrozenEstimator

from mtif_sklearn import MTIFInfluence, NegativeTransferSelector
from mtif_sklearn._tasks import train_validation_split_by_task
from mtif_sklearn.affinity import cosine_affinity, tag_affinity
from mtif_sklearn.datasets import load_chemical, make_multitask_classification
from mtif_sklearn.retrain import loto_effects
from mtif_sklearn.torch import SharedBottomClassifier


def network(seed):
    return SharedBottomClassifier((8,), weight_decay=0.05, max_iter=3000, random_state=seed)


def per_task_spearman(estimate, truth):
    K = truth.shape[0]
    out = np.full(K, np.nan)
    for k in range(K):
        others = np.arange(K) != k
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[k] = spearmanr(estimate[others, k], truth[others, k]).statistic
    return out


def chemical():
    X, y, t = load_chemical(DATA / "chemical")
    Xt, yt, tt = load_chemical(DATA / "chemical", subset="test")
    return X, y, t, Xt, yt, tt, None


def synthetic(noisy=False):
    X, y, t = make_multitask_classification(n_tasks=10, n_samples_per_task=400, n_features=50,
                                            random_state=0)
    rng = np.random.RandomState(1)
    train = np.zeros(len(y), dtype=bool)
    for k in np.unique(t):
        rows = rng.permutation(np.flatnonzero(t == k))
        train[rows[:200]] = True
    flipped = np.zeros(len(y), dtype=bool)
    y_train = y.copy()
    if noisy:
        for k in (0, 1, 2):
            rows = np.flatnonzero(train & (t == k))
            chosen = rng.choice(rows, size=int(0.15 * rows.size), replace=False)
            flipped[chosen] = True
            y_train[chosen] = 1 - y_train[chosen]
    return (X[train], y_train[train], t[train], X[~train], y[~train], t[~train],
            flipped[train])


def task_level(name, data, seeds):
    X, y, t = data[:3]
    codes = np.searchsorted(np.unique(t), t)
    K = codes.max() + 1
    results = {"gauss_newton": [], "exact": [], "TAG": [], "cosine": []}
    times = {"fit": [], "gauss_newton": [], "exact": [], "TAG": [], "cosine": [], "loto": []}
    for seed in seeds:
        tr, va = train_validation_split_by_task(codes, K, 0.2, seed)
        start = time.perf_counter()
        model = network(seed).fit(X[tr], y[tr], tasks=t[tr])
        times["fit"].append(time.perf_counter() - start)
        for hessian in ("gauss_newton", "exact"):
            model.set_params(hessian=hessian)
            start = time.perf_counter()
            inf = MTIFInfluence(FrozenEstimator(model)).fit(
                X[tr], y[tr], tasks=t[tr], X_val=X[va], y_val=y[va], tasks_val=t[va])
            times[hessian].append(time.perf_counter() - start)
            results[hessian].append(inf.task_influence_)
        for label, affinity in (("TAG", tag_affinity), ("cosine", cosine_affinity)):
            start = time.perf_counter()
            results[label].append(affinity(FrozenEstimator(model), X[tr], y[tr], tasks=t[tr]))
            times[label].append(time.perf_counter() - start)
        start = time.perf_counter()
        truth = loto_effects(network(seed), X[tr], y[tr], X[va], y[va], tasks=t[tr],
                             tasks_val=t[va])
        times["loto"].append(time.perf_counter() - start)
        for hessian in results:
            results[hessian][-1] = per_task_spearman(results[hessian][-1], truth)
        print(f"  {name} seed {seed}: mean Spearman GN "
              f"{np.nanmean(results['gauss_newton'][-1]):.2f}, exact "
              f"{np.nanmean(results['exact'][-1]):.2f}, TAG "
              f"{np.nanmean(results['TAG'][-1]):.2f}, cosine "
              f"{np.nanmean(results['cosine'][-1]):.2f} (L-BFGS {model.n_iter_} it)",
              flush=True)
    return results, {key: statistics.median(v) for key, v in times.items()}


def fmt_mean_sem(values):
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return "-"
    sem = values.std(ddof=1) / np.sqrt(values.size) if values.size > 1 else float("nan")
    return f"{values.mean():.2f} ± {sem:.2f}"


def held_out(model, X, y, t):
    proba = model.predict_proba(X, tasks=t)[:, 1]
    losses = -(y * np.log(np.clip(proba, 1e-12, 1)) + (1 - y) * np.log(np.clip(1 - proba,
                                                                                 1e-12, 1)))
    per_task = [losses[t == k].mean() for k in np.unique(t)]
    return float(np.mean(per_task)), float(np.mean((proba > 0.5) == y))


def selection(name, data, seeds):
    X, y, t, Xt, yt, tt, flipped = data
    rows = []
    for seed in seeds:
        base = network(seed).fit(X, y, tasks=t)
        sel = NegativeTransferSelector(network(seed), fraction=0.05, cv=5, guard=False, n_rounds=1,
                                       random_state=seed).fit(X, y, tasks=t)
        before, after = held_out(base, Xt, yt, tt), held_out(sel.estimator_, Xt, yt, tt)
        hit = (f"{100 * flipped[sel.removed_].mean():.0f}%" if flipped is not None
               and sel.removed_.size else "-")
        rows.append((seed, before, after, sel.removed_.size, hit))
        print(f"  {name} seed {seed}: log loss {before[0]:.4f} -> {after[0]:.4f}", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="2 seeds instead of 5 (task level) and 3 (selection)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny networks: extra threads only contend (2 shared cores)
    warnings.simplefilter("ignore", category=UserWarning)
    seeds = [0, 1] if args.quick else [0, 1, 2, 3, 4]
    print(machine_info())
    print(f"torch {torch.__version__}, 1 thread; {load_info()}")

    datasets = {"chemical": chemical(), "synthetic": synthetic()}
    task_rows, time_rows = [], []
    for name, data in datasets.items():
        results, times = task_level(name, data, seeds)
        for hessian, values in results.items():
            values = np.asarray(values)
            task_rows.append([name, hessian] + [fmt_mean_sem(values[:, k])
                                                for k in range(values.shape[1])]
                             + [fmt_mean_sem(np.nanmean(values, axis=1))])
        time_rows.append([name, fmt_time(times["fit"]), fmt_time(times["gauss_newton"]),
                          fmt_time(times["exact"]), fmt_time(times["TAG"]),
                          fmt_time(times["cosine"]), fmt_time(times["loto"])])
    print_table(["data", "method"] + [f"task {k + 1}" for k in range(10)] + ["mean"],
                task_rows, title=f"Task influence (MTIF with GN / exact Hessian; TAG and "
                                 f"cosine baselines) vs LOTO refits: Spearman per target "
                                 f"task, mean ± s.e. over {len(seeds)} seeds (paper Table 2 "
                                 "on CelebA: MTIF 0.10-0.43)")
    print_table(["data", "network fit", "MTIF (GN)", "MTIF (exact)", "TAG", "cosine",
                 "LOTO (full fit + 10)"],
                time_rows, title="Median times per seed (MTIF includes every row's and "
                                 "task's effect; fit excluded)")

    sel_rows = []
    for name, data in {"chemical": datasets["chemical"],
                       "synthetic, 15% flipped labels in tasks 1-3": synthetic(noisy=True)
                       }.items():
        for seed, before, after, removed, hit in selection(name, data, seeds[:3]):
            sel_rows.append([name, seed, f"{before[0]:.4f}", f"{after[0]:.4f}",
                             f"{after[0] - before[0]:+.4f}", f"{before[1]:.3f}",
                             f"{after[1]:.3f}", removed, hit])
    print_table(["data", "seed", "log loss before", "after", "change", "accuracy before",
                 "after", "rows removed", "of them flipped"], sel_rows,
                title="NegativeTransferSelector(fraction=0.05, cv=5) on the network: held-out "
                      "mean per-task log loss and accuracy")


if __name__ == "__main__":
    main()
