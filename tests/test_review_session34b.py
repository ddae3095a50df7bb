"""Review of session 34's fixes (helper-24): recipes compared as finetune.py reads them when a
recorded recipe is one its parser refuses, and a --layer-cache path that is a link to nothing
(a frozen checkpoint's recorded folder under fairseq's own task: tests/test_review_session34.py)."""
import json

import pytest

from fairseq_hire.compare.report import ReportError, check_comparable, load_runs
from fairseq_hire.compare.runs import Comparison, check_recipe

pytestmark = pytest.mark.unit


def write_run(runs_dir, name, train_flags):
    recipe = {"task": "RTE", "data": "/d", "pretrained": "/m.pt", "train_flags": train_flags, "device": "cpu"}
    (runs_dir / name).write_text(json.dumps({"recipe": recipe, "targets": [0, 1], "seed": 1, "file": name}))


@pytest.mark.parametrize("odd_flags", [["--b", "8"], ["-h"]], ids=["ambiguous-abbreviation", "help"])
def test_a_recorded_recipe_finetune_py_cannot_read_is_another_recipe_not_an_exit(tmp_path, capsys, odd_flags):
    """A run file whose train_flags finetune.py's parser refuses with an exit rather than an
    error (an abbreviation that today matches two options, or --help), written by hand or by
    another version: the report and a comparison adding runs exited (finetune.py's usage, or
    its whole help, and status 0) instead of naming the file whose recipe differs."""
    runs_dir = tmp_path / "out" / "runs"
    runs_dir.mkdir(parents=True)
    write_run(runs_dir, "stock-seed1.json", ["--lr", "1e-3"])
    write_run(runs_dir, "hire-seed1.json", odd_flags)
    with pytest.raises(ReportError, match="hire-seed1.json with .*heads must share one recipe"):
        check_comparable(load_runs(runs_dir))
    comparison = Comparison("RTE", tmp_path, tmp_path / "model.pt", tmp_path / "out", ("--lr", "1e-3"), device="cpu")
    with pytest.raises(ValueError, match="hire-seed1.json was trained with"):
        check_recipe(comparison)
    printed = capsys.readouterr()
    assert "usage:" not in printed.out + printed.err


def test_a_layer_cache_path_that_is_a_dangling_link_is_refused_before_fairseq_starts(
        rte_bin, tiny_pretrained, tmp_path, monkeypatch, capsys):
    """A --layer-cache path that is a symbolic link to nothing (a cache folder deleted, or on an
    unmounted disk) was accepted: it does not exist, and its parent is writable. fairseq-train then
    stopped at its first batch with a traceback (FileExistsError: the link is in the way of the
    folder it makes)."""
    from fairseq_hire.workflow import finetune

    started = []
    monkeypatch.setattr(finetune.subprocess, "call", lambda command, env: started.append(command) or 0)
    link = tmp_path / "cache"
    link.symlink_to(tmp_path / "gone")
    save_dir = tmp_path / "save"
    assert finetune.main(["RTE", str(rte_bin), str(tiny_pretrained), str(save_dir), "--freeze-encoder",
                          "--layer-cache", str(link), "--device", "cpu"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("finetune: error: --layer-cache") and f"{link} is not a folder" in error
    assert started == [] and not save_dir.exists()
