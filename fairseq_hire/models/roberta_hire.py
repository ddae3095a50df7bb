"""roberta_hire: fairseq's RoBERTa with HIRE classification heads.

Everything but the classification heads is fairseq's RobertaModel (encoder, LM head,
encoder flags), plus ``--encoder-layernorm-eps``, the encoder's LayerNorm epsilon, which
fairseq's RoBERTa does not have (``layernorm_eps``). A head registered here is
a ``HireHead`` built from the ``--hire-*`` options (``modules/options.py``, one definition
each): HIRE by default, or one of the heads it is compared with, the stock RoBERTa head
included. It reads every layer's output (``inner_states``) and the final features, so
``forward`` asks the encoder for all hidden states whenever a head is used.

``--freeze-encoder`` trains the heads alone: the encoder (embeddings, every layer, the LM
head) always runs in eval mode (no dropout, whatever ``model.train()`` says) and its
parameters have ``requires_grad`` False, so fairseq's trainer, which builds the optimizer from
the parameters that require gradients, never updates or decays them. ``--layer-cache DIR``
(frozen runs only) reads the encoder's layer outputs from a cache built once per encoder and
data set (``layer_cache``).
"""
import logging

import torch
from fairseq import utils
from fairseq.models import register_model, register_model_architecture
from fairseq.models.roberta import RobertaModel
from fairseq.models.roberta.model import base_architecture, roberta_large_architecture
from fairseq.modules.quant_noise import quant_noise as apply_quant_noise_
from fairseq.utils import safe_getattr

from ..checkpoints.shapes import head_parts
from ..modules import options
from ..modules.hire import HireHead
from ..modules.options import HireOptionError, HireOptions
from .layer_cache import LayerCache
from . import layernorm_eps
from .layernorm_eps import FAIRSEQ_LAYERNORM_EPS

logger = logging.getLogger(__name__)

# The frozen-encoder options and their defaults, which the architecture fills in (add_args
# sets none, so that Hydra configs, which never run add_args, get the same ones).
ENCODER_DEFAULTS = {"freeze_encoder": False, "layer_cache": None}


def check_encoder_options(cfg, model) -> None:
    """Refuse roberta_hire's encoder options for a model that is not roberta_hire: fairseq's parser
    refuses them on fairseq-train, but fairseq-hydra-train hands any ``model.*`` key to the
    model, and fairseq's stock roberta (the YAMLs' baseline) would fine-tune its whole encoder,
    or build its LayerNorms with fairseq's epsilon."""
    if safe_getattr(cfg, "layer_cache", None) == "":  # a truth test would train without a cache
        raise HireOptionError("model.layer_cache '': expected a folder for the cache (or no layer_cache)")
    given = [name for name in ENCODER_DEFAULTS if safe_getattr(cfg, name, None)]
    eps = safe_getattr(cfg, "encoder_layernorm_eps", None)
    if eps is not None and eps != FAIRSEQ_LAYERNORM_EPS:
        given.append("encoder_layernorm_eps")
    if given and not isinstance(model, RobertaHireModel):
        raise HireOptionError(f"model.{given[0]} is an option of roberta_hire; {type(model).__name__} would ignore it: "
                         "use roberta_hire, whose stock head is --head stock's options (docs/OPTIONS.md)")


def encoder_config_keys() -> set:
    """The keys TransformerConfig.from_namespace reads for an encoder: its own fields, and its
    encoder and quant_noise sections' as encoder_<field>, quant_noise_<field>."""
    import dataclasses

    from fairseq.models.transformer import TransformerConfig

    keys = set()
    for field in dataclasses.fields(TransformerConfig):
        if field.name == "decoder":
            continue
        if dataclasses.is_dataclass(field.type):
            keys.update(f"{field.name}_{sub.name}" for sub in dataclasses.fields(field.type))
        else:
            keys.add(field.name)
    return keys


def check_hydra_model_keys(cfg) -> None:
    """Refuse a ``model.*`` key of a fairseq-hydra-train run that its model does not read.
    fairseq-train's parser refuses an unknown flag, and fairseq checks a dataclass model's keys,
    but an argparse model (RoBERTa, roberta_hire) gets its Hydra section as it is and reads the
    keys it knows: ``model.freeze_encodr=true`` would train the whole encoder without a word.
    The keys it knows: its add_args flags, what its architecture fills in, tokens_per_sample
    (RobertaModel.build_model reads it for a missing max_positions), what its encoder reads
    through TransformerConfig.from_namespace (checkpoint_activations, encoder_*, quant_noise_*),
    and roberta_hire's options: the YAMLs carry them, and their baseline switch
    (model._name=roberta_base) leaves them to
    roberta_hire (``check_encoder_options`` refuses those that would change the stock model)."""
    import argparse
    import difflib

    from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY, MODEL_DATACLASS_REGISTRY
    from omegaconf import OmegaConf

    name = safe_getattr(cfg, "_name", None)
    if not OmegaConf.is_config(cfg) or name not in ARCH_MODEL_REGISTRY or name in MODEL_DATACLASS_REGISTRY:
        return
    filled_in = argparse.Namespace()
    ARCH_CONFIG_REGISTRY[name](filled_in)
    known = layernorm_eps.option_names(ARCH_MODEL_REGISTRY[name]) | layernorm_eps.option_names(RobertaHireModel) \
        | set(vars(filled_in)) | encoder_config_keys() | {"_name", "tokens_per_sample"}
    unknown = sorted(set(cfg.keys()) - known)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        hint = f"; did you mean model.{close[0]}?" if close else " (fairseq-train --arch NAME --help lists them)"
        raise HireOptionError(f"model.{unknown[0]}: {name} has no such option{hint}")


@register_model("roberta_hire")
class RobertaHireModel(RobertaModel):
    layer_cache = None  # a LayerCache with --layer-cache

    @staticmethod
    def add_args(parser):
        RobertaModel.add_args(parser)
        layernorm_eps.add_argument(parser)
        options.add_arguments(parser)
        parser.add_argument("--freeze-encoder", action="store_true", default=None,
                            help="train the classification heads only: the encoder (embeddings, layers, LM "
                                 "head) runs without dropout and is never updated")
        parser.add_argument("--layer-cache", metavar="DIR",
                            help="with --freeze-encoder: read the encoder's layer outputs from a cache in DIR, "
                                 "computed once per encoder and data set (fairseq_hire/models/layer_cache.py)")

    @classmethod
    def from_pretrained(cls, model_name_or_path, checkpoint_file="model.pt", data_name_or_path=".", bpe=None, **kwargs):
        """Offline hub loading; see fairseq_hire.hub_interface.from_pretrained."""
        from ..hub_interface import from_pretrained

        return from_pretrained(model_name_or_path, checkpoint_file, data_name_or_path, bpe=bpe, **kwargs)

    @classmethod
    def build_model(cls, args, task):
        from ..checkpoints import saving

        # a run training this model loads and saves through the plugin's hooks, with fairseq's own
        # task and criterion too (fairseq builds the model before it loads a checkpoint)
        saving.install(cls)
        roberta_hire_architecture(args)
        HireOptions.from_args(args)  # a bad --hire-* value is refused here, naming its flag
        if args.encoder_layerdrop > 0:
            raise HireOptionError(
                "roberta_hire does not support --encoder-layerdrop: HIRE weighs every layer's "
                "output, so the set of layers must not change between steps "
                "(use --encoder-layers-to-keep to prune layers once, at load time)"
            )
        if args.layer_cache and not args.freeze_encoder:
            raise HireOptionError(f"--layer-cache {args.layer_cache}: a cache holds a frozen encoder's outputs; "
                             "add --freeze-encoder")
        model = super().build_model(args, task)
        layernorm_eps.set_layernorm_eps(model.encoder, layernorm_eps.checked_eps(args.encoder_layernorm_eps))
        if args.freeze_encoder:
            model.encoder.requires_grad_(False)
            model.encoder.eval()
            if args.layer_cache:
                model.layer_cache = LayerCache(args.layer_cache, model.encoder.sentence_encoder, task.datasets,
                                               model.encoder.sentence_encoder.padding_idx)
        return model

    @property
    def frozen_encoder(self) -> bool:
        return bool(safe_getattr(self.args, "freeze_encoder", False))

    def train(self, mode: bool = True):
        """A frozen encoder stays in eval mode (no dropout) while the heads train."""
        super().train(mode)
        if self.frozen_encoder:
            self.encoder.eval()
        return self

    def half(self):
        """fairseq's --fp16 and --memory-efficient-fp16 cast the whole model with half(): see to()."""
        return self.to(torch.float16)

    def bfloat16(self):
        return self.to(torch.bfloat16)

    def to(self, *args, **kwargs):
        """fairseq casts the whole model for half precision (half() for --fp16, .to(dtype=
        torch.bfloat16) for --bf16): a frozen encoder keeps its weights as they are (rounded, they
        would leave training changed) and only the heads are cast; forward hands them the
        encoder's outputs in their dtype. A device asked for moves the whole model."""
        device, dtype, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)  # as nn.Module.to reads them
        if not self.frozen_encoder or dtype is None:
            return super().to(*args, **kwargs)
        if device is not None:
            super().to(device=device, non_blocking=non_blocking)
        self.classification_heads.to(*args, **kwargs)
        return self

    def register_classification_head(self, name, num_classes=None, inner_dim=None, **kwargs):
        """A HireHead with this model's --hire-* options; fairseq's head flags
        (--spectral-norm-classification-head, --quant-noise-pq) apply to its out_proj exactly
        as they do to RobertaClassificationHead's."""
        if name in self.classification_heads:
            logger.warning(f"re-registering classification head {name!r}")
        head = HireHead(
            embed_dim=self.args.encoder_embed_dim,
            num_encoder_layers=self.args.encoder_layers,
            num_classes=num_classes,
            options=HireOptions.from_args(self.args),
            inner_dim=inner_dim or self.args.encoder_embed_dim,
            pooler_dropout=self.args.pooler_dropout,
            activation_fn=utils.get_activation_fn(self.args.pooler_activation_fn),
        )
        q_noise = safe_getattr(self.args, "quant_noise_pq", 0)
        head.out_proj = apply_quant_noise_(
            head.out_proj, q_noise, safe_getattr(self.args, "quant_noise_pq_block_size", 8)
        )
        if safe_getattr(self.args, "spectral_norm_classification_head", False):
            if q_noise != 0:
                raise HireOptionError("--spectral-norm-classification-head cannot be combined with "
                                 "--quant-noise-pq (fairseq's RoBERTa head refuses it too)")
            head.out_proj = torch.nn.utils.spectral_norm(head.out_proj)
        self.classification_heads[name] = head

    def forward(
        self,
        src_tokens,
        features_only=False,
        return_all_hiddens=False,
        classification_head_name=None,
        **kwargs,
    ):
        """With a head: returns (logits B x K, extra) where extra["layer_weights"] is alpha,
        B x J. Without one: RobertaModel.forward."""
        if classification_head_name is None:
            return super().forward(src_tokens, features_only, return_all_hiddens, **kwargs)
        if self.frozen_encoder:
            with torch.no_grad():
                final, inner_states = self.frozen_encoder_states(src_tokens, **kwargs)
            extra = {"inner_states": inner_states}
        else:
            features, extra = self.encoder(
                src_tokens, features_only=True, return_all_hiddens=True, **kwargs
            )
            final = features.transpose(0, 1)
        head = self.classification_heads[classification_head_name]
        dtype = head.dense.weight.dtype
        if self.frozen_encoder and final.dtype != dtype:  # to() cast the heads alone
            final, extra["inner_states"] = final.to(dtype), [state.to(dtype) for state in extra["inner_states"]]
        padding_mask = src_tokens.eq(self.encoder.sentence_encoder.padding_idx)
        logits, layer_weights = head(extra["inner_states"], final, padding_mask)
        if not return_all_hiddens:
            extra["inner_states"] = None
        extra["layer_weights"] = layer_weights
        extra["first_scored_layer"] = head.first_scored_layer
        return logits, extra

    def frozen_encoder_states(self, src_tokens, **kwargs):
        """The frozen encoder's final features and inner states (T x B x C), from the layer
        cache when it holds every row of the batch."""
        if self.layer_cache is not None and kwargs.get("token_embeddings") is None:
            cached = self.layer_cache.lookup(src_tokens)
            if cached is not None:
                return cached
        features, extra = self.encoder(src_tokens, features_only=True, return_all_hiddens=True, **kwargs)
        return features.transpose(0, 1), extra["inner_states"]

    def upgrade_state_dict_named(self, state_dict, name):
        """Make a checkpoint fit this model.

        RoBERTa's own upgrade renames the original release's keys (``decoder.*``,
        ``emb_layer_norm``) and adapts data2vec checkpoints; its head handling, which drops
        a whole head on any dimension mismatch, is replaced by these rules:
        - a head of the current model that the checkpoint lacks starts fresh;
        - a checkpoint head with the parameters of the model's head of that name, in the same
          shapes, is loaded; any other (other classes, MNLI -> RTE; other parts, a stock RoBERTa
          head into a HIRE head) starts fresh entirely, with a warning, as fairseq's RoBERTa
          starts a head of other classes fresh: every head of a comparison, the stock one under
          --baseline included, starts from the same kind of state;
        - a checkpoint head the model lacks is registered when loading through the hub
          (``load_checkpoint_heads``), else dropped with a warning, as in RoBERTa.
        Every other key must match the model exactly (the load is strict).
        """
        prefix = name + "." if name != "" else ""
        head_prefix = prefix + "classification_heads."
        checkpoint_heads = {}
        for k in [k for k in state_dict if k.startswith(head_prefix)]:
            head_name, _, param = k[len(head_prefix):].partition(".")
            checkpoint_heads.setdefault(head_name, {})[param] = state_dict.pop(k)
        # RoBERTa's upgrade, which now sees no checkpoint head and fills the model's heads in
        super().upgrade_state_dict_named(state_dict, name)

        for head_name, params in checkpoint_heads.items():
            if head_name not in self.classification_heads:
                if not safe_getattr(self.args, "load_checkpoint_heads", False):
                    logger.warning(f"dropping classification head {head_name!r} from the checkpoint: "
                                   "the model has no head of that name")
                    continue
                self.register_classification_head(
                    head_name, params["out_proj.weight"].size(0) if "out_proj.weight" in params
                    else params["out_proj.weight_orig"].size(0), params["dense.weight"].size(0),
                )
            current = self.classification_heads[head_name].state_dict()
            if head_parts(params) != head_parts(current):
                kind = "a stock RoBERTa head" if head_parts(params) == {"dense", "out_proj"} else "a head"
                logger.warning(
                    f"classification head {head_name!r} in the checkpoint is {kind} with parts "
                    f"{sorted(head_parts(params))}; this model's has {sorted(head_parts(current))}: "
                    "it starts fresh"
                )
                continue
            differing = sorted(p for p in params.keys() | current.keys()
                               if p not in params or p not in current or params[p].shape != current[p].shape)
            if differing:
                logger.warning(f"classification head {head_name!r} in the checkpoint differs from this model's in "
                               f"{', '.join(differing)} (other classes or --hire-* options?): it starts fresh")
                continue
            state_dict.update({head_prefix + head_name + "." + param: value for param, value in params.items()})

        for head_name, head in self.classification_heads.items():
            for param, value in head.state_dict().items():
                state_dict.setdefault(f"{head_prefix}{head_name}.{param}", value)


@register_model_architecture("roberta_hire", "roberta_hire")
def roberta_hire_architecture(args):
    options.set_defaults(args, safe_getattr)
    for name, default in ENCODER_DEFAULTS.items():
        value = safe_getattr(args, name, None)  # an argparse Namespace holds None for an absent flag
        setattr(args, name, default if value is None else value)
    args.encoder_layernorm_eps = safe_getattr(args, "encoder_layernorm_eps", FAIRSEQ_LAYERNORM_EPS)
    base_architecture(args)


@register_model_architecture("roberta_hire", "roberta_hire_base")
def roberta_hire_base_architecture(args):
    roberta_hire_architecture(args)


@register_model_architecture("roberta_hire", "roberta_hire_large")
def roberta_hire_large_architecture(args):
    roberta_large_architecture(args)
    roberta_hire_architecture(args)
