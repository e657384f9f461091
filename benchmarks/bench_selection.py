"""Does removing the rows MTIF marks as harmful help? NegativeTransferSelector on three problems.

Run:  python benchmarks/bench_selection.py            (5 seeds each; a few minutes on 2 cores)
      python benchmarks/bench_selection.py --quick    (2 seeds, smaller synthetic data)

1. Synthetic regression, paper Table 13 (Appendix C.3.1). ``make_multitask_regression`` with 10
   tasks, 2 of them unrelated (eps=0.2), plus gross label errors (+-15, noise sd 1) in 3% of the
   rows, all in 3 tasks. Metric: l2 distance between each task's estimated and true theta_k,
   before and after selection (fraction=0.03, the corrupted share). Also run without any
   label errors, where there is nothing to find and selection should not hurt.
2. Label noise on the chemical data (paper Table 14 style, C.3.2): MultitaskLogistic, labels of
   5% of the training rows of 3 tasks flipped; the selector removes as many rows as were
   flipped. Test error before/after, and precision of detection (share of removed rows that
   were flipped) against removing the same number of highest-training-loss rows or random rows.
3. School exam scores (139 tasks, regression; the first splits shipped with the data): held-out
   MSE per task before and after removing 5% or 1% of the training rows, and with the fraction
   chosen by GridSearchCV over (0, 0.01, 0.05) (tasks routed as metadata).

Scores are cross-fitted (cv=5, the default) unless a row says cv=None (the paper's single
validation split). BLAS is limited to one thread: on this shared 2-core machine OpenBLAS threads
made the many small factorisations several times slower, not faster.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from _common import machine_info, print_table
from threadpoolctl import threadpool_limits

from mtif_sklearn import MultitaskLogistic, MultitaskRidge, NegativeTransferSelector
from mtif_sklearn.datasets import load_chemical, load_school, make_multitask_regression

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def mean_se(values):
    values = np.asarray(values, dtype=float)
    se = values.std(ddof=1) / np.sqrt(values.size) if values.size > 1 else float("nan")
    return f"{values.mean():.4f} +- {se:.4f}"


# --- 1. synthetic: l2 distance to the true coefficients --------------------------------------
def synthetic_case(seed, n_per_task, n_features, corrupt):
    X, y, tasks, coef, unrelated = make_multitask_regression(
        n_tasks=10, n_samples_per_task=n_per_task, n_features=n_features, delta=0.5, eps=0.2,
        random_state=seed, return_coef=True)
    rng = np.random.default_rng([seed, 13])
    bad_tasks = rng.choice(10, size=3, replace=False)
    corrupted = np.zeros(0, dtype=int)
    if corrupt:
        corrupted = rng.choice(np.flatnonzero(np.isin(tasks, bad_tasks)),
                               size=int(0.03 * len(y)), replace=False)
        y = y.copy()
        y[corrupted] += rng.choice([-15.0, 15.0], size=corrupted.size)
    return X, y, tasks, coef, unrelated, bad_tasks if corrupt else np.zeros(0, int), corrupted


def coef_distance(model, coef):
    return np.linalg.norm(model.coef_ - coef, axis=1)


def bench_synthetic(seeds, n_per_task, n_features):
    estimator = MultitaskRidge(alpha=0.1)
    variants = {"cv=5": {}, "cv=5, n_rounds=2": {"n_rounds": 2}, "cv=None": {"cv": None}}
    per_task = {name: [] for name in variants}
    summary = []
    for corrupt in (True, False):
        for name, params in variants.items():
            if not corrupt and name != "cv=5":
                continue
            changes, precision, improved_kind = [], [], {"corrupted": [], "unrelated": [],
                                                           "clean": []}
            for seed in seeds:
                X, y, tasks, coef, unrelated, bad_tasks, corrupted = synthetic_case(
                    seed, n_per_task, n_features, corrupt)
                before = coef_distance(estimator.fit(X, y, tasks=tasks), coef)
                selector = NegativeTransferSelector(estimator, fraction=0.03, random_state=seed,
                                                    **params).fit(X, y, tasks=tasks)
                after = coef_distance(selector.estimator_, coef)
                changes.append(after - before)
                if corrupt:
                    precision.append(np.isin(selector.removed_, corrupted).mean())
                if corrupt and name == "cv=5":
                    per_task[name].append((before, after))
                for k in range(10):
                    kind = ("corrupted" if k in bad_tasks else
                            "unrelated" if unrelated[k] else "clean")
                    improved_kind[kind].append(after[k] < before[k])
            changes = np.array(changes)
            label = f"{'outliers' if corrupt else 'no outliers'}, {name}"
            summary.append([
                label,
                mean_se(changes.mean(axis=1)),
                f"{np.sum(changes.mean(axis=1) < 0)}/{len(seeds)}",
                f"{np.sum(changes < 0)}/{changes.size}",
                *(f"{np.sum(v)}/{len(v)}" if v else "-" for v in improved_kind.values()),
                f"{np.mean(precision):.2f}" if precision else "-",
            ])

    pairs = np.array(per_task["cv=5"])  # (seeds, 2, tasks)
    rows = []
    for k in range(10):
        before, after = pairs[:, 0, k], pairs[:, 1, k]
        rows.append([f"task {k}", f"{before.mean():.4f}", f"{after.mean():.4f}",
                     f"{np.mean(after - before):+.4f}", f"{np.sum(after < before)}/{len(seeds)}"])
    print_table(["task (index)", "l2 before", "l2 after", "change", "seeds improved"], rows,
                title=f"1a. Synthetic regression with outliers: ||theta_k_hat - theta_k||, "
                      f"mean over {len(seeds)} seeds (cv=5, fraction=0.03)")
    print("Task indices are re-drawn every seed (which tasks are unrelated or corrupted "
          "changes), so the per-kind counts below are the readable summary.")
    print_table(["setting", "mean l2 change (+-se over seeds)", "seeds mean improved",
                 "(seed, task) improved", "corrupted tasks", "unrelated tasks", "clean tasks",
                 "precision"], summary,
                title="1b. Synthetic regression: change of the l2 distance after selection "
                      "(negative = closer to the truth)")


# --- 2. chemical: flipped labels ---------------------------------------------------------------
def bench_chemical(seeds):
    path = DATA / "chemical"
    if not path.exists():
        print(f"\n(skipped: {path} not found)")
        return
    X, y, tasks = load_chemical(path, subset="train")
    X_test, y_test, tasks_test = load_chemical(path, subset="test")
    task_names = np.unique(tasks)
    estimator = MultitaskLogistic(alpha=0.003)
    clean_error = 1 - estimator.fit(X, y, tasks=tasks).score(X_test, y_test, tasks=tasks_test)
    chance = []
    results = {name: {"error": [], "noisy_error": [], "precision": []}
               for name in ("no removal", "MTIF cv=5", "MTIF cv=None", "highest loss",
                            "random")}
    for seed in seeds:
        rng = np.random.default_rng([seed, 14])
        noisy_tasks = rng.choice(task_names, size=3, replace=False)
        flipped = np.concatenate([
            rng.choice(np.flatnonzero(tasks == task), size=int(round(0.05 * np.sum(
                tasks == task))), replace=False) for task in noisy_tasks])
        y_noisy = y.copy()
        y_noisy[flipped] = 1 - y_noisy[flipped]
        fraction = len(flipped) / len(y)
        chance.append(fraction)
        noisy_test = np.isin(tasks_test, noisy_tasks)

        def record(name, model, removed, noisy_test=noisy_test, flipped=flipped):
            errors = model.predict(X_test, tasks=tasks_test) != y_test
            results[name]["error"].append(errors.mean())
            results[name]["noisy_error"].append(errors[noisy_test].mean())
            if removed is not None:
                results[name]["precision"].append(np.isin(removed, flipped).mean())

        base = MultitaskLogistic(alpha=0.003).fit(X, y_noisy, tasks=tasks)
        record("no removal", base, None)
        for name, cv in (("MTIF cv=5", 5), ("MTIF cv=None", None)):
            selector = NegativeTransferSelector(estimator, fraction=fraction, cv=cv,
                                                random_state=seed).fit(X, y_noisy, tasks=tasks)
            record(name, selector, selector.removed_)
            if cv == 5:
                n_removed = len(selector.removed_)
        objective = base._mtif_objective(X, y_noisy, tasks=tasks)
        highest = np.argsort(objective.row_losses())[::-1][:n_removed]
        random = rng.choice(len(y), size=n_removed, replace=False)
        for name, removed in (("highest loss", highest), ("random", random)):
            keep = np.setdiff1d(np.arange(len(y)), removed)
            model = MultitaskLogistic(alpha=0.003).fit(X[keep], y_noisy[keep], tasks=tasks[keep])
            record(name, model, removed)

    chance = float(np.mean(chance))
    rows = []
    for name, values in results.items():
        rows.append([name, mean_se(values["error"]), mean_se(values["noisy_error"]),
                     mean_se(values["precision"]) if values["precision"] else "-"])
    print_table(["removal", "test error (all tasks)", "test error (noisy tasks)",
                 "precision (removed that were flipped)"], rows,
                title=f"2. Chemical, MultitaskLogistic(alpha=0.003), 5% of the training labels "
                      f"of 3 of 10 tasks flipped (~{100 * chance:.1f}% of rows); as many rows "
                      f"removed as flipped; mean +- se over {len(seeds)} seeds")
    print(f"Clean-label test error: {clean_error:.4f}. Chance precision = flipped share of all "
          f"training rows (~{chance:.3f}).")


# --- 3. school: held-out MSE per task ----------------------------------------------------------
def _task_mse(model, X, y, tasks):
    prediction = model.predict(X, tasks=tasks)
    return np.array([np.mean((prediction[tasks == task] - y[tasks == task]) ** 2)
                     for task in np.unique(tasks)])


def bench_school(splits):
    import sklearn
    from scipy.io import loadmat
    from sklearn.model_selection import GridSearchCV, KFold

    path = DATA / "school"
    if not path.exists():
        print(f"\n(skipped: {path} not found)")
        return
    X, y, tasks = load_school(path)
    estimator = MultitaskRidge(alpha=1.0)
    methods = ["fraction=0.05", "fraction=0.01", "grid search over fraction (0, 0.01, 0.05)"]
    changes = {name: [] for name in methods}
    pooled = {name: [] for name in ["no removal", *methods]}
    chosen = []
    for split in splits:
        indexes = loadmat(path / f"school_{split}_indexes.mat")
        train = np.asarray(indexes["tr"]).ravel().astype(int) - 1
        test = np.asarray(indexes["tst"]).ravel().astype(int) - 1
        X_train, y_train, tasks_train = X[train], y[train], tasks[train]
        X_test, y_test, tasks_test = X[test], y[test], tasks[test]
        base = clone_fit(estimator, X_train, y_train, tasks_train)
        before = _task_mse(base, X_test, y_test, tasks_test)
        pooled["no removal"].append(np.mean((base.predict(X_test, tasks=tasks_test)
                                             - y_test) ** 2))
        models = {}
        for fraction in (0.05, 0.01):
            models[f"fraction={fraction}"] = NegativeTransferSelector(
                estimator, fraction=fraction, random_state=split).fit(
                X_train, y_train, tasks=tasks_train)
        with sklearn.config_context(enable_metadata_routing=True):
            search = GridSearchCV(NegativeTransferSelector(estimator, random_state=split),
                                  {"fraction": [0.0, 0.01, 0.05]},
                                  cv=KFold(3, shuffle=True, random_state=split))
            search.fit(X_train, y_train, tasks=tasks_train)
        chosen.append(search.best_params_["fraction"])
        models[methods[2]] = search.best_estimator_
        for name, model in models.items():
            changes[name].append(_task_mse(model, X_test, y_test, tasks_test) - before)
            pooled[name].append(np.mean((model.predict(X_test, tasks=tasks_test)
                                         - y_test) ** 2))
    rows = [["no removal", "-", "-", "-", mean_se(pooled["no removal"])]]
    for name in methods:
        change = np.array(changes[name])  # (splits, tasks)
        rows.append([name, mean_se(change.mean(axis=1)), f"{np.median(change):+.3f}",
                     f"{np.sum(change < 0)}/{change.size}", mean_se(pooled[name])])
    print_table(["removal", "change of mean task MSE (+-se over splits)",
                 "median task change", "(split, task) improved", "pooled test MSE"], rows,
                title=f"3. School (139 tasks), MultitaskRidge(alpha=1), held-out MSE per task "
                      f"on the shipped train/test splits {splits[0]}..{splits[-1]}")
    print(f"Grid search (3-fold, default score = R^2) chose fraction = {chosen}.")


def clone_fit(estimator, X, y, tasks):
    from sklearn.base import clone

    return clone(estimator).fit(X, y, tasks=tasks)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, smaller synthetic data")
    args = parser.parse_args(argv)
    seeds = list(range(2 if args.quick else 5))
    start = time.perf_counter()
    with threadpool_limits(1):
        print(f"Machine: {machine_info()}")
        bench_synthetic(seeds, n_per_task=100 if args.quick else 200,
                        n_features=10 if args.quick else 20)
        print(f"[{time.perf_counter() - start:.0f} s]")
        bench_chemical(seeds)
        print(f"[{time.perf_counter() - start:.0f} s]")
        bench_school([s + 1 for s in seeds])
        print(f"[{time.perf_counter() - start:.0f} s]")
    print(f"Total time: {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
