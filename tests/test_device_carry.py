"""benchmarks/device_carry.py: what a lent GPU machine gets must train and score as it would here."""
import json
import shutil
from pathlib import Path

import pytest
import torch

import device_carry
from fairseq_hire.checkpoints.loading import load_state
from fairseq_hire.workflow.evaluation import read_glue_split

pytestmark = pytest.mark.unit
EMBEDDING, LM_HEAD = "decoder.sentence_encoder.embed_tokens.weight", "decoder.lm_head.weight"


def test_the_checkpoint_comes_back_in_float16_with_its_tied_weights_stored_once(tiny_pretrained, tmp_path):
    state = load_state(tiny_pretrained)
    state["model"][LM_HEAD] = state["model"][EMBEDDING]  # tied, as in the converted encoder
    torch.save(state, tmp_path / "tied.pt")
    carry = tmp_path / "carry"
    carry.mkdir()
    device_carry.pack_checkpoint(tmp_path / "tied.pt", carry)
    device_carry.unpack_checkpoint(carry, tmp_path / "there")

    back = load_state(tmp_path / "there" / "model.pt")
    assert vars(back["args"]) == vars(state["args"])
    assert list(back["model"]) == list(state["model"])
    for key, tensor in state["model"].items():
        assert torch.equal(back["model"][key], tensor.half()), key
    model = back["model"]
    assert model[LM_HEAD].untyped_storage().data_ptr() == model[EMBEDDING].untyped_storage().data_ptr()
    values = sum(t.numel() for k, t in state["model"].items() if k != LM_HEAD)
    assert json.loads((carry / "manifest.json").read_text())[-1]["key"] == list(state["model"])[-1]
    assert (carry / "weights.planes.xz").stat().st_size < 2 * values  # two bytes a value, compressed


def test_the_binaries_come_back_without_the_test_split_and_score_from_the_carried_dev_file(rte_bin, tmp_path):
    carried, there = tmp_path / "carried", tmp_path / "there"
    device_carry.copy_binaries(rte_bin, carried)
    device_carry.restore_binaries(carried, there)
    shutil.rmtree(carried)

    files = {p.relative_to(rte_bin) for p in rte_bin.rglob("*") if p.is_file()}
    kept = {p for p in files if not p.name.startswith("test.")}
    restored = {p.relative_to(there) for p in there.rglob("*") if p.is_file()}
    assert kept < files and kept <= restored and not any(p.name.startswith("test.") for p in restored)
    assert all((there / p).read_bytes() == (rte_bin / p).read_bytes() for p in kept if p.name != "glue_prep.json")
    # the label dictionary is not the vocabulary: it travels itself; input1's is restored from input0's
    assert (there / "copies.txt").read_text().split() == ["input1/dict.txt"]

    meta = json.loads((there / "glue_prep.json").read_text())
    original = json.loads((rte_bin / "glue_prep.json").read_text())
    assert meta["source"]["valid"] == str((there / "sources" / "valid.tsv").resolve())
    assert Path(meta["source"]["valid"]).read_bytes() == Path(original["source"]["valid"]).read_bytes()
    assert {k: v for k, v in meta.items() if k != "source"} == {k: v for k, v in original.items() if k != "source"}
    rows = read_glue_split(there, "valid")
    assert rows.source == there / "sources" / "valid.tsv" and len(rows.labels) == original["splits"]["valid"]
