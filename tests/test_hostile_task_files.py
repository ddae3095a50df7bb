"""Hostile task files, JSON Lines rows and recipes (issue 26, finding 5): each is refused with
one line naming the file, the line where there is one, and what was expected; no traceback, no
hang, no file outside the data folder read on a task file's word, no line of a file that is not
the expected format echoed, nothing written. Legitimate task files (the README's reviews
example, files named with flags anywhere) keep working."""
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import GPT2_BPE, REPO

pytestmark = pytest.mark.unit

REVIEWS = REPO / "glue_prep" / "data" / "reviews"
SECRET = "TOPSECRET-d2-not-to-be-printed"


def reviews_description(**changes):
    description = json.loads((REVIEWS / "reviews.json").read_text(encoding="utf-8"))
    description.pop("test")
    description.update(changes)
    return {k: v for k, v in description.items() if v is not None}


def data_folder(tmp_path: Path) -> Path:
    """The README's reviews example in a data folder of its own, and a secret file beside it."""
    data = tmp_path / "data"
    shutil.copytree(REVIEWS, data)
    (tmp_path / "secret.csv").write_text(f"{SECRET},x\n{SECRET},y\n", encoding="utf-8")
    return data


def task_file(data: Path, text: str, name="task.json") -> Path:
    path = data / name
    path.write_text(text, encoding="utf-8")
    return path


def glue_prep_in_process(data: Path, task, out: Path, capsys, *flags):
    """(exit status, stderr) of glue_prep run in this process: a traceback fails the test."""
    from glue_prep.cli import main

    status = main([str(data), str(task), str(out), "--workers", "1", "--no-progress", *flags])
    return status, capsys.readouterr().err


def only_error_line(stderr: str) -> str:
    """The error of glue_prep's stderr, which must be exactly one line."""
    errors = [line for line in stderr.splitlines() if line.startswith("glue_prep: error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return errors[0]


def test_the_reviews_task_file_is_still_read(tmp_path, capsys):
    data = data_folder(tmp_path)
    status, err = glue_prep_in_process(data, data / "reviews.json", tmp_path / "out", capsys)
    assert status == 0, err
    assert (tmp_path / "out" / "reviews-bin" / "task.json").is_file()


# --- deep nesting, numbers Python will not convert ------------------------------------------

def test_a_task_file_nested_100000_deep_is_refused_in_one_line(tmp_path, capsys):
    data = data_folder(tmp_path)
    deep = task_file(data, '{"name": "own", "labels": ' + "[" * 100_000 + "]" * 100_000 + "}")
    status, err = glue_prep_in_process(data, deep, tmp_path / "out", capsys)
    line = only_error_line(err)
    assert status == 1 and str(deep) in line and "nested" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value, expected", [
    ("[" * 100_000 + "]" * 100_000, "nested"),
    ("9" * 5000, "digits"),
])
def test_a_jsonl_row_python_cannot_read_is_refused_at_its_line(value, expected, tmp_path, capsys):
    data = data_folder(tmp_path)
    rows = list(csv.DictReader((REVIEWS / "train.csv").open(encoding="utf-8")))
    lines = [json.dumps({"review": row["review"], "sentiment": row["sentiment"]}) for row in rows]
    lines[6] = '{"review": "fine", "sentiment": ' + value + "}"
    (data / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    shutil.copy(data / "train.jsonl", data / "valid.jsonl")
    task = task_file(data, json.dumps(reviews_description(format="jsonl", train="train.jsonl", valid="valid.jsonl")))
    status, err = glue_prep_in_process(data, task, tmp_path / "out", capsys)
    line = only_error_line(err)
    assert status == 1 and f"{data / 'train.jsonl'}, line 7:" in line and expected in line
    assert len(line) < 400 and not (tmp_path / "out" / "reviews-bin").exists()


def test_a_5000_digit_label_in_a_task_file_is_refused_in_one_line(tmp_path, capsys):
    data = data_folder(tmp_path)
    task = task_file(data, json.dumps(reviews_description())[:-1] + ', "positive_label": ' + "7" * 5000 + "}")
    status, err = glue_prep_in_process(data, task, tmp_path / "out", capsys)
    line = only_error_line(err)
    assert status == 1 and str(task) in line and "digits" in line and len(line) < 400


# --- files outside the data folder; what errors echo ----------------------------------------

@pytest.mark.parametrize("named", ["../secret.csv", "sub/../../secret.csv", "absolute"])
def test_a_task_file_may_not_name_a_file_outside_the_data_folder(named, tmp_path, capsys):
    data = data_folder(tmp_path)
    (data / "sub").mkdir()
    named = str(tmp_path / "secret.csv") if named == "absolute" else named
    task = task_file(data, json.dumps(reviews_description(text="a", label="b", train=named)))
    status, err = glue_prep_in_process(data, task, tmp_path / "out", capsys)
    line = only_error_line(err)
    assert status == 1 and SECRET not in err
    assert str(task) in line and "'train'" in line and "outside the data folder" in line
    assert not (tmp_path / "out" / "reviews-bin").exists()


def test_files_named_on_the_command_line_may_be_anywhere(tmp_path, capsys):
    data = data_folder(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(REVIEWS / "train.csv", elsewhere / "train.csv")
    status, err = glue_prep_in_process(
        data, "reviews", tmp_path / "out", capsys, "--format", "csv", "--text", "review", "--label", "sentiment",
        "--train", str(elsewhere / "train.csv"), "--valid", "../data/valid.csv")
    assert status == 0, err
    task = json.loads((tmp_path / "out" / "reviews-bin" / "task.json").read_text())
    assert task["train"] == str(elsewhere / "train.csv")


def test_a_header_without_any_of_the_task_s_columns_is_not_echoed(tmp_path, capsys):
    """A file that is not the task's (e.g. notes kept in the data folder) is described, not
    printed; a header that names some of the columns lists the others, shortened."""
    data = data_folder(tmp_path)
    (data / "notes.csv").write_text(f"{SECRET}\nsecond line\n", encoding="utf-8")
    task = task_file(data, json.dumps(reviews_description(train="notes.csv")))
    status, err = glue_prep_in_process(data, task, tmp_path / "out", capsys)
    line = only_error_line(err)
    assert status == 1 and SECRET not in err and f"{data / 'notes.csv'}, line 1: no column 'review'" in line
    long_name = "x" * 100_000
    (data / "wide.csv").write_text(f"review,{long_name}\nfine,1\n", encoding="utf-8")
    task = task_file(data, json.dumps(reviews_description(train="wide.csv")))
    status, err = glue_prep_in_process(data, task, tmp_path / "out", capsys)
    line = only_error_line(err)
    assert status == 1 and "no column 'sentiment'" in line and "'review'" in line and len(line) < 400


@pytest.mark.parametrize("file_format", ["csv", "jsonl", "glue"])
def test_a_5_mb_unknown_label_gives_a_short_error(file_format, tmp_path, capsys):
    from glue_prep.errors import GlueFormatError
    from glue_prep.tasks.task_files import COMMAND_LINE, task_from_description
    from glue_prep.tasks import TASKS
    from glue_prep.readers.splits import read_split

    label = "z" * 5_000_000
    path = tmp_path / "train"
    if file_format == "glue":
        task = TASKS["RTE"]
        path.write_text(f"index\tsentence1\tsentence2\tlabel\n0\ta\tb\t{label}\n", encoding="utf-8")
    else:
        task = task_from_description({"name": "own", "format": file_format, "text": "s", "label": "y",
                                      "train": "t", "valid": "v", "labels": ["a", "b"]}, source=COMMAND_LINE)
        path.write_text("s,y\nfine," + label + "\n" if file_format == "csv"
                        else json.dumps({"s": "fine", "y": label}) + "\n", encoding="utf-8")
    with pytest.raises(GlueFormatError) as caught:
        read_split(task, task.split("train"), path)
    message = str(caught.value)
    assert message.startswith(f"{path}, line {1 if file_format == 'jsonl' else 2}: ") and len(message) < 400
    assert "zzzz" in message and "5000000 characters" in message


def test_an_unknown_label_of_a_task_with_many_classes_lists_a_few(tmp_path):
    from glue_prep.errors import GlueFormatError
    from glue_prep.tasks.task_files import COMMAND_LINE, task_from_description
    from glue_prep.readers.splits import read_split

    task = task_from_description({"name": "own", "format": "csv", "text": "s", "label": "y", "train": "t",
                                  "valid": "v", "labels": [f"c{k}" for k in range(100_000)]}, source=COMMAND_LINE)
    path = tmp_path / "train.csv"
    path.write_text("s,y\nfine,c7\nfine,other\n", encoding="utf-8")
    with pytest.raises(GlueFormatError) as caught:
        read_split(task, task.split("train"), path)
    message = str(caught.value)
    assert message.startswith(f"{path}, line 3: own label 'other' is not one of 'c0', 'c1'") and len(message) < 400
    assert "99995 more" in message


# --- files that are not regular files; size -------------------------------------------------

def run_glue_prep(*arguments, timeout=120):
    return subprocess.run([sys.executable, "-m", "glue_prep", *map(str, arguments), "--workers", "1", "--no-progress"],
                          capture_output=True, text=True, cwd=REPO, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("what", ["task file", "train file", "tokenizer spec"])
def test_a_fifo_is_refused_not_waited_on(what, tmp_path):
    data = data_folder(tmp_path)
    fifo = data / ("task.json" if what == "task file" else "fifo")
    os.mkfifo(fifo)
    task = fifo if what == "task file" else task_file(data, json.dumps(reviews_description(train="fifo")),
                                                       name="own.json")
    if what == "tokenizer spec":
        task = data / "reviews.json"
        shutil.copy(GPT2_BPE / "dict.txt", data / "dict.txt")
    flags = ["--tokenizer-spec", fifo] if what == "tokenizer spec" else []
    try:
        result = run_glue_prep(data, task, tmp_path / "out", *flags, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"glue_prep waited on a FIFO given as the {what}")
    line = only_error_line(result.stderr)
    assert result.returncode in (1, 2) and str(fifo) in line and "not a regular file" in line


def test_100000_listed_classes_take_seconds_not_minutes(tmp_path):
    """Each row's label was looked up in a tuple of the classes, and each class counted over
    all rows: quadratic (glue_prep took 208 s for 100,000 classes against 5 s for 10,000).
    Reading the rows and building the label dictionary now take a few seconds."""
    import fairseq.data  # noqa: F401  (imported before the clock starts: seconds on a busy machine)

    from glue_prep.binarize import build_label_dictionary, label_names
    from glue_prep.tasks.task_files import COMMAND_LINE, task_from_description
    from glue_prep.readers.splits import read_split

    classes = [f"c{k}" for k in range(100_000)]
    task = task_from_description({"name": "many", "format": "csv", "text": "s", "label": "y", "train": "t",
                                  "valid": "v", "labels": classes[::-1]}, source=COMMAND_LINE)
    path = tmp_path / "train.csv"
    path.write_text("s,y\n" + "".join(f"a,{name}\n" for name in classes), encoding="utf-8")
    started = time.monotonic()
    data = read_split(task, task.split("train"), path)
    dictionary = build_label_dictionary(data.labels, str(tmp_path / "scratch"), task.labels)
    elapsed = time.monotonic() - started
    assert label_names(dictionary) == classes[::-1]
    assert elapsed < 30, f"{elapsed:.0f} s"  # about 2 s on two busy cores; the quadratic took minutes


# --- recipes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("field, written", [("lr", "1e999"), ("lr", "-1e999"), ("lr", "NaN"), ("lr", "Infinity"),
                                            ("batch_size", "1e999"), ("epochs", str(2 ** 40))])
def test_a_recipe_number_that_is_not_finite_and_positive_is_refused(field, written, tmp_path, capsys):
    data = data_folder(tmp_path)
    text = json.dumps(reviews_description())[:-1] + f', "recipe": {{"{field}": {written}}}}}'
    task = task_file(data, text)
    status, err = glue_prep_in_process(data, task, tmp_path / "out", capsys)
    line = only_error_line(err)
    assert status == 1 and str(task) in line and f"recipe: {field}" in line
    assert not (tmp_path / "out" / "reviews-bin").exists()


def test_finetune_refuses_a_task_json_edited_to_an_infinite_lr(tmp_path, capsys, tiny_pretrained):
    """The task file beside the binaries is read again by finetune.py: it built --lr inf."""
    from fairseq_hire.workflow.finetune import main

    data = data_folder(tmp_path)
    status, err = glue_prep_in_process(data, data / "reviews.json", tmp_path / "out", capsys)
    assert status == 0, err
    binaries = tmp_path / "out" / "reviews-bin"
    task = binaries / "task.json"
    task.write_text(task.read_text()[:task.read_text().rindex("}")] + ', "recipe": {"lr": 1e999}}')
    status = main(["reviews", str(binaries), str(tiny_pretrained), str(tmp_path / "save"), "--dry-run"])
    out = capsys.readouterr()
    assert status == 2 and f"{task}: recipe: lr is inf" in out.err and "--lr" not in out.out
    from fairseq_hire.workflow.recipes import recipe

    with pytest.raises(ValueError, match="expected a positive"):
        recipe("RTE").schedule(lr=float("inf"))


def test_glue_prep_writes_no_non_finite_number_into_task_json(tmp_path, capsys):
    data = data_folder(tmp_path)
    task = task_file(data, json.dumps(reviews_description(recipe={"lr": 2e-5, "epochs": 3})))
    status, err = glue_prep_in_process(data, task, tmp_path / "out", capsys)
    assert status == 0, err
    written = json.loads((tmp_path / "out" / "reviews-bin" / "task.json").read_text())
    assert written["recipe"] == {"lr": 2e-5, "epochs": 3}


# --- interpolations -------------------------------------------------------------------------

def test_a_positive_label_omegaconf_would_resolve_is_refused(tmp_path, capsys, monkeypatch):
    """fairseq passes the positive label through its configuration (OmegaConf): the label
    ${oc.env:NAME} became the environment variable's value on fairseq-train's command line."""
    monkeypatch.setenv("D2_SECRET", SECRET)
    data = data_folder(tmp_path)
    for name in ("train.csv", "valid.csv"):
        text = (data / name).read_text(encoding="utf-8")
        (data / name).write_text(text.replace(",positive\n", ",${oc.env:D2_SECRET}\n"), encoding="utf-8")
    task = task_file(data, json.dumps(reviews_description(positive_label="${oc.env:D2_SECRET}",
                                                          labels=["negative", "${oc.env:D2_SECRET}"])))
    status, err = glue_prep_in_process(data, task, tmp_path / "out", capsys)
    line = only_error_line(err)
    assert status == 1 and str(task) in line and "'positive_label'" in line and SECRET not in err
    assert not (tmp_path / "out" / "reviews-bin").exists()


def test_the_generated_yaml_holds_every_string_literally(tmp_path, monkeypatch):
    """A string with ${...} in a generated YAML is written escaped: OmegaConf and Hydra's
    compose read back the literal string, not the environment variable."""
    import dataclasses

    sys.path.insert(0, str(REPO / "scripts"))
    import generate_recipe_yamls as generator
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from fairseq_hire.workflow.recipes import TaskRecipe, recipe

    monkeypatch.setenv("D2_SECRET", SECRET)
    hostile = "${oc.env:D2_SECRET}"
    task = dataclasses.replace(recipe("MRPC").task, positive_label=hostile)
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "mrpc.yaml").write_text(generator.render(TaskRecipe(task), "base"), encoding="utf-8")
    assert OmegaConf.load(config_dir / "mrpc.yaml").criterion.f1_positive_label == hostile
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.1"):  # fairseq-hydra-train's
        composed = compose(config_name="mrpc")
    assert composed.criterion.f1_positive_label == hostile
    assert SECRET not in OmegaConf.to_yaml(composed, resolve=True)


# --- tokenizer specs ------------------------------------------------------------------------

@pytest.mark.parametrize("spec, expected", [
    ({"type": "gpt2", "encoder_json": "wrong.json", "vocab_bpe": str(GPT2_BPE / "vocab.bpe")}, "wrong.json"),
    ({"type": "gpt2", "encoder_json": "list.json", "vocab_bpe": str(GPT2_BPE / "vocab.bpe")}, "list.json"),
    ({"type": "wordpiece", "vocab": str(GPT2_BPE / "encoder.json")}, "encoder.json"),
    ({"type": "gpt2", "encoder_json": 5, "vocab_bpe": "vocab.bpe"}, "'encoder_json'"),
    ({"type": "wordpiece", "vocab": "vocab.txt", "lowercase": "no"}, "'lowercase'"),
])
def test_a_tokenizer_spec_naming_a_file_of_another_format_is_refused_in_one_line(spec, expected, tmp_path, capsys):
    data = data_folder(tmp_path)
    folder = tmp_path / "tokenizer"
    folder.mkdir()
    (folder / "wrong.json").write_text('{"a": [1]}', encoding="utf-8")
    (folder / "list.json").write_text("[1, 2]", encoding="utf-8")
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\n", encoding="utf-8")
    shutil.copy(GPT2_BPE / "dict.txt", folder / "dict.txt")
    (folder / "tokenizer_spec.json").write_text(json.dumps(spec), encoding="utf-8")
    status, err = glue_prep_in_process(data, data / "reviews.json", tmp_path / "out", capsys,
                                       "--tokenizer-spec", str(folder / "tokenizer_spec.json"))
    line = only_error_line(err)
    assert status in (1, 2) and expected in line and len(line) < 600
    assert not (tmp_path / "out" / "reviews-bin").exists()


def test_the_hub_s_tokenizer_refuses_a_vocabulary_of_another_format_with_a_value_error(tmp_path):
    from glue_prep.tokenizers import load_tokenizer

    (tmp_path / "wrong.json").write_text('{"a": [1]}', encoding="utf-8")
    spec = tmp_path / "tokenizer_spec.json"
    spec.write_text(json.dumps({"type": "gpt2", "encoder_json": "wrong.json",
                                "vocab_bpe": str(GPT2_BPE / "vocab.bpe")}), encoding="utf-8")
    with pytest.raises(ValueError, match="wrong.json"):
        load_tokenizer(spec).encode("hello")


# --- the same class in the task file and JSON Lines readers ---------------------------------

@pytest.mark.parametrize("replace, by, expected", [
    (b'"csv",', b'"csv",\n"text_pair": "\xff",', "line 4: not valid UTF-8"),
    (b'"train": "train.csv",', b'"train": "train.csv", "train": "../secret.csv",', "key 'train' appears twice"),
    (b'"negative"', b'"\\ud800"', "surrogate"),
])
def test_a_task_file_that_is_not_clean_json_is_refused_naming_it(replace, by, expected, tmp_path, capsys):
    data = data_folder(tmp_path)
    task = data / "task.json"
    original = (REVIEWS / "reviews.json").read_bytes()
    assert replace in original
    task.write_bytes(original.replace(replace, by, 1))
    status, err = glue_prep_in_process(data, task, tmp_path / "out", capsys)
    line = only_error_line(err)
    assert status == 1 and str(task) in line and expected in line and SECRET not in err


def test_a_task_file_with_a_byte_order_mark_is_read(tmp_path, capsys):
    data = data_folder(tmp_path)
    task = data / "bom.json"
    task.write_bytes(b"\xef\xbb\xbf" + (REVIEWS / "reviews.json").read_bytes())
    status, err = glue_prep_in_process(data, task, tmp_path / "out", capsys)
    assert status == 0, err
