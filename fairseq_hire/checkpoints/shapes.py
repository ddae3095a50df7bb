"""A checkpoint's weights must be the model its configuration builds.

fairseq builds the model a checkpoint's configuration describes and only then loads the
weights into it, so a configuration whose sizes are not those of its weights (an FFN of
2**31: 256 GiB) allocates what it names before ``load_state_dict`` could notice.
``check(state, path)`` runs before any model is built (``checkpoint_io.load_state``) and
refuses, naming the option and the weight:

* a weight that claims more numbers than its storage holds (a stride-0 view, which torch.save
  writes as one number): the weights' sizes then bound what a matching configuration builds;
* an encoder whose sizes, read as fairseq reads them (the section as the object fairseq
  passes, the architecture's defaults, the sentence_prediction task's max_positions,
  ``TransformerConfig.from_namespace``, which also reads ``ffn_embed_dim`` or an ``encoder``
  section), are not those of the weights: embedding and FFN dimensions, number of layers,
  learned positions; and attention heads that do not divide the dimension;
* a classification head, the task's or one in the weights (the hub registers those), that
  the configuration (num_classes, the ``--hire-*`` options) builds with other shapes than the
  checkpoint's head of that name; a head the weights lack may hold no more numbers than all
  the weights together. Heads are built on the meta device, which allocates nothing.
"""
import argparse
import contextlib
import copy
import dataclasses
import re
from typing import Dict, List, Optional

import torch
from torch.overrides import TorchFunctionMode

from .configuration import SENTENCE_PREDICTION_TASKS, as_mapping, model_name, task_name, within_depth
from .errors import UnsafeConfigError, one_line

# where the encoder's weights live: fairseq-train's checkpoints, the original releases
ENCODER_PREFIXES = ("encoder.sentence_encoder.", "decoder.sentence_encoder.")
HEAD_PREFIX = "classification_heads."
PAD_INDEX = 1  # fairseq's Dictionary puts <pad> at 1; learned positions have max_positions + pad + 1 rows
DEFAULT_HEAD_NAME = "sentence_classification_head"
CONFIGURATION_READ_ERRORS = (TypeError, ValueError, AttributeError, KeyError, AssertionError, RuntimeError)


def check(state: Dict, path, heads: bool = True) -> None:
    """Refuse (UnsafeConfigError) a checkpoint whose configuration builds another model than
    the one its weights are; run after ``checkpoint_config.check``, which refuses every
    configuration fairseq would evaluate, so that building heads on the meta device runs none.
    heads=False checks the encoder only (a head's parameters that differ are ``untrained_heads``)."""
    weights = state.get("model")
    if isinstance(weights, dict):
        with within_depth(path):
            Shapes(path, weights).check(state, heads)


def kept_layers(keep) -> Optional[List[int]]:
    """--encoder-layers-to-keep's layer numbers in fairseq's order (sorted), or None where they
    are not distinct non-negative integers (fairseq's pruning then loses layers)."""
    try:
        kept = sorted(int(index) for index in str(keep).split(","))
    except ValueError:
        return None
    return kept if kept and len(set(kept)) == len(kept) and kept[0] >= 0 else None


def head_shapes(weights: Dict) -> Dict[str, tuple]:
    """The shape of every classification head parameter among these weights."""
    return {key: tuple(value.shape) for key, value in weights.items()
            if key.startswith(HEAD_PREFIX) and isinstance(value, torch.Tensor)}


def untrained_heads(model, stored: Dict[str, tuple]) -> Dict[str, list]:
    """head name -> its parameters that the built model does not hold as the checkpoint stored
    them (`stored`: head_shapes of its weights before fairseq loaded them). Loading is lenient on
    purpose (a head of other classes or parts starts fresh, for fine-tuning: MNLI to RTE), so a
    configuration whose --hire-* options or num_classes differ from the weights', or weights
    without the task's head, give a head that was never trained."""
    built = head_shapes(model.classification_heads.state_dict(prefix=HEAD_PREFIX))
    found = {}
    for key in sorted(built.keys() | stored.keys()):
        if built.get(key) != stored.get(key):
            found.setdefault(key[len(HEAD_PREFIX):].partition(".")[0], []).append(key)
    return found


class Shapes:
    def __init__(self, path, weights: Dict):
        self.path = path
        self.weights = {key: value for key, value in weights.items() if isinstance(value, torch.Tensor)}

    def refuse(self, what: str, expected: str):
        raise UnsafeConfigError(
            f"refusing to load checkpoint {self.path}: {what}; expected {expected}. fairseq builds (and "
            "allocates) the model a configuration describes before it loads the weights; this one was refused "
            "before anything was built."
        )

    def mismatch(self, where: str, option: str, value, weight: str, shape):
        self.refuse(f"{where} builds {option} = {value}, but its weight {weight} has shape {tuple(shape)}",
                    "a configuration whose sizes are those of its weights")

    def check(self, state: Dict, heads: bool = True) -> None:
        from fairseq.models import ARCH_CONFIG_REGISTRY

        self.check_storage()
        self.total = sum(weight.numel() for weight in self.weights.values())
        for where, model, task, criterion in configurations(state):
            arch = model_name(model)
            if arch not in ARCH_CONFIG_REGISTRY:  # checkpoint_config refuses what is no RoBERTa
                continue
            model = self.as_fairseq_builds_it(where, model, task, arch)
            self.check_encoder(where, model)
            if heads:
                self.check_heads(where, model, task, criterion, arch)

    def check_storage(self) -> None:
        for key, weight in self.weights.items():
            if weight.layout != torch.strided:
                self.refuse(f"its weight {key} is a {weight.layout} tensor", "dense tensors, as fairseq saves them")
            stored = weight.untyped_storage().nbytes() // max(weight.element_size(), 1)
            if weight.numel() > stored:
                self.refuse(f"its weight {key} has shape {tuple(weight.shape)} ({weight.numel()} numbers) but "
                            f"stores {stored}", "weights stored whole, as torch.save writes a model's state dict")

    # ------------------------------------------------------------------ the configuration as fairseq reads it

    def as_fairseq_builds_it(self, where: str, section, task, arch: str):
        """A copy of the model section after what fairseq does to it before it builds the
        encoder: the same kind of object (a dict section becomes an omegaconf DictConfig, whose
        attributes TransformerConfig.from_namespace reads differently from a Namespace's), the
        task's max_positions (sentence_prediction.build_model), the architecture's defaults
        (models.build_model), tokens_per_sample for a missing max_positions
        (RobertaModel.build_model), RoBERTa's defaults again and a pruned layer count
        (RobertaEncoder)."""
        from fairseq.models import ARCH_CONFIG_REGISTRY
        from fairseq.models.roberta.model import base_architecture
        from fairseq.utils import safe_getattr
        from omegaconf import OmegaConf, open_dict
        from omegaconf.errors import OmegaConfBaseException

        if isinstance(section, argparse.Namespace):
            model = copy.deepcopy(section)
        else:
            model = OmegaConf.create(copy.deepcopy(as_mapping(section)), flags={"allow_objects": True})
        try:
            with open_dict(model) if OmegaConf.is_config(model) else contextlib.ExitStack():
                if task_name(task) in SENTENCE_PREDICTION_TASKS:
                    model.max_positions = task_option(task, "max_positions")
                ARCH_CONFIG_REGISTRY[arch](model)
                if safe_getattr(model, "max_positions") is None:
                    model.max_positions = safe_getattr(model, "tokens_per_sample") or task_option(task, "tokens_per_sample")
                base_architecture(model)  # max_source_positions follows max_positions
                keep = safe_getattr(model, "encoder_layers_to_keep")
                if keep:
                    model.encoder_layers = len(self.layers_to_keep(where, keep))
        except UnsafeConfigError:
            raise
        except CONFIGURATION_READ_ERRORS + (OmegaConfBaseException,) as error:
            self.refuse(f"fairseq cannot read its model section {where} ({one_line(error)})",
                        "the options of a RoBERTa model")
        return model

    def layers_to_keep(self, where: str, keep) -> list:
        kept = kept_layers(keep)
        if kept is None:
            self.refuse(f"{where}.encoder_layers_to_keep = {str(keep)[:100]!r}",
                        "distinct layer indices separated by commas")
        return kept

    def size(self, where: str, option: str, value) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self.refuse(f"{where} builds {option} = {value!r}", "a positive integer")
        return value

    # ------------------------------------------------------------------ the encoder

    def check_encoder(self, where: str, model) -> None:
        from fairseq.models.transformer import TransformerConfig

        try:
            transformer = TransformerConfig.from_namespace(model)
        except CONFIGURATION_READ_ERRORS as error:
            self.refuse(f"fairseq cannot read the encoder options of {where} ({one_line(error)})",
                        "the options of a RoBERTa encoder")
        encoder = transformer.encoder
        embed = self.size(where, "encoder_embed_dim", model.encoder_embed_dim)
        dim = self.size(where, "encoder.embed_dim", encoder.embed_dim)
        ffn = self.size(where, "encoder.ffn_embed_dim", encoder.ffn_embed_dim)
        layers = self.size(where, "encoder.layers", encoder.layers)
        heads = self.size(where, "encoder.attention_heads", encoder.attention_heads)
        if dim % heads:
            self.refuse(f"{where} builds encoder.attention_heads = {heads} for encoder.embed_dim = {dim}",
                        "a number of attention heads that divides the embedding dimension")

        prefix = next((p for p in ENCODER_PREFIXES if p + "embed_tokens.weight" in self.weights), None)
        if prefix is None:
            self.refuse(f"its weights lack the encoder's embeddings ({ENCODER_PREFIXES[0]}embed_tokens.weight)",
                        "the weights of the RoBERTa encoder its configuration builds")
        self.expect(where, "encoder_embed_dim", embed, prefix + "embed_tokens.weight", lambda s: s[1:] == (embed,))
        self.check_positions(where, transformer, prefix, embed)

        found = sorted({int(m.group(1)) for m in map(re.compile(re.escape(prefix) + r"layers\.(\d+)\.").match,
                                                     self.weights) if m})
        keep = model.encoder_layers_to_keep
        if keep and max(self.layers_to_keep(where, keep)) >= len(found):
            pruned = len(self.layers_to_keep(where, keep)) == len(found) == layers
            self.refuse(f"{where} keeps layers {keep} of the {len(found)} in its weights" + (
                f" (its weights are those layers already: set {where}.encoder_layers_to_keep to None, as a "
                "run pruned from scratch now saves it)" if pruned else ""), "indices of layers its weights hold")
        if not keep and layers != len(found):
            self.refuse(f"{where} builds encoder.layers = {layers}, but its weights hold {len(found)} layers",
                        "a configuration whose sizes are those of its weights")
        for index in found:
            layer = f"{prefix}layers.{index}."
            self.expect(where, "encoder.ffn_embed_dim", ffn, layer + "fc1.weight", lambda s: s == (ffn, dim))
            self.expect(where, "encoder.ffn_embed_dim", ffn, layer + "fc2.weight", lambda s: s == (dim, ffn))
            if layer + "self_attn.in_proj_weight" in self.weights:  # before fairseq split q, k and v
                self.expect(where, "encoder.embed_dim", dim, layer + "self_attn.in_proj_weight",
                            lambda s: s == (3 * dim, dim))
            else:
                self.expect(where, "encoder.embed_dim", dim, layer + "self_attn.q_proj.weight",
                            lambda s: s == (dim, dim))

    def check_positions(self, where: str, transformer, prefix: str, embed: int) -> None:
        if transformer.no_token_positional_embeddings:
            return
        positions = self.size(where, "max_positions", transformer.max_source_positions)
        rows = positions + PAD_INDEX + 1
        if transformer.encoder.learned_pos:
            self.expect(where, "max_positions", positions, prefix + "embed_positions.weight",
                        lambda s: s == (rows, embed))
        elif rows * embed > self.total:  # sinusoidal: a table nothing in the weights bounds
            self.refuse(f"{where} builds a sinusoidal position table of {rows} x {embed} numbers, more than "
                        f"all its {self.total} weights", "a configuration whose sizes are those of its weights")

    def expect(self, where: str, option: str, value, key: str, fits) -> None:
        weight = self.weights.get(key)
        if weight is None:
            self.refuse(f"{where} builds {option} = {value}, but its weights lack {key}",
                        "the weights of the model its configuration builds")
        if not fits(tuple(weight.shape)):
            self.mismatch(where, option, value, key, weight.shape)

    # ------------------------------------------------------------------ classification heads

    def check_heads(self, where: str, model, task, criterion, arch: str) -> None:
        """Build every head fairseq would build on the meta device and compare: the task's
        (sentence_prediction registers one named by the task) and each head in the weights
        (registered by the hub, sized by its out_proj and dense weights)."""
        in_weights = {}
        for key, weight in self.weights.items():
            if key.startswith(HEAD_PREFIX):
                name, _, param = key[len(HEAD_PREFIX):].partition(".")
                in_weights.setdefault(name, {})[param] = weight
        to_build = {}
        for name, params in in_weights.items():
            out_proj = params.get("out_proj.weight", params.get("out_proj.weight_orig"))
            if out_proj is None or "dense.weight" not in params or out_proj.dim() != 2:
                self.refuse(f"its classification head {name} has parameters {sorted(params)}",
                            "a head with out_proj and dense weights")
            to_build[name] = (out_proj.shape[0], params["dense.weight"].shape[0])
        if task_name(task) in SENTENCE_PREDICTION_TASKS:
            name = (task_option(task, "classification_head_name")
                    or (as_mapping(criterion) or {}).get("classification_head_name") or DEFAULT_HEAD_NAME)
            to_build[name] = (self.size(where, "num_classes", task_option(task, "num_classes")), None)
        fresh = 0
        for name, (num_classes, inner_dim) in to_build.items():
            built = self.build_head(where, model, arch, name, num_classes, inner_dim)
            saved = in_weights.get(name, {})
            if head_parts(saved) != head_parts(built):  # roberta_hire starts a head of other parts fresh
                fresh += sum(p.numel() for p in built.values())
                continue
            for param, shape in ((p, tuple(t.shape)) for p, t in built.items()):
                key = f"{HEAD_PREFIX}{name}.{param}"
                if param not in saved:
                    fresh += torch.Size(shape).numel()
                elif tuple(saved[param].shape) != shape:
                    self.refuse(f"{where} builds {key} of shape {shape} (num_classes {num_classes}, its "
                                f"--hire-* options), but its weight has shape {tuple(saved[param].shape)}",
                                "a configuration whose sizes are those of its weights")
        if fresh > self.total:
            self.refuse(f"{where} builds classification heads its weights lack, of {fresh} numbers, more than "
                        f"all its {self.total} weights", "a configuration whose sizes are those of its weights")

    def build_head(self, where: str, model, arch: str, name: str, num_classes: int,
                   inner_dim: Optional[int]) -> Dict[str, torch.Tensor]:
        """The head's parameters as the model class registers it, on the meta device."""
        from fairseq.models import ARCH_MODEL_REGISTRY

        host = HeadHost(model)
        try:
            with torch.device("meta"), NoInitialisation():
                ARCH_MODEL_REGISTRY[arch].register_classification_head(host, name, num_classes=num_classes,
                                                                       inner_dim=inner_dim)
        except CONFIGURATION_READ_ERRORS as error:
            self.refuse(f"fairseq cannot build the classification head {name} of {where} ({one_line(error)})",
                        "the options of a RoBERTa classification head")
        return host.classification_heads[name].state_dict()


class NoInitialisation(TorchFunctionMode):
    """Skips torch.nn.init's initialisers: a meta tensor holds no values to set. (torch computes
    normal_ on the meta device through its Python references, whose first use imports
    torch._dynamo, which extends torch's weights_only allowlist and the warnings filters and
    replaces torch.manual_seed for the rest of the process: not what loading a checkpoint may do.)"""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if getattr(func, "__module__", None) == "torch.nn.init" and name.endswith("_") and not name.startswith("_"):
            return args[0] if args else kwargs["tensor"]  # the tensor it would have filled
        return func(*args, **kwargs)


@dataclasses.dataclass
class HeadHost:
    """What a RoBERTa model's register_classification_head reads of the model: its args and heads."""
    args: object
    classification_heads: Dict = dataclasses.field(default_factory=dict)


def head_parts(param_names) -> frozenset:
    """The submodules a head's parameters live in ({"dense", "out_proj"} for a stock head;
    HIRE adds "extractor" and "fusion"): a checkpoint head of other parts starts fresh."""
    return frozenset(name.partition(".")[0] for name in param_names)


def configurations(state: Dict):
    """(where, model, task and criterion sections) of each configuration fairseq may build
    from: the original format's args (every option in one Namespace), cfg's sections."""
    if state.get("args") is not None:
        yield "args", state["args"], state["args"], state["args"]
    cfg = as_mapping(state.get("cfg"))
    if cfg is not None and cfg.get("model") is not None:
        yield "cfg.model", cfg["model"], cfg.get("task"), cfg.get("criterion")


def task_option(task, name: str):
    """The task section's option, else its default in the task's config (sentence_prediction)."""
    from fairseq.tasks import TASK_DATACLASS_REGISTRY

    value = (as_mapping(task) or {}).get(name)
    if value is not None:
        return value
    config = TASK_DATACLASS_REGISTRY.get(task_name(task))
    field = next((f for f in dataclasses.fields(config) if f.name == name), None) if config else None
    default = None if field is None else field.default
    return default if isinstance(default, (int, str)) and not str(default).startswith("${") else None
