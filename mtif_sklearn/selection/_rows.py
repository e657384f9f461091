"""Data selection with MTIF: drop the training rows that cause negative transfer, then refit.

The paper's recipe (Section 5.3, Appendix C.3): score every training row by its effect on the
validation loss, remove the most harmful ones, retrain. Scores from one validation split
overfit that split (DESIGN.md, NegativeTransferSelector), so by default every row is scored by
cross-fitting: each task's rows are split into ``cv`` folds, each fold in turn validates a model
fitted on the others, and a row's score is averaged over the folds where it was trained. The
scores come from :meth:`MTIFInfluence.row_scores` (O(n p), never the n x K effects), and a
nested-cross-validation guard keeps a removal only where it lowers the loss on rows that did not
choose it.
"""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import _fit_context, clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import check_is_fitted

from .._dask import is_dask
from .._tasks import target_task_codes, task_folds
from ..base import Params, has_capability
from ..influence import MTIFInfluence
from ..utils._docstring import DOCS, Substitution
from ._base import BaseSelector
from ._dask import fit_dask

__all__ = ["NegativeTransferSelector", "pick_rows"]

#: Shares of a round's proposal the guard tries (the most harmful rows first): a round keeps
#: the largest share that passes the margin.
GUARD_SHARES = (1.0, 0.5, 0.25)


def _take(values, rows):
    return None if values is None else _safe_indexing(values, rows)


def pick_rows(scores, eligible, codes, max_remove, *, available, quota=None,
              negative_only=True):
    """The rows to remove: the lowest scores first, under a total cap and per-task quotas.

    The one selection rule of the selector and of the baselines in
    :mod:`mtif_sklearn.selection` (the same cap and quota semantics everywhere).

    Parameters
    ----------
    scores : ndarray of shape (n_samples,)
        Lower is more harmful (a loss ranking passes minus the loss). NaN: never removed.
    eligible : ndarray of bool, shape (n_samples,)
        Rows that may be removed.
    codes : ndarray of int, shape (n_samples,)
        Task code of every row.
    max_remove : int
        Rows removed at most.
    available : array-like of int, shape (n_tasks,)
        Rows of each task the refit would see; no task loses its last one.
    quota : array-like of int, shape (n_tasks,), default=None
        Rows of each task that may be removed at most (None: no per-task limit).
    negative_only : bool, default=True
        Only rows with a negative score are removed (removing them is predicted to help).

    Returns
    -------
    removed : ndarray of int
        Row indices, lowest score first.
    """
    keep = eligible & np.isfinite(scores)
    if negative_only:
        keep &= scores < 0
    candidates = np.flatnonzero(keep)
    candidates = candidates[np.argsort(scores[candidates], kind="stable")]
    left = np.asarray(available, dtype=np.int64) - 1  # every task keeps one row
    if quota is not None:
        left = np.minimum(left, np.asarray(quota, dtype=np.int64))
    left = left.copy()
    removed = []
    for row in candidates:
        if len(removed) >= max_remove:
            break
        if left[codes[row]] > 0:
            left[codes[row]] -= 1
            removed.append(row)
    return np.asarray(removed, dtype=np.int64)


def task_quota(max_task_fraction, n_rows):
    """Rows of each task that may go in all: ``floor(max_task_fraction * n_k)`` (None: all).

    Parameters
    ----------
    max_task_fraction : float or None
        Share of a task's rows that may be removed at most.
    n_rows : ndarray of int, shape (n_tasks,)
        Rows of every task.

    Returns
    -------
    quota : ndarray of int or None
    """
    if max_task_fraction is None:
        return None
    return np.floor(max_task_fraction * np.asarray(n_rows) + 1e-9).astype(np.int64)


def _fold_influence(template, X, y, tasks, sample_weight, train, val):
    """MTIFInfluence of a model fitted on ``train`` with the rows ``val`` as validation set."""
    influence = clone(template)
    return influence.fit(_take(X, train), _take(y, train), tasks=_take(tasks, train),
                         sample_weight=_take(sample_weight, train), X_val=_take(X, val),
                         y_val=_take(y, val), tasks_val=_take(tasks, val))


def _average_over_folds(fold_scores, folds, n_samples):
    """Each row's score averaged over the folds where it was a training row (NaN: none)."""
    sums = np.zeros(n_samples)
    counts = np.zeros(n_samples)
    for scores, (train, _) in zip(fold_scores, folds, strict=True):
        known = np.isfinite(scores)
        sums[train] += np.where(known, scores, 0.0)
        counts[train] += known
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def _row_losses(model, data, task_params=None):
    """Unweighted loss of every row of ``data`` under a fitted multitask model (with these
    task blocks instead of its own when given)."""
    params = model._mtif_params()
    if task_params is not None:
        params = Params(task_params, params.shared)
    return np.asarray(model._mtif_objective(data).row_losses(params))


def _refit(estimator, data, init_model):
    """``estimator`` fitted on ``data`` (warm-started from ``init_model`` when it can be)."""
    model = clone(estimator)
    if has_capability(model, "refit"):
        return model._mtif_refit(data, init=init_model._mtif_warm_start())
    return model._mtif_fit(data)


def _row_weights(codes, targets, n_tasks, task_weights):
    """Weight of every validation row in the targets' loss: "size" pools the targets' rows,
    "equal" gives every target task the same total weight (a sum of per-task means)."""
    counts = np.bincount(codes, minlength=n_tasks).astype(np.float64)
    is_target = np.zeros(n_tasks, dtype=bool)
    is_target[targets] = True
    weights = np.where(is_target[codes], 1.0, 0.0)
    if task_weights == "equal":
        with np.errstate(invalid="ignore", divide="ignore"):
            weights = weights / counts[codes]
    total = weights.sum()
    return weights / total if total > 0 else weights


def _pair_scores(estimator, data, fit_args, warm_model, active, folds, a, b, target_tasks,
                 task_weights, damping, backend, method):
    """Scores of the guard's nested folds from one model fitted on the ``active`` rows outside
    folds ``a`` and ``b``: its training rows, their scores on fold b's rows, and on fold
    a's rows."""
    rows = np.setdiff1d(active, np.concatenate([folds[a][1], folds[b][1]]))
    model = _refit(estimator, data.take(rows), warm_model)
    template = MTIFInfluence(FrozenEstimator(model), damping=damping, backend=backend,
                             method=method, store_influence=False)
    scores = []
    for held in (b, a):
        with warnings.catch_warnings():
            # These are the rows the model was just fitted on; a model that stops short of
            # the minimum (a network's max_iter) has said so in its own fit already.
            warnings.filterwarnings("ignore", message="The objective's gradient at the frozen",
                                    category=UserWarning)
            influence = _fold_influence(template, *fit_args, rows, folds[held][1])
        scores.append(influence.row_scores(target_tasks=target_tasks,
                                           task_weights=task_weights))
    return rows, scores[0], scores[1]


def _guard_fold(estimator, data, fold_model, train, val, chosen, val_weights):
    """Weighted held-out losses on ``val``: of the fold model (before) and of its refits
    without each prefix of ``chosen`` in :data:`GUARD_SHARES` (after, one column per share)."""
    val_data = data.take(val)
    before = val_weights * _row_losses(fold_model, val_data)
    after = np.empty((val.size, len(GUARD_SHARES)))
    for column, share in enumerate(GUARD_SHARES):
        gone = chosen[:int(np.ceil(share * chosen.size))]
        if gone.size == 0:
            after[:, column] = before
            continue
        kept = np.setdiff1d(train, gone, assume_unique=True)
        after[:, column] = val_weights * _row_losses(
            _refit(estimator, data.take(kept), fold_model), val_data)
    return before, after


def _weighted_change(before, after, weights):
    """The held-out change (a weighted sum over rows) and its standard error, from the spread
    of the per-row changes (weights divided out) around their weighted mean."""
    difference = after - before
    change = float(difference.sum())
    used = weights > 0
    if used.sum() < 2:
        return change, float("nan")
    per_row = difference[used] / weights[used]
    mean = np.average(per_row, weights=weights[used])
    se = np.sqrt(np.sum(weights[used] ** 2 * (per_row - mean) ** 2)
                 * used.sum() / (used.sum() - 1))
    return change, float(se)


def _losses_per_task(model, data, n_tasks):
    """Mean loss of a fitted multitask model on each task's rows (NaN: task absent)."""
    losses = _row_losses(model, data)
    counts = np.bincount(data.codes, minlength=n_tasks).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.bincount(data.codes, weights=losses, minlength=n_tasks) / np.where(
            counts > 0, counts, np.nan)


def _show(label):
    """A task label for a text table: as written, or its repr when it is not printable (a
    newline would break the table) or has surrounding spaces."""
    label = label.item() if hasattr(label, "item") else label
    if isinstance(label, str) and (not label.isprintable() or label != label.strip()):
        return repr(label)
    return str(label)


class NegativeTransferSelector(BaseSelector):
    """Remove the training rows that cause negative transfer (by MTIF), then refit.

    Every training row is scored by its MTIF data-level effect (paper eq. 5, Proposition 1) on
    the validation loss of the target tasks (:meth:`MTIFInfluence.row_scores`, weighted by
    ``task_weights``); at most ``fraction`` of the rows are dropped, most harmful first, but
    only rows whose effect is negative (removing them is predicted to lower the target
    validation loss) and at most ``max_task_fraction`` of any task's rows; the model is
    refitted on the rest (paper Section 5.3, Appendix C.3). ``predict``, ``predict_proba``,
    ``decision_function`` and ``score`` delegate to the refitted ``estimator_``.

    Scores are cross-fitted by default (``cv=5``): each task's rows are split into folds, a
    model is fitted on all folds but one and :class:`MTIFInfluence` measures its training rows'
    effects on the held-out fold; a row's score is its effect averaged over the ``cv - 1`` folds
    where it was trained. Scores from a single validation split overfit that split (DESIGN.md).
    ``cv=None`` is the paper's protocol: one ``validation_fraction`` split.

    ``guard=True`` (default) keeps a removal only where it is seen to help on rows that did not
    choose it (nested cross-validation): for every fold, the rows are chosen again by the same
    rule from scores of models that never saw that fold (one model per pair of folds), that
    fold's model is refitted without the first 100%, 50% and 25% of them, and the targets' loss
    on the fold's held-out rows is compared with the model that kept them. A round keeps the
    largest share of its removal whose pooled held-out change is below minus one standard
    error; a round that keeps nothing ends the selection. Measured (``benchmarks/README.md``,
    5% removal): on clean school and chemical data every unguarded ranking raised the held-out
    loss in 5 of 5 seeds, the guarded selector kept every school row and left chemical
    unchanged; on targeted transfer it let the conflicting rows go (58% lower target loss,
    unguarded 60%). It is conservative on label noise, whose held-out rows are noisy too
    (flipped chemical labels: -0.0006 log loss guarded, -0.0032 unguarded at 1%).

    With ``target_tasks``, the question is which rows of OTHER tasks hurt the targets: by
    default (``include_target_rows=False``) the targets' own rows are scored but never
    removed. Scores are size-aware by default (``task_weights="size"``): with equal task
    weights a row's score falls like n_task^-1.5, so small tasks filled the removal list
    (chemical: 39-46% of the removed rows from a task holding 3.7% of them).

    Changed in the row-selection issue: the (n_samples, n_tasks) ``effects_`` attribute is gone
    (the scores come from :meth:`MTIFInfluence.row_scores` without forming it); use
    ``scores_``, or :class:`MTIFInfluence` with ``cv`` for per-task effects.

    Sign convention (package-wide): an effect estimates ``V_k(without the row) - V_k(with)``;
    negative means the row HURTS task k.

    Parameters
    ----------
    estimator : estimator object
        Unfitted multitask model exposing the objective protocol (:class:`MultitaskRidge`,
        :class:`MultitaskLogistic`). Cloned for every fold and for the final refit.
    fraction : float in [0, 1), default=0.05
        Cap on the rows removed: at most ``floor(fraction * n_scored)`` rows go, where
        ``n_scored`` is the number of rows that got a score (all rows with ``cv``; the
        training part of the split with ``cv=None``). Fewer go when fewer rows have a negative
        score, when ``max_task_fraction`` binds, or when the guard rejects a round. ``0``
        removes nothing (a baseline for grid searches).
    target_tasks : label or array-like of labels, default=None
        Tasks whose validation loss counts. None: all tasks (weighted by ``task_weights``).
    include_target_rows : bool, default=False
        With ``target_tasks``: whether the target tasks' own rows may be removed. False looks
        only for negative transfer from the other tasks. Measured on targeted transfer (a
        30-row target): letting its own rows go cut the gain from 45% to 21% (5% removal) and
        from 58% to 42% (10%). Ignored when ``target_tasks`` is None (every task is a target
        then, and every row a candidate).
    task_weights : {"size", "equal"}, default="size"
        How the target tasks' validation losses are summed (as in
        :meth:`MTIFInfluence.row_scores`): "size" weighs task k by its share of the targets'
        validation rows (the pooled validation loss), "equal" weighs tasks equally (small
        tasks count as much as large ones, so their rows get the largest scores).
    max_task_fraction : float in (0, 1] or None, default=0.2
        Never remove more than ``floor(max_task_fraction * n_k)`` of the ``n_k`` rows of one
        task (over all rounds). None: no limit beyond keeping one row per task. A bound on the
        worst case (the equal-weight selector removed up to 41% of one subject's rows): no
        benchmark result changed with None, the size weights already spread the removals.
    guard : bool or float >= 0, default=True
        Keep a round's removal only if it lowers the target tasks' loss on held-out rows that
        did not choose it (nested cross-validation) by more than ``guard`` standard errors of
        that change: ``True`` means 1, ``0.0`` any decrease, ``False`` no check. Costs
        ``cv * (cv - 1) / 2`` fits (one per pair of folds) plus ``cv`` refits per round.
        Needs ``cv`` with at least 3 folds; pass ``guard=False`` with ``cv=None`` or 2 folds.
        Measured (``benchmarks/README.md``): with a margin of 0, one of five 30-row school
        targets let through a removal that raised its test loss by 21%.
    cv : int, cross-validation generator, iterable or None, default=5
        How scores are cross-fitted. An int ``n``: shuffled ``StratifiedKFold(n)`` on the task
        labels (every task needs at least ``n`` rows). A splitter or an iterable of
        ``(train, validation)`` index pairs: ``split(X, task_codes)`` is called, the integer
        task codes standing in for y, so stratified splitters stratify by task; every fold
        must train on every task. None: one stratified ``validation_fraction`` split.
    validation_fraction : float in (0, 1), default=0.2
        Fraction of each task's rows held out for validation when ``cv=None``; ignored
        otherwise.
    refit_on : {"train", "split"}, default="train"
        Rows of the final refit. "train": every row passed to ``fit`` except the removed ones
        (with ``cv=None`` the validation rows too: they were held out only for scoring and are
        never removed). "split": with ``cv=None``, only the rows the scoring model was trained
        on, minus the removed ones (the paper's protocol: the validation rows stay out). With
        ``cv`` every row is a training row in some fold, so both options are the same.
    n_rounds : int, default=3
        Remove in rounds: each round re-draws the folds, rescores the rows still in and removes
        up to ``fraction / n_rounds`` of the scored rows more (the total cap stays
        ``fraction``); with ``guard`` each round is guarded and a round that keeps nothing ends
        the selection. Costs ``n_rounds`` times the fits. Rows whose harm is masked by other
        rows surface once those are gone: a sub-population that its own task fits well has
        small first-round scores (small gradients) that grow as its members leave. Measured on
        targeted transfer (``benchmarks/README.md``, 10% removal): precision 0.92 and 58%
        lower target loss with 3 rounds, 0.55 and 43% with 1; on gross label errors the share
        of corrupted rows among the removed rose from 86% (1 round) to 98% (3).
    random_state : int, RandomState instance or None, default=None
        Seed of the fold assignment (or of the validation split with ``cv=None``).
    backend : {"auto", "numpy", "cupy"}, default="auto"
        Where :class:`MTIFInfluence` does its linear algebra. "cupy": on the GPU, with NumPy
        inputs and outputs. "auto" follows the inputs, which the selector validates to NumPy,
        so it means NumPy/SciPy here.
    damping : float, default=0.0
        Added to every Hessian block's diagonal by :class:`MTIFInfluence`.
    method : {"first_order", "newton"}, default="first_order"
        How :class:`MTIFInfluence` estimates each row's removal effect (its ``method``, with
        one Newton step): "first_order" is the influence function of the paper; "newton"
        takes a Newton step on the objective without the row and evaluates the validation loss
        there (exact leave-one-out for :class:`MultitaskRidge`, closer to it for
        :class:`MultitaskLogistic`), at the cost of one validation-loss evaluation per row.
    n_jobs : int, default=None
        Folds scored (and guard refits run) in parallel through joblib.
    verbose : int, default=0
        When > 0: prints the rounds as they are scored, measures each task's out-of-fold
        validation loss after selection (every first-round fold refitted without the removed
        rows; ``cv`` extra fits) and prints :meth:`selection_report` at the end of ``fit``.

    Attributes
    ----------
    estimator_ : estimator
        The model refitted without the removed rows; the delegated methods use it.
    support_ : ndarray of bool, shape (n_samples,)
        True for the rows of ``X`` that were kept. With ``refit_on="split"`` the validation rows
        are kept (True) but not used by the refit.
    scores_ : ndarray of shape (n_samples,)
        Each row's score: its effect on the target tasks' validation loss (weighted by
        ``task_weights``), cross-fitted (NaN for rows never scored: the validation rows of
        ``cv=None``). Negative: removing it is predicted to lower the targets' validation loss.
        With ``n_rounds > 1``: the score of the last round the row took part in.
    removed_ : ndarray of int
        Indices of the removed rows of ``X``, in the order they were removed (most harmful
        first within each round).
    influence_ : list of MTIFInfluence
        The fitted influence transformers, one per fold (one with ``cv=None``) of the last
        round scored; their rows are the fold's training rows, ``folds_[i][0]``. They keep no
        n x K matrix (``store_influence=False``): use their ``row_scores`` or
        ``harmful_rows``.
    folds_ : list of (ndarray, ndarray)
        (training rows, validation rows) of every fold of the last round scored, as indices
        into ``X``.
    tasks_ : ndarray of shape (n_tasks,)
        Sorted task labels.
    target_tasks_ : ndarray
        The tasks whose validation loss was counted.
    n_candidates_ : int
        Number of removable rows (see ``include_target_rows``) with a negative score in the
        first round (before the caps).
    guard_report_ : dict of lists
        One entry per guarded round (empty without ``guard``; ``pandas.DataFrame(guard_report_)``
        makes a table): ``round``, ``n_proposed`` (rows the round would remove),
        ``heldout_loss_before`` and ``heldout_loss_after`` (the targets' loss on held-out
        rows of the fold models with every row and refitted without the rows the other folds
        chose; weighted by ``task_weights``), ``change_se`` (standard error of the change over
        the held-out rows) and ``accepted``.
    report_ : dict of lists
        One entry per task (``pandas.DataFrame(report_)`` makes a table): ``task``, ``target``
        (bool), ``n_rows``, ``n_removed``, ``removed_fraction``, ``validation_loss_before``
        (out-of-fold mean validation loss of the first round's fold models),
        ``predicted_change`` (the first-order change of that loss from removing the rows:
        summed MTIF effects, added up over the rounds),
        ``validation_loss_after`` (measured by refitting every fold without the removed rows;
        NaN unless ``verbose > 0``). The "after" loss is in-sample for the selection: the same
        folds chose the rows, so it is optimistic; judge selection on held-out data.
    classes_ : ndarray of shape (n_classes,)
        Class labels of a classifier ``estimator_``.
    n_features_in_ : int
        Number of columns of ``X`` seen in fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names of ``X`` in fit, when it had string column names.

    See Also
    --------
    MTIFInfluence : The data- and task-level effects the scores come from.
    mtif_sklearn.selection.highest_loss_rows : The cross-fitted highest-loss baseline.
    mtif_sklearn.selection.cleanlab_label_issues : cleanlab's label issues (optional).
    mtif_sklearn.retrain.loo_effects : The same row effects by brute-force refitting.

    Notes
    -----
    Removal means weight 0 in the training objective of the fold model (DESIGN.md section 2),
    so a score is the first-order effect of dropping that one row; removing many rows at once
    adds their first-order effects. Only ``tasks`` and ``sample_weight`` are passed to the
    inner fits. With ``sklearn.set_config(enable_metadata_routing=True)``, ``tasks`` is
    requested by default and reaches the fold fits, the influence computation, the refit and
    the delegated methods; ``sample_weight`` goes in only when the inner estimator requests it
    (``estimator.set_fit_request(sample_weight=True)``).

    Which tool for which problem (``benchmarks/README.md``): rows of other tasks that hurt a
    target task (negative transfer) are what this selector finds and a loss ranking cannot.
    For label noise within a task, cross-fitted highest-loss removal
    (:func:`~mtif_sklearn.selection.highest_loss_rows`) or cleanlab
    (:func:`~mtif_sklearn.selection.cleanlab_label_issues`) are as good or better.

    Examples
    --------
    >>> import numpy as np
    >>> from mtif_sklearn import MultitaskRidge, NegativeTransferSelector
    >>> from mtif_sklearn.datasets import make_multitask_regression
    >>> X, y, tasks = make_multitask_regression(n_tasks=4, n_samples_per_task=60, n_features=5,
    ...                                         random_state=0)
    >>> corrupted = [0, 1, 60, 61, 120, 121]  # two gross label errors in tasks 0, 1, 2
    >>> y[corrupted] += np.array([20.0, -20.0] * 3)
    >>> selector = NegativeTransferSelector(MultitaskRidge(alpha=0.1), fraction=0.05,
    ...                                     random_state=0).fit(X, y, tasks=tasks)
    >>> removed = selector.removed_
    >>> len(removed) <= 0.05 * len(y), bool(np.all(selector.scores_[removed] < 0))
    (True, True)
    >>> sorted(removed[:6].tolist())  # the six most harmful rows are the corrupted ones
    [0, 1, 60, 61, 120, 121]
    >>> selector.predict(X[:2], tasks=tasks[:2]).shape
    (2,)
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "_mtif_objective"])],
        "fraction": [Interval(Real, 0, 1, closed="left")],
        "target_tasks": ["array-like", str, Integral, None],
        "include_target_rows": ["boolean"],
        "task_weights": [StrOptions({"size", "equal"})],
        "max_task_fraction": [Interval(Real, 0, 1, closed="right"), None],
        "guard": ["boolean", Interval(Real, 0, None, closed="left")],
        "cv": [Interval(Integral, 2, None, closed="left"), "cv_object", None],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "refit_on": [StrOptions({"train", "split"})],
        "n_rounds": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "backend": [StrOptions({"auto", "numpy", "cupy"})],
        "damping": [Interval(Real, 0, None, closed="left")],
        "method": [StrOptions({"first_order", "newton"})],
        "n_jobs": [Integral, None],
        "verbose": ["verbose"],
    }

    def __init__(self, estimator, *, fraction=0.05, target_tasks=None, include_target_rows=False,
                 task_weights="size", max_task_fraction=0.2, guard=True, cv=5,
                 validation_fraction=0.2, refit_on="train", n_rounds=3, random_state=None,
                 backend="auto", damping=0.0, method="first_order", n_jobs=None, verbose=0):
        self.estimator = estimator
        self.fraction = fraction
        self.target_tasks = target_tasks
        self.include_target_rows = include_target_rows
        self.task_weights = task_weights
        self.max_task_fraction = max_task_fraction
        self.guard = guard
        self.cv = cv
        self.validation_fraction = validation_fraction
        self.refit_on = refit_on
        self.n_rounds = n_rounds
        self.random_state = random_state
        self.backend = backend
        self.damping = damping
        self.method = method
        self.n_jobs = n_jobs
        self.verbose = verbose

    # -- fitting -----------------------------------------------------------------------------
    @Substitution(**DOCS)
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, tasks=None, sample_weight=None):
        """Score every row, remove the harmful ones and refit the estimator on the rest.

        Parameters
        ----------
        {selector_fit_data}

        Returns
        -------
        self : NegativeTransferSelector
            The fitted selector.
        """
        if is_dask(X):  # dask rows: folds and scores by block (selection._dask)
            return fit_dask(self, X, y, tasks, sample_weight)
        X, y, sample_weight = self._fit_inputs(X, y, tasks, sample_weight)
        if self._guard_on() and self.cv is None:
            raise ValueError(
                "guard=True needs cross-fitted scores (cv with at least 3 folds): it re-chooses "
                "the rows without each fold and checks them on that fold. Pass guard=False "
                "with cv=None (the paper's single split), or use cv=5.")
        data = clone(self.estimator)._mtif_data(X, y, tasks, sample_weight, reset=True)
        codes, self.tasks_ = data.codes, np.asarray(data.task_labels)
        n_samples, n_tasks = data.n_samples, data.n_tasks
        target_codes = target_task_codes(self.target_tasks, self.tasks_)
        self.target_tasks_ = self.tasks_[target_codes]
        removable = np.ones(n_samples, dtype=bool)
        if self.target_tasks is not None and not self.include_target_rows:
            removable &= ~np.isin(codes, target_codes)
        n_rows = np.bincount(codes, minlength=n_tasks)
        quota = task_quota(self.max_task_fraction, n_rows)

        random_state = check_random_state(self.random_state)
        template = MTIFInfluence(clone(self.estimator), damping=self.damping,
                                 backend=self.backend, method=self.method,
                                 store_influence=False)
        fit_args = (X, y, tasks, sample_weight)
        self.scores_ = np.full(n_samples, np.nan)
        self.guard_report_ = {name: [] for name in (
            "round", "n_proposed", "n_kept", "heldout_loss_before", "heldout_loss_after",
            "change_se")}
        active = np.arange(n_samples)
        removed, predicted_change = [], np.zeros(n_tasks)
        for round_ in range(self.n_rounds):
            # Each round draws fresh folds and rescores the rows still in: rows whose harm was
            # masked by other rows surface once those are gone (measured: see n_rounds).
            folds = [(active[train], active[val]) for train, val in task_folds(
                codes[active], self.tasks_.tolist(), self.cv,
                validation_fraction=self.validation_fraction, random_state=random_state)]
            if self._guard_on() and len(folds) < 3:
                raise ValueError(
                    f"guard=True needs cv with at least 3 folds; got {len(folds)}. Use more "
                    "folds or pass guard=False.")
            if self.verbose:
                print(f"[NegativeTransferSelector] round {round_ + 1}/{self.n_rounds}: scoring "
                      f"{active.size} rows of {n_tasks} tasks on {len(folds)} fold(s)")
            influences = Parallel(n_jobs=self.n_jobs, verbose=max(0, self.verbose - 1))(
                delayed(_fold_influence)(template, *fit_args, train, val)
                for train, val in folds)
            for influence in influences:
                if not np.array_equal(influence.tasks_, self.tasks_):
                    raise ValueError("A fold model did not see every task; use a splitter "
                                     "stratified by task.")
            fold_scores = [influence.row_scores(target_tasks=self.target_tasks_,
                                                task_weights=self.task_weights)
                           for influence in influences]
            scores = _average_over_folds(fold_scores, folds, n_samples)
            scored = np.isfinite(scores)
            self.scores_[scored] = scores[scored]
            eligible = removable & np.isin(np.arange(n_samples), active)
            if round_ == 0:
                n_scored = self._n_scored = int(scored.sum())
                self.n_candidates_ = int(np.sum(eligible & (scores < 0)))
                loss_before = _fold_validation_losses(influences, folds, codes, n_tasks)
                self._first_folds = folds
            # The rows of the final refit still in: every task must keep one of them.
            refit_rows = (np.intersect1d(self._first_folds[0][0], active)
                          if self.cv is None and self.refit_on == "split" else active)
            # The cap grows evenly over the rounds: fraction * n_scored in total.
            cap = int(np.floor(self.fraction * n_scored * (round_ + 1) / self.n_rounds + 1e-9))
            cap_left = cap - sum(len(r) for r in removed)
            quota_left = (None if quota is None else
                          quota - np.bincount(codes[np.concatenate([[], *removed]).astype(int)],
                                              minlength=n_tasks))
            available = np.bincount(codes[refit_rows], minlength=n_tasks)
            new = pick_rows(scores, eligible, codes, cap_left, available=available,
                            quota=quota_left)
            self.influence_, self.folds_ = influences, folds
            share = 1.0
            if self._guard_on() and new.size:
                share = self._guard_round(round_, data, fit_args, influences, folds, active,
                                          eligible, cap_left, quota_left, target_codes,
                                          new.size)
                new = new[:int(np.ceil(share * new.size))]
            predicted_change += _predicted_change(influences, folds, codes, new, n_tasks,
                                                  fit_args)
            removed.append(new)
            active = np.setdiff1d(active, new)
            if new.size == 0:
                # Nothing harmful is left, or the held-out rows supported none of the
                # proposal: more rounds would rescore the same rows.
                break
        self.removed_ = (np.concatenate(removed).astype(np.int64) if removed
                         else np.zeros(0, dtype=np.int64))
        self.support_ = np.ones(n_samples, dtype=bool)
        self.support_[self.removed_] = False

        refit_rows = (self._first_folds[0][0] if self.cv is None and self.refit_on == "split"
                      else np.arange(n_samples))
        kept = refit_rows[self.support_[refit_rows]]
        self.estimator_ = clone(self.estimator)
        fit_params = {"tasks": _take(tasks, kept), "sample_weight": _take(sample_weight, kept)}
        self.estimator_.fit(_take(X, kept), _take(y, kept),
                            **{k: v for k, v in fit_params.items() if v is not None})

        after = np.full(n_tasks, np.nan)
        if self.verbose:
            after = self._measure_after(data, n_tasks)
        self.report_ = self._build_report(codes, n_tasks, target_codes, loss_before,
                                          predicted_change, after)
        if self.verbose:
            print(self.selection_report())
        return self

    def _guard_round(self, round_, data, fit_args, influences, folds, active, eligible,
                     cap_left, quota_left, target_codes, n_proposed):
        """Nested cross-validation of one round's removal; records it in ``guard_report_``.

        For fold j the rows are chosen again, by the same rule scaled to the fold's training
        rows, from scores that never saw fold j: for every other fold j', a model fitted
        without folds j and j' scores the rows on fold j' (one model per pair of folds serves
        both). Fold j's model is then refitted without the chosen rows and compared with
        itself on fold j's target rows. Measured: reusing the scoring models (which trained on
        fold j) instead made the held-out loss fall in every fold of a chemical target while
        its test loss rose; with the pairs both agree.
        """
        codes, n_tasks, n_samples = data.codes, data.n_tasks, data.n_samples
        n_folds = len(folds)
        pairs = [(a, b) for a in range(n_folds) for b in range(a + 1, n_folds)]
        pair_scores = Parallel(n_jobs=self.n_jobs)(
            delayed(_pair_scores)(self.estimator, data, fit_args, influences[a].estimator_,
                                  active, folds, a, b, self.target_tasks_, self.task_weights,
                                  self.damping, self.backend, self.method)
            for a, b in pairs)
        nested_scores = [[None] * n_folds for _ in range(n_folds)]
        for (a, b), (rows, scores_on_b, scores_on_a) in zip(pairs, pair_scores, strict=True):
            nested_scores[a][b] = (rows, scores_on_b)  # held out: a; validated on b
            nested_scores[b][a] = (rows, scores_on_a)
        n_active = np.bincount(codes[active], minlength=n_tasks).astype(np.float64)
        all_val = np.concatenate([val for _, val in folds])
        weights = np.zeros(n_samples)
        weights[all_val] = _row_weights(codes[all_val], target_codes, n_tasks,
                                        self.task_weights)
        plans = []
        for number, (train, val) in enumerate(folds):
            parts = [entry for entry in nested_scores[number] if entry is not None]
            nested = _average_over_folds([scores for _, scores in parts],
                                         [(rows, None) for rows, _ in parts], n_samples)
            in_train = np.bincount(codes[train], minlength=n_tasks)
            # The round's cap and quotas scaled to the fold's training rows (rounded, so that
            # a cap of one row stays one row).
            cap = max(1, int(np.round(cap_left * train.size / active.size)))
            quota = (None if quota_left is None else np.round(
                quota_left * in_train / np.where(n_active > 0, n_active, 1)))
            chosen = pick_rows(nested, eligible & ~np.isin(np.arange(n_samples), val),
                               codes, cap, available=in_train, quota=quota)
            plans.append((influences[number].estimator_, train, val, chosen))
        results = Parallel(n_jobs=self.n_jobs)(
            delayed(_guard_fold)(self.estimator, data, model, train, val, chosen,
                                 weights[val]) for model, train, val, chosen in plans)
        before = np.concatenate([b for b, _ in results])
        after = np.vstack([a for _, a in results])
        row_weights = weights[np.concatenate([val for _, _, val, _ in plans])]
        margin = self._guard_margin()
        best, verdicts = None, []
        for column, share in enumerate(GUARD_SHARES):  # largest share first
            change, se = _weighted_change(before, after[:, column], row_weights)
            passed = change < -margin * (0.0 if np.isnan(se) else se)
            verdicts.append((share, change, se, passed))
            if passed and best is None:
                best = column
        share, change, se, _ = verdicts[0 if best is None else best]
        kept = 0.0 if best is None else share
        report = self.guard_report_
        report["round"].append(round_ + 1)
        report["n_proposed"].append(int(n_proposed))
        report["n_kept"].append(int(np.ceil(kept * n_proposed)))
        report["heldout_loss_before"].append(float(before.sum()))
        report["heldout_loss_after"].append(float(before.sum() + change))
        report["change_se"].append(se)
        if self.verbose:
            tried = ", ".join(f"{100 * s_:.0f}%: {c:+.3g} +- {e:.2g}"
                              for s_, c, e, _ in verdicts)
            print(f"[NegativeTransferSelector] guard, round {round_ + 1}: held-out change of "
                  f"the target loss ({before.sum():.5g} before) keeping {tried} of the "
                  f"proposal -> keeps {100 * kept:.0f}%")
        return kept

    def _measure_after(self, data, n_tasks):
        """Out-of-fold validation loss per task of the first round's fold models refitted
        without the removed rows (weighted over folds by validation rows, as
        ``validation_loss_before``)."""
        total = np.zeros(n_tasks)
        rows = np.zeros(n_tasks)
        for train, val in self._first_folds:
            kept = train[self.support_[train]]
            model = clone(self.estimator)._mtif_fit(data.take(kept))
            losses = _losses_per_task(model, data.take(val), n_tasks)
            counts = np.bincount(data.codes[val], minlength=n_tasks).astype(np.float64)
            total += np.nan_to_num(losses) * counts
            rows += np.where(np.isnan(losses), 0.0, counts)
        with np.errstate(invalid="ignore", divide="ignore"):
            return total / rows

    def _build_report(self, codes, n_tasks, target_codes, before, change, after):
        n_rows = np.bincount(codes, minlength=n_tasks)
        n_removed = np.bincount(codes[self.removed_], minlength=n_tasks)
        target = np.zeros(n_tasks, dtype=bool)
        target[target_codes] = True
        return {
            "task": self.tasks_.tolist(),
            "target": target.tolist(),
            "n_rows": n_rows.tolist(),
            "n_removed": n_removed.tolist(),
            "removed_fraction": (n_removed / n_rows).tolist(),
            "validation_loss_before": before.tolist(),
            "predicted_change": change.tolist(),
            "validation_loss_after": after.tolist(),
        }

    def _guard_on(self):
        """``guard`` is a margin (0.0 included) or True; only False turns it off."""
        return not (isinstance(self.guard, bool | np.bool_) and not self.guard)

    def _guard_margin(self):
        """The guard's margin in standard errors (True: 1)."""
        return 1.0 if isinstance(self.guard, bool | np.bool_) else float(self.guard)

    def _guard_line(self):
        if not self._guard_on():
            return "guard: off (removals are not checked on held-out rows)"
        guard = self.guard_report_
        if not guard["round"]:
            return "guard: nothing was proposed, so nothing was checked"
        parts = []
        for k in range(len(guard["round"])):
            parts.append(
                f"round {guard['round'][k]} kept {guard['n_kept'][k]} of "
                f"{guard['n_proposed'][k]} proposed rows (held-out target loss "
                f"{guard['heldout_loss_before'][k]:.4g} -> {guard['heldout_loss_after'][k]:.4g}"
                f", se {guard['change_se'][k]:.2g})")
        return (f"guard (nested CV, margin {self._guard_margin():g} se): "
                + "; ".join(parts))

    def selection_report(self):
        """A printable table: which tasks lost how many rows, and their validation loss.

        Returns
        -------
        report : str
            Three header lines (rows removed, the cap and the number of negative-score rows;
            how the scores were made; the guard's verdict per round) and one line per task
            from ``report_``; the measured "after" column appears when it was measured
            (``verbose > 0``). Task labels that are not printable (a newline, a tab) or
            have surrounding spaces are shown as their ``repr``.
        """
        check_is_fitted(self, "report_")
        report = self.report_
        n_total = int(np.sum(report["n_rows"]))
        n_scored = self._n_scored
        scheme = ("one validation split" if self.cv is None
                  else f"cross-fitted over {len(self.folds_)} folds")
        targets = ("all tasks" if len(self.target_tasks_) == len(self.tasks_)
                   else f"tasks {[_show(t) for t in self.target_tasks_]}")
        candidates = ("every task's rows" if self.target_tasks is None or self.include_target_rows
                      else "rows of the non-target tasks")
        limit = ("" if self.max_task_fraction is None
                 else f", at most {self.max_task_fraction:.0%} of a task's rows")
        lines = [
            f"NegativeTransferSelector: removed {len(self.removed_)} of {n_total} rows "
            f"(cap: fraction={self.fraction:g} of {n_scored} scored rows = "
            f"{int(np.floor(self.fraction * n_scored + 1e-9))}"
            + (f" over {self.n_rounds} rounds" if self.n_rounds > 1 else "")
            + f"; {self.n_candidates_} candidate rows had a negative effect)",
            f"scores: effect on the validation loss of {targets} (task_weights="
            f"{self.task_weights!r}), {scheme}; candidates: {candidates}{limit}",
            self._guard_line(),
        ]
        measured = not np.all(np.isnan(report["validation_loss_after"]))
        names = [_show(t) for t in report["task"]]
        width = max(6, *(len(name) for name in names))
        head = (f"{'task':>{width}} {'rows':>6} {'removed':>8} {'%':>6} {'val loss':>10} "
                f"{'predicted':>10}")
        head += f" {'measured':>10}" if measured else ""
        lines.append(head)
        lines.append(f"{'':>{width}} {'':>6} {'':>8} {'':>6} {'before':>10} {'change':>10}"
                     + (f" {'after':>10}" if measured else ""))
        for k, name in enumerate(names):
            mark = "" if report["target"][k] else "  (not a target)"
            line = (f"{name:>{width}} {report['n_rows'][k]:>6d} {report['n_removed'][k]:>8d} "
                    f"{100 * report['removed_fraction'][k]:>5.1f}% "
                    f"{report['validation_loss_before'][k]:>10.4g} "
                    f"{report['predicted_change'][k]:>+10.3g}")
            if measured:
                line += f" {report['validation_loss_after'][k]:>10.4g}"
            lines.append(line + mark)
        return "\n".join(lines)


def _fold_validation_losses(influences, folds, codes, n_tasks):
    """Out-of-fold validation loss per task (fold losses weighted by their validation rows)."""
    total = np.zeros(n_tasks)
    rows = np.zeros(n_tasks)
    for influence, (_, val) in zip(influences, folds, strict=True):
        counts = np.bincount(codes[val], minlength=n_tasks).astype(np.float64)
        total += np.nan_to_num(influence.validation_loss_) * counts
        rows += counts
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / rows


def _predicted_change(influences, folds, codes, removed, n_tasks, fit_args):
    """First-order change of the out-of-fold validation loss per task when ``removed`` go:
    each fold's summed effects of its removed training rows (summed gradients, no rows x K
    block), weighted over folds by validation rows."""
    X, y, tasks, sample_weight = fit_args
    change = np.zeros(n_tasks)
    rows = np.zeros(n_tasks)
    for influence, (train, val) in zip(influences, folds, strict=True):
        counts = np.bincount(codes[val], minlength=n_tasks).astype(np.float64)
        gone = removed[np.isin(removed, train)]
        if gone.size:
            # A row's effect scales with its weight (transform's are for weight 1).
            total = influence._summed_effects(_take(X, gone), _take(y, gone),
                                              tasks=_take(tasks, gone),
                                              sample_weight=_take(sample_weight, gone))
            change += np.nan_to_num(total) * counts
        rows += counts
    with np.errstate(invalid="ignore", divide="ignore"):
        return change / rows
