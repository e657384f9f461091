"""Shared docstring fragments (imbalanced-learn's ``Substitution`` pattern).

A parameter documented in many places is written once here; docstrings hold a placeholder line
``{name}`` at the indentation where the fragment goes. Only the named placeholders are replaced,
so literal braces elsewhere (``{"error", "shared"}``) need no escaping.
"""

import inspect

__all__ = ["DOCS", "Substitution", "doc"]


class Substitution:
    """Replace placeholder lines ``{name}`` of a docstring by shared fragments.

    Parameters
    ----------
    **fragments : str
        Fragment text by placeholder name; continuation lines are indented relative to the
        first line, which is placed at the placeholder's indentation.
    """

    def __init__(self, **fragments):
        self.fragments = fragments

    def __call__(self, obj):
        """Substitute the placeholders of ``obj.__doc__`` and return ``obj``.

        Parameters
        ----------
        obj : function or class
            Its docstring holds the placeholder lines.

        Returns
        -------
        obj : function or class
            The same object, docstring substituted.
        """
        if obj.__doc__:
            obj.__doc__ = substitute(obj.__doc__, self.fragments)
        return obj


def substitute(text, fragments):
    """``text`` with every line that is exactly ``{name}`` replaced by its fragment.

    Parameters
    ----------
    text : str
        A docstring.
    fragments : dict
        Fragment text by name.

    Returns
    -------
    text : str
    """
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        name = stripped[1:-1] if stripped.startswith("{") and stripped.endswith("}") else None
        if name in fragments:
            indent = line[:len(line) - len(line.lstrip())]
            fragment = inspect.cleandoc(fragments[name])
            out.extend(indent + part if part else "" for part in fragment.splitlines())
        else:
            out.append(line)
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def doc(template, **fragments):
    """Give a function the docstring ``template`` with ``fragments`` (and :data:`DOCS`)
    substituted: for methods shared by several estimators (predict, score, ...).

    Parameters
    ----------
    template : str
        The docstring template.
    **fragments : str
        Fragments beyond :data:`DOCS`.

    Returns
    -------
    decorator : callable
    """
    def decorate(func):
        func.__doc__ = substitute(inspect.cleandoc(template), {**DOCS, **fragments})
        return func

    return decorate


#: Parameter fragments.
DOCS = {
    "X_predict": """
        X : array-like of shape (n_samples, n_features)
            Rows (with the task column when the model has a ``task_column``).""",
    "X_fit": """
        X : array-like of shape (n_samples, n_features)
            Training rows (with the task column when the model has a ``task_column``).""",
    "tasks": """
        tasks : array-like of shape (n_samples,), default=None
            Task label (int or str) of every row; not needed with a ``task_column`` or when
            the model has a single task. Scorers drop it (scikit-learn issue 27977): inside
            a Pipeline or GridSearchCV enable metadata routing, or use ``task_column``.""",
    "tasks_fit": """
        tasks : array-like of shape (n_samples,), default=None
            Task label (int or str) of every row. Without it (and without ``task_column``) all
            rows form one task.""",
    "sample_weight": """
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative row weights (w_ki in the objective).""",
    "selector_fit_data": """
        X : array-like of shape (n_samples, n_features)
            Training rows (with the task column when the estimator uses ``task_column``).
        y : array-like of shape (n_samples,)
            Targets.
        tasks : array-like of shape (n_samples,), default=None
            Task label of every row (unless the estimator has a ``task_column``).
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights of the training objective (with metadata routing enabled, passed only
            when the inner estimator requests it).""",
    "sample_weight_score": """
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights of the score.""",
    "task_column": """
        task_column : str or int, default=None
            Column of ``X`` holding the task labels (name for DataFrames, position for
            arrays). The column is not used as a feature. When None, pass ``tasks=`` to
            fit/predict/score.""",
    "unknown_task": """
        unknown_task : {"error", "shared"}, default="error"
            At prediction time, a task not seen in fit raises ("error") or is predicted with
            the shared model ("shared"). Labels are compared by value and type: ``"0"`` is
            not the task ``0``. With "shared", when most rows match no task and their labels
            have another type than ``tasks_`` (strings vs numbers), a ``UserWarning`` names
            the mismatch (the rows still go to the shared model); "error" names it in its
            message.""",
    "random_state": """
        random_state : int, RandomState instance or None, default=None
            Seed of the random choices (folds, splits, initialisation); an int makes fits
            reproducible.""",
    "n_jobs": """
        n_jobs : int, default=None
            Parallel jobs through joblib (None: 1 unless in a ``joblib.parallel_config``).""",
    "verbose": """
        verbose : int, default=0
            Progress output when > 0 (a tqdm bar when tqdm is installed).""",
}

#: Citations (numpydoc "References" entries; numpydoc renames the labels per docstring).
REFERENCES = {
    "ref_mtif": """
        .. [1] Y. Tu, Z. Liu, J. W. Ma and W. Tang. "Measuring Fine-Grained Relatedness in
           Multitask Learning via Data Attribution". arXiv:2505.21438, 2025.
           https://arxiv.org/abs/2505.21438""",
    "ref_koh_liang": """
        .. [2] P. W. Koh and P. Liang. "Understanding Black-box Predictions via Influence
           Functions". ICML 2017, PMLR 70:1885-1894.""",
    "ref_tag": """
        .. [2] C. Fifty, E. Amid, Z. Zhao, T. Yu, R. Anil and C. Finn. "Efficiently Identifying
           Task Groupings for Multi-Task Learning". NeurIPS 2021. arXiv:2109.04617.""",
    "ref_cosine": """
        .. [2] R. Azorin, M. Gallo, A. Finamore, D. Rossi and P. Michiardi. "'It's a Match!' -
           A Benchmark of Task Affinity Scores for Joint Learning". arXiv:2301.02873, 2023.""",
    "ref_etap": """
        .. [2] A. Ayman, A. Mukhopadhyay and A. Laszka. "Ensemble Prediction of Task Affinity
           for Efficient Multi-Task Learning". arXiv:2602.18591, 2026.""",
    "ref_gradtag": """
        .. [2] D. Li, A. Sharma and H. R. Zhang. "Scalable Multitask Learning Using
           Gradient-based Estimation of Task Affinity". KDD 2024. arXiv:2409.06091.""",
}
DOCS.update(REFERENCES)

PREDICT = """Predict with each row's task model.

Parameters
----------
{X_predict}
{tasks}

Returns
-------
y_pred : ndarray of shape (n_samples,)
"""

PREDICT_LABELS = """Predict class labels with each row's task model.

Parameters
----------
{X_predict}
{tasks}

Returns
-------
labels : ndarray of shape (n_samples,)
"""

PREDICT_PROBA = """Class probabilities under each row's task model.

Parameters
----------
{X_predict}
{tasks}

Returns
-------
proba : ndarray of shape (n_samples, n_classes)
    Columns follow ``classes_``.
"""

PREDICT_LOG_PROBA = """Logarithm of the class probabilities under each row's task model.

Parameters
----------
{X_predict}
{tasks}

Returns
-------
log_proba : ndarray of shape (n_samples, n_classes)
    Columns follow ``classes_``.
"""

DECISION_FUNCTION = """Decision function (log-odds or logits) of each row's task model.

Parameters
----------
{X_predict}
{tasks}

Returns
-------
scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
    Log-odds of ``classes_[1]`` for two classes, one logit per class otherwise.
"""

SCORE_R2 = """Coefficient of determination R^2 of the predictions over all rows.

Parameters
----------
{X_predict}
y : array-like of shape (n_samples,)
    True targets.
{tasks}
{sample_weight_score}

Returns
-------
score : float
    R^2 over all rows.
"""

SCORE_ACCURACY = """Accuracy of the predictions over all rows.

Parameters
----------
{X_predict}
y : array-like of shape (n_samples,)
    True labels.
{tasks}
{sample_weight_score}

Returns
-------
score : float
    Accuracy over all rows.
"""

SCORE_DELEGATED = """Score of the fitted model (R^2 for regressors, accuracy for classifiers).

Parameters
----------
{X_predict}
y : array-like of shape (n_samples,)
    True targets.
{tasks}
{sample_weight_score}

Returns
-------
score : float
"""
