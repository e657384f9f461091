"""Data selection with MTIF: drop the training rows that cause negative transfer, then refit.

The paper's recipe (Section 5.3, Appendix C.3): score every training row by its effect on the
validation loss, remove the most harmful ones, retrain. Scores from one validation split
overfit that split (DESIGN.md, NegativeTransferSelector), so by default every row is scored by
cross-fitting: each task's rows are split into ``cv`` folds, each fold in turn validates a model
fitted on the others, and a row's effect is averaged over the folds where it was trained.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.base import _fit_context, clone
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from .._dask import is_dask
from .._tasks import encode_tasks, resolve_tasks, task_folds, unique_tasks
from ..backend import to_numpy
from ..influence import MTIFInfluence
from ._base import BaseSelector, task_column
from ._dask import fit_dask

__all__ = ["NegativeTransferSelector"]

def _take(values, rows):
    return None if values is None else _safe_indexing(values, rows)


def _fold_influence(template, X, y, tasks, sample_weight, train, val):
    """MTIFInfluence of a model fitted on ``train`` with the rows ``val`` as validation set."""
    influence = clone(template)
    return influence.fit(_take(X, train), _take(y, train), tasks=_take(tasks, train),
                         sample_weight=_take(sample_weight, train), X_val=_take(X, val),
                         y_val=_take(y, val), tasks_val=_take(tasks, val))


def _cross_fitted_effects(influences, folds, n_samples, n_tasks):
    """Average each row's per-task effect over the folds where it was a training row.

    NaN where a row was never trained (the validation rows of ``cv=None``) or a task had no
    validation rows in any of those folds.
    """
    sums = np.zeros((n_samples, n_tasks))
    counts = np.zeros((n_samples, n_tasks))
    for influence, (train, _) in zip(influences, folds, strict=True):
        effects = to_numpy(influence.influence_)
        known = np.isfinite(effects)
        sums[train] += np.where(known, effects, 0.0)
        counts[train] += known
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def _target_scores(effects, target_codes):
    """Sum of the effects on the target tasks (equal task weight: each V_k is a per-task mean)."""
    chosen = effects[:, target_codes]
    return np.where(np.all(np.isnan(chosen), axis=1), np.nan, np.nansum(chosen, axis=1))


def _select_harmful(scores, codes, available, max_remove):
    """Indices of at most ``max_remove`` rows with negative score, most negative first.

    ``available[k]`` is how many rows of task k the refit would see; no task loses its last one.
    """
    candidates = np.flatnonzero(scores < 0)  # NaN compares False: unscored rows never go
    candidates = candidates[np.argsort(scores[candidates], kind="stable")]
    left = np.array(available, dtype=np.int64)
    removed = []
    for row in candidates:
        if len(removed) >= max_remove:
            break
        if left[codes[row]] > 1:
            left[codes[row]] -= 1
            removed.append(row)
    return np.asarray(removed, dtype=np.int64)


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


def _predicted_change(influences, folds, codes, removed, n_tasks):
    """First-order change of the out-of-fold validation loss when ``removed`` rows go."""
    change = np.zeros(n_tasks)
    rows = np.zeros(n_tasks)
    for influence, (train, val) in zip(influences, folds, strict=True):
        counts = np.bincount(codes[val], minlength=n_tasks).astype(np.float64)
        effects = to_numpy(influence.influence_)[np.isin(train, removed)]
        change += np.nan_to_num(effects.sum(axis=0)) * counts
        rows += counts
    with np.errstate(invalid="ignore", divide="ignore"):
        return change / rows


def _losses_per_task(model, X, y, tasks, codes, task_names):
    """Mean loss of a fitted multitask model on each task's rows (NaN: task absent/unknown)."""
    known = np.isin(np.asarray(task_names, dtype=object)[codes],
                    np.asarray(model.tasks_.tolist(), dtype=object))
    rows = np.flatnonzero(known)
    data = model._mtif_data(_take(X, rows), _take(y, rows), _take(tasks, rows), reset=False)
    row_losses = model._mtif_objective(data).row_losses(model._mtif_params())
    n_tasks = len(task_names)
    counts = np.bincount(codes[rows], minlength=n_tasks).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.bincount(codes[rows], weights=row_losses, minlength=n_tasks) / np.where(
            counts > 0, counts, np.nan)


class NegativeTransferSelector(BaseSelector):
    """Remove the training rows that cause negative transfer (by MTIF), then refit.

    Every training row is scored by its MTIF data-level effect (paper eq. 5, Proposition 1) on
    the validation loss of the target tasks, summed with equal task weight; the ``fraction``
    most harmful rows are dropped, but only rows whose effect is negative (removing them is
    predicted to lower the target validation loss); the model is refitted on the rest
    (paper Section 5.3, Appendix C.3). ``predict``, ``predict_proba``, ``decision_function``
    and ``score`` delegate to the refitted ``estimator_``.

    Scores are cross-fitted by default (``cv=5``): each task's rows are split into folds, a
    model is fitted on all folds but one and :class:`MTIFInfluence` measures its training rows'
    effects on the held-out fold; a row's score is its effect averaged over the ``cv - 1`` folds
    where it was trained. Scores from a single validation split overfit that split: on synthetic
    regression with gross label errors, removing the most negative rows of one 80/20 split made
    clean test error worse on average, while cross-fitted scores improved it in every seed
    (DESIGN.md). ``cv=None`` is the paper's protocol: one ``validation_fraction`` split.

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
        score. ``0`` removes nothing (a baseline for grid searches).
    target_tasks : label or array-like of labels, default=None
        Tasks whose validation loss counts. None: all tasks, summed with equal weight.
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
    n_rounds : int, default=1
        Remove in rounds: each round re-draws the folds, rescores the rows still in and removes
        up to ``fraction / n_rounds`` of the scored rows (the total cap stays ``fraction``).
        Costs ``n_rounds`` times the fits. Measured on synthetic regression with gross label
        errors in 3 of 10 tasks (3% of the rows; 20 seeds, ``fraction=0.03``): the share of
        corrupted rows among the removed rose from 86% (1 round) to 95% (2) and 98% (3), and
        clean test MSE fell further (by 0.49, 0.58, 0.60 against no selection; noise
        variance 1). Rows whose harm is masked by other bad rows surface once those are gone.
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
        Folds scored in parallel through joblib.
    verbose : int, default=0
        When > 0: prints the folds as they are scored, measures each task's out-of-fold
        validation loss after selection (every fold refitted without the removed rows; this
        costs ``cv`` extra fits) and prints :meth:`selection_report` at the end of ``fit``.

    Attributes
    ----------
    estimator_ : estimator
        The model refitted without the removed rows; the delegated methods use it.
    support_ : ndarray of bool, shape (n_samples,)
        True for the rows of ``X`` that were kept. With ``refit_on="split"`` the validation rows
        are kept (True) but not used by the refit.
    scores_ : ndarray of shape (n_samples,)
        Each row's score: its effect summed over the target tasks, cross-fitted (NaN for rows
        never scored: the validation rows of ``cv=None``). Negative: removing it is predicted
        to lower the target tasks' validation loss. With ``n_rounds > 1``: the score of the
        last round the row took part in.
    effects_ : ndarray of shape (n_samples, n_tasks)
        The cross-fitted effect of every row on every task's validation loss (columns in
        ``tasks_`` order); ``scores_`` sums its target columns.
    removed_ : ndarray of int
        Indices of the removed rows of ``X``, in the order they were removed (most harmful
        first within each round).
    influence_ : list of MTIFInfluence
        The fitted influence transformers, one per fold (one with ``cv=None``) of the last
        round; their ``influence_`` rows are the fold's training rows, ``folds_[i][0]``.
    folds_ : list of (ndarray, ndarray)
        (training rows, validation rows) of every fold of the last round, as indices into
        ``X``.
    tasks_ : ndarray of shape (n_tasks,)
        Sorted task labels.
    target_tasks_ : ndarray
        The tasks whose validation loss was counted.
    n_candidates_ : int
        Number of rows with a negative score in the first round (before the ``fraction``
        cap).
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

    def __init__(self, estimator, *, fraction=0.05, target_tasks=None, cv=5,
                 validation_fraction=0.2, refit_on="train", n_rounds=1, random_state=None,
                 backend="auto", damping=0.0, method="first_order", n_jobs=None, verbose=0):
        self.estimator = estimator
        self.fraction = fraction
        self.target_tasks = target_tasks
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
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, tasks=None, sample_weight=None):
        """Score every row, remove the harmful ones and refit the estimator on the rest.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows (with the task column when the estimator uses ``task_column``).
        y : array-like of shape (n_samples,)
            Targets.
        tasks : array-like of shape (n_samples,), default=None
            Task label of every row (unless the estimator has a ``task_column``).
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights of the training objective (with metadata routing enabled, passed only
            when the inner estimator requests it).

        Returns
        -------
        self : NegativeTransferSelector
            The fitted selector.
        """
        if is_dask(X):  # dask rows: folds and scores by block (selection._dask)
            return fit_dask(self, X, y, tasks, sample_weight)
        X, y = self._validate_X(X, y, reset=True)
        routed = self._routed_params("fit", tasks=tasks, sample_weight=sample_weight)
        sample_weight = routed.get("sample_weight")
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                                 ensure_non_negative=True)
        _, labels = resolve_tasks(X, tasks, task_column(self.estimator))
        n_samples = len(y)
        if labels is None:
            labels = np.zeros(n_samples, dtype=np.int64)
        self.tasks_ = unique_tasks(labels)
        task_names = self.tasks_.tolist()
        n_tasks = len(task_names)
        codes = encode_tasks(labels, self.tasks_)
        target_codes = self._target_codes()
        self.target_tasks_ = self.tasks_[target_codes]

        random_state = check_random_state(self.random_state)
        template = MTIFInfluence(clone(self.estimator), damping=self.damping,
                                 backend=self.backend, method=self.method)
        self.scores_ = np.full(n_samples, np.nan)
        self.effects_ = np.full((n_samples, n_tasks), np.nan)
        active = np.arange(n_samples)
        removed, predicted_change = [], np.zeros(n_tasks)
        for round_ in range(self.n_rounds):
            # Each round draws fresh folds and rescores the rows still in: rows whose harm was
            # masked by worse rows surface once those are gone (measured: see n_rounds).
            folds = [(active[train], active[val]) for train, val in task_folds(
                codes[active], task_names, self.cv,
                validation_fraction=self.validation_fraction, random_state=random_state)]
            if self.verbose:
                print(f"[NegativeTransferSelector] round {round_ + 1}/{self.n_rounds}: scoring "
                      f"{active.size} rows of {n_tasks} tasks on {len(folds)} fold(s)")
            influences = Parallel(n_jobs=self.n_jobs, verbose=max(0, self.verbose - 1))(
                delayed(_fold_influence)(template, X, y, tasks, sample_weight, train, val)
                for train, val in folds)
            for influence in influences:
                if not np.array_equal(influence.tasks_, self.tasks_):
                    raise ValueError("A fold model did not see every task; use a splitter "
                                     "stratified by task.")
            effects = _cross_fitted_effects(influences, folds, n_samples, n_tasks)
            scores = _target_scores(effects, target_codes)
            scored = np.isfinite(scores)
            self.scores_[scored], self.effects_[scored] = scores[scored], effects[scored]
            if round_ == 0:
                n_scored = self._n_scored = int(scored.sum())
                self.n_candidates_ = int(np.sum(scores < 0))
                loss_before = _fold_validation_losses(influences, folds, codes, n_tasks)
                self._first_folds = folds
            refit_rows = (folds[0][0] if self.cv is None and self.refit_on == "split"
                          else active)
            # The cap grows evenly over the rounds: fraction * n_scored in total.
            cap = int(np.floor(self.fraction * n_scored * (round_ + 1) / self.n_rounds + 1e-9))
            new = _select_harmful(scores, codes, np.bincount(codes[refit_rows],
                                                             minlength=n_tasks),
                                  cap - sum(len(r) for r in removed))
            predicted_change += _predicted_change(influences, folds, codes, new, n_tasks)
            removed.append(new)
            active = np.setdiff1d(active, new)
        self.influence_, self.folds_ = influences, folds
        self.removed_ = np.concatenate(removed).astype(np.int64)
        self.support_ = np.ones(n_samples, dtype=bool)
        self.support_[self.removed_] = False

        kept = refit_rows[self.support_[refit_rows]]
        self.estimator_ = clone(self.estimator)
        fit_params = {"tasks": _take(tasks, kept),
                      "sample_weight": _take(sample_weight, kept)}
        self.estimator_.fit(_take(X, kept), _take(y, kept),
                            **{k: v for k, v in fit_params.items() if v is not None})

        after = np.full(n_tasks, np.nan)
        if self.verbose:
            after = self._measure_after(X, y, tasks, sample_weight, codes, n_tasks)
        self.report_ = self._build_report(codes, n_tasks, target_codes, loss_before,
                                          predicted_change, after)
        if self.verbose:
            print(self.selection_report())
        return self

    def _target_codes(self):
        if self.target_tasks is None:
            return np.arange(len(self.tasks_))
        targets = ([self.target_tasks] if isinstance(self.target_tasks, str | Integral)
                   else list(self.target_tasks))
        # NumPy scalars compare like their Python values; list(...) keeps mixed types apart.
        targets = [t.item() if isinstance(t, np.generic) else t for t in targets]
        if not targets:
            raise ValueError("target_tasks is empty; pass at least one task, or None for all.")
        known = self.tasks_.tolist()
        unknown = [t for t in targets if t not in known]
        if unknown:
            raise ValueError(
                f"target_tasks has unknown task(s) {unknown[:5]}; the tasks seen in fit are "
                f"{known[:10]}{' ...' if len(known) > 10 else ''}."
            )
        return np.unique([known.index(t) for t in targets])

    def _measure_after(self, X, y, tasks, sample_weight, codes, n_tasks):
        """Out-of-fold validation loss per task of the fold models refitted without the
        removed rows (weighted over folds by validation rows, as ``validation_loss_before``)."""
        total = np.zeros(n_tasks)
        rows = np.zeros(n_tasks)
        for train, val in self._first_folds:
            kept = train[self.support_[train]]
            model = clone(self.estimator)
            params = {"tasks": _take(tasks, kept), "sample_weight": _take(sample_weight, kept)}
            model.fit(_take(X, kept), _take(y, kept),
                      **{k: v for k, v in params.items() if v is not None})
            losses = _losses_per_task(model, _take(X, val), _take(y, val), _take(tasks, val),
                                      codes[val], self.tasks_.tolist())
            counts = np.bincount(codes[val], minlength=n_tasks).astype(np.float64)
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

    def selection_report(self):
        """A printable table: which tasks lost how many rows, and their validation loss.

        Returns
        -------
        report : str
            A header (rows removed, the cap, the number of negative-score rows, how the scores
            were made) and one line per task from ``report_``; the measured "after" column
            appears when it was measured (``verbose > 0``).
        """
        check_is_fitted(self, "report_")
        report = self.report_
        n_total = int(np.sum(report["n_rows"]))
        n_scored = self._n_scored
        scheme = ("one validation split" if self.cv is None
                  else f"cross-fitted over {len(self.folds_)} folds")
        targets = ("all tasks" if len(self.target_tasks_) == len(self.tasks_)
                   else f"tasks {self.target_tasks_.tolist()}")
        lines = [
            f"NegativeTransferSelector: removed {len(self.removed_)} of {n_total} rows "
            f"(cap: fraction={self.fraction:g} of {n_scored} scored rows = "
            f"{int(np.floor(self.fraction * n_scored + 1e-9))}"
            + (f" over {self.n_rounds} rounds" if self.n_rounds > 1 else "")
            + f"; {self.n_candidates_} rows had a negative effect)",
            f"scores: summed effect on the validation loss of {targets}, {scheme}",
        ]
        measured = not np.all(np.isnan(report["validation_loss_after"]))
        width = max(6, *(len(str(t)) for t in report["task"]))
        head = (f"{'task':>{width}} {'rows':>6} {'removed':>8} {'%':>6} {'val loss':>10} "
                f"{'predicted':>10}")
        head += f" {'measured':>10}" if measured else ""
        lines.append(head)
        lines.append(f"{'':>{width}} {'':>6} {'':>8} {'':>6} {'before':>10} {'change':>10}"
                     + (f" {'after':>10}" if measured else ""))
        for k, task in enumerate(report["task"]):
            mark = "" if report["target"][k] else "  (not a target)"
            line = (f"{task!s:>{width}} {report['n_rows'][k]:>6d} {report['n_removed'][k]:>8d} "
                    f"{100 * report['removed_fraction'][k]:>5.1f}% "
                    f"{report['validation_loss_before'][k]:>10.4g} "
                    f"{report['predicted_change'][k]:>+10.3g}")
            if measured:
                line += f" {report['validation_loss_after'][k]:>10.4g}"
            lines.append(line + mark)
        return "\n".join(lines)
