"""Hugging Face BERT-family / RoBERTa encoder -> fairseq RoBERTa checkpoint.

``convert(source_dir, out_dir)`` reads an HF model folder (config.json; model.safetensors,
a sharded model.safetensors.index.json or pytorch_model.bin; vocab.txt, vocab.json +
merges.txt or tokenizer.json) and writes into out_dir:

* ``model.pt`` in the original fairseq RoBERTa release format (``args`` Namespace of a
  masked_lm pre-training run, ``decoder.sentence_encoder.*`` / ``decoder.lm_head.*`` keys),
  with the source's LayerNorm epsilon as ``args.encoder_layernorm_eps``;
* ``dict.txt``: the fairseq dictionary. fairseq puts ``<s> <pad> </s> <unk>`` at indices 0-3
  and the masked_lm / sentence_prediction tasks append ``<mask>`` after dict.txt, so the
  embedding rows are permuted to give every fairseq index the source's row for its token;
* ``tokenizer_spec.json`` and the tokenizer files it names (WordPiece ``vocab.txt``, or
  GPT-2 BPE ``encoder.json`` + ``vocab.bpe``), read by glue_prep and the hub.

Every source file is input: it is read only when it is a regular file of the folder (no FIFO,
no link elsewhere), its values are checked for type and range before use, the weights' shapes
against config.json before any tensor is read, and nothing in it is evaluated or imported; a
refusal is one ConversionError line naming the file and the field or line. Nothing is written
to out_dir until everything succeeded: the files go to a staging folder beside it, which is
renamed at the end (glue_prep.atomic).

``source`` reads the HF folder and its config.json, ``weights`` its weights files, ``vocabulary``
builds dict.txt, ``state`` the fairseq weights and args; this module puts them together.
"""
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

import torch

from glue_prep.atomic import remove_stale, replace_folder, temporary_name

from .errors import ConversionError
from .source import CONFIG_FILE, EncoderShape, Family, SourceFolder, package_model_dir, read_config
from .state import (WORD_EMBEDDINGS, LM_HEAD_INIT_STD, check_weight_shapes, fairseq_state, normalise_names,
                    pretraining_args)
from .vocabulary import Vocabulary, check_dictionary, dict_txt_text, fairseq_row_order, read_vocabulary
from .weights import load_pytorch_bin, load_weights

TOKENIZER_SPEC_FILE = "tokenizer_spec.json"

GPT2_MERGES_HEADER = "#version: 0.2"

@dataclass
class ConversionReport:
    source_dir: Path
    out_dir: Path
    model_type: str
    weights_file: Path
    shape: EncoderShape
    vocab_size: int
    lm_head_initialised: bool
    untied_lm_head: bool
    dropped: List[str] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)  # "name (why it is not needed)"

    def summary(self) -> str:
        s = self.shape
        lines = [
            f"converted {self.model_type} checkpoint {self.weights_file}",
            f"  into {self.out_dir} (model.pt, dict.txt, {TOKENIZER_SPEC_FILE} and its files)",
            f"  encoder: {s.layers} layers, embed dim {s.embed_dim}, ffn dim {s.ffn_embed_dim}, "
            f"{s.attention_heads} heads, max positions {s.max_positions}, "
            f"activation {s.activation_fn}, vocabulary {self.vocab_size}",
            f"  LayerNorm epsilon {s.layernorm_eps:g} recorded as args.encoder_layernorm_eps "
            "(roberta_hire and the plugin's hub honour it; fairseq's own roberta builds 1e-5)",
        ]
        if self.lm_head_initialised:
            lines.append(
                "  LM head: the source has none; initialised by the converter (dense normal "
                f"std {LM_HEAD_INIT_STD}, LayerNorm 1/0, bias 0, weight tied to the embeddings); "
                "args.lm_head_initialised_by_converter=True"
            )
        else:
            lines.append(
                "  LM head: converted from the source"
                + (" (untied from the embeddings: --untie-weights-roberta)" if self.untied_lm_head else "")
            )
        if self.dropped:
            lines.append(f"  dropped (fairseq RoBERTa has no pooler / next-sentence head): {', '.join(self.dropped)}")
        if self.ignored:
            lines.append(f"  ignored: {', '.join(self.ignored)}")
        return "\n".join(lines)

def check_out_dir(out_dir: Path, source_dir: Path, force: bool) -> None:
    if out_dir.exists() or out_dir.is_symlink():
        if not force:
            raise ConversionError(f"{out_dir} already exists; pass --force to replace it")
        if not out_dir.is_dir() or out_dir.is_symlink():
            raise ConversionError(f"{out_dir} exists and is not a folder; refusing to replace it")
    resolved = out_dir.resolve()
    if resolved == source_dir.resolve() or resolved in source_dir.resolve().parents:
        raise ConversionError(f"{out_dir} is or contains the source folder {source_dir}; choose another output folder")

def write_tokenizer_files(folder: Path, vocabulary: Vocabulary, family: Family) -> None:
    if family.tokenizer == "wordpiece":
        if vocabulary.vocab_txt is not None:
            (folder / "vocab.txt").write_bytes(vocabulary.vocab_txt)
        else:
            by_row = sorted(vocabulary.token_to_row.items(), key=lambda item: item[1])
            (folder / "vocab.txt").write_text("".join(f"{t}\n" for t, _ in by_row), encoding="utf-8")
        spec = {"type": "wordpiece", "vocab": "vocab.txt", **vocabulary.spec_options}
    else:
        (folder / "encoder.json").write_text(json.dumps(vocabulary.token_to_row, ensure_ascii=False), encoding="utf-8")
        # fairseq's gpt2_bpe_utils skips the first line (the header) and the last (empty)
        merges = "".join(f"{m}\n" for m in vocabulary.merges)
        (folder / "vocab.bpe").write_text(f"{GPT2_MERGES_HEADER}\n{merges}", encoding="utf-8")
        spec = {"type": "gpt2", "encoder_json": "encoder.json", "vocab_bpe": "vocab.bpe", **vocabulary.spec_options}
    (folder / TOKENIZER_SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")


def convert(source_dir, out_dir, force: bool = False) -> ConversionReport:
    """Convert the HF model folder source_dir into a fairseq RoBERTa folder out_dir."""
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    if not source_dir.is_dir():
        raise ConversionError(f"{source_dir}: not a folder; expected a Hugging Face model folder")
    check_out_dir(out_dir, source_dir, force)

    folder = SourceFolder(source_dir)
    family, shape = read_config(folder)
    vocabulary = read_vocabulary(folder, family)

    def check(shapes, weights_file):
        check_weight_shapes(normalise_names(shapes, family, weights_file), family, shape, weights_file,
                            source_dir / CONFIG_FILE)

    weights, weights_file = load_weights(folder, check)
    weights = normalise_names(weights, family, weights_file)
    num_rows = weights[WORD_EMBEDDINGS].shape[0]
    order, tokens = fairseq_row_order(vocabulary, family, num_rows, weights_file)
    state, fields = fairseq_state(weights, family, shape, order, weights_file)
    args = pretraining_args(
        out_dir.resolve(), shape, fields["untied_lm_head"], fields["lm_head_initialised"], source_dir.resolve(),
    )

    checkpoint = {
        "args": args,
        "model": state,
        # as in the original releases; fine-tuning resets the optimizer (--reset-optimizer)
        "optimizer_history": [{
            "criterion_name": "MaskedLmLoss", "optimizer_name": "converted_from_hugging_face",
            "lr_scheduler_state": {"best": None}, "num_updates": 0,
        }],
        "extra_state": {"epoch": 1},
        "last_optimizer_state": None,
    }
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(out_dir.parent, prefix=f".{out_dir.name}.")
        staging = temporary_name(out_dir)
        staging.mkdir()
        try:
            (staging / "dict.txt").write_text(dict_txt_text(tokens), encoding="utf-8")
            check_dictionary(staging / "dict.txt", tokens, num_rows, vocabulary.described_by)
            write_tokenizer_files(staging, vocabulary, family)
            torch.save(checkpoint, staging / "model.pt")
            if out_dir.exists() and not force:
                raise ConversionError(f"{out_dir} appeared while converting; pass --force to replace it")
            replace_folder(staging, out_dir)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    except OSError as error:  # a full disk, an unwritable folder, a file where a folder should be
        raise ConversionError(f"{out_dir}: cannot write the converted folder: {error}") from None
    return ConversionReport(
        source_dir=source_dir, out_dir=out_dir, model_type=family.model_type,
        weights_file=weights_file, shape=shape, vocab_size=num_rows, **fields,
    )


__all__ = ["ConversionError", "ConversionReport", "convert", "load_pytorch_bin", "package_model_dir"]
