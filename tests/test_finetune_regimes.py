"""finetune.py's two options for the regime study (issue 28): --train-size N trains on a
seeded stratified subset with a budget in epochs over N rows (at least MIN_SUBSET_UPDATES
updates), --freeze-encoder trains the head alone. The subset itself is tested in
test_train_subset.py, the frozen encoder in test_freeze_encoder.py."""
import math

import pytest

from fairseq_hire.workflow.finetune import MIN_SUBSET_UPDATES, SUBSET_FOLDER, build_command, build_parser, main

pytestmark = pytest.mark.unit


def planned(rte_bin, tiny_pretrained, save_dir, *flags):
    args, passthrough = build_parser().parse_known_args(
        ["RTE", str(rte_bin), str(tiny_pretrained), str(save_dir), "--device", "cpu", *flags])
    return args, build_command(args, passthrough)


def flag(command, name):
    return command[command.index(name) + 1]


def test_train_size_trains_on_the_subset_with_a_budget_over_its_rows(rte_bin, tiny_pretrained, tmp_path):
    from glue_prep.subset import make_train_subset

    save = tmp_path / "save"
    _, command = planned(rte_bin, tiny_pretrained, save, "--train-size", "100", "--seed", "3", "--epochs", "3")
    assert command[3] == str(save / SUBSET_FOLDER)
    per_epoch = math.ceil(100 / 16)  # RTE's batch size
    epochs = math.ceil(MIN_SUBSET_UPDATES / per_epoch)  # 3 epochs would be 21 updates: lengthened
    assert int(flag(command, "--max-epoch")) == epochs
    assert int(flag(command, "--max-update")) == epochs * per_epoch >= MIN_SUBSET_UPDATES
    # the rows are the ones every head of seed 3 gets, drawn among those that fit the model's
    # positions (fairseq-train skips the others), and a dry run writes no subset
    positions = int(flag(command, "--max-positions"))
    expected = make_train_subset(rte_bin, 100, 3, tmp_path / "expected", max_positions=positions)
    built = make_train_subset(rte_bin, 100, 3, save / SUBSET_FOLDER, max_positions=positions)
    assert built.reused and (built.rows == expected.rows).all() and built.record["max_positions"] == positions
    assert main(["RTE", str(rte_bin), str(tiny_pretrained), str(tmp_path / "dry"), "--train-size", "100",
                 "--dry-run"]) == 0
    assert not (tmp_path / "dry" / SUBSET_FOLDER).exists()


def test_a_large_subset_keeps_the_asked_epochs(rte_bin, tiny_pretrained, tmp_path):
    _, command = planned(rte_bin, tiny_pretrained, tmp_path / "save", "--train-size", "150", "--epochs", "30")
    assert 30 * math.ceil(150 / 16) >= MIN_SUBSET_UPDATES
    assert flag(command, "--max-epoch") == "30"
    assert flag(command, "--max-update") == str(30 * math.ceil(150 / 16))


def test_freeze_encoder_reaches_the_model_and_the_stock_baseline_refuses_it(rte_bin, tiny_pretrained, tmp_path, capsys):
    _, command = planned(rte_bin, tiny_pretrained, tmp_path / "save", "--head", "stock", "--freeze-encoder")
    assert "--freeze-encoder" in command and flag(command, "--arch").startswith("roberta_hire")
    _, command = planned(rte_bin, tiny_pretrained, tmp_path / "save", "--head", "stock")
    assert "--freeze-encoder" not in command
    assert main(["RTE", str(rte_bin), str(tiny_pretrained), str(tmp_path / "b"), "--baseline", "--freeze-encoder",
                 "--dry-run"]) == 2
    assert "--head stock" in capsys.readouterr().err


def test_a_train_size_outside_the_data_is_one_line_error(rte_bin, tiny_pretrained, tmp_path, capsys):
    assert main(["RTE", str(rte_bin), str(tiny_pretrained), str(tmp_path / "s"), "--train-size", "10000000"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("finetune: error:") and "\n" not in error
    assert not (tmp_path / "s" / SUBSET_FOLDER).exists()


def test_the_comparison_recipe_ignores_the_layer_cache_folder_and_keeps_the_regime(tmp_path):
    from fairseq_hire.compare.runs import Comparison

    def recipe(*flags):
        return Comparison("RTE", tmp_path, tmp_path / "model.pt", tmp_path / "out", flags, device="cpu").recipe()

    frozen = ("--freeze-encoder", "--train-size", "100", "--epochs", "3")
    assert recipe(*frozen, "--layer-cache", "/a") == recipe(*frozen, "--layer-cache=/b") == recipe(*frozen)
    assert recipe(*frozen) != recipe("--train-size", "100", "--epochs", "3")  # frozen or not: another recipe
    assert recipe(*frozen) != recipe("--freeze-encoder", "--train-size", "1000", "--epochs", "3")


def test_a_run_file_states_its_budget_and_its_rows(rte_bin, tmp_path):
    from glue_prep.subset import make_train_subset
    from fairseq_hire.compare.provenance import fairseq_schedule, subset_record

    log = ("finetune: note: ...\n/x/python -m fairseq_cli.train /d --arch roberta_hire_base --lr 0.001 "
           "--batch-size 16 --max-update 252 --max-epoch 36 --warmup-updates 15 --cpu\n{\"epoch\": 1}\n")
    assert fairseq_schedule(log) == {"lr": "0.001", "batch_size": "16", "max_update": "252", "max_epoch": "36",
                                     "warmup_updates": "15"}
    # a budget flag passed through after the recipe's overrides it in fairseq-train: the run file says so
    overridden = log.replace(" --cpu", " --cpu --max-update 7 --lr=0.5")
    assert fairseq_schedule(overridden)["max_update"] == "7" and fairseq_schedule(overridden)["lr"] == "0.5"
    assert subset_record(tmp_path) is None
    info = make_train_subset(rte_bin, 20, 2, tmp_path / SUBSET_FOLDER)
    record = subset_record(tmp_path)
    assert record["size"] == 20 and record["seed"] == 2 and record["rows_sha256"] == info.record["rows_sha256"]


def test_a_run_file_states_the_batch_size_given_by_fairseqs_alias():
    """fairseq-train takes --max-sentences as --batch-size (the same option, argparse_alias in
    fairseq's DatasetConfig): passed through after the recipe's --batch-size 16, it is the batch
    fairseq trained with, but the run file said 16."""
    from fairseq_hire.compare.provenance import fairseq_schedule

    log = ("/x/python -m fairseq_cli.train /d --lr 0.001 --batch-size 16 --max-update 252 --max-epoch 36 "
           "--warmup-updates 15 --cpu --max-sentences 8\n")
    assert fairseq_schedule(log)["batch_size"] == "8"
    assert fairseq_schedule(log.replace("--max-sentences 8", "--max-sentences=4"))["batch_size"] == "4"


def test_a_layer_cache_without_a_frozen_encoder_is_refused_before_anything_runs(rte_bin, tiny_pretrained, tmp_path,
                                                                                 capsys):
    for run in (["--dry-run"], []):
        save = tmp_path / f"save{len(run)}"
        assert main(["RTE", str(rte_bin), str(tiny_pretrained), str(save), "--device", "cpu",
                     "--layer-cache", str(tmp_path / "cache"), *run]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("finetune: error: --layer-cache") and "--freeze-encoder" in error
        assert "\n" not in error and not save.exists() and not (tmp_path / "cache").exists()
    _, command = planned(rte_bin, tiny_pretrained, tmp_path / "save", "--freeze-encoder", "--layer-cache", "c")
    assert flag(command, "--layer-cache") == "c" and command.count("--layer-cache") == 1


@pytest.mark.parametrize("flags, expected", [
    (["--train-size", "0"], "--train-size: '0': expected a positive integer"),
    (["--train-size", "2.5"], "--train-size: '2.5': expected a positive integer"),
    (["--train-size", "161"], "a training subset of 161 rows: expected an integer from 2"),
    (["--layer-cache", "c"], "--layer-cache c: .*expected --freeze-encoder"),
    (["--baseline", "--freeze-encoder"], "--baseline is set by the comparison for each run"),
])
def test_the_comparison_refuses_bad_regime_flags_once_before_any_run(rte_bin, tiny_pretrained, tmp_path, capsys,
                                                                      flags, expected):
    """Not one failing run per head and seed: one line, and no run claimed or started."""
    import re

    from fairseq_hire.compare.__main__ import main as compare

    out = tmp_path / "out"
    assert compare(["RTE", str(rte_bin), str(tiny_pretrained), str(out), "--heads", "stock", "hire",
                    "--seeds", "1-2", "--device", "cpu", *flags]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("compare: error:") and "\n" not in error and re.search(expected, error), error
    assert not (out / "work").exists() and not list(out.rglob("*.lock"))


def dying_trainings(monkeypatch, save):
    """finetune.py's fairseq-train replaced by a training that saves SAVE_DIR/checkpoint_last.pt,
    then dies; the list of the commands it is given."""
    import fairseq_hire.workflow.finetune as finetune

    trainings = []

    def fake_fairseq_train(command, env):
        trainings.append(command)
        (save / "checkpoint_last.pt").write_bytes(b"a checkpoint")
        return 1

    monkeypatch.setattr(finetune.subprocess, "call", fake_fairseq_train)
    return trainings


def test_a_save_dir_is_not_resumed_by_a_command_asking_for_another_run(rte_bin, tiny_pretrained, tmp_path,
                                                                        monkeypatch, capsys):
    """fairseq-train resumes SAVE_DIR/checkpoint_last.pt whatever it is asked: a run on 100 rows
    restarted with --train-size 50 (or frozen, or another seed) would continue the 100-row model
    while the folder's train_subset said 50. Refused before anything is written or trained."""
    from fairseq_hire.workflow import same_run
    from glue_prep.metadata import read_metadata

    save = tmp_path / "save"
    trainings = dying_trainings(monkeypatch, save)
    first = ["RTE", str(rte_bin), str(tiny_pretrained), str(save), "--device", "cpu", "--train-size", "100"]
    assert main(first) == 1 and len(trainings) == 1
    for other in (["--train-size", "50"], ["--train-size", "100", "--freeze-encoder"], ["--train-size", "100", "--seed", "2"],
                  ["--train-size", "100", "--max-update", "7"]):
        capsys.readouterr()
        assert main([*first[:6], *other]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith(f"finetune: error: {save} holds a run started with other options") and "\n" not in error
        assert len(trainings) == 1  # nothing trained
        assert read_metadata(save / SUBSET_FOLDER).train_subset.size == 100  # the subset was not rebuilt
        if other[1] == "50":
            assert "(train_size 100, now 50)" in error
    # the same command resumes; so do the options that do not change the run (a layer cache needs a frozen run)
    assert main([*first, "--dry-run"]) == 0 and main(first) == 1 and len(trainings) == 2
    # fairseq resumes checkpoint_last<suffix>.pt under --checkpoint-suffix: the same check
    (save / "checkpoint_last.pt").rename(save / "checkpoint_last-a.pt")
    assert main([*first[:6], "--train-size", "50", "--checkpoint-suffix", "-a"]) == 2 and len(trainings) == 2
    (save / "checkpoint_last-a.pt").rename(save / "checkpoint_last.pt")
    # a folder trained before the request was recorded is resumed as before
    (save / same_run.REQUEST_FILE).unlink()
    assert main([*first[:6], "--train-size", "100", "--seed", "1"]) == 1 and len(trainings) == 3


def test_the_comparison_counts_only_the_rows_that_fit_the_encoders_positions(rte_bin, tmp_path, capsys):
    """Each run draws its rows among those that fit the encoder's positions: a size between
    those and every row is refused once, up front, not by every run in turn."""
    import numpy as np
    from fairseq.data import data_utils

    from fairseq_hire.compare.__main__ import main as compare
    from conftest import GPT2_BPE
    from roberta_checkpoints import write_original_roberta_checkpoint

    model = tmp_path / "short" / "model.pt"
    model.parent.mkdir()
    write_original_roberta_checkpoint(model, GPT2_BPE / "dict.txt", positions=128)
    inputs = [data_utils.load_indexed_dataset(str(rte_bin / name / "train"), None) for name in ("input0", "input1")]
    fitting = int(((np.array(inputs[0].sizes) + np.array(inputs[1].sizes) + 2) <= 128).sum())
    assert fitting < 160
    out = tmp_path / "out"
    assert compare(["RTE", str(rte_bin), str(model), str(out), "--heads", "stock", "--seeds", "1", "--device", "cpu",
                    "--train-size", str(fitting + 1)]) == 2
    error = capsys.readouterr().err.strip()
    assert f"to {fitting} (its training rows that fit 128 positions)" in error and "\n" not in error
    assert not (out / "work").exists()


def test_a_run_resumes_with_other_logging_flags_but_not_other_training_flags(rte_bin, tiny_pretrained, tmp_path,
                                                                              monkeypatch):
    """--log-interval, --log-format, --tensorboard-logdir, --no-progress-bar change what is
    logged, not what is trained: a resume with others is the same run; --max-update is not."""
    save = tmp_path / "save"
    trainings = dying_trainings(monkeypatch, save)
    first = ["RTE", str(rte_bin), str(tiny_pretrained), str(save), "--device", "cpu", "--max-update", "9"]
    assert main([*first, "--log-interval", "50", "--log-format", "json"]) == 1
    assert main([*first, "--log-interval=10", "--no-progress-bar", "--tensorboard-logdir", "tb"]) == 1
    assert len(trainings) == 2
    assert main([*first, "--log-interval", "10", "--max-epoch", "2"]) == 2 and len(trainings) == 2
    assert main(["rte", *first[1:]]) == 1 and len(trainings) == 3  # the task as the registry names it
