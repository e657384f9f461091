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

The data are read from ``shared/data/school`` next to the repository (``../shared/data`` from
the project root). Without that folder the example says so and runs on a synthetic stand-in
of the same shape, so that it still builds everywhere.
"""

# %%
# Load the data
# -------------
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from mtif_sklearn import MTIFInfluence, MultitaskRidge
from mtif_sklearn.datasets import load_school, make_multitask_regression
from mtif_sklearn.plotting import InfluenceAgreementDisplay, TaskInfluenceDisplay


def find_shared_data(name):
    """``<repo>/../shared/data/<name>``, from this file (``<repo>/examples``) or the working
    directory (the examples folder when sphinx-gallery runs it, or the repository root)."""
    starts = [Path.cwd() / "examples", Path.cwd()]
    if "__file__" in globals():
        starts.insert(0, Path(__file__).resolve().parent)
    for examples in starts:
        folder = examples.parent.parent / "shared" / "data" / name
        if folder.is_dir():
            return folder
    return None


folder = find_shared_data("school")
if folder is not None:
    X, y, schools = load_school(folder)
    print(f"school data: {X.shape[0]} pupils, {X.shape[1]} attributes, "
          f"{np.unique(schools).size} schools")
else:
    print("shared/data/school not found next to the repository: this example needs the ILEA "
          "school data to show real results. Running on a synthetic stand-in instead.")
    X, y, schools = make_multitask_regression(n_tasks=30, n_samples_per_task=60, n_features=27,
                                              delta=0.5, eps=0.5, random_state=0)

# %%
# The first 30 schools keep this example fast (one refit per school below); the influence
# computation itself takes well under a second for all 139.
chosen = np.isin(schools, np.unique(schools)[:30])
X, y, schools = X[chosen], y[chosen], schools[chosen]

influence = MTIFInfluence(MultitaskRidge(alpha=1.0), validation_fraction=0.25, random_state=0)
influence.fit(X, y, tasks=schools)
print(f"{len(influence.tasks_)} schools, task_influence_ of shape "
      f"{influence.task_influence_.shape}")

# %%
# Which schools help or hurt which
# --------------------------------
# ``task_influence_[l, k]`` estimates how school k's validation loss would change if school l
# were left out of training: positive (blue) means l helps k, negative (red) means l hurts k.
# The diagonal (a school's effect on itself) is masked: it is not a relatedness number.
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
# the same quantity. Every point is one (removed school, target school) pair.
agreement = InfluenceAgreementDisplay.from_estimator(influence, X, y, tasks=schools,
                                                     level="task")
print(f"Pearson {agreement.pearson_:.3f}, Spearman {agreement.spearman_:.3f} over "
      f"{agreement.mtif.size} pairs")
plt.show()
