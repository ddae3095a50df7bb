"""The class names a head's outputs are read by: the classes of label/dict.txt, in its order
(fairseq's class indices), which the checkpoint's recorded classes are checked against.
glue_prep.json's label_names is a copy that evaluate.py, predict.py and glue_submission.py
name rows by; a copy that disagrees (edited, or left from another build) is refused, not used:
reversed, it swapped every predicted and submitted label with exit 0."""
import json
import runpy
import shutil
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.unit
glue_submission = runpy.run_path(str(REPO / "scripts" / "glue_submission.py"))["main"]


@pytest.fixture(scope="module")
def checkpoints(rte_bin, tmp_path_factory):
    """A tiny fine-tuning checkpoint of rte_bin's classes (untrained: only the names matter)."""
    from fairseq_setup import build_trainer, finetune_args, save

    folder = tmp_path_factory.mktemp("checkpoints")
    save(build_trainer(finetune_args(rte_bin)), folder / "checkpoint_best.pt", {"epoch": 1})
    return folder


@pytest.fixture
def test_rows(rte_bin, tmp_path):
    """The first rows of RTE's test file, for predict.py."""
    source = Path(json.loads((rte_bin / "glue_prep.json").read_text())["source"]["test"])
    path = tmp_path / "rows.tsv"
    path.write_text("".join(source.read_text(encoding="utf-8").splitlines(keepends=True)[:21]), encoding="utf-8")
    return path


def copy_of(rte_bin, folder, edit):
    """rte_bin copied to `folder`, then edited by `edit(folder)`."""
    shutil.copytree(rte_bin, folder)
    edit(folder)
    return folder


def reverse_label_names_of(data):
    meta = json.loads((data / "glue_prep.json").read_text())
    meta["label_names"].reverse()
    (data / "glue_prep.json").write_text(json.dumps(meta, indent=1))


def run_every_script(checkpoints, data, rows, out, capsys):
    """{script: (exit status, stderr, the files it left in out)} for evaluate.py, predict.py and
    glue_submission.py on one checkpoint and data folder."""
    from fairseq_hire.workflow.evaluation import main as evaluate
    from fairseq_hire.workflow.predict import main as predict

    commands = {
        "evaluate": lambda folder: evaluate([str(checkpoints), str(data), "--out", str(folder / "scores.json")]),
        "predict": lambda folder: predict([str(checkpoints), str(data), str(rows), "--out",
                                           str(folder / "predictions.tsv"), "--no-progress"]),
        "glue_submission": lambda folder: glue_submission([str(folder), "--task", str(checkpoints), str(data),
                                                           "--allow-partial"]),  # data of 160 rows a split
    }
    outcomes = {}
    for script, command in commands.items():
        folder = out / script
        folder.mkdir(parents=True)
        capsys.readouterr()
        status = command(folder)
        outcomes[script] = status, capsys.readouterr().err, {p.name: p.read_text() for p in folder.iterdir()
                                                             if p.suffix != ".zip"}
    return outcomes


def test_reversed_label_names_are_refused_by_every_script_and_nothing_is_written(
        checkpoints, rte_bin, test_rows, tmp_path, capsys):
    untouched = run_every_script(checkpoints, rte_bin, test_rows, tmp_path / "untouched", capsys)
    assert {script: status for script, (status, _, _) in untouched.items()} == {
        "evaluate": 0, "predict": 0, "glue_submission": 0}
    assert set(untouched["glue_submission"][2]) == {"RTE.tsv"}
    names = json.loads((rte_bin / "glue_prep.json").read_text())["label_names"]

    flipped = copy_of(rte_bin, tmp_path / "flipped" / "RTE-bin", reverse_label_names_of)
    for script, (status, err, files) in run_every_script(checkpoints, flipped, test_rows, tmp_path / "out",
                                                        capsys).items():
        # before: exit 0, every label swapped (evaluate.py: accuracy 100 - the right one)
        assert (status, files) == (2, {}), (script, files)
        assert err.splitlines() == [
            f"{script}: error: {flipped / 'glue_prep.json'}: label_names is {names[::-1]!r}, but the model's head "
            f"outputs the classes {names!r} in that order (label/dict.txt, fairseq's class indices): expected "
            "label_names to list them in that order; run glue_prep again to rebuild the folder"], script


def reverse_label_dict_and_names(data):
    reverse_label_names_of(data)
    label_dict = data / "label" / "dict.txt"
    label_dict.write_text("".join(reversed(label_dict.read_text().splitlines(keepends=True))))


def test_binaries_whose_label_dict_is_reversed_with_their_names_are_refused_by_the_checkpoints_classes(
        checkpoints, rte_bin, test_rows, tmp_path, capsys):
    """glue_prep.json and label/dict.txt agree, but not with the classes the checkpoint recorded."""
    flipped = copy_of(rte_bin, tmp_path / "flipped" / "RTE-bin", reverse_label_dict_and_names)
    for script, (status, err, files) in run_every_script(checkpoints, flipped, test_rows, tmp_path / "out",
                                                        capsys).items():
        assert (status, files) == (2, {}), (script, files)
        assert "the checkpoint's head was trained on the classes" in err, script
        assert "has ['entailment', 'not_entailment'] (label/dict.txt)" in err and "<mask>" not in err, (script, err)


@pytest.mark.parametrize("edit, refusal", [(reverse_label_names_of, "glue_prep.json: label_names is"),
                                           (reverse_label_dict_and_names, "the checkpoint's head was trained on")])
def test_a_submission_with_one_refused_task_writes_no_file(edit, refusal, checkpoints, rte_bin, tmp_path, capsys):
    def edit_and_name(folder):  # another file name: two pairs that make one file are refused before this
        edit(folder)
        meta = json.loads((folder / "glue_prep.json").read_text())
        (folder / "glue_prep.json").write_text(json.dumps({**meta, "test_splits": {"test": "RTE-flipped"}}))

    flipped = copy_of(rte_bin, tmp_path / "flipped" / "RTE-bin", edit_and_name)
    out = tmp_path / "submission"
    assert glue_submission([str(out), "--task", str(checkpoints), str(rte_bin),
                            "--task", str(checkpoints), str(flipped), "--allow-partial"]) == 2
    assert not out.exists() or not any(out.iterdir())  # before: the first task's RTE.tsv was left
    assert refusal in capsys.readouterr().err
