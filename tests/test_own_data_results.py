"""The figures a user's own task gets downstream of glue_prep: the best constant prediction
beside every result (finetune.py, the report), runs at that score counted as failed, scores
and labels checked against what the model was trained on, and the Hydra YAML's own command.
Real rows: the shipped SST-2 sentences and the README's reviews example."""
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, SHIPPED_GLUE
from glue_prep.errors import GlueFormatError

pytestmark = pytest.mark.unit
REVIEWS = REPO / "glue_prep" / "data" / "reviews"


def binarise(data: Path, out: Path, *flags) -> Path:
    from glue_prep.cli import main

    assert main([str(data), "own", str(out), "--format", "csv", "--text", "sentence", "--label", "label",
                 "--train", "train.csv", "--valid", "valid.csv", "--workers", "1", "--no-progress", *flags]) == 0
    return out / "own-bin"


def sst2_folder(folder: Path, relabel=lambda label: label, rows=60) -> Path:
    """The first shipped SST-2 rows as a CSV task (train: all, valid: the first 20)."""
    import csv

    folder.mkdir(parents=True)
    lines = (SHIPPED_GLUE / "SST-2" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:rows + 1]
    table = [[s, relabel(label)] for s, label in (line.split("\t") for line in lines)]
    for name, part in (("train", table), ("valid", table[:20])):
        with open(folder / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([["sentence", "label"], *part])
    return folder


def test_a_run_at_the_constant_score_counts_as_failed_though_the_scores_are_rounded():
    """8 positives in 19: always-positive has F1 16/27 = 59.259259..., which a run's file holds
    rounded up to 59.2593."""
    from fairseq_hire.compare.report import summarise
    from fairseq_hire.metrics import glue_metrics

    targets = [0] * 8 + [1] * 11
    constant = [0] * 19
    score = glue_metrics(np.array(constant), np.array(targets), False, 0)["f1"]
    assert score == 59.2593 > 100 * 16 / 27
    runs = [{"task": "own", "recipe": {"train_flags": []}, "targets": targets, "head": head, "seed": seed, "metric": "f1",
             "regression": False, "label_names": ["pos", "neg"], "positive_class": 0, "predictions": constant,
             "metrics": {"f1": score}, "train_seconds": 60.0, "layer_weights": None, "file": f"{head}-{seed}.json"}
            for head in ("stock", "hire") for seed in (1, 2)]
    report = summarise(runs)
    assert report["heads"]["stock"]["failed"] == 2 and report["heads"]["hire"]["failed_rate"] == 1.0


def test_a_constant_model_scores_its_constant_baseline_on_every_metric():
    from fairseq_hire.metrics import constant_baseline, glue_metrics

    targets = np.array([0] * 11 + [1] * 19)  # acc_and_f1 averaged from rounded parts was 0.0001 low
    for positive in (0, 1):
        baseline = constant_baseline(targets, positive, 2)
        best = {name: max(glue_metrics(np.full(30, k), targets, False, positive)[name] for k in (0, 1))
                for name in baseline}
        assert best == baseline


def test_finetune_prints_the_constant_score_on_the_metric_that_selects_checkpoints(tmp_path):
    from fairseq_hire.workflow.finetune import constant_note
    from fairseq_hire.workflow.recipes import recipe

    binaries = binarise(sst2_folder(tmp_path / "data"), tmp_path / "out", "--metric", "f1", "--positive-label", "0")
    meta = json.loads((binaries / "glue_prep.json").read_text())
    counts = meta["label_counts"]["valid"]
    positives = counts["0"]
    note = constant_note(binaries, recipe("own", binaries))
    f1 = round(100 * 2 * positives / (positives + 20), 1)  # always "0": precision positives/20, recall 1
    assert f"a constant prediction scores f1 {f1} on the validation rows" in note
    assert f"accuracy {100 * max(counts.values()) / 20:.1f}" in note and "mcc 0.0" in note


def test_evaluate_names_the_splits_it_can_score(tmp_path):
    from fairseq_hire.workflow.evaluation import read_glue_split, score

    from glue_prep.cli import main

    assert main([str(REVIEWS), str(REVIEWS / "reviews.json"), str(tmp_path), "--workers", "1", "--no-progress"]) == 0
    binaries = tmp_path / "reviews-bin"
    with pytest.raises(ValueError, match=r"has no split 'valid1'; its splits are train, valid, test"):
        read_glue_split(binaries, "valid1")
    with pytest.raises(ValueError, match="the reviews test split has no labels to score"):
        score(None, read_glue_split(binaries, "test"))


def test_evaluate_refuses_a_label_the_model_never_learned_at_its_line(tmp_path):
    from fairseq_hire.workflow.evaluation import read_glue_split

    binaries = binarise(sst2_folder(tmp_path / "data"), tmp_path / "out")
    rows = (tmp_path / "data" / "valid.csv").read_text(encoding="utf-8").splitlines()
    rows[5] = rows[5].rsplit(",", 1)[0] + ",2"
    other = tmp_path / "other.csv"
    other.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(GlueFormatError) as caught:
        read_glue_split(binaries, "valid", other)
    assert str(caught.value).startswith(f"{other}, line 6: own label '2' is not one of")


@pytest.mark.parametrize("arch, criterion", [("roberta_hire_base", "sentence_prediction_hire"),
                                             ("roberta_base", "sentence_prediction")])
def test_binaries_whose_classes_are_in_another_order_are_refused_on_every_loading_path(tmp_path, arch, criterion):
    """More rows of one class, binarised again, reorder collected labels (most frequent first):
    the head's outputs would be read as the wrong classes. The checkpoint records its classes
    whichever architecture and criterion fairseq-train ran with."""
    from fairseq_setup import build_trainer, finetune_args, restore, save

    from fairseq_hire import RobertaHireModel
    from fairseq_hire.checkpoints.loading import load_state
    from fairseq_hire.workflow.evaluation import load_hub
    from fairseq_hire.workflow.evaluation import main as evaluate
    from fairseq_hire.checkpoints.errors import DataMismatchError
    from fairseq_hire.workflow.finetune import data_labels
    from fairseq_hire.checkpoints.head_classes import STATE_KEY
    from fairseq_hire.workflow.predict import main as predict

    trained = binarise(sst2_folder(tmp_path / "a"), tmp_path / "out_a")
    flipped = binarise(sst2_folder(tmp_path / "b", relabel=lambda label: "1" if label == "0" else "0"),
                       tmp_path / "out_b")
    assert data_labels(trained) == list(reversed(data_labels(flipped)))
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    save(build_trainer(finetune_args(trained, arch=arch, extra=["--criterion", criterion])),
         checkpoints / "checkpoint_best.pt", {"epoch": 1})
    assert load_state(checkpoints / "checkpoint_best.pt")["task_state"][STATE_KEY] == data_labels(trained)
    assert load_hub(checkpoints, "checkpoint_best.pt", trained).task.state.state_dict[STATE_KEY] == data_labels(trained)

    refusal = r"the checkpoint's head was trained on the classes \['\d', '\d'\], but .*out_b/own-bin has"
    for load in (lambda: load_hub(checkpoints, "checkpoint_best.pt", flipped),
                 lambda: RobertaHireModel.from_pretrained(str(checkpoints), "checkpoint_best.pt",
                                                          data_name_or_path=str(flipped))):
        with pytest.raises(DataMismatchError, match=refusal):
            load()
    assert predict([str(checkpoints), str(flipped), str(tmp_path / "a" / "valid.csv"), "--out",
                    str(tmp_path / "p.jsonl"), "--no-progress"]) == 2
    assert not (tmp_path / "p.jsonl").exists()
    assert evaluate([str(checkpoints), str(flipped), "--out", str(tmp_path / "e.json")]) == 2
    assert not (tmp_path / "e.json").exists()

    # fine-tuning the checkpoint on other classes (--restore-file) is not refused, and records those
    retrained = build_trainer(finetune_args(flipped, arch=arch, extra=["--criterion", criterion]))
    restore(retrained, checkpoints / "checkpoint_best.pt")
    save(retrained, tmp_path / "retrained.pt", {"epoch": 1})
    assert load_state(tmp_path / "retrained.pt")["task_state"][STATE_KEY] == data_labels(flipped)


def test_the_yaml_of_your_own_task_names_its_own_folder(tmp_path):
    import subprocess
    import sys

    from glue_prep.cli import main

    assert main([str(REVIEWS), str(REVIEWS / "reviews.json"), str(tmp_path), "--workers", "1", "--no-progress"]) == 0
    out = tmp_path / "yaml" / "reviews.yaml"
    command = [sys.executable, str(REPO / "scripts" / "generate_recipe_yamls.py"), "--task", "reviews",
               "--data", str(tmp_path / "reviews-bin")]
    made = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True, cwd=REPO)
    assert made.returncode == 0, made.stderr
    header = out.read_text()
    assert f"fairseq-hydra-train --config-dir {out.parent.resolve()} --config-name reviews" in header
    assert "derives from the data" in header and "GLUE recipe" not in header
    # what the YAML leaves to the command line: the data given, the checkpoint not given, the plugin's folder
    assert (f"task.data={(tmp_path / 'reviews-bin').resolve()} checkpoint.finetune_from_model=/path/to/model.pt "
            f"common.user_dir={REPO / 'fairseq_hire'}") in header
    wrong = subprocess.run([*command, "--out", str(tmp_path / "yaml" / "other.yaml")], capture_output=True, text=True,
                           cwd=REPO)
    assert wrong.returncode == 2 and "expected a file named reviews.yaml" in wrong.stderr
    # a path Hydra's override grammar reads otherwise (a space, a comma: a sweep) is quoted for it and the shell
    import shlex

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    odd = tmp_path / "my data, v2 (it's a copy) é ${x}" / "reviews-bin"
    odd.parent.mkdir()
    (tmp_path / "reviews-bin").rename(odd)
    command[command.index("--data") + 1] = str(odd)
    assert subprocess.run([*command, "--out", str(out)], capture_output=True, text=True, cwd=REPO).returncode == 0
    lines = [line[1:].strip() for line in out.read_text().splitlines() if line.startswith("#")]
    words = shlex.split(next(line for line in lines if "task.data=" in line))
    config = OmegaConf.create({"task": {"data": None}})
    config.task.data = OverridesParser.create().parse_overrides(words[:1])[0].value()  # as Hydra sets it
    assert config.task.data == str(odd)
