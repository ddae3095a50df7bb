"""The fairseq-train flags that rebuild a checkpoint's encoder architecture.

A converted checkpoint (scripts/convert_hf_checkpoint.py) has the source's dimensions, not
roberta_base's, so fine-tuning must be told them:

    fairseq-train ... --user-dir fairseq_hire --arch roberta_hire $(python scripts/checkpoint_args.py model.pt)
    fairseq-train ... --arch roberta_base $(python scripts/checkpoint_args.py model.pt --stock-roberta)
    fairseq-hydra-train ... $(python scripts/checkpoint_args.py model.pt --hydra)

(the last one for fairseq's own roberta architectures, with or without the plugin: they have
no --encoder-layernorm-eps, which is roberta_hire's option).

Works for the original roberta.base / roberta.large ``model.pt`` (``args`` Namespace) and for
checkpoints saved by newer fairseq (``cfg.model``). Loaded through the safe loader only. Every
value is checked against its type (a positive integer, a known activation function, a positive
epsilon): ``$(...)`` splits its output on spaces without reading quotes, so this check is what
keeps a checkpoint from adding flags of its own; the line is also shell-quoted, for ``eval``
and copying.
"""
import argparse
import math
import shlex
import sys
from typing import Dict, List

from .configuration import as_mapping
from .loading import CheckpointError, load_state
from ..models.layernorm_eps import FAIRSEQ_LAYERNORM_EPS

# the encoder's on/off options that change its weights, and fairseq's RoBERTa default for each
ENCODER_SWITCHES = {"untie_weights_roberta": False, "encoder_normalize_before": False, "layernorm_embedding": True}
POSITIVE_INTEGER_OPTIONS = ("encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim",
                            "encoder_attention_heads", "max_positions")


def model_config(model_pt_path) -> Dict:
    """The model options of a checkpoint, as a dict: ``args`` (original format), else
    ``cfg.model``: a Namespace where fairseq-train saved it, a plain dict where
    fairseq-hydra-train did (its trainer saves the configuration as plain containers)."""
    state = load_state(model_pt_path, lazy=True)
    model = state.get("args")
    if model is None:
        cfg = as_mapping(state.get("cfg")) or {}
        model = cfg.get("model")
    options = as_mapping(model)
    if options is None:
        raise ValueError(f"{model_pt_path}: no model options; expected 'args' or 'cfg.model' in the checkpoint")
    return options


def layernorm_eps(model: Dict) -> float:
    """The encoder's LayerNorm epsilon; a checkpoint without the option used fairseq's."""
    return float(model.get("encoder_layernorm_eps") or FAIRSEQ_LAYERNORM_EPS)


def switches_of(model: Dict) -> Dict[str, bool]:
    """flag -> whether the checkpoint's encoder has it on (fairseq's default where not recorded)."""
    return {f"--{name.replace('_', '-')}": bool(default if model.get(name) is None else model[name])
            for name, default in ENCODER_SWITCHES.items()}


def flags_of(model: Dict, for_stock_roberta: bool = False, described_as="the checkpoint") -> List[str]:
    from fairseq.utils import get_available_activation_fns

    def option(name):
        value = model.get(name)
        if value is None:
            raise ValueError(f"{described_as}: the checkpoint's options lack {name!r}")
        if name in POSITIVE_INTEGER_OPTIONS:
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
            expected = "a positive integer"
        else:  # activation_fn
            ok = value in get_available_activation_fns()
            expected = "one of " + ", ".join(get_available_activation_fns())
        if not ok:
            raise ValueError(f"{described_as}: the checkpoint's {name} is {value!r}; expected {expected}")
        return str(value)

    flags = [
        "--encoder-layers", option("encoder_layers"),
        "--encoder-embed-dim", option("encoder_embed_dim"),
        "--encoder-ffn-embed-dim", option("encoder_ffn_embed_dim"),
        "--encoder-attention-heads", option("encoder_attention_heads"),
        "--max-positions", option("max_positions"),
        "--activation-fn", option("activation_fn"),
    ]
    if model.get("layernorm_embedding") is False:  # fairseq's roberta_prenorm; no flag turns it off
        raise ValueError(f"{described_as}: the checkpoint's encoder has no embedding LayerNorm (layernorm_embedding "
                         "off, as fairseq's roberta_prenorm builds it), which no fairseq-train flag asks of "
                         "roberta_hire or roberta_base; expected an encoder with one")
    switches = switches_of(model)  # those on where fairseq's default is off: a flag turns them on
    flags += [flag for flag, default in zip(switches, ENCODER_SWITCHES.values()) if switches[flag] and not default]
    if not for_stock_roberta:
        eps = layernorm_eps(model)
        if not (math.isfinite(eps) and eps > 0):
            raise ValueError(f"{described_as}: the checkpoint's encoder_layernorm_eps is {eps!r}; "
                             "expected a positive number")
        flags += ["--encoder-layernorm-eps", repr(eps)]
    return flags


def hydra_overrides(flags: List[str]) -> List[str]:
    """The same options as fairseq-hydra-train overrides: ``++model.encoder_layers=6`` (``++`` sets
    a key whether or not the YAML has it), a switch as ``=true``; the positions as
    ``++task.max_positions``, as the sentence_prediction tasks set the model's from the task's."""
    overrides = []
    for index, flag in enumerate(flags):
        if flag.startswith("--"):
            has_value = index + 1 < len(flags) and not flags[index + 1].startswith("--")
            value = flags[index + 1] if has_value else "true"
            section = "task" if flag == "--max-positions" else "model"
            overrides.append(f"++{section}.{flag[2:].replace('-', '_')}={value}")
    return overrides


def flag_number(flags: List[str], name: str) -> int:
    """An integer architecture flag's value (--encoder-layers, --max-positions)."""
    return int(flags[flags.index(name) + 1])


def architecture_flags(model_pt_path, for_stock_roberta: bool = False) -> List[str]:
    """Flags for the encoder's layers, dimensions, heads, positions, activation, untied LM
    head and (unless for_stock_roberta: fairseq's roberta has no such option) LayerNorm
    epsilon."""
    return flags_of(model_config(model_pt_path), for_stock_roberta, described_as=model_pt_path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/checkpoint_args.py",
        description="Print the fairseq-train flags that rebuild a checkpoint's encoder, on one line.",
    )
    parser.add_argument("model_pt", help="a fairseq RoBERTa checkpoint (model.pt)")
    parser.add_argument(
        "--stock-roberta", action="store_true",
        help="for fairseq's own roberta architectures (e.g. roberta_base): leave out "
             "--encoder-layernorm-eps, an option of the plugin's roberta_hire only",
    )
    parser.add_argument("--hydra", action="store_true",
                        help="print them as fairseq-hydra-train overrides (++model.encoder_layers=6 ...)")
    args = parser.parse_args(argv)
    try:
        model = model_config(args.model_pt)
        flags = flags_of(model, args.stock_roberta, described_as=args.model_pt)
        if args.hydra:
            flags = hydra_overrides(flags)
        eps = layernorm_eps(model)
    except (OSError, ValueError, CheckpointError) as error:
        print(f"checkpoint_args.py: error: {error}", file=sys.stderr)
        return 2
    if args.stock_roberta and eps != FAIRSEQ_LAYERNORM_EPS:
        print(
            f"checkpoint_args.py: note: the checkpoint's LayerNorm epsilon is {eps:g}; fairseq's roberta "
            f"architectures use {FAIRSEQ_LAYERNORM_EPS:g} (the plugin's roberta_hire takes "
            "--encoder-layernorm-eps)",
            file=sys.stderr,
        )
    print(shlex.join(flags))
    return 0


if __name__ == "__main__":
    sys.exit(main())
