"""Your own data: a task described by a file or by flags, in TSV, CSV or JSON Lines, through
the same glue_prep, recipe, training, evaluation and prediction path as GLUE. Real text
throughout: the shipped SST-2 rows (and STS-B's where ../shared has them) rewritten in each
format, and the README's worked example on glue_prep/data/reviews."""
import csv
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, SHIPPED_GLUE, real_glue_task_dir
from glue_prep.errors import GlueFormatError
from glue_prep.tasks.task_files import read_task_file, task_from_description

REVIEWS = REPO / "glue_prep" / "data" / "reviews"
BINARY_FILES = ("input0/train.bin", "input0/train.idx", "input0/valid.bin", "input0/valid.idx", "label/dict.txt",
                "label/train.bin", "label/valid.bin")


def glue_prep(*arguments, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "glue_prep", *map(str, arguments), "--workers", "1", "--no-progress"],
                          capture_output=True, text=True, cwd=cwd)


def rows_of(tsv: Path, n: int):
    lines = tsv.read_text(encoding="utf-8").splitlines()
    return [line.split("\t") for line in lines[1:n + 1]]


def write_csv(path: Path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def write_jsonl(path: Path, keys, rows, numeric_label=False):
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            record = dict(zip(keys, row))
            if numeric_label:
                record[keys[-1]] = float(record[keys[-1]]) if "." in record[keys[-1]] else int(record[keys[-1]])
            f.write(json.dumps(record) + "\n")


@pytest.mark.parametrize("file_format", ["csv", "jsonl", "tsv"])
def test_sst2_rows_in_each_format_give_the_glue_binaries(file_format, tmp_path):
    source = SHIPPED_GLUE / "SST-2"
    data = tmp_path / "data"
    data.mkdir()
    for split, name in (("train", "train"), ("dev", "valid")):
        rows = rows_of(source / f"{split}.tsv", 300)
        if file_format == "csv":
            write_csv(data / f"{name}.csv", ["sentence", "label"], rows)
        elif file_format == "jsonl":
            write_jsonl(data / f"{name}.jsonl", ["sentence", "label"], rows, numeric_label=True)
        else:  # with Windows line endings and a byte-order mark, which glue_prep takes as GLUE's files
            text = "\ufeffsentence\tlabel\r\n" + "".join(f"{s}\t{label}\r\n" for s, label in rows)
            (data / f"{name}.tsv").write_bytes(text.encode("utf-8"))
    assert glue_prep(SHIPPED_GLUE, "SST-2", tmp_path / "glue", "--max-rows", "300").returncode == 0
    made = glue_prep(data, "sst2", tmp_path / "own", "--format", file_format, "--text", "sentence", "--label", "label",
                     "--train", f"train.{file_format}", "--valid", f"valid.{file_format}")
    assert made.returncode == 0, made.stderr
    for name in BINARY_FILES:
        assert (tmp_path / "glue" / "SST-2-bin" / name).read_bytes() == (tmp_path / "own" / "sst2-bin" / name).read_bytes(), name
    meta = json.loads((tmp_path / "own" / "sst2-bin" / "glue_prep.json").read_text())
    assert meta["task_file"] == "task.json" and meta["label_names"] == ["1", "0"]  # fairseq's frequency order


@pytest.mark.parametrize("file_format", ["csv", "jsonl"])
def test_stsb_regression_rows_give_the_glue_binaries(file_format, tmp_path):
    source = real_glue_task_dir("STS-B")
    data = tmp_path / "data"
    data.mkdir()
    for split, name in (("train", "train"), ("dev", "valid")):
        rows = [(r[7], r[8], r[9]) for r in rows_of(source / f"{split}.tsv", 200)]
        if file_format == "csv":
            write_csv(data / f"{name}.csv", ["s1", "s2", "score"], rows)
        else:
            write_jsonl(data / f"{name}.jsonl", ["s1", "s2", "score"], rows, numeric_label=True)
    (data / "task.json").write_text(json.dumps({
        "name": "similarity", "format": file_format, "text": "s1", "text_pair": "s2", "label": "score",
        "train": f"train.{file_format}", "valid": f"valid.{file_format}", "regression": True,
        "score_range": [0, 5]}))
    assert glue_prep(source.parent, "STS-B", tmp_path / "glue", "--max-rows", "200").returncode == 0
    made = glue_prep(data, data / "task.json", tmp_path / "own")
    assert made.returncode == 0, made.stderr
    for name in ("input0/train.bin", "input1/train.bin", "input1/valid.bin", "label/train.label", "label/valid.label"):
        assert (tmp_path / "glue" / "STS-B-bin" / name).read_bytes() == (tmp_path / "own" / "similarity-bin" / name).read_bytes()


def test_multiclass_string_labels_in_listed_order_and_macro_f1(tmp_path, tiny_pretrained):
    """STS-B's real pairs in three string classes (scores 0-1.5, 1.5-3.5, 3.5-5)."""
    source = real_glue_task_dir("STS-B")
    data = tmp_path / "data"
    data.mkdir()

    def level(score):
        return "low" if float(score) < 1.5 else "mid" if float(score) < 3.5 else "high"

    for split, name in (("train", "train"), ("dev", "valid")):
        rows = [(r[7], r[8], level(r[9])) for r in rows_of(source / f"{split}.tsv", 300)]
        write_jsonl(data / f"{name}.jsonl", ["a", "b", "level"], rows)
    made = glue_prep(data, "levels", tmp_path / "out", "--format", "jsonl", "--text", "a", "--text-pair", "b",
                     "--label", "level", "--train", "train.jsonl", "--valid", "valid.jsonl", "--labels", "low,mid,high",
                     "--metric", "macro_f1")
    assert made.returncode == 0, made.stderr
    data_bin = tmp_path / "out" / "levels-bin"
    meta = json.loads((data_bin / "glue_prep.json").read_text())
    assert meta["label_names"] == ["low", "mid", "high"] and meta["num_classes"] == 3
    printed = subprocess.run([sys.executable, str(REPO / "scripts" / "finetune.py"), "levels", str(data_bin),
                              str(tiny_pretrained), str(tmp_path / "ckpt"), "--device", "cpu", "--dry-run"],
                             capture_output=True, text=True, cwd=REPO)
    assert printed.returncode == 0, printed.stderr
    command = shlex.split(printed.stdout.strip().splitlines()[-1])
    flag = {command[i]: command[i + 1] for i in range(len(command) - 1) if command[i].startswith("--")}
    assert flag["--num-classes"] == "3" and flag["--best-checkpoint-metric"] == "macro_f1"
    # derived from the data: 300 rows < 10k -> batch 16, lr 1e-5, 10 epochs, warmup 6%
    assert flag["--batch-size"] == "16" and flag["--lr"] == "1e-05" and flag["--max-epoch"] == "10"
    assert flag["--total-num-update"] == str(10 * 19) and flag["--warmup-updates"] == str(round(0.06 * 190))


def test_a_valid_label_train_lacks_is_refused_with_file_and_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rows = rows_of(SHIPPED_GLUE / "SST-2" / "train.tsv", 100)
    write_csv(data / "train.csv", ["text", "label"], rows)
    valid = rows_of(SHIPPED_GLUE / "SST-2" / "dev.tsv", 20)
    valid[6][1] = "neutral"
    write_csv(data / "valid.csv", ["text", "label"], valid)
    made = glue_prep(data, "sst", tmp_path / "out", "--format", "csv", "--text", "text", "--label", "label",
                     "--train", "train.csv", "--valid", "valid.csv")
    assert made.returncode == 1
    assert f"{data / 'valid.csv'}, line 8" in made.stderr and "'neutral'" in made.stderr and "train" in made.stderr
    assert not (tmp_path / "out" / "sst-bin").exists()


@pytest.mark.parametrize("file_format, content, expected", [
    ("csv", 'text,label\n"an unterminated quote,1\n', "line 2"),
    ("csv", "text,label\nonly one field\n", "line 2: got 1 fields; expected 2"),
    ("jsonl", '{"text": "fine", "label": 1}\n{"text": "broken"\n', "line 2: not valid JSON"),
    ("jsonl", '{"text": "fine", "label": 1}\n{"words": "no text key", "label": 0}\n', "line 2: no key 'text'"),
    ("jsonl", '{"text": "fine", "label": 1}\n\n{"text": "fine", "label": 0}\n', "line 2: empty line"),
    ("tsv", "text\tlabel\nfine\t1\n\xff\t0\n", "line 3: not valid UTF-8"),
])
def test_bad_rows_name_file_line_and_what_was_expected(file_format, content, expected, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    raw = content.encode("utf-8") if "\xff" not in content else content.replace("\xff", "").encode("utf-8").replace(
        b"\n\t0", b"\n\xff\t0")
    (data / f"train.{file_format}").write_bytes(raw)
    (data / f"valid.{file_format}").write_bytes(raw)
    made = glue_prep(data, "broken", tmp_path / "out", "--format", file_format, "--text", "text", "--label", "label",
                     "--train", f"train.{file_format}", "--valid", f"valid.{file_format}")
    assert made.returncode == 1
    assert f"train.{file_format}, {expected}" in made.stderr, made.stderr
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


@pytest.mark.unit
def test_task_file_mistakes_are_named():
    base = {"name": "t", "format": "csv", "text": "x", "label": "y", "train": "a.csv", "valid": "b.csv"}
    for change, message in (({"format": "xml"}, "format 'xml'"), ({"colour": 1}, "unknown key 'colour'"),
                            ({"metric": "f1"}, "needs 'positive_label'"),
                            ({"regression": True}, "needs 'score_range'"),
                            ({"labels": ["a", "a"]}, "lists a label twice"),
                            ({"recipe": {"lr": -1}}, "recipe: lr is -1"),
                            ({"name": "a/b"}, "name 'a/b'"), ({"name": "rte"}, "is a GLUE task's"),
                            ({"name": "sts_b"}, "is a GLUE task's"),
                            ({"labels": ["very good", "bad"]}, "label 'very good'")):
        with pytest.raises(GlueFormatError, match=message):
            task_from_description({**base, **change}, source="task.json")
    task = read_task_file(REVIEWS / "reviews.json")
    assert task.labels == ("negative", "positive") and task.metric == "f1" and task.positive_label == "positive"
    assert task.id_column == "id"
    booleans = task_from_description({**base, "labels": [False, True]})
    assert booleans.labels == ("false", "true")  # as JSON rows' booleans read
    signed = task_from_description({**base, "regression": True, "score_range": [-3, 1]})
    assert signed.target_scale == 3.0 and signed.score_range == (-3.0, 1.0)


def test_worked_example_csv_in_model_and_predictions_out(tmp_path, tiny_pretrained):
    """The README's example, as a user runs it: glue_prep, finetune.py, evaluate.py, predict.py."""
    from fairseq_hire.checkpoints.loading import load_state
    from fairseq_hire.checkpoints.head_classes import STATE_KEY

    made = glue_prep(REVIEWS, REVIEWS / "reviews.json", tmp_path / "data")
    assert made.returncode == 0, made.stderr
    data_bin = tmp_path / "data" / "reviews-bin"
    save = tmp_path / "checkpoints" / "reviews"
    trained = subprocess.run([sys.executable, str(REPO / "scripts" / "finetune.py"), "reviews", str(data_bin),
                              str(tiny_pretrained), str(save), "--device", "cpu", "--epochs", "1", "--lr", "3e-4"],
                             capture_output=True, text=True, cwd=REPO)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "--f1-positive-label positive" in trained.stdout.splitlines()[0]
    # the best constant prediction beside the results, and the classes the head was trained on
    assert "a constant prediction scores f1" in trained.stderr
    assert "valid | " in trained.stdout + trained.stderr and "constant_f1" in trained.stdout + trained.stderr
    assert load_state(save / "checkpoint_best.pt")["task_state"][STATE_KEY] == ["negative", "positive"]
    scores = tmp_path / "scores.json"
    evaluated = subprocess.run([sys.executable, str(REPO / "scripts" / "evaluate.py"), str(save), str(data_bin),
                                "--out", str(scores)], capture_output=True, text=True, cwd=REPO)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    result = json.loads(scores.read_text())
    assert result["examples"] == 100 and {"f1", "macro_f1", "accuracy"} <= set(result["metrics"])
    assert result["constant_baseline"]["accuracy"] >= 50
    out = tmp_path / "predictions.jsonl"
    predicted = subprocess.run([sys.executable, str(REPO / "scripts" / "predict.py"), str(save), str(data_bin),
                                str(REVIEWS / "unlabelled.csv"), "--out", str(out)], capture_output=True, text=True,
                               cwd=REPO)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"u{i}" for i in range(40)]
    for row in rows:
        assert row["label"] in ("negative", "positive") and 0.5 <= row["probability"] <= 1
        assert sum(row["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    tsv = tmp_path / "predictions.tsv"
    assert subprocess.run([sys.executable, str(REPO / "scripts" / "predict.py"), str(save), str(data_bin),
                           str(REVIEWS / "unlabelled.csv"), "--out", str(tsv)], cwd=REPO).returncode == 0
    lines = tsv.read_text().splitlines()
    assert lines[0] == "id\tlabel\tprobability" and len(lines) == 41
    assert lines[1].split("\t")[:2] == [rows[0]["id"], rows[0]["label"]]

    # an over-long row is refused with its file and line, and cut with --truncate
    long_file = tmp_path / "long.csv"
    sentences = [row[1] for row in csv.reader(open(REVIEWS / "train.csv", encoding="utf-8"))][1:]
    write_csv(long_file, ["id", "review"], [("short", sentences[0]), ("long", " ".join(sentences[:120]))])
    refused = subprocess.run([sys.executable, str(REPO / "scripts" / "predict.py"), str(save), str(data_bin),
                              str(long_file), "--out", str(tmp_path / "long.jsonl")], capture_output=True, text=True,
                             cwd=REPO)
    assert refused.returncode == 2 and f"{long_file}, line 3" in refused.stderr and "--truncate" in refused.stderr
    cut = subprocess.run([sys.executable, str(REPO / "scripts" / "predict.py"), str(save), str(data_bin),
                          str(long_file), "--out", str(tmp_path / "long.jsonl"), "--truncate"], cwd=REPO)
    assert cut.returncode == 0 and len((tmp_path / "long.jsonl").read_text().splitlines()) == 2


def test_hydra_yaml_for_your_own_task_runs(tmp_path, tiny_pretrained):
    """scripts/generate_recipe_yamls.py --task writes a YAML for any task; fairseq-hydra-train runs
    the command its header gives (the recipe derived from the binaries, the tiny model), from any
    folder, with the CPU overrides. The header named a --config-dir relative to where the YAML was
    generated and left task.data and the checkpoint as ??? in the YAML, so it could not run."""
    import os
    import shlex

    assert glue_prep(REVIEWS, REVIEWS / "reviews.json", tmp_path / "data").returncode == 0
    made = subprocess.run([sys.executable, str(REPO / "scripts" / "generate_recipe_yamls.py"), "--task", "reviews",
                           "--data", "data/reviews-bin", "--pretrained", str(tiny_pretrained),
                           "--out", "config/reviews.yaml"], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert made.returncode == 0, made.stderr
    import yaml

    text = (tmp_path / "config" / "reviews.yaml").read_text()
    config = yaml.safe_load(text)
    assert config["criterion"]["f1_positive_label"] == "positive" and config["checkpoint"]["best_checkpoint_metric"] == "f1"
    assert config["model"]["encoder_layers"] == 2 and config["model"]["encoder_embed_dim"] == 32  # the checkpoint's
    header = [line[1:].strip() for line in text.splitlines() if line.startswith("#")]
    start = next(i for i, line in enumerate(header) if line.startswith("fairseq-hydra-train"))
    words = shlex.split(" ".join(header[start:start + 2]).replace("\\", " "))
    assert words[0] == "fairseq-hydra-train"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = subprocess.run([sys.executable, "-m", "fairseq_cli.hydra_train", *words[1:], "common.fp16=false",
                          "common.cpu=true", f"checkpoint.save_dir={tmp_path / 'ckpt'}", "optimization.max_update=4"],
                         capture_output=True, text=True, cwd=elsewhere)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert "valid_f1" in run.stdout + run.stderr
