"""Importing the plugin registers components and changes nothing else (issue 27, item 1): no
name of fairseq or torch is reassigned, torch's safe globals are left alone, and a fairseq run
that uses none of the plugin's components behaves as stock fairseq, also in a process where a
plugin run was set up (its checkpoint hooks act for the plugin's trainers only)."""
import argparse
import os
import subprocess
import sys

import pytest
import torch
from fairseq import checkpoint_utils, options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.trainer import Trainer

from conftest import GPT2_BPE, REPO
from fairseq_hire.checkpoints import loading, saving
from fairseq_hire.checkpoints.errors import CorruptCheckpointError, UnsafeConfigError
from fairseq_setup import build_trainer, finetune_args, save, write_task_dicts

SNAPSHOT = """
import argparse, importlib, sys
import torch
for name in ("fairseq", "fairseq.checkpoint_utils", "fairseq.data.data_utils", "fairseq.distributed.utils",
             "fairseq.models.distributed_fairseq_model", "fairseq.models.roberta", "fairseq.tasks.sentence_prediction",
             "fairseq.trainer", "fairseq.hub_utils", "fairseq.file_io", "fairseq.options", "fairseq_cli.train",
             "fairseq_cli.hydra_train"):
    importlib.import_module(name)

def names():
    modules = {n: m for n, m in list(sys.modules.items()) if m is not None
               and n.split(".")[0] in ("fairseq", "fairseq_cli", "torch")}
    found = {}
    for n, m in modules.items():
        for k, v in list(vars(m).items()):
            found[f"{n}.{k}"] = v
            if isinstance(v, type) and v.__module__ == n:
                found.update((f"{n}.{k}.{a}", w) for a, w in list(vars(v).items()))
    return found

before = names()
safe = list(torch.serialization.get_safe_globals())
if sys.argv[1] == "import":
    import fairseq_hire
else:
    from fairseq.utils import import_user_module
    import_user_module(argparse.Namespace(user_dir=sys.argv[2]))
after = names()
changed = sorted(k for k, v in before.items() if k in after and after[k] is not v)
import fairseq.tasks
print("task registered:", "sentence_prediction_hire" in fairseq.tasks.TASK_REGISTRY)
print("changed:", changed)
print("safe globals added:", [str(g) for g in torch.serialization.get_safe_globals() if g not in safe])
print("excepthook changed:", sys.excepthook is not sys.__excepthook__)
"""


@pytest.mark.parametrize("how", ["import", "user-dir"])
def test_activating_the_plugin_reassigns_no_name_and_extends_no_list(how):
    result = subprocess.run([sys.executable, "-c", SNAPSHOT, how, str(REPO / "fairseq_hire")],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-4:] == ["task registered: True", "changed: []", "safe globals added: []",
                                               "excepthook changed: False"]


@pytest.fixture
def plugin_run_set_up(tmp_path):
    """A trainer of the plugin's task built in this process: its checkpoint hooks are installed."""
    trainer = build_trainer(finetune_args(write_task_dicts(tmp_path / "plugin-bin")))
    assert saving.plugin_run(trainer)
    return trainer


@pytest.fixture
def language_model_checkpoint(tmp_path, monkeypatch):
    """A transformer_lm checkpoint written by fairseq itself (args Namespace, so loading it needs
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 under torch >= 2.6, as fairseq main's own loading does)."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    data = tmp_path / "lm-data"
    data.mkdir()
    (data / "dict.txt").write_text((GPT2_BPE / "dict.txt").read_text())
    args = options.parse_args_and_arch(options.get_training_parser(), [
        str(data), "--task", "language_modeling", "--arch", "transformer_lm", "--decoder-layers", "1",
        "--decoder-embed-dim", "8", "--decoder-ffn-embed-dim", "8", "--decoder-attention-heads", "2",
        "--optimizer", "adam", "--lr", "1e-4", "--max-tokens", "64", "--cpu"])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    trainer = Trainer(cfg, task, task.build_model(cfg.model), task.build_criterion(cfg.criterion))
    assert not saving.plugin_run(trainer)
    path = tmp_path / "lm" / "checkpoint_last.pt"
    path.parent.mkdir()
    trainer.consolidate_optimizer()
    trainer.save_checkpoint(str(path), {})
    return path


def test_fairseq_loads_a_checkpoint_of_another_model_as_stock_fairseq(plugin_run_set_up, language_model_checkpoint):
    """fairseq's checkpoint_utils outside a plugin run's load is fairseq's: a language model's
    checkpoint loads (the plugin's own loader refuses it, as it refuses anything but RoBERTa)."""
    state = checkpoint_utils.load_checkpoint_to_cpu(str(language_model_checkpoint))
    assert state["cfg"].model._name == "transformer_lm"
    with pytest.raises(UnsafeConfigError, match="RoBERTa architecture"):
        loading.load_checkpoint_to_cpu(str(language_model_checkpoint))


def test_a_run_of_other_components_resumes_as_stock_fairseq(plugin_run_set_up, tmp_path):
    """fairseq's own start-up for a trainer of fairseq's sentence_prediction task and criterion:
    fairseq's own error for an invalid configuration, and nothing of the plugin's resume (no
    temporary file of a dead writer removed, no unreadable checkpoint_last.pt set aside)."""
    args = finetune_args(write_task_dicts(tmp_path / "stock-bin"), arch="roberta_base",
                         extra=["--task", "sentence_prediction", "--criterion", "sentence_prediction"])
    trainer = build_trainer(args)
    assert not saving.plugin_run(trainer)
    save_dir = tmp_path / "save"
    save_dir.mkdir()
    (save_dir / "checkpoint_last.pt").write_bytes(b"PK\x03\x04 truncated")
    dead = 2 ** 22 + 1  # above Linux's largest pid: never a live writer
    stale = save_dir / f".checkpoint_last.pt.0123abcd.tmp-{dead}"
    stale.write_bytes(b"half a checkpoint")
    cfg = trainer.cfg.checkpoint
    cfg.save_dir, cfg.finetune_from_model, cfg.reset_optimizer = str(save_dir), str(tmp_path / "x.pt"), True
    with pytest.raises(ValueError, match="--finetune-from-model can not be set together with either --reset-optimizer"):
        checkpoint_utils.load_checkpoint(cfg, trainer)
    assert sorted(p.name for p in save_dir.iterdir()) == sorted(["checkpoint_last.pt", stale.name])

    # the same save dir, a trainer of the plugin's task: the plugin's resume acts first
    plugin = plugin_run_set_up
    plugin.cfg.checkpoint.save_dir = str(save_dir)
    with pytest.raises(CorruptCheckpointError, match="no other intact checkpoint"):
        checkpoint_utils.load_checkpoint(plugin.cfg.checkpoint, plugin)
    assert not stale.exists()


def test_a_plugin_runs_saving_hooks_leave_other_trainers_to_fairseq(plugin_run_set_up, tmp_path):
    """Within the plugin's hooks a checkpoint is written atomically (no fixed .tmp name); the
    same fairseq function called for another trainer writes as fairseq does."""
    written = []
    real_save = torch.save

    def recording_save(obj, f, *args, **kwargs):
        written.append(getattr(f, "name", f))
        return real_save(obj, f, *args, **kwargs)

    torch.save = recording_save
    try:
        save(plugin_run_set_up, tmp_path / "plugin.pt", {"epoch": 1})
        plugin_run_set_up.save_checkpoint(str(tmp_path / "outside.pt"), {"epoch": 1})
    finally:
        torch.save = real_save
    inside, outside = (os.path.basename(str(name)) for name in written)
    assert inside.startswith(".plugin.pt.") and ".tmp-" in inside  # glue_prep.atomic's temporary file
    assert outside == "outside.pt.tmp"  # fairseq's own torch_persistent_save
    assert (tmp_path / "plugin.pt").is_file() and (tmp_path / "outside.pt").is_file()


def test_user_dir_activation_in_fairseqs_own_way(tmp_path):
    """import_user_module imports the package's tasks/ and models/ itself: every module there
    imports cleanly (no import cycle) and registers what it names."""
    from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY
    from fairseq.tasks import TASK_REGISTRY
    from fairseq.utils import import_user_module

    import_user_module(argparse.Namespace(user_dir=str(REPO / "fairseq_hire")))
    assert TASK_REGISTRY["sentence_prediction_hire"].__module__ == "fairseq_hire.tasks.sentence_prediction_hire"
    assert MODEL_REGISTRY["roberta_hire"].__module__ == "fairseq_hire.models.roberta_hire"
    assert {"roberta_hire", "roberta_hire_base", "roberta_hire_large"} <= set(ARCH_MODEL_REGISTRY)


def test_the_plugins_model_under_fairseqs_own_task_resumes_through_the_safe_loader(tmp_path, monkeypatch):
    """`fairseq-train --user-dir fairseq_hire --arch roberta_hire_base --task sentence_prediction
    --criterion sentence_prediction` (fairseq's RoBERTa GLUE recipe with the plugin's model) loaded
    its checkpoint_last.pt with fairseq's own loader: with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 a
    pickled payload in it ran."""
    import hostile_checkpoints as hostile
    from fairseq_hire.checkpoints.errors import UnsafeCheckpointError

    args = finetune_args(write_task_dicts(tmp_path / "bin"),
                         extra=["--task", "sentence_prediction", "--criterion", "sentence_prediction"])
    trainer = build_trainer(args)
    assert saving.plugin_run(trainer)
    # under a task whose checkpoints the safe loader does not read (RACE's), the run stays fairseq's
    ranking = build_trainer(finetune_args(tmp_path / "bin", num_classes=4,
                                          extra=["--task", "sentence_ranking", "--criterion", "sentence_ranking"]))
    assert not saving.plugin_run(ranking)
    save_dir = tmp_path / "save"
    save(trainer, save_dir / "checkpoint_last.pt", {"epoch": 1})
    marker = tmp_path / "payload-ran"
    state = loading.safe_torch_load(save_dir / "checkpoint_last.pt")
    state["extra_state"]["payload"] = hostile.SystemPayload(marker)
    torch.save(state, save_dir / "checkpoint_last.pt")
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    trainer.cfg.checkpoint.save_dir = str(save_dir)
    with pytest.raises(UnsafeCheckpointError):
        checkpoint_utils.load_checkpoint(trainer.cfg.checkpoint, trainer)
    assert not marker.exists()
