"""MTIFInfluence against a dense-Hessian influence computation, LOTO refits, and the model fit.

Run:  python benchmarks/bench_influence.py            (K = 10, 100, 500; ~3-5 min on 2 cores)
      python benchmarks/bench_influence.py --quick    (K = 10, 100; fewer repeats)
      python benchmarks/bench_influence.py --blas-threads 1   (single-threaded BLAS, both sides)
      python benchmarks/bench_influence.py --parts e  (only the GPU comparison, on a CUDA machine)

Data: ``make_multitask_regression`` / ``make_multitask_classification`` with d=30 features,
100 training rows per task and 25 validation rows per task (given as ``X_val``), K tasks, so
q = d + 1 = 31 parameters per block and P = (K + 1) q parameters in all. Every time is a median
over repeats after one warm-up call (except where the table says 0 warm-up); every ratio is
measured side by side in the same run.

(a) ``MTIFInfluence(FrozenEstimator(model)).fit_transform`` (data level ``influence_`` and task
    level ``task_influence_``; arrow solve through task blocks + Schur complement) against the
    same numbers computed the way a generic influence library does it: the dense P x P Hessian
    (``arrow_to_dense`` of the model's own Hessian blocks), ``scipy.linalg.cho_factor`` /
    ``cho_solve`` of H^-1 V for the K validation-gradient columns V, then dense per-row (and
    per-task) gradient vectors of length P times H^-1 V, in row chunks. Both timings include
    everything each needs (objective / Hessian / gradients, factorisation, solve, effects); the
    model fit is excluded from both. The max relative difference between the two results
    (max |a - b| / max |b|) is a correctness check. The dense baseline is skipped where H would
    exceed ``--dense-max-gb`` or its time, extrapolated cubically from the largest run with
    P >= 2000 that took >= 0.2 s, would exceed ``--dense-max-seconds``. Expected: >= 50x at
    K = 100, growing with K.
(b) ``MTIFInfluence(model).fit_transform`` (fits the model, then all data- and task-level
    effects) against ``mtif_sklearn.retrain.loto_effects`` (K + 1 refits, n_jobs=1), which gives
    only the task-level matrix. Measured at K <= ``--loto-max-tasks`` (100); above, the LOTO time
    is extrapolated as fit + K x (median time of ``--loto-sample`` single-task refits, timed
    through ``mtif_sklearn.retrain._refit_losses``, the function loto_effects runs per task;
    marked "extrap."). The
    Pearson correlation of the off-diagonal entries of the two K x K matrices is shown as a
    sanity check (first-order estimate vs exact refit). Expected: >= K/2 times faster.
(c) ``MTIFInfluence(model).fit_transform`` time / ``model.fit`` time (and the influence part
    alone, ``FrozenEstimator``, / fit). Expected: <= 3.
(d) Peak NumPy memory (``tracemalloc``) of ``MTIFInfluence(FrozenEstimator(model)).fit`` with
    a fixed ``batch_size`` as the rows per task grow 10x (K = 100), and with the default
    ``batch_size=None``. Reported next to the O(n) arrays every computation must hold (the
    intercept-augmented copy of X inside the objective and the n x K output), and the peak
    minus those ("working"). Expected: "working" stays bounded with a fixed batch_size.
(e) backend="cupy" vs backend="numpy" at K=2000, d=100, 200 rows per task (ridge, influence
    only). Skipped with a message when CuPy or a CUDA device is missing.
"""

import argparse
import sys
import time
import tracemalloc
import warnings
from contextlib import nullcontext
from functools import partial

import numpy as np
import scipy.linalg
from _common import fmt_ratio, fmt_time, load_info, machine_info, median_time, print_table
from sklearn.frozen import FrozenEstimator
from threadpoolctl import threadpool_limits

from mtif_sklearn import MTIFInfluence, MultitaskLogistic, MultitaskRidge
from mtif_sklearn.datasets import make_multitask_classification, make_multitask_regression
from mtif_sklearn.influence import arrow_to_dense
from mtif_sklearn.retrain import loto_effects

D = 30
ROWS_PER_TASK = 100
VAL_ROWS_PER_TASK = 25
ALPHA = 0.1
SHARED_ALPHA = 1e-3
DENSE_CHUNK_NUMBERS = 2**24  # rows of dense per-row gradients per chunk: ~128 MB

MODELS = {
    "ridge": (MultitaskRidge, make_multitask_regression),
    "logistic": (MultitaskLogistic, make_multitask_classification),
}


# -- data and models ----------------------------------------------------------------------------
def make_data(kind, n_tasks, n_features=D, rows=ROWS_PER_TASK, val_rows=VAL_ROWS_PER_TASK,
              seed=0):
    """Training and validation rows: the first ``rows`` of every task train, the rest validate."""
    _, generator = MODELS[kind]
    X, y, tasks = generator(n_tasks=n_tasks, n_samples_per_task=rows + val_rows,
                            n_features=n_features, random_state=seed)
    assert np.all(np.diff(tasks) >= 0), "generator rows are expected grouped by task"
    position = np.arange(len(y)) % (rows + val_rows)
    train, val = position < rows, position >= rows
    return X[train], y[train], tasks[train], X[val], y[val], tasks[val]


def new_model(kind):
    estimator, _ = MODELS[kind]
    return estimator(alpha=ALPHA, shared_alpha=SHARED_ALPHA)


def fit_model(kind, data):
    X, y, t = data[:3]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return new_model(kind).fit(X, y, tasks=t)


def mtif(estimator, data, **params):
    """MTIFInfluence fit_transform on (X, y) with the given validation rows."""
    X, y, t, Xv, yv, tv = data
    inf = MTIFInfluence(estimator, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inf.fit_transform(X, y, tasks=t, X_val=Xv, y_val=yv, tasks_val=tv)
    return inf


# -- the dense baseline -------------------------------------------------------------------------
def dense_influence(model, data):
    """Data- and task-level influence with a dense P x P Hessian, as a generic library does.

    Uses only the model's protocol (objective, Hessian blocks, per-row gradients) and treats
    the parameter vector as one flat vector of length P = K q + p: dense H, Cholesky, H^-1 V for
    the K validation-gradient columns, dense per-row gradient vectors times H^-1 V.
    Returns (influence (n, K), task_influence (K, K)).
    """
    X, y, t, Xv, yv, tv = data
    train = model._mtif_objective(model._mtif_data(X, y, t, reset=False))
    val = model._mtif_objective(model._mtif_data(Xv, yv, tv, reset=False))
    params = model._mtif_params()
    task_blocks, coupling, shared_block = train.hessian_blocks(params)
    n_tasks, q, _ = task_blocks.shape
    p = shared_block.shape[0]
    size = n_tasks * q + p
    hessian = arrow_to_dense(task_blocks, coupling, shared_block)
    # H is symmetric; its transpose is Fortran-ordered, so LAPACK factors it in place.
    factor = scipy.linalg.cho_factor(hessian.T, lower=True, overwrite_a=True,
                                     check_finite=False)

    # V: column k is the gradient of V_k (mean validation loss of task k) w.r.t. all P params.
    counts = np.bincount(val.codes, minlength=n_tasks).astype(np.float64)
    val_task, val_shared = val.row_gradients(params)
    rhs = np.zeros((size, n_tasks))
    task_mean = val.task_sums(val_task) / counts[:, None]
    for k in range(n_tasks):
        rhs[k * q:(k + 1) * q, k] = task_mean[k]
    if val_shared is not None:
        rhs[n_tasks * q:, :] = (val.task_sums(val_shared) / counts[:, None]).T
    solved = scipy.linalg.cho_solve(factor, rhs, overwrite_b=True, check_finite=False)

    # Data level: dense gradient vector of every (weighted) training row, in chunks.
    n_rows = len(train.codes)
    chunk = max(1, DENSE_CHUNK_NUMBERS // size)
    influence = np.empty((n_rows, n_tasks))
    for start in range(0, n_rows, chunk):
        rows = slice(start, min(start + chunk, n_rows))
        grad_task, grad_shared = train.row_gradients(params, rows)
        weight = train.row_weights[rows][:, None]
        codes = train.codes[rows]
        m = len(codes)
        grads = np.zeros((m, size))
        columns = codes[:, None] * q + np.arange(q)[None, :]
        grads[np.arange(m)[:, None], columns] = grad_task * weight
        if grad_shared is not None:
            grads[:, n_tasks * q:] = grad_shared * weight
        influence[rows] = grads @ solved

    # Task level: gradient of each task's term (its rows and its regulariser).
    task_grad, task_shared = train.task_gradients(params)
    grads = np.zeros((n_tasks, size))
    for k in range(n_tasks):
        grads[k, k * q:(k + 1) * q] = task_grad[k]
    if task_shared is not None:
        grads[:, n_tasks * q:] = task_shared
    return influence, grads @ solved


def max_rel_diff(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.nanmax(np.abs(a - b)) / np.nanmax(np.abs(b)))


# -- the parts ----------------------------------------------------------------------------------
def part_a(kinds, sizes, repeats, args):
    rows, notes = [], []
    for kind in kinds:
        rate = None  # seconds per K**3 of the largest dense run so far
        for K in sizes:
            r = repeats(K)
            data = make_data(kind, K)
            model = fit_model(kind, data)
            frozen = FrozenEstimator(model)
            t_ours, inf = median_time(partial(mtif, frozen, data), r)
            size = (K + 1) * (D + 1)
            gb = size**2 * 8 / 1e9
            predicted = None if rate is None else rate * K**3
            t_dense, diff_data, diff_task, dense_r = float("nan"), None, None, 0
            if gb > args.dense_max_gb:
                note = f"skipped: dense H is {size}x{size} = {gb:.1f} GB > {args.dense_max_gb:g} GB"
                if predicted is not None:
                    note += f"; cubic extrapolation ~{fmt_time(predicted)}"
            elif predicted is not None and predicted > args.dense_max_seconds:
                note = (f"skipped: predicted ~{fmt_time(predicted)} > "
                        f"{args.dense_max_seconds:g} s")
            else:
                # Long dense runs: one timed call, and no warm-up above 60 s predicted.
                dense_r = r if predicted is None or predicted < 5 else 1
                warmup = 0 if predicted is not None and predicted > 60 else 1
                t_dense, (dense_data, dense_task) = median_time(
                    partial(dense_influence, model, data), dense_r, warmup=warmup)
                # Small runs are overhead- and noise-bound: no basis for a cubic extrapolation.
                if size >= 2000 and t_dense >= 0.2:
                    rate = t_dense / K**3
                diff_data = max_rel_diff(inf.influence_, dense_data)
                diff_task = max_rel_diff(inf.task_influence_, dense_task)
                note = f"ran ({gb:.2f} GB matrix{'' if warmup else ', 0 warm-up'})"
            notes.append(f"{kind} K={K}: dense {note}")
            rows.append([
                kind, K, size, fmt_time(t_ours), fmt_time(t_dense), fmt_ratio(t_dense / t_ours),
                "-" if diff_data is None else f"{diff_data:.1e}",
                "-" if diff_task is None else f"{diff_task:.1e}", f"{r}/{dense_r}",
            ])
            print(f"  (a) done {kind} K={K}", file=sys.stderr, flush=True)
    print_table(
        ["model", "K", "params P", "MTIFInfluence", "dense Hessian", "dense / ours",
         "max rel diff influence_", "max rel diff task_influence_", "repeats ours/dense"],
        rows, title="(a) MTIFInfluence vs dense-Hessian influence (model fit excluded from both)")
    print("Expected: dense / ours >= 50x at K=100 and growing with K. max rel diff = "
          "max|MTIF - dense| / max|dense| (a correctness check).")
    for note in notes:
        print(f"- {note}")


def refit_time(kind, model, data, n_sample):
    """Median time of one LOTO refit (what loto_effects runs for each task), n_sample tasks."""
    from mtif_sklearn.retrain import _refit_losses

    X, y, t, Xv, yv, tv = data
    train = model._mtif_data(X, y, t, reset=False)
    val = model._mtif_data(Xv, yv, tv, reset=False)
    options = {"task_weight_sum": model.task_weight_sum_, "init": model._mtif_warm_start()}
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for task in range(min(n_sample, len(model.tasks_))):
            start = time.perf_counter()
            _refit_losses(new_model(kind), train, val, dropped_tasks=[task], **options)
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def part_bc(sizes, repeats, args, fit_times, kinds_b, kinds_c, show_c=True):
    """(b) and (c) share the timings of model.fit and MTIFInfluence(model).fit_transform."""
    rows_b, rows_c = [], []
    for kind in kinds_c:
        for K in sizes:
            r = repeats(K)
            data = make_data(kind, K)
            t_fit, model = median_time(partial(fit_model, kind, data), r)
            t_total, inf = median_time(partial(mtif, new_model(kind), data), r)
            t_frozen, _ = median_time(partial(mtif, FrozenEstimator(model), data), r)
            fit_times[(kind, K)] = t_fit
            rows_c.append([kind, K, fmt_time(t_fit), fmt_time(t_total),
                           fmt_ratio(t_total / t_fit), fmt_time(t_frozen),
                           fmt_ratio(t_frozen / t_fit), r])
            if kind in kinds_b:
                X, y, t, Xv, yv, tv = data
                if K <= args.loto_max_tasks:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        t_loto, loto = median_time(partial(
                            loto_effects, new_model(kind), X, y, Xv, yv, tasks=t,
                            tasks_val=tv, n_jobs=1), 1 if K > 10 else r, warmup=0)
                    off = ~np.eye(K, dtype=bool)
                    corr = np.corrcoef(loto[off], inf.task_influence_[off])[0, 1]
                    how, corr_text = "measured", f"{corr:.3f}"
                else:
                    t_refit = refit_time(kind, model, data, args.loto_sample)
                    t_loto = t_fit + K * t_refit
                    how = f"extrap.: fit + K x refit ({args.loto_sample} timed)"
                    corr_text = "-"
                speedup = t_loto / t_total
                rows_b.append([kind, K, fmt_time(t_total), fmt_time(t_loto), how,
                               fmt_ratio(speedup), fmt_ratio(K / 2),
                               "met" if speedup >= K / 2 else "NOT met", corr_text])
            print(f"  (b/c) done {kind} K={K}", file=sys.stderr, flush=True)
    if rows_b:
        print_table(
            ["model", "K", "MTIFInfluence (incl. fit)", "loto_effects", "LOTO time",
             "LOTO / ours", "expected >= K/2", "", "corr off-diag"],
            rows_b, title="(b) MTIFInfluence(model).fit_transform vs loto_effects brute force")
        print("MTIF computes data- AND task-level effects; loto_effects only the K x K task "
              "level (n_jobs=1 for both). corr off-diag: Pearson correlation of the off-diagonal "
              "entries of task_influence_ and the LOTO matrix.")
    if not show_c:
        return
    print_table(
        ["model", "K", "model.fit", "MTIFInfluence(model).fit_transform", "total / fit",
         "influence only (Frozen)", "influence / fit", "repeats"],
        rows_c, title="(c) MTIFInfluence fit+transform time relative to the model fit")
    print("Expected: total / fit <= 3. 'total' fits the model inside MTIFInfluence; "
          "'influence only' wraps the fitted model in FrozenEstimator.")


def _peak_bytes(func):
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    func()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak


def part_d(args):
    K = 100
    batch = args.batch_size
    mb = 2.0**-20
    rows = []
    for per_task in (ROWS_PER_TASK, 10 * ROWS_PER_TASK):
        data = make_data("ridge", K, rows=per_task)
        model = fit_model("ridge", data)
        n = len(data[1])
        fixed = n * K * 8  # the influence_ output (the intercept column is implicit: no copy)
        for bs in (batch, None):
            peak = _peak_bytes(partial(mtif, FrozenEstimator(model), data, batch_size=bs))
            rows.append([K, per_task, n, "None (default)" if bs is None else bs,
                         f"{peak * mb:.1f}", f"{fixed * mb:.1f}", f"{(peak - fixed) * mb:.1f}"])
        print(f"  (d) done rows/task={per_task}", file=sys.stderr, flush=True)
    print_table(
        ["K", "rows/task", "n train rows", "batch_size", "peak MiB", "output MiB",
         "working MiB (peak - those)"],
        rows, title="(d) Peak NumPy memory (tracemalloc) of MTIFInfluence(Frozen ridge).fit")
    print(f"Expected: with batch_size={batch} the working memory stays bounded as rows grow "
          "10x. The default batch_size=None picks chunks of ~2**22 numbers (32 MiB) of per-row "
          "gradients and effects, so it grows with n until that cap.")


def part_e(args):
    title = "(e) backend='cupy' vs backend='numpy' (ridge, influence only)"
    try:
        import cupy

        n_devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # ImportError, CUDA driver/runtime errors
        print(f"\n### {title}\n\nskipped: CuPy / CUDA not available ({type(exc).__name__}: "
              f"{exc}).")
        return
    if n_devices == 0:
        print(f"\n### {title}\n\nskipped: no CUDA device.")
        return
    K, d, per_task = args.gpu_tasks, 100, 200
    data = make_data("ridge", K, n_features=d, rows=per_task, val_rows=per_task // 4)
    model = fit_model("ridge", data)
    frozen = FrozenEstimator(model)

    def on_gpu():
        inf = mtif(frozen, data, backend="cupy")
        cupy.cuda.Device().synchronize()
        return inf

    r = args.gpu_repeats
    t_gpu, inf_gpu = median_time(on_gpu, r)
    t_cpu, inf_cpu = median_time(partial(mtif, frozen, data, backend="numpy"), r)
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    name = name.decode() if isinstance(name, bytes) else name
    print_table(
        ["K", "d", "rows/task", "numpy", "cupy", "numpy / cupy", "max rel diff influence_",
         "max rel diff task_influence_", "repeats"],
        [[K, d, per_task, fmt_time(t_cpu), fmt_time(t_gpu), fmt_ratio(t_cpu / t_gpu),
          f"{max_rel_diff(inf_gpu.influence_, inf_cpu.influence_):.1e}",
          f"{max_rel_diff(inf_gpu.task_influence_, inf_cpu.task_influence_):.1e}", r]],
        title=f"{title} on {name}")
    print("Backends must agree to 1e-8 relative (float64); cupy timings include the host -> "
          "device copies and the results coming back as NumPy.")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="K = 10, 100 with fewer repeats")
    parser.add_argument("--tasks", type=int, nargs="+", default=None,
                        help="task counts K (default 10 100 500; --quick: 10 100)")
    parser.add_argument("--parts", default="abcde", help="which parts to run (default abcde)")
    parser.add_argument("--dense-max-gb", type=float, default=4.0)
    parser.add_argument("--dense-max-seconds", type=float, default=600.0)
    parser.add_argument("--loto-max-tasks", type=int, default=100)
    parser.add_argument("--loto-sample", type=int, default=5,
                        help="refits timed to extrapolate LOTO above --loto-max-tasks")
    parser.add_argument("--batch-size", type=int, default=1000, help="fixed batch_size of (d)")
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="limit BLAS threads for the whole run (threadpoolctl; default: "
                             "unchanged). On a shared, loaded machine 1 avoids BLAS threads "
                             "waiting for each other")
    parser.add_argument("--gpu-tasks", type=int, default=2000)
    parser.add_argument("--gpu-repeats", type=int, default=3)
    args = parser.parse_args(argv)
    sizes = args.tasks or ([10, 100] if args.quick else [10, 100, 500])

    def repeats(K):
        if args.quick:
            return 3 if K <= 10 else 1
        return 7 if K <= 10 else 5 if K <= 100 else 3

    print(f"# bench_influence: d={D}, {ROWS_PER_TASK} training + {VAL_ROWS_PER_TASK} validation "
          "rows per task")
    print(f"machine: {machine_info()}")
    print(f"at start: {load_info()}")
    print(f"BLAS threads: {args.blas_threads or 'unchanged (library default)'}")
    print("times: median over repeats after one warm-up call; ratios = baseline / package "
          "(> 1: the package is faster) unless the column says otherwise")
    limits = (threadpool_limits(limits=args.blas_threads, user_api="blas")
              if args.blas_threads else nullcontext())
    with limits:
        run_parts(args, sizes, repeats)


def run_parts(args, sizes, repeats):
    start = time.perf_counter()
    if "a" in args.parts:
        part_a(["ridge", "logistic"], sizes, repeats, args)
    if "b" in args.parts or "c" in args.parts:
        part_bc(sizes, repeats, args, {}, ["ridge"] if "b" in args.parts else [],
                ["ridge", "logistic"] if "c" in args.parts else ["ridge"],
                show_c="c" in args.parts)
    if "d" in args.parts:
        part_d(args)
    if "e" in args.parts:
        part_e(args)
    print(f"\ntotal benchmark wall time: {time.perf_counter() - start:.0f} s")
    print(f"at end: {load_info()}")


if __name__ == "__main__":
    main()
