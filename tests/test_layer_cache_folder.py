"""The --layer-cache folder, which decides where a frozen encoder's layer outputs are written:
the folder given to finetune.py or the comparison is refused in one line before fairseq-train
starts when it cannot be made (a file in the way, a folder not writable, a link to nothing), and
accepted when it exists read-only (a complete cache is only read); the folder a frozen checkpoint
records is never written when the checkpoint is loaded rather than trained. What the cache holds:
tests/test_layer_cache.py."""
import os
from pathlib import Path

import pytest
import torch

from fairseq_hire import RobertaHireModel
from fairseq_hire.compare.__main__ import main as compare_main
from fairseq_hire.workflow import finetune
from fairseq_setup import build_trainer, finetune_args, save

pytestmark = pytest.mark.unit
HEAD = "sentence_classification_head"


@pytest.mark.parametrize("task", ["sentence_prediction_hire", "sentence_prediction"])
def test_a_loaded_checkpoint_never_writes_the_layer_cache_its_configuration_names(rte_bin, tmp_path, task):
    """A checkpoint trained with --freeze-encoder --layer-cache DIR records DIR. Loaded through
    the hub (or fairseq-validate), a forward on rows of a split the task loaded built a cache
    there: the checkpoint's configuration decided where files were written (a folder of the
    machine that trained it: absent, read-only or someone else's here). A loaded checkpoint runs
    its encoder, as the scripts' hub always did. Also under fairseq's own sentence_prediction
    task (docs/DISTRIBUTED.md trains roberta_hire so), whose build_model is fairseq's."""
    recorded = tmp_path / "recorded-cache"
    args = finetune_args(rte_bin, extra=["--task", task, "--freeze-encoder", "--layer-cache", str(recorded)])
    save(build_trainer(args), tmp_path / "model" / "checkpoint_best.pt", {"epoch": 1})
    assert not recorded.exists()  # training made no cache: no forward ran
    hub = RobertaHireModel.from_pretrained(str(tmp_path / "model"), "checkpoint_best.pt",
                                           data_name_or_path=str(rte_bin))
    assert hub.cfg.task._name == task
    assert hub.model.args.layer_cache == str(recorded) and hub.model.frozen_encoder
    hub.task.load_dataset("valid")  # a hub user scoring the binarised dev split
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


@pytest.fixture
def trainings(monkeypatch):
    """fairseq-train replaced by a stand-in that records its command."""
    started = []
    monkeypatch.setattr(finetune.subprocess, "call", lambda command, env: started.append(command) or 0)
    return started


def refused_in_one_line(capsys, prefix):
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(prefix) and "--layer-cache" in error
    return error


def test_a_layer_cache_folder_with_a_file_in_the_way_is_refused_before_fairseq_starts(
        rte_bin, tiny_pretrained, tmp_path, trainings, capsys):
    """fairseq-train started, loaded the model and stopped at its first batch with a traceback
    (NotADirectoryError), leaving the save dir with a crash.pt of the whole model."""
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("")
    cache, save_dir, out = in_the_way / "cache", tmp_path / "save", tmp_path / "compare"
    flags = ["--freeze-encoder", "--layer-cache", str(cache), "--device", "cpu"]
    assert finetune.main(["RTE", str(rte_bin), str(tiny_pretrained), str(save_dir), *flags]) == 2
    assert f"{in_the_way} is not a folder" in refused_in_one_line(capsys, "finetune: error: --layer-cache")
    assert compare_main(["RTE", str(rte_bin), str(tiny_pretrained), str(out), "--heads", "stock", "--seeds", "1",
                         *flags]) == 2
    refused_in_one_line(capsys, "compare: error: --layer-cache")
    assert trainings == [] and not save_dir.exists() and not out.exists()


@pytest.fixture
def unwritable(monkeypatch):
    """Folders made with mode 0o555 are not writable, also for root (who may write anywhere)."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: (real_access(path, mode) and not (
        mode & os.W_OK and Path(path).is_dir() and Path(path).stat().st_mode & 0o777 == 0o555)))


def test_a_layer_cache_folder_that_cannot_be_made_is_refused_before_fairseq_starts(
        rte_bin, tiny_pretrained, tmp_path, trainings, unwritable, capsys):
    locked = tmp_path / "read-only"
    locked.mkdir(mode=0o555)
    save_dir = tmp_path / "save"
    command = ["RTE", str(rte_bin), str(tiny_pretrained), str(save_dir), "--freeze-encoder", "--layer-cache",
               str(locked / "cache"), "--device", "cpu"]
    assert finetune.main(command) == 2
    assert f"{locked} is not writable" in refused_in_one_line(capsys, "finetune: error: --layer-cache")
    assert trainings == [] and not save_dir.exists()


def test_an_existing_read_only_cache_folder_is_accepted(rte_bin, tiny_pretrained, tmp_path, trainings, unwritable):
    """A complete cache is only read: a folder this user cannot write to is no reason to refuse."""
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o555)
    command = ["RTE", str(rte_bin), str(tiny_pretrained), str(tmp_path / "save"), "--freeze-encoder",
               "--layer-cache", str(cache), "--device", "cpu"]
    assert finetune.main(command) == 0 and len(trainings) == 1


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


@pytest.mark.parametrize("in_the_way", ["file", "dangling link"])
def test_plain_fairseq_train_refuses_a_layer_cache_folder_in_one_line_before_any_update(
        rte_bin, tiny_pretrained, tmp_path, in_the_way):
    """fairseq-train itself (no finetune.py to check first): the cache checks its folder as it
    opens it, as the epoch begins, and the run ends naming the folder, not with NotADirectoryError
    deep in the cache; no update is made, no checkpoint written. Opened at the first batch, the
    error was raised while fairseq's batch thread ran, and the process could end in a C++ abort
    ("terminate called without an active exception") after it."""
    import subprocess

    from conftest import REPO
    from test_finished_run import fairseq_train_command

    cache = tmp_path / "cache"
    if in_the_way == "file":
        cache.write_text("in the way")
    else:
        cache.symlink_to(tmp_path / "nowhere")
    save_dir = tmp_path / "save"
    command = fairseq_train_command(rte_bin, tiny_pretrained, save_dir, "--freeze-encoder", "--layer-cache", str(cache))
    # with the traceback, which names where the error was raised (fairseq-train prints the line alone)
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "FAIRSEQ_HIRE_TRACEBACK": "1"})
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last == (f"fairseq_hire.models.layer_cache.LayerCacheError: --layer-cache {cache}: {cache} is not a folder; "
                    "expected a folder for the cache or a path where one can be made"), result.stderr[-2000:]
    assert "begin_epoch" in result.stderr and "in forward" not in result.stderr, result.stderr[-2000:]
    assert not list(save_dir.glob("checkpoint*.pt"))


@pytest.mark.parametrize("freeze", [(), ("--freeze-encoder",)], ids=["alone", "frozen"])
def test_an_empty_layer_cache_name_is_refused_not_dropped(rte_bin, tiny_pretrained, tmp_path, capsys, freeze):
    """--layer-cache '' was read as no cache (every check was a truth test): a run asked for a
    cache silently trained without one, and without --freeze-encoder nothing was refused."""
    from fairseq_hire.workflow import finetune

    assert finetune.main(["RTE", str(rte_bin), str(tiny_pretrained), str(tmp_path / "save"), *freeze,
                          "--layer-cache", "", "--device", "cpu", "--dry-run"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == "finetune: error: --layer-cache '': expected a folder for the cache (or no --layer-cache)"
