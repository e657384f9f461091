"""
Running the influence computation on a GPU
==========================================

:class:`~mtif_sklearn.MTIFInfluence` does its linear algebra (block Cholesky factorisations,
the Schur complement of the shared block, the solves for every row's gradient) through the
array API, so the same code runs on NumPy/SciPy or on a CUDA GPU through CuPy
(``pip install "mtif-sklearn[gpu]"``).

- ``backend="cupy"``: NumPy in, computation on the GPU, NumPy out.
- ``backend="auto"`` (default): follow the inputs, as scikit-learn's array API support does:
  CuPy arrays in, CuPy computation and CuPy results; NumPy in, NumPy.

This example uses the GPU when CuPy and a CUDA device are available and otherwise runs the
NumPy backend only, so it runs everywhere. The two backends agree to 1e-8 relative (float64).
"""

# %%
# Is a GPU available?
# -------------------
import time

import matplotlib.pyplot as plt
import numpy as np

from mtif_sklearn import MTIFInfluence, MultitaskRidge
from mtif_sklearn.datasets import make_multitask_regression

try:
    import cupy

    cupy.cuda.runtime.getDeviceCount()
    gpu = True
except Exception as error:  # no CuPy, or CuPy without a usable CUDA device
    gpu = False
    print(f"No GPU backend here ({type(error).__name__}); running the NumPy backend only.")

# %%
# The same influence on both backends
# -----------------------------------
X, y, tasks = make_multitask_regression(n_tasks=20, n_samples_per_task=200, n_features=30,
                                        random_state=0)
timings = {}
results = {}
for backend in ["numpy", "cupy"] if gpu else ["numpy"]:
    influence = MTIFInfluence(MultitaskRidge(alpha=0.1), backend=backend, random_state=0)
    start = time.perf_counter()
    influence.fit(X, y, tasks=tasks)
    timings[backend] = time.perf_counter() - start
    results[backend] = influence
    print(f"backend={backend!r}: influence_ {influence.influence_.shape} "
          f"({type(influence.influence_).__module__.split('.')[0]}), "
          f"{timings[backend]:.2f} s (first call includes warm-up)")

if gpu:
    difference = np.max(np.abs(results["cupy"].influence_ - results["numpy"].influence_))
    scale = np.max(np.abs(results["numpy"].influence_))
    print(f"largest difference between the backends: {difference / scale:.1e} (relative)")

    # CuPy in, CuPy out: "auto" follows the inputs and keeps the results on the device.
    on_device = MTIFInfluence(MultitaskRidge(alpha=0.1), random_state=0).fit(
        cupy.asarray(X), cupy.asarray(y), tasks=tasks)
    print("backend='auto' with CuPy inputs returns", type(on_device.influence_))

# %%
# Time against the number of tasks
# --------------------------------
# The arrow solve costs ``sum_k d_k^3 + p^3``: linear in the number of tasks K, where a dense
# Hessian solve would grow like K^3. Fit time per backend for a few K (the first CuPy call
# includes its warm-up, so every size is timed after one untimed fit).
sizes = [10, 20, 40]
seconds = {backend: [] for backend in timings}
for n_tasks in sizes:
    X, y, tasks = make_multitask_regression(n_tasks=n_tasks, n_samples_per_task=200,
                                            n_features=30, random_state=0)
    for backend in seconds:
        influence = MTIFInfluence(MultitaskRidge(alpha=0.1), backend=backend, random_state=0)
        start = time.perf_counter()
        influence.fit(X, y, tasks=tasks)
        seconds[backend].append(time.perf_counter() - start)

fig, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
for backend, colour in zip(seconds, ["0.35", "tab:green"], strict=False):
    ax.plot(sizes, seconds[backend], "o-", color=colour, label=f'backend="{backend}"')
ax.set_xlabel("number of tasks K (200 rows and 30 features each)")
ax.set_ylabel("seconds for MTIFInfluence.fit")
ax.set_ylim(bottom=0)
ax.set_title("Influence (row and task level) by backend")
ax.legend(frameon=False)
plt.show()
