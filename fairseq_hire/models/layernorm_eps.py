"""The encoder's LayerNorm epsilon, ``--encoder-layernorm-eps``: an option of roberta_hire.

A checkpoint converted from the BERT family records its LayerNorm epsilon (1e-12) as
``args.encoder_layernorm_eps``; fairseq's RoBERTa always builds its LayerNorms with 1e-5, so
the converted encoder would differ from its source (all-MiniLM-L6-v2's final hidden states by
~8e-4 instead of ~5e-6). roberta_hire declares the option and builds its encoder with it
(``RobertaHireModel``); the comparison's stock baseline is roberta_hire with the stock head, so
it runs the same encoder. fairseq's own ``roberta`` architectures are left as fairseq has them:
they have no such option, and ``finetune.py --baseline`` refuses a checkpoint whose epsilon they
would not honour. The plugin's hub builds the encoder a checkpoint describes whatever RoBERTa
architecture it names (``apply_recorded_eps``), as it only reads the model it built.
"""
import argparse
import math

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


def add_argument(parser) -> None:
    parser.add_argument(
        FLAG, type=eps_argument, metavar="EPS",
        help="epsilon of every LayerNorm in the encoder (default fairseq's 1e-5; checkpoints "
             "converted from BERT use 1e-12; fairseq_hire.checkpoints.architecture prints a checkpoint's)",
    )


def set_layernorm_eps(module, eps: float) -> None:
    """Give every LayerNorm under `module` (torch's, or apex's FusedLayerNorm) this epsilon."""
    for submodule in module.modules():
        if hasattr(submodule, "normalized_shape") and hasattr(submodule, "eps"):
            submodule.eps = eps


def apply_recorded_eps(model) -> None:
    """The epsilon the model's configuration records, given to its encoder (fairseq's roberta
    builds 1e-5 whatever it records); nothing changes for a configuration without one."""
    eps = getattr(getattr(model, "args", None), "encoder_layernorm_eps", None)
    if eps is not None:
        set_layernorm_eps(model.encoder, checked_eps(eps))


def option_names(model_class) -> set:
    """The options (argparse dests) a fairseq model class's add_args declares."""
    parser = argparse.ArgumentParser(add_help=False)
    model_class.add_args(parser)
    return {action.dest for action in parser._actions}


def has_option(model_class) -> bool:
    """Whether the model class takes --encoder-layernorm-eps (roberta_hire; fairseq's roberta does not)."""
    return "encoder_layernorm_eps" in option_names(model_class)
