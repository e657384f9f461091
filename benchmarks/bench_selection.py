"""Does removing rows help on held-out data? NegativeTransferSelector against the baselines.

Run:  python benchmarks/bench_selection.py            (school: 5 splits; chemical: 3 seeds,
                                                      its guarded fits take 10-30 s each;
                                                      ~20 min on 2 shared cores)
      python benchmarks/bench_selection.py --quick    (2 seeds)

Four data sets, every method removes at most the same share of the training rows and refits
the same model on the rest; the held-out loss (pooled over the test rows of every task: MSE for
school, log loss for chemical) is compared with the same model fitted on every row.

1. Chemical as it is (10 assays, MultitaskLogistic(alpha=0.003), its train/test files): clean
   real data, where nothing is known to be wrong. Seeds change the folds.
2. School as it is (139 schools, MultitaskRidge(alpha=1)), the shipped train/test splits 1-5.
3. School with gross target errors: 0.6% of the training rows get +-60 points (about 5 sd);
   the test rows stay clean.
4. Chemical with flipped labels: 10% of the training labels of 3 of the 10 assays flipped;
   the test labels stay clean.

Methods (all through the package, :mod:`mtif_sklearn.selection`):
- ``NTS``: ``NegativeTransferSelector`` with its defaults (task_weights="size",
  max_task_fraction=0.2, n_rounds=3, the nested-CV guard with a 1-se margin);
- ``NTS guard=False``: the same without the no-harm rule;
- ``NTS before (equal, 1 round, no guard)``: the selector as it was before this issue
  (task_weights="equal", no per-task limit, one round, no guard);
- ``highest loss``: :func:`highest_loss_rows` (cross-fitted, same caps);
- ``cleanlab (per-task LR)``: :func:`cleanlab_label_issues` on cross-fitted per-task
  ``LogisticRegression`` probabilities (chemical only; needs cleanlab);
- ``random``: as many random rows as the cap.
On school (cheap fits) also one variant per default (guard margin 0, one round, no per-task
limit, equal task weights): the evidence each default rests on.

Columns: mean +- sd over seeds of the held-out loss change (negative = better), seeds won
(change < 0), precision (share of the removed rows that were corrupted; injected errors
only), share of the removed rows that come from the smallest task, rows removed, time.
BLAS is limited to one thread (shared 2-core machine).
"""

import argparse
import sys
import time

import numpy as np
from _common import DATA, load_info, machine_info, mean_loss, print_table, refit_without
from scipy.io import loadmat
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from mtif_sklearn import MultitaskLogistic, MultitaskRidge, NegativeTransferSelector
from mtif_sklearn.datasets import load_chemical, load_school
from mtif_sklearn.selection import cleanlab_label_issues, highest_loss_rows


# --- data -------------------------------------------------------------------------------------
def chemical(seed, flip):
    X, y, tasks = load_chemical(data_home=DATA, subset="train")
    X_test, y_test, tasks_test = load_chemical(data_home=DATA, subset="test")
    corrupted = np.zeros(len(y), dtype=bool)
    if flip:
        rng = np.random.default_rng([seed, 14])
        for task in rng.choice(np.unique(tasks), size=3, replace=False):
            rows = np.flatnonzero(tasks == task)
            corrupted[rng.choice(rows, size=int(round(0.1 * rows.size)), replace=False)] = True
        y = np.where(corrupted, 1 - y, y)
    return dict(X=X, y=y, tasks=tasks, X_test=X_test, y_test=y_test, tasks_test=tasks_test,
                corrupted=corrupted, model=MultitaskLogistic(alpha=0.003), classification=True)


def school(seed, gross):
    X, y, tasks = load_school(data_home=DATA)
    indexes = loadmat(DATA / "school" / f"school_{seed + 1}_indexes.mat")
    train = np.asarray(indexes["tr"]).ravel().astype(int) - 1
    test = np.asarray(indexes["tst"]).ravel().astype(int) - 1
    y_train = y[train].astype(np.float64)
    corrupted = np.zeros(train.size, dtype=bool)
    if gross:
        rng = np.random.default_rng([seed, 15])
        rows = rng.choice(train.size, size=int(round(0.006 * train.size)), replace=False)
        corrupted[rows] = True
        y_train[rows] += rng.choice([-60.0, 60.0], size=rows.size)
    return dict(X=X[train], y=y_train, tasks=tasks[train], X_test=X[test], y_test=y[test],
                tasks_test=tasks[test], corrupted=corrupted, model=MultitaskRidge(alpha=1.0),
                classification=False)


# --- methods ----------------------------------------------------------------------------------
def heldout_loss(model, problem):
    X, y, tasks = problem["X_test"], problem["y_test"], problem["tasks_test"]
    logistic = problem["classification"]
    prediction = (model.predict_proba(X, tasks=tasks)[:, 1] if logistic
                  else model.predict(X, tasks=tasks))
    return mean_loss(y, prediction, logistic)


SELECTORS = {
    "NTS (defaults)": {},
    "NTS guard=0 (margin 0 se)": {"guard": 0.0},
    "NTS guard=False": {"guard": False},
    "NTS before (equal, 1 round, no guard)": {"task_weights": "equal", "max_task_fraction": None,
                                              "n_rounds": 1, "guard": False},
}
# Variants of the defaults, run where fits are cheap (school): the evidence for each default.
VARIANTS = {
    **SELECTORS,
    "NTS n_rounds=1": {"n_rounds": 1},
    "NTS max_task_fraction=None": {"max_task_fraction": None},
    "NTS task_weights='equal'": {"task_weights": "equal"},
}


def run_methods(problem, seed, fraction, selectors):
    X, y, tasks, model = problem["X"], problem["y"], problem["tasks"], problem["model"]
    results = {}
    for name, params in selectors.items():
        start = time.perf_counter()
        selector = NegativeTransferSelector(model, fraction=fraction, random_state=seed,
                                            **params).fit(X, y, tasks=tasks)
        results[name] = (selector, selector.removed_, time.perf_counter() - start)
    start = time.perf_counter()
    rows = highest_loss_rows(model, X, y, tasks=tasks, fraction=fraction, random_state=seed)
    results["highest loss (cross-fitted)"] = (refit_without(problem, rows), rows,
                                              time.perf_counter() - start)
    if problem["classification"]:
        try:
            start = time.perf_counter()
            rows = cleanlab_label_issues(LogisticRegression(max_iter=1000), X, y, tasks=tasks,
                                         fraction=fraction, random_state=seed)
            results["cleanlab (per-task LR)"] = (refit_without(problem, rows), rows,
                                                 time.perf_counter() - start)
        except ImportError:
            pass
    rng = np.random.default_rng([seed, 98])
    rows = rng.choice(len(y), size=int(np.floor(fraction * len(y) + 1e-9)), replace=False)
    results["random"] = (refit_without(problem, rows), rows, 0.0)
    return results


def bench(title, make, seeds, fractions, selectors):
    per = {}
    base_losses = []
    for seed in seeds:
        problem = make(seed)
        base = heldout_loss(clone(problem["model"]).fit(problem["X"], problem["y"],
                                                         tasks=problem["tasks"]), problem)
        base_losses.append(base)
        labels, counts = np.unique(problem["tasks"], return_counts=True)
        smallest = labels[np.argmin(counts)]
        for fraction in fractions:
            for name, (model, removed, seconds) in run_methods(problem, seed, fraction,
                                                               selectors).items():
                entry = per.setdefault((name, fraction), {k: [] for k in (
                    "change", "precision", "smallest", "n", "time")})
                entry["change"].append(heldout_loss(model, problem) - base)
                removed = np.asarray(removed, dtype=int)
                entry["precision"].append(problem["corrupted"][removed].mean() if removed.size
                                          else np.nan)
                entry["smallest"].append(np.mean(problem["tasks"][removed] == smallest)
                                         if removed.size else np.nan)
                entry["n"].append(removed.size)
                entry["time"].append(seconds)
        share = counts.min() / counts.sum()
    injected = bool(problem["corrupted"].any())
    rows = []
    for (name, fraction), entry in per.items():
        change = np.array(entry["change"])
        precision, smallest = np.array(entry["precision"]), np.array(entry["smallest"])
        rows.append([
            name, fraction, f"{change.mean():+.4f} +- {change.std(ddof=1):.4f}",
            f"{np.sum(change < 0)}/{len(seeds)}",
            (f"{np.nanmean(precision):.2f}" if injected and np.isfinite(precision).any()
             else "-"),
            f"{np.nanmean(smallest):.2f}" if np.isfinite(smallest).any() else "-",
            f"{np.mean(entry['n']):.0f}", f"{np.mean(entry['time']):.1f} s"])
    print_table(["method", "fraction", "held-out loss change (mean +- sd)", "seeds won",
                 "precision", "from smallest task", "rows removed", "time"], rows,
                title=f"{title}: {len(seeds)} seeds, held-out loss with every row "
                      f"{np.mean(base_losses):.4f}")
    print(f"The smallest task holds {100 * share:.1f}% of the training rows"
          + (f"; corrupted share of the training rows: "
             f"{100 * problem['corrupted'].mean():.2f}%." if injected else "."))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds")
    parser.add_argument("--parts", default="1234", help="which data sets (default 1234)")
    args = parser.parse_args(argv)
    seeds = list(range(2 if args.quick else 5))
    start = time.perf_counter()
    with threadpool_limits(1):
        print(f"Machine: {machine_info()}")
        print(load_info())
        slow = seeds[:3]  # chemical: 3 seeds (see Run)
        parts = {
            "1": ("1. Chemical as it is, MultitaskLogistic(alpha=0.003)",
                  lambda s: chemical(s, flip=False), SELECTORS, slow),
            "2": ("2. School as it is, MultitaskRidge(alpha=1), splits 1-5",
                  lambda s: school(s, gross=False), VARIANTS, seeds),
            "3": ("3. School, gross target errors (+-60) in 0.6% of the training rows",
                  lambda s: school(s, gross=True), VARIANTS, seeds),
            "4": ("4. Chemical, 10% of the labels of 3 of 10 assays flipped",
                  lambda s: chemical(s, flip=True), SELECTORS, slow),
        }
        for key, (title, make, selectors, part_seeds) in parts.items():
            if key in args.parts:
                bench(title, make, part_seeds, [0.01, 0.05], selectors)
                print(f"[{time.perf_counter() - start:.0f} s]", flush=True)
        print(load_info())
    print(f"Total time: {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
