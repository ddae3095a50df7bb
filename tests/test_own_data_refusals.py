"""What a user's own files may not do, each refused with the file, the line and what was
expected: labels fairseq's dictionary reserves, one class written two ways, a positive label
the data lacks, columns named twice, broken headers, stray carriage returns; and task-file
recipes whose parts must agree. Real rows: the shipped SST-2 sentences. A regression task's
scores and score range: tests/test_own_regression_tasks.py."""
import csv
import json
from pathlib import Path

import pytest

from conftest import SHIPPED_GLUE
from glue_prep.errors import GlueFormatError
from glue_prep.tasks.task_files import COMMAND_LINE, task_from_description
from glue_prep.readers.splits import read_split

pytestmark = pytest.mark.unit


def sst2_rows(n=40):
    lines = (SHIPPED_GLUE / "SST-2" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:n + 1]
    return [line.split("\t") for line in lines]


def user_task(file_format="csv", source=COMMAND_LINE, **keys):
    description = {"name": "own", "format": file_format, "text": "sentence", "label": "label",
                   "train": f"train.{file_format}", "valid": f"valid.{file_format}", **keys}
    return task_from_description(description, source=source)


def read_train(task, path):
    return read_split(task, task.split("train"), path)


def write_csv(path: Path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def refusal(task, path) -> str:
    with pytest.raises(GlueFormatError) as caught:
        read_train(task, path)
    return str(caught.value)


@pytest.mark.parametrize("reserved", ["<unk>", "<pad>", "</s>", "<s>", "madeupword0001"])
def test_a_label_spelled_like_a_reserved_dictionary_symbol_is_refused_at_its_line(reserved, tmp_path):
    rows = [[sentence, reserved if label == "0" else "positive"] for sentence, label in sst2_rows()]
    path = write_csv(tmp_path / "train.csv", ["sentence", "label"], rows)
    first = 2 + next(i for i, (_, label) in enumerate(rows) if label == reserved)
    message = refusal(user_task(), path)
    assert message.startswith(f"{path}, line {first}: own label {reserved!r}") and "rename the label" in message
    with pytest.raises(GlueFormatError, match=f"'labels': label '{reserved}'"):
        user_task(labels=["positive", reserved], source=Path("task.json"))


@pytest.mark.parametrize("reserved", ["<unk>", "madeupword0001"])
def test_control_fairseq_would_give_such_a_label_the_index_of_its_symbol(reserved):
    """Why the refusal matters: fairseq's label dictionary has the symbol already, so the class
    would share its index (<unk>'s, or a padding slot that label_names drops)."""
    from fairseq.data import Dictionary

    labels = Dictionary()
    labels.pad_to_multiple_(8)  # the padding fairseq-preprocess adds: madeupword0000 ...
    before = len(labels)
    index = labels.add_symbol(reserved)
    assert len(labels) == before and index < before


def test_jsonl_labels_1_and_1_point_0_are_one_class(tmp_path):
    rows = sst2_rows()
    path = tmp_path / "train.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for k, (sentence, label) in enumerate(rows):  # every other row writes the number as a float
            f.write(json.dumps({"sentence": sentence, "label": float(label) if k % 2 else int(label)}) + "\n")
    data = read_train(user_task("jsonl"), path)
    assert data.labels == [label for _, label in rows]
    assert user_task("jsonl", labels=[1.0, 0]).labels == ("1", "0")


def prepare_in_process(data: Path, out: Path, *flags):
    from glue_prep.cli import main

    return main([str(data), "own", str(out), "--format", "csv", "--text", "sentence", "--label", "label",
                 "--train", "train.csv", "--valid", "valid.csv", "--workers", "1", "--no-progress", *flags])


def sst2_csv_folder(tmp_path: Path, relabel=lambda label, row: label) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    rows = sst2_rows(60)
    write_csv(data / "train.csv", ["sentence", "label"], [[s, relabel(label, k)] for k, (s, label) in enumerate(rows)])
    write_csv(data / "valid.csv", ["sentence", "label"], [[s, relabel(label, k)] for k, (s, label) in enumerate(rows[:20])])
    return data


def test_a_positive_label_the_train_labels_lack_is_refused_before_anything_is_written(tmp_path, capsys):
    data = sst2_csv_folder(tmp_path)
    assert prepare_in_process(data, tmp_path / "out", "--metric", "f1", "--positive-label", "pos") == 1
    error = capsys.readouterr().err
    assert f"{data / 'train.csv'}: the own positive label 'pos'" in error and "'0', '1'" in error
    assert not (tmp_path / "out" / "own-bin").exists()


def test_f1_on_three_collected_classes_is_refused(tmp_path, capsys):
    data = sst2_csv_folder(tmp_path, relabel=lambda label, k: "neutral" if k % 3 == 0 else label)
    assert prepare_in_process(data, tmp_path / "out", "--metric", "f1", "--positive-label", "1") == 1
    assert "metric f1 is for two classes" in capsys.readouterr().err
    assert prepare_in_process(data, tmp_path / "out", "--metric", "macro_f1") == 0


def test_finetune_refuses_binaries_without_the_positive_label(tmp_path):
    from fairseq_hire.checkpoints.errors import DataMismatchError
    from fairseq_hire.workflow.finetune import check_data
    from fairseq_hire.workflow.recipes import recipe

    data = sst2_csv_folder(tmp_path)
    assert prepare_in_process(data, tmp_path / "out", "--metric", "f1", "--positive-label", "1") == 0
    binaries = tmp_path / "out" / "own-bin"
    check_data(recipe("own", binaries), binaries, 512)
    task_file = binaries / "task.json"  # the task file edited after binarising
    task_file.write_text(json.dumps({**json.loads(task_file.read_text()), "positive_label": "yes"}))
    with pytest.raises(DataMismatchError, match="has no label 'yes', the own positive label"):
        check_data(recipe("own", binaries), binaries, 512)


def test_a_column_named_twice_is_refused_at_the_header(tmp_path):
    path = write_csv(tmp_path / "train.csv", ["sentence", "label", "sentence"],
                     [[s, label, s.upper()] for s, label in sst2_rows()])
    assert refusal(user_task(), path) == (f"{path}, line 1: the header names column 'sentence' more than once; "
                                          "expected each column once")


def test_a_jsonl_key_given_twice_is_refused_at_its_line(tmp_path):
    path = tmp_path / "train.jsonl"
    lines = [json.dumps({"sentence": s, "label": label}) for s, label in sst2_rows()]
    lines[3] = lines[3][:-1] + ', "label": "1"}'
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert refusal(user_task("jsonl"), path) == (f"{path}, line 4: key 'label' appears twice in this object; "
                                                 "expected each key once")


def test_a_broken_quote_in_the_csv_header_names_line_1(tmp_path):
    path = tmp_path / "train.csv"
    rows = "".join(f'"{s}",{label}\n' for s, label in sst2_rows())
    path.write_text('"sen"tence,label\n' + rows, encoding="utf-8")
    message = refusal(user_task(), path)
    assert message.startswith(f"{path}, line 1: not valid CSV")


@pytest.mark.parametrize("source, named_by", [(COMMAND_LINE, COMMAND_LINE),
                                              (Path("reviews.json"), "the task file reviews.json")])
def test_a_missing_column_is_reported_at_the_header_even_without_rows(source, named_by, tmp_path):
    path = write_csv(tmp_path / "train.csv", ["text", "label"], [[s, label] for s, label in sst2_rows()])
    assert refusal(user_task(source=source), path) == (
        f"{path}, line 1: no column 'sentence'; {named_by} names 'sentence', 'label' (this header has 'text', 'label')")
    header_only = write_csv(tmp_path / "header.csv", ["text", "label"], [])
    assert refusal(user_task(source=source), header_only).startswith(f"{header_only}, line 1: no column 'sentence'")
    right_header = write_csv(tmp_path / "empty.csv", ["sentence", "label"], [])
    assert refusal(user_task(), right_header) == f"{right_header}: no data rows; expected rows with 'sentence', 'label'"


def test_a_missing_jsonl_key_names_its_line(tmp_path):
    path = tmp_path / "train.jsonl"
    lines = [json.dumps({"sentence": s, "label": label}) for s, label in sst2_rows()]
    lines[5] = json.dumps({"text": "x", "label": "1"})
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert refusal(user_task("jsonl"), path) == (
        f"{path}, line 6: no key 'sentence'; {COMMAND_LINE} names 'sentence', 'label' (this object has 'text', 'label')")


@pytest.mark.parametrize("file_format", ["tsv", "csv"])
def test_a_stray_carriage_return_is_refused_at_its_line(file_format, tmp_path):
    separator = "\t" if file_format == "tsv" else ","
    rows = [f"{s.replace(',', ' ')}{separator}{label}" for s, label in sst2_rows()]
    rows[2] = rows[2].replace(" ", "\r", 1)  # Mac-style break inside the 3rd row (line 4)
    path = tmp_path / f"train.{file_format}"
    path.write_bytes(("sentence" + separator + "label\r\n" + "\r\n".join(rows) + "\r\n").encode("utf-8"))
    message = refusal(user_task(file_format), path)
    assert message.startswith(f"{path}, line 4: carriage return (CR) inside the line; expected lines ending in LF or CRLF")
    assert "universal-newline" not in message


@pytest.mark.parametrize("file_format", ["csv", "jsonl"])
def test_a_carriage_return_before_a_crlf_is_refused_at_its_line(file_format, tmp_path):
    """CR CR LF: the csv module ended the row at the first CR and dropped the second, json took
    it for a space: both read the row as if it were not there (helper-41)."""
    rows = [f"{s.replace(',', ' ')},{label}" if file_format == "csv" else json.dumps({"sentence": s, "label": label})
            for s, label in sst2_rows()]
    rows[2] += "\r"  # the 3rd row (line 4 with the CSV header, 3 without)
    header = ["sentence,label"] if file_format == "csv" else []
    path = tmp_path / f"train.{file_format}"
    path.write_bytes(("\r\n".join(header + rows) + "\r\n").encode("utf-8"))
    line = 4 if file_format == "csv" else 3
    assert refusal(user_task(file_format), path).startswith(f"{path}, line {line}: carriage return (CR) inside the line")
    path.write_bytes(path.read_bytes().replace(b"\r\r", b"\r"))  # CRLF throughout: read as with LF
    sentence = sst2_rows()[2][0]
    expected = (sentence.replace(",", " ") if file_format == "csv" else sentence).strip()
    assert read_train(user_task(file_format), path).inputs[0][2] == expected


@pytest.mark.parametrize("text", [1e-05, None, 3], ids=["float", "null", "int"])
def test_a_jsonl_text_that_is_no_string_is_refused_at_its_line(text, tmp_path):
    """1e-5 became the text "1e-05", null an empty input; texts are strings (glue_prep/README.md)."""
    path = tmp_path / "train.jsonl"
    rows = [{"sentence": s, "label": label} for s, label in sst2_rows()]
    rows[4]["sentence"] = text
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    assert refusal(user_task("jsonl"), path).startswith(f"{path}, line 5: 'sentence' is {text!r}; expected a string")


def test_a_carriage_return_quoted_in_a_csv_field_is_text(tmp_path):
    rows = [[s, label] for s, label in sst2_rows()]
    rows[2][0] = rows[2][0].replace(" ", "\r", 1)
    path = write_csv(tmp_path / "train.csv", ["sentence", "label"], rows)
    data = read_train(user_task(), path)
    assert "\r" in data.inputs[0][2] and data.line_numbers[3] == 5


class TestTaskFileRecipes:
    def schedule(self, recipe, **asked):
        from fairseq_hire.workflow.recipes import TaskRecipe

        return TaskRecipe(user_task(recipe=recipe)).schedule(train_examples=300, **asked)

    def test_a_warmup_alone_is_kept_and_the_updates_derived(self):
        schedule = self.schedule({"warmup_updates": 5})
        assert (schedule.total_updates, schedule.warmup_updates, schedule.batch_size) == (10 * 19, 5, 16)

    def test_a_warmup_alone_is_kept_in_examples_at_another_batch_per_update(self):
        from fairseq_hire.workflow.passthrough import UpdateShape

        schedule = self.schedule({"warmup_updates": 6}, update_shape=UpdateShape(update_freq=2))
        assert (schedule.total_updates, schedule.warmup_updates, schedule.batch_size) == (10 * 10, 3, 16)

    def test_a_budget_in_updates_ends_at_its_last_update(self):
        schedule = self.schedule({"total_updates": 100})
        assert (schedule.total_updates, schedule.warmup_updates, schedule.max_epoch) == (100, 6, 0)

    def test_another_batch_size_keeps_the_examples_of_a_budget_in_updates(self):
        schedule = self.schedule({"total_updates": 100, "warmup_updates": 10}, batch_size=32)
        assert (schedule.batch_size, schedule.total_updates, schedule.warmup_updates) == (32, 50, 5)

    def test_epochs_asked_for_replace_the_file_s_budget(self):
        schedule = self.schedule({"total_updates": 100, "warmup_updates": 10}, epochs=2)
        assert (schedule.total_updates, schedule.warmup_updates, schedule.max_epoch) == (2 * 19, 2, 2)

    @pytest.mark.parametrize("recipe, message", [
        ({"epochs": 3, "total_updates": 100}, "'epochs' or as 'total_updates', not both"),
        ({"total_updates": 100, "warmup_updates": 100}, "warmup_updates 100 is not below total_updates 100"),
    ])
    def test_parts_that_contradict_each_other_are_refused(self, recipe, message):
        with pytest.raises(GlueFormatError, match=message):
            user_task(recipe=recipe)

    def test_a_warmup_longer_than_the_derived_run_is_refused(self):
        with pytest.raises(ValueError, match="500 warmup updates in a run of 190 updates"):
            self.schedule({"warmup_updates": 500})


def test_a_glue_recipe_with_another_batch_size_sees_as_many_examples():
    from fairseq_hire.workflow.recipes import recipe

    rte = recipe("RTE")
    given = rte.schedule()
    halved = rte.schedule(batch_size=2 * given.batch_size)
    assert halved.total_updates == round(given.total_updates / 2) and halved.max_epoch == given.max_epoch
    assert halved.warmup_updates == round(given.warmup_updates / 2)


@pytest.mark.parametrize("key", ["sentence", "label"])
def test_half_a_surrogate_pair_in_json_is_refused_at_its_line(key, tmp_path):
    rows = [{"sentence": s, "label": label} for s, label in sst2_rows()]
    rows[4][key] = rows[4][key] + "\ud800"
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")  # ensure_ascii: \ud800
    assert refusal(user_task("jsonl"), path).startswith(f"{path}, line 5: ")
    assert "half of a UTF-16 surrogate pair" in refusal(user_task("jsonl"), path)


@pytest.mark.parametrize("file_format", ["csv", "tsv"])
def test_a_field_longer_than_the_csv_module_s_default_limit_is_read(file_format, tmp_path):
    rows = [[s, label] for s, label in sst2_rows()]
    rows[1][0] = " ".join([rows[1][0]] * (200_000 // len(rows[1][0])))
    assert len(rows[1][0]) > 131_072
    path = tmp_path / f"train.{file_format}"
    if file_format == "csv":
        write_csv(path, ["sentence", "label"], rows)
    else:
        path.write_text("sentence\tlabel\n" + "".join(f"{s}\t{label}\n" for s, label in rows), encoding="utf-8")
    assert read_train(user_task(file_format), path).inputs[0][1] == rows[1][0].strip()


@pytest.mark.parametrize("flag, value", [("--epochs", "0"), ("--epochs", "-2"), ("--batch-size", "0"),
                                         ("--batch-size", "-4"), ("--lr", "0"), ("--lr", "-1"), ("--lr", "nan")])
def test_finetune_refuses_a_budget_that_is_not_positive(flag, value, capsys):
    from fairseq_hire.workflow.finetune import build_parser
    from fairseq_hire.workflow.recipes import recipe

    with pytest.raises(SystemExit):
        build_parser().parse_args(["RTE", "bin", "model.pt", "save", flag, value])
    assert f"argument {flag}: {value!r}: expected a positive" in capsys.readouterr().err
    with pytest.raises(ValueError, match="expected a positive number"):
        recipe("RTE").schedule(train_examples=100, **{flag[2:].replace("-", "_"): float(value)})


def test_test_ids_must_be_present_unique_and_on_one_line(tmp_path):
    rows = [[str(100 + k), s] for k, (s, _) in enumerate(sst2_rows(10))]
    task = user_task(id="id", test="test.csv")
    test = task.split("test")

    def read(changed_rows):
        path = write_csv(tmp_path / "test.csv", ["id", "sentence"], changed_rows)
        return read_split(task, test, path)

    assert read(rows).index == [str(100 + k) for k in range(10)]
    for k, bad, message in ((3, "100", "id 'id' '100' is also the id of line 2; expected each id once"),
                            (4, " ", "id 'id' is empty; expected an id for every row"),
                            (5, "a\nb", "id 'id' 'a\\nb' holds a tab or line break"),
                            (6, "a\u2028b", "id 'id' 'a\\u2028b' holds a tab or line break")):
        changed = [list(row) for row in rows]
        changed[k][0] = bad
        with pytest.raises(GlueFormatError) as caught:
            read(changed)
        assert str(caught.value).startswith(f"{tmp_path / 'test.csv'}, line {k + 2}: {message}")
    rows[7][0] = "r\u00a07"  # a no-break space breaks no line: an id like any other
    assert read(rows).index[7] == "r\u00a07"


def test_json_ids_keep_their_value_as_text(tmp_path):
    path = tmp_path / "test.jsonl"
    ids = [7, 8.0, "r-9", 1e16]
    path.write_text("".join(json.dumps({"id": i, "sentence": s}) + "\n" for i, (s, _) in zip(ids, sst2_rows())))
    task = user_task("jsonl", id="id", test="test.jsonl")
    assert read_split(task, task.split("test"), path).index == ["7", "8", "r-9", "10000000000000000"]


def test_the_tsv_predictions_are_unquoted_like_glue_files():
    from fairseq_hire.workflow.predict import render

    rows = [{"id": '"r1"', "label": "pos", "probability": 0.75}, {"id": 'r"2', "label": "neg", "probability": 0.5}]
    assert render(rows, Path("out.tsv")) == 'id\tlabel\tprobability\n"r1"\tpos\t0.75\nr"2\tneg\t0.5\n'


@pytest.mark.parametrize("given, message", [(",", "an empty label"), ("y,,x", "an empty label"), ("", "an empty label")])
def test_the_labels_flag_refuses_empty_items(given, message, tmp_path, capsys):
    data = sst2_csv_folder(tmp_path)
    assert prepare_in_process(data, tmp_path / "out", "--labels", given) == 2
    assert message in capsys.readouterr().err


def test_the_labels_flag_strips_spaces_after_commas(tmp_path):
    data = sst2_csv_folder(tmp_path)
    assert prepare_in_process(data, tmp_path / "out", "--labels", "0, 1") == 0
    meta = json.loads((tmp_path / "out" / "own-bin" / "glue_prep.json").read_text())
    assert meta["label_names"] == ["0", "1"]


def test_unnamed_trailing_columns_of_a_spreadsheet_are_ignored(tmp_path):
    rows = [[s, label, "", ""] for s, label in sst2_rows()]
    path = write_csv(tmp_path / "train.csv", ["sentence", "label", "", ""], rows)
    assert read_train(user_task(), path).labels == [label for _, label in sst2_rows()]


def test_task_file_labels_must_be_labels_and_the_positive_label_may_be_a_number():
    with pytest.raises(GlueFormatError, match=r"'labels': None is not a label"):
        user_task(labels=[None, "x"], source=Path("task.json"))
    with pytest.raises(GlueFormatError, match=r"'labels': \['a'\] is not a label"):
        user_task(labels=[["a"], "x"], source=Path("task.json"))
    task = user_task(labels=[0, 1], metric="f1", positive_label=1)
    assert (task.labels, task.positive_label) == (("0", "1"), "1")


def test_a_task_described_by_flags_is_told_about_its_flags():
    with pytest.raises(GlueFormatError, match=r"--regression LOW HIGH \[5.0, 0.0\]"):
        user_task(regression=True, score_range=[5.0, 0.0])
    with pytest.raises(GlueFormatError, match="needs --positive-label"):
        user_task(metric="f1")
    with pytest.raises(GlueFormatError, match="needs 'positive_label'"):
        user_task(metric="f1", source=Path("task.json"))
