"""glue_prep reads and checks everything before it writes anything (helper-41's review): every
task of a multi-task run, the label coverage of each split, the dictionary and the tokenizer's
files; a refusal is one short line naming the file (and line), and leaves no output folder it
made. A link where an output goes is an output there, and --force replaces the link itself."""
import os
from pathlib import Path

import pytest

from conftest import GPT2_BPE, SHIPPED_GLUE
from test_glue_prep_helpers import gpt2_tokenizer, ours, truncated_copy

import glue_prep.binarize
from glue_prep import GlueFormatError, OutputExistsError

pytestmark = pytest.mark.unit

ROWS = 30


@pytest.fixture
def glue(tmp_path) -> Path:
    """RTE and SST-2 (GLUE's real files, shipped), the first 30 rows of each split."""
    for task in ("RTE", "SST-2"):
        truncated_copy(SHIPPED_GLUE / task, tmp_path / "glue" / task, ROWS)
    return tmp_path / "glue"


def prepare(glue_dir, which, out_dir, tokenizer=None, dict_path=None, force=False):
    from glue_prep.prepare import Options, prepare

    opts = Options(tokenizer=tokenizer or gpt2_tokenizer(), dict_path=Path(dict_path or GPT2_BPE / "dict.txt"),
                   workers=1, force=force, progress=False)
    return prepare(glue_dir, which, out_dir, opts, log=lambda m: None)


@pytest.fixture
def encodings(monkeypatch):
    """The splits glue_prep starts encoding (none, where it refuses in time)."""
    started = []
    real = glue_prep.binarize.write_encoded_split

    def recorded(encoder, columns, prefixes, *args, **kwargs):
        started.append(prefixes[0])
        return real(encoder, columns, prefixes, *args, **kwargs)

    monkeypatch.setattr(glue_prep.binarize, "write_encoded_split", recorded)
    return started


def test_a_bad_file_of_a_later_task_stops_the_run_before_any_task_is_written(glue, tmp_path, encodings):
    """SST-2 comes before RTE in GLUE's order: SST-2-bin was written, then RTE's dev.tsv was
    refused, and SST-2-bin stayed behind."""
    dev = glue / "RTE" / "dev.tsv"
    lines = dev.read_text(encoding="utf-8").split("\n")
    lines[10] = lines[10].rsplit("\t", 1)[0]  # one field short
    dev.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(GlueFormatError, match=r"RTE/dev\.tsv, line 11: "):
        prepare(glue, "RTE,SST-2", tmp_path / "out")
    assert encodings == [] and not (tmp_path / "out").exists()


def test_a_label_of_dev_that_train_lacks_is_refused_before_encoding(tmp_path, encodings):
    glue = tmp_path / "glue"
    truncated_copy(SHIPPED_GLUE / "RTE", glue / "RTE", ROWS)
    train = glue / "RTE" / "train.tsv"
    train.write_text("\n".join(line for line in train.read_text(encoding="utf-8").split("\n")
                               if not line.endswith("\tnot_entailment")), encoding="utf-8")
    with pytest.raises(GlueFormatError, match=r"dev\.tsv, line \d+: RTE label 'not_entailment' occurs here but in no "
                                              r"row of the train split"):
        prepare(glue, "RTE", tmp_path / "new" / "out")
    assert encodings == [] and not (tmp_path / "new").exists()  # no folder it made is left


@pytest.mark.parametrize("encoder_json, vocab_bpe, says", [
    ("empty.json", "vocab.bpe", "encoder.json lacks 256 of the 256 byte symbols"),
    ("strings.json", "vocab.bpe", "encoder.json is not a JSON object of token -> integer id"),
    ("encoder.json", "dict.txt", "vocab.bpe does not start with GPT-2's '#version' line"),
    ("encoder.json", "merges.bpe", "vocab.bpe's merge 'zz qq' is not two tokens of encoder.json making a third"),
], ids=["empty-encoder", "encoder-of-strings", "dict-as-merges", "foreign-merges"])
def test_gpt2_files_of_another_kind_are_refused_in_one_line_before_anything_is_written(
        glue, tmp_path, encodings, encoder_json, vocab_bpe, says):
    """fairseq's get_encoder took them: an empty table crashed mid-encoding with a KeyError
    traceback, and a dict.txt as vocab.bpe split every text into single bytes, silently."""
    (tmp_path / "empty.json").write_text("{}")
    (tmp_path / "strings.json").write_text('{"a": "b"}')
    (tmp_path / "merges.bpe").write_text("#version: 0.2\nzz qq\n")
    files = {name: tmp_path / name if (tmp_path / name).exists() else GPT2_BPE / name
             for name in (encoder_json, vocab_bpe)}
    from glue_prep.tokenizers import build_tokenizer

    tokenizer = build_tokenizer("gpt2", encoder_json=str(files[encoder_json]), vocab_bpe=str(files[vocab_bpe]))
    with pytest.raises(GlueFormatError) as refused:
        prepare(glue, "RTE", tmp_path / "out", tokenizer=tokenizer)
    assert says in str(refused.value) and "\n" not in str(refused.value)
    assert encodings == [] and not (tmp_path / "out").exists()


def test_a_dictionary_of_another_format_is_refused_in_a_short_line(glue, tmp_path):
    """fairseq's error quotes the line it stops at: for encoder.json given as --dict, all 1 MB of it."""
    with pytest.raises(GlueFormatError) as refused:
        prepare(glue, "RTE", tmp_path / "out", dict_path=GPT2_BPE / "encoder.json")
    message = str(refused.value)
    assert message.startswith(f"{GPT2_BPE / 'encoder.json'}, line 1: ") and len(message) < 300 and "\n" not in message


def ax_folder(tmp_path: Path) -> Path:
    glue = tmp_path / "glue"
    rows = [line.split("\t")[:3] for line in (SHIPPED_GLUE / "RTE" / "test.tsv").read_text(encoding="utf-8").split("\n")[1:6]]
    (glue / "AX").mkdir(parents=True)
    (glue / "AX" / "AX.tsv").write_text("index\tsentence1\tsentence2\n" + "".join("\t".join(r) + "\n" for r in rows))
    return glue


@pytest.mark.parametrize("content, says", [
    ("contradiction\nneutral\n", r", line 1: 'contradiction': not '<token> <count>'"),
    ("yes 3\nno 2\n", r": holds the classes 'yes', 'no'; expected MNLI's"),
], ids=["malformed", "other-classes"])
def test_ax_refuses_an_mnli_label_dictionary_it_cannot_use_in_one_line(tmp_path, content, says):
    """AX borrows MNLI-bin's label/dict.txt: a malformed one was a 37-line traceback, one of
    other classes was borrowed without a word."""
    glue = ax_folder(tmp_path)
    borrowed = tmp_path / "out" / "MNLI-bin" / "label" / "dict.txt"
    borrowed.parent.mkdir(parents=True)
    borrowed.write_text(content)
    with pytest.raises(GlueFormatError, match=rf"MNLI-bin/label/dict\.txt{says}"):
        prepare(glue, "AX", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["MNLI-bin"]
    borrowed.write_text("neutral 3\nentailment 2\ncontradiction 1\n")  # MNLI's, in its own order
    built = prepare(glue, "AX", tmp_path / "out")[0]
    assert (built / "label" / "dict.txt").read_text() == borrowed.read_text()


def test_a_link_where_the_output_goes_is_an_output_there(tmp_path):
    """A dangling link at <out>/RTE-bin passed the existence check (which followed it), the
    build ran, and the rename failed naming a temporary folder; with --force over a link, the
    renamed-aside link was left behind."""
    glue = tmp_path / "glue"
    truncated_copy(SHIPPED_GLUE / "RTE", glue / "RTE", ROWS)
    out = tmp_path / "out"
    out.mkdir()
    target = tmp_path / "elsewhere"
    os.symlink(target, out / "RTE-bin")  # dangling
    with pytest.raises(OutputExistsError, match=r"RTE-bin exists; pass --force"):
        ours(glue, "RTE", out, workers=1)
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    built = ours(glue, "RTE", out, workers=1, force=True)
    assert not built.is_symlink() and (built / "input0" / "train.bin").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["RTE-bin"]  # no link renamed aside and left
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]  # what it pointed to is untouched
