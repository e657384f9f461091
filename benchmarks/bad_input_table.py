"""Run every bad input of docs/bad_input.rst and print the rst table of what the user gets.

Usage: python benchmarks/bad_input_table.py > table.rst (then paste it into docs/bad_input.rst).
"""

import contextlib
import io
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.linear_model import Ridge

from mtif_sklearn import MTIFInfluence, MultitaskLogistic, MultitaskRidge, NegativeTransferSelector
from mtif_sklearn._cli import main as cli_main
from mtif_sklearn.datasets import make_multitask_regression
from mtif_sklearn.retrain import loo_effects, loto_effects

X, y, t = make_multitask_regression(n_tasks=3, n_samples_per_task=20, n_features=4,
                                    random_state=0)
yc = (y > np.median(y)).astype(int)
R, L = MultitaskRidge, MultitaskLogistic


def _with(array, index, value):
    array = np.array(array, dtype=float)
    array[index] = value
    return array


def _cli(*args, edit=None, test=None, name="data.csv"):
    """Run the command line on the 60-row table (``edit``: change it first; ``test``: make the
    --test file from it). DATA, TEST and TMP in ``args`` are the files and the folder."""
    with tempfile.TemporaryDirectory() as tmp:
        frame = pd.DataFrame(X, columns=list("abcd")).assign(store=t, sales=y)
        frame.loc[0, "a"] = np.nan if "nan" in args else frame.loc[0, "a"]
        frame = edit(frame) if edit is not None else frame
        path = Path(tmp) / name
        frame.to_csv(path, index=False)
        if test is not None:
            test(frame).to_csv(Path(tmp) / "test.csv", index=False)
        argv = [a.replace("DATA", str(path)).replace("TEST", str(Path(tmp) / "test.csv"))
                .replace("TMP", tmp) for a in args if a != "nan"]
        if "--out" not in argv and argv and argv[0] in ("score-tasks", "select"):
            argv += ["--out", str(Path(tmp) / "out")]
        (Path(tmp) / "file.txt").write_text("a file")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = cli_main(argv)
            except SystemExit as exc:
                code = exc.code
        lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
        if code == 0:  # what the run says about the data (its first line)
            lines = [out.getvalue().splitlines()[0].replace(str(path), name)]
        return f"exit {code}: " + (lines[-1].replace(tmp, "TMP") if lines else "")


def _cli_labels(labels):
    """The table with these task labels (cycled over the rows)."""
    return lambda frame: frame.assign(store=[labels[i % len(labels)] for i in range(60)])


def _with_bought(frame):
    return frame.assign(bought=np.where(frame["sales"] > frame["sales"].median(), "yes", "no"))


def _one_hot_frame(frame):
    return frame.assign(order_id=[f"A{i:03d}" for i in range(60)])


CASES = [
    ("MultitaskRidge", "sparse X", lambda: R().fit(sparse.csr_matrix(X), y, tasks=t)),
    ("MultitaskRidge", "NaN in X", lambda: R().fit(_with(X, (0, 0), np.nan), y, tasks=t)),
    ("MultitaskRidge", "pandas Float64 X with pd.NA",
     lambda: R().fit(pd.DataFrame(X).astype("Float64").mask(np.eye(60, 4, dtype=bool)), y,
                     tasks=t)),
    ("MultitaskRidge", "infinite y", lambda: R().fit(X, _with(y, 0, np.inf), tasks=t)),
    ("MultitaskRidge", "2-d y", lambda: R().fit(X, np.c_[y, y], tasks=t)),
    ("MultitaskRidge", "complex X", lambda: R().fit(X + 1j, y, tasks=t)),
    ("MultitaskRidge", "3-d X", lambda: R().fit(X[:, :, None], y, tasks=t)),
    ("MultitaskRidge", "0 features", lambda: R().fit(X[:, :0], y, tasks=t)),
    ("MultitaskRidge", "features of size 1e160 (Hessian overflow)",
     lambda: R().fit(X * 1e160, y, tasks=t)),
    ("MultitaskRidge", "alpha=-1", lambda: R(alpha=-1).fit(X, y, tasks=t)),
    ("MultitaskRidge", "alpha dict missing a task", lambda: R(alpha={0: 1.0}).fit(X, y, tasks=t)),
    ("MultitaskRidge", "negative sample_weight",
     lambda: R().fit(X, y, tasks=t, sample_weight=-np.ones(60))),
    ("MultitaskRidge", "a task with total sample_weight 0",
     lambda: R().fit(X, y, tasks=t, sample_weight=(t != 0).astype(float))),
    ("MultitaskRidge", "tasks of wrong length", lambda: R().fit(X, y, tasks=t[:-1])),
    ("MultitaskRidge", "2-d tasks", lambda: R().fit(X, y, tasks=np.c_[t, t])),
    ("MultitaskRidge", "tasks as a dict", lambda: R().fit(X, y, tasks=dict(enumerate(t)))),
    ("MultitaskRidge", "tasks with None", lambda: R().fit(X, y, tasks=[None] + t[1:].tolist())),
    ("MultitaskRidge", "nullable Int64 tasks with pd.NA",
     lambda: R().fit(X, y, tasks=pd.array([None] + t[1:].tolist(), dtype="Int64"))),
    ("MultitaskRidge", "mixed int and str tasks",
     lambda: R().fit(X, y, tasks=["a"] + t[1:].tolist())),
    ("MultitaskRidge", "tasks with pd.NA (object)",
     lambda: R().fit(X, y, tasks=pd.Series([pd.NA] + t[1:].tolist(), dtype=object))),
    ("MultitaskRidge", "datetime tasks with NaT",
     lambda: R().fit(X, y, tasks=pd.Series([pd.NaT] + [pd.Timestamp(2020 + k, 1, 1)
                                                       for k in t[1:]]))),
    ("MultitaskRidge", "True among int tasks",
     lambda: R().fit(X, y, tasks=[True] + t[1:].tolist())),
    ("MultitaskRidge", "float tasks 1e20, 2e20, 4e20 (beyond int64)",
     lambda: f"result: {len(R().fit(X, y, tasks=np.array([1e20, 2e20, 4e20])[t]).tasks_)} "
             "distinct tasks (no error)"),
    ("MultitaskRidge", "Python int tasks beyond int64",
     lambda: R().fit(X, y, tasks=[10**20 + int(k) for k in t])),
    ("MultitaskRidge", "tasks 'a' and 'a\\x00'",
     lambda: R().fit(X, y, tasks=["a" if k else "a\x00" for k in t])),
    ("MultitaskRidge", "task_column not in DataFrame",
     lambda: R(task_column="zz").fit(pd.DataFrame(X), y)),
    ("MultitaskRidge", "task_column on sparse X",
     lambda: R(task_column=0).fit(sparse.csr_matrix(X), y)),
    ("MultitaskRidge", "predict without tasks (3 tasks)",
     lambda: R().fit(X, y, tasks=t).predict(X)),
    ("MultitaskRidge", "predict on an unknown task",
     lambda: R().fit(X, y, tasks=t).predict(X, tasks=t + 10)),
    ("MultitaskRidge", "predict with the wrong number of features",
     lambda: R().fit(X, y, tasks=t).predict(X[:, :3], tasks=t)),
    ("MultitaskRidge", "unknown_task='shared', str labels, fitted on ints",
     lambda: R(unknown_task="shared").fit(X, y, tasks=t).predict(X, tasks=t.astype(str))),
    ("MultitaskLogistic", "three classes", lambda: L().fit(X, t, tasks=t)),
    ("MultitaskLogistic", "continuous y", lambda: L().fit(X, y, tasks=t)),
    ("MultitaskLogistic", "duplicated feature and shared_alpha=0 (singular)",
     lambda: L(alpha={0: 1e-300, 1: 1e-300, 2: 1e-300}, shared_alpha=0).fit(
         np.c_[X, X[:, 0]], yc, tasks=t)),
    ("MTIFInfluence", "no y", lambda: MTIFInfluence(R()).fit(X, None, tasks=t)),
    ("MTIFInfluence", "sparse X", lambda: MTIFInfluence(R()).fit(sparse.csr_matrix(X), y,
                                                                 tasks=t)),
    ("MTIFInfluence", "X_val without y_val", lambda: MTIFInfluence(R()).fit(X, y, tasks=t,
                                                                            X_val=X)),
    ("MTIFInfluence", "X_val with fewer features",
     lambda: MTIFInfluence(R()).fit(X, y, tasks=t, X_val=X[:, :3], y_val=y, tasks_val=t)),
    ("MTIFInfluence", "unknown task in tasks_val",
     lambda: MTIFInfluence(R()).fit(X, y, tasks=t, X_val=X, y_val=y, tasks_val=t + 10)),
    ("MTIFInfluence", "a task without validation rows",
     lambda: MTIFInfluence(R()).fit(X, y, tasks=t, X_val=X[t != 0], y_val=y[t != 0],
                                    tasks_val=t[t != 0])),
    ("MTIFInfluence", "a task with 1 row and no X_val",
     lambda: MTIFInfluence(R()).fit(np.r_[X[t != 0], X[:1]], np.r_[y[t != 0], y[:1]],
                                    tasks=np.r_[t[t != 0], 7])),
    ("MTIFInfluence", "estimator without the MTIF protocol",
     lambda: MTIFInfluence(Ridge()).fit(X, y, tasks=t)),
    ("MTIFInfluence", "unfitted model in FrozenEstimator",
     lambda: MTIFInfluence(__import__("sklearn.frozen").frozen.FrozenEstimator(R())).fit(
         X, y, tasks=t)),
    ("MTIFInfluence", "transform without y",
     lambda: MTIFInfluence(R(), random_state=0).fit(X, y, tasks=t).transform(X, tasks=t)),
    ("MTIFInfluence", "validation_fraction=1.0",
     lambda: MTIFInfluence(R(), validation_fraction=1.0).fit(X, y, tasks=t)),
    ("MTIFInfluence", "constant feature and shared_alpha=0 (near-singular Schur)",
     lambda: MTIFInfluence(R(shared_alpha=0)).fit(np.c_[X, np.ones(60)], y, tasks=t)),
    ("NegativeTransferSelector", "fraction=2",
     lambda: NegativeTransferSelector(R(), fraction=2).fit(X, y, tasks=t)),
    ("NegativeTransferSelector", "unknown target task",
     lambda: NegativeTransferSelector(R(), target_tasks=[99]).fit(X, y, tasks=t)),
    ("NegativeTransferSelector", "cv larger than a task",
     lambda: NegativeTransferSelector(R(), cv=50).fit(X, y, tasks=t)),
    ("NegativeTransferSelector", "predict without tasks",
     lambda: NegativeTransferSelector(R()).fit(X, y, tasks=t).predict(X)),
    ("retrain.loo_effects", "row index out of range",
     lambda: loo_effects(R(), X, y, X, y, tasks=t, tasks_val=t, rows=[1000])),
    ("retrain.loo_effects", "boolean mask as rows (one entry per row: used as a mask)",
     lambda: loo_effects(R(), X, y, X, y, tasks=t, tasks_val=t, rows=t == 0)),
    ("retrain.loo_effects", "no tasks_val", lambda: loo_effects(R(), X, y, X, y, tasks=t,
                                                                rows=[0])),
    ("retrain.loto_effects", "estimator without the MTIF protocol",
     lambda: loto_effects(Ridge(), X, y, X, y, tasks=t, tasks_val=t)),
    ("retrain.loo_effects", "float row positions",
     lambda: loo_effects(R(), X, y, X, y, tasks=t, tasks_val=t, rows=[0.5])),
    ("CLI", "unknown task column", lambda: _cli("score-tasks", "DATA", "--task-column", "zz",
                                                "--target", "sales", "--no-progress")),
    ("CLI", "missing value in a feature", lambda: _cli("score-tasks", "DATA", "--task-column",
                                                       "store", "--target", "sales", "nan",
                                                       "--no-progress")),
    ("CLI", "missing file", lambda: _cli("score-tasks", "/nonexistent.csv", "--task-column",
                                         "store", "--target", "sales")),
    ("CLI", "--alpha -1", lambda: _cli("score-tasks", "DATA", "--task-column", "store",
                                       "--target", "sales", "--alpha", "-1")),
    ("CLI", "--alpha NaN", lambda: _cli("score-tasks", "DATA", "--task-column", "store",
                                        "--target", "sales", "--alpha", "NaN")),
    ("CLI", "--damping inf", lambda: _cli("score-tasks", "DATA", "--task-column", "store",
                                          "--target", "sales", "--damping", "inf")),
    ("CLI", "--random-state -1", lambda: _cli("score-tasks", "DATA", "--task-column", "store",
                                              "--target", "sales", "--random-state", "-1")),
    ("CLI", "--features a a", lambda: _cli("score-tasks", "DATA", "--task-column", "store",
                                           "--target", "sales", "--features", "a", "a")),
    ("CLI", "--target equal to --task-column",
     lambda: _cli("score-tasks", "DATA", "--task-column", "store", "--target", "store")),
    ("CLI", "--out is an existing file",
     lambda: _cli("score-tasks", "DATA", "--task-column", "store", "--target", "sales",
                  "--out", "TMP/file.txt")),
    ("CLI", "select kept_rows.csv --out (its folder)",
     lambda: _cli("select", "DATA", "--task-column", "store", "--target", "sales",
                  "--fraction", "0.05", "--out", "TMP", name="kept_rows.csv")),
    ("CLI", "a feature of 1e308",
     lambda: _cli("score-tasks", "DATA", "--task-column", "store", "--target", "sales",
                  edit=lambda f: f.assign(a=np.where(np.arange(60) == 5, 1e308, f["a"])))),
    ("CLI", "a target of 1e200",
     lambda: _cli("score-tasks", "DATA", "--task-column", "store", "--target", "sales",
                  edit=lambda f: f.assign(sales=np.where(np.arange(60) == 5, 1e200,
                                                         f["sales"])))),
    ("CLI", "a text id column among the features",
     lambda: _cli("score-tasks", "DATA", "--task-column", "store", "--target", "sales",
                  edit=_one_hot_frame)),
    ("CLI", "task labels 007, 7, True, TRUE (as written)",
     lambda: _cli("score-tasks", "DATA", "--task-column", "store", "--target", "sales",
                  "--no-progress", edit=_cli_labels(["007", "7", "True", "TRUE"]))),
    ("CLI", "21-digit task ids",
     lambda: _cli("score-tasks", "DATA", "--task-column", "store", "--target", "sales",
                  "--no-progress", edit=_cli_labels(["123456789012345678901",
                                                     "123456789012345678902"]))),
    ("CLI", "a target column named score (select)",
     lambda: _cli("select", "DATA", "--task-column", "store", "--target", "score",
                  "--fraction", "0.05", "--no-progress",
                  edit=lambda f: f.rename(columns={"sales": "score"}))),
    ("CLI", "--test with a class never seen in training",
     lambda: _cli("select", "DATA", "--task-column", "store", "--target", "bought", "--model",
                  "logistic", "--features", "a", "b", "--fraction", "0.05", "--test", "TEST",
                  edit=_with_bought, test=lambda f: f.assign(bought="maybe"))),
    ("CLI", "--test with a numeric-looking text column",
     lambda: _cli("select", "DATA", "--task-column", "store", "--target", "sales",
                  "--fraction", "0.05", "--no-progress", "--test", "TEST",
                  edit=lambda f: f.assign(size=np.where(np.arange(60) % 3, "10", "big")),
                  test=lambda f: f.assign(size="10"))),
]


def outcome(func):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = func()
        except Exception as exc:  # the point is to record what the user gets
            first = " ".join(str(exc).split())
            return f"``{type(exc).__name__}``: {first[:90]}{'...' if len(first) > 90 else ''}"
    shown = [w for w in caught if not issubclass(w.category, DeprecationWarning)]
    if isinstance(result, str):
        return result
    if shown:
        text = " ".join(str(shown[0].message).split())[:90]
        return f"result + ``{shown[0].category.__name__}``: {text}..."
    return "result (no error)"


def main():
    # rst: "name_" would be a link target, "|" a substitution and "\\" an escape; escape all.
    rows = [(api, case.replace("\\", "\\\\"),
             re.sub(r"(\w)_(?=\W|$)", r"\1\\_",
                    outcome(func).replace("|", "/").replace("\\", "\\\\")))
            for api, case, func in CASES]
    widths = [max(len(r[i]) for r in rows + [("Where", "Bad input", "What the user gets")])
              for i in range(3)]
    rule = "  ".join("=" * w for w in widths)
    print(rule)
    print("  ".join(h.ljust(w) for h, w in zip(("Where", "Bad input", "What the user gets"),
                                                widths, strict=True)).rstrip())
    print(rule)
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(rule)


if __name__ == "__main__":
    main()
