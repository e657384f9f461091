"""Task-affinity baselines next to MTIF (cosine, TAG, ETAP, Grad-TAG) and task grouping.

Every affinity is a (n_tasks, n_tasks) matrix in the model's ``tasks_`` order read as
``[source, target]``: entry ``[i, j]`` says how much source task i helps target task j, larger
meaning more helpful -- the direction and sign of ``MTIFInfluence.task_influence_`` and
:func:`mtif_sklearn.retrain.loto_effects`, so their columns can be rank-compared directly.
"""

from ._gradtag import gradtag_affinity
from ._grouping import group_tasks, grouping_score
from ._scores import cosine_affinity, etap_affinity, tag_affinity

__all__ = [
    "cosine_affinity",
    "etap_affinity",
    "gradtag_affinity",
    "group_tasks",
    "grouping_score",
    "tag_affinity",
]
