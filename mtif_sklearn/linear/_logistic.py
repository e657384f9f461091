"""MultitaskLogistic: multitask binary logistic regression with tied task parameters."""

from numbers import Integral, Real

import numpy as np
from scipy.special import expit
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.metrics import accuracy_score
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from .._dask import is_dask
from ..utils._docstring import (
    DECISION_FUNCTION,
    PREDICT_LABELS,
    PREDICT_LOG_PROBA,
    PREDICT_PROBA,
    SCORE_ACCURACY,
    doc,
)
from . import _dask
from ._base import _BaseMultitaskLinear


class MultitaskLogistic(ClassifierMixin, _BaseMultitaskLinear):
    """Multitask binary logistic regression, fitted by Newton's method with arrow solves.

    Minimises (paper eq. 2, Example 1, with the logistic loss)::

        sum_k [ (1/n_k) sum_i w_ki log(1 + exp(-s_ki (x_ki @ theta_k + b_k)))
                + alpha_k ||theta_k - gamma||^2 + intercept_alpha_k (b_k - c)^2 ]
        + shared_alpha ||gamma||^2

    where ``s_ki`` is +1 for ``classes_[1]`` and -1 for ``classes_[0]``. ``y`` must have exactly
    two classes overall (any labels); a task whose rows are all one class, or a task with a
    single row, still fits, because the tie to the shared model regularises it. Each Newton step
    solves the arrow-shaped Hessian through its task blocks and Schur complement, with a
    backtracking line search.

    Parameters
    ----------
    alpha : float or dict, default=0.1
        Tie strength alpha_k > 0 between each task and the shared model (dict: per task label).
    shared_alpha : float, default=1e-3
        Ridge penalty on the shared coefficients; small but positive so every fit is strictly
        convex (also with all-zero feature columns or separable tasks).
    intercept_alpha : float, dict or None, default=None
        Strength >= 0 of the tie of each task's intercept to the shared intercept (dict: per
        task label). None: the task's ``alpha``; 0: free task intercepts (each task its own
        base rate; every such task needs rows of both classes, otherwise its intercept has no
        finite optimum and fit raises). With every intercept free, the shared intercept is
        fixed at 0 in the fit
        and ``shared_intercept_`` reports the ``n_k``-weighted mean task intercept, which
        ``unknown_task="shared"`` predicts with (see :class:`MultitaskRidge`).
    fit_intercept : bool, default=True
        Whether each task (and the shared model) has an intercept.
    task_column : str or int, default=None
        Column of ``X`` holding the task labels; not used as a feature.
    unknown_task : {"error", "shared"}, default="error"
        How predict treats a task not seen in fit.
    tol : float, default=1e-8
        Newton stops when the largest absolute gradient entry is below ``tol``. Newton converges
        quadratically, so a tight default costs one or two extra steps and gives parameters
        accurate enough for influence functions and exact refits. The threshold is absolute,
        so it depends on the feature scale: standardise features (``StandardScaler``) whose
        scale is far from 1. Steps that cannot lower the objective beyond round-off but still
        shrink the gradient are accepted, so badly scaled features do not stall the fit.
    max_iter : int, default=100
        Maximum number of Newton steps; a ConvergenceWarning is raised when it is reached.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The two class labels.
    coef_ : ndarray of shape (n_tasks, n_features)
        Task coefficients theta_k.
    intercept_ : ndarray of shape (n_tasks,)
        Task intercepts b_k.
    shared_coef_ : ndarray of shape (n_features,)
        Shared coefficients gamma.
    shared_intercept_ : float
        Shared intercept c (with every ``intercept_alpha`` 0: the ``n_k``-weighted mean task
        intercept).
    tasks_ : ndarray of shape (n_tasks,)
        Sorted task labels seen in fit.
    task_weight_sum_ : ndarray of shape (n_tasks,)
        n_k, the total sample weight of each task.
    n_iter_ : int
        Newton steps taken.
    n_features_in_ : int
        Number of columns of ``X`` in fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names of ``X`` in fit, when it had string column names.

    See Also
    --------
    MultitaskRidge : The same model with the squared loss.

    Examples
    --------
    >>> from mtif_sklearn import MultitaskLogistic
    >>> from mtif_sklearn.datasets import make_multitask_classification
    >>> X, y, tasks = make_multitask_classification(n_tasks=3, n_samples_per_task=60,
    ...                                             n_features=5, random_state=0)
    >>> clf = MultitaskLogistic(alpha=0.05).fit(X, y, tasks=tasks)
    >>> clf.predict_proba(X[:2], tasks=tasks[:2]).shape
    (2, 2)
    """

    __metadata_request__predict_proba = {"tasks": True}
    __metadata_request__predict_log_proba = {"tasks": True}
    __metadata_request__decision_function = {"tasks": True}

    _parameter_constraints: dict = {
        **_BaseMultitaskLinear._parameter_constraints,
        "tol": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
    }

    _loss = "log_loss"

    def __init__(self, alpha=0.1, *, shared_alpha=1e-3, intercept_alpha=None, fit_intercept=True,
                 task_column=None, unknown_task="error", tol=1e-8, max_iter=100):
        self.alpha = alpha
        self.shared_alpha = shared_alpha
        self.intercept_alpha = intercept_alpha
        self.fit_intercept = fit_intercept
        self.task_column = task_column
        self.unknown_task = unknown_task
        self.tol = tol
        self.max_iter = max_iter

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def _encode_targets(self, y, *, reset):
        if reset:
            check_classification_targets(y)
            classes = np.unique(y)
            if classes.shape[0] != 2:
                raise ValueError(
                    "Only binary classification is supported. MultitaskLogistic needs exactly "
                    f"2 classes in y; got {classes.shape[0]} ({classes.tolist()[:5]}). Tasks "
                    "may be all one class, but y as a whole needs both."
                )
            self.classes_ = classes
        unknown = ~np.isin(y, self.classes_)
        if np.any(unknown):
            raise ValueError(f"y has labels {np.unique(np.asarray(y)[unknown]).tolist()[:5]} "
                             f"that are not among classes_ {self.classes_.tolist()}.")
        return (np.asarray(y) == self.classes_[1]).astype(np.float64)

    def _check_free_intercepts(self, data):
        """A free intercept (intercept_alpha 0) of a task whose rows are all one class has no
        finite optimum (its loss keeps falling as b_k -> +-inf): refuse it up front."""
        if not self.fit_intercept:
            return
        free = self._intercept_alpha_per_task(data.task_labels) == 0
        if not free.any():
            return
        weighted = data.sample_weight > 0
        positives = np.bincount(data.codes[weighted], weights=data.y[weighted],
                                minlength=data.n_tasks)
        rows = np.bincount(data.codes[weighted], minlength=data.n_tasks)
        one_class = free & (rows > 0) & ((positives == 0) | (positives == rows))
        if one_class.any():
            raise ValueError(
                f"Task(s) {data.task_labels[one_class].tolist()[:5]} have rows of one class "
                "only and a free intercept (intercept_alpha 0): their intercept has no finite "
                "optimum. Give them a positive intercept_alpha (a dict sets it per task), or "
                "drop those tasks.")

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, tasks=None, sample_weight=None):
        """Fit the multitask classifier.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows (with the task column when ``task_column`` is set).
        y : array-like of shape (n_samples,)
            Binary labels (two classes overall).
        tasks : array-like of shape (n_samples,), default=None
            Task label of every row. Without it (and without ``task_column``) all rows form one
            task.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative row weights.

        Returns
        -------
        self : MultitaskLogistic
            The fitted classifier.
        """
        return self._fit(X, y, tasks, sample_weight)

    @doc(DECISION_FUNCTION)
    def decision_function(self, X, tasks=None):
        return self._raw_predict(X, tasks)

    @doc(PREDICT_PROBA)
    def predict_proba(self, X, tasks=None):
        if is_dask(X):  # dask rows: lazy (mtif_sklearn.linear._dask)
            return _dask.dask_predict_proba(self, X, tasks)
        positive = expit(self.decision_function(X, tasks=tasks))
        return np.column_stack([1.0 - positive, positive])

    @doc(PREDICT_LOG_PROBA)
    def predict_log_proba(self, X, tasks=None):
        if is_dask(X):  # dask rows: lazy (mtif_sklearn.linear._dask)
            return _dask.dask_predict_log_proba(self, X, tasks)
        raw = self.decision_function(X, tasks=tasks)
        return np.column_stack([-np.logaddexp(0.0, raw), -np.logaddexp(0.0, -raw)])

    @doc(PREDICT_LABELS)
    def predict(self, X, tasks=None):
        check_is_fitted(self)
        if is_dask(X):  # dask rows: lazy (mtif_sklearn.linear._dask)
            return _dask.dask_predict(self, X, tasks)
        return self.classes_[(self.decision_function(X, tasks=tasks) > 0).astype(int)]

    @doc(SCORE_ACCURACY)
    def score(self, X, y, tasks=None, sample_weight=None):
        if is_dask(X):  # dask rows: reduced block by block (mtif_sklearn.linear._dask)
            return _dask.dask_score(self, X, y, tasks, sample_weight)
        return accuracy_score(y, self.predict(X, tasks=tasks), sample_weight=sample_weight)
