"""Review of session 33: finetune.py's record of the run a save dir holds, the run files'
budget, and the regime recommendation's "beats the best constant prediction"."""
import json
import sys
from pathlib import Path

import pytest

from fairseq_hire.compare import statistics as st
from fairseq_hire.workflow import finetune, same_run

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import regime_report  # noqa: E402

pytestmark = pytest.mark.unit


@pytest.fixture
def trainings(monkeypatch):
    """fairseq-train replaced by a training that saves a checkpoint_last.pt, then dies: the
    commands it was started with."""
    started = []

    def fake_fairseq_train(command, env):
        started.append(command)
        save_dir = Path(command[command.index("--save-dir") + 1])
        (save_dir / "checkpoint_last.pt").write_bytes(b"a checkpoint")
        return 1

    monkeypatch.setattr(finetune.subprocess, "call", fake_fairseq_train)
    return started


def test_a_head_predicting_the_majority_class_on_every_seed_does_not_beat_the_constant():
    """RTE's dev split: 146 of 277 rows entailment, so the best constant prediction scores
    52.70758..%; a run's score is recorded to 4 digits, 52.7076, above it. A head that predicts
    entailment on every seed (frozen, 100 rows) has the interval [52.7076, 52.7076]: it learned
    nothing, yet counted as beating the constant, so the task was ranked and the head could be
    recommended. The report's own `failed` count holds the scores against the rounded constant."""
    constant = 100 * 146 / 277
    scores = [52.7076] * 5
    at_chance = {"mean": 52.7076, "sd": 0.0, "n": 5, "mean_interval": list(st.mean_interval(scores))}
    below = {"mean": 49.5, "sd": 0.4, "n": 5, "mean_interval": [49.0, 50.0]}
    summary = {"constant_score": constant, "heads": {"stock": below, "hire": at_chance, "stock-mean-pool": below}}
    point = {"task": "RTE", "regime": "frozen", "size": "n100", "complete": True, "summary": summary}
    costs = {"measured": "test", "ranges": {},
             "minutes": {f"frozen/n100/{h}": 1.0 for h in ("stock", "hire", "stock-mean-pool")}}
    assert not regime_report.beats_constant(summary, "hire")
    found = regime_report.recommendations([point], costs, ["stock", "hire", "stock-mean-pool"])["frozen-n100"]
    assert found["at_chance"] == ["RTE"] and found["head"] is None


def test_a_run_file_states_the_batch_size_given_by_fairseqs_alias():
    """fairseq-train takes --max-sentences as --batch-size (the same option, argparse_alias in
    fairseq's DatasetConfig): passed through after the recipe's --batch-size 16, it is the batch
    fairseq trained with, but the run file said 16."""
    from fairseq_hire.compare.provenance import fairseq_schedule

    log = ("/x/python -m fairseq_cli.train /d --lr 0.001 --batch-size 16 --max-update 252 --max-epoch 36 "
           "--warmup-updates 15 --cpu --max-sentences 8\n")
    assert fairseq_schedule(log)["batch_size"] == "8"
    assert fairseq_schedule(log.replace("--max-sentences 8", "--max-sentences=4"))["batch_size"] == "4"


def command_for(rte_bin, tiny_pretrained, save, *flags):
    return ["RTE", str(rte_bin), str(tiny_pretrained), str(save), *flags]


def test_a_checkpoint_without_a_recorded_request_gets_no_record_of_another_run(rte_bin, tiny_pretrained, tmp_path,
                                                                                trainings):
    """A save dir whose checkpoint_last.pt no finetune_request.json describes (a run started by
    fairseq-train itself, by fairseq-hydra-train or by finetune.py before it kept the request)
    is resumed as before, but finetune.py then wrote the new command's options as what the run
    was started with: resumed with --train-size 50 after 100 rows, the record said 50, and the
    true command (100) was refused from then on."""
    save = tmp_path / "save"
    save.mkdir()
    (save / "checkpoint_last.pt").write_bytes(b"a checkpoint of a run on 100 rows")
    assert finetune.main(command_for(rte_bin, tiny_pretrained, save, "--device", "cpu", "--train-size", "50")) == 1
    assert len(trainings) == 1 and not (save / same_run.REQUEST_FILE).exists()
    assert finetune.main(command_for(rte_bin, tiny_pretrained, save, "--device", "cpu", "--train-size", "100")) == 1
    assert len(trainings) == 2


@pytest.mark.parametrize("text", ["[]", "null", "3"])
def test_a_request_file_that_is_not_an_object_is_refused_in_one_line(text, rte_bin, tiny_pretrained, tmp_path,
                                                                      trainings, capsys):
    """Valid JSON that is not the object finetune.py writes ended in a traceback (AttributeError)."""
    save = tmp_path / "save"
    save.mkdir()
    (save / "checkpoint_last.pt").write_bytes(b"a checkpoint")
    (save / same_run.REQUEST_FILE).write_text(text)
    assert finetune.main(command_for(rte_bin, tiny_pretrained, save, "--device", "cpu")) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"finetune: error: {save / same_run.REQUEST_FILE}: not the JSON") and "\n" not in error
    assert trainings == [] and (save / same_run.REQUEST_FILE).read_text() == text


def test_the_request_records_the_device_the_run_trains_on(rte_bin, tiny_pretrained, tmp_path, trainings, monkeypatch):
    """--device auto is recorded as what it resolves to: on a machine without a GPU, a run
    started with auto resumes with --device cpu (the same command was refused), and a run that
    auto started on a GPU (fp16) is not resumed by auto on the CPU (fp32: another recipe, which
    the comparison refuses too), which was taken as the same request."""
    monkeypatch.setattr(finetune, "gpu_available", lambda: False)
    save = tmp_path / "cpu"
    assert finetune.main(command_for(rte_bin, tiny_pretrained, save)) == 1
    assert finetune.main(command_for(rte_bin, tiny_pretrained, save, "--device", "cpu")) == 1 and len(trainings) == 2
    monkeypatch.setattr(finetune, "gpu_available", lambda: True)
    save = tmp_path / "gpu"
    assert finetune.main(command_for(rte_bin, tiny_pretrained, save)) == 1 and "--fp16" in trainings[-1]
    monkeypatch.setattr(finetune, "gpu_available", lambda: False)
    assert finetune.main(command_for(rte_bin, tiny_pretrained, save)) == 2 and len(trainings) == 3


def test_the_same_fairseq_flag_written_with_an_equals_sign_resumes(rte_bin, tiny_pretrained, tmp_path, trainings):
    """fairseq-train's argparse reads --max-update=7 as --max-update 7: the same run, which was
    refused as another (the flags were compared word for word)."""
    save = tmp_path / "save"
    assert finetune.main(command_for(rte_bin, tiny_pretrained, save, "--device", "cpu", "--max-update", "7")) == 1
    assert finetune.main(command_for(rte_bin, tiny_pretrained, save, "--device", "cpu", "--max-update=7")) == 1
    assert len(trainings) == 2
    assert finetune.main(command_for(rte_bin, tiny_pretrained, save, "--device", "cpu", "--max-update=8")) == 2
    assert len(trainings) == 2


def test_a_task_file_named_by_a_relative_path_is_the_same_task(tmp_path, monkeypatch):
    """A user's task file given as tasks/reviews.json, then as its absolute path, from the same
    folder: the same run, refused as another (its data and checkpoints' paths were resolved,
    the task file's was not)."""
    save = tmp_path / "save"
    save.mkdir()
    monkeypatch.chdir(tmp_path)
    absolute = finetune.build_parser().parse_known_args(
        [str(tmp_path / "tasks" / "reviews.json"), "bin", "model.pt", str(save), "--device", "cpu"])
    relative = finetune.build_parser().parse_known_args(["tasks/reviews.json", "bin", "model.pt", str(save),
                                                         "--device", "cpu"])
    same_run.record_request(*absolute)
    (save / "checkpoint_last.pt").write_bytes(b"a checkpoint")
    same_run.check_same_run(*relative)  # not refused
    same_run.check_same_run(*absolute)
