"""A finished run started again changes nothing: no update, no checkpoint rewritten, exit 0.

fairseq-train checks --max-update (and --stop-time-hours) only after an update, so a run whose
budget ended mid-epoch, or at the end of an epoch before its last, used to train one more
update on every rerun and overwrite checkpoint_best.pt / checkpoint_last.pt. Tried through
scripts/finetune.py, plain fairseq-train with the plugin's recipe, and the comparison (a run
whose result file is missing is trained again, then scored). Each case starts two or more
trainers: the default suite runs a budget in updates that ends mid-epoch, through finetune.py
and through fairseq-train; the other cases are marked slow."""
import hashlib
import json
import sys

import pytest

from conftest import REPO
from test_restart import fairseq_train_arguments, run_to_end, updates_of

UPDATES_PER_EPOCH = 10  # 160 rows, batch 16


def finetune_command(data, pretrained, save_dir, *budget):
    return [sys.executable, str(REPO / "scripts" / "finetune.py"), "RTE", str(data), str(pretrained), str(save_dir),
            "--device", "cpu", "--seed", "2", "--lr", "3e-4", "--log-format", "simple", *budget]


def fairseq_train_command(data, pretrained, save_dir, *budget):
    """The plain fairseq-train command of the plugin's recipe (what finetune.py runs), with
    `budget` overriding the recipe's flags."""
    recipe = fairseq_train_arguments(finetune_command(data, pretrained, save_dir, "--epochs", "1"))
    return [sys.executable, "-m", "fairseq_cli.train", *recipe, *budget]


def scores_of(result):
    record = json.loads(result.read_text())
    return record["metrics"], record["predictions"]


def snapshot(save_dir):
    """Every file of the save dir: its modification time and a digest of its bytes."""
    return {path.name: (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
            for path in sorted(save_dir.iterdir())}


def assert_rerun_changes_nothing(command, save_dir, updates):
    assert updates_of(save_dir / "checkpoint_last.pt") == updates
    before = snapshot(save_dir)
    log = run_to_end(command)
    assert updates_of(save_dir / "checkpoint_last.pt") == updates
    assert snapshot(save_dir) == before, "the rerun of a finished run rewrote its save dir"
    assert "nothing left to train" in log


@pytest.mark.parametrize("budget, updates", [
    pytest.param(["--epochs", "1", "--max-update", "5"], 5, id="max-update-mid-epoch"),
    pytest.param(["--epochs", "2", "--max-update", str(UPDATES_PER_EPOCH)], UPDATES_PER_EPOCH,
                 id="max-update-at-an-epoch-end-not-the-last", marks=pytest.mark.slow),
    pytest.param(["--epochs", "1"], UPDATES_PER_EPOCH, id="max-epoch", marks=pytest.mark.slow),
])
def test_finetune_rerun_of_a_finished_run_changes_nothing(rte_bin, tiny_pretrained, tmp_path, budget, updates):
    command = finetune_command(rte_bin, tiny_pretrained, tmp_path, *budget)
    run_to_end(command)
    assert_rerun_changes_nothing(command, tmp_path, updates)


@pytest.mark.parametrize("budget, updates", [
    # a task file's total_updates: no epoch limit
    pytest.param(["--max-epoch", "0", "--max-update", "5"], 5, id="max-update-without-epoch-limit"),
    # stops after its first update
    pytest.param(["--stop-time-hours", "1e-9"], 1, id="stop-time-hours", marks=pytest.mark.slow),
])
def test_fairseq_train_rerun_of_a_finished_run_changes_nothing(rte_bin, tiny_pretrained, tmp_path, budget, updates):
    command = fairseq_train_command(rte_bin, tiny_pretrained, tmp_path, *budget)
    assert "--user-dir" in command
    run_to_end(command)
    assert_rerun_changes_nothing(command, tmp_path, updates)


@pytest.mark.slow
def test_comparison_scores_a_finished_run_without_training_it_again(rte_bin, tiny_pretrained, tmp_path):
    """A comparison killed after training a run but before writing its result file: the rerun
    scores the same model."""
    from fairseq_hire.compare.runs import Comparison, Runner

    comparison = Comparison("RTE", rte_bin, tiny_pretrained, tmp_path / "compare",
                            ("--epochs", "1", "--max-update", "5", "--lr", "3e-4"), device="cpu")
    runner = Runner(comparison, keep_checkpoints=True, log=lambda text: None)
    first = runner.run("stock", 1)
    assert first.status == "done", first.message
    result = comparison.result_path("stock", 1)
    scores = scores_of(result)
    result.unlink()
    save_dir = comparison.work_dir / "stock-seed1"
    checkpoints = {name: state for name, state in snapshot(save_dir).items() if name.startswith("checkpoint")}
    assert updates_of(save_dir / "checkpoint_last.pt") == 5

    again = runner.run("stock", 1)
    assert again.status == "done", again.message
    assert updates_of(save_dir / "checkpoint_last.pt") == 5
    assert {name: state for name, state in snapshot(save_dir).items() if name.startswith("checkpoint")} == checkpoints
    assert scores_of(result) == scores
