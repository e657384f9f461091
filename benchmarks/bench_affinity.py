"""Task affinities next to MTIF: Spearman against leave-one-task-out (LOTO) retraining, cost,
and the task groups each affinity finds (paper Appendix C.2, Tables 10-12 protocol).

For every data set and seed: 20% of every task's rows are held out as a TEST split (used only to
judge groupings); on the rest, MTIFInfluence(validation_fraction=0.2, random_state=seed) fixes a
train/validation split, and LOTO (``loto_effects``) refits the model once per task on it. Every
method scores the same training rows; for each target task k the Spearman correlation between
column k of its (source, target) affinity and column k of LOTO is taken over the other tasks
(diagonal excluded), then averaged over target tasks. Direction everywhere: [i, j] large means
source task i helps target task j.

Methods: MTIF (task_influence_), TAG lookahead and cosine similarity (gradient descent from zero,
100 steps, 10 points), ETAP's affinity score (same trajectory) and ETAP refined on the true gains
of a few random 3-task groups, Grad-TAG pairwise and Grad-TAG on random subsets of half the
tasks. Times are wall times of each call on the training rows (MTIF: MTIFInfluence.fit, i.e. fit
+ all data- and task-level effects); "refits" counts model fits of the real model (surrogate
fits of Grad-TAG are counted separately).

Grouping: from each affinity of the first seed, group_tasks (spectral; exhaustive TAG-style
search when K <= 12) into G groups; one model per group is fitted on train+validation rows and
the mean over tasks of the TEST loss is compared with one model on all tasks and with single-task
models (lower is better).

Run from the project root: ``python benchmarks/bench_affinity.py [--quick]``.
"""

import argparse
import time
import warnings

import numpy as np
from _common import DATA, machine_info, print_table
from scipy.stats import spearmanr
from threadpoolctl import threadpool_limits

from mtif_sklearn import MTIFInfluence, MultitaskLogistic, MultitaskRidge
from mtif_sklearn._tasks import encode_tasks, train_validation_split_by_task, unique_tasks
from mtif_sklearn.affinity import (
    cosine_affinity,
    etap_affinity,
    gradtag_affinity,
    group_tasks,
    tag_affinity,
)
from mtif_sklearn.datasets import load_chemical, load_school, make_multitask_regression
from mtif_sklearn.retrain import group_gains, loto_effects, validation_losses


def per_task_spearman(estimate, truth):
    K = truth.shape[0]
    out = np.full(K, np.nan)
    for k in range(K):
        others = np.arange(K) != k
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant column -> NaN
            out[k] = spearmanr(estimate[others, k], truth[others, k]).statistic
    return out


def standardise(X):
    scale = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(scale > 0, scale, 1.0)


def datasets(quick):
    seeds5 = [0] if quick else [0, 1, 2, 3, 4]
    seeds3 = [0] if quick else [0, 1, 2]
    out = [("synthetic (K=10, d=50)", lambda s: make_multitask_regression(random_state=s),
            lambda: MultitaskRidge(alpha=0.1, shared_alpha=1e-3), seeds5, 3)]
    if (DATA / "school").is_dir():
        out.append(("school", lambda s: (lambda X, y, t: (standardise(X), y, t))(
            *load_school(DATA / "school")), lambda: MultitaskRidge(alpha=1.0), seeds3, 5))
    if (DATA / "chemical").is_dir():
        out.append(("chemical", lambda s: load_chemical(DATA / "chemical"),
                    lambda: MultitaskLogistic(alpha=0.1), seeds3, 3))
    return out


def methods(K, seed, Xv, yv, tv):
    half = max(2, K // 2)
    return {
        "TAG": (lambda m, X, y, t: tag_affinity(m, X, y, tasks=t), 1),
        "cosine": (lambda m, X, y, t: cosine_affinity(m, X, y, tasks=t), 1),
        "ETAP score": (lambda m, X, y, t: etap_affinity(m, X, y, tasks=t), 1),
        "ETAP refined (10 groups)": (
            lambda m, X, y, t: etap_affinity(m, X, y, tasks=t, X_val=Xv, y_val=yv, tasks_val=tv,
                                             n_train_groups=10, random_state=seed),
            1 + 10 + K),
        "Grad-TAG pairwise": (
            lambda m, X, y, t: gradtag_affinity(m, X, y, Xv, yv, tasks=t, tasks_val=tv,
                                                random_state=seed), 1),
        f"Grad-TAG subsets (size {half}, 200)": (
            lambda m, X, y, t: gradtag_affinity(m, X, y, Xv, yv, tasks=t, tasks_val=tv,
                                                order="subsets", subset_size=half,
                                                random_state=seed), 1),
    }


def mean_loss(model_factory, X, y, t, Xte, yte, tte):
    model = model_factory().fit(X, y, tasks=t)
    return float(np.nanmean(validation_losses(model, Xte, yte, tte)))


def run(args):
    print(f"Machine: {machine_info()}")
    accuracy, grouping = [], []
    for name, loader, factory, seeds, n_groups in datasets(args.quick):
        per_method, times, refits, affinities = {}, {}, {}, {}
        for seed in seeds:
            X, y, t = loader(seed)
            labels = unique_tasks(t)
            K = len(labels)
            codes = encode_tasks(t, labels)
            rest, test = train_validation_split_by_task(codes, K, 0.2, random_state=1000 + seed)
            Xr, yr, tr_ = X[rest], y[rest], t[rest]
            model = factory()
            inf = MTIFInfluence(model, validation_fraction=0.2, random_state=seed)
            start = time.perf_counter()
            inf.fit(Xr, yr, tasks=tr_)
            sec = time.perf_counter() - start
            tr, va = inf.train_indices_, inf.val_indices_
            Xt, yt, tt = Xr[tr], yr[tr], tr_[tr]
            Xv, yv, tv = Xr[va], yr[va], tr_[va]
            start = time.perf_counter()
            loto = loto_effects(model, Xt, yt, Xv, yv, tasks=tt, tasks_val=tv)
            loto_sec = time.perf_counter() - start
            results = {"MTIF": (inf.task_influence_, sec, 1)}
            for mname, (func, n_refit) in methods(K, seed, Xv, yv, tv).items():
                start = time.perf_counter()
                A = func(model, Xt, yt, tt)
                results[mname] = (A, time.perf_counter() - start, n_refit)
            results["LOTO (truth)"] = (loto, loto_sec, 1 + K)
            for mname, (A, sec_m, n_refit) in results.items():
                per_method.setdefault(mname, []).append(np.nanmean(per_task_spearman(A, loto)))
                times.setdefault(mname, []).append(sec_m)
                refits[mname] = n_refit
                if seed == seeds[0]:
                    affinities[mname] = A
            if seed == seeds[0]:
                first = (Xr, yr, tr_, X[test], y[test], t[test], K)
        for mname, rhos in per_method.items():
            rhos = np.array(rhos)
            accuracy.append([name, mname, f"{rhos.mean():.3f} ± {rhos.std():.3f}",
                             f"{np.median(times[mname]):.3f} s", refits[mname]])
        # Grouping on the first seed.
        Xr, yr, tr_, Xte, yte, tte, K = first
        together = mean_loss(factory, Xr, yr, tr_, Xte, yte, tte)
        grouping.append([name, "all tasks together", "-", f"{together:.4f}", ""])
        single = None
        for mname, A in affinities.items():
            ways = ["spectral"] + (["exhaustive"] if K <= 12 else [])
            for way in ways:
                labels_g = group_tasks(np.nan_to_num(A), n_groups, method=way, random_state=0)
                task_labels = unique_tasks(tr_)
                groups = [task_labels[labels_g == g] for g in range(n_groups)]
                _, group_losses, single_losses = group_gains(
                    factory(), Xr, yr, Xte, yte, groups, tasks=tr_, tasks_val=tte,
                    return_losses=True)
                single = single_losses
                per_task = np.nanmin(group_losses, axis=0)  # each task is in one group
                sizes = "/".join(str(len(g)) for g in sorted(groups, key=len, reverse=True))
                grouping.append([name, mname, way, f"{np.nanmean(per_task):.4f}", sizes])
        grouping.append([name, "single-task", "-", f"{np.nanmean(single):.4f}", ""])
    print_table(["data", "method", "Spearman vs LOTO (mean over targets, ± sd over seeds)",
                 "time (median)", "refits"], accuracy,
                title="Task affinity vs LOTO retraining (Tables 10-12 protocol)")
    print_table(["data", "affinity", "grouping", "mean test loss over tasks", "group sizes"],
                grouping, title="Groups from each affinity: held-out loss (lower is better)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed per data set")
    parser.add_argument("--blas-threads", type=int, default=1)
    args = parser.parse_args()
    with threadpool_limits(limits=args.blas_threads, user_api="blas"):
        run(args)


if __name__ == "__main__":
    main()
