"""A plugin run loads a checkpoint only into the encoder that checkpoint is (checkpoints/fitting.py).

fairseq-hydra-train with the shipped YAMLs (roberta.base's sizes) and a converted checkpoint:
a size left off ended in a long traceback naming no option, and a LayerNorm epsilon, an
activation or a number of attention heads left off (none changes a weight's shape) fine-tuned
another function than the checkpoint's without a word. A misspelt ``model.*`` key was ignored
(``model.freeze_encodr=true`` trained the whole encoder), and the YAMLs' baseline switch
(``model._name=roberta_base``) dropped the YAML's epsilon. Each is now refused before any
update, naming the option; the documented overrides (``checkpoint_args.py --hydra``) train.
"""
import subprocess
import sys

import pytest
import torch

from conftest import REPO
from test_finished_run import fairseq_train_command, finetune_command

BASE_YAMLS = REPO / "fairseq_hire" / "config" / "finetuning" / "base"
# the tiny checkpoint's sizes (conftest.tiny_pretrained) as fairseq-hydra-train overrides
TINY_SIZES = ("+model.encoder_layers=2", "+model.encoder_embed_dim=32", "+model.encoder_ffn_embed_dim=64",
              "+model.encoder_attention_heads=2")


@pytest.fixture(scope="module")
def eps_pretrained(tiny_pretrained, tmp_path_factory):
    """The tiny checkpoint as a converted BERT-family one records itself: LayerNorm epsilon 1e-3."""
    state = torch.load(tiny_pretrained, weights_only=False)  # the test's own file
    state["args"].encoder_layernorm_eps = 1e-3
    path = tmp_path_factory.mktemp("converted") / "model.pt"
    torch.save(state, path)
    return path


def hydra_train(data, pretrained, save_dir, *overrides):
    return subprocess.run([
        sys.executable, "-m", "fairseq_cli.hydra_train", "--config-dir", str(BASE_YAMLS), "--config-name", "rte",
        f"task.data={data}", f"checkpoint.finetune_from_model={pretrained}", "common.fp16=false", "common.cpu=true",
        f"common.user_dir={REPO / 'fairseq_hire'}", f"checkpoint.save_dir={save_dir}", "optimization.max_update=1",
        *overrides], capture_output=True, text=True, cwd=save_dir.parent)


def error_line(result) -> str:
    """The exception's line (Hydra prints a hint after it)."""
    return next(line for line in reversed(result.stderr.splitlines()) if "Error:" in line)


def assert_refused_before_training(result, save_dir, *expected):
    assert result.returncode != 0, result.stdout[-2000:]
    line = error_line(result)
    assert all(part in line for part in expected), result.stderr[-3000:]
    assert not list(save_dir.glob("checkpoint*.pt"))


@pytest.mark.parametrize("overrides, expected", [
    ((), ("its encoder_layers is 2, but this run builds 12", "checkpoint_args.py", "--hydra")),
    ((*TINY_SIZES[:3], "+model.encoder_attention_heads=4"),
     ("its encoder_attention_heads is 2, but this run builds 4",)),
    ((*TINY_SIZES, "++model.activation_fn=relu"), ("its activation_fn is gelu, but this run builds relu",)),
    (TINY_SIZES, ("its encoder_layernorm_eps is 0.001, but this run builds 1e-05",)),
    ((*TINY_SIZES, "++model.encoder_layernorm_eps=0.001", "++model.no_scale_embedding=false"),
     ("its no_scale_embedding is True, but this run builds False",)),
    ((*TINY_SIZES, "++model.encoder_layernorm_eps=0.001", "++task.max_positions=256"),
     ("its max_positions is 512, but this run builds 256",)),
], ids=["sizes", "attention-heads", "activation", "layernorm-eps", "embedding-scale", "positions"])
def test_hydra_refuses_a_checkpoint_the_run_does_not_build(rte_bin, eps_pretrained, tmp_path, overrides, expected):
    save_dir = tmp_path / "save"
    result = hydra_train(rte_bin, eps_pretrained, save_dir, *overrides)
    assert_refused_before_training(result, save_dir, "ArchitectureMismatchError", str(eps_pretrained), *expected)


def test_the_documented_hydra_overrides_train_a_converted_checkpoint(rte_bin, eps_pretrained, tmp_path):
    printed = subprocess.run([sys.executable, "scripts/checkpoint_args.py", str(eps_pretrained), "--hydra"],
                             capture_output=True, text=True, cwd=REPO, check=True).stdout.split()
    assert "++model.encoder_layernorm_eps=0.001" in printed and "++model.encoder_layers=2" in printed
    assert "++task.max_positions=512" in printed  # sentence_prediction sets the model's from the task's
    save_dir = tmp_path / "save"
    result = hydra_train(rte_bin, eps_pretrained, save_dir, *printed)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (save_dir / "checkpoint_last.pt").exists()


def test_a_misspelt_hydra_model_key_is_refused_naming_the_option_meant(rte_bin, tiny_pretrained, tmp_path):
    save_dir = tmp_path / "save"
    result = hydra_train(rte_bin, tiny_pretrained, save_dir, *TINY_SIZES, "++model.freeze_encodr=true")
    assert_refused_before_training(result, save_dir, "model.freeze_encodr: roberta_hire_base has no such option; "
                                                     "did you mean model.freeze_encoder?")


@pytest.mark.unit
def test_the_model_keys_fairseqs_encoder_reads_are_known():
    """Keys read through TransformerConfig (activation checkpointing is Hydra's only switch for
    it), and those of roberta's add_args and architecture, pass the key check."""
    from omegaconf import OmegaConf

    import fairseq_hire  # noqa: F401  registers roberta_hire
    from fairseq_hire.models.roberta_hire import check_hydra_model_keys

    keys = {"checkpoint_activations": True, "offload_activations": True, "export": False, "pooler_dropout": 0.1,
            "encoder_layers_to_keep": "0", "spectral_norm_classification_head": False, "tokens_per_sample": 512,
            "activation_dropout": 0.0, "quant_noise_pq": 0.0, "no_scale_embedding": True, "freeze_encoder": True}
    for name in ("roberta_hire_base", "roberta_base", "roberta_large"):
        check_hydra_model_keys(OmegaConf.create({"_name": name, **keys}))
    with pytest.raises(ValueError, match="model.decoder_layers: roberta_base has no such option"):
        check_hydra_model_keys(OmegaConf.create({"_name": "roberta_base", "decoder_layers": 2}))


def test_the_yaml_baseline_switch_trains_and_refuses_an_epsilon_it_would_drop(
        rte_bin, tiny_pretrained, eps_pretrained, tmp_path):
    """model._name=roberta_base with the YAML's hire_* keys trains (they are roberta_hire's, left
    unread); with a converted checkpoint's epsilon, fairseq's roberta would build 1e-5."""
    trained = hydra_train(rte_bin, tiny_pretrained, tmp_path / "stock", *TINY_SIZES, "model._name=roberta_base")
    assert trained.returncode == 0, trained.stderr[-3000:]
    save_dir = tmp_path / "save"
    result = hydra_train(rte_bin, eps_pretrained, save_dir, *TINY_SIZES, "model._name=roberta_base",
                         "++model.encoder_layernorm_eps=0.001")
    assert_refused_before_training(result, save_dir, "model.encoder_layernorm_eps is an option of roberta_hire")


def test_fairseq_train_refuses_an_activation_the_checkpoint_was_not_trained_with(rte_bin, tiny_pretrained, tmp_path):
    """Plain fairseq-train, the plugin's recipe with --activation-fn relu on a gelu checkpoint."""
    save_dir = tmp_path / "save"
    command = fairseq_train_command(rte_bin, tiny_pretrained, save_dir, "--activation-fn", "relu")
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"fairseq_hire.checkpoints.fitting.ArchitectureMismatchError: cannot load {tiny_pretrained}: its "
        "activation_fn is gelu, but this run builds relu"), result.stderr[-3000:]
    assert not list(save_dir.glob("checkpoint*.pt"))


@pytest.mark.unit
def test_an_activation_fairseq_builds_anew_each_time_fits_its_own_name(tiny_pretrained, gpt2_bpe_dir):
    """fairseq's get_activation_fn("linear") is a new lambda on every call: compared by the
    function, a linear checkpoint never fit a linear run."""
    from fairseq_hire.checkpoints import fitting
    from fairseq_hire.checkpoints.loading import load_state
    from fairseq_hire.hub_interface import from_pretrained

    model = from_pretrained(str(tiny_pretrained.parent), data_name_or_path=str(gpt2_bpe_dir)).model
    state = load_state(tiny_pretrained)
    model.args.activation_fn = state["args"].activation_fn = "linear"
    fitting.check(model, state, tiny_pretrained)
    model.args.activation_fn = "gelu_accurate"
    state["args"].activation_fn = "gelu_fast"  # fairseq's alias of gelu_accurate
    fitting.check(model, state, tiny_pretrained)


@pytest.mark.unit
def test_data_of_another_dictionary_is_named_and_a_fitting_checkpoint_passes(tiny_pretrained, gpt2_bpe_dir):
    from fairseq_hire.checkpoints import fitting
    from fairseq_hire.checkpoints.loading import load_state
    from fairseq_hire.hub_interface import from_pretrained

    model = from_pretrained(str(tiny_pretrained.parent), data_name_or_path=str(gpt2_bpe_dir)).model
    state = load_state(tiny_pretrained)
    fitting.check(model, state, tiny_pretrained)
    key = "decoder.sentence_encoder.embed_tokens.weight"
    state["model"][key] = state["model"][key][:-8]
    with pytest.raises(fitting.ArchitectureMismatchError, match=r"embeddings have \d+ rows, but the data's "
                                                                r"dictionary \(dict.txt\) gives \d+"):
        fitting.check(model, state, tiny_pretrained)


def test_baseline_from_a_hire_run_of_the_same_classes_starts_the_head_fresh(rte_bin, tiny_pretrained, tmp_path):
    """fairseq's roberta kept the HIRE head (same name and classes) and failed its strict load on
    the extractor ("please ensure that the architectures match"); the reverse started fresh."""
    budget = ("--epochs", "1", "--max-update", "2")
    subprocess.run(finetune_command(rte_bin, tiny_pretrained, tmp_path / "hire", *budget), check=True,
                   capture_output=True, cwd=REPO)
    result = subprocess.run(finetune_command(rte_bin, tiny_pretrained, tmp_path / "baseline", "--baseline",
                                             "--mnli-init", str(tmp_path / "hire" / "checkpoint_best.pt"), *budget),
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("in the checkpoint has parts ['dense', 'extractor', 'fusion', 'out_proj']; this model's has ['dense', "
            "'out_proj']: it starts fresh") in result.stdout + result.stderr
