"""A run that prunes its encoder with --encoder-layers-to-keep resumes (checkpoints/fitting.py).

fairseq prunes every checkpoint it loads by the layers' original numbers, but saves the pruned
model as a smaller unpruned one: resuming such a run pruned its kept layers again and ended in
"Cannot load model parameters ... ensure that the architectures match" (fairseq's own roberta
does the same). A plugin run's checkpoints record the layers their weights are, and the resumed
run ends where an uninterrupted one ends. Another keep list prunes the checkpoint's layers as
they are (pruning further), as in fairseq; one naming layers the checkpoint lacks, or not a
list of distinct layers, is refused in one line."""
import subprocess

import pytest
import torch

from conftest import REPO
from test_finished_run import fairseq_train_command
from test_restart import run_to_end, updates_of

KEEP = ("--encoder-layers-to-keep", "1")
BUDGET = ("--max-update", "20", "--total-num-update", "20", "--warmup-updates", "2")  # 2 epochs of 10 updates


def train(rte_bin, pretrained, save_dir, *flags):
    return run_to_end(fairseq_train_command(rte_bin, pretrained, save_dir, *BUDGET, *flags))


def refusal(rte_bin, pretrained, save_dir, *flags) -> str:
    result = subprocess.run(fairseq_train_command(rte_bin, pretrained, save_dir, *BUDGET, *flags),
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0, result.stderr[-3000:]
    assert not list(save_dir.glob("checkpoint*.pt"))
    return result.stderr.strip().splitlines()[-1]


def test_a_pruned_run_resumes_and_ends_where_an_uninterrupted_one_ends(rte_bin, tiny_pretrained, tmp_path):
    from fairseq_hire.checkpoints.fitting import KEPT_RECORD
    from fairseq_hire.hub_interface import from_pretrained

    uninterrupted, resumed = tmp_path / "uninterrupted", tmp_path / "resumed"
    train(rte_bin, tiny_pretrained, uninterrupted, *KEEP, "--max-epoch", "2")
    train(rte_bin, tiny_pretrained, resumed, *KEEP, "--max-epoch", "1")
    first = torch.load(resumed / "checkpoint_last.pt", weights_only=False)  # the test's own file
    assert first["extra_state"][KEPT_RECORD] == "1"
    assert not any(".layers.1." in name for name in first["model"])  # layer 1 of the checkpoint, as layer 0
    log = train(rte_bin, tiny_pretrained, resumed, *KEEP, "--max-epoch", "2")
    assert "Loaded checkpoint" in log and "(epoch 2 @ 10 updates)" in log
    assert updates_of(resumed / "checkpoint_last.pt") == updates_of(uninterrupted / "checkpoint_last.pt") == 20
    ours, theirs = (torch.load(d / "checkpoint_last.pt", weights_only=False)["model"] for d in (resumed, uninterrupted))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)

    hub = from_pretrained(str(resumed), "checkpoint_last.pt", data_name_or_path=str(rte_bin))
    assert len(hub.model.encoder.sentence_encoder.layers) == 1
    assert hub.predict("sentence_classification_head", hub.encode("A cat sat.", "A cat is sitting.")).shape == (1, 2)


@pytest.mark.parametrize("keep, expected", [
    ("0,7", "--encoder-layers-to-keep 0,7 keeps layer(s) 7, but its encoder has layers 0,1 only"),
    ("0,x", "--encoder-layers-to-keep '0,x': expected distinct layer indices separated by commas"),
    ("1,1", "--encoder-layers-to-keep '1,1': expected distinct layer indices separated by commas"),
])
def test_layers_the_checkpoint_lacks_are_refused_in_one_line(rte_bin, tiny_pretrained, tmp_path, keep, expected):
    """fairseq's pruning kept what it found and ended in its 'architectures match' error; with
    as many layers kept as the checkpoint has, 0,7 of 2 layers would load layers 0 and 1."""
    line = refusal(rte_bin, tiny_pretrained, tmp_path, "--encoder-layers-to-keep", keep)
    assert line.startswith("fairseq_hire.checkpoints.fitting.ArchitectureMismatchError:") and expected in line, line


def test_a_pruned_checkpoint_prunes_further_and_resuming_without_the_keep_list_says_why(
        rte_bin, tiny_pretrained, tmp_path):
    pruned = tmp_path / "pruned"
    train(rte_bin, tiny_pretrained, pruned, *KEEP, "--max-epoch", "1")
    further = tmp_path / "further"  # its one layer (layer 1 of the pretrained model) is kept as layer 0
    train(rte_bin, pruned / "checkpoint_last.pt", further, "--encoder-layers-to-keep", "0", "--max-epoch", "1")
    assert updates_of(further / "checkpoint_last.pt") == 10

    command = fairseq_train_command(rte_bin, tiny_pretrained, tmp_path / "copy", *BUDGET)  # 2 layers
    command[command.index("--finetune-from-model") + 1] = str(pruned / "checkpoint_last.pt")
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0
    line = result.stderr.strip().splitlines()[-1]
    assert "its encoder_layers is 1, but this run builds 2; its weights are the layers " \
        "--encoder-layers-to-keep 1 kept, which resuming it needs again" in line, line


def from_scratch(command):
    """`command` without --finetune-from-model: the same architecture, from random weights."""
    at = command.index("--finetune-from-model")
    return command[:at] + command[at + 2:]


def test_a_run_pruned_from_scratch_saves_checkpoints_the_hub_loads_and_the_run_resumes(rte_bin, tiny_pretrained,
                                                                                         tmp_path):
    """fairseq clears --encoder-layers-to-keep from a run's configuration when it prunes a checkpoint
    it loads; a run that loaded none saved its kept layers numbered from 0 under the keep list,
    which fairseq (and the safe loader) then prunes as if they were the original layers."""
    from fairseq_hire.checkpoints.loading import load_state
    from fairseq_hire.hub_interface import from_pretrained

    uninterrupted, resumed = tmp_path / "uninterrupted", tmp_path / "resumed"
    run_to_end(from_scratch(fairseq_train_command(rte_bin, tiny_pretrained, uninterrupted, *BUDGET, *KEEP,
                                                  "--max-epoch", "2")))
    run_to_end(from_scratch(fairseq_train_command(rte_bin, tiny_pretrained, resumed, *BUDGET, *KEEP,
                                                  "--max-epoch", "1")))
    state = load_state(resumed / "checkpoint_last.pt")
    model = vars(state["cfg"]["model"])  # fairseq saves a legacy model's options as a Namespace
    assert not model["encoder_layers_to_keep"] and model["encoder_layers"] == 1
    hub = from_pretrained(str(resumed), "checkpoint_last.pt", data_name_or_path=str(rte_bin))
    assert len(hub.model.encoder.sentence_encoder.layers) == 1
    assert hub.predict("sentence_classification_head", hub.encode("A cat sat.", "A cat is sitting.")).shape == (1, 2)

    log = run_to_end(from_scratch(fairseq_train_command(rte_bin, tiny_pretrained, resumed, *BUDGET, *KEEP,
                                                        "--max-epoch", "2")))
    assert "(epoch 2 @ 10 updates)" in log
    ours, theirs = (torch.load(d / "checkpoint_last.pt", weights_only=False)["model"] for d in (resumed, uninterrupted))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
