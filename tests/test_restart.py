"""Restart safety: a fine-tuning run killed with SIGKILL and started again with the same
command resumes from its last checkpoint, not from the pretrained model, and ends exactly
where an uninterrupted run ends; also when the kill comes while a checkpoint file is being
written, and when an unreadable checkpoint_last.pt (fairseq's own in-place copy, killed
half-way) is found at start-up."""
import glob
import os
import shlex
import signal
import subprocess
import sys

import pytest

from conftest import REPO
from fairseq_hire.checkpoints.errors import CorruptCheckpointError
from fairseq_hire.checkpoints.loading import load_state, safe_torch_load

KILL_AFTER_UPDATES = 12  # mid epoch 2 of 3 (160 rows / batch 16 = 10 updates per epoch)


def finetune_command(data, pretrained, save_dir):
    return [sys.executable, str(REPO / "scripts" / "finetune.py"), "RTE", str(data), str(pretrained),
            str(save_dir), "--epochs", "3", "--device", "cpu", "--seed", "3",
            "--save-interval-updates", "6", "--log-format", "simple", "--log-interval", "1",
            "--lr", "3e-4"]


def run_to_end(command):
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def run_and_kill(command, after_updates):
    """Start the run; SIGKILL its whole process group once a checkpoint at or beyond
    `after_updates` is on disk."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               cwd=REPO, start_new_session=True)
    log = []
    for line in process.stdout:
        log.append(line)
        if "Saved checkpoint" in line and f"@ {after_updates} updates" in line:
            os.killpg(process.pid, signal.SIGKILL)
            break
    process.wait()
    assert process.returncode != 0, "the run ended before it could be killed"
    return "".join(log)


def updates_of(checkpoint):
    return safe_torch_load(checkpoint)["optimizer_history"][-1]["num_updates"]


@pytest.fixture(scope="module")
def reference_dir(rte_bin, tiny_pretrained, tmp_path_factory):
    """An uninterrupted run."""
    reference_dir = tmp_path_factory.mktemp("reference")
    run_to_end(finetune_command(rte_bin, tiny_pretrained, reference_dir))
    return reference_dir


def assert_same_parameters(reference_dir, restarted_dir):
    for name in ("checkpoint_last.pt", "checkpoint_best.pt"):
        reference = safe_torch_load(reference_dir / name)["model"]
        restarted = safe_torch_load(restarted_dir / name)["model"]
        assert reference.keys() == restarted.keys()
        worst = max((reference[k].float() - restarted[k].float()).abs().max().item() for k in reference)
        assert worst <= 1e-6, f"{name}: the resumed run differs from the uninterrupted one by {worst}"


def fairseq_train_arguments(command):
    """The fairseq-train arguments scripts/finetune.py would run."""
    printed = subprocess.run([*command, "--dry-run"], capture_output=True, text=True, cwd=REPO, check=True)
    words = shlex.split(printed.stdout.strip().splitlines()[-1])
    return words[words.index("fairseq_cli.train") + 1:]


def run_killed_while_writing(when, arguments):
    result = subprocess.run([sys.executable, str(REPO / "tests" / "kill_during_save.py"), when, "--", *arguments],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == -signal.SIGKILL, (when, result.stdout[-2000:] + result.stderr[-2000:])
    return result.stdout + result.stderr


def test_killed_run_resumes_and_matches_an_uninterrupted_run(rte_bin, tiny_pretrained, tmp_path, reference_dir):
    restarted_dir = tmp_path / "restarted"
    total_updates = updates_of(reference_dir / "checkpoint_last.pt")
    assert total_updates == 30

    command = finetune_command(rte_bin, tiny_pretrained, restarted_dir)
    killed_log = run_and_kill(command, KILL_AFTER_UPDATES)
    assert "done training" not in killed_log
    assert updates_of(restarted_dir / "checkpoint_last.pt") == KILL_AFTER_UPDATES

    log = run_to_end(command)
    assert f"Loaded checkpoint {restarted_dir / 'checkpoint_last.pt'} (epoch 2 @ {KILL_AFTER_UPDATES} updates)" in log
    assert f"Loaded checkpoint {tiny_pretrained}" not in log
    assert updates_of(restarted_dir / "checkpoint_last.pt") == total_updates
    assert_same_parameters(reference_dir, restarted_dir)


def test_kills_while_checkpoints_are_written_never_strand_the_run(rte_bin, tiny_pretrained, tmp_path, reference_dir):
    """Killed half-way through writing a checkpoint (torch.save of a save's first file, or its
    copy to checkpoint_last/best), at three different saves: every checkpoint file on disk is
    whole after each kill, each rerun resumes, and the end equals an uninterrupted run."""
    save_dir = tmp_path / "killed"
    command = finetune_command(rte_bin, tiny_pretrained, save_dir)
    arguments = fairseq_train_arguments(command)
    for when in ("copy:2", "save:2", "copy:3"):
        run_killed_while_writing(when, arguments)
        checkpoints = glob.glob(str(save_dir / "checkpoint*.pt"))
        assert checkpoints
        for path in checkpoints:
            load_state(path)  # whole: the kill hit a temporary file, never a checkpoint's name
    log = run_to_end(command)
    assert f"Loaded checkpoint {save_dir / 'checkpoint_last.pt'}" in log
    assert_same_parameters(reference_dir, save_dir)
    assert not [p for p in os.listdir(save_dir) if ".tmp-" in p]  # the killed writers' files are gone


def test_unreadable_last_checkpoint_falls_back_to_the_newest_intact_one(rte_bin, tiny_pretrained, tmp_path,
                                                                        reference_dir):
    """fairseq's own copy, killed half-way, leaves checkpoint_last.pt truncated (reproduced
    here); the rerun keeps it aside, resumes from the newest whole checkpoint and still ends
    where an uninterrupted run ends."""
    save_dir = tmp_path / "truncated"
    command = finetune_command(rte_bin, tiny_pretrained, save_dir)
    run_killed_while_writing("fairseq-copy:3", fairseq_train_arguments(command))
    with pytest.raises(CorruptCheckpointError, match="truncated"):
        load_state(save_dir / "checkpoint_last.pt")
    log = run_to_end(command)
    assert "Resuming from" in log and "instead" in log
    assert f"Loaded checkpoint {tiny_pretrained}" not in log
    assert glob.glob(str(save_dir / "checkpoint_last.pt.corrupt-*"))
    assert_same_parameters(reference_dir, save_dir)


def test_no_intact_checkpoint_left_stops_with_a_clear_error(rte_bin, tiny_pretrained, tmp_path):
    save_dir = tmp_path / "only-garbage"
    save_dir.mkdir()
    (save_dir / "checkpoint_last.pt").write_bytes(b"PK\x03\x04 not the rest of it")
    result = subprocess.run(finetune_command(rte_bin, tiny_pretrained, save_dir), capture_output=True, text=True,
                            cwd=REPO)
    assert result.returncode != 0
    assert "cannot resume" in result.stderr and "Delete" in result.stderr
