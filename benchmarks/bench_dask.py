"""Dask: fit, row scores and selection on a data set larger than the run's memory budget.

Run:  python benchmarks/bench_dask.py compare          (in memory vs dask at a size that fits both)
      prlimit --as=4000000000 python benchmarks/bench_dask.py big --rows 50000000
                                                       (a lazily generated data set, ~20 min)
      python benchmarks/bench_dask.py big --quick      (the same steps at 2 million rows)

``big`` generates its rows lazily, block by block, from per-block seeds (``dask.array``
``blockwise``): x ~ N(0, 1) (d features), a task drawn uniformly from K, y = x . beta_k + noise
with beta_k = shared + task noise. The data set never exists in memory: every pass over it
generates its blocks again, so a "pass" costs (generation + the work on each block). Under
``prlimit --as`` every process of the run (the client, and the dask workers it starts) is
capped at that much address space; the data are far larger than all of them together. It runs
on a ``distributed.LocalCluster`` (``--workers`` processes, one thread each) and reports:

- for each step (task labels, ridge fit, MTIFInfluence fit, row_scores, harmful_rows, the
  selector): wall time, the number of passes over the blocks (scheduler runs), time per pass,
  and time per pass over the time of a pass that only generates the blocks (the generation
  bound; for data read from storage it would be the read bound);
- the peak resident memory of every worker and of the client (``ru_maxrss``);
- a sanity check: the fitted shared coefficients against the generating ones.

``compare`` fits the same in-memory data with NumPy and with dask (``from_array``; threaded
scheduler, one process): ridge fit, MTIFInfluence with validation rows + row_scores, and
NegativeTransferSelector(cv=3); it reports the time ratio (medians of 3 runs after a warm-up;
the selector once) and checks that the answers agree.
"""

import argparse
import os
import resource
import sys
import time

import dask
import dask.array as da
import numpy as np
from _common import fmt_ratio, fmt_time, load_info, machine_info, median_time, print_table

from mtif_sklearn import MTIFInfluence, MultitaskRidge, NegativeTransferSelector


def generating_coefficients(n_tasks, n_features, seed):
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=n_features)
    return shared, shared + 0.5 * rng.normal(size=(n_tasks, n_features))


def lazy_rows(n_rows, n_features, n_tasks, chunk, seed):
    """(X, y, tasks) as dask arrays generated block by block (never held in memory)."""
    _, coef = generating_coefficients(n_tasks, n_features, seed=0)
    sizes = [chunk] * (n_rows // chunk) + ([n_rows % chunk] if n_rows % chunk else [])

    def block(index, coef):
        b = int(index[0])
        rng = np.random.default_rng([seed, b])
        codes = rng.integers(n_tasks, size=sizes[b])
        X = rng.standard_normal((sizes[b], n_features))
        y = np.einsum("ij,ij->i", X, coef[codes]) + rng.standard_normal(sizes[b])
        return np.column_stack([X, y, codes])

    blocks = da.arange(len(sizes), chunks=1)
    rows = da.blockwise(block, "ij", blocks, "i", coef=dask.delayed(coef, pure=True),
                        new_axes={"j": n_features + 2}, adjust_chunks={"i": tuple(sizes)},
                        align_arrays=False, dtype=np.float64, meta=np.empty((0, 0)))
    return rows[:, :n_features], rows[:, n_features], rows[:, n_features + 1].astype(np.int64)


class Passes:
    """A scheduler that counts its runs (each one pass over the blocks it needs)."""

    def __init__(self, get):
        self.get, self.count = get, 0

    def __call__(self, dsk, keys, **kwargs):
        self.count += 1
        return self.get(dsk, keys, **kwargs)


def peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_big(args):
    from distributed import Client, LocalCluster

    print(machine_info())
    print(load_info())
    cap = resource.getrlimit(resource.RLIMIT_AS)[0]
    print("address-space cap per process:",
          "none" if cap == resource.RLIM_INFINITY else f"{cap / 2**30:.2f} GiB")
    n, d, K, chunk = args.rows, args.features, args.tasks, args.chunk
    print(f"rows {n:,}, features {d}, tasks {K:,}, blocks of {chunk:,} rows "
          f"({-(-n // chunk)} blocks); X, y and tasks take {n * (d + 2) * 8 / 2**30:.1f} GiB; "
          f"{args.workers} worker processes x 1 thread")
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                           memory_limit=args.memory_limit, dashboard_address=None,
                           silence_logs=40)
    client = Client(cluster, set_as_default=False)
    client.run(lambda: __import__("mtif_sklearn.selection"))
    passes = Passes(client.get)
    X, y, tasks = lazy_rows(n, d, K, chunk, seed=1)
    X_val, y_val, tasks_val = lazy_rows(args.val_rows, d, K, chunk, seed=2)
    steps = []

    def step(name, func):
        before, start = passes.count, time.perf_counter()
        result = func()
        wall = time.perf_counter() - start
        steps.append((name, wall, passes.count - before))
        print(f"  {name}: {fmt_time(wall)}, {passes.count - before} passes "
              f"(load {os.getloadavg()[0]:.2f})", flush=True)
        return result

    with dask.config.set(scheduler=passes):
        step("generation only (X.sum, y.sum, tasks.max)",
             lambda: dask.compute(X.sum(axis=0), y.sum(), tasks.max()))
        model = step("MultitaskRidge.fit (labels pass + fit)",
                     lambda: MultitaskRidge(alpha=0.1).fit(X, y, tasks=tasks))
        influence = step("MTIFInfluence.fit (X_val given)", lambda: MTIFInfluence(
            MultitaskRidge(alpha=0.1)).fit(X, y, tasks=tasks, X_val=X_val, y_val=y_val,
                                           tasks_val=tasks_val))
        scores = influence.row_scores()
        summary = step("row_scores (count < 0, min, 10 most negative)", lambda: dask.compute(
            (scores < 0).sum(), scores.min(), da.topk(scores, -10)))
        step("harmful_rows(5, target_tasks=first 5)",
             lambda: influence.harmful_rows(5, target_tasks=list(range(5))))
        selector = step(f"NegativeTransferSelector(fraction={args.fraction}, cv={args.cv})",
                        lambda: NegativeTransferSelector(
                            MultitaskRidge(alpha=0.1), fraction=args.fraction, cv=args.cv,
                            random_state=0).fit(X, y, tasks=tasks))
    shared, _ = generating_coefficients(K, d, seed=0)
    print(f"shared coefficients vs generating: max |error| "
          f"{np.abs(model.shared_coef_ - shared).max():.3g} (task noise 0.5: shrinkage "
          "towards the mean of the tasks)")
    print(f"row scores: {summary[0]:,} negative, min {summary[1]:.3g}; selector removed "
          f"{len(selector.removed_):,} rows ({selector.n_candidates_:,} had a negative score)")
    workers = client.run(peak_rss_gib)
    client.close()
    cluster.close()
    generation = steps[0][1] / max(steps[0][2], 1)
    rows = [(name, fmt_time(wall), passes_, fmt_time(wall / max(passes_, 1)),
             fmt_ratio(wall / max(passes_, 1) / generation)) for name, wall, passes_ in steps]
    print_table(["step", "wall", "passes", "per pass", "per pass / generation pass"], rows,
                title=f"dask on {n:,} generated rows (d={d}, K={K:,}), "
                      f"{args.workers} worker processes")
    print("peak resident memory: " + ", ".join(
        f"worker {i} {gib:.2f} GiB" for i, gib in enumerate(workers.values()))
        + f", client {peak_rss_gib():.2f} GiB")
    print(load_info())


def run_compare(args):
    from sklearn.utils import check_random_state

    print(machine_info())
    print(load_info())
    n, d, K = args.rows, args.features, args.tasks
    rng = check_random_state(0)
    _, coef = generating_coefficients(K, d, seed=0)
    tasks = rng.randint(K, size=n)
    X = rng.standard_normal((n, d))
    y = np.einsum("ij,ij->i", X, coef[tasks]) + rng.standard_normal(n)
    n_val = n // 10
    tasks_val = rng.randint(K, size=n_val)
    X_val = rng.standard_normal((n_val, d))
    y_val = np.einsum("ij,ij->i", X_val, coef[tasks_val]) + rng.standard_normal(n_val)
    chunk = args.chunk
    lazy = {name: da.from_array(v, chunks=(chunk,) + v.shape[1:])
            for name, v in [("X", X), ("y", y), ("tasks", tasks), ("X_val", X_val),
                            ("y_val", y_val), ("tasks_val", tasks_val)]}
    print(f"rows {n:,} (+{n_val:,} validation), features {d}, tasks {K}; dask: blocks of "
          f"{chunk:,} rows, threaded scheduler (one process, {os.cpu_count()} threads)")
    results = []

    def both(name, memory, lazy_run, check, repeats=3):
        # Median of `repeats` runs after one warm-up (the first dask call also starts the
        # thread pool); the selector runs once (its folds' run was the warm-up).
        warmup = 1 if repeats > 1 else 0
        t_memory, expected = median_time(memory, repeats, warmup=warmup)
        t_dask, got = median_time(lazy_run, repeats, warmup=warmup)
        agreement = check(got, expected)
        results.append((name, fmt_time(t_memory), fmt_time(t_dask), fmt_ratio(t_dask / t_memory),
                        f"{agreement:.1e}"))
        print(f"  {name}: memory {fmt_time(t_memory)}, dask {fmt_time(t_dask)} "
              f"(load {os.getloadavg()[0]:.2f})", flush=True)

    def relative(a, b):
        return float(np.nanmax(np.abs(a - b)) / np.nanmax(np.abs(b)))

    with dask.config.set(scheduler="threads"):
        both("MultitaskRidge.fit",
             lambda: MultitaskRidge(alpha=0.1).fit(X, y, tasks=tasks).coef_,
             lambda: MultitaskRidge(alpha=0.1).fit(lazy["X"], lazy["y"],
                                                  tasks=lazy["tasks"]).coef_, relative)
        # In memory without influence_ (n x K, which dask only computes when asked for): the
        # same work on both sides.
        both("MTIFInfluence(store_influence=False).fit + row_scores (X_val given)",
             lambda: MTIFInfluence(MultitaskRidge(alpha=0.1), store_influence=False).fit(
                 X, y, tasks=tasks, X_val=X_val, y_val=y_val, tasks_val=tasks_val).row_scores(),
             lambda: MTIFInfluence(MultitaskRidge(alpha=0.1)).fit(
                 lazy["X"], lazy["y"], tasks=lazy["tasks"], X_val=lazy["X_val"],
                 y_val=lazy["y_val"], tasks_val=lazy["tasks_val"]).row_scores().compute(),
             relative)
        selector = {}

        def selector_dask():
            selector["dask"] = NegativeTransferSelector(
                MultitaskRidge(alpha=0.1), fraction=0.02, cv=3, random_state=0).fit(
                lazy["X"], lazy["y"], tasks=lazy["tasks"])
            return selector["dask"]

        folds = [(a.compute(), b.compute()) for a, b in selector_dask().folds_]
        both("NegativeTransferSelector(fraction=0.02, cv=3) (same folds)",
             lambda: NegativeTransferSelector(MultitaskRidge(alpha=0.1), fraction=0.02,
                                              cv=folds).fit(X, y, tasks=tasks).removed_,
             lambda: selector_dask().removed_,
             lambda got, expected: float(not np.array_equal(got, expected)), repeats=1)
    print_table(["step", "in memory (NumPy)", "dask (threads)", "dask / memory",
                 "max relative difference"], results,
                title=f"In memory vs dask on {n:,} rows (d={d}, K={K}) that fit both")
    print("(selector row: 0 = the same removed rows)")
    print(load_info())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["compare", "big"])
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--val-rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=None)
    parser.add_argument("--chunk", type=int, default=500_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="3GB")
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--cv", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.what == "compare":
        args.rows = args.rows or (200_000 if args.quick else 1_000_000)
        args.tasks = args.tasks or 100
        args.chunk = min(args.chunk, 250_000)
        run_compare(args)
    else:
        args.rows = args.rows or (2_000_000 if args.quick else 50_000_000)
        args.tasks = args.tasks or (1_000 if args.quick else 10_000)
        args.val_rows = min(args.val_rows, args.rows // 10)
        run_big(args)


if __name__ == "__main__":
    sys.exit(main())
