"""The converter's own inputs, tried as an adversary: config.json, the tokenizer files and the
weights' headers of a Hugging Face folder. Each hostile folder is refused with one short line
naming the file (and the field or line), promptly, before any tensor of a disagreeing size is
read, with nothing written beside or into the output folder; nothing in it is evaluated or
imported; legitimate layouts (links into the HF hub cache) still convert."""
import json
import os
import resource
import shutil
import struct

import pytest
import torch

from conftest import REPO
from fairseq_hire.checkpoints.loading import safe_torch_load
from fairseq_hire.conversion import ConversionError, convert
from hf_sources import (assert_refused, edit_weights, small_bert, small_roberta, tiny_bert,  # noqa: F401
                        tiny_roberta_bpe)

pytestmark = pytest.mark.unit

SCRIPT = REPO / "scripts" / "convert_hf_checkpoint.py"
DEEP = 100_000


def nested(depth=DEEP) -> str:
    return "[" * depth + "]" * depth


def edit_json(path, change):
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def set_config(source, **fields):
    edit_json(source / "config.json", lambda config: config.update(fields))


def test_tiny_roberta_with_classic_vocabulary_files_converts(small_roberta, tmp_path):
    """The control for the BPE attacks below: the untouched folder converts."""
    convert(small_roberta, tmp_path / "out")
    assert (tmp_path / "out" / "vocab.bpe").read_text(encoding="utf-8") == "#version: 0.2\na b\nĠ a\n"


# ---------------------------------------------------------------- every JSON file


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json", "tokenizer_config.json",
                                  "special_tokens_map.json"])
def test_json_nested_100000_deep(small_bert, tmp_path, name):
    (small_bert / name).write_text(nested(), encoding="utf-8")
    assert_refused(small_bert, tmp_path / "out", str(small_bert / name), "nested")


def test_vocab_json_nested_100000_deep(small_roberta, tmp_path):
    (small_roberta / "vocab.json").write_text('{"a": ' + nested() + "}", encoding="utf-8")
    assert_refused(small_roberta, tmp_path / "out", str(small_roberta / "vocab.json"), "nested")


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json"])
def test_json_with_invalid_utf8_names_the_line(small_bert, tmp_path, name):
    lines = (small_bert / name).read_bytes().split(b"\n")
    lines[2] = b"\xff" + lines[2]
    (small_bert / name).write_bytes(b"\n".join(lines))
    assert_refused(small_bert, tmp_path / "out", str(small_bert / name), "line 3", "UTF-8")


def test_json_integer_of_5000_digits(small_bert, tmp_path):
    (small_bert / "config.json").write_text(
        (small_bert / "config.json").read_text().replace('"hidden_size": 32', '"hidden_size": ' + "9" * 5000))
    assert_refused(small_bert, tmp_path / "out", str(small_bert / "config.json"))


# ---------------------------------------------------------------- config.json fields


@pytest.mark.parametrize("fields, fragments", [
    ({"model_type": ["bert"]}, ["model_type", "not supported"]),
    ({"model_type": "x" * 5_000_000}, ["model_type", "not supported"]),
    ({"hidden_act": {"module": "os", "name": "system"}}, ["hidden_act", "no fairseq equivalent"]),
    ({"hidden_act": "__import__('os').system('touch payload-ran')"}, ["hidden_act"]),
    ({"hidden_act": "transformers.activations.GELUActivation"}, ["hidden_act"]),
    ({"position_embedding_type": ["absolute"]}, ["position_embedding_type"]),
    ({"is_decoder": "false"}, ["is_decoder", "true or false"]),
    ({"auto_map": {"AutoModel": "modeling.MyBert"}}, ["auto_map", "custom"]),
    ({"num_attention_heads": 0}, ["num_attention_heads", "positive"]),
    ({"hidden_size": -32}, ["hidden_size", "positive"]),
    ({"num_hidden_layers": 0}, ["num_hidden_layers", "positive"]),
    ({"intermediate_size": "64"}, ["intermediate_size", "should be an int"]),
    ({"layer_norm_eps": float("nan")}, ["layer_norm_eps", "finite"]),
    ({"layer_norm_eps": float("inf")}, ["layer_norm_eps", "finite"]),
    ({"layer_norm_eps": 0}, ["layer_norm_eps", "positive"]),
    ({"hidden_dropout_prob": float("-inf")}, ["hidden_dropout_prob", "finite"]),
    ({"hidden_dropout_prob": 10 ** 400}, ["hidden_dropout_prob", "finite"]),
    ({"attention_probs_dropout_prob": 1.5}, ["attention_probs_dropout_prob", "between 0 and 1"]),
], ids=lambda value: repr(value)[:40])
def test_config_fields_of_the_wrong_type_or_range(small_bert, tmp_path, fields, fragments):
    """Refused naming config.json and the field, never a traceback; what json.dumps writes as
    NaN / Infinity is read the way Python's json reads it (the HF configs' own writer)."""
    set_config(small_bert, **fields)
    marker = tmp_path / "payload-ran"
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert_refused(small_bert, tmp_path / "out", str(small_bert / "config.json"), *fragments)
    finally:
        os.chdir(cwd)
    assert not marker.exists()


def test_negative_pad_token_id_of_roberta(small_roberta, tmp_path):
    set_config(small_roberta, pad_token_id=-5)
    assert_refused(small_roberta, tmp_path / "out", str(small_roberta / "config.json"), "pad_token_id")


@pytest.mark.parametrize("field", ["num_hidden_layers", "hidden_size", "intermediate_size", "max_position_embeddings"])
def test_dimensions_of_2_to_the_31_are_refused_before_anything_is_allocated(small_bert, tmp_path, field):
    """The weights' shapes are checked against config.json before any tensor is read or made:
    no time and no memory go to what the weights do not hold."""
    set_config(small_bert, **{field: 2 ** 31}, **({"num_attention_heads": 1} if field == "hidden_size" else {}))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    message = assert_refused(small_bert, tmp_path / "out", str(small_bert / "config.json"), field, seconds=5)
    assert str(small_bert / "model.safetensors") in message
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 256, f"refusing took {grown_mib:.0f} MiB more memory"


def test_legitimate_config_values_still_convert(small_bert, tmp_path):
    """The range checks leave a legitimate config alone (BERT's dropout 0.1, eps 1e-12)."""
    set_config(small_bert, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0)
    convert(small_bert, tmp_path / "out")
    args = safe_torch_load(tmp_path / "out" / "model.pt")["args"]
    assert (args.dropout, args.attention_dropout, args.encoder_layernorm_eps) == (0.0, 0.0, 1e-12)


# ---------------------------------------------------------------- files that are not files


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"])
@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_fifo_or_folder_in_place_of_a_file(small_bert, tmp_path, name, kind):
    """Refused at once (a FIFO is never opened for reading: that would wait for a writer)."""
    (small_bert / name).unlink()
    if kind == "fifo":
        os.mkfifo(small_bert / name)
    else:
        (small_bert / name).mkdir()
    assert_refused(small_bert, tmp_path / "out", str(small_bert / name), "not a regular file", seconds=10)


def test_a_fifo_vocab_txt(small_bert, tmp_path):
    os.mkfifo(small_bert / "vocab.txt")
    assert_refused(small_bert, tmp_path / "out", str(small_bert / "vocab.txt"), "not a regular file", seconds=10)


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json", "model.safetensors", "vocab.txt"])
def test_a_symlink_out_of_the_folder(small_bert, tmp_path, name):
    """A file of the folder that is a link to a file elsewhere (here a perfectly convertible
    one) is not read: the folder is what the user named."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    if name == "vocab.txt":
        vocab = json.loads((small_bert / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
        (outside / name).write_text("".join(f"{t}\n" for t in sorted(vocab, key=vocab.get)), encoding="utf-8")
    else:
        shutil.move(small_bert / name, outside / name)
    (small_bert / name).symlink_to(outside / name)
    assert_refused(small_bert, tmp_path / "out", str(small_bert / name), "outside")


def test_a_link_loop(small_bert, tmp_path):
    (small_bert / "config.json").unlink()
    (small_bert / "config.json").symlink_to(small_bert / "loop")
    (small_bert / "loop").symlink_to(small_bert / "config.json")
    assert_refused(small_bert, tmp_path / "out", str(small_bert / "config.json"))


def test_a_shard_outside_the_folder(tiny_bert, tmp_path):
    source, hf_model = tiny_bert
    sharded = tmp_path / "sharded"
    hf_model.save_pretrained(sharded, max_shard_size="200KB")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(source / name, sharded)
    index = sharded / "model.safetensors.index.json"
    weight_map = json.loads(index.read_text())["weight_map"]
    shard = sorted(set(weight_map.values()))[0]
    (tmp_path / "moved").mkdir()
    shutil.move(sharded / shard, tmp_path / "moved" / shard)
    for relative in (f"../moved/{shard}", str(tmp_path / "moved" / shard)):
        edit_json(index, lambda data: data["weight_map"].update(
            {name: relative for name, file in weight_map.items() if file == shard}))
        assert_refused(sharded, tmp_path / "out", str(index), "outside")


@pytest.mark.parametrize("layout", ["snapshot", "local-dir"])
def test_links_into_the_hf_hub_cache_convert(tiny_bert, tmp_path, layout):
    """huggingface_hub's cache: snapshots/<revision>/<file> are links to ../../blobs/<hash>, and
    its older --local-dir downloads link large files to the cache's blobs. Both convert as the
    plain folder does."""
    source, _ = tiny_bert
    repo = tmp_path / "hub" / "models--org--tiny-bert"
    folder = repo / "snapshots" / "0123abc" if layout == "snapshot" else tmp_path / "local-dir"
    (repo / "blobs").mkdir(parents=True)
    folder.mkdir(parents=True)
    for number, path in enumerate(sorted(source.iterdir())):
        if layout == "snapshot" or path.name == "model.safetensors":
            shutil.copy(path, repo / "blobs" / f"blob{number}")
            (folder / path.name).symlink_to(os.path.relpath(repo / "blobs" / f"blob{number}", folder))
        else:
            shutil.copy(path, folder)
    convert(source, tmp_path / "plain")
    convert(folder, tmp_path / "from-cache")
    for name in ("dict.txt", "tokenizer_spec.json", "vocab.txt"):
        assert (tmp_path / "plain" / name).read_bytes() == (tmp_path / "from-cache" / name).read_bytes()
    a = safe_torch_load(tmp_path / "plain" / "model.pt")["model"]
    b = safe_torch_load(tmp_path / "from-cache" / "model.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- tokenizer files


def write_vocab_txt(source, change=lambda tokens: tokens):
    vocab = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    tokens = change(sorted(vocab, key=vocab.get))
    (source / "tokenizer.json").unlink()
    (source / "vocab.txt").write_text("".join(f"{t}\n" for t in tokens), encoding="utf-8")


def test_vocab_txt_with_invalid_utf8_names_the_line(small_bert, tmp_path):
    write_vocab_txt(small_bert)
    data = (small_bert / "vocab.txt").read_bytes().split(b"\n")
    data[2000] = b"caf\xe9"  # Latin-1, not UTF-8
    (small_bert / "vocab.txt").write_bytes(b"\n".join(data))
    assert_refused(small_bert, tmp_path / "out", str(small_bert / "vocab.txt"), "line 2001", "UTF-8")


@pytest.mark.parametrize("other_format", ["json", "fairseq-dict"])
def test_vocab_txt_of_another_format(small_bert, tmp_path, other_format):
    """A vocab.json or a fairseq dict.txt saved as vocab.txt: its lines are no tokens."""
    vocab = json.loads((small_bert / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    write_vocab_txt(small_bert)
    if other_format == "json":
        (small_bert / "vocab.txt").write_text(json.dumps(vocab, indent=0), encoding="utf-8")
    else:
        (small_bert / "vocab.txt").write_text("".join(f"{t} 1\n" for t in vocab), encoding="utf-8")
    assert_refused(small_bert, tmp_path / "out", str(small_bert / "vocab.txt"), "is not in the vocabulary")


@pytest.mark.parametrize("change, fragments", [
    (lambda t: t.update(model="WordPiece"), ["'model'", "object"]),
    (lambda t: t.update(normalizer=[{"type": "BertNormalizer"}]), ["'normalizer'", "object"]),
    (lambda t: t.update(added_tokens=["[CLS]"]), ["added_tokens", "object"]),
    (lambda t: t["model"]["vocab"].update({"[CLS]": "101"}), ["integer id", "'[CLS]'"]),
    (lambda t: t["model"]["vocab"].update({"[CLS]": True}), ["integer id", "'[CLS]'"]),
    (lambda t: t["normalizer"].update(lowercase="false"), ["lowercase", "true or false"]),
], ids=["model-a-string", "normalizer-a-list", "added-tokens-strings", "id-a-string", "id-a-bool",
        "lowercase-a-string"])
def test_tokenizer_json_of_the_wrong_shape(small_bert, tmp_path, change, fragments):
    edit_json(small_bert / "tokenizer.json", change)
    assert_refused(small_bert, tmp_path / "out", str(small_bert / "tokenizer.json"), *fragments)


@pytest.mark.parametrize("name, change, fragments", [
    ("tokenizer_config.json", {"do_lower_case": "false"}, ["do_lower_case", "true or false"]),
    ("tokenizer_config.json", {"cls_token": ["[CLS]"]}, ["cls_token", "string"]),
    ("tokenizer_config.json", {"cls_token": {"content": 101}}, ["cls_token", "string"]),
    ("special_tokens_map.json", {"mask_token": {"content": ["[MASK]"]}}, ["mask_token", "string"]),
], ids=["lowercase-a-string", "token-a-list", "token-content-an-int", "map-content-a-list"])
def test_tokenizer_config_of_the_wrong_types(small_bert, tmp_path, name, change, fragments):
    edit_json(small_bert / "tokenizer_config.json", lambda config: config.pop("mask_token"))
    edit_json(small_bert / "tokenizer.json", lambda t: t["normalizer"].pop("lowercase"))
    if not (small_bert / name).exists():
        (small_bert / name).write_text("{}")
    edit_json(small_bert / name, lambda data: data.update(change))
    assert_refused(small_bert, tmp_path / "out", str(small_bert / name), *fragments)


@pytest.mark.parametrize("merges, fragments", [
    ("#version: 0.2\na\nb\nab\n", ["line 2", "two"]),  # a vocab.txt saved as merges.txt
    ("#version: 0.2\na b c\n", ["line 2", "two"]),
    (b"#version: 0.2\na b\n\xc4 a\n", ["line 3", "UTF-8"]),
], ids=["one-token-a-line", "three-tokens", "invalid-utf8"])
def test_merges_txt_of_another_format(small_roberta, tmp_path, merges, fragments):
    path = small_roberta / "merges.txt"
    path.write_bytes(merges if isinstance(merges, bytes) else merges.encode("utf-8"))
    assert_refused(small_roberta, tmp_path / "out", str(path), *fragments)


@pytest.mark.parametrize("vocab, fragments", [
    (["<s>", "<pad>"], ["token -> integer id"]),
    ({"<s>": 0, "<pad>": True, "</s>": 2, "<unk>": 3, "<mask>": 9}, ["token -> integer id", "'<pad>'"]),
    ({"<s>": 0, "<pad>": 1.0, "</s>": 2, "<unk>": 3, "<mask>": 9}, ["token -> integer id", "'<pad>'"]),
], ids=["a-list", "a-bool-id", "a-float-id"])
def test_vocab_json_of_another_format(small_roberta, tmp_path, vocab, fragments):
    (small_roberta / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    assert_refused(small_roberta, tmp_path / "out", str(small_roberta / "vocab.json"), *fragments)


# ---------------------------------------------------------------- weights


def append_sparse_tensor(path, name, elements):
    """Rewrite a safetensors file with one more float16 tensor of `elements` zeros whose bytes
    are a hole in the file: the header claims them, the disk holds none."""
    size = path.stat().st_size
    header_size = struct.unpack("<Q", path.read_bytes()[:8])[0]
    header = json.loads(path.read_bytes()[8:8 + header_size])
    data_size = size - 8 - header_size
    header[name] = {"dtype": "F16", "shape": [elements], "data_offsets": [data_size, data_size + 2 * elements]}
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    data = path.read_bytes()[8 + header_size:]
    with open(path, "wb") as file:
        file.write(struct.pack("<Q", len(encoded)) + encoded + data)
        file.truncate(8 + len(encoded) + data_size + 2 * elements)


def test_a_header_claiming_a_huge_tensor_is_refused_before_it_is_read(small_bert, tmp_path):
    """A 2 GiB half-precision tensor the converter has no place for, as a hole in the file:
    refused from the header, without reading its bytes or widening it to float32 (4 GiB)."""
    append_sparse_tensor(small_bert / "model.safetensors", "bert.encoder.layer.0.attention.self.rel_bias",
                         2 ** 30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert_refused(small_bert, tmp_path / "out", str(small_bert / "model.safetensors"), "no place for",
                   "encoder.layer.0.attention.self.rel_bias", seconds=20)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 256, f"refusing read {grown_mib:.0f} MiB"


@pytest.mark.parametrize("edit, fragments", [
    (lambda w: w.update({"bert.embeddings.word_embeddings.weight": torch.tensor(1.0)}),
     ["embeddings.word_embeddings.weight", "2-D"]),
    (lambda w: w.update({"bert.embeddings.word_embeddings.weight": torch.zeros(30522, 32, dtype=torch.int64)}),
     ["embeddings.word_embeddings.weight", "floating-point"]),
    (lambda w: w.update({"bert.embeddings.LayerNorm.gamma": w["bert.embeddings.LayerNorm.weight"] + 1}),
     ["embeddings.LayerNorm.weight", "twice"]),
    (lambda w: w.update({"cls.predictions.transform.dense.weight": torch.zeros(32, 33)}),
     ["cls.predictions.transform.dense.weight (32, 33)", "config.json"]),
    (lambda w: w.update({"cls.predictions.bias": torch.zeros(7)}), ["cls.predictions.bias (7,)"]),
    (lambda w: w.update({"bert.pooler.dense.weight": torch.zeros(4096, 32)}), ["pooler.dense.weight (4096, 32)"]),
    (lambda w: w.update({"bert.encoder.layer.2.output.dense.weight": torch.zeros(32, 64)}),
     ["num_hidden_layers 2", "3 layers"]),
], ids=["embeddings-a-scalar", "embeddings-of-integers", "a-weight-twice", "lm-head-of-another-width",
        "lm-head-bias-of-another-size", "pooler-of-another-size", "a-layer-config-does-not-count"])
def test_weights_that_disagree_with_config(small_bert, tmp_path, edit, fragments):
    """Each of these either crashed, or wrote a model.pt that fairseq cannot load (or silently
    picked one of two weights)."""
    edit_weights(small_bert, edit)
    assert_refused(small_bert, tmp_path / "out", str(small_bert / "model.safetensors"), *fragments)


def test_the_command_line_gives_one_line_for_a_hostile_folder(small_bert, tmp_path, capsys):
    """What used to be a traceback is exit status 2 and one line on stderr."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("convert_hf_checkpoint", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    (small_bert / "config.json").write_text(nested(), encoding="utf-8")
    assert script.main([str(small_bert), str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("convert_hf_checkpoint: error: ") and "\n" not in error
    assert str(small_bert / "config.json") in error
    assert not (tmp_path / "out").exists()


def test_an_output_folder_that_cannot_be_made(small_bert, tmp_path):
    """A traceback before; now the one-line error, the file in the way untouched."""
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(ConversionError, match=f"{tmp_path / 'a-file' / 'out'}: cannot write"):
        convert(small_bert, tmp_path / "a-file" / "out")
    assert (tmp_path / "a-file").read_text() == "not a folder"
