"""The ``mtif-sklearn`` command line: score tasks and select rows of a CSV or Parquet file.

Commands
--------
``score-tasks DATA``
    Fit a multitask model on the file, measure every task's and every row's influence on every
    task's validation loss (MTIFInfluence), print the task table and write it (CSV, heatmap PNG)
    with the most harmful rows.
``select DATA``
    Run NegativeTransferSelector: write the kept rows, the removed rows with their scores and a
    per-task before/after table.
``demo``
    The README's main job on an embedded synthetic data set (no files needed).

Features: every column except the task and target columns (or ``--features``). Numeric columns
are standardised (StandardScaler); text, categorical and boolean columns are one-hot encoded
(OneHotEncoder; ``--categorical ordinal`` for integer codes, then standardised). Missing values
are an error (fill or drop them first): imputation choices belong to the user.

Exit codes: 0 success, 1 the computation failed, 2 bad usage or bad input.
"""

import argparse
import contextlib
import io
import os
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


# -- reading and encoding -----------------------------------------------------------------------
def read_table(path):
    """Read a CSV (``.csv``, ``.tsv``, ``.txt``, optionally gzipped) or Parquet file.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    frame : pandas.DataFrame
        Its rows; the index is the 0-based data row number in the file (the row id).
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file.")
    suffixes = [s.lower() for s in path.suffixes]
    try:
        if suffixes and suffixes[-1] in (".parquet", ".pq"):
            try:
                frame = pd.read_parquet(path)
            except ImportError as error:
                raise InputError(f"{path}: reading Parquet needs pyarrow; install it with "
                                 "pip install pyarrow (or convert the file to CSV).") from error
        else:
            sep = "\t" if ".tsv" in suffixes else ","
            frame = pd.read_csv(path, sep=sep)
    except InputError:
        raise
    except Exception as error:  # pandas raises many parser error types
        raise InputError(f"{path}: cannot read the file ({type(error).__name__}: {error}).") \
            from error
    if frame.empty:
        raise InputError(f"{path}: the file holds no rows.")
    return frame.reset_index(drop=True)


def _check_columns(frame, names, what):
    missing = [name for name in names if name not in frame.columns]
    if missing:
        shown = [str(c) for c in frame.columns[:20]]
        more = " ..." if len(frame.columns) > 20 else ""
        raise InputError(f"{what} {missing} not found in the data; its columns are "
                         f"{shown}{more}.")


def prepare_data(frame, *, task_column, target, features=None, model="ridge",
                 categorical="onehot", min_task_rows=2, drop_small_tasks=False,
                 transformer=None):
    """Check the columns, encode the features and return the arrays the models need.

    Parameters
    ----------
    frame : pandas.DataFrame
        The data, one row per sample.
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
    transformer : fitted ColumnTransformer, default=None
        Encode with this (held-out data, encoded like the training data) instead of fitting
        a new one; the task-size check is skipped.

    Returns
    -------
    data : dict
        ``X`` (float array of encoded features), ``y``, ``tasks``, ``frame`` (the rows used,
        index = row id in the file), ``features`` (the columns used), ``transformer`` (the
        fitted encoder), ``feature_names`` (after encoding), ``dropped_tasks``.
    """
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    _check_columns(frame, [task_column], "task column")
    _check_columns(frame, [target], "target column")
    if features is None:
        features = [c for c in frame.columns if c not in (task_column, target)]
    else:
        _check_columns(frame, features, "feature column(s)")
        clash = [c for c in features if c in (task_column, target)]
        if clash:
            raise InputError(f"--features must not include the task or target column {clash}.")
    if not features:
        raise InputError("No feature columns: the data holds only the task and target columns.")

    if frame[task_column].isna().any():
        raise InputError(f"task column {task_column!r} has {int(frame[task_column].isna().sum())}"
                         " missing value(s); every row needs a task.")
    if frame[target].isna().any():
        raise InputError(f"target column {target!r} has {int(frame[target].isna().sum())} "
                         "missing value(s); drop or fill those rows first.")
    missing = frame[features].isna().sum()
    missing = missing[missing > 0]
    if len(missing):
        listed = ", ".join(f"{name!r} ({count})" for name, count in missing.items())
        raise InputError(f"feature column(s) with missing values: {listed}. Fill or drop them "
                         "first (mtif-sklearn does not impute).")

    counts = frame[task_column].value_counts()
    small = counts[counts < (min_task_rows if transformer is None else 0)]
    dropped = []
    if len(small):
        if not drop_small_tasks:
            listed = ", ".join(f"{task!r} ({n} rows)" for task, n in small.head(10).items())
            raise InputError(
                f"{len(small)} task(s) have fewer than {min_task_rows} rows: {listed}"
                f"{' ...' if len(small) > 10 else ''}. Each task needs rows to train on and to "
                "validate on; add rows, merge tasks, or pass --drop-small-tasks.")
        dropped = small.index.tolist()
        frame = frame[~frame[task_column].isin(dropped)]
        if frame.empty:
            raise InputError(f"every task has fewer than {min_task_rows} rows.")

    y = frame[target]
    if model == "ridge":
        if not (pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y)):
            raise InputError(
                f"target {target!r} is not numeric (dtype {y.dtype}, e.g. {y.iloc[0]!r}); "
                "--model ridge needs a numeric target. For a two-class target use "
                "--model logistic.")
        y = y.to_numpy(dtype=np.float64)
    else:
        classes = pd.unique(y)
        if len(classes) != 2:
            shown = [c.item() if hasattr(c, "item") else c for c in classes[:4]]
            raise InputError(
                f"target {target!r} has {len(classes)} distinct value(s) {shown}"
                f"{' ...' if len(classes) > 4 else ''}; --model logistic needs exactly two "
                "classes. For a numeric target use --model ridge.")
        y = y.to_numpy()

    numeric = [c for c in features if pd.api.types.is_numeric_dtype(frame[c])
               and not pd.api.types.is_bool_dtype(frame[c])]
    other = [c for c in features if c not in numeric]
    encoder = (OneHotEncoder(handle_unknown="ignore", sparse_output=False)
               if categorical == "onehot" else OrdinalEncoder())
    steps = [("numeric", StandardScaler(), numeric)] if numeric else []
    if other:
        steps.append(("categorical", encoder if categorical == "onehot"
                      else _ordinal_then_scale(encoder), other))
    # Text columns of mixed types are encoded by their string form.
    columns = frame[features].astype({c: str for c in other})
    if transformer is None:
        transformer = ColumnTransformer(steps, remainder="drop",
                                        verbose_feature_names_out=False)
        X = transformer.fit_transform(columns)
    else:
        X = transformer.transform(columns)
    return {
        "X": np.asarray(X, dtype=np.float64),
        "y": y,
        "tasks": frame[task_column].to_numpy(),
        "frame": frame,
        "features": list(features),
        "transformer": transformer,
        "feature_names": transformer.get_feature_names_out().tolist(),
        "dropped_tasks": dropped,
    }


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


# -- printing -----------------------------------------------------------------------------------
def format_task_table(matrix, labels, *, top=10):
    """Readable summary of a task-influence matrix: ranked pairs and (few tasks) the matrix.

    Parameters
    ----------
    matrix : ndarray of shape (n_tasks, n_tasks)
        ``[l, k]``: effect on task k of removing task l.
    labels : sequence
        Task names.
    top : int, default=10
        Pairs listed per direction.

    Returns
    -------
    text : str
        The summary.
    """
    names = [str(_label(t)) for t in labels]
    n_tasks = len(names)
    pairs = [(matrix[source, target], names[source], names[target])
             for source in range(n_tasks) for target in range(n_tasks)
             if source != target and np.isfinite(matrix[source, target])]
    pairs.sort(key=lambda item: item[0])
    lines = ["Task influence: effect on task k's validation loss of removing task l,",
             "V_k(without l) - V_k(with everything). Positive: l HELPS k. Negative: l HURTS k.",
             ""]
    hurts = [p for p in pairs if p[0] < 0][:top]
    helps = [p for p in pairs[::-1] if p[0] > 0][:top]
    width = max([len(n) for n in names] + [4])
    lines.append("Strongest negative transfer (l hurts k), strongest first:")
    lines += [f"  {source:>{width}} -> {target:<{width}} {value:+.4g}"
              for value, source, target in hurts] or ["  (none)"]
    lines.append("Strongest help (l helps k), strongest first:")
    lines += [f"  {source:>{width}} -> {target:<{width}} {value:+.4g}"
              for value, source, target in helps] or ["  (none)"]

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
def _load(args, min_task_rows):
    frame = read_table(args.data)
    return prepare_data(frame, task_column=args.task_column, target=args.target,
                        features=args.features, model=args.model,
                        categorical=args.categorical, min_task_rows=min_task_rows,
                        drop_small_tasks=args.drop_small_tasks)


def _describe(data, args, print_fn):
    import pandas as pd

    tasks = data["tasks"]
    n_tasks = len(pd.unique(tasks))
    print_fn(f"{args.data}: {len(tasks)} rows, {n_tasks} tasks ({args.task_column!r}), "
             f"target {args.target!r}, {data['X'].shape[1]} encoded features; "
             f"model {args.model}(alpha={args.alpha:g})")
    if data["dropped_tasks"]:
        print_fn(f"  dropped {len(data['dropped_tasks'])} small task(s): "
                 f"{[_label(t) for t in data['dropped_tasks'][:10]]}")


def score_tasks(args, print_fn=print):
    """The ``score-tasks`` command; returns the fitted MTIFInfluence."""
    import pandas as pd

    from ._tasks import encode_tasks
    from .influence import MTIFInfluence

    progress = _Progress(["reading data", "fitting and measuring influence", "writing"],
                         args.progress)
    try:
        data = _load(args, min_task_rows=2)
        _describe(data, args, print_fn)
        progress.step()
        influence = MTIFInfluence(_make_model(args), validation_fraction=args.validation_fraction,
                                  damping=args.damping, random_state=args.random_state)
        influence.fit(data["X"], data["y"], tasks=data["tasks"])
        progress.step()

        labels = [_label(t) for t in influence.tasks_]
        matrix = np.asarray(influence.task_influence_, dtype=np.float64)
        print_fn("")
        print_fn(format_task_table(matrix, labels, top=args.top))

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        table = pd.DataFrame(matrix, index=pd.Index(labels, name="removed_task"),
                             columns=[str(t) for t in labels])
        table.to_csv(out / "task_influence.csv")
        pairs = pd.DataFrame([(labels[source], labels[target], matrix[source, target])
                              for source in range(len(labels))
                              for target in range(len(labels)) if source != target],
                             columns=["removed_task", "target_task", "effect"])
        pairs.sort_values("effect", kind="stable").to_csv(out / "task_pairs.csv", index=False)

        effects = np.asarray(influence.influence_, dtype=np.float64)
        rows = influence.train_indices_
        frame = data["frame"]
        row_tasks = data["tasks"][rows]
        own = effects[np.arange(len(rows)), encode_tasks(row_tasks, influence.tasks_)]
        total = np.nansum(effects, axis=1)
        order = np.argsort(total, kind="stable")[:args.top_rows]
        harmful = frame.iloc[rows[order]].copy()
        harmful.insert(0, "effect_on_own_task", own[order])
        harmful.insert(0, "effect_total", total[order])
        harmful.index.name = "row_id"
        harmful.to_csv(out / "harmful_rows.csv")

        print_fn("")
        print_fn(f"Most harmful training rows (summed effect on all tasks' validation loss; "
                 f"row id = 0-based data row of {Path(args.data).name}):")
        for row_id, value, task in zip(harmful.index[:args.top], total[order][:args.top],
                                       row_tasks[order][:args.top], strict=False):
            print_fn(f"  row {row_id:>6} (task {_label(task)!s}): {value:+.4g}")
        heatmap = _save_heatmap(influence, out / "task_influence.png", print_fn)
        progress.step()
    finally:
        progress.close()
    print_fn("")
    print_fn(f"Wrote {out / 'task_influence.csv'}, {out / 'task_pairs.csv'}, "
             f"{out / 'harmful_rows.csv'}" + (f", {heatmap}" if heatmap else ""))
    return influence


def select(args, print_fn=print):
    """The ``select`` command; returns the fitted NegativeTransferSelector."""
    import pandas as pd

    from .selection import NegativeTransferSelector

    min_rows = 2 if args.cv == 0 else args.cv
    progress = _Progress(["reading data", "scoring rows (cross-fitted)", "writing"],
                         args.progress)
    try:
        data = _load(args, min_task_rows=min_rows)
        _describe(data, args, print_fn)
        progress.step()
        target_tasks = _match_tasks(args.target_tasks, data["tasks"])
        selector = NegativeTransferSelector(
            _make_model(args), fraction=args.fraction, target_tasks=target_tasks,
            cv=None if args.cv == 0 else args.cv,
            validation_fraction=args.validation_fraction, damping=args.damping,
            random_state=args.random_state, verbose=1)
        # verbose=1 also measures the validation loss after removal (refits per fold); its
        # messages go to the report file, not the terminal.
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            selector.fit(data["X"], data["y"], tasks=data["tasks"])
        progress.step()

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        frame = data["frame"]
        kept = frame[selector.support_]
        kept.index.name = "row_id"
        kept.to_csv(out / "kept_rows.csv")
        removed = frame.iloc[selector.removed_].copy()
        removed.insert(0, "score", selector.scores_[selector.removed_])
        removed.insert(0, "removal_order", np.arange(1, len(selector.removed_) + 1))
        removed.index.name = "row_id"
        removed.to_csv(out / "removed_rows.csv")

        report = selector.report_
        per_task = pd.DataFrame({
            "task": report["task"],
            "target": report["target"],
            "rows": report["n_rows"],
            "removed": report["n_removed"],
            "validation_loss_before": report["validation_loss_before"],
            "predicted_change": report["predicted_change"],
            "validation_loss_after": report["validation_loss_after"],
        })
        per_task["measured_change"] = (per_task["validation_loss_after"]
                                       - per_task["validation_loss_before"])
        per_task.to_csv(out / "per_task.csv", index=False)
        text = selector.selection_report()
        (out / "selection_report.txt").write_text(text + "\n")
        test_table = None
        if args.test is not None:
            test_table = _evaluate_on_test(args, data, selector, out, print_fn)
        progress.step()
    finally:
        progress.close()
    print_fn("")
    print_fn(text)
    print_fn("(validation loss: out-of-fold, averaged over the folds; 'after' refits each fold "
             "without the removed rows)")
    if len(selector.removed_):
        shown = min(args.top, len(selector.removed_))
        print_fn(f"\nMost harmful removed rows (row id = 0-based data row of "
                 f"{Path(args.data).name}), first {shown}:")
        for row_id, score in zip(removed.index[:shown], removed["score"][:shown], strict=True):
            print_fn(f"  row {row_id:>6} (task {_label(frame.loc[row_id, args.task_column])!s}):"
                     f" {score:+.4g}")
    if test_table is not None:
        print_fn(f"\nHeld-out {Path(args.test).name}: {test_table.attrs['metric']} per task, "
                 "model on all rows vs on the selected rows:")
        print_fn(test_table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print_fn(f"\nWrote {out / 'kept_rows.csv'} ({len(kept)} rows), {out / 'removed_rows.csv'} "
             f"({len(removed)} rows), {out / 'per_task.csv'}, {out / 'selection_report.txt'}"
             + (f", {out / 'test_per_task.csv'}" if test_table is not None else "")
             + (f", {out / 'selection.png'}" if (out / 'selection.png').exists() else ""))
    return selector


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


def _evaluate_on_test(args, data, selector, out, print_fn):
    """Per-task held-out metric of the model on all rows and of the selector's refit."""
    import pandas as pd
    from sklearn.base import clone
    from sklearn.metrics import accuracy_score, mean_squared_error

    frame = read_table(args.test)
    test = prepare_data(frame, task_column=args.task_column, target=args.target,
                        features=data["features"], model=args.model,
                        categorical=args.categorical, transformer=data["transformer"])
    known = {str(_label(t)) for t in selector.tasks_}
    unseen = sorted({str(_label(t)) for t in pd.unique(test["tasks"])} - known)
    if unseen:
        raise InputError(f"--test holds task(s) {unseen[:10]} not in the training data.")
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
    table.to_csv(out / "test_per_task.csv", index=False)
    table.attrs["metric"] = name + (" (higher is better)" if classifier
                                    else " (lower is better)")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return table
    from .plotting import SelectionDisplay

    display = SelectionDisplay(table[f"{name}_all_rows"], table[f"{name}_selected"],
                               task_labels=table["task"], metric_name=table.attrs["metric"])
    display.plot()
    display.figure_.savefig(out / "selection.png", dpi=120)
    plt.close(display.figure_)
    return table


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


def _positive(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0; got {value}")
    return value


def _non_negative(text):
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0; got {value}")
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
                        "(score-tasks; select with --cv 0) (default: 0.2)")
    parser.add_argument("--damping", type=_non_negative, default=0.0,
                        help="added to the Hessian diagonal (only for ill-posed fits)")
    parser.add_argument("--drop-small-tasks", action="store_true",
                        help="drop tasks with too few rows instead of failing")
    parser.add_argument("--random-state", type=int, default=0, metavar="SEED",
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
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    score = commands.add_parser(
        "score-tasks", help="task-influence matrix and most harmful rows of a data file",
        description="Fit a multitask model, print which tasks help or hurt which (strongest "
        "first) and write task_influence.csv, task_pairs.csv, task_influence.png and "
        "harmful_rows.csv to --out.")
    _add_data_arguments(score)
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
    demo.add_argument("--random-state", type=int, default=0, metavar="SEED")
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
        elif args.command == "select" and (args.cv == 1 or args.cv < 0):
            problem = "--cv must be 0 (one validation split) or at least 2"
    if problem:
        parser.print_usage(sys.stderr)
        print(f"mtif-sklearn: error: {problem}", file=sys.stderr)
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
