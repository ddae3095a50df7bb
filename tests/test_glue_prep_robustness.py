"""Issue 3, point 5: bad or unusual input is either handled as GLUE's own loaders handle it
(and then, where the recipe covers it, gives the recipe's bytes) or refused with a message
naming file, line and what was expected, and a non-zero exit; a failed or interrupted run
leaves no <TASK>-bin (nor its temp folder) behind."""
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import SHIPPED_GLUE, real_glue_task_dir
from test_glue_prep_helpers import (PREPARE_SH, assert_same_as_recipe, gpt2_tokenizer, load_rows,
                                    ours, reference, run, truncated_copy)

import glue_prep.binarize
from glue_prep import GlueFormatError, OutputExistsError

ROWS = 40


@pytest.fixture
def rte(tmp_path) -> Path:
    """A glue_data folder with RTE: GLUE's real RTE files, first 40 rows of each."""
    return truncated_copy(SHIPPED_GLUE / "RTE", tmp_path / "glue" / "RTE", ROWS)


def edit_line(path: Path, lineno: int, new: str):
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[lineno - 1] = new
    path.write_text("\n".join(lines), encoding="utf-8")


def line(path: Path, lineno: int) -> str:
    return path.read_text(encoding="utf-8").split("\n")[lineno - 1]


def assert_nothing_left(out: Path, task="RTE"):
    if out.exists():
        left = [p.name for p in out.iterdir() if task in p.name]
        assert left == [], f"left behind: {left}"


def refused(rte: Path, tmp_path: Path, task="RTE") -> str:
    with pytest.raises(GlueFormatError) as e:
        ours(rte.parent, task, tmp_path / "out")
    assert_nothing_left(tmp_path / "out", task)
    return str(e.value)


# --- refused, with file, line and what was expected ------------------------------------------

def test_missing_column(rte, tmp_path):
    f = rte / "train.tsv"
    edit_line(f, 7, "\t".join(line(f, 7).split("\t")[:3]))
    msg = refused(rte, tmp_path)
    assert f"{f}, line 7: got 3 fields; expected 4 tab-separated fields " \
           "(index | sentence1 | sentence2 | label)" in msg


def test_missing_column_bash_exit_status(rte, tmp_path):
    f = rte / "dev.tsv"
    edit_line(f, 12, "\t".join(line(f, 12).split("\t")[:3]))
    proc = run(["bash", PREPARE_SH, rte.parent, "RTE", tmp_path / "out"])
    assert proc.returncode == 1
    assert f"glue_prep: error: {f}, line 12: got 3 fields; expected 4" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert_nothing_left(tmp_path / "out")


def test_extra_column(rte, tmp_path):
    f = rte / "test.tsv"
    edit_line(f, 3, line(f, 3) + "\tsurplus")
    msg = refused(rte, tmp_path)
    assert f"{f}, line 3: got 4 fields; expected 3 tab-separated fields (index | sentence1 | sentence2)" in msg


def test_label_outside_label_set(rte, tmp_path):
    f = rte / "train.tsv"
    fields = line(f, 5).split("\t")
    edit_line(f, 5, "\t".join(fields[:3] + ["contradiction"]))
    msg = refused(rte, tmp_path)
    assert f"{f}, line 5: RTE label 'contradiction' is not one of 'entailment', 'not_entailment'" in msg


def test_non_numeric_stsb_score(tmp_path):
    src = real_glue_task_dir("STS-B")
    d = truncated_copy(src, tmp_path / "glue" / "STS-B", ROWS)
    f = d / "dev.tsv"
    fields = line(f, 9).split("\t")
    edit_line(f, 9, "\t".join(fields[:9] + ["high"]))
    msg = refused(d, tmp_path, "STS-B")
    assert f"{f}, line 9: STS-B score 'high' is not a number between 0 and 5" in msg


def test_stsb_score_out_of_range(tmp_path):
    src = real_glue_task_dir("STS-B")
    d = truncated_copy(src, tmp_path / "glue" / "STS-B", ROWS)
    f = d / "train.tsv"
    fields = line(f, 4).split("\t")
    edit_line(f, 4, "\t".join(fields[:9] + ["7.5"]))
    assert f"{f}, line 4: STS-B score '7.5' is not a number between 0 and 5" in refused(d, tmp_path, "STS-B")


def test_unknown_task(rte, tmp_path):
    proc = run(["bash", PREPARE_SH, rte.parent, "RTEE", tmp_path / "out"])
    assert proc.returncode == 1
    assert "unknown task 'RTEE'; expected one of CoLA, SST-2, MRPC, QQP, STS-B, MNLI, QNLI, RTE, WNLI, AX or ALL" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_missing_split(rte, tmp_path):
    (rte / "test.tsv").unlink()
    msg = refused(rte, tmp_path)
    assert f"{rte / 'test.tsv'}: missing: the RTE test split needs this file" in msg
    proc = run(["bash", PREPARE_SH, rte.parent, "RTE", tmp_path / "out"])
    assert proc.returncode == 1 and "missing: the RTE test split" in proc.stderr
    assert_nothing_left(tmp_path / "out")


def test_lone_carriage_return_inside_a_line(rte, tmp_path):
    f = rte / "train.tsv"
    fields = line(f, 6).split("\t")
    fields[1] = fields[1].replace(" ", "\r", 1)
    edit_line(f, 6, "\t".join(fields))
    assert f"{f}, line 6: carriage return (CR) inside the line" in refused(rte, tmp_path)


def test_invalid_utf8(rte, tmp_path):
    f = rte / "dev.tsv"
    data = f.read_bytes().split(b"\n")
    data[9] = data[9].replace(b" ", b" \xff", 1)
    f.write_bytes(b"\n".join(data))
    assert f"{f}, line 10: not valid UTF-8 (byte 0xff" in refused(rte, tmp_path)


def test_blank_line(rte, tmp_path):
    f = rte / "train.tsv"
    f.write_text(f.read_text() + "\n")  # a second newline at the end: an empty line 42
    msg = refused(rte, tmp_path)
    assert f"{f}, line 42: got an empty line; expected 4 tab-separated fields" in msg


def test_wrong_header(rte, tmp_path):
    f = rte / "train.tsv"
    edit_line(f, 1, "index\tsentence2\tsentence1\tlabel")
    assert f"{f}, line 1: header column 2 is 'sentence2'; expected 'sentence1'" in refused(rte, tmp_path)


def test_header_only(rte, tmp_path):
    f = rte / "dev.tsv"
    f.write_text("index\tsentence1\tsentence2\tlabel\n")
    assert f"{f}: no data rows" in refused(rte, tmp_path)


def test_dev_label_absent_from_train(rte, tmp_path):
    """The label dictionary is built from the train labels (the recipe's way); a dev label the
    train split never has would silently become <unk> in the recipe: refused here."""
    f = rte / "train.tsv"
    lines = f.read_text().split("\n")
    f.write_text("\n".join([lines[0]] + [l for l in lines[1:] if l.endswith("\tentailment")]) + "\n")
    msg = refused(rte, tmp_path)
    assert "dev.tsv, line" in msg and "label 'not_entailment' occurs here but in no row of the train split" in msg


# --- handled as GLUE's loaders handle it (same bytes as the recipe) ---------------------------

def _same_as_plain(rte, tmp_path, transform):
    plain = ours(rte.parent, "RTE", tmp_path / "plain")
    for f in rte.glob("*.tsv"):
        f.write_bytes(transform(f.read_bytes(), f.name))
    changed = ours(rte.parent, "RTE", tmp_path / "changed")
    for p in plain.rglob("*"):
        if p.is_file() and p.name != "glue_prep.json":
            assert (changed / p.relative_to(plain)).read_bytes() == p.read_bytes(), p
    return changed


def test_crlf_line_endings(rte, tmp_path):
    changed = _same_as_plain(rte, tmp_path, lambda b, n: b.replace(b"\n", b"\r\n"))
    assert b"\r\n" in (rte / "test.tsv").read_bytes()
    # the recipe (cut keeps the CR; the encoder and tokenize_line strip it) agrees
    assert_same_as_recipe(changed, reference(rte.parent, "RTE", tmp_path / "ref"))


def test_utf8_bom(rte, tmp_path):
    """A BOM before the header (GLUE's MRPC train/dev have one) is dropped, as
    transformers' loaders (encoding='utf-8-sig') drop it."""
    changed = _same_as_plain(rte, tmp_path, lambda b, n: b"\xef\xbb\xbf" + b)
    assert_same_as_recipe(changed, reference(rte.parent, "RTE", tmp_path / "ref"))


def test_utf8_bom_on_headerless_cola(tmp_path):
    """CoLA train/dev have no header: the BOM would sit in the first row's first column (the
    source code, not used)."""
    src = real_glue_task_dir("CoLA")
    d = truncated_copy(src, tmp_path / "glue" / "CoLA", ROWS)
    plain = ours(d.parent, "CoLA", tmp_path / "plain")
    (d / "train.tsv").write_bytes(b"\xef\xbb\xbf" + (d / "train.tsv").read_bytes())
    bom = ours(d.parent, "CoLA", tmp_path / "bom")
    for name in ("input0/train.bin", "input0/train.idx", "label/train.bin", "label/dict.txt"):
        assert (bom / name).read_bytes() == (plain / name).read_bytes()


def test_quotes_inside_sentences(rte, tmp_path):
    """GLUE files are read with quoting off (csv.QUOTE_NONE / quotechar=None): a quote is text,
    even an unbalanced one, and never joins lines."""
    f = rte / "train.tsv"
    texts = ['He said "no', '"Quoted" from start to "end"', "It's 5' 11\" tall", '""']
    for i, t in enumerate(texts):
        fields = line(f, 2 + i).split("\t")
        edit_line(f, 2 + i, "\t".join([fields[0], t, fields[2], fields[3]]))
    out = ours(rte.parent, "RTE", tmp_path / "out")
    meta = json.loads((out / "glue_prep.json").read_text())
    assert meta["splits"]["train"] == ROWS
    tok = gpt2_tokenizer()
    from fairseq.data import Dictionary

    d = Dictionary.load(str(out / "input0" / "dict.txt"))
    rows = load_rows(out / "input0" / "train")
    for i, t in enumerate(texts):
        assert tok.decode(" ".join(d[x] for x in rows[i][:-1])) == t
    assert_same_as_recipe(out, reference(rte.parent, "RTE", tmp_path / "ref"))


def test_empty_sentence(rte, tmp_path):
    """Kept as an empty input (only </s>), as GLUE's loaders keep "" and the recipe keeps it
    (multiprocessing_bpe_encoder.py --keep-empty); reported with file and line."""
    f = rte / "train.tsv"
    fields = line(f, 8).split("\t")
    edit_line(f, 8, "\t".join([fields[0], fields[1], "  ", fields[3]]))
    t = rte / "test.tsv"
    fields = line(t, 3).split("\t")
    edit_line(t, 3, "\t".join([fields[0], "", fields[2]]))
    messages = []
    out = ours(rte.parent, "RTE", tmp_path / "out", log=messages.append)
    assert load_rows(out / "input1" / "train")[6].tolist() == [2]
    assert load_rows(out / "input0" / "test")[1].tolist() == [2]
    text = "\n".join(messages)
    assert "RTE train: 1 empty sentences kept as empty inputs" in text and f"{f}, lines 8" in text
    assert f"{t}, lines 3" in text
    meta = json.loads((out / "glue_prep.json").read_text())
    assert meta["empty_inputs"] == {"train": 1, "test": 1}
    assert_same_as_recipe(out, reference(rte.parent, "RTE", tmp_path / "ref"))


def test_file_without_final_newline(rte, tmp_path):
    """GLUE's CoLA dev.tsv ends without a newline; the last row counts."""
    _same_as_plain(rte, tmp_path, lambda b, n: b.rstrip(b"\n") if n == "dev.tsv" else b)


# --- no partial output -------------------------------------------------------------------

def test_existing_output_needs_force(rte, tmp_path):
    first = ours(rte.parent, "RTE", tmp_path / "out")
    marker = first / "marker"
    marker.write_text("old")
    with pytest.raises(OutputExistsError, match="pass --force"):
        ours(rte.parent, "RTE", tmp_path / "out")
    assert marker.exists()
    proc = run(["bash", PREPARE_SH, rte.parent, "RTE", tmp_path / "out", "--no-progress"])
    assert proc.returncode == 1 and "exists; pass --force" in proc.stderr
    ours(rte.parent, "RTE", tmp_path / "out", force=True)
    assert not marker.exists() and (first / "glue_prep.json").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["RTE-bin"]


@pytest.mark.parametrize("exc", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failure_or_interrupt_mid_build_leaves_nothing(rte, tmp_path, monkeypatch, exc):
    """A step raising (an error, or Ctrl-C as KeyboardInterrupt) after the build folder is
    made: no RTE-bin, no temp folder, no output folder it made; an existing RTE-bin (with
    --force) stays as it was."""
    calls = []

    def failing(*a, **k):
        calls.append(a)
        raise exc

    monkeypatch.setattr(glue_prep.binarize, "write_labels", failing)
    with pytest.raises(type(exc)):
        ours(rte.parent, "RTE", tmp_path / "out")
    assert calls  # it did fail inside the build
    assert not (tmp_path / "out").exists()  # nor the output folder it had made for it

    monkeypatch.undo()
    old = ours(rte.parent, "RTE", tmp_path / "out")
    before = {p: p.read_bytes() for p in old.rglob("*") if p.is_file()}
    monkeypatch.setattr(glue_prep.binarize, "write_labels", failing)
    with pytest.raises(type(exc)):
        ours(rte.parent, "RTE", tmp_path / "out", force=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["RTE-bin"]
    assert {p: p.read_bytes() for p in old.rglob("*") if p.is_file()} == before


def test_interrupt_during_parallel_encoding(rte, tmp_path, monkeypatch):
    """KeyboardInterrupt while the worker pool is encoding: pool stopped, nothing left."""
    real = glue_prep.binarize.write_encoded_split
    seen = []

    def interrupted(encoder, columns, prefixes, vocab_size, progress=None, **lengths):
        seen.append(prefixes[0])
        if prefixes[0].endswith("valid"):
            for i, _ in enumerate(encoder.encode(columns)):
                raise KeyboardInterrupt
        return real(encoder, columns, prefixes, vocab_size, progress, **lengths)

    monkeypatch.setattr(glue_prep.binarize, "write_encoded_split", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ours(rte.parent, "RTE", tmp_path / "out", workers=2)
    assert len(seen) == 2 and not (tmp_path / "out").exists()


def default_sigint():
    """A shell that starts a job in the background (`make test &`) makes it ignore SIGINT, and
    children inherit that; a user's interactive shell does not, so the child gets the default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_to_bash_entry_point_leaves_nothing(tmp_path, sig, status):
    """Ctrl-C (SIGINT) or kill (SIGTERM) while encoding SST-2's 20000 shipped train rows."""
    out = tmp_path / "out"
    proc = subprocess.Popen(["bash", str(PREPARE_SH), str(SHIPPED_GLUE), "SST-2", str(out),
                             "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=default_sigint)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and list(out.glob(".SST-2-bin.*tmp-*")):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(sig)  # bash exec'd python: this is glue_prep's own process
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert not out.exists(), err  # nor the output folder it made
    if sig == signal.SIGINT:
        assert "interrupted; no partial output left" in err


def test_stale_temp_folder_of_a_killed_run_is_removed(rte, tmp_path):
    """SIGKILL gives no chance to clean up: the next run removes a dead process's temp folder."""
    stale = tmp_path / "out" / ".RTE-bin.tmp-99999999"
    (stale / "input0").mkdir(parents=True)
    ours(rte.parent, "RTE", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["RTE-bin"]


def test_bad_options(rte, tmp_path):
    for args, text in ((["--workers", "0"], "--workers must be at least 1"),
                       (["--max-rows", "0"], "--max-rows must be at least 1"),
                       (["--lowercase"], "apply to --tokenizer wordpiece only"),
                       (["--dict", tmp_path / "nope.txt"], "dictionary not found")):
        proc = run(["bash", PREPARE_SH, rte.parent, "RTE", tmp_path / "out", *args])
        assert proc.returncode == 2 and text in proc.stderr, (args, proc.stderr)
    proc = run(["bash", PREPARE_SH, rte.parent])
    assert proc.returncode == 2 and "usage" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_unreadable_tokenizer_file(rte, tmp_path):
    bad = tmp_path / "encoder.json"
    bad.write_text("{not json")
    proc = run(["bash", PREPARE_SH, rte.parent, "RTE", tmp_path / "out", "--encoder-json", bad])
    assert proc.returncode == 1, proc.stderr
    assert f"glue_prep: error: {bad}: cannot read the gpt2 tokenizer's files" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert_nothing_left(tmp_path / "out")


def test_unreadable_dictionary(rte, tmp_path):
    bad = tmp_path / "dict.txt"
    bad.write_text("13 850314647\nnot-a-count-line\n")
    # the line fairseq stops at, in one short line (fairseq's own error quotes it whole)
    with pytest.raises(GlueFormatError, match=r"dict\.txt, line 2: 'not-a-count-line': not '<token> <count>'; "):
        ours(rte.parent, "RTE", tmp_path / "out", dict_path=bad)
    assert_nothing_left(tmp_path / "out")
