"""--freeze-encoder under fairseq's half precision.
fairseq's trainer casts the whole model with ``model.half()`` for --fp16 and
--memory-efficient-fp16 (finetune.py's GPU recipe and the YAMLs' common.fp16), and saves the
weights back as float32: a frozen encoder came out of training rounded to half precision, not
bit-identical to the pretrained one. A frozen encoder now keeps its precision (only the heads
are cast; the encoder's outputs reach them in their dtype). --memory-efficient-fp16 runs on the
CPU, so the real fairseq-train run is tested here; --fp16 needs a GPU in fairseq itself. --bf16
casts with ``model.to(dtype=torch.bfloat16)`` and needs a GPU or TPU in fairseq: that call is
tested on the model."""
import subprocess

import pytest
import torch

from conftest import REPO
from fairseq_hire.checkpoints.loading import safe_torch_load
from fairseq_hire.modules.options import HEADS
from fairseq_setup import build_trainer, finetune_args, write_task_dicts
from test_end_to_end import train_command
from test_freeze_encoder import assert_encoder_is_pretrained

HEAD = "classification_heads.sentence_classification_head."


@pytest.mark.parametrize("head", ["stock", "hire"])
def test_a_frozen_encoder_stays_bit_identical_in_a_half_precision_run(head, rte_bin, tiny_pretrained, tmp_path):
    command = train_command(rte_bin, tiny_pretrained, tmp_path, "--freeze-encoder", *HEADS[head].options.flags(),
                            "--memory-efficient-fp16", "--max-update", "4", "--save-interval-updates", "2",
                            "--lr", "0.01")  # steps that half-precision weights do not round away
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert_encoder_is_pretrained(tmp_path / "checkpoint_last.pt", tiny_pretrained)
    at_2, last = (safe_torch_load(tmp_path / name)["model"] for name in ("checkpoint_1_2.pt", "checkpoint_last.pt"))
    # every part of the head trains (a softmax's shared bias gets no gradient: parts, not tensors)
    parts = {k[len(HEAD):].split(".")[0] for k in last if k.startswith(HEAD)}
    trained = {k[len(HEAD):].split(".")[0] for k in last if k.startswith(HEAD) and not torch.equal(at_2[k], last[k])}
    assert trained == parts and "out_proj" in parts


@pytest.mark.unit
def test_half_casts_the_heads_and_leaves_a_frozen_encoder_as_it_is(tmp_path):
    data = write_task_dicts(tmp_path / "RTE-bin")
    model = build_trainer(finetune_args(data, extra=["--freeze-encoder"])).model
    encoder = {name: tensor.clone() for name, tensor in model.encoder.state_dict().items()}
    assert model.half() is model
    assert all(torch.equal(tensor, encoder[name]) for name, tensor in model.encoder.state_dict().items())
    assert {p.dtype for p in model.classification_heads.parameters()} == {torch.float16}
    with torch.no_grad():
        logits, extra = model(torch.tensor([[0, 31414, 232, 2, 1]]),
                              classification_head_name="sentence_classification_head")
    assert logits.dtype == torch.float16 and extra["layer_weights"].dtype == torch.float16
    # a model that trains its encoder is cast whole, as fairseq casts any model
    trained = build_trainer(finetune_args(data)).model.half()
    assert {p.dtype for p in trained.parameters()} == {torch.float16}


def frozen_and_trained_models(tmp_path):
    data = write_task_dicts(tmp_path / "RTE-bin")
    return build_trainer(finetune_args(data, extra=["--freeze-encoder"])).model, build_trainer(finetune_args(data)).model


@pytest.mark.unit
@pytest.mark.parametrize("cast", [
    pytest.param(lambda model: model.to(dtype=torch.bfloat16), id="fairseq-bf16-trainer"),
    pytest.param(lambda model: model.to(torch.bfloat16), id="to-dtype"),
    pytest.param(lambda model: model.to("cpu", torch.bfloat16), id="to-device-and-dtype"),
    pytest.param(lambda model: model.bfloat16(), id="bfloat16"),
])
def test_bfloat16_casts_the_heads_and_leaves_a_frozen_encoder_as_it_is(tmp_path, cast):
    model, trained = frozen_and_trained_models(tmp_path)
    encoder = {name: tensor.clone() for name, tensor in model.encoder.state_dict().items()}
    assert cast(model) is model
    assert all(torch.equal(tensor, encoder[name]) for name, tensor in model.encoder.state_dict().items())
    assert {p.dtype for p in model.encoder.parameters()} == {torch.float32}
    assert {p.dtype for p in model.classification_heads.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        logits, extra = model(torch.tensor([[0, 31414, 232, 2, 1]]),
                              classification_head_name="sentence_classification_head")
    assert logits.dtype == torch.bfloat16 and extra["layer_weights"].dtype == torch.bfloat16
    assert {p.dtype for p in cast(trained).parameters()} == {torch.bfloat16}  # cast whole, as fairseq casts


@pytest.mark.unit
def test_to_without_a_dtype_moves_a_frozen_model_whole(tmp_path):
    model, _ = frozen_and_trained_models(tmp_path)
    model.classification_heads.half()
    assert model.to("cpu") is model
    assert {p.dtype for p in model.encoder.parameters()} == {torch.float32}
    assert {p.dtype for p in model.classification_heads.parameters()} == {torch.float16}
    assert model.to(torch.device("meta")) is model
    assert {p.device.type for p in model.parameters()} == {"meta"}
