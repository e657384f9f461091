"""The seam between multitask models and everything that measures them.

A multitask model (paper eq. 2) has task parameters beta_k (q numbers per task) and shared
parameters g (p numbers). Everything the package computes about a model -- influence
(:class:`~mtif_sklearn.MTIFInfluence`), brute-force refits (:mod:`mtif_sklearn.retrain`), the
selectors and the affinity baselines -- talks to it through two things defined here:

- the estimator hooks of :class:`MultitaskModel`: validate rows once into a
  :class:`~mtif_sklearn._tasks.TaskData`, fit on it, hand out the fitted :class:`Params` and
  the objective evaluated on some rows;
- :class:`MultitaskObjective`: a STATELESS objective bound to rows (like scikit-learn's
  ``LinearModelLoss``, the parameters are an argument of every method). It gives per-row losses
  and gradients with respect to (beta_k, g), the gradient of every task's term, and the blocks
  of the arrow-shaped Hessian (:class:`ArrowBlocks`).

The objective every model exposes is

    L(beta, g) = sum_k T_k(beta_k, g) + R(g),
    T_k = sum_{i in task k} w_i l(y_i, f_k(x_i)) + (task k's regulariser),

with ``w_i`` the row's weight divided by its task's total weight n_k (eq. 5), so that removing
a row (weight 0) or a task (T_k dropped, eq. 11) is a change of these terms.

Optional members come with a capability (:data:`CAPABILITIES`); a caller that needs one checks
it up front with :func:`require_capability` and the user gets a message naming the model and
what it lacks, never an AttributeError deep inside a computation.
"""

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = [
    "CAPABILITIES",
    "ArrowBlocks",
    "MultitaskModel",
    "MultitaskObjective",
    "Params",
    "has_capability",
    "hessian_blocks_to_factor",
    "require_capability",
]

#: What each optional capability of an objective (or an estimator) provides.
CAPABILITIES = {
    "newton": "Newton-step removal effects (MTIFInfluence(method='newton')): the objective's "
              "row_curvatures (each row's loss Hessian as a rank-one term) and "
              "task_shared_hessian",
    "refit": "refitting with rows or tasks removed (mtif_sklearn.retrain, the selectors): the "
             "estimator's _mtif_fit",
    "affinity": "the training-dynamics baselines (cosine_affinity, tag_affinity, etap_affinity):"
                " the objective's shared_gradients, shared_step and initial_params",
    "linearisation": "Grad-TAG (gradtag_affinity): the objective's linearisation (per-row "
                     "output gradients of a model with one output)",
}


@dataclass(frozen=True)
class Params:
    """A point in parameter space: task blocks and the shared block.

    Either one point (``task`` of shape (K, q), ``shared`` of shape (p,)) or a batch of M points
    (``task`` of shape (M, K, q), ``shared`` of shape (M, p)).

    Parameters
    ----------
    task : ndarray of shape (K, q) or (M, K, q)
        Task parameters beta_k, rows in task-code order.
    shared : ndarray of shape (p,) or (M, p)
        Shared parameters g.
    """

    task: np.ndarray
    shared: np.ndarray

    @property
    def batched(self):
        """True for a batch of points."""
        return np.ndim(self.task) == 3

    def __iter__(self):  # ``task, shared = params``
        return iter((self.task, self.shared))


@dataclass(frozen=True)
class ArrowBlocks:
    """The non-zero blocks of an arrow-shaped Hessian (paper eq. 7, Lemmas A.1-A.2).

    Parameters
    ----------
    task : array of shape (K, q, q)
        Task blocks H_kk.
    coupling : array of shape (K, q, p)
        Task-shared blocks H_k,K+1.
    shared : array of shape (p, p)
        Shared block H_K+1,K+1.
    """

    task: object
    coupling: object
    shared: object

    def __iter__(self):  # ``task, coupling, shared = blocks``
        return iter((self.task, self.coupling, self.shared))


@runtime_checkable
class MultitaskObjective(Protocol):
    """A multitask objective bound to rows, evaluated at parameters passed in (stateless).

    Attributes
    ----------
    codes : ndarray of int, shape (n,)
        Task code (position in the model's ``tasks_``) of every row.
    row_weights : ndarray of shape (n,)
        ``w_i / n_k``: each row's weight in the objective (eq. 5).
    n_tasks, n_task_params, n_shared_params : int
        K, q and p.
    capabilities : frozenset of str
        Optional members implemented (keys of :data:`CAPABILITIES`).

    Notes
    -----
    ``rows`` arguments select rows (a slice or integer positions; None: all). Gradients and
    curvatures of rows are UNWEIGHTED (multiply by ``row_weights`` to get their part of L).
    A shared part returned as None means the rows do not touch the shared parameters (the
    linear models, whose task parameters are tied to the shared ones only by the regulariser).
    """

    codes: np.ndarray
    row_weights: np.ndarray
    n_tasks: int
    n_task_params: int
    n_shared_params: int
    capabilities: frozenset

    def row_losses(self, params, rows=None):
        """Per-row losses: (m,) at one point, (M, m) at a batch of points (every row, every
        point)."""

    def row_gradients(self, params, rows=None):
        """Per-row loss gradients (task part (m, q), shared part (m, p) or None). At a batch of
        points the batch size must equal the number of rows: row i at point i."""

    def task_gradients(self, params):
        """Gradient of every task's term T_k: task parts (K, q), shared parts (K, p); with a
        leading batch axis for a batch of points."""

    def shared_penalty_gradient(self, params):
        """Gradient of R(g): (p,) or (M, p)."""

    def hessian_blocks(self, params, active=None):
        """:class:`ArrowBlocks` of the Hessian of L; ``active`` (bool, K) keeps only those
        tasks' terms in the shared block (the others are treated as removed from it)."""

    def task_sums(self, values):
        """Sums of ``values`` (n, ...) over each task's rows: (K, ...)."""


class MultitaskModel(Protocol):
    """The estimator hooks of a multitask model (private methods, documented here).

    Fitted attributes ``tasks_`` (sorted task labels) and ``task_weight_sum_`` (n_k).

    - ``_mtif_data(X, y=None, tasks=None, sample_weight=None, *, reset)``: validate rows once
      into a :class:`~mtif_sklearn._tasks.TaskData` (``reset=True`` before fitting: the task
      labels define ``tasks_``; ``reset=False`` against the fitted model).
    - ``_mtif_fit(data)``: what ``fit`` does, on a TaskData (no second validation).
    - ``_mtif_refit(data, *, task_weight_sum=None, dropped_tasks=(), init=None)``: minimise
      the objective on a TaskData (capability "refit"; for the estimators that train, the same
      as ``_mtif_fit``). ``task_weight_sum`` fixes n_k (a removed row keeps its task's
      normaliser, eq. 5); ``dropped_tasks`` (task codes) leave the shared fit with their
      regulariser (eq. 11) and get a head fitted against the resulting shared parameters;
      ``init`` is a warm start from ``_mtif_warm_start``.
    - ``_mtif_objective(data, *, view="influence")``: the :class:`MultitaskObjective` on these
      rows. ``view="training"`` asks for the objective over every trainable parameter as the
      optimiser sees it (the affinity baselines); the linear models have one view.
    - ``_mtif_params(view="influence")``: the fitted :class:`Params` (of that view).
    - ``_mtif_warm_start()``: whatever ``_mtif_fit(init=...)`` accepts to start from the fit.
    - ``_mtif_capabilities``: frozenset of the estimator's capabilities ("refit").
    - ``_mtif_regularisers``: names of its regularisation parameters (for advice in errors).
    """


def hessian_blocks_to_factor(objective, params, **kwargs):
    """The objective's :class:`ArrowBlocks` at ``params`` for the arrow factorisation.

    An objective whose coupling blocks are diagonal (the linear models) may offer
    ``diagonal_hessian_blocks(params, ...)``, the same blocks with the coupling as its (K, q)
    diagonals (no dense K x q x q stack of zeros); otherwise ``hessian_blocks``. ``kwargs``
    (e.g. ``active``) go to the method.
    """
    method = getattr(objective, "diagonal_hessian_blocks", objective.hessian_blocks)
    return method(params, **kwargs)


def has_capability(obj, capability):
    """Whether an objective or estimator declares ``capability``."""
    if capability not in CAPABILITIES:
        raise ValueError(f"Unknown capability {capability!r}; known: {sorted(CAPABILITIES)}.")
    declared = getattr(obj, "capabilities", None)
    if declared is None:
        declared = getattr(obj, "_mtif_capabilities", frozenset())
    return capability in declared


def require_capability(obj, capability, *, model, needed_by):
    """Raise a clear error when ``obj`` lacks ``capability``.

    Parameters
    ----------
    obj : objective or estimator
        What must provide the capability.
    capability : str
        A key of :data:`CAPABILITIES`.
    model : object
        The user's model, named in the message.
    needed_by : str
        What needs it (e.g. "MTIFInfluence(method='newton')").
    """
    if not (hasattr(model, "_mtif_objective") or hasattr(obj, "row_losses")):
        raise TypeError(
            f"{needed_by} needs a model implementing the multitask objective protocol "
            f"(mtif_sklearn.base); {type(model).__name__} does not. Use MultitaskRidge, "
            "MultitaskLogistic or a model from mtif_sklearn.torch.")
    if not has_capability(obj, capability):
        raise ValueError(
            f"{needed_by} needs {CAPABILITIES[capability]}, which {type(model).__name__} does "
            "not provide. Use a model that does (MultitaskRidge and MultitaskLogistic provide "
            "every capability), or another method."
        )


def zeros_like_params(params):
    """A point of zeros with the shape of ``params``."""
    return Params(np.zeros_like(params.task), np.zeros_like(params.shared))
