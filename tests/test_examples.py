"""The gallery examples double as smoke tests: each must run start to finish."""

import os
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("plot_*.py"))
# The examples read the real data from $MTIF_DATA (default ../shared/data from the repository
# root); here they run in a scratch folder, so point the variable at the repository's data.
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path, monkeypatch, tmp_path):
    pytest.importorskip("matplotlib").use("Agg")
    if "MTIF_DATA" not in os.environ:
        monkeypatch.setenv("MTIF_DATA", str(SHARED_DATA))
    monkeypatch.chdir(tmp_path)  # examples may write files; keep them out of the repo
    runpy.run_path(str(path), run_name="__main__")


@pytest.mark.skipif(not (ROOT / "examples").is_dir(), reason="no examples/ in this copy")
def test_there_are_examples():
    # Guard against the glob silently finding nothing (then the test above would not run).
    assert EXAMPLES, "no examples/plot_*.py found"
