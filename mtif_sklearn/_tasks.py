"""Task identity: read task labels from ``tasks=`` or a ``task_column``, encode and split them.

One place owns these rules (DESIGN.md section 3, "Task identity") so that every estimator,
MTIFInfluence and the brute-force functions in ``retrain`` agree on them.
"""

import numbers
import warnings
from collections.abc import Mapping, Set
from dataclasses import dataclass, field, replace
from numbers import Real

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_X_y, validate_data

__all__ = [
    "TaskData",
    "check_task_labels",
    "check_task_weight_sums",
    "fit_task_codes",
    "encode_tasks",
    "group_rows_by_task",
    "split_task_column",
    "target_task_codes",
    "task_folds",
    "prediction_task_codes",
    "train_validation_split_by_task",
    "validate_task_data",
]


def _n_rows(X):
    if hasattr(X, "shape"):
        return X.shape[0]
    return len(X)


def split_task_column(X, task_column):
    """Separate the task-label column from the feature columns of ``X``.

    Parameters
    ----------
    X : array-like or DataFrame of shape (n_samples, n_columns)
        Input holding one column of task labels.
    task_column : str or int
        Column name (DataFrame) or integer position (any array-like).

    Returns
    -------
    X_features : ndarray or DataFrame of shape (n_samples, n_columns - 1)
        ``X`` without the task column (a new object; ``X`` is not modified).
    labels : ndarray of shape (n_samples,)
        The task label of every row.
    """
    if hasattr(X, "columns"):  # pandas-like DataFrame
        columns = list(X.columns)
        if isinstance(task_column, numbers.Integral) and task_column not in columns:
            if not -len(columns) <= task_column < len(columns):
                raise ValueError(
                    f"task_column={task_column} is out of range for X with {len(columns)} "
                    "columns."
                )
            task_column = columns[task_column]
        if task_column not in columns:
            raise ValueError(
                f"task_column={task_column!r} is not a column of X; columns are {columns[:10]}"
                f"{' ...' if len(columns) > 10 else ''}. Pass the name of the column that "
                "holds the task labels."
            )
        labels = np.asarray(X[task_column].to_numpy())
        return X.drop(columns=[task_column]), labels
    if not isinstance(task_column, numbers.Integral):
        raise ValueError(
            f"task_column={task_column!r} is a name but X has no column names (it is a "
            f"{type(X).__name__}). Pass a pandas DataFrame or an integer column position."
        )
    if hasattr(X, "tocsr"):
        raise ValueError("task_column does not support sparse X; pass tasks= instead.")
    X_array = np.asarray(X)
    if X_array.ndim != 2:
        raise ValueError(f"X must be 2-dimensional to hold a task column; got shape "
                         f"{X_array.shape}.")
    n_columns = X_array.shape[1]
    if not -n_columns <= task_column < n_columns:
        raise ValueError(f"task_column={task_column} is out of range for X with {n_columns} "
                         "columns.")
    labels = X_array[:, task_column]
    features = np.delete(X_array, task_column % n_columns, axis=1)
    if features.dtype == object:
        try:
            features = features.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                "The feature columns of X (all but task_column) must be numeric; "
                f"could not convert them: {exc}"
            ) from exc
    return features, labels


def check_task_labels(labels, n_samples, *, name="tasks"):
    """Validate task labels: one hashable, non-missing label per row.

    Parameters
    ----------
    labels : array-like of shape (n_samples,)
        Task label of every row (ints or strings).
    n_samples : int
        Number of rows the labels must match.
    name : str, default="tasks"
        How the labels are called in error messages.

    Returns
    -------
    labels : ndarray of shape (n_samples,)
        The labels as a 1-d NumPy array (a copy when a conversion was needed).
    """
    if hasattr(labels, "to_numpy"):
        labels = labels.to_numpy()
    if isinstance(labels, Mapping | Set) or hasattr(labels, "tocsr"):
        # list(dict) would silently give its keys (often 0..n-1: one task per row).
        raise TypeError(
            f"{name} must be an array-like with one task label per row (list, NumPy array, "
            f"pandas Series); got a {type(labels).__name__}."
        )
    if not isinstance(labels, np.ndarray):
        # Build an object array first: np.asarray([1, "a"]) would silently turn 1 into "1".
        values = list(labels) if not np.isscalar(labels) else labels
        labels = np.asarray(values)
        # np.asarray([True, 0, 1]) is silently [1, 0, 1]: keep booleans beside numbers visible.
        mixed_bool = labels.dtype.kind in "iuf" and labels.ndim == 1 and any(
            isinstance(v, bool | np.bool_) for v in values)
        if (labels.dtype.kind in "US" or mixed_bool) and labels.ndim == 1:
            as_objects = np.empty(len(values), dtype=object)
            as_objects[:] = values
            labels = as_objects
    if labels.ndim != 1:
        labels = labels.reshape(-1) if labels.ndim == 2 and 1 in labels.shape else labels
    if labels.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional (one label per row); got shape "
                         f"{labels.shape}.")
    if labels.shape[0] != n_samples:
        hint = ("" if labels.shape[0] < n_samples else
                " Inside a Pipeline after MTIFInfluence: without cv its fit_transform returns "
                "only the training rows of its validation split; MTIFInfluence(cv=5) returns "
                "one row per input row.")
        raise ValueError(
            f"{name} has {labels.shape[0]} labels but X has {n_samples} rows; pass exactly "
            f"one task label per row.{hint}"
        )
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)):
            raise ValueError(f"{name} contains missing (NaN, pd.NA) or infinite labels; every "
                             "row needs a task.")
        # Integer-valued floats are the int tasks they name, but only inside the int64 range:
        # 1e20 and 2e20 cast to int64 would both become -2**63 (one task).
        if np.all(labels == np.round(labels)) and np.all(
                (labels >= -(2.0**63)) & (labels < 2.0**63)):
            labels = labels.astype(np.int64)
    elif labels.dtype.kind in "mM":
        missing = np.flatnonzero(np.isnat(labels))
        if missing.size:
            raise ValueError(f"{name} has missing labels (NaT) at rows {missing[:5].tolist()}; "
                             "every row needs a task.")
    elif labels.dtype == object:
        labels = _normalise_object_labels(labels, name)
    return labels


def _normalise_object_labels(labels, name):
    """Object labels -> a str or int64 array (or float, integer-valued floats -> int64).

    Object arrays come from lists, pandas object columns and mixed-type NumPy arrays. Giving them
    the dtype of the equivalent homogeneous array makes ``[0, 1]`` and ``pd.Series([0, 1],
    dtype=object)`` the same tasks, and a mixture of ints and strings a clear error.
    Missing labels (None, NaN, ``pd.NA``, ``NaT``) are refused as missing, booleans mixed with
    other labels are refused (``True == 1``: they would silently merge with task 1), and so are
    labels that NumPy would merge (strings ending in NUL characters, ints beyond int64).
    """
    def is_missing(value):
        if value is None or type(value).__name__ in ("NAType", "NaTType"):
            return True
        if isinstance(value, np.datetime64 | np.timedelta64):
            return bool(np.isnat(value))
        # Ints are finite (and np.isfinite refuses Python ints beyond int64).
        return (isinstance(value, Real) and not isinstance(value, numbers.Integral)
                and not np.isfinite(float(value)))

    missing = [i for i, v in enumerate(labels) if is_missing(v)]
    if missing:
        raise ValueError(f"{name} has missing labels (None/NaN/pd.NA/NaT) at rows "
                         f"{missing[:5]}; every row needs a task.")
    if labels.size == 0:
        return labels
    if all(isinstance(v, str) for v in labels):
        with_nul = [v for v in labels if "\x00" in v]
        if with_nul:
            raise ValueError(
                f"{name} has labels containing NUL characters, e.g. {with_nul[0]!r}. NumPy "
                "string arrays drop trailing NULs, so 'a' and 'a\\x00' would become one task; "
                "remove the NUL characters from the labels.")
        return labels.astype(str)
    is_bool = [isinstance(v, bool | np.bool_) for v in labels]
    if any(is_bool) and not all(is_bool):
        raise ValueError(
            f"{name} mixes booleans with other labels ({sorted({type(v).__name__ for v in labels})}"
            "). Booleans are not valid task labels beside numbers or strings: True == 1 and "
            "False == 0, so they would merge with tasks 1 and 0. Convert the labels to one "
            "type, e.g. all strings.")
    if all(isinstance(v, numbers.Integral) and not isinstance(v, bool | np.bool_)
           for v in labels):
        try:
            return labels.astype(np.int64)
        except OverflowError:
            raise ValueError(
                f"{name} has integer labels outside the int64 range (e.g. "
                f"{max(labels, key=abs)}); pass such ids as strings.") from None
    if all(isinstance(v, Real) and not isinstance(v, bool | np.bool_) for v in labels):
        values = labels.astype(np.float64)
        if np.all(values == np.round(values)) and np.all(
                (values >= -(2.0**63)) & (values < 2.0**63)):
            return values.astype(np.int64)
        return values
    kinds = sorted({type(v).__name__ for v in labels})
    if any(isinstance(v, str) for v in labels):
        raise ValueError(
            f"Task labels must be mutually comparable (all ints or all strings); {name} has a "
            f"mix of {kinds}. Convert them to one type, e.g. all strings."
        )
    return labels


def unique_tasks(labels):
    """Sorted unique task labels, with a clear error for unsortable mixtures."""
    try:
        return np.unique(labels)
    except TypeError as exc:
        raise ValueError(
            "Task labels must be mutually comparable (all ints or all strings); got a mix: "
            f"{sorted({type(v).__name__ for v in labels})}."
        ) from exc


def encode_tasks(labels, tasks_, *, unknown="error"):
    """Map task labels to their integer position in the sorted ``tasks_``.

    Labels of another type than ``tasks_`` never match (``"0"`` is not task ``0``). With
    ``unknown="shared"`` such rows would silently go to the shared model, so when the label
    types differ (text vs numbers) and most rows match no task, a ``UserWarning`` says so.

    Parameters
    ----------
    labels : ndarray of shape (n_samples,)
        Task labels to encode.
    tasks_ : ndarray of shape (n_tasks,)
        Known task labels, sorted.
    unknown : {"error", "shared"}, default="error"
        What to do with a label not in ``tasks_``: raise, or encode it as -1 (the shared model).

    Returns
    -------
    codes : ndarray of shape (n_samples,), dtype int64
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        return np.zeros(0, dtype=np.int64)

    def family(array):
        if array.dtype.kind == "O":
            kinds = {"text" if isinstance(v, str) else "number" if isinstance(v, Real)
                     else "other" for v in array[:1000]}
            return kinds.pop() if len(kinds) == 1 else "mixed"
        return "text" if array.dtype.kind in "US" else (
            "number" if array.dtype.kind in "iufb" else "other")

    try:
        if labels.dtype != tasks_.dtype and (labels.dtype.kind in "OUS") != (
            tasks_.dtype.kind in "OUS"
        ):
            raise TypeError
        codes = np.searchsorted(tasks_, labels)
    except TypeError:
        codes = np.full(labels.shape[0], len(tasks_), dtype=np.int64)
    codes = np.asarray(codes, dtype=np.int64)
    clipped = np.minimum(codes, len(tasks_) - 1)
    known = (codes < len(tasks_)) & (tasks_[clipped] == labels)
    if not np.all(known):
        label_family, task_family = family(labels), family(tasks_)
        mismatch = ""
        if {label_family, task_family} == {"text", "number"}:
            example = labels[~known][0]
            example = example.item() if hasattr(example, "item") else example
            plural = {"text": "strings", "number": "numbers"}
            mismatch = (f" The labels are {plural[label_family]} but the model's tasks are "
                        f"{plural[task_family]} ({example!r} is not the task "
                        f"{tasks_.tolist()[0]!r}): convert the labels to the type used in fit.")
        if unknown == "error":
            unseen = list(dict.fromkeys(labels[~known].tolist()))
            raise ValueError(
                f"Unknown task label(s) {unseen[:5]}: the model was fitted on tasks "
                f"{tasks_.tolist()[:10]}{' ...' if len(tasks_) > 10 else ''}. Use a known task, "
                "or set unknown_task='shared' to predict unseen tasks with the shared model."
                + mismatch
            )
        if mismatch and np.mean(~known) >= 0.5:
            warnings.warn(
                f"unknown_task='shared': {int(np.sum(~known))} of {labels.size} rows match no "
                f"task and go to the shared model.{mismatch}", UserWarning, stacklevel=4)
        codes = np.where(known, clipped, -1)
    return codes


def group_rows_by_task(codes):
    """Row positions of every task present, tasks in ascending code order.

    One stable sort (O(n log n)) instead of a ``codes == k`` scan per task (O(n K), slow for
    thousands of tasks). Positions within a task are ascending, as ``np.flatnonzero`` gives.

    Parameters
    ----------
    codes : array-like of int, shape (n_samples,)
        Task code of every row.

    Returns
    -------
    groups : list of (int, ndarray of int)
        ``(task code, row positions)`` for every code that occurs.
    """
    codes = np.asarray(codes)
    order = np.argsort(codes, kind="stable")
    present, starts = np.unique(codes[order], return_index=True)
    stops = np.append(starts[1:], codes.size)
    return [(int(task), order[start:stop])
            for task, start, stop in zip(present, starts, stops, strict=True)]


def prediction_task_codes(estimator, labels, n_samples, *, unknown="error"):
    """Task codes of prediction-time rows for a fitted multitask model (-1: shared model).

    A model fitted on several tasks refuses rows without task information rather than guess
    (DESIGN.md section 3: scorers drop metadata meant for predict, scikit-learn issue 27977).

    Parameters
    ----------
    estimator : fitted estimator with ``tasks_``
        The model predicting.
    labels : ndarray of shape (n_samples,) or None
        Task labels of the rows (None when neither ``tasks=`` nor a task column was given).
    n_samples : int
        Number of rows.
    unknown : {"error", "shared"}, default="error"
        Handling of labels not in ``tasks_`` (see :func:`encode_tasks`).

    Returns
    -------
    codes : ndarray of shape (n_samples,), dtype int64
    """
    if labels is None:
        if len(estimator.tasks_) > 1:
            raise ValueError(
                f"This {type(estimator).__name__} was fitted on {len(estimator.tasks_)} tasks, "
                "so predict/score need the task of every row: pass tasks=... (with "
                "sklearn.set_config(enable_metadata_routing=True) inside a Pipeline or "
                "GridSearchCV), or construct the model with task_column=... . Scorers drop "
                "metadata meant for predict (scikit-learn issue 27977); the model does not "
                "guess."
            )
        return np.zeros(n_samples, dtype=np.int64)
    return encode_tasks(labels, estimator.tasks_, unknown=unknown)


def train_validation_split_by_task(codes, n_tasks, validation_fraction, random_state=None,
                                   task_names=None):
    """Hold out ``validation_fraction`` of every task's rows (stratified by task).

    Every task keeps at least one training and one validation row.

    Parameters
    ----------
    codes : ndarray of shape (n_samples,)
        Integer task code of every row.
    n_tasks : int
        Number of tasks.
    validation_fraction : float in (0, 1)
        Fraction of each task's rows that goes to validation (rounded, at least 1).
    random_state : int, RandomState instance or None
        Seed of the shuffle.
    task_names : sequence, optional
        Task labels, for error messages.

    Returns
    -------
    train_indices, val_indices : ndarrays of int
        Sorted row indices.
    """
    rng = check_random_state(random_state)
    train, val = [], []
    rows_of_task = dict(group_rows_by_task(codes))
    for k in range(n_tasks):
        rows = rows_of_task.get(k, np.zeros(0, dtype=np.int64))
        if rows.size < 2:
            name = task_names[k] if task_names is not None else k
            raise ValueError(
                f"Task {name!r} has {rows.size} row(s); a validation split needs at least 2 "
                "rows per task (one to train, one to validate). Drop the task, or pass X_val."
            )
        n_val = int(np.clip(round(validation_fraction * rows.size), 1, rows.size - 1))
        rows = rng.permutation(rows)
        val.append(rows[:n_val])
        train.append(rows[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def resolve_tasks(X, tasks, task_column):
    """Return ``(X_features, labels)`` from either task source; labels is None when absent.

    Raises when both ``tasks`` and ``task_column`` are given.
    """
    if task_column is not None:
        if tasks is not None:
            raise ValueError(
                "Both tasks= and task_column are set; pass the task labels one way only."
            )
        X_features, labels = split_task_column(X, task_column)
        return X_features, check_task_labels(labels, _n_rows(X), name="task_column")
    if tasks is None:
        return X, None
    return X, check_task_labels(tasks, _n_rows(X))


def validate_task_data(estimator, X, tasks, *, reset, y=None, y_numeric=False):
    """Validate X (and y) of a multitask estimator; labels from ``tasks=`` or ``task_column``.

    With a ``task_column`` the column is split off before the features are checked, and
    ``n_features_in_`` / ``feature_names_in_`` still describe the whole ``X``.

    Parameters
    ----------
    estimator : estimator with a ``task_column`` parameter
        The estimator being fitted or predicting (``validate_data`` records on it).
    X : array-like or DataFrame of shape (n_samples, n_columns)
        Input rows.
    tasks : array-like of shape (n_samples,) or None
        Task labels given as ``tasks=``.
    reset : bool
        True in fit, False afterwards.
    y : array-like of shape (n_samples,), default=None
        Targets, validated with X when given.
    y_numeric : bool, default=False
        Whether y must be numeric (regressors).

    Returns
    -------
    X_features : ndarray of shape (n_samples, n_features)
    labels : ndarray of shape (n_samples,) or None
    y : ndarray of shape (n_samples,) or None
    """
    X_features, labels = resolve_tasks(X, tasks, estimator.task_column)
    if estimator.task_column is None:
        if y is None:
            X_features = validate_data(estimator, X, reset=reset, dtype=np.float64)
        else:
            X_features, y = validate_data(estimator, X, y, reset=reset, dtype=np.float64,
                                          y_numeric=y_numeric)
    else:
        validate_data(estimator, X, skip_check_array=True, reset=reset)
        if y is None:
            X_features = check_array(X_features, dtype=np.float64, input_name="X",
                                     estimator=estimator)
        else:
            X_features, y = check_X_y(X_features, y, dtype=np.float64, estimator=estimator,
                                      y_numeric=y_numeric)
    return X_features, labels, y


@dataclass
class TaskData:
    """Rows of a multitask problem, validated once (by the model's ``_mtif_data`` hook).

    Everything downstream -- fitting, influence, refits, selectors -- works on this instead of
    re-validating ``X`` and re-encoding task labels.

    Parameters
    ----------
    X : ndarray of shape (n_samples, ...)
        Features as the model takes them (the task column removed).
    y : ndarray of shape (n_samples,) or None
        Targets in the model's own coding (float for regression, class codes for classifiers).
    codes : ndarray of int64, shape (n_samples,)
        Position of every row's task in ``task_labels``.
    task_labels : ndarray of shape (n_tasks,)
        Sorted task labels (the model's ``tasks_``).
    sample_weight : ndarray of shape (n_samples,)
        Row weights (ones when none were given).
    fitted_attributes : dict
        Attributes a model fitted on these rows records (``n_features_in_``,
        ``feature_names_in_``, ``classes_``, ...), so that a fresh clone fitted with
        ``_mtif_fit(data)`` needs no second validation.
    index : pandas Index or None
        The row index of a DataFrame ``X`` (for outputs labelled like the input).
    """

    X: object
    y: object
    codes: np.ndarray
    task_labels: np.ndarray
    sample_weight: np.ndarray
    fitted_attributes: dict = field(default_factory=dict)
    index: object = None

    @property
    def n_samples(self):
        """Number of rows."""
        return int(self.codes.shape[0])

    @property
    def n_tasks(self):
        """Number of task labels (tasks with no row here included)."""
        return int(self.task_labels.shape[0])

    def take(self, rows):
        """The same data restricted to ``rows`` (integer positions or a boolean mask)."""
        rows = np.asarray(rows)
        return TaskData(
            self.X[rows], None if self.y is None else self.y[rows], self.codes[rows],
            self.task_labels, self.sample_weight[rows], self.fitted_attributes,
            None if self.index is None else self.index[rows])

    def with_weights(self, sample_weight):
        """The same rows with other sample weights."""
        return replace(self, sample_weight=np.asarray(sample_weight, dtype=np.float64))

    def restrict_tasks(self, task_codes):
        """The rows of the tasks ``task_codes`` only, re-encoded as the tasks of their own
        problem (``task_labels`` = those tasks' labels, sorted)."""
        task_codes = np.unique(np.asarray(task_codes, dtype=np.int64))
        rows = np.flatnonzero(np.isin(self.codes, task_codes))
        subset = self.take(rows)
        subset.task_labels = self.task_labels[task_codes]
        subset.codes = np.searchsorted(task_codes, subset.codes)
        return subset

    def record_on(self, estimator, task_weight_sum=None):
        """Set on ``estimator`` what a model fitted on these rows records (``_mtif_fit``).

        The validated attributes (``fitted_attributes``), ``tasks_`` and ``task_weight_sum_``:
        n_k of every task, given (a refit that keeps the full-data normalisers, eq. 5) or the
        per-task sums of ``sample_weight``, each of which must be positive.
        """
        self.record_labels_on(estimator)
        if task_weight_sum is None:
            task_weight_sum = self.task_counts(self.sample_weight)
            check_task_weight_sums(self.task_labels, task_weight_sum)
        estimator.task_weight_sum_ = np.asarray(task_weight_sum, dtype=np.float64)

    def record_labels_on(self, estimator):
        """Set the validated attributes (``fitted_attributes``) and ``tasks_`` on
        ``estimator``."""
        for name, value in self.fitted_attributes.items():
            if value is None:
                estimator.__dict__.pop(name, None)
            else:
                setattr(estimator, name, value)
        estimator.tasks_ = self.task_labels

    def task_counts(self, weights=None):
        """Rows (or summed ``weights``) of every task, (n_tasks,)."""
        return np.bincount(self.codes, weights=weights, minlength=self.n_tasks)


def check_task_weight_sums(task_labels, task_weight_sum):
    """Refuse tasks whose rows weigh 0 in total (their loss has no normaliser n_k)."""
    empty = np.flatnonzero(np.asarray(task_weight_sum) <= 0)
    if empty.size:
        raise ValueError(
            f"Task(s) {np.asarray(task_labels)[empty].tolist()[:5]} have total sample_weight 0; "
            "give each task some positive weight or drop its rows."
        )


def fit_task_codes(labels, n_samples):
    """``(task_labels, codes)`` of training rows: sorted labels, every row's position in them."""
    if labels is None:
        labels = np.zeros(n_samples, dtype=np.int64)
    task_labels = unique_tasks(labels)
    return task_labels, encode_tasks(labels, task_labels)


def target_task_codes(target_tasks, task_labels):
    """Codes (sorted, unique) of ``target_tasks`` among ``task_labels`` (None: every task).

    Parameters
    ----------
    target_tasks : label, array-like of labels or None
        Task labels.
    task_labels : ndarray of shape (n_tasks,)
        The model's sorted task labels.

    Returns
    -------
    codes : ndarray of int
    """
    if target_tasks is None:
        return np.arange(len(task_labels))
    targets = ([target_tasks] if isinstance(target_tasks, str | numbers.Integral)
               else list(target_tasks))
    # NumPy scalars compare like their Python values; list(...) keeps mixed types apart.
    targets = [t.item() if isinstance(t, np.generic) else t for t in targets]
    if not targets:
        raise ValueError("target_tasks is empty; pass at least one task, or None for all.")
    known = np.asarray(task_labels).tolist()
    code_of = {}  # a dict, not list.index: all K tasks as targets is O(K), not O(K^2)
    for code, label in enumerate(known):
        code_of.setdefault(label, code)
    codes = [_code_or_none(code_of, t) for t in targets]
    unknown = [t for t, code in zip(targets, codes, strict=True) if code is None]
    if unknown:
        raise ValueError(
            f"target_tasks has unknown task(s) {unknown[:5]}; the tasks seen in fit are "
            f"{known[:10]}{' ...' if len(known) > 10 else ''}."
        )
    return np.unique(codes)


def _code_or_none(code_of, label):
    try:
        return code_of.get(label)
    except TypeError:  # an unhashable "label" (e.g. a list) is no task
        return None


def _stratified_folds(codes, n_folds, seed):
    """The folds of ``StratifiedKFold(n_folds, shuffle=True, random_state=seed)``, exactly.

    scikit-learn assigns each class's rows with a ``y == k`` scan per class, O(n K): 30 s at
    K=50,000 tasks. The same allocation and the same random draws, with the rows of every
    class found by one sort, give the same folds in O(n log n + K n_folds).
    """
    rng = np.random.RandomState(seed)
    _, first_index, inverse = np.unique(codes, return_index=True, return_inverse=True)
    _, class_of_first = np.unique(first_index, return_inverse=True)
    encoded = class_of_first[inverse.reshape(-1)]  # classes in order of first appearance
    n_classes = first_index.size
    by_class = np.sort(encoded)
    allocation = np.asarray([np.bincount(by_class[i::n_folds], minlength=n_classes)
                             for i in range(n_folds)])
    order = np.argsort(encoded, kind="stable")  # each class's rows in increasing order
    bounds = np.searchsorted(encoded[order], np.arange(n_classes + 1))
    test_fold = np.empty(codes.size, dtype=np.int64)
    for k in range(n_classes):
        folds_for_class = np.arange(n_folds).repeat(allocation[:, k])
        rng.shuffle(folds_for_class)
        test_fold[order[bounds[k]:bounds[k + 1]]] = folds_for_class
    return [(np.flatnonzero(test_fold != fold), np.flatnonzero(test_fold == fold))
            for fold in range(n_folds)]


def task_folds(codes, task_names, cv, *, validation_fraction=0.2, random_state=None):
    """(train, validation) row indices of every fold, each stratified by task.

    The one fold helper of the package (MTIFInfluence's cross-fitting and the selectors).

    Parameters
    ----------
    codes : ndarray of int, shape (n_samples,)
        Task code of every row.
    task_names : list
        Task labels, for error messages.
    cv : int, cross-validation generator, iterable or None
        None: one stratified ``validation_fraction`` split (the paper's protocol). An int ``n``:
        shuffled ``StratifiedKFold(n)`` on the task codes (every task needs at least ``n``
        rows). Any other splitter or iterable is asked for ``split(X, task_codes)`` (the task
        codes in the place of y, so stratified splitters stratify by task); every fold must
        train on every task.
    validation_fraction : float, default=0.2
        Share of each task's rows held out when ``cv`` is None.
    random_state : int, RandomState instance or None, default=None
        Seed of the shuffle.

    Returns
    -------
    folds : list of (ndarray, ndarray)
        Sorted training and validation row indices of every fold.
    """
    from sklearn.model_selection import check_cv

    random_state = check_random_state(random_state)
    codes = np.asarray(codes)
    n_tasks = len(task_names)
    if cv is None:
        return [train_validation_split_by_task(codes, n_tasks, validation_fraction,
                                               random_state, task_names=list(task_names))]
    if isinstance(cv, numbers.Integral):
        counts = np.bincount(codes, minlength=n_tasks)
        small = np.flatnonzero(counts < cv)
        if small.size:
            raise ValueError(
                f"Task(s) {[task_names[k] for k in small[:5]]} have fewer than cv={cv} rows "
                f"(smallest: {counts.min()}); every fold must validate every task. Lower cv, "
                "use cv=None (one validation_fraction split), or drop the small tasks."
            )
        seed = random_state.randint(np.iinfo(np.int32).max)
        return _stratified_folds(codes, int(cv), seed)
    splitter = check_cv(cv, codes, classifier=True)
    folds = [(np.sort(np.asarray(train)), np.sort(np.asarray(val)))
             for train, val in splitter.split(np.zeros((codes.size, 1)), codes)]
    for number, (train, _) in enumerate(folds):
        missing = np.setdiff1d(np.arange(n_tasks), codes[train])
        if missing.size:
            raise ValueError(
                f"Fold {number} of cv trains on no row of task(s) "
                f"{[task_names[k] for k in missing[:5]]}; every fold needs training rows of "
                "every task. Use a splitter stratified by task (the default int cv is)."
            )
    return folds
