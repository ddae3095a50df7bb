"""Restart safety under fairseq-hydra-train with the plugin's YAML recipes: a run killed with
SIGKILL and started again with the same command resumes from its checkpoint_last.pt through
the plugin's safe loader (pickle and configuration checked, as for fairseq-train) and ends
exactly where an uninterrupted run ends; a checkpoint_last.pt carrying a payload in its pickle
or its configuration is refused on resume and its payload never runs, even with
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1."""
import os
import subprocess
import sys

import pytest

import hostile_checkpoints as hostile
from conftest import REPO
from fairseq_hire.checkpoints.loading import safe_torch_load
from test_restart import KILL_AFTER_UPDATES, assert_same_parameters, run_and_kill, updates_of

RECIPES = REPO / "fairseq_hire" / "config" / "finetuning" / "base"
TOTAL_UPDATES = 30  # 3 epochs of 160 rows at batch 16, as tests/test_restart.py

pytestmark = pytest.mark.slow


def hydra_command(data, pretrained, save_dir):
    """The documented RTE recipe on CPU with the tiny model: the same seed, learning rate,
    epochs and save interval as tests/test_restart.py's fairseq-train runs."""
    return [
        sys.executable, "-m", "fairseq_cli.hydra_train", "--config-dir", str(RECIPES), "--config-name", "rte",
        f"task.data={data}", f"checkpoint.finetune_from_model={pretrained}", f"checkpoint.save_dir={save_dir}",
        "common.fp16=false", "common.cpu=true", f"common.user_dir={REPO / 'fairseq_hire'}", "common.seed=3",
        "common.log_format=simple", "common.log_interval=1", f"hydra.run.dir={save_dir}",
        "optimization.max_epoch=3", "optimization.lr=[3e-4]", "checkpoint.save_interval_updates=6",
        "+model.encoder_layers=2", "+model.encoder_embed_dim=32", "+model.encoder_ffn_embed_dim=64",
        "+model.encoder_attention_heads=2",
    ]


def run(command, env=None):
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(scope="module")
def reference_dir(rte_bin, tiny_pretrained, tmp_path_factory):
    """An uninterrupted hydra run."""
    save_dir = tmp_path_factory.mktemp("hydra-reference")
    returncode, log = run(hydra_command(rte_bin, tiny_pretrained, save_dir))
    assert returncode == 0, log[-3000:]
    assert updates_of(save_dir / "checkpoint_last.pt") == TOTAL_UPDATES
    return save_dir


@pytest.fixture(scope="module")
def killed_dir(rte_bin, tiny_pretrained, tmp_path_factory):
    """A hydra run killed (its whole process group, SIGKILL) once its checkpoint at
    KILL_AFTER_UPDATES updates is on disk."""
    save_dir = tmp_path_factory.mktemp("hydra-killed")
    log = run_and_kill(hydra_command(rte_bin, tiny_pretrained, save_dir), KILL_AFTER_UPDATES)
    assert "done training" not in log
    assert updates_of(save_dir / "checkpoint_last.pt") == KILL_AFTER_UPDATES
    return save_dir


def copy_of(killed_dir, tmp_path):
    save_dir = tmp_path / "save"
    save_dir.mkdir()
    for path in killed_dir.glob("checkpoint*.pt"):
        (save_dir / path.name).write_bytes(path.read_bytes())
    return save_dir


def test_killed_hydra_run_resumes_and_matches_an_uninterrupted_run(rte_bin, tiny_pretrained, tmp_path,
                                                                   reference_dir, killed_dir):
    save_dir = copy_of(killed_dir, tmp_path)
    returncode, log = run(hydra_command(rte_bin, tiny_pretrained, save_dir))
    assert returncode == 0, log[-3000:]
    assert f"Loaded checkpoint {save_dir / 'checkpoint_last.pt'} (epoch 2 @ {KILL_AFTER_UPDATES} updates)" in log
    assert f"Loaded checkpoint {tiny_pretrained}" not in log
    assert updates_of(save_dir / "checkpoint_last.pt") == TOTAL_UPDATES
    assert_same_parameters(reference_dir, save_dir)


@pytest.mark.parametrize("variant", ["inside-extra-state", "tensor-rebuild", "foreign-user-dir",
                                     "string-where-an-integer-belongs"])
def test_hydra_resume_refuses_a_hostile_checkpoint_last(rte_bin, tiny_pretrained, tmp_path, killed_dir, variant):
    """The resumed checkpoint goes through the plugin's loader, pickle and configuration (with
    the variable that used to switch weights_only off set): refused naming the file, the
    payload never runs, nothing trains."""
    save_dir = copy_of(killed_dir, tmp_path)
    marker = tmp_path / "payload-ran"
    base = safe_torch_load(save_dir / "checkpoint_last.pt")
    variants = {**hostile.pickle_variants(base, marker),
                **hostile.config_variants(base, rte_bin, marker, tmp_path / "evil_plugin")}
    hostile.save(variants[variant], save_dir / "checkpoint_last.pt", "zip")
    before = {p.name: p.read_bytes() for p in save_dir.glob("checkpoint*")}

    returncode, log = run(hydra_command(rte_bin, tiny_pretrained, save_dir),
                          env={**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    assert returncode != 0, log[-3000:]
    assert f"refusing to load checkpoint {save_dir / 'checkpoint_last.pt'}" in log, log[-3000:]
    assert not marker.exists(), "the payload ran"
    assert {p.name: p.read_bytes() for p in save_dir.glob("checkpoint*")} == before, "the refused run wrote checkpoints"


def test_hydra_checkpoint_config_passes_the_configuration_check(killed_dir):
    """What fairseq-hydra-train saves (its cfg, with hydra's job_logging_cfg) is a legitimate
    checkpoint: the configuration check accepts it, and it names the plugin's architecture."""
    from fairseq_hire.checkpoints.loading import load_state

    state = load_state(killed_dir / "checkpoint_last.pt")
    assert state["args"] is None
    assert state["cfg"]["model"]["_name"] == "roberta_hire_base"
