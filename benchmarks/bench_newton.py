"""MTIFInfluence(method="newton") against first order and brute-force refits: accuracy and cost.

Run:  python benchmarks/bench_newton.py            (~3-6 min on 2 busy cores)
      python benchmarks/bench_newton.py --quick    (K = 10, 100 only; chemical at one alpha)

(a) Exactness on MultitaskRidge (quadratic objective): max relative difference
    (max |a - b| / max |b|) of ``influence_`` / ``task_influence_`` against
    ``retrain.loo_effects`` / ``loto_effects``, for first order and for one Newton step.
    Expected: newton ~1e-14 (round-off), first order O(1e-2..1e-1).
(b) MultitaskLogistic on ../shared/data/chemical (10 tasks, 180 features; 20% of every task held
    out for validation, random_state=0): for every target task k, the Spearman correlation of
    the off-diagonal column ``task_influence_[:, k]`` with the same column of ``loto_effects``
    (paper Table 1 protocol), for first order and for 1 and 2 Newton steps; plus the max
    relative error of the diagonal (a task's effect on itself, head refitted) and of the whole
    matrix against LOTO.
(c) Cost, side by side in one run, on make_multitask_classification with d=30, 100 training
    and 25 validation rows per task (q = p = 31), K in {10, 100, 500}, one BLAS thread:
    - task level only: first order (objective, Hessian blocks, arrow factor, K target solves,
      task gradients, effects) vs newton with one step (objective, blocks, factor, one p x p
      Cholesky per task, the K new parameter points, the validation loss at each) vs LOTO
      refits (``loto_effects``; above ``--loto-max-tasks`` extrapolated as K x the median of
      ``--loto-sample`` single-task refits through ``retrain._refit_losses``, "extrap.");
    - rows and tasks: ``MTIFInfluence(FrozenEstimator(model), method=...).fit`` vs LOO refits
      (always extrapolated: n_train x the median of 5 single-row refits).
    Every time is a median over repeats after one warm-up call (refits: one call).
"""

import argparse
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
from _common import fmt_ratio, fmt_time, load_info, machine_info, median_time, print_table
from scipy.stats import spearmanr
from sklearn.frozen import FrozenEstimator
from threadpoolctl import threadpool_limits

from mtif_sklearn import MTIFInfluence, MultitaskLogistic, MultitaskRidge
from mtif_sklearn.backend import ArrayBackend
from mtif_sklearn.datasets import (
    load_chemical,
    make_multitask_classification,
    make_multitask_regression,
)
from mtif_sklearn.influence._first_order import FirstOrder
from mtif_sklearn.influence._newton import Newton
from mtif_sklearn.influence._problem import InfluenceProblem
from mtif_sklearn.retrain import _refit_losses, loo_effects, loto_effects

CHEMICAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chemical"
D, ROWS, VAL_ROWS = 30, 100, 25


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def per_task_spearman(estimate, truth):
    K = truth.shape[0]
    return np.array([spearmanr(estimate[np.arange(K) != k, k],
                               truth[np.arange(K) != k, k]).statistic for k in range(K)])


# -- (a) ------------------------------------------------------------------------------------------
def part_a():
    X, y, t = make_multitask_regression(n_tasks=10, n_samples_per_task=60, n_features=10,
                                        delta=0.5, random_state=0)
    Xv, yv, tv = make_multitask_regression(n_tasks=10, n_samples_per_task=20, n_features=10,
                                           delta=0.5, random_state=1)
    estimator = MultitaskRidge(alpha=0.1)
    loo = loo_effects(estimator, X, y, Xv, yv, tasks=t, tasks_val=tv)
    loto = loto_effects(estimator, X, y, Xv, yv, tasks=t, tasks_val=tv)
    rows = []
    for method in ("first_order", "newton"):
        inf = MTIFInfluence(estimator, method=method).fit(X, y, tasks=t, X_val=Xv, y_val=yv,
                                                          tasks_val=tv)
        rows.append([method, f"{rel(inf.influence_, loo):.2e}",
                     f"{rel(inf.task_influence_, loto):.2e}"])
    print_table(["method", "rows vs LOO", "tasks vs LOTO"], rows,
                title="(a) MultitaskRidge, K=10, d=10, 60 rows/task: max relative difference "
                      "to refits")


# -- (b) ------------------------------------------------------------------------------------------
def part_b(alphas):
    if not CHEMICAL.is_dir():
        print(f"\n(b) skipped: {CHEMICAL} not found")
        return
    X, y, t = load_chemical(CHEMICAL)
    variants = [("first_order", 1), ("newton", 1), ("newton", 2)]
    for alpha in alphas:
        estimator = MultitaskLogistic(alpha=alpha)
        results, times = {}, {}
        for method, steps in variants:
            start = time.perf_counter()
            inf = MTIFInfluence(estimator, method=method, newton_steps=steps,
                                random_state=0).fit(X, y, tasks=t)
            times[method, steps] = time.perf_counter() - start
            results[method, steps] = inf.task_influence_
        tr, va = inf.train_indices_, inf.val_indices_
        start = time.perf_counter()
        truth = loto_effects(estimator, X[tr], y[tr], X[va], y[va], tasks=t[tr],
                             tasks_val=t[va])
        loto_time = time.perf_counter() - start
        spearman = {key: per_task_spearman(value, truth) for key, value in results.items()}
        headers = ["target task"] + [f"{m} ({s})" if m == "newton" else m for m, s in variants]
        rows = [[str(label)] + [f"{spearman[key][k]:.2f}" for key in variants]
                for k, label in enumerate(inf.tasks_)]
        rows.append(["**mean**"] + [f"**{spearman[key].mean():.3f}**" for key in variants])
        rows.append(["diagonal: max rel. error"]
                    + [f"{rel(np.diag(results[key]), np.diag(truth)):.3f}" for key in variants])
        rows.append(["matrix: max rel. error"]
                    + [f"{rel(results[key], truth):.3f}" for key in variants])
        rows.append(["time (fit + rows + tasks)"] + [fmt_time(times[key]) for key in variants])
        print_table(headers, rows,
                    title=f"(b) chemical, MultitaskLogistic(alpha={alpha}): Spearman vs LOTO "
                          f"per target task (LOTO refits: {fmt_time(loto_time)}; n_train="
                          f"{tr.size}, n_val={va.size})")


# -- (c) ------------------------------------------------------------------------------------------
def make_data(K):
    X, y, t = make_multitask_classification(n_tasks=K, n_samples_per_task=ROWS + VAL_ROWS,
                                            n_features=D, delta=0.5, random_state=0)
    val = np.arange(len(y)) % (ROWS + VAL_ROWS) >= ROWS
    return X[~val], y[~val], t[~val], X[val], y[val], t[val]


def influence_problem(model, data):
    """The influence problem of a fitted model (objectives, Hessian blocks, arrow factor and
    the K validation-gradient solves), as MTIFInfluence builds it."""
    X, y, t, Xv, yv, tv = data
    return InfluenceProblem(model, model._mtif_data(X, y, t, reset=False),
                            model._mtif_data(Xv, yv, tv, reset=False), damping=0.0,
                            backend=ArrayBackend("numpy"))


def task_level_first_order(model, data):
    return FirstOrder(influence_problem(model, data)).task_effects(np.arange(len(model.tasks_)))


def task_level_newton(model, data):
    return Newton(influence_problem(model, data), 1).task_effects(np.arange(len(model.tasks_)))


def refit_time(model, data, n_sample, *, task):
    X, y, t, Xv, yv, tv = data
    train = model._mtif_data(X, y, t, reset=False)
    val = model._mtif_data(Xv, yv, tv, reset=False)
    options = {"task_weight_sum": model.task_weight_sum_, "init": model._mtif_warm_start()}
    times = []
    for i in range(n_sample):
        rows, dropped = train, ()
        if task:
            dropped = [i]
        else:
            reduced = train.sample_weight.copy()
            reduced[i * (len(y) // n_sample)] = 0.0
            rows = train.with_weights(reduced)
        start = time.perf_counter()
        _refit_losses(MultitaskLogistic(alpha=0.1), rows, val, dropped_tasks=dropped, **options)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def influence_fit(model, data, method):
    X, y, t, Xv, yv, tv = data
    return MTIFInfluence(FrozenEstimator(model), method=method).fit(
        X, y, tasks=t, X_val=Xv, y_val=yv, tasks_val=tv)


def part_c(sizes, args):
    rows_task, rows_all = [], []
    for K in sizes:
        data = make_data(K)
        X, y, t, Xv, yv, tv = data
        model = MultitaskLogistic(alpha=0.1).fit(X, y, tasks=t)
        repeats = 5 if K <= 100 else 2
        first_t, first = median_time(partial(task_level_first_order, model, data), repeats)
        newton_t, newton = median_time(partial(task_level_newton, model, data), repeats)
        if K <= args.loto_max_tasks:
            start = time.perf_counter()
            truth = loto_effects(MultitaskLogistic(alpha=0.1), X, y, Xv, yv, tasks=t,
                                 tasks_val=tv)
            loto_t, loto_note = time.perf_counter() - start, ""
            off = ~np.eye(K, dtype=bool)
            accuracy = (f"{np.corrcoef(first[off], truth[off])[0, 1]:.3f} / "
                        f"{np.corrcoef(newton[off], truth[off])[0, 1]:.3f}")
        else:
            loto_t = K * refit_time(model, data, args.loto_sample, task=True)
            loto_note, accuracy = " (extrap.)", "-"
        rows_task.append([K, fmt_time(first_t), fmt_time(newton_t),
                          fmt_ratio(newton_t / first_t), fmt_time(loto_t) + loto_note,
                          fmt_ratio(loto_t / newton_t), accuracy])
        all_repeats = 3 if K <= 100 else 1
        first_all, _ = median_time(partial(influence_fit, model, data, "first_order"),
                                   all_repeats)
        newton_all, _ = median_time(partial(influence_fit, model, data, "newton"), all_repeats,
                                    warmup=1 if K <= 100 else 0)
        loo_t = len(y) * refit_time(model, data, 5, task=False)
        rows_all.append([K, len(y), fmt_time(first_all), fmt_time(newton_all),
                         fmt_ratio(newton_all / first_all), fmt_time(loo_t) + " (extrap.)",
                         fmt_ratio(loo_t / newton_all)])
    print_table(["K", "first order", "newton (1 step)", "newton / first", "LOTO refits",
                 "LOTO / newton", "Pearson vs LOTO (first / newton)"], rows_task,
                title="(c) task level only, MultitaskLogistic, d=30, 100+25 rows/task")
    print_table(["K", "n_train", "first order", "newton (1 step)", "newton / first",
                 "LOO refits", "LOO / newton"], rows_all,
                title="(c) rows + tasks: MTIFInfluence(FrozenEstimator(model), method=...).fit")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--parts", default="abc")
    parser.add_argument("--loto-max-tasks", type=int, default=100)
    parser.add_argument("--loto-sample", type=int, default=5)
    args = parser.parse_args(argv)
    print(machine_info())
    print(load_info())
    warnings.simplefilter("ignore", UserWarning)
    with threadpool_limits(limits=1, user_api="blas"):
        if "a" in args.parts:
            part_a()
        if "b" in args.parts:
            part_b((0.1,) if args.quick else (0.01, 0.1))
        if "c" in args.parts:
            part_c((10, 100) if args.quick else (10, 100, 500), args)
    print(load_info())
    return 0


if __name__ == "__main__":
    sys.exit(main())
