"""Task selection with MTIF: which tasks should each task be trained with.

For every target task k, the source tasks whose cross-fitted task influence on k is negative
(``task_influence_[l, k] + threshold * task_influence_se_[l, k] < 0``) are dropped, and k is
trained with the rest. On one validation split task scores are mostly split noise (DESIGN.md:
that rule beat training everything together in 2 of 9 settings, and was no better than dropping
random tasks in 5 of 9); cross-fitted scores won in 8 of 9. The nested-CV ``guard`` keeps a
target's drops only where they lower its loss on rows that did not choose them.

The model without a set D of source tasks (their rows and regularisers removed, paper eq. 11)
follows from the fitted arrow factor: the Hessian of ``L - sum_{l in D} T_l`` over the other
tasks and the shared block is the arrow without the blocks of D, whose Schur complement is

    N_-D = N + sum_{l in D} (H_sl H_ll^-1 H_ls - S_l),      S_l = task l's part of H_ss,

so with r the gradient of L at the fit, u_k = H_kk^-1 r_k and W_k = H_kk^-1 H_ks, one Newton
step on the reduced objective is

    dg = -N_-D^-1 [(r_s - sum_{l in D} dT_l/dg) - sum_{k not in D} H_sk u_k],
    dbeta_k = -u_k - W_k dg,

one p x p Cholesky per distinct D (the task-removal step of ``MTIFInfluence(method="newton")``
for a set of tasks). For a quadratic objective (ridge) it IS the refit; otherwise Newton
continues from there (a warm-started refit). A target's own head is its block of that solution:
its own term fitted against the shared parameters learnt without D.
"""

from collections import defaultdict
from numbers import Integral, Real

import numpy as np
import scipy.linalg
from sklearn.base import _fit_context, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import check_is_fitted

from .._arrow import NotPositiveDefiniteError, factor_arrow, solve_task_blocks
from .._dask import is_dask
from .._tasks import target_task_codes, task_folds
from ..base import Params, require_capability
from ..influence import MTIFInfluence
from ..utils._docstring import DOCS, Substitution
from ._base import BaseSelector
from ._rows import _row_losses, _take

__all__ = ["TaskSelector", "drop_matrix"]


def drop_matrix(task_influence, task_influence_se=None, *, threshold=0.0, target_codes=None):
    """Which source tasks each target drops: ``task_influence + threshold * se < 0``.

    Parameters
    ----------
    task_influence : ndarray of shape (n_tasks, n_tasks)
        ``[l, k]``: effect on task k of removing task l (negative: l hurts k).
    task_influence_se : ndarray of shape (n_tasks, n_tasks), default=None
        Standard errors (None: the rule uses the means alone).
    threshold : float, default=0.0
        In standard errors: a source is dropped when its mean effect is below
        ``-threshold * se``.
    target_codes : ndarray of int, default=None
        Target tasks (None: all); other columns drop nothing.

    Returns
    -------
    drops : ndarray of bool, shape (n_tasks, n_tasks)
        ``drops[l, k]``: source l is dropped for target k. Never the diagonal; NaN scores
        never drop.
    """
    scores = np.asarray(task_influence, dtype=np.float64)
    if task_influence_se is not None and threshold != 0:
        scores = scores + threshold * np.asarray(task_influence_se, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        drops = scores < 0  # NaN compares False
    np.fill_diagonal(drops, False)
    if target_codes is not None:
        keep = np.zeros(drops.shape[1], dtype=bool)
        keep[np.asarray(target_codes, dtype=np.int64)] = True
        drops[:, ~keep] = False
    return drops


class _TaskRemoval:
    """Parameters of a fitted model refitted without sets of tasks, from its arrow factor.

    Parameters
    ----------
    model : fitted multitask estimator
        Exposes the objective protocol with the "newton" capability (each task's part of the
        shared Hessian block) and the "refit" capability (a warm-started refit for objectives
        that are not quadratic).
    data : TaskData
        The rows the model was fitted on.
    """

    def __init__(self, model, data):
        self.model, self.data = model, data
        objective = model._mtif_objective(data)
        require_capability(objective, "newton", model=model, needed_by="TaskSelector")
        self.params = params = model._mtif_params()
        self.task_names = np.asarray(model.tasks_).tolist()
        blocks = objective.hessian_blocks(params)
        try:
            factor = factor_arrow(*blocks, task_names=self.task_names)
        except NotPositiveDefiniteError as exc:
            raise exc.with_advice("or regularise the model more strongly.") from None
        self.factor = factor
        task_grad, shared_parts = objective.task_gradients(params)
        self.task_shared_grad = np.asarray(shared_parts)  # dT_l/dg, (K, p)
        self.residual_shared = (self.task_shared_grad.sum(axis=0)
                                + np.asarray(objective.shared_penalty_gradient(params)))
        self.u = solve_task_blocks(factor, np.asarray(task_grad))  # H_kk^-1 r_k
        # H_sk u_k per task, and every task's change of the Schur complement when it leaves.
        self.pushed = np.einsum("kqp,kq->kp", factor.coupling, self.u)
        self.schur_change = np.matmul(np.swapaxes(factor.coupling, 1, 2),
                                      factor.coupling_solved)
        for task in range(len(self.task_names)):
            self.schur_change[task] -= np.asarray(objective.task_shared_hessian(params, task))
        loss = getattr(objective, "loss", None)
        self.quadratic = bool(getattr(loss, "quadratic", False))

    def _shared_step(self, dropped):
        """dg of the Newton step on L without the tasks ``dropped`` (codes)."""
        schur = self.factor.schur + self.schur_change[dropped].sum(axis=0)
        schur = (schur + schur.T) / 2
        rhs = (-(self.residual_shared - self.task_shared_grad[dropped].sum(axis=0))
               + self.pushed.sum(axis=0) - self.pushed[dropped].sum(axis=0))
        # A shared coordinate that no remaining task touches (the shared intercept when only
        # tasks with free intercepts remain) has an exactly zero row: it is not determined
        # without D, and no remaining head depends on it, so it stays where it is.
        scale = np.abs(self.factor.schur).max(initial=0.0)
        touched = np.abs(schur).max(axis=1) > 64 * np.finfo(np.float64).eps * scale
        step = np.zeros_like(rhs)
        schur, rhs = schur[np.ix_(touched, touched)], rhs[touched]
        try:
            cholesky = scipy.linalg.cho_factor(schur, lower=True)
        except np.linalg.LinAlgError:
            cholesky = None
        if cholesky is None or not np.all(np.isfinite(cholesky[0])):
            names = [self.task_names[task] for task in dropped[:5]]
            raise ValueError(
                f"Without task(s) {names} the shared parameters are not determined (the Schur "
                "complement of the shared block is not positive definite): the remaining tasks "
                "cannot fit the shared model alone. Increase shared_alpha (or alpha), or raise "
                "the TaskSelector threshold so that fewer sources are dropped.")
        step[touched] = scipy.linalg.cho_solve(cholesky, rhs)
        return step

    def heads_without(self, dropped, heads):
        """Task blocks ``heads`` (codes) of the model refitted without ``dropped`` (codes).

        Returns
        -------
        task_params : ndarray of shape (len(heads), q)
        """
        dropped = np.asarray(dropped, dtype=np.int64)
        heads = np.asarray(heads, dtype=np.int64)
        step = self._shared_step(dropped)
        task = self.params.task
        if self.quadratic:  # one Newton step on a quadratic objective is its minimiser
            return (task[heads] - self.u[heads]
                    - np.einsum("kqp,p->kq", self.factor.coupling_solved[heads], step))
        # Otherwise: Newton from that step to convergence (a warm-started refit).
        start = Params(task - self.u
                       - np.einsum("kqp,p->kq", self.factor.coupling_solved, step),
                       self.params.shared + step)
        refit = clone(self.model)._mtif_refit(self.data, dropped_tasks=dropped, init=start)
        return np.asarray(refit._mtif_params().task)[heads]

    def target_heads(self, drops, targets):
        """Task blocks (K, q): the fitted ones, with each target's row replaced by its head
        without the sources ``drops[:, target]``; one solve per distinct set of sources."""
        task = np.array(self.params.task, dtype=np.float64)
        for dropped, heads in _group_targets(drops, targets).items():
            task[heads] = self.heads_without(dropped, heads)
        return task


def _group_targets(drops, targets):
    """{dropped codes (tuple): target codes} for the targets that drop something."""
    groups = defaultdict(list)
    for target in targets:
        dropped = tuple(np.flatnonzero(drops[:, target]).tolist())
        if dropped:
            groups[dropped].append(target)
    return {dropped: np.asarray(heads) for dropped, heads in groups.items()}


def _guard_fold(template, X, y, tasks, sample_weight, data, train, val, *, inner_cv, seed,
                threshold, target_codes):
    """One outer fold of the guard: choose drops from cross-fitted scores on ``train`` alone,
    then the validation loss on ``val`` of every task with and without its drops (sums)."""
    inner = clone(template).set_params(cv=inner_cv, random_state=seed)
    inner.fit(_take(X, train), _take(y, train), tasks=_take(tasks, train),
              sample_weight=_take(sample_weight, train))
    drops = drop_matrix(inner.task_influence_, inner.task_influence_se_, threshold=threshold,
                        target_codes=target_codes)
    model = inner.estimator_
    val_data = data.take(val)
    before = _row_losses(model, val_data)
    after = before
    if drops.any():
        heads = _TaskRemoval(model, data.take(train)).target_heads(drops, target_codes)
        after = _row_losses(model, val_data, heads)
    n_tasks = data.n_tasks
    return (np.bincount(val_data.codes, weights=before, minlength=n_tasks),
            np.bincount(val_data.codes, weights=after, minlength=n_tasks),
            np.bincount(val_data.codes, minlength=n_tasks))


class TaskSelector(BaseSelector):
    """Train every task with the tasks that help it: per-target source selection by MTIF.

    For every target task k, the source tasks l whose cross-fitted task influence says they
    hurt k are dropped,

        ``task_influence_[l, k] + threshold * task_influence_se_[l, k] < 0``,

    and k is trained with the remaining tasks: the multitask model refitted without the dropped
    tasks' rows and regularisers (paper eq. 11), k's own head fitted against the resulting
    shared parameters. ``predict``, ``predict_proba``, ``decision_function`` and ``score`` route
    every row to its own task's model. The scores come from :class:`MTIFInfluence` with ``cv``
    (each task's rows split into folds; a fold model validated on each held-out fold; the mean
    and standard error of the fold matrices). Sign convention (package-wide): an effect
    estimates ``V_k(without l) - V_k(with everything)``; negative means l HURTS k.

    ``guard=True`` (nested cross-validation): the rows are split into ``cv`` outer folds; on
    each outer training part, the drops are chosen from cross-fitted scores computed on that
    part alone and applied to the model fitted on it, and every target's loss on the held-out
    outer fold is measured with and without its drops. A target keeps its drops (chosen on all
    rows) only if they lowered its summed held-out loss; otherwise it is trained with all tasks.
    Measured with this rule (prototype, mean test loss against training all tasks together):
    synthetic -2.7% to -4.3%, computer survey -16%, chemical -4.4%, school -1.0%, never more
    than 0.3% worse; without the guard a few more tasks got worse. The guard costs ``cv`` more
    cross-fitted influence computations.

    Per-target models cost no refit per target: the model without a set of sources follows from
    the fitted arrow factor of the all-together model by a Schur-complement update of its shared
    block, one p x p Cholesky per distinct set (exact for :class:`MultitaskRidge`, equal to the
    refit to round-off; for :class:`MultitaskLogistic` a Newton refit warm-started from that
    step). Targets with the same dropped sources share one solve, and targets that drop nothing
    keep the all-together model's head.

    Parameters
    ----------
    estimator : estimator object
        Unfitted multitask model exposing the objective protocol whose tasks predict from their
        own parameters (:class:`MultitaskRidge`, :class:`MultitaskLogistic`). Cloned.
    cv : int, cross-validation generator or iterable, default=5
        Folds of the cross-fitted scores (and of the guard's outer and inner splits). An int
        ``n``: shuffled ``StratifiedKFold(n)`` on the task labels (every task needs at least
        ``n`` rows; with the guard, at least ``n`` in every outer training part). A splitter:
        ``split(X, task_codes)``, so stratified splitters stratify by task; the guard's inner
        splits use the same splitter. An iterable of (train, validation) pairs: the outer folds,
        the inner ones then being as many stratified folds. Every fold must train on every task.
    threshold : float, default=0.0
        How many standard errors below zero a source's effect must be to drop it: 0 drops every
        source with a negative mean effect, 2 only the clearly harmful ones; negative values
        drop sources that do not clearly help.
    guard : bool, default=True
        Keep a target's drops only if they lower its loss on outer folds that did not choose
        them (nested cross-validation, see above).
    target_tasks : label or array-like of labels, default=None
        Tasks whose sources are selected (None: all). Every other task keeps the all-together
        model's head.
    method : {"first_order", "newton"}, default="first_order"
        How :class:`MTIFInfluence` estimates a task's removal effect: the paper's influence
        function, or one Newton step on the objective without the task (exact leave-one-task-
        out for ridge).
    random_state : int, RandomState instance or None, default=None
        Seed of the folds.
    n_jobs : int, default=None
        The guard's outer folds in parallel through joblib.
    verbose : int, default=0
        When > 0, prints the stages and :meth:`selection_report` at the end of ``fit``.

    Attributes
    ----------
    estimator_ : estimator
        One fitted model holding every task's own head: target k's head fitted without its
        dropped sources, every other task's head (and the shared parameters, which
        ``unknown_task="shared"`` predicts with) from the model trained on all tasks.
    influence_ : MTIFInfluence
        The cross-fitted influence on all rows; ``influence_.estimator_`` is the model trained
        with all tasks together.
    task_influence_ : ndarray of shape (n_tasks, n_tasks)
        The cross-fitted scores used: ``[l, k]`` the mean effect on task k of removing task l.
    task_influence_se_ : ndarray of shape (n_tasks, n_tasks)
        Their standard errors over the folds.
    sources_ : dict
        ``{target label: array of the task labels it is trained with (itself included)}``.
    dropped_ : dict
        ``{target label: array of the dropped source labels}`` (empty where the guard rejected
        the drops or nothing was dropped).
    proposed_ : dict
        ``{target label: array of the source labels the rule dropped}`` before the guard.
    tasks_ : ndarray of shape (n_tasks,)
        Sorted task labels.
    target_tasks_ : ndarray
        The target tasks.
    folds_ : list of (ndarray, ndarray)
        The guard's outer (training, validation) rows of ``X`` (empty without the guard).
    report_ : dict of lists
        One entry per target (``pandas.DataFrame(report_)`` makes a table): ``task``,
        ``n_rows``, ``proposed`` (labels), ``dropped`` (labels), ``guard`` ("kept", "rejected",
        "nothing to drop" or "off"), ``validation_loss_all`` and ``validation_loss_selected``
        (with the guard: the target's mean loss on the outer folds, trained with all tasks and
        with the drops chosen on the other folds; NaN without the guard).
    classes_ : ndarray of shape (n_classes,)
        Class labels of a classifier ``estimator_``.
    n_features_in_ : int
        Number of columns of ``X`` seen in fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names of ``X`` in fit, when it had string column names.

    See Also
    --------
    MTIFInfluence : The cross-fitted task influence the selection reads.
    NegativeTransferSelector : Drop harmful rows instead of whole tasks.
    mtif_sklearn.retrain.loto_effects : Task removal by brute-force refitting.

    Notes
    -----
    Only ``tasks`` and ``sample_weight`` are passed to the inner fits. With
    ``sklearn.set_config(enable_metadata_routing=True)`` ``tasks`` is requested by default;
    ``sample_weight`` goes in only when the inner estimator requests it.

    Examples
    --------
    >>> import numpy as np
    >>> from mtif_sklearn import MultitaskRidge, TaskSelector
    >>> from mtif_sklearn.datasets import make_multitask_regression
    >>> X, y, tasks = make_multitask_regression(n_tasks=6, n_samples_per_task=60, n_features=4,
    ...                                         delta=0.3, eps=0.0, random_state=0)
    >>> y = np.where(tasks == 5, -y, y)  # task 5 has its relation sign-flipped
    >>> selector = TaskSelector(MultitaskRidge(alpha=1.0), random_state=0)
    >>> selector = selector.fit(X, y, tasks=tasks)
    >>> [int(task) for task in selector.dropped_[0]]  # task 0 is trained without task 5
    [5]
    >>> selector.predict(X[:2], tasks=tasks[:2]).shape
    (2,)
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "_mtif_objective"])],
        "cv": [Interval(Integral, 2, None, closed="left"), "cv_object"],
        "threshold": [Interval(Real, None, None, closed="neither")],
        "guard": ["boolean"],
        "target_tasks": ["array-like", str, Integral, None],
        "method": [StrOptions({"first_order", "newton"})],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
        "verbose": ["verbose"],
    }

    def __init__(self, estimator, *, cv=5, threshold=0.0, guard=True, target_tasks=None,
                 method="first_order", random_state=None, n_jobs=None, verbose=0):
        self.estimator = estimator
        self.cv = cv
        self.threshold = threshold
        self.guard = guard
        self.target_tasks = target_tasks
        self.method = method
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose

    # -- fitting -----------------------------------------------------------------------------
    @Substitution(**DOCS)
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, tasks=None, sample_weight=None):
        """Score the tasks, select every target's sources and fit every target's head.

        Parameters
        ----------
        {selector_fit_data}

        Returns
        -------
        self : TaskSelector
            The fitted selector.
        """
        if self.cv is None:
            raise ValueError("TaskSelector needs cross-fitted scores: cv=None (one validation "
                             "split) gives scores that are mostly split noise. Pass cv=5 (the "
                             "default) or another splitter.")
        if not hasattr(self.estimator, "_mtif_with_task_params"):
            raise ValueError(
                f"TaskSelector needs a model whose tasks predict from their own parameters "
                f"(MultitaskRidge, MultitaskLogistic); in {type(self.estimator).__name__} the "
                "tasks share parameters at prediction time, so per-target models cannot be "
                "combined into one. Use MTIFInfluence(cv=5).task_influence_ and train each "
                "target with its sources yourself.")
        if is_dask(X):
            raise TypeError(
                "TaskSelector does not take dask rows yet. Compute the cross-fitted scores with "
                "MTIFInfluence(cv=5) on the dask rows (task_influence_, task_influence_se_) "
                "and train each target with its sources, or pass in-memory rows.")
        X, y, sample_weight = self._fit_inputs(X, y, tasks, sample_weight)
        template = clone(self.estimator)
        data = template._mtif_data(X, y, tasks, sample_weight, reset=True)
        self.tasks_ = np.asarray(data.task_labels)
        names = self.tasks_.tolist()
        target_codes = target_task_codes(self.target_tasks, self.tasks_)
        self.target_tasks_ = self.tasks_[target_codes]

        random_state = check_random_state(self.random_state)
        score_seed, guard_seed = random_state.randint(np.iinfo(np.int32).max, size=2)
        influence = MTIFInfluence(clone(self.estimator), cv=self.cv, method=self.method,
                                  store_influence=False, random_state=score_seed)
        if self.verbose:
            print(f"[TaskSelector] cross-fitted task influence of {len(names)} tasks")
        influence.fit(X, y, tasks=tasks, sample_weight=sample_weight)
        proposed = drop_matrix(influence.task_influence_, influence.task_influence_se_,
                               threshold=self.threshold, target_codes=target_codes)

        n_tasks = len(names)
        loss_all = np.full(n_tasks, np.nan)
        loss_selected = np.full(n_tasks, np.nan)
        self.folds_ = []
        drops = proposed
        if self.guard and proposed.any():
            folds = task_folds(data.codes, names, self.cv, random_state=guard_seed)
            inner_cv = (self.cv if isinstance(self.cv, Integral) or hasattr(self.cv, "split")
                        else len(folds))
            seeds = np.random.RandomState(guard_seed).randint(np.iinfo(np.int32).max,
                                                              size=len(folds))
            if self.verbose:
                print(f"[TaskSelector] guard: nested cross-validation over {len(folds)} folds")
            parts = Parallel(n_jobs=self.n_jobs, verbose=max(0, self.verbose - 1))(
                delayed(_guard_fold)(influence, X, y, tasks, sample_weight, data, train, val,
                                     inner_cv=inner_cv, seed=seed, threshold=self.threshold,
                                     target_codes=target_codes)
                for (train, val), seed in zip(folds, seeds, strict=True))
            before = sum(part[0] for part in parts)
            after = sum(part[1] for part in parts)
            counts = sum(part[2] for part in parts)
            with np.errstate(invalid="ignore", divide="ignore"):
                loss_all = before / counts
                loss_selected = after / counts
            keep = after < before  # strictly lower held-out loss
            drops = proposed & keep[None, :]
            self.folds_ = folds

        model = influence.estimator_
        if drops.any():
            if self.verbose:
                print(f"[TaskSelector] per-target heads: "
                      f"{len(_group_targets(drops, target_codes))} Schur-complement update(s)")
            heads = _TaskRemoval(model, data).target_heads(drops, target_codes)
            model = model._mtif_with_task_params(heads)
        self.influence_ = influence
        self.estimator_ = model
        self.task_influence_ = influence.task_influence_
        self.task_influence_se_ = influence.task_influence_se_
        labels = self.tasks_
        self.proposed_ = {labels[k].item(): labels[proposed[:, k]] for k in target_codes}
        self.dropped_ = {labels[k].item(): labels[drops[:, k]] for k in target_codes}
        self.sources_ = {labels[k].item(): labels[~drops[:, k]] for k in target_codes}
        verdict = []
        for k in target_codes:
            if not proposed[:, k].any():
                verdict.append("nothing to drop")
            elif not self.guard:
                verdict.append("off")
            else:
                verdict.append("kept" if drops[:, k].any() else "rejected")
        self.report_ = {
            "task": [labels[k].item() for k in target_codes],
            "n_rows": np.bincount(data.codes, minlength=n_tasks)[target_codes].tolist(),
            "proposed": [labels[proposed[:, k]].tolist() for k in target_codes],
            "dropped": [labels[drops[:, k]].tolist() for k in target_codes],
            "guard": verdict,
            "validation_loss_all": loss_all[target_codes].tolist(),
            "validation_loss_selected": loss_selected[target_codes].tolist(),
        }
        if self.verbose:
            print(self.selection_report())
        return self

    def selection_report(self):
        """A printable table: per target, the sources dropped, the guard verdict and its losses.

        Returns
        -------
        report : str
            A header (how the scores were made, how many targets dropped how many sources) and
            one line per target that had something to drop: the proposed and kept drops, the
            guard's verdict and the held-out (outer-fold) loss trained with all tasks and with
            the drops. Targets with nothing to drop are counted, not listed.
        """
        check_is_fitted(self, "report_")
        report = self.report_
        n_folds = len(self.influence_.folds_)
        changed = sum(1 for dropped in report["dropped"] if dropped)
        n_dropped = sum(len(dropped) for dropped in report["dropped"])
        if not self.guard:
            guard = "off"
        elif self.folds_:
            guard = (f"nested cross-validation over {len(self.folds_)} outer folds (drops kept "
                     "only where they lowered the target's held-out loss)")
        else:
            guard = "nothing to check"
        lines = [
            f"TaskSelector: {changed} of {len(report['task'])} target task(s) trained without "
            f"some sources ({n_dropped} (target, source) pairs dropped)",
            f"rule: drop source l for target k when its effect on k, cross-fitted over "
            f"{n_folds} folds, is "
            + ("negative" if self.threshold == 0
               else f"below {-self.threshold:g} standard errors"),
            f"guard: {guard}",
        ]
        listed = [i for i, proposed in enumerate(report["proposed"]) if proposed]
        if not listed:
            lines.append("No source has a score below the threshold for any target.")
            return "\n".join(lines)
        width = max(6, *(len(str(report["task"][i])) for i in listed))
        measured = bool(self.folds_)

        def names(labels, limit=8):
            text = ", ".join(str(t) for t in labels[:limit])
            return text + (f", ... ({len(labels) - limit} more)" if len(labels) > limit else "")

        head = f"{'target':>{width}} {'rows':>6} {'guard':>9}"
        if measured:
            head += f" {'loss: all':>10} {'selected':>10}"
        lines.append(head + "  dropped (of proposed)")
        for i in listed:
            line = f"{report['task'][i]!s:>{width}} {report['n_rows'][i]:>6d} " \
                   f"{report['guard'][i]:>9}"
            if measured:
                line += (f" {report['validation_loss_all'][i]:>10.4g} "
                         f"{report['validation_loss_selected'][i]:>10.4g}")
            dropped, proposed = report["dropped"][i], report["proposed"][i]
            lines.append(line + f"  {names(dropped) or '-'} ({len(dropped)} of "
                                f"{len(proposed)}: {names(proposed)})")
        quiet = len(report["task"]) - len(listed)
        if quiet:
            lines.append(f"({quiet} target(s) with nothing to drop are trained with all tasks)")
        if measured:
            lines.append("(loss: the target's mean loss on the guard's held-out outer folds, "
                         "trained with all tasks / without the sources chosen on the other "
                         "folds)")
        return "\n".join(lines)
