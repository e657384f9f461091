"""
Task relatedness on the school data
===================================

Which schools help or hurt each other's exam-score predictions? The ILEA school data (139
schools, 15362 pupils, exam score as target) is the classic multitask regression benchmark.
We fit a :class:`~mtif_sklearn.MultitaskRidge` (every school's coefficients shrink towards a
shared vector), measure the task-level influence of every school on every other school with
:class:`~mtif_sklearn.MTIFInfluence`, draw the matrix with
:class:`~mtif_sklearn.plotting.TaskInfluenceDisplay`, and check the ranking against
brute-force leave-one-task-out retraining with
:class:`~mtif_sklearn.plotting.InfluenceAgreementDisplay`.

The school data are not shipped with mtif-sklearn (see
:func:`~mtif_sklearn.datasets.load_school` for where they come from). The example reads them
from ``$MTIF_DATA/school``; ``MTIF_DATA`` defaults to ``../shared/data``, relative to the
repository root from which the examples are run. Without the data it says so and runs on a
synthetic stand-in, so that it still builds everywhere.
"""

# %%
# Load the data
# -------------
import os

import matplotlib.pyplot as plt
import numpy as np

from mtif_sklearn import MTIFInfluence, MultitaskRidge
from mtif_sklearn.datasets import load_school, make_multitask_regression
from mtif_sklearn.plotting import InfluenceAgreementDisplay, TaskInfluenceDisplay

data_home = os.environ.get("MTIF_DATA", "../shared/data")
try:
    X, y, schools = load_school(data_home=data_home)
    print(f"school data: {X.shape[0]} pupils, {X.shape[1]} attributes, "
          f"{np.unique(schools).size} schools")
except FileNotFoundError as error:
    print(f"No school data here: {error}\nRunning on a synthetic stand-in instead; set "
          "MTIF_DATA to the folder holding school/ to see the real results.")
    X, y, schools = make_multitask_regression(n_tasks=30, n_samples_per_task=60, n_features=27,
                                              delta=0.5, eps=0.5, random_state=0)

# %%
# Which schools help or hurt which
# --------------------------------
# ``task_influence_[l, k]`` estimates how school k's validation loss would change if school l
# were left out of training: positive (blue) means l helps k, negative (red) means l hurts k.
# The diagonal (a school's effect on itself) is masked: it is not a relatedness number. The
# influence of every school on every other takes one factorisation, well under a second for
# all 139. The colour scale stops at the 99th percentile of the magnitudes (the arrows of the
# colour bar): a few extreme pairs would otherwise leave every other cell white.
influence = MTIFInfluence(MultitaskRidge(alpha=1.0), validation_fraction=0.25, random_state=0)
influence.fit(X, y, tasks=schools)
print(f"{len(influence.tasks_)} schools, task_influence_ of shape "
      f"{influence.task_influence_.shape}")
display = TaskInfluenceDisplay.from_estimator(influence)
plt.show()

# %%
# Rank the schools by their mean effect on the others: the most negative ones are the
# schools whose pupils pull the shared coefficients away from what the rest need.
off_diagonal = influence.task_influence_.copy()
np.fill_diagonal(off_diagonal, np.nan)
mean_effect = np.nanmean(off_diagonal, axis=1)
order = np.argsort(mean_effect)
for school in order[:3]:
    print(f"school {influence.tasks_[school]}: mean effect on the others "
          f"{mean_effect[school]:+.3f} (hurts)")
for school in order[-3:]:
    print(f"school {influence.tasks_[school]}: mean effect on the others "
          f"{mean_effect[school]:+.3f} (helps)")

# %%
# Check against retraining
# ------------------------
# Leave-one-task-out refits the model once per school on the same training rows and measures
# the same quantity. The first 30 schools keep this fast (one refit per school). Every point
# is one (removed school, target school) pair.
chosen = np.isin(schools, np.unique(schools)[:30])
X, y, schools = X[chosen], y[chosen], schools[chosen]
influence = MTIFInfluence(MultitaskRidge(alpha=1.0), validation_fraction=0.25, random_state=0)
influence.fit(X, y, tasks=schools)
agreement = InfluenceAgreementDisplay.from_estimator(influence, X, y, tasks=schools,
                                                     level="task")
print(f"Pearson {agreement.pearson_:.3f}, Spearman {agreement.spearman_:.3f} over "
      f"{agreement.mtif.size} pairs")
plt.show()
