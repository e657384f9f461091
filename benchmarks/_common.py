"""Helpers shared by the benchmark scripts: timing, machine description, markdown tables.

Not part of the package; imported by the scripts in this folder (run them as
``python benchmarks/bench_xxx.py`` so that this folder is on ``sys.path``).
"""

import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

__all__ = ["blas_info", "machine_info", "load_info", "median_time", "print_table", "fmt_ratio",
           "fmt_time"]


#: The real data sets (school, chemical, computer survey), beside the repository.
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def median_time(func, repeats, warmup=1):
    """Median wall time (seconds) of ``func()`` over ``repeats`` calls after ``warmup`` calls.

    Returns (median_seconds, last_result).
    """
    result = None
    for _ in range(warmup):
        result = func()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _lscpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.processor() or "unknown CPU"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _memory_gib():
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def blas_info():
    """The BLAS libraries loaded (NumPy's and SciPy's), with version, CPU kernel and threads.

    NumPy 1.26's bundled OpenBLAS does not recognise some CPUs and falls back to a generic
    kernel ("Prescott", several times slower GEMM); NumPy 2.x's picks the right one
    ("SkylakeX", "Haswell", ...). Every benchmark prints which one ran.
    """
    try:
        import scipy.linalg  # noqa: F401  (loads SciPy's BLAS too)
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - informational only
        return "?"
    libs = []
    for info in threadpool_info():
        if info.get("user_api") != "blas":
            continue
        owner = os.path.basename(os.path.dirname(info.get("filepath", ""))).replace(".libs", "")
        libs.append(f"{info.get('internal_api')} {info.get('version')} "
                    f"(kernel {info.get('architecture', '?')}, {info.get('num_threads')} "
                    f"threads, {owner})")
    return "; ".join(libs) or "?"


def machine_info():
    """One line describing the machine and the numerical stack (BLAS kernel included)."""
    import numpy as np
    import scipy
    import sklearn

    return (f"{os.cpu_count()} cores ({_lscpu_model()}), {_memory_gib():.1f} GiB RAM, "
            f"Python {platform.python_version()}, NumPy {np.__version__}, "
            f"SciPy {scipy.__version__}, "
            f"scikit-learn {sklearn.__version__}, BLAS {blas_info()}")


def load_info():
    """The 1/5/15-minute load averages (other processes share the cores: noisy timings)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:  # pragma: no cover - not on every platform
        return "load average: unknown"
    return f"load average: {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def fmt_time(seconds):
    if seconds != seconds:  # NaN
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_ratio(value):
    if value is None or value != value:
        return "-"
    if value >= 100:
        return f"{value:.0f}x"
    if value >= 10:
        return f"{value:.1f}x"
    return f"{value:.2f}x"


def print_table(headers, rows, title=None):
    """Print a GitHub-markdown table (also readable as plain text)."""
    rows = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    if title:
        print(f"\n### {title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
    print(flush=True)


def mean_loss(y, prediction, logistic):
    """Mean log loss of positive-class probabilities (clipped to [1e-12, 1 - 1e-12]) when
    ``logistic``, else the mean squared error of predictions."""
    import numpy as np

    if logistic:
        proba = np.clip(prediction, 1e-12, 1 - 1e-12)
        return float(-np.mean(y * np.log(proba) + (1 - y) * np.log(1 - proba)))
    return float(np.mean((prediction - y) ** 2))


def refit_without(problem, removed):
    """``problem["model"]`` refitted on its training rows without the rows ``removed``."""
    import numpy as np
    from sklearn.base import clone

    keep = np.setdiff1d(np.arange(len(problem["y"])), removed)
    return clone(problem["model"]).fit(problem["X"][keep], problem["y"][keep],
                                       tasks=problem["tasks"][keep])
