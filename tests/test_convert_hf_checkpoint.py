"""scripts/convert_hf_checkpoint.py / fairseq_hire.conversion, checked against transformers.

Every converted model is built the way fine-tuning builds it (fairseq-train's parser with
the checkpoint's architecture flags, Trainer, --restore-file with a strict load) and run on
real GLUE sentences tokenized with the converted tokenizer files; its hidden states (and LM
logits, where the source has an LM head) must match transformers' on the same input.
"""
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
import transformers
from fairseq.data import Dictionary
from safetensors.torch import load_file

import fairseq_hire  # noqa: F401  (registers roberta_hire)
from compare_with_transformers import compare, glue_examples
from conftest import GPT2_BPE, REPO
from fairseq_hire.hub_interface import from_pretrained
from fairseq_hire.checkpoints.architecture import architecture_flags
from fairseq_hire.checkpoints.loading import safe_torch_load
from fairseq_hire.conversion import convert
from hf_sources import MINILM_PACKAGE, TINY_SIZES, minilm_source, perturb, tiny_bert  # noqa: F401  (fixture)

SCRIPT = REPO / "scripts" / "convert_hf_checkpoint.py"
TOLERANCE = 1e-4


# ---------------------------------------------------------------- helpers


def load_script():
    spec = importlib.util.spec_from_file_location("convert_hf_checkpoint", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- all-MiniLM-L6-v2


@pytest.fixture(scope="module")
def converted_minilm(tmp_path_factory):
    """all-MiniLM-L6-v2 converted through the script's command line (--from-package)."""
    out_dir = tmp_path_factory.mktemp("minilm") / "converted"
    source = minilm_source()
    assert load_script().main(["--from-package", MINILM_PACKAGE, str(out_dir)]) == 0
    return source, out_dir


def layernorm_eps_values(module):
    return {m.eps for m in module.modules() if isinstance(m, torch.nn.LayerNorm)}


def test_minilm_matches_transformers(converted_minilm, tmp_path, capsys, record_property):
    source, out_dir = converted_minilm
    hf_model = transformers.AutoModel.from_pretrained(source).eval()
    diffs, model = compare(source, out_dir, tmp_path / "hire", hf_model, "wordpiece")
    assert layernorm_eps_values(model.encoder) == {1e-12}
    # the comparison's stock baseline (roberta_hire with fairseq's head) honours the recorded
    # epsilon too: the baseline runs the same encoder
    stock_diffs, stock_model = compare(source, out_dir, tmp_path / "stock", hf_model, "wordpiece", variant="stock-head")
    assert type(stock_model).__name__ == "RobertaHireModel"
    assert layernorm_eps_values(stock_model) == {1e-12}
    # fairseq's own roberta has no --encoder-layernorm-eps: it runs with its 1e-5
    plain_diffs, plain_model = compare(source, out_dir, tmp_path / "plain", hf_model, "wordpiece",
                                       variant="fairseq-roberta")
    assert type(plain_model).__name__ == "RobertaModel"
    assert layernorm_eps_values(plain_model) == {1e-5}

    with capsys.disabled():
        print(f"\nall-MiniLM-L6-v2 max abs diff vs transformers: roberta_hire {diffs['hidden']:.2e}, "
              f"stock head {stock_diffs['hidden']:.2e} (source eps 1e-12); fairseq's roberta, eps 1e-5 "
              f"{plain_diffs['hidden']:.2e}")
    record_property("minilm_max_abs_diff", diffs["hidden"])
    record_property("minilm_stock_roberta_max_abs_diff", stock_diffs["hidden"])
    assert diffs["hidden"] <= TOLERANCE and stock_diffs["hidden"] <= TOLERANCE < plain_diffs["hidden"]


def test_minilm_through_the_hub(converted_minilm):
    """The converted folder loads offline through the hub (its tokenizer_spec.json gives the
    hire_tokenizer), with the source's LayerNorm epsilon whichever RoBERTa arch builds it."""
    source, out_dir = converted_minilm
    hf_model = transformers.AutoModel.from_pretrained(source).eval()
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(source)
    # as roberta_hire, and as the checkpoint's own stock arch: both honour the epsilon
    for hub, model_class in ((from_pretrained(str(out_dir), arch="roberta_hire"), "RobertaHireModel"),
                             (from_pretrained(str(out_dir)), "RobertaModel")):
        assert type(hub.model).__name__ == model_class
        assert layernorm_eps_values(hub.model.encoder) == {1e-12}
        for (sentence,) in glue_examples()[:3]:
            with torch.no_grad():
                features = hub.extract_features(hub.encode(sentence))[0]
                expected = hf_model(**hf_tokenizer(sentence, return_tensors="pt")).last_hidden_state[0]
            assert (features - expected).abs().max() <= TOLERANCE


def test_minilm_checkpoint_format(converted_minilm):
    source, out_dir = converted_minilm
    state = safe_torch_load(out_dir / "model.pt")
    assert set(state) == {"args", "model", "optimizer_history", "extra_state", "last_optimizer_state"}
    assert state["last_optimizer_state"] is None
    args = state["args"]
    config = json.loads((source / "config.json").read_text())
    assert (args.arch, args.task, args.criterion) == ("roberta_base", "masked_lm", "masked_lm")
    assert (args.encoder_layers, args.encoder_embed_dim, args.encoder_ffn_embed_dim, args.encoder_attention_heads) == (
        config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"], config["num_attention_heads"])
    assert args.max_positions == config["max_position_embeddings"] == 512
    assert args.activation_fn == "gelu"
    assert args.encoder_layernorm_eps == config["layer_norm_eps"] == 1e-12
    assert (args.dropout, args.attention_dropout) == (0.1, 0.1)
    assert args.lm_head_initialised_by_converter is True
    model = state["model"]
    assert all(k.startswith(("decoder.sentence_encoder.", "decoder.lm_head.")) for k in model)
    assert "decoder.sentence_encoder.emb_layer_norm.weight" in model
    embed = model["decoder.sentence_encoder.embed_tokens.weight"]
    assert embed.shape == (30522, 384)
    assert model["decoder.lm_head.weight"] is embed or torch.equal(model["decoder.lm_head.weight"], embed)
    assert torch.equal(model["decoder.lm_head.layer_norm.weight"], torch.ones(384))

    # positions: fairseq row padding_idx + 1 + i = BERT position i + token type 0
    hf = load_file(str(source / "model.safetensors"))
    positions = model["decoder.sentence_encoder.embed_positions.weight"]
    assert positions.shape == (512 + 2, 384)
    assert torch.equal(positions[:2], torch.zeros(2, 384))
    assert torch.equal(
        positions[2:], hf["embeddings.position_embeddings.weight"] + hf["embeddings.token_type_embeddings.weight"][0]
    )
    # the embedding rows follow dict.txt: <s> <pad> </s> <unk>, then its lines, <mask> last
    row = {token: i for i, token in enumerate((source / "vocab.txt").read_text(encoding="utf-8").splitlines())}
    tokens = [line.rsplit(" ", 1)[0] for line in (out_dir / "dict.txt").read_text(encoding="utf-8").splitlines()]
    order = [row[t] for t in ("[CLS]", "[PAD]", "[SEP]", "[UNK]", *tokens, "[MASK]")]
    assert torch.equal(embed, hf["embeddings.word_embeddings.weight"][order])
    assert tokens[:2] == ["[unused0]", "[unused1]"] and "play" in tokens and "##ing" in tokens


# ---------------------------------------------------------------- random tiny RoBERTa


def write_roberta_vocab(folder: Path) -> None:
    """roberta-base's real vocab.json / merges.txt, rebuilt from the GPT-2 BPE files the repo
    ships: HF id = fairseq dict.txt index (<s> <pad> </s> <unk>, dict lines, <mask>)."""
    gpt2_token = {i: t for t, i in json.loads((GPT2_BPE / "encoder.json").read_text(encoding="utf-8")).items()}
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for line in (GPT2_BPE / "dict.txt").read_text(encoding="utf-8").splitlines():
        symbol = line.split()[0]
        vocab[gpt2_token[int(symbol)] if symbol.isdigit() else symbol] = len(vocab)
    vocab["<mask>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    shutil.copy(GPT2_BPE / "vocab.bpe", folder / "merges.txt")


@pytest.fixture(scope="module", params=["tied", "untied"])
def tiny_roberta(request, tmp_path_factory):
    """A random RobertaForMaskedLM saved by save_pretrained (safetensors, tokenizer.json only,
    as transformers 5 writes them); its tokenizer is roberta-base's real one."""
    root = tmp_path_factory.mktemp(f"tiny-roberta-{request.param}")
    write_roberta_vocab(root / "vocab")
    config = transformers.RobertaConfig(
        vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, tie_word_embeddings=request.param == "tied",
        **TINY_SIZES,
    )
    config.save_pretrained(root / "vocab")  # AutoTokenizer reads model_type from it
    torch.manual_seed(0)
    model = transformers.RobertaForMaskedLM(config).eval()
    perturb(model)
    source = root / "hf"
    model.save_pretrained(source)
    transformers.AutoTokenizer.from_pretrained(root / "vocab").save_pretrained(source)
    assert not (source / "vocab.json").exists()
    return source, model, root


def test_tiny_roberta_matches_transformers(tiny_roberta, tmp_path, capsys):
    source, hf_model, _ = tiny_roberta
    untied = not hf_model.config.tie_word_embeddings
    out_dir = tmp_path / "converted"
    report = convert(source, out_dir)
    assert not report.lm_head_initialised and report.untied_lm_head == untied
    # transformers 5 unties lm_head.bias too: its forward adds decoder.bias only
    assert any(i.startswith("lm_head.bias ") for i in report.ignored) == untied
    args = safe_torch_load(out_dir / "model.pt")["args"]
    assert args.max_positions == 512 and args.encoder_layernorm_eps == 1e-5
    assert args.untie_weights_roberta == untied and args.lm_head_initialised_by_converter is False
    assert ("--untie-weights-roberta" in architecture_flags(out_dir / "model.pt")) == untied
    assert (out_dir / "vocab.bpe").read_text(encoding="utf-8") == (GPT2_BPE / "vocab.bpe").read_text(encoding="utf-8")

    diffs, _ = compare(source, out_dir, tmp_path, hf_model, "gpt2", with_logits=True)
    with capsys.disabled():
        print(f"\ntiny RoBERTa ({'untied' if untied else 'tied'} LM head) max abs diff vs transformers: "
              f"hidden {diffs['hidden']:.2e}, LM logits {diffs['logits']:.2e}")
    assert diffs["hidden"] <= TOLERANCE
    assert diffs["logits"] <= TOLERANCE


def test_a_tokenizer_that_adds_a_prefix_space_converts_and_matches_transformers(tiny_roberta, tmp_path):
    """roberta-base's tokenizer saved with add_prefix_space=True: through the hub, single texts and
    pairs (each text gets its space, as in transformers) give transformers' hidden states."""
    source, hf_model, root = tiny_roberta
    prefixed = tmp_path / "hf"
    shutil.copytree(source, prefixed)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(root / "vocab", add_prefix_space=True)
    hf_tokenizer.save_pretrained(prefixed)
    convert(prefixed, tmp_path / "converted")
    assert json.loads((tmp_path / "converted" / "tokenizer_spec.json").read_text())["add_prefix_space"] is True
    hub = from_pretrained(str(tmp_path / "converted"))
    for texts in [("Hello world",), ("A first text", "and a second.")]:  # the hub strips, as glue_prep
        with torch.no_grad():
            features = hub.extract_features(hub.encode(*texts))[0]
            expected = hf_model.roberta(**hf_tokenizer(*texts, return_tensors="pt")).last_hidden_state[0]
        assert features.shape == expected.shape and (features - expected).abs().max() <= TOLERANCE, texts


def test_pytorch_bin_and_classic_vocab_files_convert_the_same(tiny_roberta, tmp_path):
    """pytorch_model.bin (loaded with weights_only=True) + vocab.json/merges.txt give the
    checkpoint that model.safetensors + tokenizer.json give."""
    source, hf_model, root = tiny_roberta
    bin_source = tmp_path / "hf-bin"
    bin_source.mkdir()
    shutil.copy(source / "config.json", bin_source)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(root / "vocab" / name, bin_source)
    # what transformers 4 wrote: every tensor, tied copies included
    torch.save(hf_model.state_dict(), bin_source / "pytorch_model.bin")

    convert(source, tmp_path / "from-safetensors")
    convert(bin_source, tmp_path / "from-bin")
    a = safe_torch_load(tmp_path / "from-safetensors" / "model.pt")
    b = safe_torch_load(tmp_path / "from-bin" / "model.pt")
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    for name in ("dict.txt", "vocab.bpe", "tokenizer_spec.json"):
        assert (tmp_path / "from-safetensors" / name).read_bytes() == (tmp_path / "from-bin" / name).read_bytes()
    assert json.loads((tmp_path / "from-bin" / "encoder.json").read_text(encoding="utf-8")) == json.loads(
        (root / "vocab" / "vocab.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------- random tiny BERT with heads


def test_tiny_bert_with_heads_matches_transformers(tiny_bert, tmp_path, capsys):
    source, hf_model = tiny_bert
    report = convert(source, tmp_path / "converted")
    assert report.dropped == [
        "cls.seq_relationship.bias", "cls.seq_relationship.weight", "pooler.dense.bias", "pooler.dense.weight"]
    assert "pooler.dense.weight" in report.summary()
    args = safe_torch_load(tmp_path / "converted" / "model.pt")["args"]
    assert (args.activation_fn, args.max_positions, args.encoder_layernorm_eps) == ("gelu_accurate", 256, 1e-12)

    diffs, _ = compare(source, tmp_path / "converted", tmp_path, hf_model, "wordpiece", with_logits=True)
    with capsys.disabled():
        print(f"\ntiny BERT (gelu_new, MLM head) max abs diff vs transformers: "
              f"hidden {diffs['hidden']:.2e}, LM logits {diffs['logits']:.2e}")
    assert diffs["hidden"] <= TOLERANCE
    assert diffs["logits"] <= TOLERANCE


@pytest.mark.parametrize("layout", ["sharded-safetensors", "bin-with-gamma-beta"])
def test_other_weight_layouts_convert_the_same(tiny_bert, tmp_path, layout):
    source, hf_model = tiny_bert
    other = tmp_path / layout
    if layout == "sharded-safetensors":
        hf_model.save_pretrained(other, max_shard_size="200KB")
        assert (other / "model.safetensors.index.json").exists() and not (other / "model.safetensors").exists()
    else:
        # older BERT checkpoints (e.g. bert-base-uncased) name LayerNorm parameters gamma / beta
        other.mkdir()
        shutil.copy(source / "config.json", other)
        state = {
            k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
            for k, v in hf_model.state_dict().items()
        }
        assert any(k.endswith("LayerNorm.gamma") for k in state)
        torch.save(state, other / "pytorch_model.bin")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(source / name, other)

    convert(source, tmp_path / "reference")
    convert(other, tmp_path / "converted")
    a = safe_torch_load(tmp_path / "reference" / "model.pt")["model"]
    b = safe_torch_load(tmp_path / "converted" / "model.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_duplicate_wordpiece_token_maps_where_hf_maps_it(tiny_bert, tmp_path):
    """A token listed twice in vocab.txt: HF (and the tokenizers library) use the later row;
    so does dict.txt, and the earlier row becomes an unreachable madeupword."""
    source, _ = tiny_bert
    folder = tmp_path / "hf"
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer_config.json"):
        shutil.copy(source / name, folder)
    vocab = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    tokens[vocab["[unused7]"]] = "the"
    (folder / "vocab.txt").write_text("".join(f"{t}\n" for t in tokens), encoding="utf-8")
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    assert hf_tokenizer.convert_tokens_to_ids("the") == vocab["the"] > vocab["[unused7]"]

    convert(folder, tmp_path / "converted")
    dictionary = Dictionary.load(str(tmp_path / "converted" / "dict.txt"))
    embed = safe_torch_load(tmp_path / "converted" / "model.pt")["model"]["decoder.sentence_encoder.embed_tokens.weight"]
    hf_embed = load_file(str(source / "model.safetensors"))["bert.embeddings.word_embeddings.weight"]
    assert torch.equal(embed[dictionary.index("the")], hf_embed[vocab["the"]])
    assert torch.equal(embed[dictionary.index("madeupword0000")], hf_embed[vocab["[unused7]"]])

