"""Review of issue 28's options through the routes a user takes: fairseq-hydra-train with the
recipe YAMLs and the stock model the YAMLs name as the baseline, and the layer cache built
inside an autocast region (fairseq's --amp)."""
import subprocess
import sys

import pytest
import torch

from conftest import REPO
from test_freeze_encoder import RECIPES, pretrained_encoder

TINY_MODEL = ["+model.encoder_layers=2", "+model.encoder_embed_dim=32", "+model.encoder_ffn_embed_dim=64",
              "+model.encoder_attention_heads=2"]


def hydra_train(rte_bin, pretrained, save_dir, *overrides):
    command = [
        sys.executable, "-m", "fairseq_cli.hydra_train", "--config-dir", str(RECIPES), "--config-name", "rte",
        f"task.data={rte_bin}", f"checkpoint.finetune_from_model={pretrained}", f"checkpoint.save_dir={save_dir}",
        f"hydra.run.dir={save_dir}", "common.fp16=false", "common.cpu=true", f"common.user_dir={REPO / 'fairseq_hire'}",
        "optimization.max_update=4", "optimization.lr=[3e-4]", *TINY_MODEL, *overrides,
    ]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO)


@pytest.mark.parametrize("option", ["++model.freeze_encoder=true", "++model.layer_cache=CACHE"])
def test_hydra_refuses_the_frozen_encoder_options_for_the_stock_baseline_model(option, rte_bin, tiny_pretrained,
                                                                                 tmp_path):
    """The YAMLs name model._name=roberta_base as the baseline; fairseq's stock roberta takes any
    model.* key and ignores it, so a 'frozen' baseline fine-tuned its whole encoder (and its
    checkpoint said freeze_encoder: true). It is refused before training, nothing saved."""
    save_dir = tmp_path / "save"
    result = hydra_train(rte_bin, tiny_pretrained, save_dir, "model._name=roberta_base",
                         option.replace("CACHE", str(tmp_path / "cache")))
    log = result.stdout + result.stderr
    assert result.returncode != 0, log[-3000:]
    name = option[len("++model."):].partition("=")[0]
    assert f"model.{name} is an option of roberta_hire" in log, log[-3000:]
    assert not list(save_dir.glob("*.pt"))
    assert not (tmp_path / "cache").exists()


def test_hydra_freezes_the_stock_head_of_roberta_hire(rte_bin, tiny_pretrained, tmp_path):
    """What the refusal points to: roberta_hire's stock head with a frozen encoder, bit-identical."""
    from fairseq_hire.checkpoints.loading import safe_torch_load

    result = hydra_train(rte_bin, tiny_pretrained, tmp_path, "++model.hire_extractor=mean", "++model.hire_last_k=1",
                         "++model.hire_fusion=false", "++model.hire_classifier_init=pytorch",
                         "++model.freeze_encoder=true")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    model = safe_torch_load(tmp_path / "checkpoint_last.pt")["model"]
    expected = pretrained_encoder(tiny_pretrained)
    assert [k for k in expected if not torch.equal(model[k], expected[k])] == []


@pytest.mark.unit
def test_a_cache_built_under_autocast_holds_the_encoders_own_precision(rte_bin, tiny_pretrained, tmp_path):
    """fairseq's --amp runs the training forward under autocast, where the cache of every split
    is built; the entries then held half-precision states, which a later fp32 run on the same
    encoder (the same fingerprint) read as its own: a cache that changed its results."""
    from test_layer_cache import HEAD, batches, frozen_trainer

    building = frozen_trainer(rte_bin, tiny_pretrained, tmp_path / "cache")
    batch = batches(building)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what torch.cuda.amp.autocast is on a GPU
        building.model(**batch["net_input"], classification_head_name=HEAD)

    reading = frozen_trainer(rte_bin, tiny_pretrained, tmp_path / "cache")
    model, cache = reading.model, reading.model.layer_cache
    model.eval()
    for batch in batches(reading):
        tokens = batch["net_input"]["src_tokens"]
        with torch.no_grad():
            _, cached_states = cache.lookup(tokens)
            _, extra = model.encoder(tokens, features_only=True, return_all_hiddens=True)
        real = tokens.ne(cache.padding_idx).t()
        for cached, computed in zip(cached_states, extra["inner_states"]):
            torch.testing.assert_close(cached[real], computed[real], rtol=0, atol=1e-5)
    assert cache.missed_batches == 0
