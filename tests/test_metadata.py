"""glue_prep.json through its one schema (glue_prep/metadata.py): what glue_prep and
glue_prep.subset write reads back field for field and is written again byte for byte; every
field of the wrong type is refused in one line naming the file and the field; and fine-tuning,
evaluation and prediction refuse a hand-edited record before they act on it."""
import dataclasses
import json
import shutil
import typing
from pathlib import Path

import pytest

from glue_prep.errors import GlueFormatError
from glue_prep.metadata import (METADATA_FILE, GlueMetadata, TrainSubset, metadata_file, read_metadata,
                                write_metadata)

pytestmark = pytest.mark.unit


def record_of(folder: Path) -> dict:
    return json.loads((folder / METADATA_FILE).read_text())


def edited_copy(source: Path, folder: Path, edit) -> Path:
    """A copy of the glue_prep folder `source` whose glue_prep.json is `edit`(its record)."""
    shutil.copytree(source, folder)
    record = record_of(folder)
    edit(record)
    (folder / METADATA_FILE).write_text(json.dumps(record, indent=2))
    return folder


@pytest.fixture(scope="module")
def rte_subset(rte_bin, tmp_path_factory) -> Path:
    from glue_prep.subset import make_train_subset

    return make_train_subset(rte_bin, 20, 3, tmp_path_factory.mktemp("subset") / "RTE-bin").folder


def test_glue_prep_outputs_read_back_and_write_byte_for_byte(rte_bin, rte_subset, tmp_path):
    for copy, folder in enumerate((rte_bin, rte_subset)):
        meta = read_metadata(folder)
        assert read_metadata(folder / METADATA_FILE) == meta
        (tmp_path / str(copy)).mkdir()
        written = write_metadata(tmp_path / str(copy), meta)
        assert written.read_bytes() == (folder / METADATA_FILE).read_bytes()
        assert read_metadata(written.parent) == meta
    full, subset = read_metadata(rte_bin), read_metadata(rte_subset)
    record = record_of(rte_bin)
    assert (full.task, full.label_names, full.splits, full.regression) == (
        "RTE", record["label_names"], record["splits"], False)
    assert full.dictionary.size == record["dictionary"]["size"] and full.train_subset is None
    assert "train_subset" not in record  # written only for a subset
    assert isinstance(subset.train_subset, TrainSubset) and subset.train_subset.size == subset.splits["train"] == 20
    assert subset.train_subset.full_train.rows == full.splits["train"]
    assert subset.label_counts["train"] == subset.train_subset.label_counts
    assert dataclasses.replace(subset, splits=full.splits, label_counts=full.label_counts,
                               over_length=full.over_length, train_subset=None) == full


def test_a_folder_without_a_record_is_refused_or_none_when_allowed(rte_bin, tmp_path):
    with pytest.raises(GlueFormatError) as e:
        read_metadata(tmp_path)
    assert str(e.value) == f"{tmp_path}: no {METADATA_FILE}; expected a task's binaries from glue_prep (<TASK>-bin)"
    assert read_metadata(tmp_path, missing_ok=True) is None
    with pytest.raises(GlueFormatError, match="not a folder; expected"):
        read_metadata(tmp_path / "absent", missing_ok=True)
    assert metadata_file(rte_bin) == metadata_file(rte_bin / METADATA_FILE) == rte_bin / METADATA_FILE


def wrong_value(kind):
    """A JSON value that is not of `kind`."""
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Union:
        return wrong_value(arguments[0])
    if dataclasses.is_dataclass(kind) or origin is dict:
        return ["an object expected"]
    if origin in (list, tuple):
        return "a list expected"
    return {str: 7, int: "7", float: "0.5", bool: 1}[kind]


def leaf_fields(record: dict, kind, prefix=()):
    """(keys, type) of every field of `record` the schema `kind` types, nested ones included."""
    hints = typing.get_type_hints(kind)
    for f in dataclasses.fields(kind):
        if f.name not in record:
            continue
        keys, hint = prefix + (f.name,), hints[f.name]
        yield keys, hint
        inner = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Union else hint
        value = record[f.name]
        if dataclasses.is_dataclass(inner) and isinstance(value, dict):
            yield from leaf_fields(value, inner, keys)
        elif typing.get_origin(inner) is dict and isinstance(value, dict):
            item = typing.get_args(inner)[1]
            for key, nested in value.items():
                yield keys + (key,), item
                if dataclasses.is_dataclass(item):
                    yield from leaf_fields(nested, item, keys + (key,))


def test_every_field_of_the_wrong_type_is_refused_in_one_line_naming_file_and_field(rte_bin, rte_subset, tmp_path):
    record = record_of(rte_subset)
    cases = list(leaf_fields(record, GlueMetadata))
    # the schema types every field glue_prep and glue_prep.subset write, and every one is tried
    assert {keys[0] for keys, _ in cases} == set(record) == {f.name for f in dataclasses.fields(GlueMetadata)}
    for keys, kind in cases:
        edited = json.loads(json.dumps(record))
        target = edited
        for key in keys[:-1]:
            target = target[key]
        bad = wrong_value(kind)
        target[keys[-1]] = bad
        path = tmp_path / METADATA_FILE
        path.write_text(json.dumps(edited))
        with pytest.raises(GlueFormatError) as e:
            read_metadata(path)
        message = str(e.value)
        assert message.startswith(f"{path}: {'.'.join(keys)} is {bad!r}; expected "), message
        assert "\n" not in message
    # the fields RTE leaves null are typed too
    for name, bad, expected in [("task_file", 3, "null or a string"), ("positive_label", ["1"], "null or a string"),
                                ("score_range", [0, 1, 2], "null or a list of 2 items, each a number"),
                                ("score_range", "0-5", "null or a list of 2 items, each a number"),
                                ("max_rows", True, "null or an integer"), ("num_classes", 2.0, "an integer")]:
        (tmp_path / METADATA_FILE).write_text(json.dumps({**record, name: bad}))
        with pytest.raises(GlueFormatError, match=f": {name} is .*; expected {expected}$"):
            read_metadata(tmp_path)


@pytest.mark.parametrize("text, expected", [
    ("{", "not valid JSON"),
    ("[1, 2]", r"holds \[1, 2\]; expected glue_prep's record of a task's binaries, a JSON object$"),
    ('{"task": "RTE", "task": "MRPC"}', "key 'task' appears twice"),
])
def test_a_record_that_is_not_a_json_object_is_refused(tmp_path, text, expected):
    (tmp_path / METADATA_FILE).write_text(text)
    with pytest.raises(GlueFormatError, match=expected) as e:
        read_metadata(tmp_path)
    assert str(e.value).startswith(str(tmp_path / METADATA_FILE))


def test_a_missing_field_is_named_and_older_records_read_with_defaults(rte_bin, tmp_path):
    record = record_of(rte_bin)
    (tmp_path / METADATA_FILE).write_text(json.dumps({k: v for k, v in record.items() if k != "splits"}))
    with pytest.raises(GlueFormatError, match=r"glue_prep.json: no splits; expected it in glue_prep's record"):
        read_metadata(tmp_path)
    # the first glue_prep wrote none of these fields: its records still read
    added_later = ["task_file", "metric", "positive_label", "target_scale", "score_range", "label_counts",
                   "max_positions", "truncated", "over_length"]
    (tmp_path / METADATA_FILE).write_text(json.dumps({k: v for k, v in record.items() if k not in added_later}))
    meta = read_metadata(tmp_path)
    assert (meta.truncated, meta.over_length, meta.label_counts, meta.target_scale) == (False, {}, {}, 1.0)
    (tmp_path / METADATA_FILE).write_text(json.dumps({**record, "from_a_newer_glue_prep": 1}))
    assert read_metadata(tmp_path) == read_metadata(rte_bin)


def test_a_subset_of_binaries_with_a_bad_record_is_refused(rte_bin, tmp_path):
    from glue_prep.subset import make_train_subset

    bad = edited_copy(rte_bin, tmp_path / "RTE-bin", lambda r: r.update(regression="no"))
    with pytest.raises(GlueFormatError, match=r"glue_prep.json: regression is 'no'; expected true or false"):
        make_train_subset(bad, 20, 1, tmp_path / "subset")
    assert not (tmp_path / "subset").exists()


def test_finetune_refuses_a_hand_edited_record_before_planning_a_run(rte_bin, tiny_pretrained, tmp_path, capsys):
    from fairseq_hire.workflow import finetune

    # a count typed as a string: the constant-prediction note would stop on it with a traceback
    bad = edited_copy(rte_bin, tmp_path / "RTE-bin", lambda r: r["label_counts"]["valid"].update(
        {name: str(count) for name, count in r["label_counts"]["valid"].items()}))
    save_dir = tmp_path / "run"
    assert finetune.main(["RTE", str(bad), str(tiny_pretrained), str(save_dir), "--dry-run"]) == 2
    out, err = capsys.readouterr()
    label = next(iter(record_of(rte_bin)["label_counts"]["valid"]))
    assert err.strip() == (f"finetune: error: {bad / METADATA_FILE}: label_counts.valid.{label} is "
                           f"{record_of(bad)['label_counts']['valid'][label]!r}; expected an integer")
    assert out == "" and not save_dir.exists()  # no fairseq-train command planned


@pytest.mark.parametrize("script", ["evaluate", "predict"])
def test_evaluate_and_predict_refuse_a_hand_edited_record_before_loading_the_model(script, rte_bin, tmp_path, capsys):
    from fairseq_hire.workflow import evaluation, predict

    # "false" is truthy: read as it was, the classifier's outputs would be scored as regression
    bad = edited_copy(rte_bin, tmp_path / "RTE-bin", lambda r: r.update(regression="false"))
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "checkpoint_best.pt").write_bytes(b"not loaded: the record is refused first")
    out = tmp_path / "out.jsonl"
    if script == "evaluate":
        code = evaluation.main([str(checkpoints), str(bad), "--out", str(out)])
    else:
        code = predict.main([str(checkpoints), str(bad), str(bad / METADATA_FILE), "--out", str(out)])
    assert code == 2 and not out.exists()
    assert capsys.readouterr().err.strip() == (
        f"{script}: error: {bad / METADATA_FILE}: regression is 'false'; expected true or false")
    with pytest.raises(GlueFormatError, match="regression is 'false'"):
        evaluation.read_glue_split(bad, "valid")


def test_the_comparison_refuses_a_hand_edited_record_before_any_run(rte_bin, tiny_pretrained, tmp_path, capsys):
    from fairseq_hire.compare.__main__ import main as compare

    bad = edited_copy(rte_bin, tmp_path / "RTE-bin", lambda r: r.update(regression="false"))
    out = tmp_path / "compare"
    assert compare(["RTE", str(bad), str(tiny_pretrained), str(out), "--heads", "stock", "--seeds", "1"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"compare: error: {bad / METADATA_FILE}: regression is 'false'; expected true or false")
    assert not (out / "runs").exists()  # no run claimed, trained or failed


def test_a_hostile_key_is_quoted_on_one_line(rte_bin, tmp_path):
    record = record_of(rte_bin)
    record["label_counts"]["valid"] = {"line\nbreak" + "x" * 100: "many"}
    (tmp_path / METADATA_FILE).write_text(json.dumps(record))
    with pytest.raises(GlueFormatError) as e:
        read_metadata(tmp_path)
    assert "\n" not in str(e.value) and "label_counts.valid.'line\\nbreak" in str(e.value)
    assert str(e.value).endswith("is 'many'; expected an integer")
