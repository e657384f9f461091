"""Fit time of MultitaskRidge / MultitaskLogistic against dense and per-task baselines.

Run:  python benchmarks/bench_fit.py            (K = 10, 100, 1000; a few minutes on 2 cores)
      python benchmarks/bench_fit.py --quick    (K = 10, 100; fewer repeats)

Data: ``make_multitask_regression`` / ``make_multitask_classification`` with d=50 features and
100 rows per task, K tasks (so n = 100 K rows, q = d + 1 = 51 parameters per block).

Compared, side by side in one run (medians over repeats, one warm-up call each):

* ``MultitaskRidge.fit`` (arrow-structured solve) against

  (a) a dense solve of the full normal equations of the *same* objective: the dense
      ``(K q + q) x (K q + q)`` Hessian is built from the data with NumPy (independently of the
      package) and solved with ``scipy.linalg.solve(assume_a="pos")``; skipped where the matrix
      would exceed ``--dense-max-gb`` (8 GB) or the solve is predicted (cubic extrapolation
      from the largest size run) to take longer than ``--dense-max-seconds`` (120 s). Its
      coefficients are compared to the package's (max abs diff), which also checks the fit;
  (b) K separate ``sklearn.linear_model.Ridge`` fits (a different, unshared model: a speed
      reference for "one small fit per task").

* ``MultitaskLogistic.fit`` (Newton with arrow solves, tol=1e-8) against K separate
  ``sklearn.linear_model.LogisticRegression(solver="lbfgs")`` fits (default tol=1e-4; again an
  unshared model, a speed reference).
"""

import argparse
import sys
import warnings
from functools import partial

import numpy as np
import scipy.linalg
from _common import fmt_ratio, fmt_time, load_info, machine_info, median_time, print_table
from sklearn.linear_model import LogisticRegression, Ridge

from mtif_sklearn import MultitaskLogistic, MultitaskRidge
from mtif_sklearn.datasets import make_multitask_classification, make_multitask_regression

D = 50
ROWS_PER_TASK = 100
ALPHA = 0.1
SHARED_ALPHA = 1e-3


def task_slices(tasks, n_tasks):
    """Contiguous row slices per task (the generators emit rows grouped by task)."""
    starts = np.searchsorted(tasks, np.arange(n_tasks + 1))
    assert np.all(np.diff(tasks) >= 0)
    return [slice(starts[k], starts[k + 1]) for k in range(n_tasks)]


def dense_ridge(X, y, slices, alpha=ALPHA, shared_alpha=SHARED_ALPHA):
    """Solve the normal equations of MultitaskRidge's objective with one dense matrix.

    Objective (fit_intercept=True, unit weights): sum_k [ (1/n_k) ||y_k - X_k beta_k||^2
    + alpha ||beta_k - g||^2 ] + shared_alpha ||gamma||^2 (the shared intercept unpenalised),
    with X_k augmented by a column of ones. Returns (coef (K, q), shared (q,)).
    """
    n_tasks = len(slices)
    q = X.shape[1] + 1
    size = (n_tasks + 1) * q
    H = np.zeros((size, size))
    b = np.zeros(size)
    eye = np.eye(q)
    shared = slice(n_tasks * q, size)
    for k, rows in enumerate(slices):
        Xk = np.hstack([X[rows], np.ones((rows.stop - rows.start, 1))])
        n_k = Xk.shape[0]
        block = slice(k * q, (k + 1) * q)
        H[block, block] = (2.0 / n_k) * (Xk.T @ Xk) + 2.0 * alpha * eye
        H[block, shared] = -2.0 * alpha * eye
        H[shared, block] = -2.0 * alpha * eye
        b[block] = (2.0 / n_k) * (Xk.T @ y[rows])
    mask = np.ones(q)
    mask[-1] = 0.0
    H[shared, shared] = 2.0 * alpha * n_tasks * eye + 2.0 * shared_alpha * np.diag(mask)
    sol = scipy.linalg.solve(H, b, assume_a="pos", overwrite_a=True, overwrite_b=True,
                             check_finite=False)
    return sol[: n_tasks * q].reshape(n_tasks, q), sol[n_tasks * q:]


def sklearn_ridge_per_task(X, y, slices):
    return [Ridge(alpha=1.0).fit(X[rows], y[rows]) for rows in slices]


def sklearn_logistic_per_task(X, y, slices):
    return [LogisticRegression(solver="lbfgs", max_iter=1000).fit(X[rows], y[rows])
            for rows in slices]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="K = 10, 100 with fewer repeats")
    parser.add_argument("--tasks", type=int, nargs="+", default=None,
                        help="task counts K (default 10 100 1000; --quick: 10 100)")
    parser.add_argument("--dense-max-gb", type=float, default=8.0)
    parser.add_argument("--dense-max-seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    sizes = args.tasks or ([10, 100] if args.quick else [10, 100, 1000])

    def repeats(K):
        if args.quick:
            return 3 if K <= 10 else 1
        return 7 if K <= 10 else 5 if K <= 100 else 3

    print(f"# bench_fit: d={D}, {ROWS_PER_TASK} rows per task")
    print(f"machine: {machine_info()}")
    print(f"at start: {load_info()}")
    print("times: median over repeats after one warm-up call; ratios = baseline / package "
          "(> 1: the package is faster)")

    ridge_rows, logistic_rows, notes = [], [], []
    dense_rate = None  # seconds per (size**3) from the largest dense solve run so far
    base_ridge = base_logistic = None
    for K in sizes:
        r = repeats(K)
        X, y, tasks = make_multitask_regression(n_tasks=K, n_samples_per_task=ROWS_PER_TASK,
                                                n_features=D, random_state=0)
        slices = task_slices(tasks, K)
        t_ridge, model = median_time(
            partial(MultitaskRidge(alpha=ALPHA, shared_alpha=SHARED_ALPHA).fit, X, y, tasks=tasks),
            r)
        t_skr, _ = median_time(partial(sklearn_ridge_per_task, X, y, slices), r)

        size = (K + 1) * (D + 1)
        dense_gb = size**2 * 8 / 1e9
        predicted = None if dense_rate is None else dense_rate * size**3
        if dense_gb > args.dense_max_gb:
            t_dense, diff, dense_note = float("nan"), None, (
                f"skipped: dense H is {size}x{size} = {dense_gb:.1f} GB > {args.dense_max_gb:g} GB")
            if predicted is not None:
                dense_note += f"; cubic extrapolation: ~{fmt_time(predicted)}"
        elif predicted is not None and predicted > args.dense_max_seconds:
            t_dense, diff, dense_note = float("nan"), None, (
                f"skipped: predicted ~{fmt_time(predicted)} > {args.dense_max_seconds:g} s")
        else:
            dense_r = max(1, r if size < 3000 else min(r, 3))
            t_dense, (coef, shared) = median_time(partial(dense_ridge, X, y, slices),
                                                  dense_r)
            dense_rate = t_dense / size**3
            ours = np.hstack([model.coef_, model.intercept_[:, None]])
            ours_shared = np.append(model.shared_coef_, model.shared_intercept_)
            diff = max(np.abs(ours - coef).max(), np.abs(ours_shared - shared).max())
            dense_note = f"ran ({dense_gb:.2f} GB matrix)"
        base_ridge = base_ridge or (K, t_ridge)
        ridge_rows.append([
            K, size, fmt_time(t_ridge), fmt_time(t_dense), fmt_ratio(t_dense / t_ridge),
            "-" if diff is None else f"{diff:.1e}", fmt_time(t_skr), fmt_ratio(t_skr / t_ridge),
            fmt_ratio((t_ridge / base_ridge[1]) / (K / base_ridge[0])), r,
        ])
        notes.append(f"K={K}: dense {dense_note}")

        Xc, yc, tc = make_multitask_classification(n_tasks=K, n_samples_per_task=ROWS_PER_TASK,
                                                   n_features=D, random_state=0)
        slices_c = task_slices(tc, K)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_log, lmodel = median_time(
                partial(MultitaskLogistic(alpha=ALPHA, shared_alpha=SHARED_ALPHA).fit,
                        Xc, yc, tasks=tc), r)
            t_skl, _ = median_time(
                partial(sklearn_logistic_per_task, Xc, yc, slices_c), r)
        base_logistic = base_logistic or (K, t_log)
        logistic_rows.append([
            K, fmt_time(t_log), lmodel.n_iter_, fmt_time(t_skl), fmt_ratio(t_log / t_skl),
            fmt_ratio((t_log / base_logistic[1]) / (K / base_logistic[0])), r,
        ])
        print(f"  done K={K}", file=sys.stderr, flush=True)

    print_table(
        ["K", "params", "MultitaskRidge.fit", "dense solve", "dense / ours",
         "max abs coef diff", "K sklearn Ridge", "K Ridge / ours", "scaling vs linear", "repeats"],
        ridge_rows, title="MultitaskRidge.fit vs dense normal equations and K sklearn Ridge fits")
    print("scaling vs linear = (t(K) / t(K0)) / (K / K0) with K0 the smallest K: 1.00x is "
          "exactly linear in K, above 1 is worse than linear.")
    for note in notes:
        print(f"- {note}")
    print_table(
        ["K", "MultitaskLogistic.fit", "Newton iters", "K sklearn LogisticRegression",
         "ours / sklearn", "scaling vs linear", "repeats"],
        logistic_rows,
        title="MultitaskLogistic.fit vs K sklearn LogisticRegression(lbfgs) fits")
    print("ours / sklearn < 1: the multitask fit is faster than K separate fits "
          "(expected: at most 3x slower).")
    print(f"at end: {load_info()}")


if __name__ == "__main__":
    main()
