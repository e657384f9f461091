"""MTIFInfluence: data- and task-level multitask influence of a fitted multitask model."""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import validate_data

from .._dask import is_dask
from .._tasks import task_folds
from ..backend import resolve_backend
from ..base import require_capability
from ..utils._docstring import DOCS, Substitution
from ._dask import fit_dask
from ._first_order import FirstOrder
from ._input import check_dense, check_validation_args, host_input
from ._newton import Newton
from ._outputs import InfluenceOutputsMixin
from ._problem import STATIONARITY_TOL, InfluenceProblem, out_of_fold_loss
from ._summaries import INFLUENCE_MEMORY_BUDGET, InfluenceSummariesMixin

__all__ = ["MTIFInfluence"]


def _unfrozen(estimator):
    return estimator.estimator if isinstance(estimator, FrozenEstimator) else estimator


def _check_weights_per_task(problem):
    """Each task's row weights w_i / n_k sum to 1 over the rows the model was fitted on
    (eq. 5); otherwise these are not its training rows (or weights)."""
    names = np.asarray(problem.task_names, dtype=object)
    train = problem.train
    per_task = np.bincount(train.codes, weights=train.row_weights, minlength=len(names))
    mismatch = np.flatnonzero(~np.isclose(per_task, 1.0, rtol=1e-8, atol=0.0))
    if mismatch.size:
        raise ValueError(
            f"The rows (or sample_weight) passed to fit are not the ones the model was "
            f"fitted on: task(s) {names[mismatch].tolist()[:5]} carry "
            f"{per_task[mismatch][:5].round(6).tolist()} of their training weight. "
            "With a FrozenEstimator pass X, y, tasks and sample_weight exactly as fitted."
        )


class _Split:
    """One fitted model with its validation rows: the problem, the strategy, its rows of X."""

    def __init__(self, train_rows, val_rows, problem, strategy):
        self.train_rows, self.val_rows = train_rows, val_rows
        self.problem, self.strategy = problem, strategy


@Substitution(**DOCS)
class MTIFInfluence(InfluenceOutputsMixin, InfluenceSummariesMixin, TransformerMixin,
                    BaseEstimator, auto_wrap_output_keys=None):
    """Multitask influence of every training row and task on every task's validation loss.

    Implements the MultiTask Influence Function (MTIF): the first-order effect of removing a
    training row (data level, paper eq. 5, Proposition 1) or a whole task with its regulariser
    (task level, eq. 11-13, Proposition 2) on the mean validation loss ``V_k`` of each task k. The
    arrow-shaped Hessian is inverted exactly through its task blocks and Schur complement
    (Lemma A.6), never densely.

    Sign convention: an effect estimates ``V_k(without) - V_k(with everything)``. Positive: the
    row or task HELPS task k (removing it would raise k's loss). Negative: it HURTS task k
    (negative transfer). The most negative rows are the ones to drop.

    ``method="newton"`` goes beyond first order: each removal's parameters are estimated by
    Newton steps on the objective with the row or task actually removed, and the true validation
    loss is evaluated there. For :class:`MultitaskRidge` (quadratic) one step is exact retraining,
    i.e. the same numbers as :func:`~mtif_sklearn.retrain.loo_effects` and
    :func:`~mtif_sklearn.retrain.loto_effects`; for :class:`MultitaskLogistic` it is much closer
    to them than first order.

    ``cv`` cross-fits: every task's rows are split into folds, a model is fitted on all folds
    but one and validated on the held-out fold, and the fold results are averaged. On one
    validation split, task scores are mostly split noise (DESIGN.md: dropping the sources with
    a negative single-split score beat training all tasks together in 2 of 9 settings;
    cross-fitted scores in 8 of 9); every decision the package makes uses cross-fitted scores.

    Parameters
    ----------
    estimator : estimator object
        A multitask model exposing the objective protocol (:class:`MultitaskRidge`,
        :class:`MultitaskLogistic`, the models of :mod:`mtif_sklearn.torch`). Unfitted: cloned
        and fitted on the training rows. Already fitted: wrap it in
        :class:`sklearn.frozen.FrozenEstimator` and pass ``fit`` exactly the rows (and
        ``sample_weight``) it was fitted on plus ``X_val``; other rows raise an error.
    validation_fraction : float, default=0.2
        When ``X_val`` is not given and ``cv`` is None, this fraction of every task's rows
        (stratified by task) is held out for validation and the model is fitted on the rest.
    damping : float, default=0.0
        Added to the diagonal of every Hessian block. Needed only when a block is not positive
        definite (the error says how much). With ``method="newton"`` it damps every Newton
        step's Hessian the same way (then a step is no longer exact retraining).
    backend : {"auto", "numpy", "cupy"}, default="auto"
        Where the linear algebra runs. "auto" follows the inputs (CuPy arrays -> CuPy, and the
        results come back as CuPy); "cupy" computes on the GPU and returns NumPy.
    method : {"first_order", "newton"}, default="first_order"
        How a removal effect is estimated.

        - "first_order": the influence function of the paper, ``v_k^T H^-1 g`` (linear in the
          removed term's gradient g).
        - "newton": ``newton_steps`` Newton steps from the fitted parameters on the objective
          without the row / task (its gradient there, including the full objective's residual
          gradient), then ``V_k`` evaluated at the new parameters. The Hessian without a task
          is obtained from the full factor by a p x p Schur-complement update per task (p =
          shared parameters); without a row by a Sherman-Morrison update (the row's loss
          Hessian is rank one for the linear models; its Gauss-Newton term for a network with
          one output), two small solves and a leverage per row. A removed task's own head takes
          the Newton step of its own term against the new shared parameters (the diagonal as in
          ``loto_effects``). Costs: task level about K p^3 on top of first order; row level one
          validation-loss evaluation per row, O(n_train n_val q) in all. Computed with NumPy (a
          CuPy backend factors on the host for this part). Needs a model with the "newton"
          capability (:mod:`mtif_sklearn.base`).
    newton_steps : int, default=1
        Newton steps for ``method="newton"`` (ignored otherwise). Only non-quadratic losses
        gain from more than one. Task level: every further step is a full Newton step at the
        current point (new gradient and Hessian, one arrow factorisation per task and step).
        Row level: every further step is a quasi-Newton (chord) step with the true gradient
        of the objective without the row at the current point but the Hessian of the first
        step (the removed-row Hessian at the full solution), since a new factorisation per row
        would cost as much as a refit; the gradient alone costs O(n_train) per row and step.
    cv : int, cross-validation generator, iterable or None, default=None
        None: the paper's protocol, one validation split (``validation_fraction``) or the
        given ``X_val``. An int ``n``: shuffled ``StratifiedKFold(n)`` on the task labels (every
        task needs at least ``n`` rows); a splitter or an iterable of (train, validation) index
        pairs: ``split(X, task_codes)`` is called, so stratified splitters stratify by task.
        Every fold must train on every task. ``cv`` together with ``X_val`` is an error.
    store_influence : {"auto", True, False}, default="auto"
        Whether to compute and keep ``influence_`` (n_train x K numbers) and the task level
        (``task_influence_``, K x K, per fold with ``cv``) after fit. "auto": each while it
        takes at most 1 GiB (``INFLUENCE_MEMORY_BUDGET``); False: neither after fit (the
        summaries only; the task level is then computed on first access). Summaries
        (:meth:`row_scores`, :meth:`harmful_rows`) never need them: they are computed from the
        factor in O(n p).
    batch_size : int, default=None
        Rows per chunk when computing data-level effects (bounded memory). None picks chunks
        of about 2**22 numbers (32 MiB) of per-row gradients and effects.
    n_jobs : int, default=None
        Parallel chunks through joblib (threads; NumPy backend only).
    random_state : int, RandomState instance or None, default=None
        Seed of the validation split or of the folds.
    verbose : int, default=0
        A progress bar over the row chunks when > 0 (with tqdm installed).

    Attributes
    ----------
    estimator_ : estimator
        The fitted model whose influence is measured (with ``cv``: fitted on every row).
    tasks_ : ndarray of shape (n_tasks,)
        Task labels; the column order of every output.
    influence_ : ndarray of shape (n_train, n_tasks)
        ``influence_[i, k]``: effect on task k's validation loss of removing training row i
        (estimated by ``method``). With ``cv``: one row per row of ``X``, each row's effect
        averaged over the folds in which it was trained.
    task_influence_ : ndarray of shape (n_tasks, n_tasks)
        ``task_influence_[l, k]``: effect on task k of removing task l (its rows and its
        regulariser). The diagonal ``[l, l]`` is the effect on task l of removing it from the
        shared parameters, its own head refitted to them (the limit of eq. 11 as sigma_l -> 0);
        exclude it when ranking task relatedness. It is defined exactly as in
        :func:`~mtif_sklearn.retrain.loto_effects`, but removing a whole task is a large
        perturbation, so this first-order value can be far from the refit (on the chemical data
        its sign can differ for some tasks) while the off-diagonal entries rank like LOTO.
        ``method="newton"`` brings it much closer (exactly the refit for a ridge model). With
        ``cv``: the mean of the fold matrices.
    task_influence_se_ : ndarray of shape (n_tasks, n_tasks)
        With ``cv``: the standard error of ``task_influence_`` (standard deviation over the
        folds / sqrt(n_folds)). Not set without ``cv``.
    fold_task_influence_ : ndarray of shape (n_folds, n_tasks, n_tasks)
        With ``cv``: the task-level matrix of every fold. Not set without ``cv``.
    folds_ : list of (ndarray, ndarray)
        With ``cv``: the (training, validation) rows of ``X`` of every fold.
    train_indices_ : ndarray of int
        Rows of ``X`` the model was trained on (all rows when ``X_val`` or ``cv`` was given).
    val_indices_ : ndarray of int or None
        Rows of ``X`` held out for validation (None when ``X_val`` or ``cv`` was given).
    validation_loss_ : ndarray of shape (n_tasks,)
        V_k at the fitted model (NaN for tasks without validation rows); with ``cv`` the
        out-of-fold loss (each fold's V_k weighted by its validation rows).
    schur_condition_ : float
        Condition number of the Schur complement of the shared block (the largest over folds);
        large values (a warning is raised above 1e12) mean the shared parameters are barely
        determined.
    n_features_in_ : int
        Number of columns of ``X`` in fit (including a task column).
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names of ``X`` in fit, when it had string column names.

    See Also
    --------
    mtif_sklearn.retrain.loo_effects : The same data-level numbers by refitting.
    mtif_sklearn.retrain.loto_effects : The same task-level numbers by refitting.

    References
    ----------
    {ref_mtif}
    {ref_koh_liang}

    Examples
    --------
    >>> from mtif_sklearn import MTIFInfluence, MultitaskRidge
    >>> from mtif_sklearn.datasets import make_multitask_regression
    >>> X, y, tasks = make_multitask_regression(n_tasks=4, n_samples_per_task=50, n_features=5,
    ...                                         random_state=0)
    >>> inf = MTIFInfluence(MultitaskRidge(alpha=0.1), random_state=0)
    >>> effects = inf.fit_transform(X, y, tasks=tasks)
    >>> effects.shape, inf.task_influence_.shape
    ((160, 4), (4, 4))
    >>> crossfit = MTIFInfluence(MultitaskRidge(alpha=0.1), cv=5, random_state=0)
    >>> crossfit.fit_transform(X, y, tasks=tasks).shape, crossfit.task_influence_se_.shape
    ((200, 4), (4, 4))
    """

    __metadata_request__fit = {"tasks": True}
    __metadata_request__transform = {"tasks": True}

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "_mtif_objective"])],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "damping": [Interval(Real, 0, None, closed="left")],
        "backend": [StrOptions({"auto", "numpy", "cupy"})],
        "method": [StrOptions({"first_order", "newton"})],
        "newton_steps": [Interval(Integral, 1, None, closed="left")],
        "cv": [Interval(Integral, 2, None, closed="left"), "cv_object", None],
        "store_influence": [StrOptions({"auto"}), "boolean"],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, estimator, *, validation_fraction=0.2, damping=0.0, backend="auto",
                 method="first_order", newton_steps=1, cv=None, store_influence="auto",
                 batch_size=None, n_jobs=None, random_state=None, verbose=0):
        self.estimator = estimator
        self.validation_fraction = validation_fraction
        self.damping = damping
        self.backend = backend
        self.method = method
        self.newton_steps = newton_steps
        self.cv = cv
        self.store_influence = store_influence
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, X, y, tasks=None, sample_weight=None, X_val=None, y_val=None, tasks_val=None):
        """Fit (or take) the model and compute data- and task-level influence.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows (with the task column when the model uses ``task_column``).
        y : array-like of shape (n_samples,)
            Targets.
        tasks : array-like of shape (n_samples,), default=None
            Task label of every row (unless the model has a ``task_column``).
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights of the training objective.
        X_val, y_val, tasks_val : array-like, default=None
            Validation rows defining V_k. Without them a stratified ``validation_fraction`` of
            (X, y) is held out, or the rows are cross-fitted (``cv``).

        Returns
        -------
        self : MTIFInfluence
            The fitted transformer.
        """
        if is_dask(X):  # dask rows: factor on the client, outputs by block (influence._dask)
            return fit_dask(self, X, y, tasks, sample_weight, X_val, y_val, tasks_val)
        self._validate_params()
        backend = resolve_backend(self.backend, X)
        if y is None:
            raise ValueError("MTIFInfluence requires y: influence depends on every row's loss "
                             "gradient, so fit(X, y, ...) needs the targets.")
        X, y, X_val, y_val = (host_input(a) for a in (X, y, X_val, y_val))
        check_dense(X, "X")
        check_dense(X_val, "X_val")
        validate_data(self, X, skip_check_array=True, reset=True)
        frozen = isinstance(self.estimator, FrozenEstimator)
        template = _unfrozen(self.estimator) if frozen else clone(self.estimator)
        data = template._mtif_data(X, y, tasks, sample_weight, reset=not frozen)
        validation = self._validation_plan(data, frozen, X_val, y_val, tasks_val)
        splits = [self._fit_split(template, data, train, val, backend, frozen)
                  for train, val in validation]
        # All fitted state is assigned at the end: a fit that raises leaves the old state.
        self._set_fitted_state(template, data, splits, frozen, backend)
        return self

    def _validation_plan(self, data, frozen, X_val, y_val, tasks_val):
        """(training rows, validation rows or validation data) of every split."""
        check_validation_args(self.cv, frozen, X_val, y_val, tasks_val)
        if X_val is not None:
            return [(np.arange(data.n_samples), (X_val, y_val, tasks_val))]
        return task_folds(data.codes, data.task_labels.tolist(), self.cv,
                          validation_fraction=self.validation_fraction,
                          random_state=self.random_state)

    def _fit_split(self, template, data, train_rows, val, backend, frozen):
        """Fit (or take) the model on ``train_rows`` and build its influence problem."""
        train_data = data.take(train_rows) if train_rows.size < data.n_samples else data
        if frozen:
            model = template
        else:
            model = clone(self.estimator)._mtif_fit(train_data)
        val_data = (model._mtif_data(*val, reset=False) if isinstance(val, tuple)
                    else data.take(val))
        problem = InfluenceProblem(model, train_data, val_data, damping=self.damping,
                                   backend=backend)
        if frozen:
            self._check_frozen_rows(problem)
        if self.method == "newton":
            require_capability(problem.train, "newton", model=model,
                               needed_by="MTIFInfluence(method='newton')")
            strategy = Newton(problem, self.newton_steps)
        else:
            strategy = FirstOrder(problem)
        return _Split(train_rows, None if isinstance(val, tuple) else val, problem, strategy)

    @staticmethod
    def _check_frozen_rows(problem):
        """A frozen model must be given the rows and weights it was fitted on."""
        _check_weights_per_task(problem)
        # Same counts and weights but other rows: the gradient of the objective at the frozen
        # parameters is then far from zero, and influence would answer for another objective.
        relative = problem.relative_gradient_norm()
        if relative <= STATIONARITY_TOL:
            return
        message = (f"The objective's gradient at the frozen parameters is {relative:.3g} of "
                   f"its scale (a fitted minimum gives ~0; tolerance {STATIONARITY_TOL:g}): ")
        if getattr(problem.model, "_mtif_exact_fit", False):  # its fit reaches the minimum
            raise ValueError(
                message + "these are not the rows the model was fitted on. With a "
                "FrozenEstimator pass X, y, tasks and sample_weight exactly as fitted.")
        warnings.warn(message + "either these are not the rows the model was trained on, or "
                      "the model is not at a minimum of its objective (early stopping, "
                      "max_iter). Influence assumes a minimum: the numbers are approximate.",
                      UserWarning, stacklevel=4)

    def _set_fitted_state(self, template, data, splits, frozen, backend):
        n_tasks = splits[0].problem.n_tasks
        n_rows = splits[0].train_rows.size if self.cv is None else data.n_samples
        store = (self.store_influence is True or self.store_influence == "auto"
                 and n_rows * n_tasks * 8 <= INFLUENCE_MEMORY_BUDGET)
        influence = (self._effects_matrix(self._training_sources(splits), n_rows, n_tasks)
                     if store else None)
        # The task level now, unless it was asked not to be kept (then on first access).
        task_level = (self._task_level_of(splits, n_tasks)
                      if self.store_influence is not False and self._task_level_fits(
                          n_tasks, len(splits)) else None)
        estimator = (self.estimator if frozen else splits[0].problem.model
                     if self.cv is None else clone(self.estimator)._mtif_fit(data))
        self._backend_name = backend.name
        self._return_xp = self.backend == "auto" and not backend.is_numpy
        self._splits, self._index, self._n_samples = splits, data.index, data.n_samples
        self._influence, self._task_level = influence, task_level
        self.estimator_ = estimator
        self.tasks_ = np.asarray(data.task_labels)
        self.schur_condition_ = max(split.problem.schur_condition for split in splits)
        self.__dict__.pop("folds_", None)
        if self.cv is None:
            self.train_indices_, self.val_indices_ = splits[0].train_rows, splits[0].val_rows
            self.validation_loss_ = splits[0].problem.validation_loss
            return
        self.train_indices_, self.val_indices_ = np.arange(data.n_samples), None
        self.folds_ = [(split.train_rows, split.val_rows) for split in splits]
        self.validation_loss_ = out_of_fold_loss(splits, n_tasks)

    def _task_level_fits(self, n_tasks, n_splits):
        return (self.store_influence is True
                or n_tasks * n_tasks * 8 * (n_splits + 2) <= INFLUENCE_MEMORY_BUDGET)

    @staticmethod
    def _task_level_of(splits, n_tasks):
        """{"folds": (n_splits, K, K), "mean": (K, K), "se": (K, K) or None}."""
        matrices = np.empty((len(splits), n_tasks, n_tasks))  # no stacked copy
        for fold, split in enumerate(splits):
            matrices[fold] = split.problem.finish(split.strategy.task_effects(
                np.arange(n_tasks)), allow_nan=split.strategy.allows_nan)
        if len(splits) == 1:
            return {"folds": matrices, "mean": matrices[0], "se": None}
        return {"folds": matrices, "mean": matrices.mean(axis=0),
                "se": matrices.std(axis=0, ddof=1) / np.sqrt(len(splits))}

    def _task_level_value(self, key, name):
        if "_splits" not in self.__dict__:
            raise AttributeError(f"{name} exists only after fit.")
        if key != "mean" and self.cv is None:
            raise AttributeError(f"{name} exists only with cross-fitting (cv).")
        if self.__dict__.get("_task_level") is None:
            n_tasks = len(self.tasks_)
            splits = getattr(self._splits, "splits", self._splits)  # dask rows: a fitted state
            if not self._task_level_fits(n_tasks, len(splits)):
                raise AttributeError(
                    f"{name} was not computed: {n_tasks} x {n_tasks} tasks per fold take more "
                    f"than the store_influence='auto' budget of "
                    f"{INFLUENCE_MEMORY_BUDGET / 2**30:g} GiB; pass store_influence=True.")
            self._task_level = self._task_level_of(splits, n_tasks)
        return self._task_level[key]

    @property
    def task_influence_(self):
        """ndarray of shape (n_tasks, n_tasks): the task-level effects (see the class
        docstring); with ``store_influence=False`` computed on first access."""
        return self._task_level_value("mean", "task_influence_")

    @property
    def task_influence_se_(self):
        """ndarray of shape (n_tasks, n_tasks): standard errors of ``task_influence_`` over
        the folds (``cv`` only)."""
        return self._task_level_value("se", "task_influence_se_")

    @property
    def fold_task_influence_(self):
        """ndarray of shape (n_folds, n_tasks, n_tasks): the fold matrices (``cv`` only)."""
        return self._task_level_value("folds", "fold_task_influence_")

