"""The gallery examples double as smoke tests: each must run start to finish."""

import runpy
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("plot_*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path, monkeypatch, tmp_path):
    pytest.importorskip("matplotlib").use("Agg")
    monkeypatch.chdir(tmp_path)  # examples may write files; keep them out of the repo
    runpy.run_path(str(path), run_name="__main__")


def test_there_are_examples():
    # Guard against the glob silently finding nothing (then the test above would not run).
    assert EXAMPLES, "no examples/plot_*.py found"
