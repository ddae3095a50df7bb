"""roberta_hire: fairseq's RoBERTa with HIRE classification heads.

Everything but the classification heads is fairseq's RobertaModel (encoder, LM head,
encoder flags). A head registered here is a ``HireHead``: it reads every layer's output
(``inner_states``) and the final features, so ``forward`` asks the encoder for all hidden
states whenever a head is used.
"""
import logging

import torch.nn as nn
from fairseq import utils
from fairseq.models import register_model, register_model_architecture
from fairseq.models.roberta import RobertaModel
from fairseq.models.roberta.model import base_architecture, roberta_large_architecture
from fairseq.utils import safe_getattr

from ..modules.hire import EXTRACTORS, POOLINGS, HireHead

logger = logging.getLogger(__name__)

FAIRSEQ_LAYERNORM_EPS = 1e-5  # torch.nn.LayerNorm's default, which fairseq's LayerNorm uses
HIRE_HEAD_MARKER = ".fusion."  # a key under a head that only HIRE heads have


def set_layernorm_eps(module: nn.Module, eps: float) -> None:
    """Give every LayerNorm under `module` this epsilon (BERT-family checkpoints use 1e-12)."""
    for submodule in module.modules():
        if isinstance(submodule, nn.LayerNorm):
            submodule.eps = eps


@register_model("roberta_hire")
class RobertaHireModel(RobertaModel):
    @staticmethod
    def add_args(parser):
        RobertaModel.add_args(parser)
        parser.add_argument(
            "--hire-gru-dim", type=int, metavar="H",
            help="hidden size per direction of HIRE's GRUs (extractor and fusion); "
            "0 = half the encoder's hidden size",
        )
        parser.add_argument(
            "--hire-extractor", choices=EXTRACTORS,
            help="gru: per-example layer weights from a 2-layer BiGRU (HIRE); "
            "scalar-mix: ELMo-style global learned layer weights (cheap ablation)",
        )
        parser.add_argument(
            "--hire-include-embeddings", action="store_true",
            help="also weigh the embedding output as a layer",
        )
        parser.add_argument(
            "--hire-pooling", choices=POOLINGS,
            help="how the fused sequence becomes one vector: <s> position, mean, max or both",
        )
        parser.add_argument(
            "--encoder-layernorm-eps", type=float, metavar="EPS",
            help="epsilon of every LayerNorm in the encoder (default fairseq's 1e-5; "
            "checkpoints converted from BERT use 1e-12)",
        )

    @classmethod
    def from_pretrained(cls, model_name_or_path, checkpoint_file="model.pt", data_name_or_path=".", bpe=None, **kwargs):
        """Offline hub loading; see fairseq_hire.hub_interface.from_pretrained."""
        from ..hub_interface import from_pretrained

        return from_pretrained(model_name_or_path, checkpoint_file, data_name_or_path, bpe=bpe, **kwargs)

    @classmethod
    def build_model(cls, args, task):
        roberta_hire_architecture(args)
        if args.encoder_layerdrop > 0:
            raise ValueError(
                "roberta_hire does not support --encoder-layerdrop: HIRE weighs every layer's "
                "output, so the set of layers must not change between steps "
                "(use --encoder-layers-to-keep to prune layers once, at load time)"
            )
        model = super().build_model(args, task)
        set_layernorm_eps(model.encoder, args.encoder_layernorm_eps)
        return model

    def register_classification_head(self, name, num_classes=None, inner_dim=None, **kwargs):
        if name in self.classification_heads:
            logger.warning(f"re-registering classification head {name!r}")
        self.classification_heads[name] = HireHead(
            embed_dim=self.args.encoder_embed_dim,
            num_encoder_layers=self.args.encoder_layers,
            num_classes=num_classes,
            gru_dim=self.args.hire_gru_dim or None,
            inner_dim=inner_dim or self.args.encoder_embed_dim,
            extractor=self.args.hire_extractor,
            include_embeddings=self.args.hire_include_embeddings,
            pooling=self.args.hire_pooling,
            pooler_dropout=self.args.pooler_dropout,
            activation_fn=utils.get_activation_fn(self.args.pooler_activation_fn),
        )

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
        features, extra = self.encoder(
            src_tokens, features_only=True, return_all_hiddens=True, **kwargs
        )
        padding_mask = src_tokens.eq(self.encoder.sentence_encoder.padding_idx)
        logits, layer_weights = self.classification_heads[classification_head_name](
            extra["inner_states"], features.transpose(0, 1), padding_mask
        )
        if not return_all_hiddens:
            extra["inner_states"] = None
        extra["layer_weights"] = layer_weights
        extra["first_scored_layer"] = self.classification_heads[
            classification_head_name
        ].first_scored_layer
        return logits, extra

    def upgrade_state_dict_named(self, state_dict, name):
        """Make a checkpoint fit this model.

        - original RoBERTa key names (``decoder.*``, ``emb_layer_norm``) are renamed;
        - a head of the current model that the checkpoint lacks starts fresh;
        - a head of the same name and kind (HIRE or stock) keeps every parameter whose
          shape matches; the others (e.g. out_proj after MNLI -> RTE) start fresh, with a
          warning; a head of the other kind starts fresh entirely, with a warning;
        - a checkpoint head the model lacks is registered when loading through the hub
          (``load_checkpoint_heads``), else dropped with a warning, as in RoBERTa.
        Every other key must match the model exactly (the load is strict).
        """
        prefix = name + "." if name != "" else ""
        for k in list(state_dict.keys()):
            new_k = k
            if k.startswith(prefix + "decoder"):
                new_k = prefix + "encoder" + k[len(prefix + "decoder"):]
            new_k = new_k.replace(".emb_layer_norm.", ".layernorm_embedding.")
            if new_k != k:
                state_dict[new_k] = state_dict.pop(k)
        # skip RobertaModel's head handling: it drops a whole head on any class mismatch
        super(RobertaModel, self).upgrade_state_dict_named(state_dict, name)

        head_prefix = prefix + "classification_heads."
        checkpoint_heads = {}
        for k in state_dict:
            if k.startswith(head_prefix):
                head_name, _, param = k[len(head_prefix):].partition(".")
                checkpoint_heads.setdefault(head_name, {})[param] = k

        for head_name, keys in checkpoint_heads.items():
            is_hire = any(("." + p).startswith(HIRE_HEAD_MARKER) for p in keys)
            if head_name not in self.classification_heads:
                if safe_getattr(self.args, "load_checkpoint_heads", False) and is_hire:
                    num_classes = state_dict[keys["out_proj.weight"]].size(0)
                    inner_dim = state_dict[keys["dense.weight"]].size(0)
                    self.register_classification_head(head_name, num_classes, inner_dim)
                    continue
                logger.warning(
                    f"dropping classification head {head_name!r} from the checkpoint: "
                    "the model has no head of that name"
                    + ("" if is_hire else " (a stock RoBERTa head cannot load into roberta_hire)")
                )
                for k in keys.values():
                    del state_dict[k]
                continue
            current = self.classification_heads[head_name].state_dict()
            if not is_hire:
                logger.warning(
                    f"classification head {head_name!r} in the checkpoint is a stock RoBERTa "
                    "head; the HIRE head starts fresh"
                )
                for k in keys.values():
                    del state_dict[k]
                continue
            for param, k in keys.items():
                if param not in current:
                    logger.warning(
                        f"dropping {k}: this HIRE head has no parameter {param!r} "
                        "(a different --hire-extractor?)"
                    )
                    del state_dict[k]
                elif state_dict[k].shape != current[param].shape:
                    logger.warning(
                        f"re-initialising {k}: shape {tuple(state_dict[k].shape)} in the "
                        f"checkpoint, {tuple(current[param].shape)} in this model"
                    )
                    del state_dict[k]

        for head_name, head in self.classification_heads.items():
            for param, value in head.state_dict().items():
                k = f"{head_prefix}{head_name}.{param}"
                if k not in state_dict:
                    logger.info(f"initialising {k} fresh")
                    state_dict[k] = value


@register_model_architecture("roberta_hire", "roberta_hire")
def roberta_hire_architecture(args):
    args.hire_gru_dim = safe_getattr(args, "hire_gru_dim", 0)
    args.hire_extractor = safe_getattr(args, "hire_extractor", "gru")
    args.hire_include_embeddings = safe_getattr(args, "hire_include_embeddings", False)
    args.hire_pooling = safe_getattr(args, "hire_pooling", "first")
    args.encoder_layernorm_eps = safe_getattr(args, "encoder_layernorm_eps", FAIRSEQ_LAYERNORM_EPS)
    base_architecture(args)


@register_model_architecture("roberta_hire", "roberta_hire_base")
def roberta_hire_base_architecture(args):
    roberta_hire_architecture(args)


@register_model_architecture("roberta_hire", "roberta_hire_large")
def roberta_hire_large_architecture(args):
    roberta_large_architecture(args)
    roberta_hire_architecture(args)
