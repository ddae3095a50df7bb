"""The source's weights as a fairseq RoBERTa state dict with the original release's key names,
and the ``args`` of a masked_lm pre-training run with the source's dimensions."""
import argparse
from pathlib import Path
from typing import Dict

import torch

from .errors import ConversionError
from .source import CONFIG_FILE, EncoderShape, Family

FAIRSEQ_PADDING_IDX = 1  # fairseq Dictionary: <s>=0 <pad>=1 </s>=2 <unk>=3

ENCODER = "decoder.sentence_encoder."

LM_HEAD = "decoder.lm_head."

LM_HEAD_INIT_STD = 0.02  # BERT's initializer_range, as fairseq's init_bert_params uses

HF_TO_FAIRSEQ_LAYER = {
    "attention.self.query": "self_attn.q_proj",
    "attention.self.key": "self_attn.k_proj",
    "attention.self.value": "self_attn.v_proj",
    "attention.output.dense": "self_attn.out_proj",
    "attention.output.LayerNorm": "self_attn_layer_norm",
    "intermediate.dense": "fc1",
    "output.dense": "fc2",
    "output.LayerNorm": "final_layer_norm",
}

WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"

POSITION_EMBEDDINGS = "embeddings.position_embeddings.weight"

TOKEN_TYPE_EMBEDDINGS = "embeddings.token_type_embeddings.weight"
# buffers HF saves with some checkpoints; they are recomputed, not learned

DERIVED_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")

DERIVED_BUFFER_REASON = "a buffer HF recomputes"

def normalise_names(weights: Dict[str, torch.Tensor], family: Family) -> Dict[str, torch.Tensor]:
    """Drop the *ForMaskedLM model prefix ("bert.", "roberta."); rename the LayerNorm.gamma /
    .beta of older BERT checkpoints (e.g. bert-base-uncased) to weight / bias."""
    normalised = {}
    for name, tensor in weights.items():
        if name.startswith(family.base_prefix):
            name = name[len(family.base_prefix):]
        if name.endswith("LayerNorm.gamma"):
            name = name[: -len("gamma")] + "weight"
        elif name.endswith("LayerNorm.beta"):
            name = name[: -len("beta")] + "bias"
        normalised[name] = tensor
    return normalised

def expected_shapes(shape: EncoderShape, num_rows: int) -> Dict[str, tuple]:
    """Source name -> shape of every encoder weight the conversion needs."""
    d, f = shape.embed_dim, shape.ffn_embed_dim
    expected = {
        WORD_EMBEDDINGS: (num_rows, d),
        POSITION_EMBEDDINGS: (shape.source_positions, d),
        TOKEN_TYPE_EMBEDDINGS: (shape.type_vocab_size, d),
        "embeddings.LayerNorm.weight": (d,),
        "embeddings.LayerNorm.bias": (d,),
    }
    linear_shapes = {"intermediate.dense": (f, d), "output.dense": (d, f)}
    for i in range(shape.layers):
        for source in HF_TO_FAIRSEQ_LAYER:
            out_in = linear_shapes.get(source, (d, d))
            weight_shape = (d,) if source.endswith("LayerNorm") else out_in
            expected[f"encoder.layer.{i}.{source}.weight"] = weight_shape
            expected[f"encoder.layer.{i}.{source}.bias"] = (weight_shape[0],)
    return expected

def check_shapes(weights, expected: Dict[str, tuple], weights_file: Path) -> None:
    missing = sorted(name for name in expected if name not in weights)
    if missing:
        raise ConversionError(f"{weights_file}: missing expected weights: {', '.join(missing)}")
    wrong = [
        f"{name} {tuple(weights[name].shape)} (expected {shape})"
        for name, shape in expected.items()
        if tuple(weights[name].shape) != shape
    ]
    if wrong:
        raise ConversionError(
            f"{weights_file}: weights whose shape does not match {CONFIG_FILE}: {', '.join(wrong)}"
        )

def convert_lm_head(head: Dict[str, torch.Tensor], family: Family, embeddings, order, weights_file: Path):
    """(fairseq lm_head weights, untied?, ignored) from the source's LM head weights (names
    under its prefix, popped from `head`); the output rows are permuted like the embeddings."""
    prefix = family.lm_head_prefix
    missing = [prefix + name for name in family.lm_head_names.values() if name not in head]
    if "decoder.bias" not in head and "bias" not in head:
        missing.append(f"{prefix}decoder.bias (or {prefix}bias)")
    if missing:
        raise ConversionError(f"{weights_file}: incomplete LM head, missing {', '.join(missing)}")
    state = {fairseq: head.pop(source) for fairseq, source in family.lm_head_names.items()}
    # HF's forward adds decoder.bias; `bias` is the same tensor when tied (always in
    # transformers 4), a leftover copy when transformers 5 unties the head
    bias, decoder_bias = head.pop("bias", None), head.pop("decoder.bias", None)
    ignored = []
    if decoder_bias is None:
        decoder_bias = bias
    elif bias is not None and not torch.equal(bias, decoder_bias):
        ignored.append(f"{prefix}bias (the source's forward adds {prefix}decoder.bias instead)")
    state["bias"] = decoder_bias[order]
    # decoder.weight is usually tied to the word embeddings; a checkpoint may store the copy
    decoder_weight = head.pop("decoder.weight", None)
    untied = decoder_weight is not None and not torch.equal(decoder_weight, embeddings)
    state["weight"] = decoder_weight[order] if untied else None
    return state, untied, ignored

def initial_lm_head(embed_dim: int, num_rows: int) -> Dict[str, torch.Tensor]:
    """A fresh LM head as fairseq's init_bert_params would make it (seeded: reproducible)."""
    generator = torch.Generator().manual_seed(0)
    return {
        "dense.weight": torch.empty(embed_dim, embed_dim).normal_(0.0, LM_HEAD_INIT_STD, generator=generator),
        "dense.bias": torch.zeros(embed_dim),
        "layer_norm.weight": torch.ones(embed_dim),
        "layer_norm.bias": torch.zeros(embed_dim),
        "bias": torch.zeros(num_rows),
        "weight": None,
    }

def fairseq_state(weights, family: Family, shape: EncoderShape, order, weights_file: Path):
    """(fairseq state dict with original key names, report fields) from the source's
    weights (normalised names)."""
    # fairseq trains in float32; a half-precision source is widened once, here
    weights = {k: (v.float() if v.is_floating_point() else v) for k, v in weights.items()}
    num_rows = len(order)
    expected = expected_shapes(shape, num_rows)
    check_shapes(weights, expected, weights_file)

    state = {ENCODER + "version": torch.tensor([3.0])}  # TransformerEncoder's current format
    embeddings = weights.pop(WORD_EMBEDDINGS)
    state[ENCODER + "embed_tokens.weight"] = embeddings[order]

    # fairseq's position of the first token is padding_idx + 1; the rows below it are unused
    first = shape.first_position_row
    source_positions = weights.pop(POSITION_EMBEDDINGS)[first:first + shape.max_positions]
    # fairseq RoBERTa has no token types: fold in type 0, which a single segment uses
    type_zero = weights.pop(TOKEN_TYPE_EMBEDDINGS)[0]
    positions = torch.zeros(shape.max_positions + FAIRSEQ_PADDING_IDX + 1, shape.embed_dim)
    positions[FAIRSEQ_PADDING_IDX + 1:] = source_positions + type_zero
    state[ENCODER + "embed_positions.weight"] = positions

    state[ENCODER + "emb_layer_norm.weight"] = weights.pop("embeddings.LayerNorm.weight")
    state[ENCODER + "emb_layer_norm.bias"] = weights.pop("embeddings.LayerNorm.bias")
    for i in range(shape.layers):
        for source, target in HF_TO_FAIRSEQ_LAYER.items():
            for param in ("weight", "bias"):
                state[f"{ENCODER}layers.{i}.{target}.{param}"] = weights.pop(f"encoder.layer.{i}.{source}.{param}")

    head = {k[len(family.lm_head_prefix):]: weights.pop(k) for k in list(weights) if k.startswith(family.lm_head_prefix)}
    has_lm_head = bool(head)
    if has_lm_head:
        lm_head, untied, ignored = convert_lm_head(head, family, embeddings, order, weights_file)
    else:
        lm_head, untied, ignored = initial_lm_head(shape.embed_dim, num_rows), False, []
    if lm_head["weight"] is None:
        lm_head["weight"] = state[ENCODER + "embed_tokens.weight"]  # tied, as fairseq's default
    state.update({LM_HEAD + name: tensor for name, tensor in lm_head.items()})

    buffers = sorted(name for name in weights if name in DERIVED_BUFFERS)
    ignored += [f"{name} ({DERIVED_BUFFER_REASON})" for name in buffers]
    dropped = sorted(name for name in weights if name.startswith(family.droppable_prefixes))
    unmapped = sorted(set(weights) - set(buffers) - set(dropped))
    unmapped += [family.lm_head_prefix + name for name in sorted(head)]  # what convert_lm_head left
    if unmapped:
        raise ConversionError(
            f"{weights_file}: weights this converter has no place for (refusing to drop them "
            f"silently): {', '.join(unmapped)}"
        )
    return state, dict(
        lm_head_initialised=not has_lm_head, untied_lm_head=untied, dropped=dropped,
        ignored=ignored,
    )

def pretraining_args(data_dir: Path, shape: EncoderShape, untied: bool, lm_head_initialised: bool,
                     source_dir: Path) -> argparse.Namespace:
    """args as the original RoBERTa release has them: a masked_lm pre-training command line
    through fairseq's own parser, with the source's dimensions."""
    from fairseq import options

    argv = [
        str(data_dir), "--task", "masked_lm", "--criterion", "masked_lm", "--arch", "roberta_base",
        "--encoder-layers", str(shape.layers), "--encoder-embed-dim", str(shape.embed_dim),
        "--encoder-ffn-embed-dim", str(shape.ffn_embed_dim),
        "--encoder-attention-heads", str(shape.attention_heads),
        "--activation-fn", shape.activation_fn, "--dropout", repr(shape.dropout),
        "--attention-dropout", repr(shape.attention_dropout), "--activation-dropout", "0.0",
        "--tokens-per-sample", str(shape.max_positions), "--max-positions", str(shape.max_positions),
    ]
    if untied:
        argv.append("--untie-weights-roberta")
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    # not a stock roberta option: roberta_hire reads it (--encoder-layernorm-eps)
    args.encoder_layernorm_eps = shape.layernorm_eps
    args.lm_head_initialised_by_converter = lm_head_initialised
    args.converted_from = str(source_dir)
    return args
