"""A user's own regression task (real STS-B pairs, where ../shared has them): scores are ASCII
decimal numbers as the files write them (numbers Python would read but no one meant are refused at
their line), the score range is finite and given as the flags or the task file say, a positive
label is for classification only, and predictions are clipped to the score range."""
import json

import pytest

from conftest import real_glue_task_dir
from glue_prep.errors import GlueFormatError
from test_own_data_refusals import read_train, refusal, user_task, write_csv

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("score", ["0_5", "\u0663", "\uff13", "nan", "0x1"])
def test_regression_scores_must_be_ascii_decimal_numbers(score, tmp_path):
    source = real_glue_task_dir("STS-B")
    rows = [line.split("\t") for line in (source / "train.tsv").read_text(encoding="utf-8").splitlines()[1:30]]
    rows = [[r[7], r[8], r[9]] for r in rows]
    rows[6][2] = score
    path = write_csv(tmp_path / "train.csv", ["s1", "s2", "score"], rows)
    task = user_task(text="s1", text_pair="s2", label="score", regression=True, score_range=[0, 5])
    assert refusal(task, path) == f"{path}, line 8: own score {score!r} is not a number between 0 and 5"
    rows[6][2] = "3.5e0"
    assert read_train(task, write_csv(path, ["s1", "s2", "score"], rows)).labels[6] == "3.5e0"


@pytest.mark.parametrize("how", ["flags", "task file"])
def test_an_infinite_score_range_is_refused(how, tmp_path, capsys):
    """It made every target score / inf = 0."""
    if how == "flags":
        with pytest.raises(GlueFormatError, match=r"--regression LOW HIGH \[0.0, inf\]: expected finite"):
            user_task(regression=True, score_range=[0.0, float("inf")])
        return
    task_file = tmp_path / "task.json"
    task_file.write_text('{"name": "own", "format": "csv", "text": "s", "label": "y", "train": "t.csv", '
                         '"valid": "v.csv", "regression": true, "score_range": [0, Infinity]}')
    from glue_prep.tasks.task_files import read_task_file

    with pytest.raises(GlueFormatError, match=r"'score_range' \[0, inf\]: expected finite"):
        read_task_file(task_file)


def test_a_positive_label_on_a_regression_task_is_refused():
    with pytest.raises(GlueFormatError, match="--positive-label is for classification tasks"):
        user_task(regression=True, score_range=[0, 5], positive_label="good")


def stsb_pairs_as_csv(tmp_path):
    """The first 39 real STS-B training pairs as train.csv and valid.csv (s1, s2, score)."""
    source = real_glue_task_dir("STS-B")
    rows = [line.split("\t") for line in (source / "train.tsv").read_text(encoding="utf-8").splitlines()[1:40]]
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train", "valid"):
        write_csv(data / f"{name}.csv", ["s1", "s2", "score"], [[r[7], r[8], r[9]] for r in rows])
    return data, rows


def test_regression_flag_takes_scores_as_the_files_write_them(tmp_path, capsys):
    """--regression -1e-2 5 and --labels -1,1: argparse's own pattern reads -1e-2 and -1,1 as
    flags; 1_0 and nan are refused as the files' scores are."""
    from glue_prep.cli import main

    data, rows = stsb_pairs_as_csv(tmp_path)
    flags = [str(data), "similar", str(tmp_path / "out"), "--format", "csv", "--text", "s1", "--text-pair", "s2",
             "--label", "score", "--train", "train.csv", "--valid", "valid.csv", "--workers", "1", "--no-progress"]
    assert main([*flags, "--regression", "-1e-2", "5E+0"]) == 0
    task = json.loads((tmp_path / "out" / "similar-bin" / "task.json").read_text())
    assert task["score_range"] == [-0.01, 5.0]
    for low in ("1_0", "-1_0", "nan", "inf"):
        with pytest.raises(SystemExit):
            main([*flags, "--regression", low, "5", "--force"])
        assert f"argument --regression: {low!r}: expected a finite decimal number" in capsys.readouterr().err
    from glue_prep.cli import build_parser

    assert build_parser().parse_args(["d", "t", "o", "--labels", "-1,1", "--positive-label", "-1"]).labels == "-1,1"


def test_regression_predictions_are_clipped_to_the_score_range(tmp_path):
    """As the GLUE submission clips them (evaluation.submission_lines)."""
    import torch

    from fairseq_hire.workflow.predict import predict_file

    data, rows = stsb_pairs_as_csv(tmp_path)
    from glue_prep.cli import main

    assert main([str(data), "similar", str(tmp_path / "out"), "--format", "csv", "--text", "s1", "--text-pair", "s2",
                 "--label", "score", "--train", "train.csv", "--valid", "valid.csv", "--regression", "0", "5",
                 "--workers", "1", "--no-progress"]) == 0
    unlabelled = write_csv(tmp_path / "new.csv", ["s1", "s2"], [[r[7], r[8]] for r in rows[:3]])

    class Hub:  # the model's outputs on the training scale (score / 5): above, below and inside 0-1
        task = None  # no label dictionary: a regression head has no classes to check

        def classify_batch(self, head, examples, max_sentences, truncate, on_batch):
            on_batch(len(examples))
            return torch.tensor([[1.4], [-0.2], [0.5]]), None

    predictions = predict_file(Hub(), tmp_path / "out" / "similar-bin", unlabelled, progress=False)
    assert [p["label"] for p in predictions] == [5.0, 0.0, 2.5]
