"""The mtif-sklearn command line end to end: exit codes, files written, messages for bad input."""

import subprocess
import sys

import numpy as np
import pytest

pd = pytest.importorskip("pandas")

from mtif_sklearn._cli import main  # noqa: E402

STORES = np.array(["north", "south", "east", "west", "alpha", "beta"])


def _frame(n_per_task=40, seed=0, corrupt=3):
    """Six related regression tasks as a shop table: a task column, numbers, a text column."""
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal(4)
    task = np.repeat(np.arange(len(STORES)), n_per_task)
    X = rng.standard_normal((task.size, 4))
    coef = shared + 0.3 * rng.standard_normal((len(STORES), 4))
    colour = rng.choice(["red", "blue", "green"], size=task.size)
    y = np.einsum("ij,ij->i", X, coef[task]) + 0.5 * (colour == "red") \
        + 0.3 * rng.standard_normal(task.size)
    y[:corrupt] += 20.0  # gross label errors in task "north"
    frame = pd.DataFrame(X, columns=["price", "footfall", "rain", "staff"])
    frame.insert(0, "store", STORES[task])
    frame["colour"] = colour
    frame["sales"] = y
    frame["bought"] = np.where(y > np.median(y), "yes", "no")
    return frame


@pytest.fixture
def shop_csv(tmp_path):
    path = tmp_path / "shop.csv"
    _frame().to_csv(path, index=False)
    return path


def _run(argv, capsys):
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_score_tasks_prints_ranked_table_and_writes_files(shop_csv, tmp_path, capsys):
    out = tmp_path / "out"
    status, stdout, _ = _run(["score-tasks", shop_csv, "--task-column", "store", "--target",
                              "sales", "--features", "price", "footfall", "rain", "staff",
                              "colour", "--out", out, "--no-progress"], capsys)
    assert status == 0
    assert "Strongest negative transfer" in stdout and "Strongest help" in stdout
    matrix = pd.read_csv(out / "task_influence.csv", index_col=0)
    assert matrix.shape == (6, 6)
    assert sorted(matrix.index) == sorted(STORES.tolist())
    pairs = pd.read_csv(out / "task_pairs.csv")
    assert len(pairs) == 30 and pairs["effect"].is_monotonic_increasing  # most harmful first
    harmful = pd.read_csv(out / "harmful_rows.csv", index_col="row_id")
    # Original row ids and every original column come back; the corrupted rows are rows 0-2.
    assert {"store", "colour", "sales", "bought", "effect_total"} <= set(harmful.columns)
    assert harmful["effect_total"].is_monotonic_increasing
    top_ids = set(harmful.index[:10])
    training_corrupted = {0, 1, 2} & top_ids
    assert len(training_corrupted) >= 1, "a gross label error should rank among the worst rows"
    pytest.importorskip("matplotlib")
    assert (out / "task_influence.png").stat().st_size > 0


def test_score_tasks_logistic_with_text_target(shop_csv, tmp_path, capsys):
    status, stdout, _ = _run(["score-tasks", shop_csv, "--task-column", "store", "--target",
                              "bought", "--model", "logistic", "--features", "price", "colour",
                              "--categorical", "ordinal", "--out", tmp_path / "o",
                              "--no-progress"], capsys)
    assert status == 0, stdout
    assert (tmp_path / "o" / "task_influence.csv").exists()


def test_select_writes_kept_removed_and_per_task_tables(shop_csv, tmp_path, capsys):
    out = tmp_path / "sel"
    test_csv = tmp_path / "test.csv"
    _frame(n_per_task=20, seed=1, corrupt=0).to_csv(test_csv, index=False)
    # --cv 2: no nested-CV guard (it needs 3 folds), which on these 3 gross errors in 240 rows
    # keeps every row (the held-out rows that judge a removal hold the other errors); this
    # test is about the files written for the rows that go.
    status, stdout, _ = _run(["select", shop_csv, "--task-column", "store", "--target", "sales",
                              "--features", "price", "footfall", "rain", "staff", "colour",
                              "--fraction", "0.02", "--cv", "2", "--test", test_csv,
                              "--out", out, "--no-progress"], capsys)
    assert status == 0
    kept = pd.read_csv(out / "kept_rows.csv", index_col="row_id")
    removed = pd.read_csv(out / "removed_rows.csv", index_col="row_id")
    assert len(kept) + len(removed) == 240
    assert 0 < len(removed) <= int(0.02 * 240)
    assert set(kept.index).isdisjoint(removed.index)
    assert (removed["score"] < 0).all()  # only rows that hurt are removed
    per_task = pd.read_csv(out / "per_task.csv")
    assert {"validation_loss_before", "validation_loss_after", "removed"} <= set(per_task)
    assert per_task["removed"].sum() == len(removed)
    test_table = pd.read_csv(out / "test_per_task.csv")
    assert len(test_table) == 6 and {"MSE_all_rows", "MSE_selected"} <= set(test_table)
    assert "NegativeTransferSelector: removed" in stdout


@pytest.mark.parametrize("argv, message", [
    (["--task-column", "shop", "--target", "sales"], "task column ['shop'] not found"),
    (["--task-column", "store", "--target", "revenue"], "target column ['revenue'] not found"),
    (["--task-column", "store", "--target", "colour"], "--model ridge needs a numeric target"),
    (["--task-column", "store", "--target", "sales", "--model", "logistic"],
     "--model logistic needs exactly two classes"),
    (["--task-column", "store", "--target", "sales", "--features", "price", "nope"],
     "feature column(s) ['nope'] not found"),
])
def test_bad_input_exits_2_with_a_clear_message(shop_csv, tmp_path, capsys, argv, message):
    status, _, stderr = _run(["score-tasks", shop_csv, *argv, "--out", tmp_path], capsys)
    assert status == 2
    assert message in stderr


def test_task_with_too_few_rows_is_an_input_error(tmp_path, capsys):
    frame = _frame()
    frame.loc[frame.index[-1], "store"] = "tiny"  # a task of one row
    path = tmp_path / "small.csv"
    frame.to_csv(path, index=False)
    argv = ["score-tasks", path, "--task-column", "store", "--target", "sales",
            "--out", tmp_path / "o"]
    status, _, stderr = _run(argv, capsys)
    assert status == 2 and "'tiny' (1 rows)" in stderr and "--drop-small-tasks" in stderr
    status, stdout, _ = _run([*argv, "--drop-small-tasks", "--no-progress"], capsys)
    assert status == 0 and "dropped 1 small task(s): ['tiny']" in stdout
    # select with cv=5 needs 5 rows per task
    frame.loc[frame.index[-4:], "store"] = "tiny"
    frame.to_csv(path, index=False)
    status, _, stderr = _run(["select", path, "--task-column", "store", "--target", "sales",
                              "--fraction", "0.05", "--out", tmp_path / "s"], capsys)
    assert status == 2 and "fewer than 5 rows" in stderr


def test_missing_values_and_missing_file_exit_2(shop_csv, tmp_path, capsys):
    frame = _frame()
    frame.loc[3, "rain"] = np.nan
    path = tmp_path / "holes.csv"
    frame.to_csv(path, index=False)
    status, _, stderr = _run(["score-tasks", path, "--task-column", "store", "--target",
                              "sales", "--out", tmp_path], capsys)
    assert status == 2 and "'rain' (1)" in stderr
    status, _, stderr = _run(["score-tasks", tmp_path / "absent.csv", "--task-column", "store",
                              "--target", "sales"], capsys)
    assert status == 2 and "no such file" in stderr


def test_usage_errors_exit_2(shop_csv, capsys):
    assert _run(["score-tasks", shop_csv, "--target", "sales"], capsys)[0] == 2  # no task col
    assert _run(["select", shop_csv, "--task-column", "store", "--target", "sales",
                 "--fraction", "1.5"], capsys)[0] == 2
    assert _run(["select", shop_csv, "--task-column", "store", "--target", "sales",
                 "--fraction", "0.1", "--cv", "1"], capsys)[0] == 2
    assert _run(["frobnicate"], capsys)[0] == 2
    assert _run(["--help"], capsys)[0] == 0


def test_computation_failure_exits_1(shop_csv, tmp_path, capsys, monkeypatch):
    import mtif_sklearn.influence as influence_module

    def broken_fit(self, *args, **kwargs):
        raise np.linalg.LinAlgError("matrix is singular")

    monkeypatch.setattr(influence_module.MTIFInfluence, "fit", broken_fit)
    status, _, stderr = _run(["score-tasks", shop_csv, "--task-column", "store", "--target",
                              "sales", "--out", tmp_path], capsys)
    assert status == 1 and "failed: LinAlgError: matrix is singular" in stderr


def test_parquet_input(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    path = tmp_path / "shop.parquet"
    _frame().to_parquet(path)
    status, _, _ = _run(["score-tasks", path, "--task-column", "store", "--target", "sales",
                         "--out", tmp_path / "o", "--no-progress"], capsys)
    assert status == 0 and (tmp_path / "o" / "harmful_rows.csv").exists()


def test_console_entry_point_runs_demo_as_a_module(tmp_path):
    # What CI runs: python -m mtif_sklearn demo --out DIR.
    result = subprocess.run([sys.executable, "-m", "mtif_sklearn", "demo", "--out",
                             str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Held-out MSE per task" in result.stdout
    if "matplotlib not installed" not in result.stdout:
        assert (tmp_path / "task_influence.png").exists()


# -- issue 18: nothing silently wrong, nothing lost ----------------------------------------------
def _tiny_csv(path, labels, n_per_task=6, seed=0, extra=None, target="sales"):
    """A small shop table written by hand-made CSV text; returns the data lines as written."""
    rng = np.random.default_rng(seed)
    header = ["store", "price", "zip", target]
    lines = [",".join(header + list(extra or {}))]
    for k, label in enumerate(labels):
        for i in range(n_per_task):
            price = rng.standard_normal()
            # Numbers written in ways type inference would rewrite: "1.50", "02134".
            row = [label, f"{price:.2f}0", f"0{2134 + i % 3}",
                   f"{2 * price + 0.1 * k + 0.1 * rng.standard_normal():.6f}"]
            row += [values[(k * n_per_task + i) % len(values)] for values in (extra or {}).values()]
            lines.append(",".join(row))
    path.write_text("\n".join(lines) + "\n")
    return lines[1:]


def _exported(path):
    """{row id: the rest of the line} of a kept/removed/dropped export, as bytes on disk."""
    rows = path.read_text().splitlines()[1:]
    return {int(line.split(",", 1)[0]): line for line in rows}


def test_task_labels_and_exported_rows_stay_exactly_as_written(tmp_path, capsys):
    # Type inference made "007" and "7" (and "True"/"TRUE") one task each and rewrote
    # untouched cells ("02134" -> 2134, "1.50" -> 1.5) in kept_rows.csv.
    labels = ["007", "7", "010", "10", "True", "TRUE"]
    data = tmp_path / "shop.csv"
    lines = _tiny_csv(data, labels)
    out = tmp_path / "sel"
    status, stdout, stderr = _run(["select", data, "--task-column", "store", "--target", "sales",
                                   "--fraction", "0.05", "--cv", "2", "--out", out,
                                   "--no-progress"], capsys)
    assert status == 0, stderr
    per_task = pd.read_csv(out / "per_task.csv", dtype=str)
    assert sorted(per_task["task"]) == sorted(labels)  # six tasks, labels as written
    kept, removed = _exported(out / "kept_rows.csv"), _exported(out / "removed_rows.csv")
    assert sorted([*kept, *removed]) == list(range(len(lines)))  # every row exactly once
    for row_id, line in kept.items():
        assert line == f"{row_id},{lines[row_id]}"  # byte for byte after the row id
    for row_id, line in removed.items():
        assert line.split(",", 3)[3] == lines[row_id]  # after row_id, removal_order, score
    status, _, _ = _run(["score-tasks", data, "--task-column", "store", "--target", "sales",
                         "--out", tmp_path / "sc", "--no-progress"], capsys)
    assert status == 0
    matrix = pd.read_csv(tmp_path / "sc" / "task_influence.csv", index_col=0, dtype=str)
    assert sorted(matrix.index) == sorted(labels) and sorted(matrix.columns) == sorted(labels)


def test_integer_task_ids_stay_ints_and_21_digit_ids_work(tmp_path, capsys):
    data = tmp_path / "ids.csv"
    big = ["123456789012345678901", "123456789012345678902", "9"]  # beyond int64
    _tiny_csv(data, big)
    status, stdout, stderr = _run(["score-tasks", data, "--task-column", "store", "--target",
                                   "sales", "--out", tmp_path / "o", "--no-progress"], capsys)
    assert status == 0, stderr  # used to be exit 1 (int64 overflow)
    pairs = pd.read_csv(tmp_path / "o" / "task_pairs.csv", dtype=str)
    assert set(pairs["removed_task"]) == set(big)
    _tiny_csv(data, ["1", "2", "10"])
    status, stdout, _ = _run(["score-tasks", data, "--task-column", "store", "--target",
                              "sales", "--out", tmp_path / "o", "--no-progress"], capsys)
    matrix = pd.read_csv(tmp_path / "o" / "task_influence.csv", index_col=0)
    assert status == 0 and matrix.index.tolist() == [1, 2, 10]  # ints, sorted numerically


def test_test_file_is_read_with_the_training_column_types(tmp_path, capsys):
    # Training: task labels "1", "2", "x" and a text feature "10"/"20"/"big" (text columns).
    # The test file holds only numeric-looking values in both: inferred on its own it was
    # read as numbers and failed (exit 1) after the whole run.
    data, test = tmp_path / "train.csv", tmp_path / "test.csv"
    _tiny_csv(data, ["1", "2", "x"], extra={"size": ["10", "20", "big"]})
    _tiny_csv(test, ["1", "2"], n_per_task=3, seed=1, extra={"size": ["10", "20"]})
    status, stdout, stderr = _run(["select", data, "--task-column", "store", "--target", "sales",
                                   "--fraction", "0.05", "--cv", "2", "--test", test,
                                   "--out", tmp_path / "o", "--no-progress"], capsys)
    assert status == 0, stderr
    table = pd.read_csv(tmp_path / "o" / "test_per_task.csv", dtype={"task": str})
    assert table["task"].tolist() == ["1", "2"] and table["test_rows"].tolist() == [3, 3]


def test_output_columns_never_clash_with_input_columns(tmp_path, capsys):
    # A target named "score" used to fail after the whole computation ("cannot insert score,
    # already exists"); running select again on kept_rows.csv (which has row_id) too.
    data = tmp_path / "shop.csv"
    lines = _tiny_csv(data, ["a", "b", "c"], target="score",
                      extra={"effect_total": ["1", "2"], "removal_order": ["3", "4"]})
    out = tmp_path / "sel"
    status, stdout, stderr = _run(["select", data, "--task-column", "store", "--target", "score",
                                   "--features", "price", "--fraction", "0.1", "--cv", "2",
                                   "--out", out, "--no-progress"], capsys)
    assert status == 0, stderr
    removed = pd.read_csv(out / "removed_rows.csv")
    assert removed.columns[:3].tolist() == ["row_id", "mtif_removal_order", "mtif_score"]
    assert (removed["mtif_score"] < 0).all()  # the generated scores, not the input column
    assert "mtif_score" in stdout  # the renaming is said
    again = tmp_path / "again"
    status, _, stderr = _run(["select", out / "kept_rows.csv", "--task-column", "store",
                              "--target", "score", "--features", "price", "--fraction", "0.1",
                              "--cv", "2", "--out", again, "--no-progress"], capsys)
    assert status == 0, stderr
    kept = pd.read_csv(again / "kept_rows.csv")
    assert kept.columns[:2].tolist() == ["mtif_row_id", "row_id"]
    status, _, stderr = _run(["score-tasks", data, "--task-column", "store", "--target", "score",
                              "--features", "price", "--out", tmp_path / "sc", "--no-progress"],
                             capsys)
    assert status == 0, stderr
    harmful = pd.read_csv(tmp_path / "sc" / "harmful_rows.csv")
    assert harmful.columns[:3].tolist() == ["row_id", "mtif_effect_total", "effect_on_own_task"]
    assert harmful["effect_total"].astype(str).isin(["1", "2"]).all()  # the input column intact
    assert len(lines) == 18


@pytest.fixture
def no_computation(monkeypatch):
    """Fail loudly if a command starts computing: checks must come first."""
    import mtif_sklearn.influence as influence_module
    import mtif_sklearn.selection as selection_module

    def refuse(*args, **kwargs):
        raise AssertionError("computation started before the input was checked")

    monkeypatch.setattr(influence_module.MTIFInfluence, "fit", refuse)
    monkeypatch.setattr(selection_module.NegativeTransferSelector, "fit", refuse)


def test_outputs_never_overwrite_an_input(tmp_path, capsys, no_computation):
    out = tmp_path / "sel"
    out.mkdir()
    data = out / "kept_rows.csv"  # select kept_rows.csv --out . used to truncate it
    _tiny_csv(data, ["a", "b"])
    before = data.read_bytes()
    status, _, stderr = _run(["select", data, "--task-column", "store", "--target", "sales",
                              "--fraction", "0.1", "--cv", "2", "--out", out], capsys)
    assert status == 2 and "would overwrite the input DATA" in stderr
    assert data.read_bytes() == before
    train = tmp_path / "train.csv"
    _tiny_csv(train, ["a", "b"])
    test = out / "test_per_task.csv"  # a --test file inside --out with an output name
    test.write_bytes(before)
    status, _, stderr = _run(["select", train, "--task-column", "store", "--target", "sales",
                              "--fraction", "0.1", "--cv", "2", "--test", test, "--out", out],
                             capsys)
    assert status == 2 and "would overwrite the input --test" in stderr
    assert test.read_bytes() == before


def test_non_finite_losses_exit_2_not_none(tmp_path, capsys, monkeypatch):
    data = tmp_path / "big.csv"
    _tiny_csv(data, ["a", "b"])
    text = data.read_text().splitlines()
    text[1] = ",".join(text[1].split(",")[:3] + ["1e200"])  # squared loss overflows float64
    data.write_text("\n".join(text) + "\n")
    status, stdout, stderr = _run(["score-tasks", data, "--task-column", "store", "--target",
                                   "sales", "--out", tmp_path / "o"], capsys)
    assert status == 2 and "'1e200'" in stderr and "overflows float64" in stderr
    assert "(none)" not in stdout
    # Whatever else makes the effects non-finite is caught on the outputs too.
    import mtif_sklearn.influence as influence_module

    fit = influence_module.MTIFInfluence.fit

    def nan_fit(self, *args, **kwargs):
        fit(self, *args, **kwargs)
        self.task_influence_[0, 1] = np.nan
        return self

    monkeypatch.setattr(influence_module.MTIFInfluence, "fit", nan_fit)
    _tiny_csv(data, ["a", "b"])
    status, stdout, stderr = _run(["score-tasks", data, "--task-column", "store", "--target",
                                   "sales", "--out", tmp_path / "o2"], capsys)
    assert status == 2 and "not finite (1 NaN/inf values)" in stderr
    assert not (tmp_path / "o2").exists()  # nothing written
    import mtif_sklearn.selection as selection_module

    select_fit = selection_module.NegativeTransferSelector.fit

    def inf_fit(self, *args, **kwargs):
        select_fit(self, *args, **kwargs)
        self.scores_[3] = -np.inf
        return self

    monkeypatch.setattr(selection_module.NegativeTransferSelector, "fit", inf_fit)
    status, _, stderr = _run(["select", data, "--task-column", "store", "--target", "sales",
                              "--fraction", "0.1", "--cv", "2", "--out", tmp_path / "o3"], capsys)
    assert status == 2 and "row scores are not finite" in stderr
    assert not (tmp_path / "o3").exists()


def test_test_file_with_an_unseen_class_exits_2_and_one_class_is_fine(tmp_path, capsys):
    data, test = tmp_path / "train.csv", tmp_path / "test.csv"
    _tiny_csv(data, ["a", "b"], n_per_task=8, extra={"bought": ["yes", "no"]})
    argv = ["select", data, "--task-column", "store", "--target", "bought", "--model",
            "logistic", "--features", "price", "--fraction", "0.05", "--cv", "2", "--test",
            test, "--out", tmp_path / "o", "--no-progress"]
    _tiny_csv(test, ["a", "b"], n_per_task=2, extra={"bought": ["yes", "maybe"]})
    status, _, stderr = _run(argv, capsys)
    assert status == 2 and "class(es) ['maybe'] never seen in training" in stderr
    _tiny_csv(test, ["a", "b"], n_per_task=2, extra={"bought": ["yes"]})  # one class: valid
    status, stdout, stderr = _run(argv, capsys)
    assert status == 0, stderr
    assert "accuracy" in stdout


def test_drop_small_tasks_writes_the_dropped_rows(tmp_path, capsys):
    data = tmp_path / "shop.csv"
    lines = _tiny_csv(data, ["a", "b", "c"])
    lines[-2:] = [line.replace("c,", "tiny,", 1) for line in lines[-2:]]  # a 2-row task
    data.write_text("\n".join(["store,price,zip,sales", *lines]) + "\n")
    out = tmp_path / "sel"
    status, stdout, stderr = _run(["select", data, "--task-column", "store", "--target", "sales",
                                   "--fraction", "0.1", "--cv", "3", "--drop-small-tasks",
                                   "--out", out, "--no-progress"], capsys)
    assert status == 0, stderr
    files = [_exported(out / name) for name in
             ("kept_rows.csv", "removed_rows.csv", "dropped_small_tasks.csv")]
    ids = sorted(i for rows in files for i in rows)
    assert ids == list(range(len(lines)))  # every input row in exactly one output file
    assert sorted(files[2]) == [len(lines) - 2, len(lines) - 1]
    assert files[2][len(lines) - 1] == f"{len(lines) - 1},{lines[-1]}"


def test_generated_tables_escape_formula_labels_and_exports_stay_verbatim(tmp_path, capsys):
    labels = ["=cmd|' /C calc'!A0", "@SUM(1+1)", "-1.5", "plain"]
    data = tmp_path / "shop.csv"
    rows = _tiny_csv(data, [f'"{label}"' if "," in label else label for label in labels])
    status, stdout, stderr = _run(["score-tasks", data, "--task-column", "store", "--target",
                                   "sales", "--out", tmp_path / "o", "--no-progress"], capsys)
    assert status == 0, stderr
    pairs = pd.read_csv(tmp_path / "o" / "task_pairs.csv", dtype=str)
    # Text starting with = or @ gets a leading quote; the number -1.5 and plain text do not.
    assert set(pairs["removed_task"]) == {"'=cmd|' /C calc'!A0", "'@SUM(1+1)", "-1.5", "plain"}
    matrix = pd.read_csv(tmp_path / "o" / "task_influence.csv", index_col=0, dtype=str)
    assert "'@SUM(1+1)" in matrix.index and "'@SUM(1+1)" in matrix.columns
    assert repr(labels[0]) in stdout and repr(labels[1]) in stdout  # string literals, not raw
    status, _, stderr = _run(["select", data, "--task-column", "store", "--target", "sales",
                              "--fraction", "0.05", "--cv", "2", "--out", tmp_path / "s",
                              "--no-progress"], capsys)
    assert status == 0, stderr
    per_task = pd.read_csv(tmp_path / "s" / "per_task.csv", dtype=str)
    assert "'@SUM(1+1)" in set(per_task["task"])
    kept = _exported(tmp_path / "s" / "kept_rows.csv")
    assert kept[0] == f"0,{rows[0]}"  # exported input rows are verbatim (documented)


@pytest.mark.parametrize("argv, message", [
    (["--alpha", "nan"], "argument --alpha: must be a finite number"),
    (["--alpha", "inf"], "argument --alpha: must be a finite number"),
    (["--damping", "inf"], "argument --damping: must be a finite number"),
    (["--random-state", "-1"], "argument --random-state: must be in [0, 2**32 - 1]"),
    (["--features", "price", "price"], "--features lists ['price'] more than once"),
    (["--task-column", "sales"], "--target and --task-column are the same column"),
    (["--out", "FILE"], "is an existing file, not a folder"),
])
def test_bad_usage_exits_2_before_computing(tmp_path, capsys, no_computation, argv, message):
    data = tmp_path / "shop.csv"
    _tiny_csv(data, ["a", "b"])
    (tmp_path / "file.txt").write_text("not a folder")
    argv = [str(tmp_path / "file.txt") if a == "FILE" else a for a in argv]
    base = ["score-tasks", data, "--task-column", "store", "--target", "sales"]
    if "--task-column" in argv:
        base = base[:2] + ["--target", "sales"]
    status, _, stderr = _run([*base, *argv], capsys)
    assert status == 2, stderr
    assert message in stderr
    assert (tmp_path / "file.txt").read_text() == "not a folder"


def test_huge_feature_values_exit_2_naming_the_column(tmp_path, capsys, no_computation):
    data = tmp_path / "shop.csv"
    _tiny_csv(data, ["a", "b"])
    text = data.read_text().replace("store,price", "store,price", 1).splitlines()
    fields = text[3].split(",")
    fields[1] = "1e308"  # standardising squares it: overflow
    text[3] = ",".join(fields)
    data.write_text("\n".join(text) + "\n")
    status, _, stderr = _run(["score-tasks", data, "--task-column", "store", "--target", "sales",
                              "--out", tmp_path / "o"], capsys)
    assert status == 2 and "column 'price' has the value '1e308' (row 2)" in stderr


def test_id_like_text_column_is_refused_and_features_are_listed(tmp_path, capsys,
                                                                monkeypatch):
    data = tmp_path / "shop.csv"
    _tiny_csv(data, ["a", "b"], extra={"order_id": [f"A{i:03d}" for i in range(12)]})
    argv = ["score-tasks", data, "--task-column", "store", "--target", "sales",
            "--out", tmp_path / "o", "--no-progress"]
    status, _, stderr = _run(argv, capsys)
    # Used to be one-hot encoded into one column per row (15,389 on a real file: MemoryError).
    assert status == 2
    assert "'order_id'" in stderr and "an id, not a feature" in stderr
    assert "--features price zip" in stderr  # a command line that works
    status, stdout, _ = _run([*argv, "--features", "price", "zip"], capsys)
    assert status == 0 and "features used (2; --features to choose): numeric" in stdout
    # The one-hot size is estimated before encoding, and refused when absurd.
    from mtif_sklearn import _cli

    monkeypatch.setattr(_cli, "_MEMORY_LIMIT", 1000)
    _tiny_csv(data, ["a", "b"], extra={"colour": ["red", "blue", "green"]})
    status, _, stderr = _run(argv, capsys)
    assert status == 2 and "encoded features would be 5 columns (one-hot: 'colour' (3 " \
                           "values))" in stderr


def test_newline_in_a_label_does_not_break_the_printed_table(tmp_path, capsys):
    data = tmp_path / "shop.csv"
    _tiny_csv(data, ['"north\nside"', "south"])  # a quoted field spanning two lines
    status, stdout, stderr = _run(["score-tasks", data, "--task-column", "store", "--target",
                                   "sales", "--out", tmp_path / "o", "--no-progress"], capsys)
    assert status == 0, stderr
    assert "'north\\nside'" in stdout
    assert not any(line.startswith("side") for line in stdout.splitlines())
    # and the multi-line record is exported verbatim
    status, _, _ = _run(["select", data, "--task-column", "store", "--target", "sales",
                         "--fraction", "0.05", "--cv", "2", "--out", tmp_path / "s",
                         "--no-progress"], capsys)
    kept = (tmp_path / "s" / "kept_rows.csv").read_text()
    assert status == 0 and '0,"north\nside",' in kept


def test_broken_pyarrow_shows_its_real_import_error(tmp_path, capsys, monkeypatch):
    fake = tmp_path / "site" / "pyarrow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ImportError('libarrow.so.1900: cannot open shared object file')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for name in [m for m in sys.modules if m == "pyarrow" or m.startswith("pyarrow.")]:
        monkeypatch.delitem(sys.modules, name)
    data = tmp_path / "shop.parquet"
    data.write_bytes(b"PAR1 not really")
    status, _, stderr = _run(["score-tasks", data, "--task-column", "store", "--target", "sales",
                              "--out", tmp_path / "o"], capsys)
    assert status == 2
    assert "pyarrow is installed but fails to import" in stderr and "libarrow.so.1900" in stderr


def test_version_and_a_missing_cli_extra(capsys, monkeypatch, shop_csv):
    import mtif_sklearn

    status, stdout, _ = _run(["--version"], capsys)
    assert status == 0 and stdout.strip() == f"mtif-sklearn {mtif_sklearn.__version__}"
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if the [cli] extra was not installed
    status, _, stderr = _run(["score-tasks", shop_csv, "--task-column", "store", "--target",
                              "sales"], capsys)
    assert status == 2 and 'pip install "mtif-sklearn[cli]"' in stderr
    assert "Traceback" not in stderr


def test_select_test_prints_an_overall_line_and_a_compact_summary_for_many_tasks(tmp_path,
                                                                                 capsys):
    data, test = tmp_path / "train.csv", tmp_path / "test.csv"
    labels = [f"s{k:02d}" for k in range(12)]
    _tiny_csv(data, labels, n_per_task=4)
    _tiny_csv(test, labels, n_per_task=2, seed=1)
    status, stdout, stderr = _run(["select", data, "--task-column", "store", "--target", "sales",
                                   "--fraction", "0.05", "--cv", "2", "--test", test, "--top",
                                   "2", "--out", tmp_path / "o", "--no-progress"], capsys)
    assert status == 0, stderr
    table = pd.read_csv(tmp_path / "o" / "test_per_task.csv")
    overall = [line for line in stdout.splitlines() if "overall (24 rows)" in line]
    assert len(overall) == 1 and "tasks better:" in overall[0]
    better = int(overall[0].split("tasks better: ")[1].split(",")[0])
    assert better == int((table["change"] < 0).sum())  # MSE: lower is better
    assert "every task of the 12 is in test_per_task.csv" in stdout
    # Compact: not every task's test line is printed (12 tasks, --top 2).
    printed = [t for t in labels if any(line.lstrip().startswith(t + " ")
                                        for line in stdout.split("Held-out")[1].splitlines())]
    assert len(printed) <= 4


def test_task_pairs_carry_the_task_sizes(tmp_path, capsys):
    data = tmp_path / "shop.csv"
    lines = _tiny_csv(data, ["a", "b", "c"], n_per_task=4)
    lines += [line.replace("a,", "b,", 1) for line in lines[:3]]  # task b: 7 rows
    data.write_text("\n".join(["store,price,zip,sales", *lines]) + "\n")
    status, _, stderr = _run(["score-tasks", data, "--task-column", "store", "--target",
                              "sales", "--out", tmp_path / "o", "--no-progress"], capsys)
    assert status == 0, stderr
    pairs = pd.read_csv(tmp_path / "o" / "task_pairs.csv")
    size = {"a": 4, "b": 7, "c": 4}
    assert (pairs["removed_task_rows"] == pairs["removed_task"].map(size)).all()
    assert (pairs["target_task_rows"] == pairs["target_task"].map(size)).all()


# -- issue 15: uncertainty where users read task scores ------------------------------------------
def test_score_tasks_cross_fits_and_writes_standard_errors_next_to_every_pair(shop_csv, tmp_path,
                                                                             capsys):
    out = tmp_path / "o"
    status, stdout, stderr = _run(["score-tasks", shop_csv, "--task-column", "store",
                                   "--target", "sales", "--out", out, "--no-progress"], capsys)
    assert status == 0, stderr
    pairs = pd.read_csv(out / "task_pairs.csv")
    assert list(pairs.columns) == ["removed_task", "target_task", "effect", "standard_error",
                                   "within_2_se", "removed_task_rows", "target_task_rows"]
    assert (pairs["standard_error"] > 0).all()
    np.testing.assert_array_equal(pairs["within_2_se"],
                                  pairs["effect"].abs() < 2 * pairs["standard_error"])
    # The printed pairs carry the same numbers: effect, +- standard error, [rows / rows].
    worst = pairs.iloc[0]
    line = next(line for line in stdout.splitlines()
                if line.strip().startswith(f"{worst['removed_task']} -> {worst['target_task']}"))
    assert f"+- {worst['standard_error']:.2g}" in line and "[40 / 40]" in line
    assert "'+-': standard error over the folds" in stdout
    assert "averaged over the 4 folds that trained it" in stdout
    # every row is scored (each in the 4 folds that trained it), not only a training split
    harmful = pd.read_csv(out / "harmful_rows.csv", index_col="row_id")
    assert len(harmful) == 50


def test_score_tasks_heatmap_marks_cells_within_two_standard_errors(shop_csv, tmp_path):
    pytest.importorskip("matplotlib")
    from mtif_sklearn._cli import build_parser, score_tasks
    from mtif_sklearn.plotting import TaskInfluenceDisplay

    args = build_parser().parse_args(["score-tasks", str(shop_csv), "--task-column", "store",
                                      "--target", "sales", "--out", str(tmp_path / "o"),
                                      "--no-progress"])
    influence = score_tasks(args, print_fn=lambda *a: None)
    display = TaskInfluenceDisplay.from_estimator(influence)  # what the PNG is drawn from
    expected = np.abs(influence.task_influence_) < 2 * influence.task_influence_se_
    np.fill_diagonal(expected, False)
    np.testing.assert_array_equal(display.uncertain_ & ~np.eye(6, dtype=bool), expected)
    assert expected.any() and (tmp_path / "o" / "task_influence.png").stat().st_size > 0


def test_score_tasks_cv_0_is_one_split_without_standard_errors(shop_csv, tmp_path, capsys):
    out = tmp_path / "o"
    status, stdout, stderr = _run(["score-tasks", shop_csv, "--task-column", "store",
                                   "--target", "sales", "--cv", "0", "--out", out,
                                   "--no-progress"], capsys)
    assert status == 0, stderr
    pairs = pd.read_csv(out / "task_pairs.csv")
    assert pairs["standard_error"].isna().all() and pairs["within_2_se"].isna().all()
    assert "+-" not in stdout and "[40 / 40]" in stdout


def test_score_tasks_uses_fewer_folds_for_small_tasks_and_refuses_cv_1(tmp_path, capsys):
    data = tmp_path / "shop.csv"
    _tiny_csv(data, ["a", "b", "c"], n_per_task=4)
    status, stdout, stderr = _run(["score-tasks", data, "--task-column", "store", "--target",
                                   "sales", "--out", tmp_path / "o", "--no-progress"], capsys)
    assert status == 0, stderr
    assert "cross-fitting over 4 folds instead of --cv 5: task a has 4 rows" in stdout
    status, _, stderr = _run(["score-tasks", data, "--task-column", "store", "--target",
                              "sales", "--cv", "1", "--out", tmp_path / "o"], capsys)
    assert status == 2 and "--cv must be 0 (one validation split) or at least 2" in stderr


def test_demo_shows_a_task_selection_decision_and_its_held_out_effect(tmp_path):
    from mtif_sklearn._demo import make_demo_data, make_demo_test_data, run_demo

    lines = []
    run_demo(tmp_path, 0, print_fn=lambda *parts: lines.append(" ".join(map(str, parts))))
    text = "\n".join(lines)
    assert "Task selection: TaskSelector(MultitaskRidge(alpha=0.05))" in text
    section = text.split("Held-out MSE of the tasks trained without some others")[1]
    rows = [line.split() for line in section.splitlines()[2:] if "tasks [" in line]
    assert rows, "at least one target is trained without some tasks on the demo data"
    # The printed change is the held-out MSE of the selector minus the all-together model's.
    from mtif_sklearn import MultitaskRidge, TaskSelector

    X, y, tasks, _, _ = make_demo_data(0)
    X_test, y_test, tasks_test = make_demo_test_data(random_state=0)
    selector = TaskSelector(MultitaskRidge(alpha=0.05), random_state=0).fit(X, y, tasks=tasks)
    together = MultitaskRidge(alpha=0.05).fit(X, y, tasks=tasks)
    for row in rows:
        task = int(row[0])
        keep = tasks_test == task
        change = (np.mean((selector.predict(X_test[keep], tasks=tasks_test[keep])
                           - y_test[keep]) ** 2)
                  - np.mean((together.predict(X_test[keep], tasks=tasks_test[keep])
                             - y_test[keep]) ** 2))
        assert float(row[3]) == pytest.approx(change, abs=6e-4)  # printed to 3 decimals


def test_select_reports_the_guard_and_turns_it_off_below_three_folds(shop_csv, tmp_path,
                                                                      capsys):
    # NegativeTransferSelector's nested-CV guard needs 3 folds: --cv 3 runs it and says what it
    # kept; --cv 2 (and --cv 0, one split) select without it and say so.
    base = ["select", shop_csv, "--task-column", "store", "--target", "sales", "--features",
            "price", "footfall", "--fraction", "0.02", "--no-progress"]
    status, stdout, _ = _run(base + ["--cv", "3", "--out", tmp_path / "a"], capsys)
    assert status == 0 and "guard (nested CV, margin 1 se): round 1 kept" in stdout
    report = (tmp_path / "a" / "selection_report.txt").read_text(encoding="utf-8")
    assert "guard (nested CV" in report
    status, stdout, _ = _run(base + ["--cv", "2", "--out", tmp_path / "b"], capsys)
    assert status == 0 and "guard: off" in stdout
