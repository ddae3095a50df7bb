"""Review of session 34's fixes (helper-24): a frozen checkpoint's recorded --layer-cache folder
when its task is fairseq's own sentence_prediction (docs/DISTRIBUTED.md trains roberta_hire so),
and recipes compared as finetune.py reads them when a recorded recipe is one its parser refuses."""
import json

import pytest
import torch

from fairseq_hire import RobertaHireModel
from fairseq_hire.compare.report import ReportError, check_comparable, load_runs
from fairseq_hire.compare.runs import Comparison, check_recipe
from fairseq_setup import build_trainer, finetune_args, save

pytestmark = pytest.mark.unit
HEAD = "sentence_classification_head"


def test_a_loaded_stock_task_checkpoint_never_writes_the_layer_cache_its_configuration_names(rte_bin, tmp_path):
    """roberta_hire trained frozen on the cache under fairseq's sentence_prediction task records
    the folder too; the hub loads it with that task, whose build_model is fairseq's, so a forward
    on rows of a split the task loaded built a cache in the training machine's folder."""
    recorded = tmp_path / "recorded-cache"
    args = finetune_args(rte_bin, extra=["--task", "sentence_prediction", "--freeze-encoder",
                                         "--layer-cache", str(recorded)])
    save(build_trainer(args), tmp_path / "model" / "checkpoint_best.pt", {"epoch": 1})
    assert not recorded.exists()  # training made no cache: no forward ran
    hub = RobertaHireModel.from_pretrained(str(tmp_path / "model"), "checkpoint_best.pt",
                                           data_name_or_path=str(rte_bin))
    assert hub.cfg.task._name == "sentence_prediction" and hub.model.args.layer_cache == str(recorded)
    hub.task.load_dataset("valid")
    iterator = hub.task.get_batch_iterator(hub.task.dataset("valid"), max_sentences=16)
    batch = next(iter(iterator.next_epoch_itr(shuffle=False)))
    with torch.no_grad():
        logits, _ = hub.model(**batch["net_input"], classification_head_name=HEAD)
        features, extra = hub.model.encoder(batch["net_input"]["src_tokens"], features_only=True,
                                            return_all_hiddens=True)
        expected, _ = hub.model.classification_heads[HEAD](extra["inner_states"], features.transpose(0, 1),
                                                           batch["net_input"]["src_tokens"].eq(1))
    assert not recorded.exists()
    assert torch.equal(logits, expected)


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
