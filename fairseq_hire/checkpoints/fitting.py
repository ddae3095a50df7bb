"""A checkpoint a plugin run loads into its model must be the encoder that model is.

fairseq-train loads --finetune-from-model (and --restore-file, and a resumed checkpoint_last)
into the model the run's own options build. A size the run gets wrong ends in fairseq's
"Cannot load model parameters ... ensure that the architectures match" under a long traceback
that names no option; a LayerNorm epsilon, an activation, a number of attention heads, the
place of the LayerNorms or the scaling of the embeddings the run gets wrong loads without a
word (none changes a weight's shape) and fine-tunes another function than the checkpoint's.
fairseq-hydra-train makes both easy: the YAMLs are roberta.base/large's, and a converted
checkpoint's sizes must be given as overrides (``scripts/checkpoint_args.py --hydra``).

``check(model, state, path)`` compares what the run built with the checkpoint: sizes from its
weights, the rest from its configuration as fairseq reads it (``shapes.Shapes``), and refuses
the first difference in one line naming the option. Classification heads are not compared:
a head of other classes starts fresh on purpose (fine-tuning from MNLI to RTE).

``fit(model, state, path)`` checks so after two repairs. A run pruned with
--encoder-layers-to-keep saves its kept layers numbered from 0, which fairseq prunes again when
the run resumes: the run's checkpoints record the keep list (``saved_records``), and a
checkpoint that records the run's own gets its layers' original numbers back; a run pruned from
scratch saves its configuration as one fairseq pruned on load does (``forget_pruning``). A HIRE head
of other parts than the model's (a HIRE head into fairseq's roberta) starts fresh, as fairseq
starts a head of other classes.
"""
import logging
import math
import re
import weakref
from typing import Dict, List, Optional, Tuple

import torch

from .configuration import model_name
from .errors import CheckpointError
from .loading import load_state
from . import shapes
from .shapes import ENCODER_PREFIXES, HEAD_PREFIX, PAD_INDEX, Shapes, configurations, head_parts
from ..models import layernorm_eps
from ..models.layernorm_eps import FAIRSEQ_LAYERNORM_EPS

logger = logging.getLogger(__name__)


class ArchitectureMismatchError(CheckpointError, ValueError):
    """The run's model is not the encoder of the checkpoint it loads."""


KEPT_RECORD = "fairseq_hire_kept_layers"  # key in a checkpoint's extra_state: the layers its weights are
RUN_KEEPS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # a plugin run's model -> its keep


def remember_kept_layers(model) -> None:
    """Note the run's --encoder-layers-to-keep before fairseq loads a checkpoint: its pruning
    clears the option in the run's configuration, which the run's checkpoints then record."""
    from fairseq.utils import safe_getattr

    keep = safe_getattr(getattr(model, "args", None), "encoder_layers_to_keep", None)
    if keep:
        RUN_KEEPS[model] = keep


def forget_pruning(model_cfg) -> None:
    """After the run's first load its model holds only the kept layers, numbered from 0. fairseq
    clears --encoder-layers-to-keep from the run's configuration when it prunes a checkpoint it
    loads; a run that loaded none (from scratch) kept the option, and its checkpoints then
    described layers 0..k-1 as the layers to keep of themselves, which nothing could load."""
    if getattr(model_cfg, "encoder_layers_to_keep", None):
        model_cfg.encoder_layers_to_keep = None


def saved_records(model) -> Dict[str, str]:
    """What the run's checkpoints add to their extra_state: the layers a pruned run's weights are."""
    return {KEPT_RECORD: RUN_KEEPS[model]} if model in RUN_KEEPS else {}


def renumber_kept_layers(state: Dict, keep) -> None:
    """A pruned run's checkpoint holds the kept layers numbered from 0, and fairseq prunes every
    checkpoint it loads by the layers' original numbers: resuming the run would drop them (it
    does for fairseq's own roberta). Where the checkpoint records that its weights are the
    layers `keep` keeps, give them back those numbers, for fairseq's pruning to undo. (Another
    keep list indexes the checkpoint's layers as they are, as fairseq's: pruning further.)"""
    weights = state["model"]
    prefix, kept = encoder_prefix(weights), kept_layers(keep)
    if prefix is None or recorded_keep(state) != kept or layer_numbers(weights, prefix) != set(range(len(kept))):
        return
    layer = re.compile("^" + re.escape(prefix) + r"layers\.(\d+)\.")
    state["model"] = {layer.sub(lambda m: f"{prefix}layers.{kept[int(m.group(1))]}.", name): value
                      for name, value in weights.items()}


def drop_heads_of_other_parts(model, state: Dict) -> None:
    """A checkpoint head whose parts (dense, out_proj; HIRE's extractor and fusion) are not those
    of the model's head of that name starts fresh, with a warning. fairseq's roberta kept a HIRE
    head of its head's name and classes, then failed its strict load on the extractor (--baseline
    --mnli-init of a HIRE run); roberta_hire starts such a head fresh itself."""
    heads: Dict[str, List[str]] = {}
    for name in state["model"]:
        if name.startswith(HEAD_PREFIX):
            head, _, param = name[len(HEAD_PREFIX):].partition(".")
            heads.setdefault(head, []).append(param)
    for head, params in heads.items():
        if head not in getattr(model, "classification_heads", {}):
            continue
        theirs = sorted(head_parts(params))
        ours = sorted(head_parts(model.classification_heads[head].state_dict()))
        if theirs != ours:
            logger.warning(f"classification head {head!r} in the checkpoint has parts {theirs}; this model's has "
                           f"{ours}: it starts fresh")
            for param in params:
                del state["model"][f"{HEAD_PREFIX}{head}.{param}"]


def fit(model, state: Dict, path) -> None:
    """Make `state`, read from `path`, the weights `model` (a plugin run's) prunes or loads, or refuse it."""
    if model in RUN_KEEPS:
        renumber_kept_layers(state, RUN_KEEPS[model])
    drop_heads_of_other_parts(model, state)
    check(model, state, path)


def built(model) -> Dict[str, object]:
    """option -> what the run's model has (its first layer speaks for every layer; the activation
    by the name the run gave it: fairseq builds some as a new lambda each time)."""
    from fairseq.utils import safe_getattr

    encoder = model.encoder.sentence_encoder
    layer = encoder.layers[0]
    found = {
        "encoder_layers": len(encoder.layers),
        "encoder_embed_dim": encoder.embed_tokens.embedding_dim,
        "encoder_ffn_embed_dim": layer.fc1.out_features,
        "encoder_attention_heads": layer.self_attn.num_heads,
        "activation_fn": safe_getattr(model.args, "activation_fn", None),
        "encoder_normalize_before": bool(layer.normalize_before),
        "encoder_layernorm_eps": layer.final_layer_norm.eps,
        "no_scale_embedding": encoder.embed_scale == 1.0,
        "dictionary": encoder.embed_tokens.num_embeddings,
    }
    if isinstance(getattr(encoder, "embed_positions", None), torch.nn.Embedding):
        found["max_positions"] = encoder.embed_positions.num_embeddings - PAD_INDEX - 1
    return found


def encoder_prefix(weights: Dict) -> Optional[str]:
    return next((p for p in ENCODER_PREFIXES if p + "embed_tokens.weight" in weights), None)


def layer_numbers(weights: Dict, prefix: str) -> set:
    return {int(m.group(1)) for m in map(re.compile(re.escape(prefix) + r"layers\.(\d+)\.").match, weights) if m}


def kept_layers(keep) -> List[int]:
    """--encoder-layers-to-keep's layer numbers, in fairseq's order (sorted)."""
    kept = shapes.kept_layers(keep)
    if kept is None:
        raise ArchitectureMismatchError(f"--encoder-layers-to-keep {str(keep)[:100]!r}: expected distinct layer "
                                        "indices separated by commas, e.g. 0,2,4")
    return kept


def recorded_keep(state: Dict) -> Optional[List[int]]:
    """The layers a pruned run's checkpoint records its weights are, or None (no record, or not one)."""
    record = (state.get("extra_state") or {}).get(KEPT_RECORD)
    if not isinstance(record, str) or len(record) > 10_000:
        return None
    try:
        return kept_layers(record)
    except ArchitectureMismatchError:
        return None


def recorded(state: Dict, path) -> Dict[str, object]:
    """option -> what the checkpoint is: sizes from its weights, the rest from its configuration."""
    from fairseq.models import ARCH_CONFIG_REGISTRY
    from fairseq.models.transformer import TransformerConfig
    from fairseq.utils import safe_getattr

    weights = state["model"]
    prefix = encoder_prefix(weights)
    embeddings = weights[prefix + "embed_tokens.weight"]
    numbers = layer_numbers(weights, prefix)
    found = {"encoder_layers": len(numbers), "encoder_embed_dim": embeddings.shape[1],
             "dictionary": embeddings.shape[0]}
    first_fc1 = f"{prefix}layers.{min(numbers, default=0)}.fc1.weight"
    if first_fc1 in weights:
        found["encoder_ffn_embed_dim"] = weights[first_fc1].shape[0]
    if prefix + "embed_positions.weight" in weights:  # learned positions: max_positions + pad + 1 rows
        found["max_positions"] = weights[prefix + "embed_positions.weight"].shape[0] - PAD_INDEX - 1
    where, section, task, _ = next(configurations(state), (None, None, None, None))
    if model_name(section) in ARCH_CONFIG_REGISTRY:  # the safe loader refused any other; a bare state has none
        arch = model_name(section)
        model = Shapes(path, weights).as_fairseq_builds_it(where, section, task, arch)
        encoder = TransformerConfig.from_namespace(model).encoder
        found["encoder_attention_heads"] = encoder.attention_heads
        found["activation_fn"] = safe_getattr(model, "activation_fn", "relu")
        found["encoder_normalize_before"] = bool(encoder.normalize_before)
        found["no_scale_embedding"] = bool(safe_getattr(model, "no_scale_embedding", False))
        found["encoder_layernorm_eps"] = float(safe_getattr(model, "encoder_layernorm_eps", None)
                                               or FAIRSEQ_LAYERNORM_EPS)
    return found


def same(option: str, theirs, ours) -> bool:
    if option == "encoder_layernorm_eps":
        return math.isclose(theirs, ours, rel_tol=1e-6)
    if option == "activation_fn":  # a name, or an alias of it (gelu_fast is gelu_accurate)
        from fairseq.utils import get_activation_fn

        try:
            return theirs == ours or get_activation_fn(theirs) is get_activation_fn(ours)
        except RuntimeError:  # a name fairseq does not know is no activation of the run's
            return False
    return theirs == ours


def differences(model, state: Dict, path) -> List[Tuple[str, object, object]]:
    """(option, the checkpoint's, the run's) for each option on which they differ."""
    run, checkpoint = built(model), recorded(state, path)
    keep = RUN_KEEPS.get(model)
    found = []
    if keep:  # fairseq prunes the checkpoint's layers to the kept ones when it loads them
        numbers = layer_numbers(state["model"], encoder_prefix(state["model"]))
        if not set(kept_layers(keep)) <= numbers:
            found.append(("encoder_layers_to_keep", sorted(numbers), keep))
    for option, value in checkpoint.items():
        if option not in run or (option == "encoder_layers" and keep):
            continue
        if not same(option, value, run[option]):
            found.append((option, value, run[option]))
    return found


def check(model, state: Dict, path) -> None:
    """Refuse (ArchitectureMismatchError) loading `state` (read from `path`) into `model`, the
    model a plugin run built, where the two encoders differ."""
    if encoder_prefix(state.get("model", {})) is None:
        return  # no RoBERTa encoder in it: fairseq's own load refuses it as it does today
    found = differences(model, state, path)
    if not found:
        return
    option, theirs, ours = found[0]
    if option == "encoder_layers_to_keep":
        raise ArchitectureMismatchError(
            f"cannot load {path}: --encoder-layers-to-keep {ours} keeps layer(s) "
            f"{','.join(map(str, sorted(set(kept_layers(ours)) - set(theirs))))}, but its encoder has layers "
            f"{','.join(map(str, theirs))} only; expected numbers of layers it has")
    if option == "dictionary":
        raise ArchitectureMismatchError(
            f"cannot load {path}: its embeddings have {theirs} rows, but the data's dictionary (dict.txt) "
            f"gives {ours}; expected data binarised with the checkpoint's dictionary (glue_prep does so)")
    hint = ""
    if option == "encoder_layernorm_eps" and not layernorm_eps.has_option(type(model)):
        hint = ("; fairseq's roberta architectures have no epsilon option: use roberta_hire, whose --head stock "
                "is their head")
    if option == "encoder_layers" and recorded_keep(state):
        hint = (f"; its weights are the layers --encoder-layers-to-keep "
                f"{','.join(map(str, recorded_keep(state)))} kept, which resuming it needs again")
    raise ArchitectureMismatchError(
        f"cannot load {path}: its {option} is {theirs}, but this run builds {ours}{hint}; expected the "
        f"checkpoint's architecture: python scripts/checkpoint_args.py {path} prints it as fairseq-train flags, "
        "with --hydra as fairseq-hydra-train overrides")


def check_same_encoder(path, reference_path, keep=None) -> None:
    """Refuse, before a run is launched, a checkpoint (finetune.py --mnli-init) whose encoder is not
    that of `reference_path` (PRETRAINED, whose options build the run). With a `keep` list the
    run prunes the checkpoint's layers, which its load checks (``check``)."""
    state = load_state(path, lazy=True)
    theirs, ours = recorded(state, path), recorded(load_state(reference_path, lazy=True), reference_path)
    for option, value in theirs.items():
        if option in ours and not (option == "encoder_layers" and keep) and not same(option, value, ours[option]):
            pruned = recorded_keep(state)
            hint = (f"; its weights are the layers --encoder-layers-to-keep {','.join(map(str, pruned))} kept, "
                    "which this run needs too") if option == "encoder_layers" and pruned else ""
            raise ArchitectureMismatchError(f"{path}: its {option} is {value}, but that of {reference_path}, which "
                                            f"builds this run, is {ours[option]}{hint}; expected a checkpoint "
                                            f"fine-tuned from {reference_path}")
