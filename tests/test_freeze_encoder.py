"""--freeze-encoder and --layer-cache in real fairseq-train runs (the plugin's criterion, the
tiny RoBERTa, real RTE rows): the encoder (embeddings, layers, LM head) ends bit-identical to
the pretrained checkpoint while the head trains, for the stock head and HIRE, in
fairseq-train and fairseq-hydra-train; a run on cached layer outputs ends where the same run
without the cache ends, and a second run (another head) on the cache never runs the encoder.
fairseq-hydra-train refuses both options for the recipe YAMLs' stock baseline (roberta_base),
and freezes roberta_hire's stock head instead.
"""
import subprocess
import sys

import pytest
import torch

from conftest import REPO
from count_encoder_calls import calls_in
from fairseq_hire.checkpoints.loading import safe_torch_load
from fairseq_hire.modules.options import HEADS
from fairseq_setup import build_trainer, finetune_args, write_task_dicts
from test_end_to_end import train_command, valid_records

HEAD = "classification_heads.sentence_classification_head."
UPDATES = 8  # the run saves at update 4 and at its end, and validates at both
RECIPES = REPO / "fairseq_hire" / "config" / "finetuning" / "base"
COUNTING_TRAIN = [sys.executable, str(REPO / "tests" / "count_encoder_calls.py")]


def frozen_run(rte_bin, pretrained, save_dir, head, *extra):
    """fairseq-train with the frozen encoder -> (save_dir, log, encoder forward calls)."""
    command = train_command(rte_bin, pretrained, save_dir, "--freeze-encoder", *HEADS[head].options.flags(),
                            "--max-update", str(UPDATES), "--save-interval-updates", "4", *extra)
    command = COUNTING_TRAIN + command[command.index("fairseq_cli.train") + 1:]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    return save_dir, log, calls_in(log)


@pytest.fixture(scope="module")
def layer_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("layer-cache")


@pytest.fixture(scope="module", params=["stock", "hire"])
def uncached(request, rte_bin, tiny_pretrained, tmp_path_factory):
    return request.param, frozen_run(rte_bin, tiny_pretrained, tmp_path_factory.mktemp("frozen"), request.param)


@pytest.fixture(scope="module")
def cached(rte_bin, tiny_pretrained, tmp_path_factory, layer_cache):
    """The same runs on the layer cache: the stock head's builds it, HIRE's reads it."""
    return {head: frozen_run(rte_bin, tiny_pretrained, tmp_path_factory.mktemp("cached"), head,
                             "--layer-cache", str(layer_cache))
            for head in ("stock", "hire")}


def pretrained_encoder(pretrained):
    """The pretrained checkpoint's parameters under the model's names."""
    state = safe_torch_load(pretrained)["model"]
    return {("encoder" + k[len("decoder"):]).replace(".emb_layer_norm.", ".layernorm_embedding."): v
            for k, v in state.items() if not k.endswith(".version")}


def assert_encoder_is_pretrained(checkpoint, pretrained):
    model = safe_torch_load(checkpoint)["model"]
    expected = pretrained_encoder(pretrained)
    encoder_keys = {k for k in model if not k.startswith("classification_heads.") and not k.endswith(".version")}
    assert encoder_keys == set(expected)
    changed = [k for k in encoder_keys if not torch.equal(model[k], expected[k])]
    assert not changed, f"{checkpoint.name}: encoder parameters changed: {changed}"


def test_frozen_encoder_stays_bit_identical_and_the_head_trains(uncached, tiny_pretrained):
    head, (save_dir, log, _) = uncached
    for name in ("checkpoint_1_4.pt", "checkpoint_last.pt"):
        assert_encoder_is_pretrained(save_dir / name, tiny_pretrained)
    at_4 = safe_torch_load(save_dir / "checkpoint_1_4.pt")["model"]
    last = safe_torch_load(save_dir / "checkpoint_last.pt")["model"]
    head_keys = [k for k in last if k.startswith(HEAD)]
    assert head_keys and all(not torch.equal(at_4[k], last[k]) for k in head_keys), \
        [k for k in head_keys if torch.equal(at_4[k], last[k])]
    assert [r["valid_num_updates"] for r in valid_records(log)] == ["4", str(UPDATES)]


def test_a_run_on_the_layer_cache_ends_where_the_uncached_run_ends(uncached, cached, tiny_pretrained):
    head, (uncached_dir, uncached_log, uncached_calls) = uncached
    cached_dir, cached_log, _ = cached[head]
    assert_encoder_is_pretrained(cached_dir / "checkpoint_last.pt", tiny_pretrained)
    reference = safe_torch_load(uncached_dir / "checkpoint_last.pt")["model"]
    result = safe_torch_load(cached_dir / "checkpoint_last.pt")["model"]
    worst = max((reference[k] - result[k]).abs().max().item() for k in reference if k.startswith(HEAD))
    assert worst <= 1e-6, f"{head}: the cached run's head differs by {worst}"
    scores = [(r["valid_loss"], r["valid_accuracy"], r["valid_mcc"]) for r in valid_records(uncached_log)]
    assert [(r["valid_loss"], r["valid_accuracy"], r["valid_mcc"]) for r in valid_records(cached_log)] == scores
    assert uncached_calls >= UPDATES  # the uncached run ran the encoder on every batch


def test_a_second_run_on_the_layer_cache_never_runs_the_encoder(cached, layer_cache):
    _, building_log, building_calls = cached["stock"]
    _, reading_log, reading_calls = cached["hire"]
    assert "layer cache: encoding 160 rows of train" in building_log and building_calls > 0
    assert reading_calls == 0, reading_log[-3000:]
    [fingerprint] = [p for p in layer_cache.iterdir() if p.is_dir()]
    assert len([p for p in fingerprint.iterdir() if p.is_dir()]) == 2  # train and valid, built once


def test_hydra_run_with_a_frozen_encoder(rte_bin, tiny_pretrained, tmp_path):
    """fairseq-hydra-train takes the option as model.freeze_encoder; the recipe YAMLs do not
    name it, so the override needs ++ (add or override) or +."""
    command = [
        sys.executable, "-m", "fairseq_cli.hydra_train", "--config-dir", str(RECIPES), "--config-name", "rte",
        f"task.data={rte_bin}", f"checkpoint.finetune_from_model={tiny_pretrained}", f"checkpoint.save_dir={tmp_path}",
        f"hydra.run.dir={tmp_path}", "common.fp16=false", "common.cpu=true", f"common.user_dir={REPO / 'fairseq_hire'}",
        "optimization.max_update=4", "optimization.lr=[3e-4]", "+model.encoder_layers=2",
        "+model.encoder_embed_dim=32", "+model.encoder_ffn_embed_dim=64", "+model.encoder_attention_heads=2",
        "++model.freeze_encoder=true",
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert_encoder_is_pretrained(tmp_path / "checkpoint_last.pt", tiny_pretrained)
    assert safe_torch_load(tmp_path / "checkpoint_last.pt")["cfg"]["model"]["freeze_encoder"] is True


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


# ------------------------------------------------------------------ in-process, no fairseq-train


@pytest.fixture
def rte_dir(tmp_path):
    return write_task_dicts(tmp_path / "RTE-bin")


@pytest.mark.unit
def test_frozen_encoder_has_no_dropout_and_only_the_heads_are_optimised(rte_dir):
    trainer = build_trainer(finetune_args(rte_dir, extra=["--freeze-encoder", "--dropout", "0.5"]))
    model = trainer.model
    model.train()
    assert not any(module.training for module in model.encoder.modules())
    assert all(module.training for module in model.classification_heads.modules())
    tokens = torch.tensor([[0, 31414, 232, 2, 1]])
    first, second = (model.encoder(tokens, features_only=True)[0] for _ in range(2))
    assert torch.equal(first, second)
    assert {id(p) for p in trainer.optimizer.params} == {id(p) for p in model.classification_heads.parameters()}

    trained = build_trainer(finetune_args(rte_dir, extra=["--dropout", "0.5"])).model
    trained.train()
    assert not torch.equal(*(trained.encoder(tokens, features_only=True)[0] for _ in range(2)))
    assert trained.args.freeze_encoder is False and trained.args.layer_cache is None


@pytest.mark.unit
def test_layer_cache_needs_a_frozen_encoder(rte_dir, tmp_path):
    with pytest.raises(ValueError, match="--layer-cache .*add --freeze-encoder"):
        build_trainer(finetune_args(rte_dir, extra=["--layer-cache", str(tmp_path / "cache")]))
    assert not (tmp_path / "cache").exists()
