"""A checkpoint the user names must be a file: fairseq reads a folder given to
--finetune-from-model or --restore-file, or a missing --restore-file, as "No existing checkpoint
found" and trains from random weights, exit 0 (finetune.py --mnli-init passes the folder of the
MNLI run on as --finetune-from-model). Refused in plugin runs before any update; finetune.py
refuses its own before fairseq-train starts, and a --finetune-from-model or --restore-file passed
on, which would load another checkpoint than the one it names."""
import subprocess

import pytest

from conftest import REPO
from test_finished_run import fairseq_train_command, finetune_command


def last_line(command) -> str:
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]  # fairseq-train's too: one line
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("flag, name, state", [
    ("--finetune-from-model", "folder", "is a folder"),
    ("--restore-file", "folder", "is a folder"),
    ("--restore-file", "missing.pt", "does not exist"),
])
def test_fairseq_train_refuses_a_named_checkpoint_that_is_no_file(rte_bin, tiny_pretrained, tmp_path, flag, name,
                                                                   state):
    (tmp_path / "folder").mkdir()
    named = tmp_path / name
    command = fairseq_train_command(rte_bin, tiny_pretrained, tmp_path / "save")
    if flag == "--finetune-from-model":
        command[command.index(flag) + 1] = str(named)
    else:
        command += [flag, str(named)]
    line = last_line(command)
    assert line == (f"fairseq_hire.checkpoints.errors.MissingCheckpointError: {flag} {named} {state}; expected a "
                    "checkpoint file (fairseq would train from random weights)"), line
    assert not list((tmp_path / "save").glob("checkpoint*.pt"))


@pytest.mark.parametrize("extra, expected", [
    (("--mnli-init", "FOLDER"), "--mnli-init FOLDER is a folder; expected a checkpoint file"),
    (("--mnli-init", "FOLDER/missing.pt"), "--mnli-init FOLDER/missing.pt does not exist; expected a checkpoint file"),
    (("--finetune-from-model", "PRETRAINED"), "--finetune-from-model: finetune.py loads PRETRAINED, or --mnli-init"),
    (("--restore-file=PRETRAINED",), "--restore-file: finetune.py loads PRETRAINED, or --mnli-init"),
])
def test_finetune_refuses_checkpoints_it_would_not_load_before_starting(rte_bin, tiny_pretrained, tmp_path, extra,
                                                                        expected):
    folder = tmp_path / "mnli"
    folder.mkdir()
    words = [word.replace("FOLDER", str(folder)).replace("PRETRAINED", str(tiny_pretrained)) for word in extra]
    save_dir = tmp_path / "save"
    line = last_line(finetune_command(rte_bin, tiny_pretrained, save_dir, *words))
    assert expected.replace("FOLDER", str(folder)) in line, line
    assert not save_dir.exists()


@pytest.mark.parametrize("sizes, expected", [
    ({"ffn_dim": 32}, "its encoder_ffn_embed_dim is 32, but that of PRETRAINED, which builds this run, is 64"),
    ({"layers": 3}, "its encoder_layers is 3, but that of PRETRAINED, which builds this run, is 2"),
])
def test_finetune_refuses_an_mnli_init_of_another_encoder_before_starting(rte_bin, tiny_pretrained, tmp_path,
                                                                          sizes, expected):
    """finetune.py builds the run from PRETRAINED's options: an --mnli-init checkpoint of another
    encoder was refused only once fairseq-train had started (and, in the comparison, by each run)."""
    from conftest import GPT2_BPE
    from roberta_checkpoints import write_original_roberta_checkpoint

    other = tmp_path / "other" / "model.pt"
    write_original_roberta_checkpoint(other, GPT2_BPE / "dict.txt", **sizes)
    for dry_run in ((), ("--dry-run",)):
        line = last_line(finetune_command(rte_bin, tiny_pretrained, tmp_path / "save", "--mnli-init", str(other),
                                          *dry_run))
        assert line.endswith(f"{other}: {expected.replace('PRETRAINED', str(tiny_pretrained))}; expected a "
                             f"checkpoint fine-tuned from {tiny_pretrained}"), line
        assert not (tmp_path / "save").exists()
