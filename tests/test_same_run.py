"""finetune.py resumes a save dir only for the run that started it (fairseq_hire/workflow/same_run.py):
the request it records beside the checkpoints (finetune_request.json), read back as finetune.py
and fairseq-train read a command line (the device --device auto resolves to, --flag=value, a
task file's path from another folder), and a save dir without such a record or with a damaged
one. Which options make another run: tests/test_finetune_regimes.py."""
from pathlib import Path

import pytest

from fairseq_hire.workflow import finetune, same_run

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
