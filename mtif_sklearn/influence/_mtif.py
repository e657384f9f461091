"""MTIFInfluence: data- and task-level multitask influence of a fitted multitask model."""

import warnings
from numbers import Integral, Real

import numpy as np
from scipy.sparse import issparse
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils import _safe_indexing
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils._set_output import _get_output_config
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .._tasks import encode_tasks, resolve_tasks, train_validation_split_by_task, unique_tasks
from ..backend import get_backend, is_numpy_namespace, single_blas_thread, to_numpy
from ._arrow import factor_arrow, solve_schur
from ._effects import (
    perturbation_effects,
    reduced_gradients,
    solve_rows_by_task,
    target_solves,
)
from ._newton import NewtonRemoval, mean_task_losses, newton_block_size

__all__ = ["MTIFInfluence"]

# Rows per chunk when batch_size is None: about 2**22 numbers (32 MiB) of per-row work arrays.
_CHUNK_NUMBERS = 2**22


def _fitted_model(estimator):
    return estimator.estimator if isinstance(estimator, FrozenEstimator) else estimator


def _take(X, rows):
    return None if X is None else _safe_indexing(X, rows)


def _n_rows(X):
    return X.shape[0] if hasattr(X, "shape") else len(X)


def _host_input(array):
    """DataFrames and NumPy arrays as they are; CuPy/torch arrays brought to NumPy."""
    if array is None or hasattr(array, "iloc"):
        return array
    if hasattr(array, "tocsr") or hasattr(array, "toarray"):
        return array
    return to_numpy(array)


def _check_dense(X, name):
    if X is not None and issparse(X):
        raise TypeError(
            f"MTIFInfluence does not support sparse input {name}: the multitask models need "
            "dense features. Convert it with .toarray() (fine for moderate n_features)."
        )


class MTIFInfluence(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
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

    Parameters
    ----------
    estimator : estimator object
        A multitask model exposing the objective protocol (:class:`MultitaskRidge`,
        :class:`MultitaskLogistic`, the models of :mod:`mtif_sklearn.torch`). Unfitted: cloned
        and fitted on the training rows. Already fitted: wrap it in
        :class:`sklearn.frozen.FrozenEstimator` and pass ``fit`` exactly the rows (and
        ``sample_weight``) it was fitted on plus ``X_val``; other rows raise an error.
    validation_fraction : float, default=0.2
        When ``X_val`` is not given, this fraction of every task's rows (stratified by task) is
        held out for validation and the model is fitted on the rest.
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
          Hessian is rank one for the linear models), two small solves and a leverage per row.
          A removed task's own head takes the Newton step of its own term against the new
          shared parameters (the diagonal as in ``loto_effects``). Costs: task level about
          K p^3 on top of first order; row level one validation-loss evaluation per row,
          O(n_train n_val q) in all. Computed with NumPy (a CuPy backend factors on the host
          for this part).
    newton_steps : int, default=1
        Newton steps for ``method="newton"`` (ignored otherwise). Only non-quadratic losses
        gain from more than one. Task level: every further step is a full Newton step at the
        current point (new gradient and Hessian, one arrow factorisation per task and step).
        Row level: every further step is a quasi-Newton (chord) step with the true gradient
        of the objective without the row at the current point but the Hessian of the first
        step (the removed-row Hessian at the full solution), since a new factorisation per row
        would cost as much as a refit; the gradient alone costs O(n_train) per row and step.
    batch_size : int, default=None
        Rows per chunk when computing data-level effects (bounded memory). None picks chunks
        of about 2**22 numbers (32 MiB) of per-row gradients and effects.
    n_jobs : int, default=None
        Parallel chunks through joblib (threads; NumPy backend only).
    random_state : int, RandomState instance or None, default=None
        Seed of the validation split.
    verbose : int, default=0
        Progress messages when > 0.

    Attributes
    ----------
    estimator_ : estimator
        The fitted model whose influence is measured.
    tasks_ : ndarray of shape (n_tasks,)
        Task labels; the column order of every output.
    influence_ : ndarray of shape (n_train, n_tasks)
        ``influence_[i, k]``: effect on task k's validation loss of removing training row i
        (estimated by ``method``).
    task_influence_ : ndarray of shape (n_tasks, n_tasks)
        ``task_influence_[l, k]``: effect on task k of removing task l (its rows and its
        regulariser). The diagonal ``[l, l]`` is the effect on task l of removing it from the
        shared parameters, its own head refitted to them (the limit of eq. 11 as sigma_l -> 0);
        exclude it when ranking task relatedness. It is defined exactly as in
        :func:`~mtif_sklearn.retrain.loto_effects`, but removing a whole task is a large
        perturbation, so this first-order value can be far from the refit (on the chemical data
        its sign can differ for some tasks) while the off-diagonal entries rank like LOTO.
        ``method="newton"`` brings it much closer (exactly the refit for a ridge model).
    train_indices_ : ndarray of int
        Rows of ``X`` the model was trained on (all rows when ``X_val`` was given).
    val_indices_ : ndarray of int or None
        Rows of ``X`` held out for validation (None when ``X_val`` was given).
    validation_loss_ : ndarray of shape (n_tasks,)
        V_k at the fitted model (NaN for tasks without validation rows).
    schur_condition_ : float
        Condition number of the Schur complement of the shared block; large values (a warning is
        raised above 1e12) mean the shared parameters are barely determined.
    n_features_in_ : int
        Number of columns of ``X`` in fit (including a task column).
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names of ``X`` in fit, when it had string column names.

    See Also
    --------
    mtif_sklearn.retrain.loo_effects : The same data-level numbers by refitting.
    mtif_sklearn.retrain.loto_effects : The same task-level numbers by refitting.

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
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, estimator, *, validation_fraction=0.2, damping=0.0, backend="auto",
                 method="first_order", newton_steps=1, batch_size=None, n_jobs=None,
                 random_state=None, verbose=0):
        self.estimator = estimator
        self.validation_fraction = validation_fraction
        self.damping = damping
        self.backend = backend
        self.method = method
        self.newton_steps = newton_steps
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    @property
    def _xp(self):
        return get_backend(self._backend_name)

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
            (X, y) is held out.

        Returns
        -------
        self : MTIFInfluence
            The fitted transformer.
        """
        self._validate_params()
        xp = get_backend(self.backend, X)
        # The namespace is kept by name (a module does not pickle) and resolved on use.
        self._backend_name = "numpy" if is_numpy_namespace(xp) else "cupy"
        self._return_xp = self.backend == "auto" and self._backend_name == "cupy"
        if y is None:
            raise ValueError("MTIFInfluence requires y: influence depends on every row's loss "
                             "gradient, so fit(X, y, ...) needs the targets.")
        X, y, X_val, y_val = (_host_input(a) for a in (X, y, X_val, y_val))
        _check_dense(X, "X")
        _check_dense(X_val, "X_val")
        # Sets n_features_in_ / feature_names_in_; the model validates values itself.
        validate_data(self, X, skip_check_array=True, reset=True)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, np.empty((_n_rows(X), 0)),
                                                 dtype=np.float64, ensure_non_negative=True)
        model = _fitted_model(self.estimator)
        task_column = model.get_params().get("task_column") if hasattr(model, "get_params") \
            else None
        if X_val is None and isinstance(self.estimator, FrozenEstimator):
            raise ValueError(
                "A FrozenEstimator is already fitted, so no validation rows can be held out of "
                "its training data: pass X_val, y_val (and tasks_val), and X, y, tasks, "
                "sample_weight exactly as the model was fitted."
            )
        if X_val is None:
            if y_val is not None or tasks_val is not None:
                raise ValueError("y_val/tasks_val were given without X_val.")
            _, labels = resolve_tasks(X, tasks, task_column)
            if labels is None:
                labels = np.zeros(len(y), dtype=np.int64)
            task_names = unique_tasks(labels)
            codes = encode_tasks(labels, task_names)
            self.train_indices_, self.val_indices_ = train_validation_split_by_task(
                codes, len(task_names), self.validation_fraction, self.random_state,
                task_names=task_names.tolist())
            X_val, y_val = _take(X, self.val_indices_), _take(y, self.val_indices_)
            tasks_val = _take(tasks, self.val_indices_)
            X, y = _take(X, self.train_indices_), _take(y, self.train_indices_)
            tasks = _take(tasks, self.train_indices_)
            sample_weight = _take(sample_weight, self.train_indices_)
        else:
            if y_val is None:
                raise ValueError("X_val was given without y_val.")
            self.train_indices_ = np.arange(_n_rows(X))
            self.val_indices_ = None
        self._train_index = getattr(X, "index", None)

        if isinstance(self.estimator, FrozenEstimator):
            self.estimator_ = self.estimator
        else:
            self.estimator_ = clone(self.estimator)
            fit_params = {} if sample_weight is None else {"sample_weight": sample_weight}
            if tasks is not None:
                fit_params["tasks"] = tasks
            self.estimator_.fit(X, y, **fit_params)
        fitted = _fitted_model(self.estimator_)
        check_is_fitted(fitted)
        self.tasks_ = np.asarray(fitted.tasks_)
        self._compute(fitted, X, y, tasks, sample_weight, X_val, y_val, tasks_val)
        return self

    def _compute(self, model, X, y, tasks, sample_weight, X_val, y_val, tasks_val):
        train = model._mtif_objective(X, y, tasks=tasks, sample_weight=sample_weight)
        # Each task's row weights w_i / n_k must sum to 1 over the rows the model was fitted on
        # (eq. 5); otherwise these are not its training rows (or weights) and every number
        # below would silently refer to another objective.
        weight_per_task = np.bincount(train.codes, weights=train.row_weights,
                                      minlength=len(self.tasks_))
        mismatch = np.flatnonzero(~np.isclose(weight_per_task, 1.0, rtol=1e-8, atol=0.0))
        if mismatch.size:
            raise ValueError(
                f"The rows (or sample_weight) passed to fit are not the ones the model was "
                f"fitted on: task(s) {self.tasks_[mismatch].tolist()[:5]} carry "
                f"{weight_per_task[mismatch][:5].round(6).tolist()} of their training weight. "
                "With a FrozenEstimator pass X, y, tasks and sample_weight exactly as fitted."
            )
        val = model._mtif_objective(X_val, y_val, tasks=tasks_val)
        block_size = max(train.n_task_params, train.n_shared_params)
        # Small factorisations on one BLAS thread; the large row-effect products keep them all.
        with single_blas_thread(self._xp, block_size):
            self._factor_and_solve_targets(train, val)
        xp, n_tasks = self._xp, len(self.tasks_)
        self._train_objective = train
        if self.method == "newton":
            self._val_objective = val
            self._newton = self._newton_removal(train)
            self.influence_ = self._newton_row_effects(train, train.row_weights)
            self.task_influence_ = self._newton_task_effects()
            return
        self._newton = None
        self.influence_ = self._row_effects(train, train.row_weights)

        task_grad, task_shared = train.task_gradients()
        task_effects = perturbation_effects(
            self._factor, self._z, self._x_shared, xp.asarray(np.arange(n_tasks)),
            xp.asarray(task_grad), None if task_shared is None else xp.asarray(task_shared))
        self.task_influence_ = self._finish(task_effects)

    def _factor_and_solve_targets(self, train, val):
        """Factor the arrow Hessian and solve H^-1 v_k for every task's validation gradient."""
        xp = self._xp
        n_tasks = len(self.tasks_)

        blocks = [xp.asarray(b) for b in train.hessian_blocks()]
        self._factor = factor_arrow(*blocks, damping=self.damping,
                                    task_names=self.tasks_.tolist())
        self.schur_condition_ = self._factor.schur_condition
        if self.schur_condition_ > 1e12:
            warnings.warn(
                f"The Schur complement of the shared block has condition number "
                f"{self.schur_condition_:.2g}: the shared parameters are barely determined and "
                "influence values may be inaccurate. Increase shared_alpha or damping.",
                UserWarning, stacklevel=4)

        # Gradient of each V_k = mean loss over task k's validation rows.
        val_counts = np.bincount(val.codes, minlength=n_tasks).astype(np.float64)
        self.validation_loss_ = np.bincount(val.codes, weights=val.row_losses(),
                                            minlength=n_tasks) / np.where(val_counts, val_counts,
                                                                          np.nan)
        missing = np.flatnonzero(val_counts == 0)
        if missing.size:
            warnings.warn(
                f"Task(s) {self.tasks_[missing].tolist()[:5]} have no validation rows; their "
                "columns of influence_ and task_influence_ are NaN.", UserWarning, stacklevel=4)
        val_task, val_shared = val.row_gradients()
        scale = 1.0 / np.where(val_counts, val_counts, np.nan)
        val_task = np.nan_to_num(val.task_sums(val_task) * scale[:, None])
        p = self._factor.coupling.shape[2]
        val_shared = (np.zeros((n_tasks, p)) if val_shared is None
                      else np.nan_to_num(val.task_sums(val_shared) * scale[:, None]))
        self._z, self._x_shared = target_solves(self._factor, xp.asarray(val_task),
                                                xp.asarray(val_shared))
        self._val_missing = missing

    def _chunks(self, n_rows, per_row):
        """Row slices of ``batch_size`` rows, or of ~_CHUNK_NUMBERS numbers at ``per_row`` each."""
        size = self.batch_size or max(1, _CHUNK_NUMBERS // per_row)
        return [slice(start, min(start + size, n_rows)) for start in range(0, n_rows, size)]

    def _row_effects(self, objective, row_weights):
        """Effects of removing each row of ``objective`` (its loss weighted by row_weights)."""
        xp = self._xp
        q, p = self._factor.coupling.shape[1:]

        effects = np.empty((len(objective.codes), len(self.tasks_)))

        on_numpy = is_numpy_namespace(xp)

        def chunk_effects(rows):  # each chunk fills its own rows of ``effects``
            grad_task, grad_shared = objective.row_gradients(rows)
            weight = row_weights[rows][:, None]
            chunk = perturbation_effects(
                self._factor, self._z, self._x_shared, xp.asarray(objective.codes[rows]),
                xp.asarray(grad_task * weight),
                None if grad_shared is None else xp.asarray(grad_shared * weight),
                out=effects[rows] if on_numpy else None)
            if not on_numpy:
                effects[rows] = to_numpy(chunk)

        # Numbers held per row of a chunk: gradient, reduced gradient, output row, and on
        # non-NumPy backends the gathered (q, p) block W_l of the row's task.
        per_row = q + p + len(self.tasks_) + (0 if on_numpy else q * p)
        chunks = self._chunks(len(objective.codes), per_row)
        # Chunks write into one shared array: require shared memory, so that a process-based
        # joblib backend (loky, dask) falls back to threads instead of losing the writes.
        Parallel(n_jobs=self.n_jobs if on_numpy else 1, require="sharedmem",
                 verbose=self.verbose)(delayed(chunk_effects)(rows) for rows in chunks)
        return self._finish(effects)

    # -- Newton-step removal (method="newton") ------------------------------------------------
    def _newton_removal(self, train):
        factor = self._factor
        if not is_numpy_namespace(self._xp):  # the Newton part runs on the host
            factor = factor_arrow(*train.hessian_blocks(), damping=self.damping,
                                  task_names=self.tasks_.tolist())
        q, p = factor.coupling.shape[1:]
        with single_blas_thread(np, max(q, p)):
            return NewtonRemoval(train, factor, self.damping, self.newton_steps,
                                 self.tasks_.tolist())

    def _newton_chunks(self, n_items, n_eval):
        q, p = self._newton.factor.coupling.shape[1:]
        size = self.batch_size or newton_block_size(len(self.tasks_), q, p, n_eval)
        return [np.arange(start, min(start + size, n_items)) for start in range(0, n_items, size)]

    def _newton_map(self, items, func):
        """Run ``func(chunk)`` over chunks of ``items`` (threads), results in order."""
        q, p = self._newton.factor.coupling.shape[1:]

        def run(chunk):
            with single_blas_thread(np, max(q, p)):
                return func(chunk)

        return Parallel(n_jobs=self.n_jobs, prefer="threads", verbose=self.verbose)(
            delayed(run)(chunk) for chunk in items)

    def _newton_row_effects(self, objective, row_weights):
        n_rows, n_tasks = len(objective.codes), len(self.tasks_)
        val, newton = self._val_objective, self._newton
        chunks = self._newton_chunks(n_rows, len(val.codes))

        def chunk_effects(rows):
            points = newton.row_points(objective, rows, np.asarray(row_weights)[rows])
            return mean_task_losses(val, *points, n_tasks) - self.validation_loss_

        parts = self._newton_map(chunks, chunk_effects)
        effects = np.concatenate(parts) if parts else np.empty((0, n_tasks))
        return self._finish(effects)

    def _newton_task_effects(self):
        n_tasks, val, newton = len(self.tasks_), self._val_objective, self._newton
        chunks = self._newton_chunks(n_tasks, len(val.codes))
        parts = self._newton_map(chunks, lambda tasks: mean_task_losses(
            val, *newton.task_points(tasks), n_tasks) - self.validation_loss_)
        return self._finish(np.concatenate(parts))

    def _finish(self, effects):
        effects = np.asarray(to_numpy(effects), dtype=np.float64)
        if self._val_missing.size:
            effects[:, self._val_missing] = np.nan
        return effects

    # -- outputs -----------------------------------------------------------------------------
    def set_output(self, *, transform=None):
        """Choose the container of ``fit_transform``, ``transform`` and ``sample_influence``.

        Parameters
        ----------
        transform : {"default", "pandas"}, default=None
            "pandas": DataFrames whose columns are the task labels (and the training rows'
            index); "default": arrays; None: unchanged.

        Returns
        -------
        self : MTIFInfluence
        """
        if transform is not None:
            if transform not in ("default", "pandas"):
                raise ValueError(f"transform must be 'default' or 'pandas'; got {transform!r}.")
            self._sklearn_output_config = {**getattr(self, "_sklearn_output_config", {}),
                                           "transform": transform}
        return self

    def _wrap(self, effects, index=None, columns=None):
        """NumPy (or CuPy for CuPy input with backend="auto"), or a DataFrame if configured."""
        if _get_output_config("transform", self)["dense"] == "pandas":
            import pandas as pd

            names = self.get_feature_names_out() if columns is None else columns
            return pd.DataFrame(effects, index=index, columns=names)
        if self._return_xp:
            return self._xp.asarray(effects)
        return effects

    def fit_transform(self, X, y, tasks=None, sample_weight=None, X_val=None, y_val=None,
                      tasks_val=None):
        """Fit and return the data-level effects of the training rows.

        Parameters
        ----------
        X, y, tasks, sample_weight, X_val, y_val, tasks_val
            As in :meth:`fit`.

        Returns
        -------
        influence : ndarray or DataFrame of shape (n_train, n_tasks)
            ``influence_``: rows are ``X``'s rows at ``train_indices_``, columns ``tasks_``.
        """
        self.fit(X, y, tasks=tasks, sample_weight=sample_weight, X_val=X_val, y_val=y_val,
                 tasks_val=tasks_val)
        index = None if self._train_index is None else self._train_index
        return self._wrap(self.influence_, index=index)

    def transform(self, X, y=None, tasks=None):
        """Effects of removing these rows (as if each had weight 1 in the training objective).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows (with the task column when the model uses one).
        y : array-like of shape (n_samples,)
            Their targets (the effect depends on the row's loss gradient). Required; the
            default None only exists so that a missing ``y`` gets a clear error.
        tasks : array-like of shape (n_samples,), default=None
            Task of every row.

        Returns
        -------
        effects : ndarray or DataFrame of shape (n_samples, n_tasks)
        """
        check_is_fitted(self, "influence_")
        X = _host_input(X)
        _check_dense(X, "X")
        validate_data(self, X, skip_check_array=True, reset=False)
        if y is None:
            raise ValueError("MTIFInfluence.transform requires y: a row's influence depends on "
                             "its loss gradient. Call transform(X, y, tasks=...).")
        model = _fitted_model(self.estimator_)
        objective = model._mtif_objective(X, to_numpy(y), tasks=tasks)
        weights = 1.0 / model.task_weight_sum_[objective.codes]
        if self._newton is not None:
            effects = self._newton_row_effects(objective, weights)
        else:
            effects = self._row_effects(objective, weights)
        return self._wrap(effects, index=getattr(X, "index", None))

    def sample_influence(self, X_eval, y_eval, tasks=None):
        """Effect of every training row on the loss of every evaluation row (paper Figure 1).

        Parameters
        ----------
        X_eval : array-like of shape (n_eval, n_features)
            Evaluation rows.
        y_eval : array-like of shape (n_eval,)
            Their targets.
        tasks : array-like of shape (n_eval,), default=None
            Task of every evaluation row.

        Returns
        -------
        effects : ndarray or DataFrame of shape (n_train, n_eval)
            ``effects[i, e]``: change of row e's loss when training row i is removed
            (positive: row i helps row e), estimated by ``method``.
        """
        check_is_fitted(self, "influence_")
        xp = self._xp
        model = _fitted_model(self.estimator_)
        evaluation = model._mtif_objective(X_eval, to_numpy(y_eval), tasks=tasks)
        train = self._train_objective
        columns = np.asarray([f"eval{i}" for i in range(len(evaluation.codes))], dtype=object)
        if self._newton is not None:
            newton, base = self._newton, evaluation.row_losses()
            parts = self._newton_map(
                self._newton_chunks(len(train.codes), len(evaluation.codes)),
                lambda rows: evaluation.row_losses_at(
                    *newton.row_points(train, rows, train.row_weights[rows])) - base)
            effects = (np.concatenate(parts) if parts
                       else np.empty((0, len(evaluation.codes))))
            return self._wrap(effects, index=self._train_index, columns=columns)
        eval_task, eval_shared = evaluation.row_gradients()
        factor = self._factor
        # H^-1 grad(loss_e): block part z_e and shared part x_e of every evaluation row.
        z_eval, pushed = solve_rows_by_task(factor, evaluation.codes, eval_task)
        shared_rhs = -pushed if eval_shared is None else xp.asarray(eval_shared) - pushed
        x_eval = solve_schur(factor, xp.matrix_transpose(shared_rhs))  # (p, n_eval)
        n_eval = len(evaluation.codes)
        effects = np.zeros((len(train.codes), n_eval))
        q, p = factor.coupling.shape[1:]
        # Three (rows, n_eval) arrays per chunk besides the gradients.
        for rows in self._chunks(len(train.codes), q + p + 3 * max(n_eval, 1)):
            grad_task, grad_shared = train.row_gradients(rows)
            weight = train.row_weights[rows][:, None]
            codes = xp.asarray(train.codes[rows])
            reduced = reduced_gradients(factor, codes, xp.asarray(grad_task * weight),
                                        None if grad_shared is None
                                        else xp.asarray(grad_shared * weight))
            block = to_numpy(xp.matmul(reduced, x_eval))
            # Within-task path: training row i and evaluation row e of the same task.
            same = train.codes[rows][:, None] == evaluation.codes[None, :]
            within = to_numpy(xp.matmul(xp.asarray(grad_task * weight),
                                        xp.matrix_transpose(z_eval)))
            effects[rows] = block + same * within
        return self._wrap(effects, index=self._train_index, columns=columns)

    def get_feature_names_out(self, input_features=None):
        """Output column names: one per task, ``tasks_`` as strings.

        Parameters
        ----------
        input_features : ignored
            Present for API consistency.

        Returns
        -------
        names : ndarray of str objects, shape (n_tasks,)
        """
        check_is_fitted(self, "tasks_")
        return np.asarray([str(t) for t in self.tasks_], dtype=object)
