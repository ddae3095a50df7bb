"""The source's weights as a fairseq RoBERTa state dict with the original release's key names,
and the ``args`` of a masked_lm pre-training run with the source's dimensions."""
import argparse
import re
from pathlib import Path
from typing import Dict

import torch

from .errors import ConversionError
from .source import EncoderShape, Family, WeightShape, listed

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

LAYER_NAME = re.compile(r"encoder\.layer\.([^.]+)\.")

def normalise_names(weights: Dict[str, object], family: Family, weights_file: Path) -> Dict[str, object]:
    """Drop the *ForMaskedLM model prefix ("bert.", "roberta."); rename the LayerNorm.gamma /
    .beta of older BERT checkpoints (e.g. bert-base-uncased) to weight / bias. A name reached
    twice is refused: one of the two would be dropped silently."""
    normalised, source_names = {}, {}
    for name, tensor in weights.items():
        source = name
        if name.startswith(family.base_prefix):
            name = name[len(family.base_prefix):]
        if name.endswith("LayerNorm.gamma"):
            name = name[: -len("gamma")] + "weight"
        elif name.endswith("LayerNorm.beta"):
            name = name[: -len("beta")] + "bias"
        if name in normalised:
            raise ConversionError(f"{weights_file}: holds {name} twice (as {source_names[name]} and {source})")
        normalised[name], source_names[name] = tensor, source
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

def optional_shapes(family: Family, shape: EncoderShape, num_rows: int) -> Dict[str, tuple]:
    """Source name -> shape of every other weight the conversion takes or drops: the LM head,
    the pooler and next-sentence head, HF's derived buffers."""
    d, head = shape.embed_dim, family.lm_head_prefix
    shapes = {head + source: (d, d) if fairseq == "dense.weight" else (d,) for fairseq, source in family.lm_head_names.items()}
    shapes.update({head + "decoder.weight": (num_rows, d), head + "decoder.bias": (num_rows,), head + "bias": (num_rows,)})
    droppable = {"pooler.dense.weight": (d, d), "pooler.dense.bias": (d,),
                 "cls.seq_relationship.weight": (2, d), "cls.seq_relationship.bias": (2,)}
    shapes.update({name: s for name, s in droppable.items() if name.startswith(family.droppable_prefixes)})
    shapes.update({name: (1, shape.source_positions) for name in DERIVED_BUFFERS})
    return shapes

def check_weight_shapes(shapes: Dict[str, WeightShape], family: Family, shape: EncoderShape, weights_file: Path,
                        config_file: Path) -> None:
    """Refuse weights that config.json does not describe, from their shapes alone (normalised
    names -> (shape, floating point?)): for safetensors, before any tensor is read, so that no
    memory goes to a tensor the conversion has no place for or of a size config.json disagrees with."""
    if WORD_EMBEDDINGS not in shapes:
        raise ConversionError(f"{weights_file}: missing expected weights: {WORD_EMBEDDINGS}")
    if len(shapes[WORD_EMBEDDINGS][0]) != 2:
        raise ConversionError(f"{weights_file}: {WORD_EMBEDDINGS} has shape {shapes[WORD_EMBEDDINGS][0]}; "
                              "expected a 2-D matrix (vocabulary x hidden_size)")
    layers = {match.group(1) for match in map(LAYER_NAME.match, shapes) if match}
    if len(layers) != shape.layers:
        raise ConversionError(f"{config_file}: num_hidden_layers {shape.layers}, but {weights_file} holds "
                              f"{len(layers)} layers")
    expected = expected_shapes(shape, shape.vocab_size)  # word embeddings of other rows: `wrong` below
    known = {**expected, **optional_shapes(family, shape, shape.vocab_size)}
    missing = [name for name in expected if name not in shapes]
    if missing:
        raise ConversionError(f"{weights_file}: missing expected weights: {listed(missing)}")
    unknown = sorted(set(shapes) - set(known))
    if unknown:
        raise ConversionError(
            f"{weights_file}: weights this converter has no place for (refusing to drop them silently): "
            f"{listed(unknown)}"
        )
    wrong = [f"{name} {shapes[name][0]} (expected {known[name]})" for name in known
             if name in shapes and shapes[name][0] != known[name]]
    if wrong:
        raise ConversionError(
            f"{weights_file}: weights whose shape does not match {config_file} (num_hidden_layers {shape.layers}, "
            f"{shape.described()}): {listed(wrong, 5)}"
        )
    not_floating = [name for name in known if name in shapes and not shapes[name][1] and name not in DERIVED_BUFFERS]
    if not_floating:
        raise ConversionError(f"{weights_file}: weights that are not floating-point: {listed(not_floating)}")

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
    weights (normalised names, shapes checked by check_weight_shapes)."""
    # fairseq trains in float32; a half-precision source is widened once, here
    weights = {k: (v.float() if v.is_floating_point() else v) for k, v in weights.items()}
    num_rows = len(order)

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

    # what is left: HF's buffers and what fairseq RoBERTa has no place for (check_weight_shapes
    # refused anything else)
    ignored += [f"{name} ({DERIVED_BUFFER_REASON})" for name in sorted(weights) if name in DERIVED_BUFFERS]
    dropped = sorted(name for name in weights if name.startswith(family.droppable_prefixes))
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
