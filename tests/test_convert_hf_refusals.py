"""The converter carries the source tokenizer's settings into tokenizer_spec.json (its tokens
equal Hugging Face's) or refuses what the spec cannot express; it checks config.json's
vocab_size and a byte-level BPE vocabulary's byte symbols; --from-package imports nothing."""
import json
import shutil
from pathlib import Path

import pytest
import transformers

from fairseq_hire.conversion import convert
from glue_prep.tokenizers import load_tokenizer
from hf_sources import (assert_refused, build_tiny_roberta_bpe, small_bert,  # noqa: F401  (fixtures)
                        small_roberta, tiny_bert, tiny_roberta_bpe)
from test_convert_hf_checkpoint import load_script

TEXTS = ["Café OK", "naïve CAFÉ über", "中文 ok", "ok 中文文 café"]
WORDPIECE_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "cafe", "café", "Café", "CAFE", "CAFÉ", "c",
                    "##a", "##f", "##e", "##é", "##É", "中", "文", "中文", "##文", "ok", "OK", "naive", "naïve",
                    "uber", "über"]


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


# ---------------------------------------------------------------- tokenizer settings


@pytest.mark.parametrize("layout", ["vocab.txt", "tokenizer.json"])
@pytest.mark.parametrize("settings", [
    {"do_lower_case": True, "strip_accents": False},
    {"do_lower_case": False, "strip_accents": True},
    {"do_lower_case": True, "tokenize_chinese_chars": False},
    {"do_lower_case": False},
], ids=["lowercase-keep-accents", "cased-strip-accents", "no-chinese-split", "cased"])
def test_wordpiece_settings_give_the_tokens_of_transformers(tmp_path, settings, layout):
    tokenizer_dir = tmp_path / "tokenizer"
    tokenizer_dir.mkdir()
    (tokenizer_dir / "vocab.txt").write_text("".join(f"{t}\n" for t in WORDPIECE_TOKENS), encoding="utf-8")
    (tokenizer_dir / "tokenizer_config.json").write_text(json.dumps({**settings, "tokenizer_class": "BertTokenizer"}))
    source = tmp_path / "hf"
    config = transformers.BertConfig(vocab_size=len(WORDPIECE_TOKENS), hidden_size=8, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=16, max_position_embeddings=16)
    transformers.BertModel(config).save_pretrained(source)
    if layout == "vocab.txt":
        for name in ("vocab.txt", "tokenizer_config.json"):
            shutil.copy(tokenizer_dir / name, source)
    else:  # as transformers 5 saves it: the settings in tokenizer.json's BertNormalizer
        transformers.AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(source)
        (source / "vocab.txt").unlink(missing_ok=True)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(source)

    convert(source, tmp_path / "out")
    converted = load_tokenizer(tmp_path / "out" / "tokenizer_spec.json")
    for text in TEXTS:
        assert converted.encode(text).split() == hf_tokenizer.tokenize(text), text
    spec = json.loads((tmp_path / "out" / "tokenizer_spec.json").read_text())
    assert spec["lowercase"] == settings["do_lower_case"]


def saved_wordpiece_source(tmp_path: Path, **settings) -> Path:
    """A tiny BERT folder with the tokenizer files transformers saves (tokenizer.json, tokenizer_config.json)."""
    tokenizer_dir, source = tmp_path / "tokenizer", tmp_path / "hf"
    tokenizer_dir.mkdir()
    (tokenizer_dir / "vocab.txt").write_text("".join(f"{t}\n" for t in WORDPIECE_TOKENS), encoding="utf-8")
    (tokenizer_dir / "tokenizer_config.json").write_text(json.dumps({**settings, "tokenizer_class": "BertTokenizer"}))
    config = transformers.BertConfig(vocab_size=len(WORDPIECE_TOKENS), hidden_size=8, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=16, max_position_embeddings=16)
    transformers.BertModel(config).save_pretrained(source)
    transformers.AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(source)
    (source / "vocab.txt").unlink(missing_ok=True)
    return source


def assert_tokens_of_transformers(source: Path, out: Path, texts) -> None:
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(source)
    convert(source, out)
    converted = load_tokenizer(out / "tokenizer_spec.json")
    for text in texts:
        assert converted.encode(text).split() == hf_tokenizer.tokenize(text), text


@pytest.mark.parametrize("change, fragments", [
    (("tokenizer.json", lambda t: t["normalizer"].update(lowercase=False)),
     ["normalizer lowercase False", "sets do_lower_case True"]),
    (("tokenizer_config.json", lambda t: t.pop("do_lower_case")),  # tokenizer.json: lowercase false
     ["normalizer lowercase False", "has no do_lower_case (default True)"]),
    (("tokenizer.json", lambda t: t["normalizer"].update(strip_accents=False)),
     ["normalizer strip_accents False", "sets strip_accents None"]),
    (("tokenizer.json", lambda t: t["normalizer"].update(handle_chinese_chars=False)),
     ["normalizer handle_chinese_chars False", "sets tokenize_chinese_chars True"]),
    (("tokenizer.json", lambda t: t["normalizer"].update(clean_text=False)),
     ["normalizer clean_text false", "always cleans the text"]),
], ids=["lowercase", "lowercase-by-default", "strip-accents", "chinese-chars", "clean-text"])
def test_tokenizer_files_that_disagree_are_refused(tmp_path, change, fragments):
    """transformers' BertTokenizer takes tokenizer_config.json's settings (its defaults where
    absent) whatever tokenizer.json says; the tokenizers library takes tokenizer.json's."""
    source = saved_wordpiece_source(tmp_path, do_lower_case=change[0] != "tokenizer_config.json")
    edit_json(source / change[0], change[1])
    assert_refused(source, tmp_path / "out", str(source / "tokenizer.json"), *fragments,
                   "expected the two files to agree" if "clean" not in fragments[0] else "expected true")


@pytest.mark.parametrize("tokenizer_class", ["PreTrainedTokenizerFast", "BertTokenizer"])
def test_tokenizer_json_settings_give_the_tokens_of_transformers_generic_class(tmp_path, tokenizer_class):
    """transformers' generic class reads tokenizer.json as it is (clean_text false included); with
    BertTokenizer, files that agree convert."""
    source = saved_wordpiece_source(tmp_path, do_lower_case=False)
    if tokenizer_class != "BertTokenizer":
        edit_json(source / "tokenizer_config.json", lambda t: t.update(tokenizer_class=tokenizer_class,
                                                                      do_lower_case=True))  # unread
        edit_json(source / "tokenizer.json", lambda t: t["normalizer"].update(clean_text=False,
                                                                              handle_chinese_chars=False))
    assert_tokens_of_transformers(source, tmp_path / "out", TEXTS + ["ok \x07 café", "ca\x00fé\u3000OK"])
    spec = json.loads((tmp_path / "out" / "tokenizer_spec.json").read_text())
    assert spec["lowercase"] is False
    assert spec.get("clean_text", True) is (tokenizer_class == "BertTokenizer")


def test_byte_level_bpe_gives_the_ids_of_transformers(tmp_path):
    source, _ = build_tiny_roberta_bpe(tmp_path / "hf")
    convert(source, tmp_path / "out")
    hf_tokenizer = transformers.RobertaTokenizer(str(source / "vocab.json"), str(source / "merges.txt"))
    converted = load_tokenizer(tmp_path / "out" / "tokenizer_spec.json")
    for text in ("a b", "ab a", " a\tbé"):
        assert converted.encode(text) == " ".join(map(str, hf_tokenizer(text, add_special_tokens=False)["input_ids"]))


def byte_level_tokenizer_json(source: Path, **changes) -> dict:
    vocab = json.loads((source / "vocab.json").read_text(encoding="utf-8"))
    return {"model": {"type": "BPE", "vocab": vocab, "merges": ["a b", "Ġ a"]},
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
            "normalizer": None, **changes}


@pytest.mark.parametrize("tokenizer_config", [{"add_prefix_space": True},
                                              {"add_prefix_space": True, "tokenizer_class": "RobertaTokenizer"},
                                              {"tokenizer_class": "PreTrainedTokenizerFast"}])
def test_a_space_added_before_the_text_gives_the_ids_of_transformers(tmp_path, tokenizer_config):
    """add_prefix_space (RoBERTa-family tokenizers saved for token classification, e.g.): a space
    before each text that does not start with one, as the tokenizers library's ByteLevel adds it;
    transformers' RobertaTokenizer reads it from tokenizer_config.json, its generic class from
    tokenizer.json."""
    source, _ = build_tiny_roberta_bpe(tmp_path / "hf")
    pre_tokenizer = {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True}
    (source / "tokenizer.json").write_text(json.dumps(byte_level_tokenizer_json(source, pre_tokenizer=pre_tokenizer)))
    (source / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    convert(source, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "tokenizer_spec.json").read_text())["add_prefix_space"] is True
    converted = load_tokenizer(tmp_path / "out" / "tokenizer_spec.json")
    hf_tokenizer = transformers.RobertaTokenizer(str(source / "vocab.json"), str(source / "merges.txt"),
                                                 add_prefix_space=True)
    for text in ("a b", "ab a", " a\tbé", "\tab", "", "a  b "):
        expected = hf_tokenizer(text, add_special_tokens=False)["input_ids"]
        assert converted.encode(text) == " ".join(map(str, expected)), text


def test_a_byte_level_step_of_a_sequence_is_read_as_transformers_reads_it(tmp_path):
    """A Sequence of one ByteLevel (what some tokenizers save) is that ByteLevel: its add_prefix_space
    was missed where vocab.json was present, and the ids differed from transformers' generic class."""
    source, _ = build_tiny_roberta_bpe(tmp_path / "hf")
    step = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    sequence = {"type": "Sequence", "pretokenizers": [step]}
    (source / "tokenizer.json").write_text(json.dumps(byte_level_tokenizer_json(source, pre_tokenizer=sequence)))
    (source / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
    convert(source, tmp_path / "out")
    converted = load_tokenizer(tmp_path / "out" / "tokenizer_spec.json")
    # what transformers' generic class gives for it (a complete tokenizer.json would load as one)
    hf_tokenizer = transformers.RobertaTokenizer(str(source / "vocab.json"), str(source / "merges.txt"),
                                                 add_prefix_space=True)
    for text in ("a b", "ab a", "a"):
        assert converted.encode(text) == " ".join(map(str, hf_tokenizer(text, add_special_tokens=False)["input_ids"]))


@pytest.mark.parametrize("file, change, fragments", [
    ("tokenizer.json", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": "x"}, "behavior": "Isolated"}, {"type": "ByteLevel"}]}},
     ["pre_tokenizer Sequence of", "expected ByteLevel alone"]),
    ("tokenizer.json", {"pre_tokenizer": {"type": "Whitespace"}}, ["pre_tokenizer 'Whitespace'; expected ByteLevel"]),
    ("tokenizer.json", {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True}},
     ["pre_tokenizer.add_prefix_space true, but", "has no add_prefix_space (default false)",
      "expected the two files to agree"]),
    ("tokenizer.json", {"pre_tokenizer": {"type": "ByteLevel", "use_regex": False}}, ["use_regex is false"]),
    ("tokenizer.json", {"normalizer": {"type": "Lowercase"}}, ["normalizer", "Lowercase", "expected null"]),
    ("tokenizer_config.json", {"add_prefix_space": "yes"}, ["add_prefix_space", "true or false"]),
], ids=["split-then-byte-level", "whitespace", "prefix-space-tokenizer-json-only", "no-regex", "normalizer",
        "prefix-space-a-string"])
def test_byte_level_settings_the_spec_cannot_express(small_roberta, tmp_path, file, change, fragments):
    if file == "tokenizer.json":
        (small_roberta / file).write_text(json.dumps(byte_level_tokenizer_json(small_roberta, **change)))
    else:
        (small_roberta / file).write_text(json.dumps(change))
    assert_refused(small_roberta, tmp_path / "out", str(small_roberta / file), *fragments)


@pytest.mark.parametrize("change, fragments", [
    (lambda t: t.update(pre_tokenizer={"type": "Whitespace"}), ["pre_tokenizer 'Whitespace'", "BertPreTokenizer"]),
    (lambda t: t["model"].update(max_input_chars_per_word=20), ["max_input_chars_per_word 20", "expected 100"]),
    (lambda t: t["normalizer"].update(strip_accents="no"), ["'strip_accents'", "true or false"]),
    (lambda t: t["normalizer"].update(handle_chinese_chars=None), ["'handle_chinese_chars'", "true or false"]),
], ids=["whitespace-pre-tokenizer", "max-chars", "strip-accents-a-string", "chinese-chars-null"])
def test_wordpiece_settings_the_spec_cannot_express(small_bert, tmp_path, change, fragments):
    edit_json(small_bert / "tokenizer.json", change)
    assert_refused(small_bert, tmp_path / "out", str(small_bert / "tokenizer.json"), *fragments)


def test_glue_prep_refuses_a_spec_option_of_the_wrong_type(tmp_path):
    (tmp_path / "vocab.txt").write_text("[UNK]\n[CLS]\n[SEP]\n")
    (tmp_path / "tokenizer_spec.json").write_text(json.dumps(
        {"type": "wordpiece", "vocab": "vocab.txt", "lowercase": True, "handle_chinese_chars": "no"}))
    with pytest.raises(ValueError, match="'handle_chinese_chars' is 'no'; expected true or false"):
        load_tokenizer(tmp_path / "tokenizer_spec.json")


# ---------------------------------------------------------------- vocab_size, byte symbols


@pytest.mark.parametrize("vocab_size, fragments", [
    ("not-a-number", ["'vocab_size' should be an int, got 'not-a-number'"]),
    (None, ["'vocab_size' should be an int, got None"]),
    (True, ["'vocab_size' should be an int"]),
    (0, ["'vocab_size' is 0; expected a positive integer"]),
    (999999, ["vocab_size 999999", "embeddings.word_embeddings.weight (30522, 32) (expected (999999, 32))"]),
], ids=["a-string", "null", "a-bool", "zero", "not-the-embedding-rows"])
def test_vocab_size_is_checked(small_bert, tmp_path, vocab_size, fragments):
    edit_json(small_bert / "config.json", lambda config: config.update(vocab_size=vocab_size))
    assert_refused(small_bert, tmp_path / "out", str(small_bert / "config.json"), *fragments)


def test_an_omitted_vocab_size_means_transformers_default(small_bert, tmp_path):
    edit_json(small_bert / "config.json", lambda config: config.pop("vocab_size"))
    assert convert(small_bert, tmp_path / "out").vocab_size == 30522  # BertConfig's default


def test_byte_level_vocabulary_without_the_byte_symbols(small_roberta, tmp_path):
    vocab = json.loads((small_roberta / "vocab.json").read_text(encoding="utf-8"))
    few = {token: i for token, i in vocab.items() if len(token) > 1 or token in "Ġab"}
    (small_roberta / "vocab.json").write_text(json.dumps(few), encoding="utf-8")
    assert_refused(small_roberta, tmp_path / "out", str(small_roberta / "vocab.json"),
                   "vocab.json lacks 253 of the 256 byte symbols")
    (small_roberta / "tokenizer.json").write_text(json.dumps(byte_level_tokenizer_json(small_roberta)))
    (small_roberta / "vocab.json").unlink()
    assert_refused(small_roberta, tmp_path / "out", str(small_roberta / "tokenizer.json"),
                   "model.vocab lacks 253 of the 256 byte symbols")


def test_byte_level_merge_that_makes_no_token(small_roberta, tmp_path):
    (small_roberta / "merges.txt").write_text("#version: 0.2\na b\nb a\n", encoding="utf-8")
    assert_refused(small_roberta, tmp_path / "out", str(small_roberta / "vocab.json"),
                   "merges.txt's merge 'b a' is not two tokens of vocab.json making a third")


# ---------------------------------------------------------------- --from-package


@pytest.fixture
def hostile_site(tmp_path, tiny_bert, monkeypatch):
    """A folder on sys.path with an installed distribution `evilpkg` (a RECORD naming its model
    folder) whose __init__.py, run, creates the payload file; evilpkg.sub holds a model too."""
    site, payload = tmp_path / "site", tmp_path / "PAYLOAD"
    package = site / "evilpkg"
    shutil.copytree(tiny_bert[0], package / "model")
    shutil.copytree(tiny_bert[0], package / "sub" / "model")
    (package / "__init__.py").write_text(f"import pathlib; pathlib.Path({str(payload)!r}).touch()\n")
    (package / "sub" / "__init__.py").write_text("")
    info = site / "evilpkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: evilpkg\nVersion: 1.0\n")
    files = sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file())
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in files) + "evilpkg-1.0.dist-info/RECORD,,\n")
    monkeypatch.syspath_prepend(str(site))
    return payload


@pytest.mark.parametrize("name, fragments", [
    ("../etc", ["'../etc': not a distribution name"]),
    (".hidden", ["'.hidden': not a distribution name"]),
    ("evilpkg/model", ["not a distribution name"]),
    ("evilpkg.sub", ["'evilpkg.sub' is not installed"]),
    ("no-such-package", ["'no-such-package' is not installed"]),
])
def test_from_package_odd_names_give_one_line_and_run_nothing(hostile_site, tmp_path, capsys, name, fragments):
    assert load_script().main(["--from-package", name, str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("convert_hf_checkpoint: error: package ") and all(f in error for f in fragments), error
    assert not hostile_site.exists(), "the package's __init__.py ran"
    assert not (tmp_path / "out").exists()


def test_from_package_finds_the_model_without_importing_it(hostile_site, tmp_path):
    assert load_script().main(["--from-package", "evilpkg", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "model.pt").is_file()
    assert not hostile_site.exists(), "the package's __init__.py ran"

