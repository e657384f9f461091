"""
Grid search: metadata routing or a task column
==============================================

Two ways to tell a multitask model which task every row belongs to, both usable in
scikit-learn's model selection tools:

1. ``tasks=`` metadata, routed through :class:`~sklearn.model_selection.GridSearchCV` with
   ``sklearn.set_config(enable_metadata_routing=True)`` (then use ``scoring=None``: scikit-learn
   scorers drop metadata meant for ``predict``).
2. ``task_column=``: the task label is a column of ``X`` (a DataFrame column name or an integer
   position) and is not used as a feature. No routing needed; every scorer works.

We tune ``alpha`` (how strongly every task's coefficients are pulled to the shared ones) both
ways, then tune the ``fraction`` of rows that
:class:`~mtif_sklearn.NegativeTransferSelector` may drop.
"""

# %%
# Data
# ----
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import sklearn
from sklearn.model_selection import GridSearchCV, KFold

from mtif_sklearn import MultitaskRidge, NegativeTransferSelector
from mtif_sklearn.datasets import make_multitask_regression

X, y, tasks = make_multitask_regression(n_tasks=6, n_samples_per_task=60, n_features=8,
                                        delta=0.5, eps=0.3, random_state=0)
rng = np.random.default_rng(0)
bad = rng.choice(np.flatnonzero(tasks == 0), size=4, replace=False)
y = y.copy()
y[bad] += 12.0  # a few gross label errors for the selector to find
alphas = [0.01, 0.1, 1.0, 10.0]
cv = KFold(n_splits=4, shuffle=True, random_state=0)

# %%
# 1. ``tasks=`` through metadata routing
# --------------------------------------
# The models request ``tasks`` by default, so enabling routing is all it takes.
with sklearn.config_context(enable_metadata_routing=True):
    search = GridSearchCV(MultitaskRidge(), {"alpha": alphas}, cv=cv)
    search.fit(X, y, tasks=tasks)
print("routing: best alpha", search.best_params_["alpha"],
      f"(mean R^2 {search.best_score_:.3f})")

# %%
# 2. ``task_column=`` on a DataFrame
# ----------------------------------
# The task label travels inside ``X``, so any scorer and splitter works without routing.
frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
frame["school"] = np.array(["ash", "birch", "cedar", "elm", "fir", "oak"])[tasks]
search_column = GridSearchCV(MultitaskRidge(task_column="school"), {"alpha": alphas}, cv=cv,
                             scoring="neg_mean_squared_error")
search_column.fit(frame, y)
print("task_column: best alpha", search_column.best_params_["alpha"],
      f"(mean MSE {-search_column.best_score_:.3f})")

fig, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
ax.semilogx(alphas, -search_column.cv_results_["mean_test_score"], "o-")
ax.set_xlabel("alpha (pull towards the shared coefficients)")
ax.set_ylabel("cross-validated MSE")
ax.set_title("Tuning alpha with task_column")
plt.show()

# %%
# Tuning how many rows the selector drops
# ---------------------------------------
# Put ``0`` in the grid: when nothing in the data is harmful the search keeps every row.
selector = NegativeTransferSelector(MultitaskRidge(alpha=search_column.best_params_["alpha"],
                                                   task_column="school"),
                                    cv=3, random_state=0)
search_fraction = GridSearchCV(selector, {"fraction": [0.0, 0.01, 0.02, 0.05]}, cv=cv,
                               scoring="neg_mean_squared_error")
search_fraction.fit(frame, y)
for fraction, score in zip(search_fraction.cv_results_["param_fraction"],
                           search_fraction.cv_results_["mean_test_score"], strict=True):
    print(f"fraction={fraction:<5} cross-validated MSE {-score:.3f}")
best = search_fraction.best_estimator_
print(f"best fraction {search_fraction.best_params_['fraction']}: removed "
      f"{best.removed_.size} rows, {np.isin(best.removed_, bad).sum()} of the {bad.size} "
      "corrupted ones")
