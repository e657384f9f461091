"""Scale: fit + task influence + full data-level influence at large K, d and n, bounded memory.

Run:  python benchmarks/bench_scale.py            (~5-8 min on 2 cores)
      python benchmarks/bench_scale.py --quick    (small sizes, ~1 min)

Every configuration runs in a FRESH subprocess (``python bench_scale.py --worker ...``), so its
peak resident memory (``VmHWM`` of ``/proc/self/status``, the high-water mark of the process)
is not contaminated by earlier runs. Each worker:

1. draws data with NumPy (not timed): x ~ N(0, 1), per-task coefficients = shared + task
   noise, y = x . beta_k + noise; ``rows`` training and ``val`` validation rows per task;
2. times ``MultitaskRidge(alpha=0.1, shared_alpha=1e-3).fit`` (one arrow block solve);
3. times ``MTIFInfluence(FrozenEstimator(model)).fit(X, y, tasks=t, X_val=..., ...)`` with the
   default ``batch_size`` (rows in chunks of ~2**22 numbers): the objective, Hessian blocks,
   arrow factorisation, the K validation-gradient solves, the task level ``task_influence_``
   (K x K) and the full data level ``influence_`` (n_train x K). The data-level part
   (``MTIFInfluence._row_effects``) is timed separately by wrapping that method.

The output ``influence_`` is n_train x K float64 and must fit in memory: at K = 10,000 tasks we
use 8 training rows per task (n_train = 80,000: the output is 6.4 GB; 2 validation rows per
task). At n = 1,000,000 with K = 100 it is 0.8 GB. Peak RSS is reported next to the arrays any
computation must hold ("inherent": X and X_val, the model's intercept-augmented copy of X, and
the n x K and K x K outputs); "working" = peak - inherent - the interpreter's baseline RSS
after imports.

Scaling: three sweeps, each varying one of K (rows per task fixed, so n grows with K), d (K, n
fixed) and n (K, d fixed). For each, the exponent b of t ~ size^b is fitted by least squares on
the log-log points, next to the exponent of the theoretical cost of the arrow algorithm

    C = sum_k q^3 + p^3 + n (q + p)         (issue #8; q = p = d + 1 for the linear models)

and of the complete count C + n q^2 + n p K: forming the task blocks (n q^2) and the n x K output
written by the data-level step (each row's reduced gradient, length p, times the p x K matrix of
shared solves). Timings are
single runs (these are minutes-long configurations), on a shared machine: read exponents to
within about +-0.2.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from _common import load_info, machine_info, print_table

FULL = {
    # (K, d, rows, val): the two headline configurations
    "headline": [(10_000, 20, 8, 2), (100, 50, 10_000, 1_000)],
    "K": [(1_250, 20, 8, 2), (2_500, 20, 8, 2), (5_000, 20, 8, 2), (10_000, 20, 8, 2)],
    "d": [(500, 10, 40, 10), (500, 20, 40, 10), (500, 40, 40, 10), (500, 80, 40, 10),
          (500, 160, 40, 10)],
    "n": [(100, 50, 1_250, 1_000), (100, 50, 2_500, 1_000), (100, 50, 5_000, 1_000),
          (100, 50, 10_000, 1_000)],
}
QUICK = {
    "headline": [(2_000, 20, 8, 2), (100, 50, 1_000, 100)],
    "K": [(500, 20, 8, 2), (1_000, 20, 8, 2), (2_000, 20, 8, 2)],
    "d": [(100, 10, 40, 10), (100, 20, 40, 10), (100, 40, 40, 10), (100, 80, 40, 10)],
    "n": [(100, 50, 250, 100), (100, 50, 500, 100), (100, 50, 1_000, 100)],
}


def _status_kib(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def make_data(K, d, rows, val, seed=0):
    """Training and validation rows of a related-task linear regression (rows grouped by task)."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=d)
    coef = shared + 0.5 * rng.normal(size=(K, d))

    def draw(per_task):
        tasks = np.repeat(np.arange(K), per_task)
        X = rng.standard_normal((K * per_task, d))
        y = np.einsum("ij,ij->i", X, coef[tasks]) + rng.standard_normal(K * per_task)
        return X, y, tasks

    return draw(rows) + draw(val)


def worker(K, d, rows, val):
    """One configuration in this (fresh) process; prints one JSON line."""
    import warnings

    from sklearn.frozen import FrozenEstimator

    from mtif_sklearn import MTIFInfluence, MultitaskRidge

    base_kib = _status_kib("VmRSS")  # interpreter + imports
    X, y, t, Xv, yv, tv = make_data(K, d, rows, val)
    row_seconds = []
    original = MTIFInfluence._row_effects

    def timed_row_effects(self, *args, **kwargs):
        start = time.perf_counter()
        out = original(self, *args, **kwargs)
        row_seconds.append(time.perf_counter() - start)
        return out

    MTIFInfluence._row_effects = timed_row_effects
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        model = MultitaskRidge(alpha=0.1, shared_alpha=1e-3).fit(X, y, tasks=t)
        t_fit = time.perf_counter() - start
        start = time.perf_counter()
        inf = MTIFInfluence(FrozenEstimator(model)).fit(X, y, tasks=t, X_val=Xv, y_val=yv,
                                                        tasks_val=tv)
        t_inf = time.perf_counter() - start
    assert inf.influence_.shape == (K * rows, K) and inf.task_influence_.shape == (K, K)
    assert all(np.isfinite(inf.influence_[i:i + 1000]).all() for i in range(0, K * rows, 1000))
    n = K * rows
    inherent = (X.nbytes + Xv.nbytes + n * (d + 1) * 8 + inf.influence_.nbytes
                + inf.task_influence_.nbytes) / 2**30
    print(json.dumps({
        "K": K, "d": d, "rows": rows, "val": val, "n": n,
        "fit": t_fit, "influence": t_inf, "rows_part": sum(row_seconds),
        "peak_gib": _status_kib("VmHWM") / 2**20, "base_gib": base_kib / 2**20,
        "inherent_gib": inherent, "output_gib": inf.influence_.nbytes / 2**30,
    }), flush=True)


def run_config(config, timeout):
    K, d, rows, val = config
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(K), str(d), str(rows),
           str(val)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        print(f"configuration {config} failed (rc {proc.returncode}):\n{proc.stderr[-2000:]}",
              flush=True)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def theory(r, output=False):
    q = p = r["d"] + 1
    cost = r["K"] * q**3 + p**3 + r["n"] * (q + p)
    # + forming the task blocks (n q^2) and the n x K output (n p K)
    return cost + (r["n"] * q**2 + r["n"] * p * r["K"] if output else 0)


def slope(x, y):
    x, y = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    return float(np.polyfit(x, y, 1)[0])


def gib(value):
    return f"{value:.2f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (~1 min)")
    parser.add_argument("--worker", nargs=4, type=int, metavar=("K", "D", "ROWS", "VAL"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=300, help="seconds per configuration")
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    plan = QUICK if args.quick else FULL
    print(f"# bench_scale{' --quick' if args.quick else ''}: MultitaskRidge fit + MTIFInfluence "
          "(task level + full data level), one fresh process per configuration")
    print(f"machine: {machine_info()}")
    print(f"at start: {load_info()}")
    print("times: single runs; peak = VmHWM of the worker process; GiB = 2**30 bytes")
    results = {}
    wall = time.perf_counter()
    for name, configs in plan.items():
        results[name] = [r for r in (run_config(c, args.timeout) for c in configs) if r]

    header = ["K", "d", "rows/task (train+val)", "n_train", "fit", "influence (all)",
              "of which data level", "output n x K", "inherent", "peak RSS", "working"]

    def row(r):
        working = r["peak_gib"] - r["inherent_gib"] - r["base_gib"]
        return [f"{r['K']:,}", r["d"], f"{r['rows']}+{r['val']}", f"{r['n']:,}",
                f"{r['fit']:.2f} s", f"{r['influence']:.2f} s", f"{r['rows_part']:.2f} s",
                f"{gib(r['output_gib'])} GiB", f"{gib(r['inherent_gib'])} GiB",
                f"{gib(r['peak_gib'])} GiB", f"{gib(working)} GiB"]

    print_table(header, [row(r) for r in results["headline"]], title="Headline configurations")
    print("inherent = X + X_val + the model's (n x (d+1)) augmented copy of X + the n x K and "
          "K x K outputs; "
          "working = peak - inherent - interpreter baseline "
          f"({results['headline'][0]['base_gib']:.2f} GiB)." if results["headline"] else "")
    for name in ("K", "d", "n"):
        print_table(header, [row(r) for r in results[name]], title=f"Sweep over {name}")

    fitted = []
    for name in ("K", "d", "n"):
        rs = results[name]
        if len(rs) < 2:
            continue
        x = [r[name] for r in rs]
        fitted.append([
            name, f"{min(x):,}-{max(x):,}",
            f"{slope(x, [r['fit'] for r in rs]):.2f}",
            f"{slope(x, [r['influence'] - r['rows_part'] for r in rs]):.2f}",
            f"{slope(x, [r['rows_part'] for r in rs]):.2f}",
            f"{slope(x, [r['influence'] for r in rs]):.2f}",
            f"{slope(x, [theory(r) for r in rs]):.2f}",
            f"{slope(x, [theory(r, output=True) for r in rs]):.2f}",
            f"{slope(x, [r['peak_gib'] - r['base_gib'] for r in rs]):.2f}",
        ])
    print_table(["varied", "range", "fit", "influence minus data level", "data level",
                 "influence (all)", "theory C", "theory C + n q^2 + n p K",
                 "peak RSS (minus base)"],
                fitted, title="Fitted exponents b in time ~ size^b (log-log least squares)")
    print("theory C = K q^3 + p^3 + n (q + p) with q = p = d + 1 (issue #8's formula); the "
          "complete count adds forming the task blocks (n q^2) and the n x K output of the data "
          "level (each row's reduced gradient times the p x K shared solves: n p K). The sweep "
          "over K keeps rows per task fixed, so n grows with K and the output with K^2.")
    print(f"\ntotal wall time {time.perf_counter() - wall:.0f} s; at end: {load_info()}")


if __name__ == "__main__":
    main()
