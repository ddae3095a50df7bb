"""Issue 3, point 2 and the second half of point 4: the GLUE tasks without a real file here
(MNLI, QQP, QNLI, WNLI, AX) on small files written in their exact GLUE format (header names,
column counts, split file names as GLUE distributes them), checked against the recipe's column
map and, where the recipe covers the task, against fairseq's recipe itself.

The sentences are real: pairs from GLUE's RTE train (shipped with the repo).
"""
import json
from pathlib import Path

import pytest

from conftest import SHIPPED_GLUE, real_glue_task_dir
from test_glue_prep_helpers import (PREPARE_SH, assert_rows_equal, assert_same_as_recipe,
                                    gpt2_tokenizer, load_rows, ours, reference, rte_pairs, run,
                                    truncated_copy)

from glue_prep.tasks.glue import (MNLI_DEV_HEADER, MNLI_TEST_HEADER, MNLI_TRAIN_HEADER, QQP_HEADER,
                                  TASKS)

PAIRS = rte_pairs()


def _write(path: Path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (["\t".join(header)] if header else []) + ["\t".join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _parse(s):  # shaped like MNLI's *_binary_parse / *_parse columns
    words = s.split()
    return "( " + " ".join(words) + " )", "(ROOT (S " + " ".join(f"(X {w})" for w in words) + "))"


MNLI_TRAIN_LABELS = ["contradiction"] * 6 + ["neutral"] * 5 + ["entailment"] * 4


def write_mnli(root: Path) -> Path:
    d = root / "MNLI"
    genres = ["government", "fiction", "slate", "telephone", "travel"]

    def row(i, s1, s2):
        b1, p1 = _parse(s1)
        b2, p2 = _parse(s2)
        return [i, 1000 + i, f"{1000 + i}e", genres[i % 5], b1, b2, p1, p2, s1, s2]

    _write(d / "train.tsv", MNLI_TRAIN_HEADER,
           [row(i, s1, s2) + [lab, lab] for i, ((s1, s2, _), lab)
            in enumerate(zip(PAIRS, MNLI_TRAIN_LABELS))])
    dev_labels = ["neutral", "entailment", "contradiction", "entailment"]
    for name, offset in (("dev_matched.tsv", 20), ("dev_mismatched.tsv", 30)):
        _write(d / name, MNLI_DEV_HEADER,
               [row(i, *PAIRS[offset + i][:2]) + [lab] * 5 + [lab]
                for i, lab in enumerate(dev_labels)])
    for name, offset in (("test_matched.tsv", 40), ("test_mismatched.tsv", 50)):
        _write(d / name, MNLI_TEST_HEADER,
               [row(i, *PAIRS[offset + i][:2]) for i in range(5 if offset == 40 else 6)])
    return d


def write_qqp(root: Path, bad_rows=True) -> Path:
    d = root / "QQP"
    rows = [[100 + i, 2 * i, 2 * i + 1, s1, s2, int(len(s1) % 3 == 0)]
            for i, (s1, s2, _) in enumerate(PAIRS[60:80])]
    rows[0][5], rows[1][5] = 0, 1  # both labels present
    if bad_rows:
        # as in the original QQP: a row missing its second question, a row with a stray tab
        rows.insert(3, [999, 1, 2, "What is GLUE?", 0])
        rows.insert(7, [998, 3, 4, "Why is the sky blue?", "Why", "is it blue?", 1])
    _write(d / "train.tsv", QQP_HEADER, rows)
    _write(d / "dev.tsv", QQP_HEADER,
           [[200 + i, 5 * i, 5 * i + 1, s1, s2, i % 2] for i, (s1, s2, _) in enumerate(PAIRS[80:86])])
    _write(d / "test.tsv", ("id", "question1", "question2"),
           [[i, s1, s2] for i, (s1, s2, _) in enumerate(PAIRS[86:93])])
    return d


def write_qnli(root: Path) -> Path:
    d = root / "QNLI"
    h = ("index", "question", "sentence", "label")
    _write(d / "train.tsv", h, [[i, s2, s1, lab] for i, (s1, s2, lab) in enumerate(PAIRS[100:115])])
    _write(d / "dev.tsv", h, [[i, s2, s1, lab] for i, (s1, s2, lab) in enumerate(PAIRS[115:121])])
    _write(d / "test.tsv", h[:3], [[i, s2, s1] for i, (s1, s2, _) in enumerate(PAIRS[121:126])])
    return d


def write_wnli(root: Path) -> Path:
    d = root / "WNLI"
    h = ("index", "sentence1", "sentence2", "label")
    lab = lambda l: "1" if l == "entailment" else "0"  # noqa: E731
    _write(d / "train.tsv", h, [[i, s1, s2, lab(l)] for i, (s1, s2, l) in enumerate(PAIRS[130:142])])
    _write(d / "dev.tsv", h, [[i, s1, s2, lab(l)] for i, (s1, s2, l) in enumerate(PAIRS[142:146])])
    _write(d / "test.tsv", h[:3], [[i, s1, s2] for i, (s1, s2, _) in enumerate(PAIRS[146:151])])
    return d


def write_ax(root: Path, where="diagnostic/diagnostic.tsv") -> Path:
    path = root / where
    _write(path, ("index", "sentence1", "sentence2"),
           [[i, s1, s2] for i, (s1, s2, _) in enumerate(PAIRS[160:168])])
    return path


def test_task_table_matches_fairseq_recipe_column_map():
    """Our column map is the recipe's (read from the installed preprocess_GLUE_tasks.sh)."""
    import re

    from fairseq_recipe import fairseq_examples_dir

    text = (fairseq_examples_dir() / "preprocess_GLUE_tasks.sh").read_text()
    for task in ("QQP", "MNLI", "QNLI", "MRPC", "RTE", "STS-B", "SST-2", "CoLA"):
        block = re.search(r'"\$TASK" = "%s"\s*\]\s*then(.*?)(?:elif|fi)' % re.escape(task),
                          text, re.S).group(1)
        cols = lambda name: [int(x) - 1 for x in  # noqa: E731
                             re.search(name + r"=\(\s*([\d ]+)\)", block).group(1).split()]
        spec = TASKS[task]
        train, test = spec.split("train"), spec.split("test")
        assert list(train.inputs) == cols(r"\bINPUT_COLUMNS")
        assert list(test.inputs) == cols(r"TEST_INPUT_COLUMNS")
        assert train.label == int(re.search(r"\bLABEL_COLUMN=(\d+)", block).group(1)) - 1
        if task == "MNLI":
            assert spec.split("valid").label == int(
                re.search(r"DEV_LABEL_COLUMN=(\d+)", block).group(1)) - 1
    # WNLI is absent from the recipe; its GLUE format is RTE's
    assert "WNLI" not in text
    assert TASKS["WNLI"].split("train").inputs == TASKS["RTE"].split("train").inputs


def test_mnli_format_equals_recipe(tmp_path):
    write_mnli(tmp_path / "glue")
    out = ours(tmp_path / "glue", "MNLI", tmp_path / "ours")
    ref = reference(tmp_path / "glue", "MNLI", tmp_path / "ref")
    files = {str(f) for f in assert_same_as_recipe(out, ref)}
    # matched/mismatched: valid/valid1, test/test1, as the recipe names them
    for split in ("train", "valid", "valid1", "test", "test1"):
        assert f"input0/{split}.bin" in files and f"input1/{split}.bin" in files
    assert "label/valid1.bin" in files and "label/test.bin" not in files
    meta = json.loads((out / "glue_prep.json").read_text())
    assert meta["splits"] == {"train": 15, "valid": 4, "valid1": 4, "test": 5, "test1": 6}
    assert meta["test_splits"] == {"test": "MNLI-m", "test1": "MNLI-mm"}
    assert meta["num_classes"] == 3
    # frequency order of the train labels (6 / 5 / 4): fairseq's released MNLI class order
    assert meta["label_names"] == ["contradiction", "neutral", "entailment"]
    assert (out / "test.index").read_text().split() == [str(i) for i in range(5)]
    assert (out / "test1.index").read_text().split() == [str(i) for i in range(6)]
    # input1 of the first train row is sentence2 (column 10), not a parse column
    tok = gpt2_tokenizer()
    row0 = load_rows(out / "input1" / "train")[0]
    assert tok.decode(" ".join(_dict_symbols(out)[i] for i in row0[:-1])) == PAIRS[0][1]


def _dict_symbols(out):
    from fairseq.data import Dictionary

    return Dictionary.load(str(out / "input0" / "dict.txt")).symbols


def test_qqp_format_equals_recipe_and_reports_dropped_rows(tmp_path):
    write_qqp(tmp_path / "glue")
    messages = []
    out = ours(tmp_path / "glue", "QQP", tmp_path / "ours", log=messages.append)
    ref = reference(tmp_path / "glue", "QQP", tmp_path / "ref")
    assert_same_as_recipe(out, ref)  # the recipe's awk NF==6 filter, reproduced
    meta = json.loads((out / "glue_prep.json").read_text())
    assert meta["splits"] == {"train": 20, "valid": 6, "test": 7}
    assert meta["dropped_rows"] == {"train": 2}
    text = "\n".join(messages)
    assert "dropped 2 rows" in text and "train.tsv" in text and "lines 5, 9" in text


def test_qqp_test_split_column_count_is_an_error(tmp_path):
    """Only train/dev rows are filtered (as in the recipe); a bad test row is refused."""
    from glue_prep import GlueFormatError

    d = write_qqp(tmp_path / "glue", bad_rows=False)
    with open(d / "test.tsv", "a") as f:
        f.write("7\tonly one question\n")
    with pytest.raises(GlueFormatError, match=r"test\.tsv, line 9: got 2 fields; expected 3"):
        ours(tmp_path / "glue", "QQP", tmp_path / "ours")
    assert not list((tmp_path / "ours").glob("*QQP*")) if (tmp_path / "ours").exists() else True


def test_qnli_format_equals_recipe(tmp_path):
    write_qnli(tmp_path / "glue")
    out = ours(tmp_path / "glue", "QNLI", tmp_path / "ours")
    ref = reference(tmp_path / "glue", "QNLI", tmp_path / "ref")
    assert_same_as_recipe(out, ref)
    meta = json.loads((out / "glue_prep.json").read_text())
    assert set(meta["label_names"]) == {"entailment", "not_entailment"}
    assert meta["splits"] == {"train": 15, "valid": 6, "test": 5}


def test_wnli_equals_recipe_column_map(tmp_path):
    """fairseq's recipe has no WNLI. Its GLUE format is RTE's (index sentence1 sentence2
    label; columns 2,3 label 4), so the recipe run on the WNLI files as 'RTE' is the reference."""
    write_wnli(tmp_path / "glue")
    out = ours(tmp_path / "glue", "WNLI", tmp_path / "ours")
    (tmp_path / "as_rte").mkdir()
    (tmp_path / "glue" / "WNLI").rename(tmp_path / "as_rte" / "RTE")
    ref = reference(tmp_path / "as_rte", "RTE", tmp_path / "ref")
    assert_same_as_recipe(out, ref)
    meta = json.loads((out / "glue_prep.json").read_text())
    assert meta["in_fairseq_recipe"] is False
    assert meta["test_splits"] == {"test": "WNLI"}
    assert sorted(meta["label_names"]) == ["0", "1"]


def test_ax_inputs_equal_recipe_test_path(tmp_path):
    """AX (test only, index sentence1 sentence2) is encoded as the recipe encodes an RTE-format
    test file; its label dictionary is MNLI's (the model scoring it is an MNLI model)."""
    glue = tmp_path / "glue"
    write_mnli(glue)
    ax = write_ax(glue)
    mnli = ours(glue, "MNLI", tmp_path / "ours")
    out = ours(glue, "AX", tmp_path / "ours")
    # reference: an RTE-format folder whose test.tsv is the AX file
    rte = tmp_path / "as_rte" / "RTE"
    truncated_copy(SHIPPED_GLUE / "RTE", rte, 20)
    (rte / "test.tsv").write_bytes(ax.read_bytes())
    ref = reference(rte.parent, "RTE", tmp_path / "ref")
    for k in (0, 1):
        assert_rows_equal(out / f"input{k}" / "test", ref / f"input{k}" / "test")
        assert (out / f"input{k}" / "test.bin").read_bytes() == (ref / f"input{k}" / "test.bin").read_bytes()
        assert sorted(p.name for p in (out / f"input{k}").iterdir()) == ["dict.txt", "test.bin", "test.idx"]
    assert (out / "label" / "dict.txt").read_bytes() == (mnli / "label" / "dict.txt").read_bytes()
    meta = json.loads((out / "glue_prep.json").read_text())
    assert meta["splits"] == {"test": 8} and meta["test_splits"] == {"test": "AX"}
    assert meta["num_classes"] == 3 and meta["label_names"] == ["contradiction", "neutral", "entailment"]
    assert meta["label_dictionary_source"].endswith("MNLI-bin/label/dict.txt")
    assert (out / "test.index").read_text().split() == [str(i) for i in range(8)]


def test_ax_label_dict_without_mnli_bin(tmp_path):
    """No MNLI-bin: built from MNLI/train.tsv's labels (what the recipe would build); no MNLI at
    all: fairseq's released MNLI class order, said in the metadata. AX.tsv is found under
    AX/ as well as diagnostic/."""
    glue = tmp_path / "glue"
    write_mnli(glue)
    write_ax(glue, "AX/AX.tsv")
    out = ours(glue, "AX", tmp_path / "a")
    mnli = ours(glue, "MNLI", tmp_path / "m")
    assert (out / "label" / "dict.txt").read_bytes() == (mnli / "label" / "dict.txt").read_bytes()
    assert json.loads((out / "glue_prep.json").read_text())["label_dictionary_source"].endswith("train.tsv")

    bare = tmp_path / "bare"
    write_ax(bare)
    messages = []
    out = ours(bare, "AX", tmp_path / "b", log=messages.append)
    meta = json.loads((out / "glue_prep.json").read_text())
    assert meta["label_names"] == ["contradiction", "neutral", "entailment"]
    assert "released MNLI" in "\n".join(messages)
    lines = (out / "label" / "dict.txt").read_text().split("\n")
    assert [l.split()[0] for l in lines[:3]] == ["contradiction", "neutral", "entailment"]


def test_all_tasks_through_bash_entry_point(tmp_path):
    """ALL on a glue_data folder holding every GLUE task (real files cut to 40 rows where they
    exist here, the exact-format files above for the rest): ten <TASK>-bin folders, AX last
    with MNLI's label dictionary."""
    glue = tmp_path / "glue_data"
    for task in ("CoLA", "SST-2", "MRPC", "STS-B", "RTE"):
        truncated_copy(real_glue_task_dir(task), glue / task, 40)
    write_mnli(glue), write_qqp(glue), write_qnli(glue), write_wnli(glue), write_ax(glue)
    proc = run(["bash", PREPARE_SH, glue, "ALL", tmp_path / "out", "--workers", "2"])
    assert proc.returncode == 0, proc.stderr
    built = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert built == sorted(f"{t}-bin" for t in TASKS)
    for task, spec in TASKS.items():
        meta = json.loads((tmp_path / "out" / f"{task}-bin" / "glue_prep.json").read_text())
        assert meta["task"] == task and meta["num_inputs"] == spec.num_inputs
        assert set(meta["splits"]) == {s.name for s in spec.splits}
        for split in meta["test_splits"]:
            index = (tmp_path / "out" / f"{task}-bin" / f"{split}.index").read_text().split("\n")
            assert len(index) - 1 == meta["splits"][split]
    ax = tmp_path / "out" / "AX-bin" / "label" / "dict.txt"
    assert ax.read_bytes() == (tmp_path / "out" / "MNLI-bin" / "label" / "dict.txt").read_bytes()
