"""The converter refuses what it cannot convert, naming the file and what was expected, and
leaves nothing behind (scripts/convert_hf_checkpoint.py / fairseq_hire.conversion)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from fairseq_hire.conversion import convert
from hf_sources import assert_refused, edit_weights, small_bert, tiny_bert  # noqa: F401  (fixtures)

SCRIPT = REPO / "scripts" / "convert_hf_checkpoint.py"


@pytest.mark.parametrize("missing, expected", [
    ("config.json", ["config.json", "not found"]),
    ("tokenizer.json", ["no WordPiece vocabulary", "vocab.txt", "tokenizer.json"]),
    ("model.safetensors", ["no weights", "model.safetensors", "pytorch_model.bin"]),
])
def test_refuses_missing_files(small_bert, tmp_path, missing, expected):
    (small_bert / missing).unlink()
    message = assert_refused(small_bert, tmp_path / "out", *expected)
    assert str(small_bert) in message
    assert not (tmp_path / "out").exists()


def test_refuses_a_source_that_is_not_a_folder(tmp_path):
    assert_refused(tmp_path / "nowhere", tmp_path / "out", str(tmp_path / "nowhere"), "not a folder")


def test_refuses_unsupported_model_type(small_bert, tmp_path):
    config = json.loads((small_bert / "config.json").read_text())
    config["model_type"] = "distilbert"
    (small_bert / "config.json").write_text(json.dumps(config))
    assert_refused(small_bert, tmp_path / "out", "model_type 'distilbert' is not supported", "bert, roberta")
    config.update(model_type="bert", position_embedding_type="relative_key")
    (small_bert / "config.json").write_text(json.dumps(config))
    assert_refused(small_bert, tmp_path / "out", "relative_key")
    config.update(position_embedding_type="absolute", layer_norm_eps="1e-12")
    (small_bert / "config.json").write_text(json.dumps(config))
    assert_refused(small_bert, tmp_path / "out", "'layer_norm_eps' should be a float, got '1e-12'")
    assert not (tmp_path / "out").exists()


def test_refuses_unreadable_weights(small_bert, tmp_path):
    (small_bert / "model.safetensors").write_bytes(b"not a safetensors file")
    assert_refused(small_bert, tmp_path / "out", str(small_bert / "model.safetensors"), "not a readable safetensors file")


def test_refuses_missing_weights(small_bert, tmp_path):
    edit_weights(small_bert, lambda w: w.pop("bert.encoder.layer.1.output.dense.weight"))
    assert_refused(small_bert, tmp_path / "out", "missing expected weights", "encoder.layer.1.output.dense.weight")


def test_refuses_incomplete_lm_head(small_bert, tmp_path):
    edit_weights(small_bert, lambda w: w.pop("cls.predictions.transform.LayerNorm.bias"))
    assert_refused(small_bert, tmp_path / "out", "incomplete LM head", "cls.predictions.transform.LayerNorm.bias")


def test_refuses_unmapped_weights(small_bert, tmp_path):
    def add_unknown(weights):
        weights["bert.encoder.layer.0.attention.self.distance_embedding.weight"] = torch.zeros(3, 32)
        weights["classifier.weight"] = torch.zeros(2, 32)
    edit_weights(small_bert, add_unknown)
    message = assert_refused(small_bert, tmp_path / "out", "no place for", "classifier.weight",
                             "encoder.layer.0.attention.self.distance_embedding.weight")
    assert str(small_bert / "model.safetensors") in message


def test_refuses_shape_mismatch(small_bert, tmp_path):
    config = json.loads((small_bert / "config.json").read_text())
    config["intermediate_size"] = 128
    (small_bert / "config.json").write_text(json.dumps(config))
    assert_refused(small_bert, tmp_path / "out", "shape does not match", "intermediate.dense.weight (64, 32)")


def test_refuses_pickled_code_in_pytorch_bin(small_bert, tmp_path):
    marker = tmp_path / "code-ran"

    class Hostile:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (small_bert / "model.safetensors").unlink()
    torch.save({"embeddings.word_embeddings.weight": Hostile()}, small_bert / "pytorch_model.bin")
    assert_refused(small_bert, tmp_path / "out", str(small_bert / "pytorch_model.bin"), "refusing to load")
    assert not marker.exists()


def test_refuses_existing_out_dir_and_replaces_it_with_force(small_bert, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "old.txt").write_text("kept until a conversion succeeds")
    assert_refused(small_bert, out_dir, "already exists", "--force")
    assert (out_dir / "old.txt").exists()

    # a failing --force conversion leaves the old folder as it was
    vocab = json.loads((small_bert / "tokenizer.json").read_text(encoding="utf-8"))
    vocab["model"]["vocab"]["<pad>"] = vocab["model"]["vocab"].pop("[unused5]")
    (small_bert / "tokenizer.json").write_text(json.dumps(vocab), encoding="utf-8")
    assert_refused(small_bert, out_dir, "dict.txt", force=True)
    assert sorted(p.name for p in out_dir.iterdir()) == ["old.txt"]

    vocab["model"]["vocab"]["[unused5]"] = vocab["model"]["vocab"].pop("<pad>")
    (small_bert / "tokenizer.json").write_text(json.dumps(vocab), encoding="utf-8")
    convert(small_bert, out_dir, force=True)
    assert sorted(p.name for p in out_dir.iterdir()) == ["dict.txt", "model.pt", "tokenizer_spec.json", "vocab.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_refuses_out_dir_that_holds_the_source(small_bert):
    assert_refused(small_bert, small_bert, "is or contains the source folder", force=True)
    assert (small_bert / "config.json").exists()


def test_command_line_reports_errors(small_bert, tmp_path):
    (small_bert / "config.json").unlink()
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(small_bert), str(tmp_path / "out")],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert run.returncode == 2
    assert "convert_hf_checkpoint: error:" in run.stderr and "config.json" in run.stderr
    assert not (tmp_path / "out").exists()
