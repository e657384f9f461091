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
    status, stdout, _ = _run(["select", shop_csv, "--task-column", "store", "--target", "sales",
                              "--features", "price", "footfall", "rain", "staff", "colour",
                              "--fraction", "0.02", "--cv", "3", "--test", test_csv,
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
