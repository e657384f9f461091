"""The ``mtif-sklearn`` command line: score tasks and select rows of a CSV or Parquet file.

Commands
--------
``score-tasks DATA``
    Fit a multitask model on the file, measure every task's and every row's influence on every
    task's validation loss (MTIFInfluence, cross-fitted over ``--cv`` folds: mean and standard
    error), print the task table and write it (CSV with standard errors and task sizes,
    heatmap PNG marking the uncertain cells) with the most harmful rows.
``select DATA``
    Run NegativeTransferSelector: write the kept rows, the removed rows with their scores and a
    per-task before/after table.
``demo``
    The README's main job on an embedded synthetic data set (no files needed).

Nothing is type-inferred: the file is read as text, task labels stay as written ("007" and
"7" are two tasks), and exported rows (kept, removed, dropped, harmful) are the input rows
verbatim (comma-separated input: byte for byte). Only the feature and target columns are
converted, for the model; a ``--test`` file gets the training file's column types.

Features: every column except the task and target columns (or ``--features``). Numeric columns
are standardised (StandardScaler); text columns are one-hot encoded (OneHotEncoder;
``--categorical ordinal`` for integer codes, then standardised). Missing values are an error
(fill or drop them first): imputation choices belong to the user. Id-like text columns and
encodings too large for memory are refused before any work.

Exit codes: 0 success, 1 the computation failed, 2 bad usage or bad input (every input check,
the output folder included, runs before the computation; non-finite results are exit 2 too).
"""

import argparse
import contextlib
import csv
import io
import os
import re
import sys
from pathlib import Path

import numpy as np

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

_MODELS = ("ridge", "logistic")


class InputError(Exception):
    """Bad command-line input (a missing column, an unreadable file, ...): exit code 2."""


# -- progress ---------------------------------------------------------------------------------
class _Progress:
    """Stage progress on stderr through tqdm when installed (imported only here).

    Off when ``enabled`` is False; tqdm itself stays silent when stderr is not a terminal.
    """

    def __init__(self, stages, enabled):
        self._bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=len(stages), desc=stages[0], unit="step",
                                 disable=None, leave=False, file=sys.stderr)
        self._stages = list(stages)
        self._done = 0

    def step(self):
        self._done += 1
        if self._bar is not None:
            self._bar.update(1)
            if self._done < len(self._stages):
                self._bar.set_description(self._stages[self._done])

    def close(self):
        if self._bar is not None:
            self._bar.close()


# -- reading ------------------------------------------------------------------------------------
# Cells that mean "missing" in feature and target columns: pandas' default markers. In the task
# column only an empty cell is missing: "NA" is a task label as written (e.g. North America).
_NA_TOKENS = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})
# A number as a CSV writes it (no underscores or hex, which Python's float() would accept).
_NUMBER = re.compile(
    r"\s*[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity)\s*",
    re.IGNORECASE | re.ASCII)
# An integer written the way str(int) writes it: "7", "-3", but not "007", "+7", "-0" or " 7".
_CANONICAL_INT = re.compile(r"0|-?[1-9][0-9]*")
# Values whose square overflows float64 (standardising, squared losses): refused up front.
_MAX_ABS_VALUE = 1e150
# Refuse encodings whose model would need more memory than this (estimated before encoding).
_MEMORY_LIMIT = 4 * 2**30
# A text feature with a different value in every row of a file this long is an id.
_ID_LIKE_MIN_ROWS = 10
# Spreadsheets run cells starting with these as formulas (CWE-1236, OWASP CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class Table:
    """A data file read as text: every cell exactly as written, nothing type-inferred.

    Attributes
    ----------
    path : Path
        The file.
    frame : pandas.DataFrame
        One column per column of the file, every cell a ``str`` as written (Parquet: ``str`` of
        the stored value; missing values are ``""``). The index is the 0-based data row of the
        file (the row id).
    header, records : str and list of str, or None
        For comma-separated files: the original text of the header and of every data row,
        line ends included, so that exported rows are the input rows byte for byte.
    """

    def __init__(self, path, frame, header=None, records=None):
        self.path = path
        self.frame = frame
        self.header = header
        self.records = records


def _open_text(path):
    """The file as text (UTF-8, a byte-order mark dropped, line ends untranslated)."""
    import bz2
    import gzip
    import lzma

    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(path.suffix.lower())
    if opener is not None:
        return opener(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed by the caller


def _read_records(handle, sep):
    """Yield ``(fields, original text)`` of every record (quoted fields may span lines)."""
    consumed = []

    def lines():
        for line in handle:
            consumed.append(line)
            yield line

    # csv.reader pulls one line at a time and stops at the end of a record, so the lines
    # consumed since the last record are exactly this record's text.
    for fields in csv.reader(lines(), delimiter=sep):
        text = "".join(consumed)
        consumed.clear()
        if fields:  # blank lines are skipped, as pandas does
            yield fields, text


def _read_csv(path, sep):
    import pandas as pd

    with _open_text(path) as handle:
        records = _read_records(handle, sep)
        try:
            names, header = next(records)
        except StopIteration:
            raise InputError(f"{path}: the file is empty.") from None
        names = [name if name else f"Unnamed: {i}" for i, name in enumerate(names)]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise InputError(f"{path}: the header names column(s) {twice} more than once; "
                             "give every column its own name.")
        rows, texts = [], []
        for number, (fields, text) in enumerate(records, start=2):
            if len(fields) != len(names):
                raise InputError(f"{path}: data row {number - 2} (record {number}) has "
                                 f"{len(fields)} fields but the header has {len(names)}.")
            rows.append(fields)
            texts.append(text)
    frame = pd.DataFrame(rows, columns=names, dtype=object)
    if sep != ",":
        return Table(path, frame)
    return Table(path, frame, header, texts)


def _read_parquet(path):
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except ImportError as error:
        try:  # pandas words every engine failure alike: find the real cause
            import pyarrow.parquet  # noqa: F401
        except ModuleNotFoundError as missing:
            if missing.name not in ("pyarrow", "pyarrow.parquet"):
                raise InputError(f"{path}: pyarrow is installed but fails to import: "
                                 f"{missing}. Repair the installation (pip install "
                                 "--force-reinstall pyarrow).") from missing
            raise InputError(f"{path}: reading Parquet needs pyarrow; install it with "
                             "pip install \"mtif-sklearn[parquet]\" (or convert the file to "
                             "CSV).") from error
        except Exception as broken:  # noqa: BLE001 - any failure of the import is the answer
            raise InputError(f"{path}: pyarrow is installed but fails to import: "
                             f"{type(broken).__name__}: {broken}. Repair the installation "
                             "(pip install --force-reinstall pyarrow).") from broken
        raise InputError(f"{path}: cannot read Parquet ({error}).") from error

    def text(value):
        if pd.api.types.is_scalar(value) and pd.isna(value):
            return ""
        return str(value)

    as_text = pd.DataFrame({name: frame[name].map(text).astype(object)
                            for name in frame.columns}, index=frame.index)
    as_text.columns = [str(name) for name in frame.columns]
    return Table(path, as_text.reset_index(drop=True))


def read_table(path):
    """Read a CSV (``.csv``, ``.tsv``, ``.txt``; may be ``.gz``/``.bz2``/``.xz``) or Parquet file.

    Every cell is read as the text written in the file: nothing is type-inferred, so task
    labels such as ``"007"`` and ``"7"`` stay distinct and exported rows are the input rows.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    table : Table
        Its rows as text; ``table.frame.index`` is the 0-based data row number (the row id).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file.")
    suffixes = [s.lower() for s in path.suffixes]
    try:
        if suffixes and suffixes[-1] in (".parquet", ".pq"):
            table = _read_parquet(path)
        else:
            table = _read_csv(path, "\t" if ".tsv" in suffixes else ",")
    except InputError:
        raise
    except Exception as error:  # decoding, decompression and csv errors alike
        raise InputError(f"{path}: cannot read the file ({type(error).__name__}: {error}).") \
            from error
    if table.frame.empty:
        raise InputError(f"{path}: the file holds no rows.")
    return table


# -- checking and encoding ----------------------------------------------------------------------
def _check_columns(frame, names, what):
    missing = [name for name in names if name not in frame.columns]
    if missing:
        shown = [str(c) for c in frame.columns[:20]]
        more = " ..." if len(frame.columns) > 20 else ""
        raise InputError(f"{what} {missing} not found in the data; its columns are "
                         f"{shown}{more}.")


def _is_missing(column):
    """Missing cells of a text column of a feature or the target."""
    return column.isin(_NA_TOKENS) | (column.str.strip() == "")


def _numeric_mask(values):
    """Which of these (unique) strings are numbers."""
    return np.array([_NUMBER.fullmatch(v) is not None for v in values], dtype=bool)


def _to_float(column, name, where):
    """Numbers of a text column known to be numeric, checked for size."""
    values = np.asarray(column.to_numpy(dtype=object), dtype=np.float64)  # float() per cell
    bad = ~np.isfinite(values) | (np.abs(values) > _MAX_ABS_VALUE)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{where}column {name!r} has the value {column.iloc[first]!r} (row "
            f"{column.index[first]}): infinite or so large that its square overflows float64 "
            f"(the limit is {_MAX_ABS_VALUE:g} in absolute value). Rescale the column (e.g. "
            "divide by a power of 10 or take a log).")
    return values


def _check_labels(labels, column, where=""):
    empty = labels.str.strip() == ""
    if empty.any():
        raise InputError(f"{where}task column {column!r} has {int(empty.sum())} empty cell(s) "
                         f"(first: row {labels.index[empty][0]}); every row needs a task.")
    with_nul = labels.str.contains("\x00", regex=False)
    if with_nul.any():
        raise InputError(f"{where}task column {column!r} holds NUL characters (row "
                         f"{labels.index[with_nul][0]}); remove them.")


def _task_array(labels, as_int):
    """Model task labels: ints when every label is written as an int (see prepare_data)."""
    if as_int:
        return np.array([int(v) for v in labels], dtype=np.int64)
    values = np.empty(len(labels), dtype=object)
    values[:] = list(labels)
    return values


def _labels_are_ints(unique_labels):
    return all(_CANONICAL_INT.fullmatch(v) and -(2**63) <= int(v) < 2**63
               for v in unique_labels)


def prepare_data(table, *, task_column, target, features=None, model="ridge",
                 categorical="onehot", min_task_rows=2, drop_small_tasks=False):
    """Check the columns, convert the feature and target columns and encode the features.

    Only the feature and target columns are converted, and only for the model; every cell is
    kept as written in ``table``. Task labels stay as written: when every label is written as
    an integer the way ``str(int)`` writes it ("7", "-3"; not "007" or "+7") they are those
    ints (sorted numerically), otherwise they are the strings themselves, so "007" and "7",
    or "True" and "TRUE", are different tasks.

    Parameters
    ----------
    table : Table
        The data (:func:`read_table`), one row per sample.
    task_column : str
        Column holding the task label of every row.
    target : str
        Column holding the target.
    features : list of str, default=None
        Feature columns. None: every column except ``task_column`` and ``target``.
    model : {"ridge", "logistic"}, default="ridge"
        The model the target must suit: numeric for ridge, exactly two classes for logistic.
    categorical : {"onehot", "ordinal"}, default="onehot"
        Encoding of non-numeric feature columns.
    min_task_rows : int, default=2
        Fewest rows a task may have.
    drop_small_tasks : bool, default=False
        Drop tasks with fewer than ``min_task_rows`` rows instead of failing.

    Returns
    -------
    data : dict
        ``X`` (float array of encoded features), ``y``, ``tasks``, ``rows`` (row ids used),
        ``dropped_rows`` (row ids of dropped small tasks), ``dropped_tasks``, ``features``,
        ``numeric`` (the numeric feature columns), ``transformer`` (the fitted encoder),
        ``feature_names`` (after encoding), ``labels_as_int``, ``target_numeric``,
        ``task_rows`` ({task: rows}).
    """
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    frame = table.frame
    if task_column == target:
        raise InputError(f"--target and --task-column are the same column {target!r}; the "
                         "target cannot be the task label.")
    _check_columns(frame, [task_column], "task column")
    _check_columns(frame, [target], "target column")
    if features is None:
        features = [c for c in frame.columns if c not in (task_column, target)]
    else:
        twice = sorted({c for c in features if features.count(c) > 1})
        if twice:
            raise InputError(f"--features lists {twice} more than once; name every column once.")
        _check_columns(frame, features, "feature column(s)")
        clash = [c for c in features if c in (task_column, target)]
        if clash:
            raise InputError(f"--features must not include the task or target column {clash}.")
    if not features:
        raise InputError("No feature columns: the data holds only the task and target columns.")

    _check_labels(frame[task_column], task_column)
    missing_target = _is_missing(frame[target])
    if missing_target.any():
        raise InputError(f"target column {target!r} has {int(missing_target.sum())} "
                         "missing value(s); drop or fill those rows first.")
    missing = {c: int(_is_missing(frame[c]).sum()) for c in features}
    missing = {c: n for c, n in missing.items() if n}
    if missing:
        listed = ", ".join(f"{name!r} ({count})" for name, count in missing.items())
        raise InputError(f"feature column(s) with missing values: {listed}. Fill or drop them "
                         "first (mtif-sklearn does not impute).")

    counts = frame[task_column].value_counts(sort=False)
    small = counts[counts < min_task_rows]
    dropped, dropped_rows = [], np.zeros(0, dtype=np.int64)
    if len(small):
        if not drop_small_tasks:
            listed = ", ".join(f"{task!r} ({n} rows)" for task, n in small.head(10).items())
            raise InputError(
                f"{len(small)} task(s) have fewer than {min_task_rows} rows: {listed}"
                f"{' ...' if len(small) > 10 else ''}. Each task needs rows to train on and to "
                "validate on; add rows, merge tasks, or pass --drop-small-tasks.")
        dropped = small.index.tolist()
        drop = frame[task_column].isin(dropped).to_numpy()
        dropped_rows = frame.index.to_numpy()[drop]
        frame = frame[~drop]
        if frame.empty:
            raise InputError(f"every task has fewer than {min_task_rows} rows.")

    label_text = frame[task_column]
    labels_as_int = _labels_are_ints(pd.unique(label_text))
    tasks = _task_array(label_text, labels_as_int)

    # The target: numbers for ridge; two classes for logistic (numbers when all are numbers,
    # so that 0/1 and 0.0/1.0 are the same two classes; otherwise the text as written).
    y_text = frame[target]
    unique_y = pd.unique(y_text)
    y_numeric = bool(_numeric_mask(unique_y).all())
    if model == "ridge":
        if not y_numeric:
            example = unique_y[~_numeric_mask(unique_y)][0]
            raise InputError(
                f"target {target!r} is not numeric (e.g. {example!r}); --model ridge needs a "
                "numeric target. For a two-class target use --model logistic.")
        y = _to_float(y_text, target, "target ")
    else:
        y = _to_float(y_text, target, "target ") if y_numeric else y_text.to_numpy(dtype=object)
        classes = pd.unique(y)
        if len(classes) != 2:
            shown = [c.item() if hasattr(c, "item") else c for c in classes[:4]]
            raise InputError(
                f"target {target!r} has {len(classes)} distinct value(s) {shown}"
                f"{' ...' if len(classes) > 4 else ''}; --model logistic needs exactly two "
                "classes. For a numeric target use --model ridge.")

    uniques = {c: pd.unique(frame[c]) for c in features}
    numeric = [c for c in features if _numeric_mask(uniques[c]).all()]
    other = [c for c in features if c not in numeric]
    n_rows = len(frame)
    for column in other:
        if n_rows >= _ID_LIKE_MIN_ROWS and len(uniques[column]) == n_rows:
            keep = [_shell_word(c) for c in features if c != column]
            listed = " ".join(keep[:8]) + (f" ... ({len(keep)} columns)" if len(keep) > 8
                                           else "")
            raise InputError(
                f"feature column {column!r} is text with a different value in every row "
                f"({n_rows} distinct values): an id, not a feature (one-hot encoding would "
                f"make {n_rows} columns that each describe one row). Leave it out by naming "
                f"the feature columns: --features {listed}")
    n_encoded = len(numeric) + (sum(len(uniques[c]) for c in other) if categorical == "onehot"
                                else len(other))
    n_tasks = len(counts) - len(dropped)
    # X, plus the (K + 1) Hessian blocks of (d + 1)^2 that fitting and influence factor (x3).
    needed = 8 * (n_rows * n_encoded + 3 * (n_tasks + 1) * (n_encoded + 1) ** 2)
    if needed > _MEMORY_LIMIT:
        widest = sorted(other, key=lambda c: -len(uniques[c]))[:3]
        listed = ", ".join(f"{c!r} ({len(uniques[c])} values)" for c in widest)
        raise InputError(
            f"the encoded features would be {n_encoded} columns"
            + (f" (one-hot: {listed})" if widest and categorical == "onehot" else "")
            + f"; the model would need about {needed / 2**30:.1f} GiB (limit "
            f"{_MEMORY_LIMIT / 2**30:g} GiB). Leave wide text columns out with --features, use "
            "--categorical ordinal, or group rare categories first.")

    encoder = (OneHotEncoder(handle_unknown="ignore", sparse_output=False)
               if categorical == "onehot" else OrdinalEncoder())
    steps = [("numeric", StandardScaler(), numeric)] if numeric else []
    if other:
        steps.append(("categorical", encoder if categorical == "onehot"
                      else _ordinal_then_scale(encoder), other))
    columns = _model_columns(frame, numeric, other, "")
    transformer = ColumnTransformer(steps, remainder="drop", verbose_feature_names_out=False)
    X = np.asarray(transformer.fit_transform(columns), dtype=np.float64)
    return {
        "X": X,
        "y": y,
        "tasks": tasks,
        "rows": frame.index.to_numpy(),
        "dropped_rows": dropped_rows,
        "dropped_tasks": dropped,
        "features": list(features),
        "numeric": numeric,
        "categories": {c: len(uniques[c]) for c in other},
        "transformer": transformer,
        "feature_names": transformer.get_feature_names_out().tolist(),
        "labels_as_int": labels_as_int,
        "target_numeric": y_numeric,
        "task_rows": dict(zip(*(u.tolist() for u in np.unique(tasks, return_counts=True)),
                              strict=True)),
    }


def _model_columns(frame, numeric, other, where):
    """The feature columns as the encoders take them: numbers as float, text as written."""
    import pandas as pd

    columns = {c: _to_float(frame[c], c, where + "feature ") for c in numeric}
    columns.update({c: frame[c].to_numpy(dtype=object) for c in other})
    return pd.DataFrame({c: columns[c] for c in [*numeric, *other]}, index=frame.index)


def prepare_test(table, data, *, task_column, target, model, categorical):
    """Check and encode a held-out file exactly as the training file was.

    Every column gets the training file's type (a numeric-looking test task column or text
    feature stays what it was in training), and the features go through the training
    encoders. Tasks and classes unseen in training are an error; one class is fine.

    Parameters
    ----------
    table : Table
        The held-out data.
    data : dict
        :func:`prepare_data` of the training file.
    task_column, target, model, categorical
        As for :func:`prepare_data`.

    Returns
    -------
    test : dict
        ``X``, ``y``, ``tasks``.
    """
    import pandas as pd

    where = "--test "
    frame = table.frame
    features = data["features"]
    _check_columns(frame, [task_column, target, *features], "--test column(s)")
    _check_labels(frame[task_column], task_column, where)
    for column in [target, *features]:
        missing = _is_missing(frame[column])
        if missing.any():
            raise InputError(f"--test column {column!r} has {int(missing.sum())} missing "
                             "value(s); fill or drop them first.")
    known = {str(t) for t in data["tasks"]}
    unseen = [t for t in pd.unique(frame[task_column]) if t not in known]
    if unseen:
        raise InputError(f"--test holds task(s) {[_show(t) for t in unseen[:10]]} not in the "
                         "training data; every test row must belong to a trained task.")
    tasks = _task_array(frame[task_column], data["labels_as_int"])

    y_text = frame[target]
    if data["target_numeric"]:
        unique_y = pd.unique(y_text)
        not_numbers = unique_y[~_numeric_mask(unique_y)]
        if len(not_numbers):
            what = ("classes" if model == "logistic" else "values")
            raise InputError(f"--test target {target!r} has non-numeric {what} "
                             f"{[str(v) for v in not_numbers[:5]]}; in the training file it is "
                             "numeric.")
        y = _to_float(y_text, target, where + "target ")
    else:
        y = y_text.to_numpy(dtype=object)
    if model == "logistic":
        classes = set(pd.unique(data["y"]).tolist())
        unseen = [c for c in pd.unique(y).tolist() if c not in classes]
        if unseen:
            raise InputError(
                f"--test target {target!r} has class(es) {unseen[:5]} never seen in training "
                f"(classes {sorted(map(str, classes))}); the model cannot predict them.")

    numeric = data["numeric"]
    other = [c for c in features if c not in numeric]
    for column in numeric:
        values = pd.unique(frame[column])
        text = values[~_numeric_mask(values)]
        if len(text):
            raise InputError(f"--test column {column!r} has the text {str(text[0])!r}, but it "
                             "is numeric in the training file.")
    if categorical == "ordinal":
        encoder = data["transformer"].named_transformers_["categorical"][0] if other else None
        for column, seen in zip(other, encoder.categories_ if other else [], strict=True):
            new = sorted(set(pd.unique(frame[column])) - set(seen.tolist()))
            if new:
                raise InputError(f"--test column {column!r} has categories {new[:5]} not in "
                                 "the training file; --categorical ordinal cannot encode "
                                 "them (--categorical onehot ignores unseen categories).")
    X = data["transformer"].transform(_model_columns(frame, numeric, other, where))
    return {"X": np.asarray(X, dtype=np.float64), "y": y, "tasks": tasks}


def _ordinal_then_scale(encoder):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(encoder, StandardScaler())


def _make_model(args):
    from .linear import MultitaskLogistic, MultitaskRidge

    if args.model == "logistic":
        return MultitaskLogistic(alpha=args.alpha)
    return MultitaskRidge(alpha=args.alpha)


def _label(task):
    return task.item() if hasattr(task, "item") else task


def _show(task):
    """A task label for the terminal: as written, or its repr when it could mislead.

    Labels with control characters (a newline would break the table), surrounding spaces or
    a spreadsheet formula start (``=``, ``+``, ``-``, ``@``; numbers excepted) are shown as
    Python string literals, e.g. ``'a\\nb'``.
    """
    task = _label(task)
    if not isinstance(task, str):
        return str(task)
    if (not task.isprintable() or task != task.strip()
            or (task.startswith(_FORMULA_START) and not _NUMBER.fullmatch(task))):
        return repr(task)
    return task


def _cell(value):
    """A text cell of a generated CSV, escaped against formula injection (CWE-1236).

    Text starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return gets a leading
    ``'`` (OWASP's advice), so that a spreadsheet shows it instead of running it; numbers
    (``-1.5``) and other text are unchanged.
    """
    value = _label(value)
    if isinstance(value, str) and value.startswith(_FORMULA_START) \
            and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def _shell_word(text):
    import shlex

    return shlex.quote(str(text))


# -- printing -----------------------------------------------------------------------------------
def format_task_table(matrix, labels, *, top=10, standard_errors=None, sizes=None, n_se=2.0):
    """Readable summary of a task-influence matrix: ranked pairs and (few tasks) the matrix.

    Parameters
    ----------
    matrix : ndarray of shape (n_tasks, n_tasks)
        ``[l, k]``: effect on task k of removing task l.
    labels : sequence
        Task names.
    top : int, default=10
        Pairs listed per direction.
    standard_errors : ndarray of shape (n_tasks, n_tasks), default=None
        Standard errors of ``matrix`` (cross-fitting): printed next to every pair, and pairs
        within ``n_se`` of them of 0 are marked ``~``.
    sizes : sequence of int, default=None
        Rows of every task, printed next to every pair (source rows / target rows).
    n_se : float, default=2.0
        The margin of the ``~`` mark, in standard errors.

    Returns
    -------
    text : str
        The summary.
    """
    names = [_show(t) for t in labels]
    n_tasks = len(names)
    pairs = [(matrix[source, target], source, target)
             for source in range(n_tasks) for target in range(n_tasks)
             if source != target and np.isfinite(matrix[source, target])]
    pairs.sort(key=lambda item: item[0])
    lines = ["Task influence: effect on task k's validation loss of removing task l,",
             "V_k(without l) - V_k(with everything). Positive: l HELPS k. Negative: l HURTS k."]
    if standard_errors is not None:
        lines.append(f"'+-': standard error over the folds; '~': within {n_se:g} standard "
                     "errors of 0 (no clear effect).")
    if sizes is not None:
        lines.append("[rows of l / rows of k]: effects of small tasks are the least certain.")
    lines.append("")
    hurts = [p for p in pairs if p[0] < 0][:top]
    helps = [p for p in pairs[::-1] if p[0] > 0][:top]
    width = max([len(n) for n in names] + [4])

    def pair_line(value, source, target):
        line = f"  {names[source]:>{width}} -> {names[target]:<{width}} {value:+.4g}"
        if standard_errors is None and sizes is None:
            return line
        line = f"  {names[source]:>{width}} -> {names[target]:<{width}} {value:>+10.4g}"
        if standard_errors is not None:
            se = standard_errors[source, target]
            mark = "~" if np.isfinite(se) and abs(value) < n_se * se else " "
            line += f" +- {se:<8.2g}{mark}"
        if sizes is not None:
            line += f" [{sizes[source]} / {sizes[target]}]"
        return line

    lines.append("Strongest negative transfer (l hurts k), strongest first:")
    lines += [pair_line(*pair) for pair in hurts] or ["  (none)"]
    lines.append("Strongest help (l helps k), strongest first:")
    lines += [pair_line(*pair) for pair in helps] or ["  (none)"]

    off = matrix.astype(np.float64).copy()
    np.fill_diagonal(off, np.nan)
    with np.errstate(invalid="ignore"), _quiet_nan_warnings():
        mean_effect = np.nanmean(off, axis=1) if n_tasks > 1 else np.full(n_tasks, np.nan)
    order = np.argsort(np.where(np.isnan(mean_effect), np.inf, mean_effect))
    lines.append("")
    lines.append("Each task's mean effect on the other tasks (most harmful first):")
    shown = order if n_tasks <= 2 * top else np.concatenate([order[:top], order[-3:]])
    for rank, source in enumerate(shown):
        if n_tasks > 2 * top and rank == top:
            lines.append(f"  {'...':>{width}}")
        lines.append(f"  {names[source]:>{width}} {mean_effect[source]:+.4g}")

    if n_tasks <= 12:
        finite = np.abs(off[np.isfinite(off)])
        exponent = int(np.floor(np.log10(finite.max()))) if finite.size and finite.max() > 0 \
            else 0
        unit = 10.0 ** exponent
        cell = max(9, width + 2)
        lines.append("")
        lines.append(f"Matrix (row: removed task l, column: task k), in units of 1e{exponent}:")
        lines.append(" " * (width + 2) + "".join(f"{name:>{cell}}" for name in names))
        for source, row in zip(names, matrix, strict=True):
            lines.append(f"{source:>{width + 2}}"
                         + "".join(f"{_signed(v / unit):>{cell}}" for v in row))
        lines.append("(diagonal: a task's effect on itself; not a relatedness number)")
    return "\n".join(lines)


def _signed(value):
    text = f"{value:+.2f}"
    return "+0.00" if text == "-0.00" else text


@contextlib.contextmanager
def _quiet_nan_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _save_heatmap(influence, path, print_fn):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print_fn("(matplotlib is not installed: no heatmap; pip install "
                 "\"mtif-sklearn[plot]\")")
        return None
    from .plotting import TaskInfluenceDisplay

    display = TaskInfluenceDisplay.from_estimator(influence)
    display.figure_.savefig(path, dpi=120)
    plt.close(display.figure_)
    return path


# -- commands -----------------------------------------------------------------------------------
_SCORE_OUTPUTS = ("task_influence.csv", "task_pairs.csv", "task_influence.png", "harmful_rows.csv")
_SELECT_OUTPUTS = ("kept_rows.csv", "removed_rows.csv", "dropped_small_tasks.csv", "per_task.csv",
                   "selection_report.txt", "test_per_task.csv", "selection.png")


def _check_out(args, outputs):
    """Before any work: ``--out`` must be a folder (or creatable) and never hold an input."""
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is an existing file, not a folder; name a folder (it is "
                         "created if needed).")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"--out {out}: {parent} is a file, so the folder cannot be created.")
    inputs = [("DATA", args.data)] + ([("--test", args.test)] if getattr(args, "test", None)
                                      else [])
    for what, path in inputs:
        for name in outputs:
            target = out / name
            if target.exists() and Path(path).exists() and os.path.samefile(target, path):
                raise InputError(
                    f"--out {out} would overwrite the input {what} {path} (the output "
                    f"{name}); choose another --out folder or move the input.")


def _output_names(generated, input_columns):
    """Names of the generated columns of a row export, never clashing with input columns.

    A clashing name gets ``mtif_`` in front (again, until it is free): deterministic.
    """
    taken = set(map(str, input_columns))
    names = []
    for name in generated:
        while name in taken:
            name = "mtif_" + name
        taken.add(name)
        names.append(name)
    return names


def _csv_line(fields):
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(fields)
    return buffer.getvalue()


def _number(value):
    value = _label(value)
    return repr(float(value)) if isinstance(value, float) else str(value)


def _write_rows(path, table, row_ids, columns=(), id_name="row_id"):
    """Write input rows verbatim, after generated columns (the row id, ``id_name``, first).

    Comma-separated input: each row is ``row_id,<generated>,`` followed by the original text of
    the row, byte for byte (quoting, number formats, line ends). Other input (TSV, Parquet):
    the cells as read, comma-separated.
    """
    names = [id_name, *(name for name, _ in columns)]
    values = [[_number(v) for v in column] for _, column in columns]
    prefixes = [[str(row_id), *(column[i] for column in values)]
                for i, row_id in enumerate(row_ids)]
    with open(path, "w", encoding="utf-8", newline="") as handle:
        if table.records is not None:
            header = table.header
            newline = header[len(header.rstrip("\r\n")):] or "\n"
            handle.write(_csv_line(names) + "," + header)
            for prefix, row_id in zip(prefixes, row_ids, strict=True):
                record = table.records[row_id]
                ends = record.endswith(("\n", "\r"))
                handle.write(_csv_line(prefix) + "," + record + ("" if ends else newline))
        else:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow([*names, *table.frame.columns])
            cells = table.frame.to_numpy(dtype=object)
            for prefix, row_id in zip(prefixes, row_ids, strict=True):
                writer.writerow([*prefix, *cells[row_id]])


def _check_finite(what, *arrays, allow_nan=False):
    """Non-finite effects or losses are an input problem (overflow, an ill-posed fit): exit 2.

    ``allow_nan``: only infinities count (NaN is a documented "not measured" there).
    """
    for array in arrays:
        array = np.asarray(array, dtype=np.float64)
        bad = np.isinf(array) if allow_nan else ~np.isfinite(array)
        if bad.any():
            raise InputError(
                f"the {what} are not finite ({int(bad.sum())} NaN/inf values): the losses "
                "overflowed float64 or the fit is ill-posed. Rescale the target and features "
                "to values near 1, or raise --alpha or --damping.")


def _describe(data, args, print_fn):
    tasks = data["tasks"]
    n_tasks = len(data["task_rows"])
    print_fn(f"{args.data}: {len(tasks)} rows, {n_tasks} tasks ({args.task_column!r}), "
             f"target {args.target!r}, {data['X'].shape[1]} encoded features; "
             f"model {args.model}(alpha={args.alpha:g})")
    numeric = data["numeric"]
    text = [c for c in data["features"] if c not in numeric]

    def listed(columns, limit=12):
        shown = ", ".join(_show(c) for c in columns[:limit])
        return shown + (f", ... ({len(columns) - limit} more)" if len(columns) > limit else "")

    parts = []
    if numeric:
        parts.append(f"numeric, standardised: {listed(numeric)}")
    if text:
        encoding = ("one-hot" if args.categorical == "onehot" else "ordinal codes")
        parts.append(f"text, {encoding}: " + listed(
            [f"{_show(c)} ({data['categories'][c]} values)" for c in text]))
    print_fn(f"  features used ({len(data['features'])}; --features to choose): "
             + "; ".join(parts))
    if data["dropped_tasks"]:
        print_fn(f"  dropped {len(data['dropped_tasks'])} small task(s): "
                 f"{data['dropped_tasks'][:10]}{' ...' if len(data['dropped_tasks']) > 10 else ''}"
                 f" ({len(data['dropped_rows'])} rows)")


def _prepare(args, min_task_rows, outputs):
    """Everything that can fail on bad input, before any computation."""
    _check_out(args, outputs)
    table = read_table(args.data)
    data = prepare_data(table, task_column=args.task_column, target=args.target,
                        features=args.features, model=args.model,
                        categorical=args.categorical, min_task_rows=min_task_rows,
                        drop_small_tasks=args.drop_small_tasks)
    return table, data


def _score_folds(args, data, print_fn):
    """Folds of score-tasks' cross-fitting: ``--cv``, fewer when a task has fewer rows (at
    least 2, which every task has); None for ``--cv 0`` (one validation split)."""
    if not args.cv:
        return None
    smallest_task, smallest = min(data["task_rows"].items(), key=lambda item: item[1])
    if smallest >= args.cv:
        return args.cv
    print_fn(f"  cross-fitting over {smallest} folds instead of --cv {args.cv}: task "
             f"{_show(smallest_task)} has {smallest} rows")
    return smallest


def score_tasks(args, print_fn=print):
    """The ``score-tasks`` command; returns the fitted MTIFInfluence."""
    import pandas as pd

    from ._tasks import encode_tasks
    from .influence import MTIFInfluence

    progress = _Progress(["reading data", "fitting and measuring influence", "writing"],
                         args.progress)
    try:
        table, data = _prepare(args, 2, _SCORE_OUTPUTS)
        effect_names = _output_names(["row_id", "effect_total", "effect_on_own_task"],
                                     table.frame.columns)
        _describe(data, args, print_fn)
        progress.step()
        cv = _score_folds(args, data, print_fn)
        influence = MTIFInfluence(_make_model(args), validation_fraction=args.validation_fraction,
                                  cv=cv, damping=args.damping, random_state=args.random_state)
        with _quiet_nan_warnings():
            influence.fit(data["X"], data["y"], tasks=data["tasks"])
        matrix = np.asarray(influence.task_influence_, dtype=np.float64)
        errors = (None if cv is None
                  else np.asarray(influence.task_influence_se_, dtype=np.float64))
        effects = np.asarray(influence.influence_, dtype=np.float64)
        _check_finite("task influence values", matrix)
        _check_finite("row effects", effects)
        progress.step()

        labels = [_label(t) for t in influence.tasks_]
        sizes = [data["task_rows"][t] for t in labels]
        escaped = [_cell(t) for t in labels]
        corner = _output_names(["removed_task"], map(str, escaped))[0]
        table_csv = pd.DataFrame(matrix, index=pd.Index(escaped, name=corner),
                                 columns=[str(t) for t in escaped])
        se = np.full_like(matrix, np.nan) if errors is None else errors
        pairs = pd.DataFrame([(escaped[source], escaped[target], matrix[source, target],
                               se[source, target],
                               None if errors is None else bool(
                                   abs(matrix[source, target]) < 2 * se[source, target]),
                               sizes[source], sizes[target])
                              for source in range(len(labels))
                              for target in range(len(labels)) if source != target],
                             columns=["removed_task", "target_task", "effect", "standard_error",
                                      "within_2_se", "removed_task_rows", "target_task_rows"])
        pairs = pairs.sort_values("effect", kind="stable")

        rows = influence.train_indices_
        row_tasks = data["tasks"][rows]
        own = effects[np.arange(len(rows)), encode_tasks(row_tasks, influence.tasks_)]
        total = effects.sum(axis=1)
        order = np.argsort(total, kind="stable")[:args.top_rows]
        harmful_ids = data["rows"][rows[order]]

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        table_csv.to_csv(out / "task_influence.csv")
        pairs.to_csv(out / "task_pairs.csv", index=False)
        _write_rows(out / "harmful_rows.csv", table, harmful_ids,
                    [(effect_names[1], total[order]), (effect_names[2], own[order])],
                    id_name=effect_names[0])
        heatmap = _save_heatmap(influence, out / "task_influence.png", print_fn)
        progress.step()
    finally:
        progress.close()
    print_fn("")
    print_fn(format_task_table(matrix, labels, top=args.top, standard_errors=errors,
                               sizes=sizes))
    print_fn("")
    print_fn("Most harmful training rows (summed effect on all tasks' validation loss"
             + ("" if cv is None else f", averaged over the {cv - 1} folds that trained it")
             + f"; row id = 0-based data row of {Path(args.data).name}):")
    for row_id, value, task in zip(harmful_ids[:args.top], total[order][:args.top],
                                   row_tasks[order][:args.top], strict=False):
        print_fn(f"  row {row_id:>6} (task {_show(task)}): {value:+.4g}")
    _note_renamed(effect_names, ["row_id", "effect_total", "effect_on_own_task"], print_fn)
    print_fn("")
    print_fn(f"Wrote {out / 'task_influence.csv'}, {out / 'task_pairs.csv'}, "
             f"{out / 'harmful_rows.csv'}" + (f", {heatmap}" if heatmap else ""))
    return influence


def _note_renamed(names, wanted, print_fn):
    renamed = [(a, b) for a, b in zip(wanted, names, strict=True) if a != b]
    if renamed:
        print_fn("(the input has column(s) named " + ", ".join(repr(a) for a, _ in renamed)
                 + "; the generated columns are called "
                 + ", ".join(repr(b) for _, b in renamed) + ")")


def select(args, print_fn=print):
    """The ``select`` command; returns the fitted NegativeTransferSelector."""
    import pandas as pd

    from .selection import NegativeTransferSelector

    min_rows = 2 if args.cv == 0 else args.cv
    progress = _Progress(["reading data", "scoring rows (cross-fitted)", "writing"],
                         args.progress)
    try:
        table, data = _prepare(args, min_rows, _SELECT_OUTPUTS)
        wanted = ["row_id", "removal_order", "score"]
        names = _output_names(wanted, table.frame.columns)
        test = None
        if args.test is not None:
            test = prepare_test(read_table(args.test), data, task_column=args.task_column,
                                target=args.target, model=args.model,
                                categorical=args.categorical)
        _describe(data, args, print_fn)
        target_tasks = _match_tasks(args.target_tasks, data["tasks"])
        progress.step()
        selector = NegativeTransferSelector(
            _make_model(args), fraction=args.fraction, target_tasks=target_tasks,
            cv=None if args.cv == 0 else args.cv, guard=args.cv >= 3,  # the guard needs 3 folds
            validation_fraction=args.validation_fraction, damping=args.damping,
            random_state=args.random_state, verbose=1)
        # verbose=1 also measures the validation loss after removal (refits per fold); its
        # messages go to the report file, not the terminal.
        log = io.StringIO()
        with contextlib.redirect_stdout(log), _quiet_nan_warnings():
            selector.fit(data["X"], data["y"], tasks=data["tasks"])
        scored = (np.ones(len(data["y"]), dtype=bool) if args.cv != 0
                  else np.isin(np.arange(len(data["y"])), selector.folds_[0][0]))
        report = selector.report_
        _check_finite("row scores", selector.scores_[scored])
        _check_finite("validation losses", report["validation_loss_before"],
                      report["predicted_change"])
        _check_finite("validation losses after selection", report["validation_loss_after"],
                      allow_nan=True)
        test_table = None
        if test is not None:
            test_table = _evaluate_on_test(args, data, test, selector)
        progress.step()

        row_ids = data["rows"]
        kept_ids = row_ids[selector.support_]
        removed_ids = row_ids[selector.removed_]
        per_task = pd.DataFrame({
            "task": [_cell(t) for t in report["task"]],
            "target": report["target"],
            "rows": report["n_rows"],
            "removed": report["n_removed"],
            "validation_loss_before": report["validation_loss_before"],
            "predicted_change": report["predicted_change"],
            "validation_loss_after": report["validation_loss_after"],
        })
        per_task["measured_change"] = (per_task["validation_loss_after"]
                                       - per_task["validation_loss_before"])
        text = _selection_text(selector, top=None)

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        _write_rows(out / "kept_rows.csv", table, kept_ids, id_name=names[0])
        _write_rows(out / "removed_rows.csv", table, removed_ids,
                    [(names[1], np.arange(1, len(removed_ids) + 1)),
                     (names[2], selector.scores_[selector.removed_])], id_name=names[0])
        if args.drop_small_tasks:
            _write_rows(out / "dropped_small_tasks.csv", table, data["dropped_rows"],
                        id_name=names[0])
        per_task.to_csv(out / "per_task.csv", index=False)
        (out / "selection_report.txt").write_text(text + "\n", encoding="utf-8")
        plot = None
        if test_table is not None:
            test_table.assign(task=[_cell(t) for t in test_table["task"]]).to_csv(
                out / "test_per_task.csv", index=False)
            plot = _save_selection_plot(test_table, out / "selection.png")
        progress.step()
    finally:
        progress.close()
    print_fn("")
    print_fn(_selection_text(selector, top=args.top))
    print_fn("(validation loss: out-of-fold, averaged over the folds; 'after' refits each fold "
             "without the removed rows)")
    if len(removed_ids):
        shown = min(args.top, len(removed_ids))
        print_fn(f"\nMost harmful removed rows (row id = 0-based data row of "
                 f"{Path(args.data).name}), first {shown}:")
        for row_id, position in zip(removed_ids[:shown], selector.removed_[:shown],
                                    strict=True):
            print_fn(f"  row {row_id:>6} (task {_show(data['tasks'][position])}):"
                     f" {selector.scores_[position]:+.4g}")
    if test_table is not None:
        print_fn("")
        print_fn(_format_test_table(test_table, Path(args.test).name, args.top))
    _note_renamed(names, wanted, print_fn)
    print_fn(f"\nWrote {out / 'kept_rows.csv'} ({len(kept_ids)} rows), "
             f"{out / 'removed_rows.csv'} ({len(removed_ids)} rows)"
             + (f", {out / 'dropped_small_tasks.csv'} ({len(data['dropped_rows'])} rows)"
                if args.drop_small_tasks else "")
             + f", {out / 'per_task.csv'}, {out / 'selection_report.txt'}"
             + (f", {out / 'test_per_task.csv'}" if test_table is not None else "")
             + (f", {plot}" if plot else ""))
    return selector


def _selection_text(selector, top=None):
    """The selection report with task labels shown safely; ``top``: at most that many tasks.

    Many tasks: the ``top`` tasks that lost the most rows, then a count of the rest.
    """
    report = selector.report_
    header = selector.selection_report().splitlines()[:3]  # totals, scoring scheme, guard
    measured = not np.all(np.isnan(report["validation_loss_after"]))
    names = [_show(t) for t in report["task"]]
    width = max(6, *(len(n) for n in names))
    lines = [*header,
             f"{'task':>{width}} {'rows':>6} {'removed':>8} {'%':>6} {'val loss':>10} "
             f"{'predicted':>10}" + (f" {'measured':>10}" if measured else ""),
             f"{'':>{width}} {'':>6} {'':>8} {'':>6} {'before':>10} {'change':>10}"
             + (f" {'after':>10}" if measured else "")]
    order = list(range(len(names)))
    hidden = 0
    if top is not None and len(order) > 2 * top:
        order = sorted(order, key=lambda k: -report["n_removed"][k])[:top]
        hidden = len(names) - len(order)
        order.sort()
    for k in order:
        line = (f"{names[k]:>{width}} {report['n_rows'][k]:>6d} {report['n_removed'][k]:>8d} "
                f"{100 * report['removed_fraction'][k]:>5.1f}% "
                f"{report['validation_loss_before'][k]:>10.4g} "
                f"{report['predicted_change'][k]:>+10.3g}")
        if measured:
            line += f" {report['validation_loss_after'][k]:>10.4g}"
        lines.append(line + ("" if report["target"][k] else "  (not a target)"))
    if hidden:
        lines.append(f"... {hidden} more tasks (the {len(order)} that lost the most rows are "
                     "shown; every task is in per_task.csv)")
    return "\n".join(lines)


def _match_tasks(requested, tasks):
    """The task labels of the data named by the strings given on the command line."""
    if not requested:
        return None
    import pandas as pd

    by_name = {str(_label(task)): _label(task) for task in pd.unique(tasks)}
    unknown = [name for name in requested if name not in by_name]
    if unknown:
        raise InputError(f"--target-tasks {unknown} are not tasks of the data; tasks are "
                         f"{sorted(by_name)[:20]}.")
    return [by_name[name] for name in requested]


def _evaluate_on_test(args, data, test, selector):
    """Per-task and overall held-out metric of the model on all rows and of the selector."""
    import pandas as pd
    from sklearn.base import clone
    from sklearn.metrics import accuracy_score, mean_squared_error

    baseline = clone(selector.estimator).fit(data["X"], data["y"], tasks=data["tasks"])
    classifier = args.model == "logistic"
    metric, name = ((accuracy_score, "accuracy") if classifier
                    else (mean_squared_error, "MSE"))
    before_pred = baseline.predict(test["X"], tasks=test["tasks"])
    after_pred = selector.predict(test["X"], tasks=test["tasks"])
    rows = []
    for task in selector.tasks_:
        mask = test["tasks"] == task
        if mask.any():
            rows.append((_label(task), int(mask.sum()), metric(test["y"][mask], before_pred[mask]),
                         metric(test["y"][mask], after_pred[mask])))
    table = pd.DataFrame(rows, columns=["task", "test_rows", f"{name}_all_rows",
                                        f"{name}_selected"])
    table["change"] = table[f"{name}_selected"] - table[f"{name}_all_rows"]
    _check_finite("test metrics", table[f"{name}_all_rows"], table[f"{name}_selected"])
    table.attrs.update(
        metric=name, higher_is_better=classifier,
        overall=(metric(test["y"], before_pred), metric(test["y"], after_pred)),
        label=name + (" (higher is better)" if classifier else " (lower is better)"))
    return table


def _format_test_table(table, file_name, top):
    """The overall before/after line, better/worse counts, and the tasks (or the top few)."""
    before, after = table.attrs["overall"]
    sign = 1.0 if table.attrs["higher_is_better"] else -1.0
    gain = sign * table["change"].to_numpy()
    relative = f" ({100 * (after - before) / abs(before):+.1f}%)" if before else ""
    lines = [
        f"Held-out {file_name}: {table.attrs['label']}, model on all rows vs on the selected "
        "rows",
        f"  overall ({int(table['test_rows'].sum())} rows): {before:.4g} -> {after:.4g}"
        f"{relative}; tasks better: {int(np.sum(gain > 0))}, worse: {int(np.sum(gain < 0))}, "
        f"unchanged: {int(np.sum(gain == 0))}",
    ]
    shown = table.assign(task=[_show(t) for t in table["task"]])
    fmt = {"float_format": lambda v: f"{v:.4g}", "index": False}
    if len(table) <= 2 * top:
        lines.append(shown.to_string(**fmt))
        return "\n".join(lines)
    few = max(1, min(5, top))
    order = np.argsort(-gain, kind="stable")
    better = order[gain[order] > 0][:few]
    worse = order[::-1][gain[order[::-1]] < 0][:few]
    if len(better):
        lines.append(f"  most improved {len(better)}:")
        lines.append(shown.iloc[better].to_string(**fmt))
    if len(worse):
        lines.append(f"  most worsened {len(worse)}:")
        lines.append(shown.iloc[worse].to_string(**fmt))
    lines.append(f"  (every task of the {len(table)} is in test_per_task.csv)")
    return "\n".join(lines)


def _save_selection_plot(table, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from .plotting import SelectionDisplay

    name = table.attrs["metric"]
    display = SelectionDisplay(table[f"{name}_all_rows"], table[f"{name}_selected"],
                               task_labels=[_show(t) for t in table["task"]],
                               metric_name=table.attrs["label"])
    display.plot()
    display.figure_.savefig(path, dpi=120)
    plt.close(display.figure_)
    return path


# -- argument parsing -------------------------------------------------------------------------
def _fraction(text, *, low_open=True):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not ((0 < value if low_open else 0 <= value) and value < 1):
        raise argparse.ArgumentTypeError(
            f"must be in {'(0' if low_open else '[0'}, 1); got {value}")
    return value


def _float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number; got {text!r}")
    return value


def _positive(text):
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0; got {value}")
    return value


def _non_negative(text):
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0; got {value}")
    return value


def _seed(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**32 - 1]; got {value}")
    return value


def _add_data_arguments(parser):
    parser.add_argument("data", metavar="DATA",
                        help="CSV (.csv/.tsv, may be gzipped) or Parquet (.parquet) file")
    parser.add_argument("--task-column", required=True, metavar="COL",
                        help="column with the task label of every row")
    parser.add_argument("--target", required=True, metavar="COL", help="column to predict")
    parser.add_argument("--model", choices=_MODELS, default="ridge",
                        help="ridge: numeric target (squared loss); logistic: two-class target "
                        "(default: ridge)")
    parser.add_argument("--alpha", type=_positive, default=0.1,
                        help="strength of the pull of every task's coefficients towards the "
                        "shared ones; large pools the tasks (default: 0.1)")
    parser.add_argument("--features", nargs="+", metavar="COL",
                        help="feature columns (default: all but the task and target columns)")
    parser.add_argument("--categorical", choices=("onehot", "ordinal"), default="onehot",
                        help="encoding of non-numeric feature columns; numeric columns are "
                        "standardised (default: onehot)")
    parser.add_argument("--validation-fraction", type=_fraction, default=0.2, metavar="F",
                        help="fraction of every task's rows held out for validation "
                        "with --cv 0 (default: 0.2)")
    parser.add_argument("--damping", type=_non_negative, default=0.0,
                        help="added to the Hessian diagonal (only for ill-posed fits)")
    parser.add_argument("--drop-small-tasks", action="store_true",
                        help="drop tasks with too few rows instead of failing")
    parser.add_argument("--random-state", type=_seed, default=0, metavar="SEED",
                        help="seed of the validation split / folds (default: 0)")
    parser.add_argument("--top", type=int, default=10, metavar="N",
                        help="lines per ranking printed (default: 10)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar (shown on a terminal when tqdm is installed)")


def build_parser():
    """The argument parser of ``mtif-sklearn``.

    Returns
    -------
    parser : argparse.ArgumentParser
        With the sub-commands ``score-tasks``, ``select`` and ``demo``.
    """
    parser = argparse.ArgumentParser(
        prog="mtif-sklearn",
        description="Which tasks help or hurt each other, and which rows cause negative "
        "transfer (MultiTask Influence Functions).",
        epilog="Sign convention: an effect is V_k(without it) - V_k(with everything), V_k task "
        "k's mean validation loss; positive helps, negative hurts. Exit codes: 0 ok, "
        "1 computation failed, 2 bad usage or input.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    score = commands.add_parser(
        "score-tasks", help="task-influence matrix and most harmful rows of a data file",
        description="Fit a multitask model, print which tasks help or hurt which (strongest "
        "first; cross-fitted over --cv folds, with standard errors and task sizes) and write "
        "task_influence.csv, task_pairs.csv, task_influence.png and harmful_rows.csv to --out.")
    _add_data_arguments(score)
    score.add_argument("--cv", type=int, default=5,
                       help="folds of the cross-fitted scores (mean and standard error over "
                       "the folds; fewer when a task has fewer rows); 0: one "
                       "--validation-fraction split (default: 5)")
    score.add_argument("--top-rows", type=int, default=50, metavar="N",
                       help="rows written to harmful_rows.csv (default: 50)")
    score.add_argument("--out", default="mtif_output", metavar="DIR",
                       help="output folder (default: mtif_output)")

    sel = commands.add_parser(
        "select", help="drop the rows that cause negative transfer (NegativeTransferSelector)",
        description="Score every row by its cross-fitted effect on all tasks' validation loss, "
        "drop the most harmful --fraction (only rows that hurt) and write kept_rows.csv, "
        "removed_rows.csv, per_task.csv and selection_report.txt to --out.")
    _add_data_arguments(sel)
    sel.add_argument("--fraction", type=lambda t: _fraction(t, low_open=False), required=True,
                     metavar="F", help="cap on the share of rows removed, in [0, 1)")
    sel.add_argument("--cv", type=int, default=5,
                     help="folds of the cross-fitted scores; 0: one --validation-fraction "
                     "split (default: 5)")
    sel.add_argument("--target-tasks", nargs="+", metavar="TASK",
                     help="tasks whose validation loss counts (default: all)")
    sel.add_argument("--test", metavar="TEST",
                     help="held-out file with the same columns: per-task metric of the model "
                     "on all rows vs on the selected rows (test_per_task.csv, selection.png)")
    sel.add_argument("--out", default="mtif_output", metavar="DIR",
                     help="output folder (default: mtif_output)")

    demo = commands.add_parser("demo", help="task relatedness and harmful rows on built-in "
                               "synthetic data (no files needed)")
    demo.add_argument("--out", default="mtif_output", metavar="DIR",
                      help="folder for the heatmap (default: mtif_output)")
    demo.add_argument("--random-state", type=_seed, default=0, metavar="SEED")
    return parser


def main(argv=None):
    """Run the ``mtif-sklearn`` command line.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments without the program name. None: ``sys.argv[1:]``.

    Returns
    -------
    status : int
        0 success, 1 the computation failed, 2 bad usage or bad input.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse: --help (0) or a usage error (2, already printed)
        return int(stop.code or 0)
    problem = None
    if args.command in ("score-tasks", "select"):
        if args.top < 1 or getattr(args, "top_rows", 1) < 1:
            problem = "--top and --top-rows must be at least 1"
        elif args.cv == 1 or args.cv < 0:
            problem = "--cv must be 0 (one validation split) or at least 2"
    if problem:
        parser.print_usage(sys.stderr)
        print(f"mtif-sklearn: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.command in ("score-tasks", "select"):
        try:
            import pandas  # noqa: F401 - reading tables needs it; the library does not
        except ImportError as error:
            print(f"mtif-sklearn: error: {args.command} reads tables with pandas, which is not "
                  f"installed ({type(error).__name__}: {error}). Install the command-line "
                  "extra: pip install \"mtif-sklearn[cli]\"", file=sys.stderr)
            return EXIT_USAGE
    try:
        if args.command == "demo":
            from ._demo import run_demo

            run_demo(args.out, args.random_state)
        elif args.command == "score-tasks":
            score_tasks(args)
        else:
            select(args)
    except InputError as error:
        print(f"mtif-sklearn: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # the reader went away (e.g. | head): stop quietly
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("mtif-sklearn: interrupted", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as error:  # the computation failed: say what, and exit 1
        print(f"mtif-sklearn: failed: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK
