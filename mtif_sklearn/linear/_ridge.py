"""MultitaskRidge: multitask least squares with task parameters tied to a shared vector."""

from sklearn.base import RegressorMixin, _fit_context
from sklearn.metrics import r2_score

from .._dask import is_dask
from ..utils._docstring import PREDICT, SCORE_R2, doc
from ._base import _BaseMultitaskLinear
from ._dask import dask_score


class MultitaskRidge(RegressorMixin, _BaseMultitaskLinear):
    """Multitask ridge regression: every task's coefficients shrink towards a learnt shared vector.

    Minimises (paper eq. 2, Example 1)::

        sum_k [ (1/n_k) sum_i w_ki (y_ki - x_ki @ theta_k - b_k)^2
                + alpha_k ||theta_k - gamma||^2 + intercept_alpha_k (b_k - c)^2 ]
        + shared_alpha ||gamma||^2

    over the task coefficients ``theta_k``, intercepts ``b_k``, the shared coefficients ``gamma``
    and the shared intercept ``c``, where ``n_k`` is task k's total sample weight. The fit is one
    arrow-structured solve (K small task blocks and a Schur complement), never the dense
    ``(K (d+1) + d+1)^2`` normal equations.

    A task may have a single row (or fewer rows than features): the tie to the shared model keeps
    its fit unique, shrinking it towards ``gamma, c`` (more strongly for larger ``alpha_k``).

    Parameters
    ----------
    alpha : float or dict, default=0.1
        Strength alpha_k > 0 of the tie between each task and the shared model; a dict maps every
        task label to its own value. Large values pool the tasks into one model; values near 0
        give independent per-task least squares.
    shared_alpha : float, default=1e-3
        Ridge penalty on the shared coefficients ``gamma`` (not on the shared intercept). The
        default is small but positive so that every fit, and the Hessian that MTIFInfluence
        inverts, is strictly convex even with an all-zero or duplicated feature column.
    intercept_alpha : float, dict or None, default=None
        Strength >= 0 of the pull of each task's intercept ``b_k`` towards the shared intercept
        ``c``; a dict maps every task label to its own value. None: the task's ``alpha`` (one
        tie for coefficients and intercept). 0 leaves the task intercepts free: each task keeps
        its own level while its slopes are still shared. Measured on the computer survey (190
        respondents, each with their own rating level): free intercepts lowered held-out MSE
        from 4.78 to 3.74, more than any task selection, so tune it (``GridSearchCV`` over
        ``intercept_alpha=[0, None]``). When every intercept is free, ``c`` enters no term of
        the objective; it is then fixed at 0 in the fit (by a penalty of its own, so the
        problem and the Hessian that MTIFInfluence inverts stay strictly convex) and
        ``shared_intercept_`` reports the ``n_k``-weighted mean of the task intercepts, which is
        what ``unknown_task="shared"`` predicts with. Ignored when ``fit_intercept=False``.
    fit_intercept : bool, default=True
        Whether each task (and the shared model) has an intercept.
    task_column : str or int, default=None
        Column of ``X`` holding the task labels (name for DataFrames, position for arrays). The
        column is not used as a feature. When None, pass ``tasks=`` to fit/predict/score.
    unknown_task : {"error", "shared"}, default="error"
        At prediction time, a task not seen in fit raises ("error") or is predicted with the
        shared model ``gamma, c`` ("shared").

    Attributes
    ----------
    coef_ : ndarray of shape (n_tasks, n_features)
        Task coefficients theta_k, rows in ``tasks_`` order.
    intercept_ : ndarray of shape (n_tasks,)
        Task intercepts b_k (zeros when ``fit_intercept=False``).
    shared_coef_ : ndarray of shape (n_features,)
        Shared coefficients gamma.
    shared_intercept_ : float
        Shared intercept c; with every ``intercept_alpha`` 0, the ``n_k``-weighted mean task
        intercept (see ``intercept_alpha``).
    tasks_ : ndarray of shape (n_tasks,)
        Sorted task labels seen in fit. A fit without task information has one task, ``0``.
    task_weight_sum_ : ndarray of shape (n_tasks,)
        n_k, the total sample weight of each task (the normaliser of its loss).
    n_iter_ : int
        Number of Newton steps (1 for this quadratic objective, plus a polishing step).
    n_features_in_ : int
        Number of columns of ``X`` in fit (including the task column when there is one).
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names of ``X`` in fit, when it had string column names.

    See Also
    --------
    MultitaskLogistic : The same model with the binary logistic loss.
    MTIFInfluence : Which rows and tasks help or hurt each task of a fitted model.

    Examples
    --------
    >>> from mtif_sklearn import MultitaskRidge
    >>> from mtif_sklearn.datasets import make_multitask_regression
    >>> X, y, tasks = make_multitask_regression(n_tasks=3, n_samples_per_task=40, n_features=5,
    ...                                         random_state=0)
    >>> model = MultitaskRidge(alpha=0.1).fit(X, y, tasks=tasks)
    >>> model.coef_.shape
    (3, 5)
    >>> # noise has variance 1 and the signal about 5, so R^2 near 0.8 is what a good fit gets
    >>> 0.75 < model.score(X, y, tasks=tasks) < 0.9
    True
    """

    _loss = "squared_error"

    def __init__(self, alpha=0.1, *, shared_alpha=1e-3, intercept_alpha=None, fit_intercept=True,
                 task_column=None, unknown_task="error"):
        self.alpha = alpha
        self.shared_alpha = shared_alpha
        self.intercept_alpha = intercept_alpha
        self.fit_intercept = fit_intercept
        self.task_column = task_column
        self.unknown_task = unknown_task

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, tasks=None, sample_weight=None):
        """Fit the multitask model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows (with the task column when ``task_column`` is set).
        y : array-like of shape (n_samples,)
            Targets.
        tasks : array-like of shape (n_samples,), default=None
            Task label (int or str) of every row. Without it (and without ``task_column``) all
            rows form one task.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative row weights w_ki.

        Returns
        -------
        self : MultitaskRidge
            The fitted model.
        """
        return self._fit(X, y, tasks, sample_weight)

    @doc(PREDICT)
    def predict(self, X, tasks=None):
        return self._raw_predict(X, tasks)

    @doc(SCORE_R2)
    def score(self, X, y, tasks=None, sample_weight=None):
        if is_dask(X):  # dask rows: reduced block by block (mtif_sklearn.linear._dask)
            return dask_score(self, X, y, tasks, sample_weight)
        return r2_score(y, self.predict(X, tasks=tasks), sample_weight=sample_weight)
