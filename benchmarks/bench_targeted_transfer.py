"""Targeted transfer: rows of OTHER tasks that hurt a small target task (the case only MTIF sees).

Run:  python benchmarks/bench_targeted_transfer.py           (5 seeds; 3 for chemical)
      python benchmarks/bench_targeted_transfer.py --quick   (2 seeds, fewer variants)

A target task has 30 training rows. Some source tasks hold a sub-population (10-30% of their
rows) whose relationship conflicts with the target's but is consistent within its own task (a
shifted sub-population, not label noise): its own task fits it well, so a loss ranking or
cleanlab cannot see it, but it pulls the shared parameters away from the target.

1. Synthetic regression (MultitaskRidge): features x_c (every row), x_r (a "region" block
   present in every row of the 6 conflicting sources and in half the target's rows) and x_s
   (a "sub-population" block, present in half the target's rows and in the sub-population of
   each conflicting source, where its coefficients are the NEGATIVE of the target's). The 3
   other sources have neither block. Dropping the conflicting sources whole loses the region
   information the target needs; dropping their sub-population keeps it.
2. The same as classification (MultitaskLogistic; logits of the same form).
3. School (semi-synthetic): a large school is the target (30 training rows, the rest held
   out); in every source school where 10-30% of pupils are in the first VR-band column
   (feature 7), those pupils' scores are shifted by +20 points (a school-specific
   sub-population effect its own school model absorbs, but which pulls the shared VR-band
   coefficient away from the target's).
4. Chemical (semi-synthetic): one assay is the target (30 training rows, its test file held
   out); in 5 of the 9 source assays, the molecules with one fingerprint bit (10-30% of
   them) all get the label the target gives such molecules less often.

Methods, each followed by a refit of the same model on the kept rows, scored by the target's
held-out loss (MSE / log loss) against keeping every row:
- ``NTS``: ``NegativeTransferSelector(target_tasks=[target])`` with its defaults, and variants.
- ``random``: as many random source rows as the cap allows.
- ``highest loss``: :func:`mtif_sklearn.selection.highest_loss_rows` (cross-fitted, source rows).
- ``cleanlab``: :func:`mtif_sklearn.selection.cleanlab_label_issues` on cross-fitted per-task
  ``LogisticRegression`` probabilities (classification only; needs cleanlab).
- ``drop source tasks``: TaskSelector's rule without its guard (its ``drop_matrix``): drop every
  source task l with cross-fitted ``task_influence_[l, target] < 0``
  (``MTIFInfluence(cv=5)``) and refit without them (eq. 11, ``_mtif_refit(dropped_tasks=)``).
- ``oracle``: remove exactly the conflicting rows (what is achievable at best).

BLAS is limited to one thread (shared 2-core machine).
"""

import argparse
import sys
import time

import numpy as np
from _common import DATA, load_info, machine_info, mean_loss, print_table, refit_without
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from mtif_sklearn import MTIFInfluence, MultitaskLogistic, MultitaskRidge, NegativeTransferSelector
from mtif_sklearn.datasets import load_chemical, load_school
from mtif_sklearn.selection import cleanlab_label_issues, highest_loss_rows
from mtif_sklearn.selection._tasks_selector import drop_matrix

N_TARGET = 30


# --- problems ---------------------------------------------------------------------------------
def _synthetic(seed, classification):
    """(X, y, tasks, conflicting mask, X_test, y_test); task 0 is the target."""
    rng = np.random.default_rng([seed, 16])
    d_c, d_r, d_s = 5, 5, 3
    scale = 1.0
    w = rng.standard_normal(d_c) * scale
    v = rng.standard_normal(d_r) * scale
    u = rng.standard_normal(d_s) * 1.5 * scale

    def rows(n, w_k, p_region, p_sub, u_k):
        X_c = rng.standard_normal((n, d_c))
        X_r = rng.standard_normal((n, d_r)) * (rng.random(n) < p_region)[:, None]
        sub = rng.random(n) < p_sub
        X_s = rng.standard_normal((n, d_s)) * sub[:, None]
        signal = X_c @ w_k + X_r @ v + X_s @ u_k
        if classification:
            y = (rng.random(n) < 1 / (1 + np.exp(-signal))).astype(np.int64)
        else:
            y = signal + rng.standard_normal(n)
        return np.hstack([X_c, X_r, X_s]), y, sub

    w_target = w + 0.3 * rng.standard_normal(d_c)
    parts = [rows(N_TARGET, w_target, 0.5, 0.5, u) + (0,)]
    for k in range(1, 10):
        w_k = w + 0.3 * rng.standard_normal(d_c)
        if k <= 6:  # conflicting sources: region everywhere, a conflicting sub-population
            parts.append(rows(200, w_k, 1.0, rng.uniform(0.1, 0.3), -u) + (k,))
        else:
            parts.append(rows(200, w_k, 0.0, 0.0, u) + (k,))
    X = np.vstack([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    tasks = np.concatenate([np.full(len(p[1]), p[3]) for p in parts])
    conflicting = np.concatenate([p[2] if p[3] > 0 else np.zeros(len(p[1]), bool)
                                  for p in parts])
    X_test, y_test, _ = rows(2000, w_target, 0.5, 0.5, u)
    return X, y, tasks, conflicting, X_test, y_test


def synthetic_regression(seed):
    X, y, tasks, conflicting, X_test, y_test = _synthetic(seed, classification=False)
    return dict(X=X, y=y, tasks=tasks, conflicting=conflicting, X_test=X_test, y_test=y_test,
                target=0, model=MultitaskRidge(alpha=1.0))


def synthetic_classification(seed):
    X, y, tasks, conflicting, X_test, y_test = _synthetic(seed, classification=True)
    return dict(X=X, y=y, tasks=tasks, conflicting=conflicting, X_test=X_test, y_test=y_test,
                target=0, model=MultitaskLogistic(alpha=0.1))


def school(seed):
    X, y, tasks = load_school(data_home=DATA)
    rng = np.random.default_rng([seed, 17])
    labels, counts = np.unique(tasks, return_counts=True)
    target = labels[np.argsort(counts)[::-1][seed % 5]]  # one of the 5 largest schools
    target_rows = rng.permutation(np.flatnonzero(tasks == target))
    train_target, test_target = target_rows[:N_TARGET], target_rows[N_TARGET:]
    marker = X[:, 7] == 1
    y = y.astype(np.float64).copy()
    conflicting = np.zeros(len(y), dtype=bool)
    for task in labels:
        rows = tasks == task
        if task != target and 0.1 <= marker[rows].mean() <= 0.3:
            conflicting |= rows & marker
    y[conflicting] += 20.0
    keep = np.concatenate([np.flatnonzero(tasks != target), train_target])
    return dict(X=X[keep], y=y[keep], tasks=tasks[keep], conflicting=conflicting[keep],
                X_test=X[test_target], y_test=y[test_target], target=target,
                model=MultitaskRidge(alpha=1.0))


def chemical(seed):
    X, y, tasks = load_chemical(data_home=DATA, subset="train")
    X_te, y_te, tasks_te = load_chemical(data_home=DATA, subset="test")
    rng = np.random.default_rng([seed, 18])
    labels = np.unique(tasks)
    target = labels[seed % len(labels)]
    prevalence = X.mean(axis=0)
    bits = np.flatnonzero((prevalence >= 0.1) & (prevalence <= 0.3))
    target_all = np.concatenate([y[tasks == target], y_te[tasks_te == target]])
    marked_all = np.concatenate([X[tasks == target], X_te[tasks_te == target]])
    # the bit whose molecules the target labels most one-sidedly
    lean = [abs(target_all[marked_all[:, b] == 1].mean() - 0.5) for b in bits]
    bit = bits[int(np.argmax(lean))]
    minority = int(target_all[marked_all[:, bit] == 1].mean() < 0.5)  # the rarer label
    sources = rng.choice([t for t in labels if t != target], size=5, replace=False)
    conflicting = np.isin(tasks, sources) & (X[:, bit] == 1)
    y = y.copy()
    y[conflicting] = minority
    target_rows = rng.permutation(np.flatnonzero(tasks == target))
    keep = np.concatenate([np.flatnonzero(tasks != target), target_rows[:N_TARGET]])
    X_test = np.vstack([X[target_rows[N_TARGET:]], X_te[tasks_te == target]])
    y_test = np.concatenate([y[target_rows[N_TARGET:]], y_te[tasks_te == target]])
    return dict(X=X[keep], y=y[keep], tasks=tasks[keep], conflicting=conflicting[keep],
                X_test=X_test, y_test=y_test, target=target,
                model=MultitaskLogistic(alpha=0.01))


# --- methods ----------------------------------------------------------------------------------
def target_loss(model, problem):
    X_test, y_test = problem["X_test"], problem["y_test"]
    tasks_test = np.full(len(y_test), problem["target"])
    logistic = hasattr(model, "predict_proba")
    prediction = (model.predict_proba(X_test, tasks=tasks_test)[:, 1] if logistic
                  else model.predict(X_test, tasks=tasks_test))
    return mean_loss(y_test, prediction, logistic)


def drop_source_tasks(problem, seed):
    """TaskSelector's rule for one target (emulated): drop the sources with a negative
    cross-fitted task score on the target, refit without them (eq. 11)."""
    model, target = problem["model"], problem["target"]
    X, y, tasks = problem["X"], problem["y"], problem["tasks"]
    influence = MTIFInfluence(clone(model), cv=5, store_influence=False,
                              random_state=seed).fit(X, y, tasks=tasks)
    column = influence.tasks_.tolist().index(target)
    drops = drop_matrix(influence.task_influence_, target_codes=[column])
    dropped = np.flatnonzero(drops[:, column])
    data = clone(model)._mtif_data(X, y, tasks, reset=True)
    refit = clone(model)._mtif_refit(data, dropped_tasks=dropped)
    removed = np.flatnonzero(np.isin(tasks, influence.tasks_[dropped]))
    return refit, removed


def run_methods(problem, seed, fraction, variants, classification, fixed):
    X, y, tasks, target = problem["X"], problem["y"], problem["tasks"], problem["target"]
    model = problem["model"]
    n_cap = int(np.floor(fraction * len(y) + 1e-9))
    sources = np.flatnonzero(tasks != target)
    results = {}

    def record(name, fitted, removed, seconds):
        results[name] = (target_loss(fitted, problem), np.asarray(removed, dtype=int), seconds)

    start = time.perf_counter()
    record("no removal", clone(model).fit(X, y, tasks=tasks), [], time.perf_counter() - start)
    for name, params in variants.items():
        start = time.perf_counter()
        selector = NegativeTransferSelector(model, fraction=fraction, target_tasks=[target],
                                            random_state=seed, **params).fit(X, y, tasks=tasks)
        record(name, selector, selector.removed_, time.perf_counter() - start)
    rng = np.random.default_rng([seed, 99])
    start = time.perf_counter()
    random_rows = rng.choice(sources, size=n_cap, replace=False)
    record("random", refit_without(problem, random_rows), random_rows,
           time.perf_counter() - start)
    start = time.perf_counter()
    rows = highest_loss_rows(model, X, y, tasks=tasks, fraction=fraction,
                             exclude_tasks=[target], random_state=seed)
    record("highest loss (cross-fitted)", refit_without(problem, rows), rows,
           time.perf_counter() - start)
    if classification:
        try:
            start = time.perf_counter()
            rows = cleanlab_label_issues(LogisticRegression(max_iter=1000), X, y, tasks=tasks,
                                         fraction=fraction, exclude_tasks=[target],
                                         random_state=seed)
            record("cleanlab (per-task LR)", refit_without(problem, rows), rows,
                   time.perf_counter() - start)
        except ImportError:
            pass
    if fixed:  # methods without a fraction: once per seed
        start = time.perf_counter()
        fitted, removed = drop_source_tasks(problem, seed)
        record("drop source tasks (TaskSelector rule)", fitted, removed,
               time.perf_counter() - start)
        start = time.perf_counter()
        oracle = np.flatnonzero(problem["conflicting"])
        record("oracle: the conflicting rows", refit_without(problem, oracle), oracle,
               time.perf_counter() - start)
    return results


def bench(title, make, seeds, fractions, variants, classification):
    per = {}
    for seed in seeds:
        problem = make(seed)
        for number, fraction in enumerate(fractions):
            results = run_methods(problem, seed, fraction, variants, classification,
                                  fixed=number == 0)
            base = results["no removal"][0]
            conflicting = problem["conflicting"]
            for name, (loss, removed, seconds) in results.items():
                if name == "no removal":
                    continue
                fixed = name.startswith(("drop source", "oracle"))
                key = (name, "-" if fixed else fraction)
                entry = per.setdefault(key, {name: [] for name in (
                    "change", "relative", "base", "precision", "recall", "n", "time")})
                entry["change"].append(loss - base)
                entry["relative"].append((loss - base) / base)
                entry["base"].append(base)
                entry["precision"].append(conflicting[removed].mean() if removed.size
                                          else np.nan)
                entry["recall"].append(conflicting[removed].sum() / max(conflicting.sum(), 1))
                entry["n"].append(removed.size)
                entry["time"].append(seconds)
    n_seeds = len(seeds)
    base = np.mean(next(iter(per.values()))["base"])
    rows = []
    for (name, fraction), entry in per.items():
        change = np.array(entry["change"])
        precision = np.array(entry["precision"])
        rows.append([
            name, fraction, f"{change.mean():+.4f} +- {change.std(ddof=1):.4f}",
            f"{100 * np.mean(entry['relative']):+.1f}%",
            f"{np.sum(change < 0)}/{n_seeds}",
            f"{np.nanmean(precision):.2f}" if np.isfinite(precision).any() else "-",
            f"{np.mean(entry['recall']):.2f}", f"{np.mean(entry['n']):.0f}",
            f"{np.mean(entry['time']):.2f} s"])
    print_table(["method", "fraction", "target held-out loss change (mean +- sd)", "relative",
                 "seeds won", "precision", "recall", "rows removed", "time"], rows,
                title=f"{title}: {n_seeds} seeds, target loss with every row {base:.4f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, fewer variants")
    parser.add_argument("--parts", default="1234", help="which problems to run (default 1234)")
    args = parser.parse_args(argv)
    seeds = list(range(2 if args.quick else 5))
    variants = {
        "NTS (defaults)": {},
        "NTS n_rounds=1": {"n_rounds": 1},
        "NTS guard=False": {"guard": False},
        "NTS guard=0 (margin 0 se)": {"guard": 0.0},
        "NTS include_target_rows=True": {"include_target_rows": True},
        "NTS max_task_fraction=None": {"max_task_fraction": None},
        "NTS task_weights='equal'": {"task_weights": "equal"},
    }
    small = {k: v for k, v in variants.items()
             if k in ("NTS (defaults)", "NTS n_rounds=1", "NTS guard=0 (margin 0 se)")}
    start = time.perf_counter()
    with threadpool_limits(1):
        print(f"Machine: {machine_info()}")
        print(load_info())
        if "1" in args.parts:
            bench("1. Synthetic regression, MultitaskRidge(alpha=1)", synthetic_regression,
                  seeds, [0.05, 0.1], small if args.quick else variants, False)
            print(f"[{time.perf_counter() - start:.0f} s]")
        if "2" in args.parts:
            bench("2. Synthetic classification, MultitaskLogistic(alpha=0.1)",
                  synthetic_classification, seeds, [0.05, 0.1],
                  small if args.quick else variants, True)
            print(f"[{time.perf_counter() - start:.0f} s]")
        if "3" in args.parts:
            bench("3. School, semi-synthetic (+20 points for VR-band-column-7 pupils in the "
                  "sources where they are 10-30%), MultitaskRidge(alpha=1)", school, seeds,
                  [0.05, 0.1], small, False)
            print(f"[{time.perf_counter() - start:.0f} s]")
        if "4" in args.parts:
            bench("4. Chemical, semi-synthetic (one bit's molecules relabelled in 5 of 9 "
                  "sources), MultitaskLogistic(alpha=0.01)", chemical, seeds[:3], [0.05],
                  small, True)
            print(f"[{time.perf_counter() - start:.0f} s]")
        print(load_info())
    print(f"Total time: {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
