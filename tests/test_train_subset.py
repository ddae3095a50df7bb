"""Issue 28, item 2 (the data): glue_prep.subset draws a seeded training subset of a task's
binaries, stratified by label for classification, and writes it as a folder whose training
rows are exactly the chosen rows of the full binaries and whose other splits are the full
ones, byte for byte. Checked on real RTE (classification) and STS-B (regression) binaries."""
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import real_glue_task_dir, run_glue_prep

from glue_prep import GlueFormatError
from glue_prep.subset import ROWS_FILE, main, make_train_subset, stratified_allocation

pytestmark = pytest.mark.unit

TRAIN_FILES = {"glue_prep.json", "input0/train.bin", "input0/train.idx", "input1/train.bin", "input1/train.idx",
               "label/train.bin", "label/train.idx", "label/train.label"}


@pytest.fixture(scope="module")
def stsb_bin(tmp_path_factory) -> Path:
    """The first 160 rows of each split of the real STS-B files, binarised by glue_prep."""
    return run_glue_prep(real_glue_task_dir("STS-B"), "STS-B", tmp_path_factory.mktemp("glue"),
                         "--max-rows", "160", "--workers", "1")


@pytest.fixture(params=["RTE", "STS-B"])
def data_bin(request) -> Path:
    return request.getfixturevalue("rte_bin" if request.param == "RTE" else "stsb_bin")


def rows_of(folder: Path, name: str, split: str = "train"):
    """Every row of folder/name/split, read back through fairseq's reader."""
    from fairseq.data import data_utils

    dataset = data_utils.load_indexed_dataset(str(folder / name / split), None)
    return [dataset[i] for i in range(len(dataset))]


def classes_of(folder: Path) -> np.ndarray:
    return np.array([int(row[0]) for row in rows_of(folder, "label")])


def files_of(folder: Path):
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def meta_of(folder: Path) -> dict:
    return json.loads((folder / "glue_prep.json").read_text())


def recorded_rows(folder: Path) -> np.ndarray:
    record = meta_of(folder)["train_subset"]
    text = (folder / record["rows_file"]).read_bytes()
    assert hashlib.sha256(text).hexdigest() == record["rows_sha256"]
    return np.array([int(line) for line in text.split()])


def assert_no_temporary(parent: Path):
    assert [p.name for p in parent.iterdir() if ".tmp-" in p.name] == []


# (1) the subset's rows are the full binaries' rows at the recorded indices

def test_every_row_equals_the_full_row_at_its_recorded_index(data_bin, tmp_path):
    info = make_train_subset(data_bin, 37, 5, tmp_path / "subset")
    subset, rows = info.folder, recorded_rows(info.folder)
    assert np.array_equal(rows, info.rows) and len(rows) == 37
    assert np.all(np.diff(rows) > 0), "the chosen rows keep their original order"
    for name in ("input0", "input1") + (() if meta_of(data_bin)["regression"] else ("label",)):
        full, part = rows_of(data_bin, name), rows_of(subset, name)
        assert len(part) == 37
        for k, row in enumerate(rows):
            assert np.array_equal(part[k].numpy(), full[row].numpy()), (name, k, row)
        # same dtype and format as the full binaries: the same bytes per token
        bytes_per_token = (data_bin / name / "train.bin").stat().st_size / sum(len(r) for r in full)
        assert (subset / name / "train.bin").stat().st_size == bytes_per_token * sum(len(r) for r in part)
        assert (subset / name / "dict.txt").read_bytes() == (data_bin / name / "dict.txt").read_bytes()
    if meta_of(data_bin)["regression"]:
        full = (data_bin / "label" / "train.label").read_text().splitlines()
        assert (subset / "label" / "train.label").read_text().splitlines() == [full[r] for r in rows]

    meta, record = meta_of(subset), meta_of(subset)["train_subset"]
    assert meta["splits"]["train"] == 37 and meta["splits"]["valid"] == meta_of(data_bin)["splits"]["valid"]
    assert (record["size"], record["seed"], record["source"]) == (37, 5, str(data_bin.resolve()))
    assert record["stratified"] is not meta["regression"]
    assert record["full_train"]["rows"] == 160


def test_the_whole_training_set_is_the_full_binaries(data_bin, tmp_path):
    info = make_train_subset(data_bin, 160, 3, tmp_path / "all")
    assert np.array_equal(info.rows, np.arange(160))
    for relative in files_of(data_bin) - {"glue_prep.json"}:
        assert (info.folder / relative).read_bytes() == (data_bin / relative).read_bytes(), relative


# (2) stratified by label, by largest remainder

@pytest.mark.parametrize("size", [2, 3, 17, 80, 159])
def test_class_counts_are_proportional(rte_bin, tmp_path, size):
    info = make_train_subset(rte_bin, size, 1, tmp_path / "subset")
    full = classes_of(rte_bin)
    chosen = classes_of(info.folder)
    assert np.array_equal(chosen, full[info.rows])
    for label in np.unique(full):
        share = size * np.mean(full == label)
        assert abs(np.sum(chosen == label) - share) < 1, (label, np.sum(chosen == label), share)
    names = meta_of(info.folder)["label_names"]
    assert sum(info.label_counts.values()) == size and set(info.label_counts) == set(names)
    meta = meta_of(info.folder)
    assert meta["label_counts"]["train"] == info.label_counts == meta["train_subset"]["label_counts"]


def test_allocation_by_largest_remainder_with_one_row_per_class():
    assert stratified_allocation([5, 3, 2], 7) == [4, 2, 1]  # shares 3.5, 2.1, 1.4
    assert stratified_allocation([50, 50], 3) == [2, 1]  # a tie goes to the earlier class
    assert stratified_allocation([1, 99], 10) == [1, 9]  # share 0.1, still one row
    assert stratified_allocation([1, 1, 1, 97], 4) == [1, 1, 1, 1]
    assert stratified_allocation([7, 13], 20) == [7, 13]


# (3) the same rows for a seed whatever else varies; other rows for another seed

def test_same_seed_same_rows_other_seeds_other_rows(data_bin, tmp_path):
    first = make_train_subset(data_bin, 40, 7, tmp_path / "a")
    moved = tmp_path / "elsewhere" / data_bin.name
    shutil.copytree(data_bin, moved)
    again = make_train_subset(moved, 40, 7, tmp_path / "b" / "c")
    assert np.array_equal(first.rows, again.rows)
    assert first.record["rows_sha256"] == again.record["rows_sha256"]
    assert (first.folder / "input0" / "train.bin").read_bytes() == (again.folder / "input0" / "train.bin").read_bytes()
    draws = {tuple(make_train_subset(data_bin, 40, seed, tmp_path / f"seed{seed}").rows) for seed in range(5)}
    assert len(draws) == 5


# (4) the other splits are the full ones, byte for byte

def test_other_splits_are_carried_over_unchanged(data_bin, tmp_path):
    subset = make_train_subset(data_bin, 20, 2, tmp_path / "subset").folder
    carried = files_of(data_bin) - TRAIN_FILES
    assert any("valid" in f for f in carried) and any("test" in f for f in carried)
    assert files_of(subset) == files_of(data_bin) | {ROWS_FILE}
    for relative in carried:
        assert (subset / relative).read_bytes() == (data_bin / relative).read_bytes(), relative


# (5) fairseq's sentence_prediction task and finetune.py read the subset

def test_fairseq_task_loads_the_subset(data_bin, tmp_path):
    from fairseq import tasks
    from fairseq_setup import finetune_args

    from fairseq_hire.workflow.finetune import check_data, count_train_examples
    from fairseq_hire.workflow.recipes import recipe

    regression = meta_of(data_bin)["regression"]
    info = make_train_subset(data_bin, 24, 9, tmp_path / "subset")
    loaded = {}
    for folder in (data_bin, info.folder):
        task = tasks.setup_task(finetune_args(folder, num_classes=1 if regression else 2))
        task.load_dataset("train")
        task.load_dataset("valid")
        loaded[folder] = task.dataset("train")
    full, part = loaded[data_bin], loaded[info.folder]
    assert len(part) == 24
    for k, row in enumerate(info.rows):
        assert np.array_equal(part[k]["net_input.src_tokens"].numpy(), full[row]["net_input.src_tokens"].numpy())
        assert np.array_equal(np.asarray(part[k]["target"]), np.asarray(full[row]["target"]))
    # the recipe's budget follows the subset: finetune.py counts its rows
    task_recipe = recipe(meta_of(data_bin)["task"], info.folder)
    check_data(task_recipe, info.folder, 512)
    assert count_train_examples(info.folder) == 24


# idempotent: reused when made from the same arguments and data, rebuilt otherwise

def test_a_second_call_reuses_the_folder(rte_bin, tmp_path):
    first = make_train_subset(rte_bin, 30, 4, tmp_path / "subset")
    stamp = (tmp_path / "subset" / "glue_prep.json").stat().st_mtime_ns, (tmp_path / "subset").stat().st_ino
    again = make_train_subset(rte_bin, 30, 4, tmp_path / "subset")
    assert again.reused and not first.reused
    assert np.array_equal(first.rows, again.rows) and first.record == again.record
    assert ((tmp_path / "subset" / "glue_prep.json").stat().st_mtime_ns, (tmp_path / "subset").stat().st_ino) == stamp


def test_other_arguments_or_changed_data_rebuild_the_folder(rte_bin, tmp_path):
    source = tmp_path / "RTE-bin"
    shutil.copytree(rte_bin, source)
    out = tmp_path / "subset"
    first = make_train_subset(source, 30, 4, out)
    other_seed = make_train_subset(source, 30, 5, out)
    assert not other_seed.reused and meta_of(out)["train_subset"]["seed"] == 5
    assert np.array_equal(recorded_rows(out), other_seed.rows) and not np.array_equal(first.rows, other_seed.rows)
    assert np.array_equal(classes_of(out), classes_of(source)[other_seed.rows])

    # the data rebuilt at the same path (here: other valid labels): the subset follows it
    valid = source / "label" / "valid.bin"
    flipped = bytearray(valid.read_bytes())
    flipped[0] = flipped[0] ^ 1
    valid.unlink()  # glue_prep replaces files, never rewrites them: the subset's hard link keeps the old one
    valid.write_bytes(bytes(flipped))
    rebuilt = make_train_subset(source, 30, 5, out)
    assert not rebuilt.reused and rebuilt.record["source_sha256"] != other_seed.record["source_sha256"]
    assert (out / "label" / "valid.bin").read_bytes() == bytes(flipped)
    assert_no_temporary(tmp_path)


# (6) refusals: one line naming the folder and what was expected; nothing written

@pytest.mark.parametrize("size, expected", [
    (161, "expected an integer from 2 (at least one row of each of its 2 classes) to 160 (its training rows)"),
    (1, "expected an integer from 2 (at least one row of each of its 2 classes) to 160"),
    (0, "expected an integer from 2"),
])
def test_sizes_out_of_range_are_refused(rte_bin, tmp_path, size, expected):
    with pytest.raises(GlueFormatError) as e:
        make_train_subset(rte_bin, size, 1, tmp_path / "subset")
    assert str(e.value).startswith(f"{rte_bin}: a training subset of {size} rows: ") and expected in str(e.value)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "subset").exists()
    assert_no_temporary(tmp_path)


def test_regression_sizes_need_one_row(stsb_bin, tmp_path):
    for size in (0, 161):
        with pytest.raises(GlueFormatError, match=r"expected an integer from 1 \(at least one row\) to 160"):
            make_train_subset(stsb_bin, size, 1, tmp_path / "subset")
    assert not (tmp_path / "subset").exists()
    assert len(make_train_subset(stsb_bin, 1, 1, tmp_path / "subset").rows) == 1


def test_folders_that_are_not_glue_prep_binaries_are_refused(rte_bin, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    no_train = tmp_path / "RTE-bin"
    shutil.copytree(rte_bin, no_train)
    for path in no_train.glob("input0/train.*"):
        path.unlink()
    cases = [(empty, f"{empty}: no glue_prep.json; expected a task's binaries from glue_prep"),
             (tmp_path / "missing", f"{tmp_path / 'missing'}: not a folder; expected a task's binaries"),
             (no_train, f"{no_train}: no training split (input0/train.bin and .idx); expected")]
    for folder, message in cases:
        with pytest.raises(GlueFormatError) as e:
            make_train_subset(folder, 10, 1, tmp_path / "subset")
        assert str(e.value).startswith(message)
    assert not (tmp_path / "subset").exists()


@pytest.mark.parametrize("task, damaged, expected", [
    ("RTE", "input1/train.bin", "input1/train.bin: row "),
    ("RTE", "input1/train.idx", "input1/train.idx: cannot read this fairseq indexed dataset"),
    ("RTE", "label/train.idx", "label/train.idx: cannot read this fairseq indexed dataset"),
    ("STS-B", "label/train.label", "label/train.label: 80 lines; expected 160, one per row of input0/train"),
])
def test_damaged_training_files_are_refused(request, tmp_path, task, damaged, expected):
    source = tmp_path / f"{task}-bin"
    shutil.copytree(request.getfixturevalue("rte_bin" if task == "RTE" else "stsb_bin"), source)
    path = source / damaged
    data = path.read_bytes()
    path.write_bytes(b"".join(data.splitlines(keepends=True)[:80]) if damaged.endswith(".label") else data[:100])
    with pytest.raises(GlueFormatError) as e:
        make_train_subset(source, 150, 1, tmp_path / "subset")
    assert str(e.value).startswith(f"{source}/{expected}") and "\n" not in str(e.value)
    assert not (tmp_path / "subset").exists()
    assert_no_temporary(tmp_path)


@pytest.mark.parametrize("removed", ["input1/train.bin", "input1/train.idx"])
def test_half_of_the_second_sentence_is_refused_as_finetune_refuses_it(rte_bin, tmp_path, removed):
    """The subset read the training split through its own checks, which took input1 only where both
    of its files were there: half a pair made a subset of premises alone, which finetune.py refuses."""
    from fairseq_hire.workflow.finetune import count_train_examples

    source = tmp_path / "RTE-bin"
    shutil.copytree(rte_bin, source)
    (source / removed).unlink()
    for read in (lambda: make_train_subset(source, 50, 1, tmp_path / "subset"),
                 lambda: count_train_examples(source)):
        with pytest.raises(GlueFormatError) as e:
            read()
        assert str(e.value).startswith(f"{source}/input1/train.idx: ") and "\n" not in str(e.value)
    assert not (tmp_path / "subset").exists()


def test_an_output_that_is_not_a_subset_is_left_alone(rte_bin, tmp_path):
    other = tmp_path / "results"
    other.mkdir()
    (other / "run.json").write_text("{}")
    with pytest.raises(GlueFormatError, match="results: exists and is not a training subset made by glue_prep.subset"):
        make_train_subset(rte_bin, 10, 1, other)
    assert files_of(other) == {"run.json"}
    with pytest.raises(GlueFormatError, match="is the data folder or inside it"):
        make_train_subset(rte_bin, 10, 1, rte_bin / "small")
    assert not (rte_bin / "small").exists()
    with pytest.raises(GlueFormatError, match="seed -1: expected an integer >= 0"):
        make_train_subset(rte_bin, 10, -1, tmp_path / "subset")


def test_command_line(rte_bin, tmp_path, capsys):
    assert main([str(rte_bin), "12", "3", str(tmp_path / "subset")]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'subset'}: 12 of 160 training rows, seed 3 (")
    assert main([str(rte_bin), "12", "3", str(tmp_path / "subset")]) == 0
    assert capsys.readouterr().out.startswith(f"reused {tmp_path / 'subset'}")
    assert main([str(rte_bin), "500", "3", str(tmp_path / "big")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"glue_prep.subset: error: {rte_bin}: a training subset of 500 rows")
    assert not (tmp_path / "big").exists() and os.listdir(tmp_path) == ["subset"]


def test_with_max_positions_the_draw_leaves_out_the_rows_fairseq_train_would_skip(data_bin, tmp_path):
    """fairseq-train skips training rows longer than the model's positions: a subset holding them
    trained on fewer rows than its record says. Drawn among the rows that fit, it trains on N."""
    tokens = [np.array([len(row) for row in rows_of(data_bin, name)]) for name in ("input0", "input1")]
    taken = tokens[0] + tokens[1] + 2  # <s> A </s> </s> B </s>; each row's tokens hold its own </s>
    limit = int(np.median(taken))
    info = make_train_subset(data_bin, 40, 5, tmp_path / "fit", max_positions=limit)
    assert len(info.rows) == 40 and (taken[info.rows] <= limit).all()
    record = meta_of(info.folder)["train_subset"]
    assert record["max_positions"] == limit and record["over_length_rows"] == int((taken > limit).sum()) > 0
    if not meta_of(data_bin)["regression"]:
        assert len(np.unique(classes_of(info.folder))) == 2  # still stratified, among the rows that fit
    # where every row fits, the draw is the draw over every row
    assert np.array_equal(make_train_subset(data_bin, 40, 5, tmp_path / "all", max_positions=int(taken.max())).rows,
                          make_train_subset(data_bin, 40, 5, tmp_path / "plain").rows)
    fitting = int((taken <= limit).sum())
    with pytest.raises(GlueFormatError, match=f"to {fitting} \\(its training rows that fit {limit} positions\\)"):
        make_train_subset(data_bin, fitting + 1, 5, tmp_path / "too-many", max_positions=limit)
    assert not (tmp_path / "too-many").exists()


def test_a_run_that_has_trained_on_a_subset_keeps_its_rows_when_the_data_changes(rte_bin, tiny_pretrained, tmp_path):
    """The data at the same path binarised again from other rows: a stopped run resumed on a newly
    drawn subset, its first updates made on rows its save dir no longer recorded. A change that
    leaves the training rows as they were (a file beside them) is no reason to refuse."""
    from fairseq_hire.workflow.finetune import build_command, build_parser
    from fairseq_hire.workflow.same_run import REQUEST_FILE

    data, save = tmp_path / "RTE-bin", tmp_path / "save"
    shutil.copytree(rte_bin, data)
    args, passthrough = build_parser().parse_known_args(
        ["RTE", str(data), str(tiny_pretrained), str(save), "--device", "cpu", "--train-size", "50"])
    build_command(args, passthrough)
    subset = save / "train_subset"
    trained_on = {name: (subset / name).read_bytes() for name in ("input0/train.bin", "input1/train.bin", ROWS_FILE)}
    (save / "checkpoint_last.pt").write_bytes(b"a run has trained here")
    (save / REQUEST_FILE).write_text("{}")  # a run of finetune.py's: the save dir records it
    (data / "notes.txt").write_text("a file beside the training rows")
    build_command(args, passthrough)
    assert {name: (subset / name).read_bytes() for name in trained_on} == trained_on
    shutil.rmtree(data)
    shutil.copytree(run_glue_prep(real_glue_task_dir("RTE"), "RTE", tmp_path / "again", "--max-rows", "150",
                                  "--workers", "1"), data)  # other training rows at the same path
    with pytest.raises(GlueFormatError, match=r"train_subset: a run has trained on the subset here, and these data "
                                              r"and arguments draw other training rows \(its record's source_sha256, "
                                              r"rows_sha256 differ\)"):
        build_command(args, passthrough)
    assert {name: (subset / name).read_bytes() for name in trained_on} == trained_on
    shutil.rmtree(subset)  # removing the subset is no way around it
    with pytest.raises(GlueFormatError, match=r"train_subset: missing, and a run has trained on the subset kept here"):
        build_command(args, passthrough)
    (save / "checkpoint_last.pt").unlink()  # nothing trained yet: the subset follows the data
    build_command(args, passthrough)
    assert (subset / ROWS_FILE).read_bytes() != trained_on[ROWS_FILE]
