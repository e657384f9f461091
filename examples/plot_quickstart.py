"""
Quickstart: which tasks help each other, and which rows hurt
=============================================================

Fit a :class:`~mtif_sklearn.MultitaskRidge` on synthetic multitask data (the generator of the
MTIF paper, Appendix C.1.1: related tasks plus a few unrelated ones), measure every task's and
every training row's influence on every task's validation loss with
:class:`~mtif_sklearn.MTIFInfluence`, and check the task-level numbers against brute-force
leave-one-task-out retraining.

Sign convention: an effect estimates ``V_k(without it) - V_k(with everything)``. Positive:
it helps task k. Negative: it hurts task k (negative transfer).
"""

# %%
# Data: six related tasks and two unrelated ones
# ----------------------------------------------
import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import spearmanr

from mtif_sklearn import MTIFInfluence, MultitaskRidge
from mtif_sklearn.datasets import make_multitask_regression
from mtif_sklearn.plotting import InfluenceAgreementDisplay, TaskInfluenceDisplay
from mtif_sklearn.retrain import loto_effects

X, y, tasks, coef, unrelated = make_multitask_regression(
    n_tasks=8, n_samples_per_task=100, n_features=10, delta=0.5, eps=0.25, random_state=0,
    return_coef=True)
print("unrelated tasks:", np.flatnonzero(unrelated).tolist())

# %%
# Task influence
# --------------
# ``task_influence_[l, k]`` is the effect on task k of removing task l. An unrelated task pulls
# the shared parameters away from the others, so on average it hurts them: averaging each row
# of the matrix over the other tasks ranks the sources (the diagonal is left out: it is a
# task's effect on itself).
influence = MTIFInfluence(MultitaskRidge(alpha=0.2), validation_fraction=0.25, random_state=0)
row_effects = influence.fit_transform(X, y, tasks=tasks)
np.set_printoptions(precision=4, suppress=True, linewidth=120)
print(influence.task_influence_)
off_diagonal = influence.task_influence_.copy()
np.fill_diagonal(off_diagonal, np.nan)
mean_effect = np.nanmean(off_diagonal, axis=1)
for source in np.argsort(mean_effect):
    label = " (unrelated)" if unrelated[source] else ""
    print(f"task {source}{label}: mean effect on the other tasks {mean_effect[source]:+.4f}")

# %%
# The same matrix as a heatmap: the rows of the unrelated tasks are the red ones.
TaskInfluenceDisplay.from_estimator(influence)
plt.show()

# %%
# Compare with retraining
# -----------------------
# The brute-force ground truth refits the model once per removed task. MTIF needs one
# factorisation of the arrow Hessian instead.
train, val = influence.train_indices_, influence.val_indices_
truth = loto_effects(MultitaskRidge(alpha=0.2), X[train], y[train], X[val], y[val],
                     tasks=tasks[train], tasks_val=tasks[val])
for k in range(8):
    others = np.arange(8) != k
    rho = spearmanr(influence.task_influence_[others, k], truth[others, k])[0]
    print(f"task {k}: Spearman(MTIF, LOTO) = {rho:.2f}")

off_diagonal = ~np.eye(8, dtype=bool)
InfluenceAgreementDisplay.from_predictions(influence.task_influence_[off_diagonal],
                                           truth[off_diagonal], level="task")
plt.show()

# %%
# The most harmful rows
# ---------------------
# Sum each row's effect over all tasks; the most negative rows are candidates to drop.
total = row_effects.sum(axis=1)
worst = train[np.argsort(total)[:5]]
print("most harmful rows:", worst.tolist(), "from tasks", tasks[worst].tolist())
