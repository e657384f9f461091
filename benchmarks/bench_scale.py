"""Scale: fit, MTIFInfluence per stage against a roofline, the selector at 100,000 tasks, peers.

Run:  python benchmarks/bench_scale.py                 (every part; ~15-25 min on 2 busy cores)
      python benchmarks/bench_scale.py --quick         (small sizes, a few minutes)
      python benchmarks/bench_scale.py --parts fm      (some parts: r f m s p w, see below)

Every configuration runs in a FRESH subprocess (``bench_scale.py --worker KIND ...``): its peak
resident memory (``VmHWM``, the high-water mark of the process) is its own, and its first run
is a cold one (memory never touched by the process). Each worker also measures the machine's
roofline itself, in the same process, with ONE BLAS thread (what the package uses for blocks of
up to 512 parameters): GEMM GFLOP/s (a 1000 x 1000 product), the write rate into memory the
process already holds ("warm") and into newly allocated memory ("fresh": page faults included;
on a virtual machine the very first touch of memory can be much slower still), and the read
rate. Every table prints the BLAS library and its CPU kernel (NumPy 1.26's bundled OpenBLAS
runs a generic kernel on some CPUs, several times slower; NumPy 2.x's the right one).

Parts
-----
r  Roofline of this machine (the numbers the bounds below divide by).
f  Fit: ``MultitaskRidge.fit`` at K = 10,000 and 100,000 and ``MultitaskLogistic.fit`` at
   K = 10,000 (d = 20, 10 rows per task), median over repeats after a cold first run, against
   its bound: forming the task blocks (2 n q^2 flops), factoring them (K q^3: Cholesky and the
   inverse from it) and reading X, per Newton iteration.
m  ``MTIFInfluence(FrozenEstimator(model), store_influence=True).fit`` (task level K x K and
   the full data level n x K) per stage, each against its bound, cold (first run in the
   process) and steady (second run), at K = 10,000 (d = 20, 8 + 2 rows per task) and at
   n = 1,000,000 (K = 100, d = 50); and ``row_scores()`` against one pass over the data
   (``X @ v``). Stages are timed by wrapping the package's own functions:
   Hessian blocks (with the row pass at the fit), the arrow factor, the validation solves,
   the stationarity check of a frozen model, the task level, the data level (with its
   finiteness check); "other" is the rest of ``fit`` (validation, objectives, copies).
   Bounds (G = GEMM rate, W = fresh write rate, R = read rate; q = p = d + 1):
   Hessian max(2 n q^2 / G, 8 n d / R); factor (K q^3 + p^3) / G; validation solves
   8 n_val d / R; stationarity check 8 n d / R; task level max(2 K^2 p / G, 8 K^2 / W);
   data level max(2 n q K / G, 8 n K / W) + 8 n K / R (the check reads the output once).
s  ``NegativeTransferSelector(MultitaskRidge(), fraction=0.05, cv=5).fit`` (public API) at
   K = 2,000 / 10,000 / 100,000 (d = 20, 10 rows per task: n = 1,000,000 at K = 100,000),
   time and peak RSS, the address space capped (``--memory-cap-gib``, RLIMIT_AS) so that a
   configuration that does not fit fails with MemoryError instead of exhausting the machine;
   next to it the route the selector is moving to (``MTIFInfluence(cv=5,
   store_influence=False)``, ``row_scores()``, drop the 5% most negative, refit).
p  Peers on the same multitask ridge influence: pyDVL ``DirectInfluence`` and dattri's
   explicit influence (``IFAttributorExplicit``), optional extras of this benchmark (not of
   the package), run by ``--peers-python`` (a separate venv with torch, pydvl, dattri) at
   K = 20 / 50 / 100 / 200 (d = 10, 20 + 5 rows per task). The multitask ridge objective is
   written for them as one torch model whose mean per-row squared error is the objective
   (the tie and shared penalties as pseudo-rows with target 0, real rows scaled by their
   weight), so their dense Hessian is the package's up to a positive factor. Their answers
   are checked against MTIF by the smallest within-task Spearman correlation (each task's
   column over all rows and over the task's own rows): a peer returns
   grad l(train)^T H^-1 grad l(validation) per pair, whose mean over a task's validation rows
   is MTIF's effect times a positive factor per task.
w  Sweeps over K, d and n (fit + full influence) with fitted exponents (earlier issue 8).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np
from _common import blas_info, load_info, machine_info, print_table

HERE = os.path.dirname(os.path.abspath(__file__))

FULL = {
    "fit": [("ridge", 10_000), ("ridge", 100_000), ("logistic", 10_000)],
    "stages": [(10_000, 20, 8, 2), (100, 50, 10_000, 1_000)],
    "selector": [2_000, 10_000, 100_000],
    "peers": [20, 50, 100, 200],
    "K": [(1_250, 20, 8, 2), (2_500, 20, 8, 2), (5_000, 20, 8, 2), (10_000, 20, 8, 2)],
    "d": [(500, 10, 40, 10), (500, 20, 40, 10), (500, 40, 40, 10), (500, 80, 40, 10),
          (500, 160, 40, 10)],
    "n": [(100, 50, 1_250, 1_000), (100, 50, 2_500, 1_000), (100, 50, 5_000, 1_000),
          (100, 50, 10_000, 1_000)],
}
QUICK = {
    "fit": [("ridge", 2_000), ("logistic", 2_000)],
    "stages": [(2_000, 20, 8, 2), (100, 50, 1_000, 100)],
    "selector": [500, 2_000],
    "peers": [20, 50],
    "K": [(500, 20, 8, 2), (1_000, 20, 8, 2), (2_000, 20, 8, 2)],
    "d": [(100, 10, 40, 10), (100, 20, 40, 10), (100, 40, 40, 10), (100, 80, 40, 10)],
    "n": [(100, 50, 250, 100), (100, 50, 500, 100), (100, 50, 1_000, 100)],
}
ALPHA, SHARED_ALPHA = 0.1, 1e-3
SELECTOR_D, SELECTOR_ROWS = 20, 10
FIT_D, FIT_ROWS = 20, 10
PEER_D, PEER_ROWS, PEER_VAL = 10, 20, 5


# -- helpers ------------------------------------------------------------------------------------
def _status_gib(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**20
    return 0.0


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

    return draw(rows) + (draw(val) if val else (None, None, None))


def _best(func, repeats=3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def roofline():
    """GEMM GFLOP/s, write GB/s (warm / fresh memory) and read GB/s, one BLAS thread."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((1000, 1000))
    size = 2**25  # 256 MiB
    with threadpool_limits(1, user_api="blas"):
        gemm = 2e-9 * 1000**3 / _best(lambda: a @ a)
    buffer = np.empty(size)
    buffer.fill(0.0)
    warm = 8e-9 * size / _best(lambda: buffer.fill(1.0))
    fresh = 8e-9 * size / _best(lambda: np.empty(size).fill(1.0))
    read = 8e-9 * size / _best(lambda: buffer.sum())
    return {"gemm_gflops": gemm, "write_warm_gbs": warm, "write_fresh_gbs": fresh,
            "read_gbs": read}


def run_worker(kind, args, timeout, python=None, memory_cap_gib=None):
    """Run one worker configuration in a fresh process; its JSON result or an error dict."""
    cmd = [python or sys.executable, os.path.abspath(__file__), "--worker", kind,
           json.dumps(args)]
    if memory_cap_gib:
        cmd += ["--memory-cap-gib", str(memory_cap_gib)]
    env = dict(os.environ)
    if python:  # another venv: import this checkout of the package
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(HERE),
                                                          env.get("PYTHONPATH")]))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                              env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish in {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return {"error": tail[0][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt_s(value):
    if value is None or value != value:
        return "-"
    return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"


def fmt_x(value):
    return "-" if value is None or value != value else f"{value:.1f}x"


# -- workers ------------------------------------------------------------------------------------
def worker_roofline(_):
    return {**roofline(), "blas": blas_info()}


def _fit_bound(K, d, rows, n_iter, roof):
    n, q = K * rows, d + 1
    per_iteration = (2 * n * q * q + K * q**3 + q**3) / (roof["gemm_gflops"] * 1e9) + (
        3 * 8 * n * d / (roof["read_gbs"] * 1e9))  # outputs, gradient and Hessian passes
    return n_iter * per_iteration


def worker_fit(config):
    from mtif_sklearn import MultitaskLogistic, MultitaskRidge

    kind, K = config["kind"], config["K"]
    X, y, t = make_data(K, FIT_D, FIT_ROWS, 0)[:3]
    if kind == "logistic":
        y = (y > np.median(y)).astype(int)
        estimator = MultitaskLogistic(alpha=ALPHA, shared_alpha=SHARED_ALPHA)
    else:
        estimator = MultitaskRidge(alpha=ALPHA, shared_alpha=SHARED_ALPHA)
    roof = roofline()
    times, n_iter = [], 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(config["repeats"] + 1):
            start = time.perf_counter()
            model = estimator.fit(X, y, tasks=t)
            times.append(time.perf_counter() - start)
            n_iter = getattr(model, "n_iter_", 1)
    return {"kind": kind, "K": K, "n": K * FIT_ROWS, "cold": times[0],
            "steady": statistics.median(times[1:]), "n_iter": n_iter,
            "bound": _fit_bound(K, FIT_D, FIT_ROWS, n_iter, roof), "roof": roof,
            "peak_gib": _status_gib("VmHWM")}


STAGES = [  # (label, owner module path, attribute)
    ("Hessian blocks (+ row pass)", "mtif_sklearn.linear._objective:LinearMultitaskObjective",
     "hessian_blocks"),
    ("arrow factor", "mtif_sklearn.influence._problem", "factor_arrow"),
    ("validation solves", "mtif_sklearn.influence._problem:InfluenceProblem", "_solve_targets"),
    ("stationarity check", "mtif_sklearn.influence._problem:InfluenceProblem",
     "relative_gradient_norm"),
    ("task level (K x K)", "mtif_sklearn.influence._first_order:FirstOrder", "task_effects"),
    ("data level (n x K)", "mtif_sklearn.influence._mtif:MTIFInfluence", "_effects_matrix"),
]


def _wrap_stages(timers):
    import importlib

    for label, owner, name in STAGES:
        module, _, cls = owner.partition(":")
        target = importlib.import_module(module)
        if cls:
            target = getattr(target, cls)
        original = getattr(target, name)

        def timed(*args, _original=original, _label=label, **kwargs):
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                timers[_label] = timers.get(_label, 0.0) + time.perf_counter() - start

        setattr(target, name, timed)


def _stage_bounds(K, d, n, n_val, roof):
    q = p = d + 1
    G, W, R = (roof["gemm_gflops"] * 1e9, roof["write_fresh_gbs"] * 1e9,
               roof["read_gbs"] * 1e9)
    return {
        "Hessian blocks (+ row pass)": max(2 * n * q * q / G, 8 * n * d / R),
        "arrow factor": (K * q**3 + p**3) / G,
        "validation solves": 8 * n_val * d / R,
        "stationarity check": 8 * n * d / R,
        "task level (K x K)": max(2 * K * K * p / G, 8 * K * K / W),
        "data level (n x K)": max(2 * n * q * K / G, 8 * n * K / W) + 8 * n * K / R,
    }


def worker_stages(config):
    from sklearn.frozen import FrozenEstimator

    from mtif_sklearn import MTIFInfluence, MultitaskRidge

    K, d, rows, val = config["K"], config["d"], config["rows"], config["val"]
    X, y, t, Xv, yv, tv = make_data(K, d, rows, val)
    roof = roofline()
    model = MultitaskRidge(alpha=ALPHA, shared_alpha=SHARED_ALPHA).fit(X, y, tasks=t)
    timers_by_run, totals = [], []
    _wrap_stages(timers := {})
    for _ in range(2):  # cold, then steady
        timers.clear()
        start = time.perf_counter()
        inf = MTIFInfluence(FrozenEstimator(model), store_influence=True).fit(
            X, y, tasks=t, X_val=Xv, y_val=yv, tasks_val=tv)
        totals.append(time.perf_counter() - start)
        timers_by_run.append(dict(timers))
        peak = _status_gib("VmHWM")
        if _ == 0:
            del inf
    v = np.ones(d)
    one_pass = statistics.median(_best(lambda: X @ v, 1) for _ in range(5))
    score_times = []
    for _ in range(3):
        inf._splits[0].strategy._row_dot_cache = None  # a fresh computation each time
        start = time.perf_counter()
        inf.row_scores()
        score_times.append(time.perf_counter() - start)
    return {"K": K, "d": d, "n": K * rows, "n_val": K * val, "cold": totals[0],
            "steady": totals[1], "stages_cold": timers_by_run[0],
            "stages_steady": timers_by_run[1], "roof": roof,
            "bounds": _stage_bounds(K, d, K * rows, K * val, roof), "one_pass": one_pass,
            "row_scores": statistics.median(score_times), "peak_gib": peak}


def worker_selector(config):
    from mtif_sklearn import MTIFInfluence, MultitaskRidge, NegativeTransferSelector

    K, route = config["K"], config["route"]
    base = _status_gib("VmRSS")
    X, y, t = make_data(K, SELECTOR_D, SELECTOR_ROWS, 0)[:3]
    estimator = MultitaskRidge(alpha=ALPHA, shared_alpha=SHARED_ALPHA)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if route in ("selector", "selector_unguarded"):
            cheap = {"guard": False, "n_rounds": 1} if route == "selector_unguarded" else {}
            selector = NegativeTransferSelector(estimator, fraction=0.05, cv=5, random_state=0,
                                                **cheap).fit(X, y, tasks=t)
            removed = int(np.size(selector.removed_))
        else:
            inf = MTIFInfluence(estimator, cv=5, store_influence=False, random_state=0).fit(
                X, y, tasks=t)
            scores = inf.row_scores()
            worst = np.argsort(scores)[: int(0.05 * scores.size)]
            worst = worst[scores[worst] < 0]
            keep = np.ones(scores.size, dtype=bool)
            keep[worst] = False
            MultitaskRidge(alpha=ALPHA, shared_alpha=SHARED_ALPHA).fit(X[keep], y[keep],
                                                                      tasks=t[keep])
            removed = int(worst.size)
    return {"K": K, "n": K * SELECTOR_ROWS, "route": route, "time": time.perf_counter() - start,
            "peak_gib": _status_gib("VmHWM"), "base_gib": base, "removed": removed}


def worker_sweep(config):
    from sklearn.frozen import FrozenEstimator

    from mtif_sklearn import MTIFInfluence, MultitaskRidge

    K, d, rows, val = config["K"], config["d"], config["rows"], config["val"]
    base = _status_gib("VmRSS")  # interpreter and imports, before the data
    X, y, t, Xv, yv, tv = make_data(K, d, rows, val)
    timers = {}
    _wrap_stages(timers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        model = MultitaskRidge(alpha=ALPHA, shared_alpha=SHARED_ALPHA).fit(X, y, tasks=t)
        t_fit = time.perf_counter() - start
        timers.clear()
        start = time.perf_counter()
        inf = MTIFInfluence(FrozenEstimator(model), store_influence=True).fit(
            X, y, tasks=t, X_val=Xv, y_val=yv, tasks_val=tv)
        t_inf = time.perf_counter() - start
    n = K * rows
    inherent = (X.nbytes + Xv.nbytes + inf.influence_.nbytes + inf.task_influence_.nbytes) / 2**30
    return {"K": K, "d": d, "rows": rows, "val": val, "n": n, "fit": t_fit, "influence": t_inf,
            "rows_part": timers.get("data level (n x K)", 0.0),
            "peak_gib": _status_gib("VmHWM"), "base_gib": base, "inherent_gib": inherent,
            "output_gib": inf.influence_.nbytes / 2**30}


# -- peers (run by the peers' Python) -----------------------------------------------------------
def _peer_problem(K):
    """The multitask ridge problem of the peer table, its MTIF answer and its parameters."""
    from sklearn.frozen import FrozenEstimator

    from mtif_sklearn import MTIFInfluence, MultitaskRidge

    X, y, t, Xv, yv, tv = make_data(K, PEER_D, PEER_ROWS, PEER_VAL, seed=1)
    model = MultitaskRidge(alpha=ALPHA, shared_alpha=SHARED_ALPHA).fit(X, y, tasks=t)

    def mtif():
        return MTIFInfluence(FrozenEstimator(model)).fit(
            X, y, tasks=t, X_val=Xv, y_val=yv, tasks_val=tv).influence_

    return (X, y, t, Xv, yv, tv), model, mtif


def _torch_objective(model, data):
    """The multitask ridge objective as per-row squared errors of one torch model.

    The tie penalty alpha (beta_kj - g_j)^2 and shared_alpha gamma_j^2 are written as
    pseudo-rows with target 0, and every training row's squared error is scaled by its weight
    in the objective (1/n_k) times the number of rows, so that the MEAN per-row loss over the
    training set (what the peers differentiate) is the objective divided by that number: the
    same Hessian up to a positive factor. Returns (model, train tensors, validation tensors,
    the number of real training rows).
    """
    import torch

    X, y, t, Xv, yv, tv = data
    K, d = model.coef_.shape
    q = d + 1
    n = X.shape[0]
    counts = np.bincount(t, minlength=K)
    # Inputs: [features (d), 1, row kind one-hot task (K)] flattened to a feature vector that
    # selects what the output is: x . beta_k + b_k for a real row; sqrt(a)(beta_kj - g_j) and
    # sqrt(shared_alpha) gamma_j for the penalty pseudo-rows.
    pseudo_tie = [(k, j) for k in range(K) for j in range(q)]
    pseudo_shared = list(range(d))
    n_total = n + len(pseudo_tie) + len(pseudo_shared)

    class MultitaskLinear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            coef = np.hstack([model.coef_, model.intercept_[:, None]])
            shared = np.append(model.shared_coef_, model.shared_intercept_)
            self.task = torch.nn.Parameter(torch.tensor(coef))
            self.shared = torch.nn.Parameter(torch.tensor(shared))

        def forward(self, inputs):
            # inputs: (m, q + K + 2 q): features+1 | task one-hot | tie selector | shared sel.
            features, onehot = inputs[:, :q], inputs[:, q:q + K]
            tie_sel, shared_sel = inputs[:, q + K:q + K + q], inputs[:, q + K + q:]
            beta = onehot @ self.task  # (m, q)
            real = (features * beta).sum(dim=1)
            tie = ((beta - self.shared) * tie_sel).sum(dim=1)
            shared = (self.shared * shared_sel).sum(dim=1)
            return (real + tie + shared)[:, None]

    def encode(Xr, tasks):
        m = Xr.shape[0]
        out = np.zeros((m, q + K + 2 * q))
        out[:, :d] = Xr
        out[:, d] = 1.0
        out[np.arange(m), q + tasks] = 1.0
        return out

    rows = encode(X, t) * np.sqrt(n_total / counts[t])[:, None]  # weight 1/n_k, times N
    rows[:, q:q + K] = encode(X, t)[:, q:q + K]  # the task selector is not scaled
    targets = y * np.sqrt(n_total / counts[t])
    tie_rows = np.zeros((len(pseudo_tie), q + K + 2 * q))
    for r, (k, j) in enumerate(pseudo_tie):
        tie_rows[r, q + k] = 1.0
        tie_rows[r, q + K + j] = np.sqrt(ALPHA * n_total)
    shared_rows = np.zeros((len(pseudo_shared), q + K + 2 * q))
    for r, j in enumerate(pseudo_shared):
        shared_rows[r, q + K + q + j] = np.sqrt(SHARED_ALPHA * n_total)
    train_x = np.vstack([rows, tie_rows, shared_rows])
    train_y = np.concatenate([targets, np.zeros(len(tie_rows) + len(shared_rows))])
    as_tensor = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    return (MultitaskLinear(), (as_tensor(train_x), as_tensor(train_y[:, None])),
            (as_tensor(encode(Xv, tv)), as_tensor(yv[:, None])), n)


def _peer_effects(per_val_row, tv, K, sign):
    """(n_val, n) peer influence of each training row on each validation row -> (n, K)
    removal effects up to a positive factor: ``sign`` times the mean over each task's rows."""
    out = np.zeros((per_val_row.shape[1], K))
    for k in range(K):
        out[:, k] = sign * per_val_row[tv == k].mean(axis=0)
    return out


def _within_task_spearman(a, b, t, K):
    from scipy.stats import spearmanr

    values = []
    for k in range(K):
        rows = t == k  # the task's own rows in its own column, and every row in the column
        values.append(spearmanr(a[:, k], b[:, k]).statistic)
        values.append(spearmanr(a[rows, k], b[rows, k]).statistic)
    return float(np.nanmin(values))


def worker_peer(config):
    import torch

    torch.set_num_threads(1)
    K, peer = config["K"], config["peer"]
    data, model, mtif = _peer_problem(K)
    t_mtif = statistics.median(_best(mtif, 1) for _ in range(7))
    reference = mtif()
    net, (train_x, train_y), (val_x, val_y), n = _torch_objective(model, data)
    loss = torch.nn.MSELoss(reduction="none")
    start = time.perf_counter()
    if peer == "pydvl":
        from pydvl.influence.torch import DirectInfluence
        from torch.utils.data import DataLoader, TensorDataset

        def mean_loss(output, target):
            return loss(output, target).mean()

        loader = DataLoader(TensorDataset(train_x, train_y), batch_size=4096)
        influence = DirectInfluence(net, mean_loss, regularization=None).fit(loader)
        values = influence.influences(val_x, val_y, train_x[:n], train_y[:n]).numpy()
    else:  # dattri explicit influence
        from dattri.algorithm.influence_function import IFAttributorExplicit
        from dattri.task import AttributionTask
        from torch.func import functional_call
        from torch.utils.data import DataLoader, TensorDataset

        def loss_func(params, batch):
            inputs, target = batch
            output = functional_call(net, params, (inputs,))
            return loss(output, target).mean()

        task = AttributionTask(loss_func=loss_func, model=net, checkpoints=net.state_dict())
        attributor = IFAttributorExplicit(task=task, regularization=0.0)
        attributor.cache(DataLoader(TensorDataset(train_x, train_y), batch_size=4096))
        values = attributor.attribute(
            DataLoader(TensorDataset(train_x[:n], train_y[:n]), batch_size=4096),
            DataLoader(TensorDataset(val_x, val_y), batch_size=4096)).detach().numpy().T
    t_peer = time.perf_counter() - start
    # Both peers return grad l(train)^T H^-1 grad l(validation) (pyDVL's and dattri's inner
    # product convention): averaged over a task's validation rows, MTIF's removal effect times
    # a positive factor (N / n_k from the row scaling of _torch_objective).
    effects = _peer_effects(values, data[5], K, sign=1.0)
    return {"K": K, "peer": peer, "mtif": t_mtif, "peer_time": t_peer, "blas": blas_info(),
            "spearman": _within_task_spearman(effects, reference, data[2], K),
            "finite": bool(np.isfinite(values).all())}


WORKERS = {"roofline": worker_roofline, "fit": worker_fit, "stages": worker_stages,
           "selector": worker_selector, "sweep": worker_sweep, "peer": worker_peer}


# -- tables -------------------------------------------------------------------------------------
def part_roofline(args):
    roof = run_worker("roofline", {}, args.timeout)
    if "error" in roof:
        print(f"roofline failed: {roof['error']}")
        return
    print_table(["GEMM (1 thread)", "write, warm memory", "write, fresh memory", "read"],
                [[f"{roof['gemm_gflops']:.1f} GFLOP/s", f"{roof['write_warm_gbs']:.1f} GB/s",
                  f"{roof['write_fresh_gbs']:.1f} GB/s", f"{roof['read_gbs']:.1f} GB/s"]],
                title="(r) Roofline measured in a fresh process (one BLAS thread)")
    print(f"BLAS: {roof['blas']}")


def part_fit(plan, args):
    rows = []
    for kind, K in plan["fit"]:
        repeats = 5 if K <= 10_000 else 2
        r = run_worker("fit", {"kind": kind, "K": K, "repeats": repeats}, args.timeout)
        if "error" in r:
            rows.append([kind, f"{K:,}", "-", "-", "-", "-", "-", "-", r["error"]])
            continue
        rows.append([kind, f"{K:,}", f"{r['n']:,}", r["n_iter"], fmt_s(r["cold"]),
                     fmt_s(r["steady"]), fmt_s(r["bound"]), fmt_x(r["steady"] / r["bound"]),
                     f"{r['peak_gib']:.2f} GiB"])
        print(f"  fit {kind} K={K} done", file=sys.stderr, flush=True)
    print_table(["model", "K", "n", "Newton iterations", "fit, cold", "fit, steady (median)",
                 "bound", "steady / bound", "peak RSS"], rows,
                title=f"(f) Fit, d={FIT_D}, {FIT_ROWS} rows per task")
    print("bound = iterations x (2 n q^2 + K q^3 + q^3 flops at the GEMM rate + 3 passes over "
          "X at the read rate), q = d + 1.")


def part_stages(plan, args):
    for K, d, rows, val in plan["stages"]:
        r = run_worker("stages", {"K": K, "d": d, "rows": rows, "val": val}, args.timeout)
        if "error" in r:
            print(f"\nstages K={K} d={d} rows={rows}: {r['error']}")
            continue
        table, sum_bound = [], 0.0
        other_cold, other_steady = r["cold"], r["steady"]
        for label, _, _ in STAGES:
            cold, steady = r["stages_cold"].get(label), r["stages_steady"].get(label)
            bound = r["bounds"][label]
            sum_bound += bound
            other_cold -= cold or 0.0
            other_steady -= steady or 0.0
            table.append([label, fmt_s(cold), fmt_s(steady), fmt_s(bound),
                          fmt_x(None if steady is None else steady / bound)])
        table.append(["other (validation, objectives, copies)", fmt_s(other_cold),
                      fmt_s(other_steady), "-", "-"])
        table.append(["**MTIFInfluence.fit**", fmt_s(r["cold"]), fmt_s(r["steady"]),
                      fmt_s(sum_bound), fmt_x(r["steady"] / sum_bound)])
        table.append(["row_scores() vs one pass over X", "-", fmt_s(r["row_scores"]),
                      fmt_s(r["one_pass"]), fmt_x(r["row_scores"] / r["one_pass"])])
        roof = r["roof"]
        print_table(["stage", "cold", "steady", "bound", "steady / bound"], table,
                    title=f"(m) MTIFInfluence per stage: K={K:,}, d={d}, n={r['n']:,} "
                          f"(+{r['n_val']:,} validation), n x K = "
                          f"{r['n'] * K * 8 / 2**30:.2f} GiB")
        print(f"roofline: GEMM {roof['gemm_gflops']:.1f} GFLOP/s, write "
              f"{roof['write_warm_gbs']:.1f} GB/s warm / {roof['write_fresh_gbs']:.1f} GB/s "
              "fresh, read "
              f"{roof['read_gbs']:.1f} GB/s; peak RSS {r['peak_gib']:.2f} GiB")
        print(f"  stages K={K} done", file=sys.stderr, flush=True)


SELECTOR_ROUTES = {
    "selector": "NegativeTransferSelector.fit (defaults: guard, 3 rounds)",
    "selector_unguarded": "NegativeTransferSelector.fit (guard=False, n_rounds=1)",
    "row_scores": "MTIFInfluence(cv=5).row_scores + refit",
}


def part_selector(plan, args):
    rows = []
    for K in plan["selector"]:
        for route, name in SELECTOR_ROUTES.items():
            r = run_worker("selector", {"K": K, "route": route}, args.selector_timeout,
                           memory_cap_gib=args.memory_cap_gib)
            if "error" in r:
                rows.append([f"{K:,}", f"{K * SELECTOR_ROWS:,}", name, "-", "-", r["error"]])
            else:
                rows.append([f"{K:,}", f"{r['n']:,}", name, fmt_s(r["time"]),
                             f"{r['peak_gib']:.2f} GiB", f"{r['removed']:,} rows removed"])
            print(f"  selector K={K} {route} done", file=sys.stderr, flush=True)
    print_table(["K", "n", "route", "time", "peak RSS", "note"], rows,
                title=f"(s) Selector, d={SELECTOR_D}, {SELECTOR_ROWS} rows per task, "
                      f"fraction=0.05, cv=5 (address space capped at {args.memory_cap_gib:g} "
                      "GiB)")
    print("Expected (issue 17): K=2,000 <= 2 s and <= 0.5 GiB; K=10,000 <= 10 s and <= 1 GiB; "
          "K=100,000 <= 60 s and <= 4 GiB on 2 cores.")


def part_peers(plan, args):
    if not args.peers_python or not os.path.exists(args.peers_python):
        print(f"\n(p) peers skipped: no --peers-python ({args.peers_python!r}); create a venv "
              "with torch, pydvl and dattri and pass its python.")
        return
    rows, blas = [], None
    for K in plan["peers"]:
        for peer in ("pydvl", "dattri"):
            r = run_worker("peer", {"K": K, "peer": peer}, args.timeout,
                           python=args.peers_python)
            label = "pyDVL DirectInfluence" if peer == "pydvl" else "dattri IFAttributorExplicit"
            if "error" in r:
                rows.append([K, label, "-", "-", "-", r["error"]])
            else:
                blas = r["blas"]
                rows.append([K, label, fmt_s(r["mtif"]), fmt_s(r["peer_time"]),
                             fmt_x(r["peer_time"] / r["mtif"]),
                             f"{r['spearman']:.3f}" + ("" if r["finite"] else " (non-finite)")])
            print(f"  peer {peer} K={K} done", file=sys.stderr, flush=True)
    print_table(["K", "peer", "MTIF (data level)", "peer", "peer / MTIF",
                 "min within-task Spearman"], rows,
                title=f"(p) Peers on the same multitask ridge influence, d={PEER_D}, "
                      f"{PEER_ROWS}+{PEER_VAL} rows per task (torch {args.peers_python})")
    print("MTIF: MTIFInfluence(FrozenEstimator(model)).fit (data and task level), median of 7; "
          "peer: one call, fit + influences of every training row on every validation row. "
          "Expected (issue 17): MTIF vs pyDVL >= 1,000x at K=100, growing with K.")
    print(f"BLAS in the peers' venv (MTIF's time there): {blas}")


def slope(x, y):
    x, y = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    return float(np.polyfit(x, y, 1)[0])


def part_sweeps(plan, args):
    header = ["K", "d", "rows/task (train+val)", "n_train", "fit", "influence (all)",
              "of which data level", "output n x K", "inherent", "peak RSS", "working"]
    results = {}
    for name in ("K", "d", "n"):
        results[name] = []
        for K, d, rows, val in plan[name]:
            r = run_worker("sweep", {"K": K, "d": d, "rows": rows, "val": val}, args.timeout)
            if "error" not in r:
                results[name].append(r)

    def row(r):
        working = r["peak_gib"] - r["inherent_gib"] - r["base_gib"]
        return [f"{r['K']:,}", r["d"], f"{r['rows']}+{r['val']}", f"{r['n']:,}",
                fmt_s(r["fit"]), fmt_s(r["influence"]), fmt_s(r["rows_part"]),
                f"{r['output_gib']:.2f} GiB", f"{r['inherent_gib']:.2f} GiB",
                f"{r['peak_gib']:.2f} GiB", f"{working:.2f} GiB"]

    for name in ("K", "d", "n"):
        print_table(header, [row(r) for r in results[name]], title=f"(w) Sweep over {name}")
    print("inherent = X + X_val + the n x K and K x K outputs; working = peak - inherent - the "
          "interpreter's baseline. Single runs, cold.")
    fitted = []
    for name in ("K", "d", "n"):
        rs = results[name]
        if len(rs) < 2:
            continue
        x = [r[name] for r in rs]
        q = [r["d"] + 1 for r in rs]
        theory = [r["K"] * qq**3 + qq**3 + r["n"] * qq * qq + r["n"] * qq * r["K"]
                  for r, qq in zip(rs, q, strict=True)]
        fitted.append([name, f"{min(x):,}-{max(x):,}",
                       f"{slope(x, [r['fit'] for r in rs]):.2f}",
                       f"{slope(x, [r['influence'] - r['rows_part'] for r in rs]):.2f}",
                       f"{slope(x, [r['rows_part'] for r in rs]):.2f}",
                       f"{slope(x, [r['influence'] for r in rs]):.2f}",
                       f"{slope(x, theory):.2f}"])
    print_table(["varied", "range", "fit", "influence minus data level", "data level",
                 "influence (all)", "theory K q^3 + n q^2 + n q K"], fitted,
                title="(w) Fitted exponents b in time ~ size^b (log-log least squares)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--parts", default="rfmspw", help="which parts (default rfmspw)")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "JSON"), help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=900, help="seconds per configuration")
    parser.add_argument("--selector-timeout", type=float, default=600)
    parser.add_argument("--memory-cap-gib", type=float, default=12.0,
                        help="address-space cap of a selector worker (RLIMIT_AS)")
    parser.add_argument("--peers-python", default="/tmp/peers-venv/bin/python",
                        help="Python of a venv with torch, pydvl and dattri (part p)")
    args = parser.parse_args()
    if args.worker:
        if args.memory_cap_gib and args.worker[0] == "selector":
            cap = int(args.memory_cap_gib * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        print(json.dumps(WORKERS[args.worker[0]](json.loads(args.worker[1]))), flush=True)
        return
    plan = QUICK if args.quick else FULL
    print(f"# bench_scale{' --quick' if args.quick else ''}: parts {args.parts}, one fresh "
          "process per configuration")
    print(f"machine: {machine_info()}")
    print(f"at start: {load_info()}")
    wall = time.perf_counter()
    parts = {"r": lambda: part_roofline(args), "f": lambda: part_fit(plan, args),
             "m": lambda: part_stages(plan, args), "s": lambda: part_selector(plan, args),
             "p": lambda: part_peers(plan, args), "w": lambda: part_sweeps(plan, args)}
    for key in args.parts:
        parts[key]()
    print(f"\ntotal wall time {time.perf_counter() - wall:.0f} s; at end: {load_info()}")


if __name__ == "__main__":
    main()
