"""MTIF task influence against leave-one-task-out (LOTO) refits on the shared real data sets.

For every data set, alpha and validation split (seed), MTIFInfluence is fitted with
``validation_fraction=0.2`` and ``loto_effects`` refits the model once per task on the same
training rows. For each target task k, the Spearman correlation between column k of
``task_influence_`` and column k of the LOTO matrix is taken over the OTHER tasks (the diagonal is
excluded, as in the paper's Table 1). Times: MTIFInfluence.fit (model fit + every row's and every
task's effect) against loto_effects (full fit + K refits), both sequential (n_jobs=1).

Data (read-only, never copied): ../shared/data/{chemical,school,computer_survey} relative to the
project root. Run as ``python benchmarks/bench_real_data.py`` from the project root.
"""

import argparse
import statistics
import warnings

import numpy as np
from _common import DATA, fmt_ratio, fmt_time, machine_info, median_time, print_table

try:
    from _common import load_info
except ImportError:  # older _common without it
    def load_info():
        return ""
from scipy.stats import spearmanr
from threadpoolctl import threadpool_limits

from mtif_sklearn import MTIFInfluence, MultitaskLogistic, MultitaskRidge
from mtif_sklearn.datasets import load_chemical, load_computer_survey, load_school
from mtif_sklearn.retrain import loto_effects


def per_task_spearman(estimate, truth):
    """Spearman over the other tasks (diagonal excluded), one value per target task."""
    K = truth.shape[0]
    out = np.full(K, np.nan)
    for k in range(K):
        others = np.arange(K) != k
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant column -> NaN, reported as such
            out[k] = spearmanr(estimate[others, k], truth[others, k]).statistic
    return out


def standardise(X):
    scale = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(scale > 0, scale, 1.0)


def datasets():
    """(name, model class, alphas, loader) with the preprocessing used in tests/test_real_data."""
    return [
        # 0/1 fingerprints: one scale already. Best held-out log loss of 0.001..1 is near 0.01.
        ("chemical", MultitaskLogistic, (0.01, 0.1),
         lambda: load_chemical(DATA / "chemical")),
        # Two percentage columns (0-100) next to one-hots: standardised. Best held-out MSE ~ 10.
        ("school", MultitaskRidge, (1.0, 10.0),
         lambda: (lambda X, y, t: (standardise(X), y, t))(*load_school(DATA / "school"))),
        # +-1 design attributes, 20 ratings per respondent. Best held-out MSE ~ 1.
        ("computer_survey", MultitaskRidge, (0.1, 1.0),
         lambda: load_computer_survey(DATA / "computer_survey")),
    ]


def run_one(model, X, y, tasks, seed, n_jobs):
    inf = MTIFInfluence(model, validation_fraction=0.2, random_state=seed)
    mtif_time, inf = median_time(lambda: inf.fit(X, y, tasks=tasks), repeats=1, warmup=0)
    train, val = inf.train_indices_, inf.val_indices_
    loto_time, loto = median_time(
        lambda: loto_effects(model, X[train], y[train], X[val], y[val], tasks=tasks[train],
                             tasks_val=tasks[val], n_jobs=n_jobs),
        repeats=1, warmup=0)
    return inf, loto, mtif_time, loto_time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="validation-split seeds (default: 0 1 2)")
    parser.add_argument("--n-jobs", type=int, default=1, help="joblib jobs for the LOTO refits")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="BLAS threads (default 1: the blocks are small, and multithreaded "
                             "OpenBLAS slows down 10x+ when the cores are shared)")
    args = parser.parse_args()
    with threadpool_limits(limits=args.blas_threads, user_api="blas"):
        _run(args)


def _run(args):
    print(f"Machine: {machine_info()}")
    print(f"At start: {load_info()}")
    print(f"Validation: 20% of every task's rows, seeds {args.seeds}; LOTO n_jobs={args.n_jobs}; "
          f"BLAS threads {args.blas_threads}; "
          "Spearman per target task over the other tasks (diagonal excluded).")
    summary = []
    for name, cls, alphas, loader in datasets():
        if not (DATA / name).is_dir():
            print(f"\n{DATA / name} not found; skipped.")
            continue
        X, y, tasks = loader()
        labels = np.unique(tasks)
        per_alpha = {}
        for alpha in alphas:
            rhos, mtif_times, loto_times = [], [], []
            for seed in args.seeds:
                inf, loto, mtif_time, loto_time = run_one(cls(alpha=alpha), X, y, tasks, seed,
                                                          args.n_jobs)
                rhos.append(per_task_spearman(inf.task_influence_, loto))
                mtif_times.append(mtif_time)
                loto_times.append(loto_time)
            rhos = np.array(rhos)  # (n_seeds, K)
            per_alpha[alpha] = rhos
            mtif_t, loto_t = statistics.median(mtif_times), statistics.median(loto_times)
            means = np.nanmean(rhos, axis=1)
            summary.append([
                name, cls.__name__, f"{alpha:g}", len(labels), f"{X.shape[0]}x{X.shape[1]}",
                f"{means.mean():.3f} ± {means.std():.3f}",
                f"{np.nanmean(np.nanmedian(rhos, axis=1)):.3f}",
                f"{np.nanmin(rhos):.3f}", int(np.isnan(rhos).sum()),
                fmt_time(mtif_t), fmt_time(loto_t), fmt_ratio(loto_t / mtif_t)])
        if name == "chemical":
            counts = {t: int(np.sum(tasks == t)) for t in labels}
            rows = []
            for k, label in enumerate(labels):
                row = [label, counts[label]]
                for alpha in alphas:
                    r = per_alpha[alpha][:, k]
                    row.append(f"{np.mean(r):.3f} ({np.min(r):.3f}-{np.max(r):.3f})")
                rows.append(row)
            rows.append(["mean", X.shape[0]] + [f"{np.nanmean(per_alpha[a]):.3f}"
                                                 for a in alphas])
            print_table(["task", "rows"] + [f"alpha={a:g}: mean (min-max) over seeds"
                                            for a in alphas], rows,
                        title="chemical (MultitaskLogistic): Spearman MTIF vs LOTO per target task")
    print_table(["data", "model", "alpha", "tasks", "X", "mean over tasks (± sd over seeds)",
                 "median", "min (any seed)", "NaN", "MTIF fit", "LOTO refits", "LOTO/MTIF"],
                summary, title="Spearman MTIF vs LOTO over target tasks, and time")
    print("MTIF fit = fit the model + all data-level (n_train x K) and task-level (K x K) "
          "effects; LOTO = full fit + K refits. Times: median over the seeds.")
    print(f"At end: {load_info()}")


if __name__ == "__main__":
    main()
