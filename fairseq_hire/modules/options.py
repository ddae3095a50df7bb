"""The options of a HIRE head, each defined once: name, type, default, choices and help.

``HireOptions`` is read by everything that knows the options: ``HireHead`` (its keyword
arguments are these fields), the fairseq model's ``add_args`` (one ``--hire-<name>`` flag
per field) and architecture defaults, and the Hydra YAML generator. A new option is one
field here plus its branch in ``hire.py``. Plain Python: no torch, no fairseq.

``HEADS`` names the heads the literature compares HIRE with, as option values of this one
model, so that every head of a comparison shares one recipe and one code path;
``head_preset`` also names BERT's last-k heads for any k (``last2-mean``, ``last6-concat``).
"""
import argparse
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Dict, List

# How the scored layers become the sequence A (T x B x C; concat: T x B x kC)
EXTRACTORS = ("gru", "scalar-mix", "mean", "concat")
POOLINGS = ("first", "mean", "max", "mean-max")
CLASSIFIER_INITS = ("normal", "pytorch")
FLAG_PREFIX = "hire_"


class HireOptionError(ValueError):
    """A --hire-* option, or a combination of roberta_hire's options, that builds no model; the
    message names the flag."""


@dataclass(frozen=True)
class HireOptions:
    gru_dim: int = field(default=0, metadata={
        "metavar": "H",
        "help": "hidden size per direction of HIRE's GRUs (extractor and fusion); 0 = half the "
                "encoder's hidden size"})
    extractor: str = field(default="gru", metadata={
        "choices": EXTRACTORS,
        "help": "how the layers are combined: gru = per-example weights from a 2-layer BiGRU "
                "(HIRE); scalar-mix = one learned softmax weight per layer, times a learned "
                "scale (ELMo); mean / concat = the last --hire-last-k layers averaged / "
                "concatenated"})
    last_k: int = field(default=4, metadata={
        "metavar": "K", "help": "how many of the last layers the mean and concat extractors use"})
    layer_norm: bool = field(default=False, metadata={
        "help": "normalise each scored layer before combining: per example, over its real "
                "tokens and all channels (AllenNLP ScalarMix's do_layer_norm)"})
    fusion: bool = field(default=True, metadata={
        "help": "fuse A with the last layer R by a BiGRU over [R; A; R + A; R * A] (HIRE); "
                "--no-hire-fusion feeds A to the classifier directly"})
    include_embeddings: bool = field(default=False, metadata={
        "help": "also score the embedding output as a layer"})
    pooling: str = field(default="first", metadata={
        "choices": POOLINGS,
        "help": "how the sequence becomes one vector: the <s> position, or the mean, max or "
                "both over the real tokens"})
    classifier_init: str = field(default="normal", metadata={
        "choices": CLASSIFIER_INITS,
        "help": "initialisation of the classifier's dense and out_proj: normal = N(0, 0.02) "
                "(BERT's, HIRE's default); pytorch = nn.Linear's default, as fairseq's stock "
                "RoBERTa head has it"})

    def __post_init__(self):
        for option in fields(self):
            choices = option.metadata.get("choices")
            value = getattr(self, option.name)
            if choices and value not in choices:
                raise HireOptionError(f"{flag(option.name)} {value!r}: expected one of {', '.join(choices)}")
            if option.type is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise HireOptionError(f"{flag(option.name)} {value!r}: expected an integer")
            if option.type is bool and not isinstance(value, bool):
                raise HireOptionError(f"{flag(option.name)} {value!r}: expected true or false")
        if self.gru_dim < 0:
            raise HireOptionError(f"{flag('gru_dim')} {self.gru_dim}: expected a size >= 1, or 0 for half "
                             "the encoder's hidden size")
        if self.last_k < 1:
            raise HireOptionError(f"{flag('last_k')} {self.last_k}: expected at least 1 layer")
        if self.extractor == "concat" and self.fusion:
            raise HireOptionError(f"{flag('extractor')} concat gives A of k x C channels, which the fusion "
                             f"layer cannot combine with R (C channels): add --no-hire-fusion")

    def scored_layers(self, encoder_layers: int) -> int:
        """How many layer outputs the head scores (the encoder's, and the embeddings' if asked);
        refused where the mean / concat extractor wants more of them than that."""
        scored = encoder_layers + int(self.include_embeddings)
        if self.extractor in ("mean", "concat") and self.last_k > scored:
            raise HireOptionError(f"{flag('last_k')} {self.last_k}: the head scores only {scored} layers")
        return scored

    @classmethod
    def from_args(cls, args) -> "HireOptions":
        """The options of a fairseq args Namespace / model config (``args.hire_<name>``)."""
        return cls(**{option.name: getattr(args, FLAG_PREFIX + option.name) for option in fields(cls)})

    def as_args(self) -> Dict[str, object]:
        """``{"hire_<name>": value}``, as fairseq stores the options."""
        return {FLAG_PREFIX + name: value for name, value in asdict(self).items()}

    def flags(self) -> List[str]:
        """The fairseq-train flags that set every option that differs from the default."""
        out = []
        for option in fields(self):
            value = getattr(self, option.name)
            if value == option.default:
                continue
            if option.type is bool:
                out.append(flag(option.name) if value else "--no-" + flag(option.name)[2:])
            else:
                out += [flag(option.name), str(value)]
        return out


def flag(name: str) -> str:
    return "--" + (FLAG_PREFIX + name).replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--hire-<name>`` flag per option. No defaults here: the architecture function
    fills them in (``set_defaults``), as fairseq's legacy models do, so that Hydra configs,
    which never run add_args, get the same defaults."""
    for option in fields(HireOptions):
        kwargs = {"help": option.metadata["help"]}
        if option.type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs.update(type=option.type, metavar=option.metadata.get("metavar"),
                          choices=option.metadata.get("choices"))
        parser.add_argument(flag(option.name), **kwargs)


def set_defaults(args, getter) -> None:
    """Give every option absent from args (or None there) its default; `getter` is fairseq's
    safe_getattr (passed in, so this module needs no fairseq; it reads omegaconf configs too)."""
    for option in fields(HireOptions):
        name = FLAG_PREFIX + option.name
        value = getter(args, name, None)
        setattr(args, name, option.default if value is None else value)


@dataclass(frozen=True)
class HeadPreset:
    options: HireOptions
    description: str  # one line, with its source


HEADS: Dict[str, HeadPreset] = {
    "stock": HeadPreset(
        HireOptions(extractor="mean", last_k=1, fusion=False, classifier_init="pytorch"),
        "the stock RoBERTa head: <s> of the last layer, dense, tanh, out_proj (Liu et al. 2019; "
        "fairseq's RobertaClassificationHead, equal to --arch roberta_base's)"),
    "stock-mean-pool": HeadPreset(
        HireOptions(extractor="mean", last_k=1, fusion=False, classifier_init="pytorch", pooling="mean"),
        "the stock head on the last layer mean-pooled over the real tokens, the pooling "
        "sentence-transformers encoders such as all-MiniLM-L6-v2 were trained with (Reimers and Gurevych 2019)"),
    "hire": HeadPreset(
        HireOptions(),
        "HIRE: per-example layer weights from a BiGRU, fused with the last layer by a BiGRU "
        "(Yang and Zhao 2019)"),
    "hire-no-fusion": HeadPreset(
        HireOptions(fusion=False),
        "HIRE's extractor alone: A into the head, no fusion layer (the paper's ablation)"),
    "hire-scalar-mix": HeadPreset(
        HireOptions(extractor="scalar-mix"),
        "HIRE with ELMo's global layer weights in place of its BiGRU extractor (this project's "
        "cheap ablation)"),
    "scalar-mix": HeadPreset(
        HireOptions(extractor="scalar-mix", fusion=False),
        "ELMo's scalar mix of all layers, <s> into the head (Peters et al. 2018; AllenNLP ScalarMix)"),
    "scalar-mix-ln": HeadPreset(
        HireOptions(extractor="scalar-mix", layer_norm=True, fusion=False),
        "scalar mix of all layers, each normalised first (AllenNLP ScalarMix, do_layer_norm=True)"),
}


def last_k_preset(k: int, how: str) -> HeadPreset:
    """The last k layers averaged or concatenated (how: mean or concat)."""
    verb = "mean" if how == "mean" else "concatenation"
    return HeadPreset(HireOptions(extractor=how, last_k=k, fusion=False),
                      f"{verb} of the last {k} layers, <s> into the head (Devlin et al. 2019, "
                      "feature-based; Sun et al. 2019)")


HEADS.update({f"last4-{how}": last_k_preset(4, how) for how in ("mean", "concat")})
LAST_K_HEAD = re.compile(r"last([1-9][0-9]*)-(mean|concat)")


def head_preset(name: str) -> HeadPreset:
    """A head of HEADS, or last<K>-mean / last<K>-concat for any K (BERT's k, default 4)."""
    if name in HEADS:
        return HEADS[name]
    match = LAST_K_HEAD.fullmatch(name)
    if match:
        return last_k_preset(int(match.group(1)), match.group(2))
    raise ValueError(f"unknown head {name!r}; expected one of {', '.join(HEADS)}, or last<K>-mean / "
                     "last<K>-concat for another number of layers K")


def ordered_heads(names) -> List[str]:
    """Heads in HEADS' order, then the other last<K> heads by extractor and K, then the rest."""
    def key(name):
        if name in HEADS:
            return 0, list(HEADS).index(name), 0, name
        match = LAST_K_HEAD.fullmatch(name)
        return (1, match.group(2), int(match.group(1)), name) if match else (2, "", 0, name)
    return sorted(set(names), key=key)


def head_options(name: str) -> HireOptions:
    return head_preset(name).options


def head_name(text: str) -> str:
    """An argparse type: the name of a head, an unknown one refused with the known ones."""
    try:
        head_preset(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


__all__ = ["HireOptions", "HEADS", "EXTRACTORS", "POOLINGS", "add_arguments", "set_defaults",
           "head_preset", "head_options", "head_name", "ordered_heads", "flag"]
