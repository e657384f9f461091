"""
Harmful rows and label noise on the chemical data
=================================================

Can MTIF find wrong labels? The chemical benchmark holds 10 binary classification tasks
(molecular fingerprints, 180 binary features). We flip the labels of 5% of one task's training
rows, fit a :class:`~mtif_sklearn.MultitaskLogistic`, and score every training row by its
effect on every task's validation loss (the tasks' clean test rows) with
:class:`~mtif_sklearn.MTIFInfluence`. Rows with the most negative summed effect are the
ones that hurt; the flipped rows should be among them. We check a sample of the row-level
numbers against leave-one-out retraining, and finally let
:class:`~mtif_sklearn.NegativeTransferSelector` drop the harmful rows.

The chemical data are not shipped with mtif-sklearn (see
:func:`~mtif_sklearn.datasets.load_chemical` for where they come from). The example reads them
from ``$MTIF_DATA/chemical``; ``MTIF_DATA`` defaults to ``../shared/data``, relative to the
repository root from which the examples are run. Without the data it says so and runs on a
synthetic stand-in.
"""

# %%
# Load four of the ten tasks and corrupt one
# ------------------------------------------
import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.base import clone

from mtif_sklearn import MTIFInfluence, MultitaskLogistic, NegativeTransferSelector
from mtif_sklearn.datasets import load_chemical, make_multitask_classification
from mtif_sklearn.plotting import InfluenceAgreementDisplay, SelectionDisplay

data_home = os.environ.get("MTIF_DATA", "../shared/data")
try:
    X, y, tasks = load_chemical(data_home=data_home, subset="train")
    X_test, y_test, tasks_test = load_chemical(data_home=data_home, subset="test")
    chosen = [55, 76, 80, 87]  # four tasks keep the example fast
    train, test = np.isin(tasks, chosen), np.isin(tasks_test, chosen)
    X, y, tasks = X[train], y[train], tasks[train]
    X_test, y_test, tasks_test = X_test[test], y_test[test], tasks_test[test]
except FileNotFoundError as error:
    print(f"No chemical data here: {error}\nRunning on a synthetic stand-in instead; set "
          "MTIF_DATA to the folder holding chemical/ to see the real results.")
    X, y, tasks = make_multitask_classification(n_tasks=4, n_samples_per_task=400,
                                                n_features=20, random_state=0)
    X_test, y_test, tasks_test = make_multitask_classification(
        n_tasks=4, n_samples_per_task=200, n_features=20, random_state=0)
print(f"{len(y)} training rows, {np.unique(tasks).size} tasks, {X.shape[1]} features")

rng = np.random.default_rng(0)
noisy_task = np.unique(tasks)[0]
rows_of_task = np.flatnonzero(tasks == noisy_task)
flipped = rng.choice(rows_of_task, size=int(0.05 * rows_of_task.size), replace=False)
y = y.copy()
y[flipped] = 1 - y[flipped]
print(f"flipped {flipped.size} labels of task {noisy_task}")

# %%
# Score every training row
# ------------------------
# The validation rows defining each task's loss are its clean test rows.
model = MultitaskLogistic(alpha=0.5)
influence = MTIFInfluence(model).fit(X, y, tasks=tasks, X_val=X_test, y_val=y_test,
                                     tasks_val=tasks_test)
total = influence.influence_.sum(axis=1)  # summed effect on all tasks' validation loss
worst = np.argsort(total)[:flipped.size * 2]
found = np.isin(flipped, worst).sum()
print(f"{found} of the {flipped.size} flipped rows are among the {worst.size} rows with the "
      f"most negative effect (chance: {flipped.size * worst.size / len(y):.1f})")

# %%
# Row-level agreement with leave-one-out
# --------------------------------------
# Refit once per row for a sample of rows: the 20 most harmful and 20 others. Each point is
# one (row, target task) pair.
sample = np.concatenate([worst[:20], rng.choice(len(y), size=20, replace=False)])
agreement = InfluenceAgreementDisplay.from_estimator(
    influence, X, y, tasks=tasks, X_val=X_test, y_val=y_test, tasks_val=tasks_test,
    level="row", rows=sample)
print(f"Pearson {agreement.pearson_:.3f}, Spearman {agreement.spearman_:.3f}")
plt.show()

# %%
# Drop the harmful rows and refit
# -------------------------------
# :class:`~mtif_sklearn.NegativeTransferSelector` cross-fits the scores (no test rows are
# used), drops at most 2% of the rows (only those with a negative score) and refits. The display
# compares the held-out accuracy per task with a model trained on every row.
#
# On these data it does not pay off: flipped fingerprint labels are hard to tell from the
# data's own noise, few of the removed rows are flipped ones, and held-out accuracy drops
# (most on the corrupted task). The lesson is the one in the README: check a selection on
# held-out data, and tune ``fraction`` with ``0`` in the grid (see the grid-search example)
# before dropping rows for real.
selector = NegativeTransferSelector(model, fraction=0.02, cv=3, random_state=0)
selector.fit(X, y, tasks=tasks)
print(f"removed {selector.removed_.size} rows, {np.isin(selector.removed_, flipped).sum()} "
      "of them flipped")
baseline = clone(model).fit(X, y, tasks=tasks)
SelectionDisplay.from_estimator(selector, X_test, y_test, tasks=tasks_test, baseline=baseline)
plt.show()
