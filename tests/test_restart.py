"""Restart safety: a fine-tuning run killed with SIGKILL and started again with the same
command resumes from its last checkpoint, not from the pretrained model, and ends exactly
where an uninterrupted run ends."""
import os
import signal
import subprocess
import sys

from conftest import REPO
from fairseq_hire.checkpoint_io import safe_torch_load

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


def test_killed_run_resumes_and_matches_an_uninterrupted_run(rte_bin, tiny_pretrained, tmp_path):
    reference_dir, restarted_dir = tmp_path / "reference", tmp_path / "restarted"
    run_to_end(finetune_command(rte_bin, tiny_pretrained, reference_dir))
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

    for name in ("checkpoint_last.pt", "checkpoint_best.pt"):
        reference = safe_torch_load(reference_dir / name)["model"]
        restarted = safe_torch_load(restarted_dir / name)["model"]
        assert reference.keys() == restarted.keys()
        worst = max((reference[k].float() - restarted[k].float()).abs().max().item() for k in reference)
        assert worst <= 1e-6, f"{name}: the resumed run differs from the uninterrupted one by {worst}"
