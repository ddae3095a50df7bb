"""fairseq-train's --patience in a plugin run: a run that stopped early, started again, changes
nothing, and a killed run resumes with its count of validations without improvement, so it stops
where an uninterrupted run stops.

fairseq keeps that count in attributes of ``fairseq_cli.train.should_stop_early``, which no
checkpoint stores: before the plugin's checkpoints carried it, the rerun of a run stopped early
trained patience + 1 more epochs (20 updates, then 40) and rewrote its checkpoints. The learning
rate is 1e-30, so no validation improves on the first and a run with --patience P stops after
P + 1 epochs."""
import types

import pytest

from fairseq_hire.checkpoints import early_stopping
from test_finished_run import assert_rerun_changes_nothing, fairseq_train_command
from test_restart import run_and_kill, run_to_end, updates_of

UPDATES_PER_EPOCH = 10  # 160 rows, batch 16


def patience_command(data, pretrained, save_dir, patience):
    return fairseq_train_command(data, pretrained, save_dir, "--max-epoch", "8", "--max-update", "80",
                                 "--total-num-update", "80", "--lr", "1e-30", "--patience", str(patience))


def test_rerun_of_a_run_stopped_early_changes_nothing(rte_bin, tiny_pretrained, tmp_path):
    command = patience_command(rte_bin, tiny_pretrained, tmp_path, patience=1)
    log = run_to_end(command)
    assert "early stop since valid performance hasn't improved for last 1 runs" in log
    assert_rerun_changes_nothing(command, tmp_path, 2 * UPDATES_PER_EPOCH)


@pytest.mark.slow
def test_killed_run_keeps_its_patience_count(rte_bin, tiny_pretrained, tmp_path):
    uninterrupted, killed = tmp_path / "uninterrupted", tmp_path / "killed"
    run_to_end(patience_command(rte_bin, tiny_pretrained, uninterrupted, patience=2))
    assert updates_of(uninterrupted / "checkpoint_last.pt") == 3 * UPDATES_PER_EPOCH

    command = patience_command(rte_bin, tiny_pretrained, killed, patience=2)
    run_and_kill(command, after_updates=2 * UPDATES_PER_EPOCH)  # one validation without improvement
    log = run_to_end(command)
    assert "early stop since valid performance hasn't improved for last 2 runs" in log
    assert updates_of(killed / "checkpoint_last.pt") == 3 * UPDATES_PER_EPOCH


def checkpoint_cfg(patience=2, reset_optimizer=False, reset_meters=False):
    return types.SimpleNamespace(patience=patience, reset_optimizer=reset_optimizer, reset_meters=reset_meters)


def trainer_at(updates):
    return types.SimpleNamespace(get_num_updates=lambda: updates)


@pytest.fixture
def fairseq_counters():
    """fairseq's counters, as a fresh process has them (none), put back as they were after the test."""
    owner = early_stopping.counters()
    saved = {name: getattr(owner, name) for name in ("best", "num_runs") if hasattr(owner, name)}
    for name in saved:
        delattr(owner, name)
    yield owner
    for name in ("best", "num_runs"):
        if hasattr(owner, name):
            delattr(owner, name)
    for name, value in saved.items():
        setattr(owner, name, value)


RECORD = {"best": 0.5, "num_runs": 2, "num_updates": 20}


@pytest.mark.unit
def test_a_run_that_stopped_early_is_restored_as_stopped(fairseq_counters):
    reason = early_stopping.restore(checkpoint_cfg(), trainer_at(20), {early_stopping.RECORD: RECORD})
    assert reason == "2 validations without improvement (--patience 2)"
    assert (fairseq_counters.best, fairseq_counters.num_runs) == (0.5, 2)


@pytest.mark.unit
@pytest.mark.parametrize("cfg, updates, extra_state", [
    # --finetune-from-model's first load: fairseq resets the optimizer, so no update is restored
    pytest.param(checkpoint_cfg(), 0, {early_stopping.RECORD: RECORD}, id="finetune-from-model"),
    pytest.param(checkpoint_cfg(reset_optimizer=True), 20, {early_stopping.RECORD: RECORD}, id="reset-optimizer"),
    pytest.param(checkpoint_cfg(reset_meters=True), 20, {early_stopping.RECORD: RECORD}, id="reset-meters"),
    pytest.param(checkpoint_cfg(patience=-1), 20, {early_stopping.RECORD: RECORD}, id="no-patience"),
    pytest.param(checkpoint_cfg(), 20, {}, id="checkpoint-without-counters"),
    pytest.param(checkpoint_cfg(), 20, {early_stopping.RECORD: {**RECORD, "num_runs": "2"}}, id="malformed"),
    pytest.param(checkpoint_cfg(), 20, {early_stopping.RECORD: {**RECORD, "best": None}}, id="malformed-best"),
])
def test_counters_are_restored_only_from_the_runs_own_state(fairseq_counters, cfg, updates, extra_state):
    assert early_stopping.restore(cfg, trainer_at(updates), extra_state) is None
    assert not hasattr(fairseq_counters, "num_runs")


@pytest.mark.unit
def test_a_run_with_patience_left_resumes_counting(fairseq_counters):
    record = {**RECORD, "num_runs": 1}
    assert early_stopping.restore(checkpoint_cfg(), trainer_at(20), {early_stopping.RECORD: record}) is None
    assert fairseq_counters.num_runs == 1
