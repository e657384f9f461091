"""The code a reader copies from the documentation's landing page runs as printed."""

import re
from pathlib import Path

import pytest

INDEX = Path(__file__).resolve().parents[1] / "docs" / "index.rst"


@pytest.mark.skipif(not INDEX.is_file(), reason="no docs/ in this copy")
def test_landing_page_quick_start_runs_and_is_short():
    text = INDEX.read_text(encoding="utf-8")
    block = re.search(r"Quick start\n-+\n.*?\.\. code-block:: python\n\n(.*?)\n\n(?=\S)", text,
                      flags=re.S)
    assert block, "docs/index.rst has no quick-start code block"
    code = "\n".join(line[3:] for line in block.group(1).splitlines())
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    namespace = {}
    exec(compile(code, str(INDEX), "exec"), namespace)  # noqa: S102 - our own docs
    assert namespace["influence"].task_influence_.shape == (8, 8)
    assert namespace["influence"].task_influence_se_.shape == (8, 8)
    # Clean synthetic data: the guard confirms no removal, as the comment on the page says.
    assert namespace["selector"].removed_.size == 0
