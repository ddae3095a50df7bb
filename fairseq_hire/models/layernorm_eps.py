"""``--encoder-layernorm-eps`` for every fairseq RoBERTa model, stock ``roberta`` included.

A checkpoint converted from the BERT family records its LayerNorm epsilon (1e-12) as
``args.encoder_layernorm_eps``; fairseq's RoBERTa always builds its LayerNorms with 1e-5, so
the converted encoder would differ from its source (all-MiniLM-L6-v2's final hidden states
by ~8e-4 instead of ~5e-6), and a stock-head baseline would run another encoder than HIRE.

``install()`` wraps two methods of ``fairseq.models.roberta.RobertaModel``, so that every
path builds the encoder the checkpoint describes: the hub (the checkpoint's own args), and
``fairseq-train``/``fairseq-hydra-train`` of ``roberta*`` and ``roberta_hire*`` (the flag):

* ``add_args`` also adds ``--encoder-layernorm-eps`` (checked to be a positive number);
* ``build_model`` gives every LayerNorm of the encoder (and its LM head) that epsilon when
  the config has one; without it nothing changes (fairseq's 1e-5).
"""
import argparse
import functools
import math

from fairseq.models.roberta import RobertaModel
from fairseq.utils import safe_getattr

FAIRSEQ_LAYERNORM_EPS = 1e-5  # torch.nn.LayerNorm's default, which fairseq's LayerNorm uses
FLAG = "--encoder-layernorm-eps"


def checked_eps(value) -> float:
    """A LayerNorm epsilon: a finite number > 0 (0 or less ends in NaN on a constant input)."""
    try:
        eps = float(value)
    except (TypeError, ValueError):
        eps = math.nan
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"{FLAG} {value!r}: expected a positive number, e.g. 1e-5 (fairseq) or "
                         "1e-12 (BERT-family checkpoints)")
    return eps


def eps_argument(text: str) -> float:
    try:
        return checked_eps(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def set_layernorm_eps(module, eps: float) -> None:
    """Give every LayerNorm under `module` (torch's, or apex's FusedLayerNorm) this epsilon."""
    for submodule in module.modules():
        if hasattr(submodule, "normalized_shape") and hasattr(submodule, "eps"):
            submodule.eps = eps


def install() -> None:
    if getattr(RobertaModel.add_args, "__wrapped_by_fairseq_hire__", False):
        return
    add_args = RobertaModel.add_args
    build_model = RobertaModel.build_model.__func__

    @functools.wraps(add_args)
    def add_args_with_eps(parser):
        add_args(parser)
        parser.add_argument(
            FLAG, type=eps_argument, metavar="EPS",
            help="epsilon of every LayerNorm in the encoder (default fairseq's 1e-5; checkpoints "
                 "converted from BERT use 1e-12; fairseq_hire.checkpoint_args prints a checkpoint's)",
        )

    @functools.wraps(build_model)
    def build_model_with_eps(cls, args, task):
        model = build_model(cls, args, task)
        eps = safe_getattr(args, "encoder_layernorm_eps", None)
        if eps is not None:
            set_layernorm_eps(model.encoder, checked_eps(eps))
        return model

    add_args_with_eps.__wrapped_by_fairseq_hire__ = True
    RobertaModel.add_args = staticmethod(add_args_with_eps)
    RobertaModel.build_model = classmethod(build_model_with_eps)
