"""A checkpoint whose configuration builds another model than its weights is refused before
any model is built: fairseq allocates what the configuration names (an FFN of 2**31 is
256 GiB) before it loads the weights. Sizes are read as fairseq reads them, so a legitimate
checkpoint, and one whose odd option fairseq ignores, still loads.

Every loader meets the size payloads in tests/test_checkpoint_safety.py (the shared variants
of tests/hostile_checkpoints.py); here are the sizes one by one, and evaluate.py's exit."""
import argparse
import copy
import os
import subprocess
import sys
import time

import pytest
import torch

import fairseq_hire  # noqa: F401  (registers roberta_hire)
import hostile_checkpoints as hostile
from conftest import GPT2_BPE, REPO
from fairseq_hire import RobertaHireModel
from fairseq_hire.checkpoints.errors import CheckpointError, UnsafeConfigError
from fairseq_hire.checkpoints.loading import load_state, safe_torch_load
from fairseq_setup import build_trainer, finetune_args, save, write_task_dicts
from roberta_checkpoints import write_original_roberta_checkpoint

pytestmark = pytest.mark.unit

HUGE = hostile.HUGE
LAYER = "encoder.sentence_encoder.layers.0."


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_task_dicts(tmp_path_factory.mktemp("data") / "RTE-bin")


@pytest.fixture(scope="module")
def fine_tuned(data_dir, tmp_path_factory):
    """A roberta_hire checkpoint as fairseq-train writes it: 2 layers, dimension 32, FFN 64,
    2 heads, 512 positions, a HIRE head of 2 classes."""
    path = tmp_path_factory.mktemp("fine-tuned") / "checkpoint_best.pt"
    save(build_trainer(finetune_args(data_dir)), path, {"epoch": 1})
    return safe_torch_load(path)


def changed(state, model=None, task=None, plain=False):
    """A copy with options of cfg.model / cfg.task changed; plain: cfg.model as a dict (as a
    hand-written cfg holds it, which fairseq reads as a DictConfig) instead of a Namespace."""
    state = copy.deepcopy(state)
    cfg = state["cfg"]
    cfg["model"] = {**vars(cfg["model"]), **(model or {})}
    if not plain:
        cfg["model"] = argparse.Namespace(**cfg["model"])
    cfg["task"] = {**cfg["task"], **(task or {})}
    return state


def saved(state, tmp_path):
    path = tmp_path / "model" / "checkpoint_best.pt"
    path.parent.mkdir(exist_ok=True)
    torch.save(state, path)
    return path


def refusal(state, tmp_path) -> str:
    with pytest.raises(UnsafeConfigError) as refused:
        load_state(saved(state, tmp_path))
    message = str(refused.value)
    assert "\n" not in message and "refused before anything was built" in message
    return message


@pytest.mark.parametrize("model, task, expected", [
    ({"encoder_ffn_embed_dim": HUGE}, None, [f"encoder.ffn_embed_dim = {HUGE}", LAYER + "fc1.weight", "(64, 32)"]),
    ({"ffn_embed_dim": HUGE}, None, [f"encoder.ffn_embed_dim = {HUGE}", LAYER + "fc1.weight"]),
    ({"encoder_embed_dim": 64}, None, ["encoder_embed_dim = 64", "embed_tokens.weight"]),
    ({"encoder_layers": 3}, None, ["encoder.layers = 3", "hold 2 layers"]),
    ({"encoder_layers": HUGE}, None, [f"encoder.layers = {HUGE}"]),
    ({"encoder_attention_heads": 3}, None, ["encoder.attention_heads = 3", "divides the embedding dimension"]),
    ({"encoder_attention_heads": 0}, None, ["encoder.attention_heads = 0", "a positive integer"]),
    ({"encoder_layers_to_keep": "0,7"}, None, ["keeps layers 0,7 of the 2"]),
    ({"encoder_layers_to_keep": "1,2"}, None, ["keeps layers 1,2 of the 2 in its weights (its weights are those "
                                               "layers already: set cfg.model.encoder_layers_to_keep to None"]),
    ({"encoder_layers_to_keep": "1,1"}, None, ["encoder_layers_to_keep = '1,1'", "distinct layer indices"]),
    ({"encoder_layers_to_keep": "-1"}, None, ["encoder_layers_to_keep = '-1'", "distinct layer indices"]),
    ({"encoder_layers_to_keep": "0,x"}, None, ["encoder_layers_to_keep = '0,x'", "distinct layer indices"]),
    (None, {"max_positions": HUGE}, [f"max_positions = {HUGE}", "embed_positions.weight", "(514, 32)"]),
    ({"encoder_learned_pos": False}, {"max_positions": HUGE}, ["sinusoidal position table"]),
    ({"hire_gru_dim": 2 ** 20}, None, ["classification_heads.sentence_classification_head.extractor.gru"]),
    (None, {"num_classes": HUGE}, [f"num_classes {HUGE}", "out_proj"]),
    (None, {"num_classes": 0}, ["num_classes = 0", "a positive integer"]),
])
def test_sizes_the_weights_do_not_have_are_refused_naming_them(model, task, expected, fine_tuned, tmp_path):
    message = refusal(changed(fine_tuned, model, task), tmp_path)
    for part in expected:
        assert part in message, message


def test_an_encoder_section_is_read_as_fairseq_reads_it(fine_tuned, data_dir, tmp_path):
    """TransformerConfig.from_namespace takes a nested ``encoder`` section whole from a cfg.model
    dict (fairseq reads it as a DictConfig), while a Namespace's flat options override it: the
    same option builds another model in the two, and the check follows fairseq in both."""
    section = {"encoder": {"ffn_embed_dim": 128, "embed_dim": 32, "layers": 2, "attention_heads": 2,
                           "learned_pos": True}}
    message = refusal(changed(fine_tuned, section, plain=True), tmp_path)
    assert "encoder.ffn_embed_dim = 128" in message
    path = saved(changed(fine_tuned, section), tmp_path)
    load_state(path)
    hub = RobertaHireModel.from_pretrained(str(path.parent), path.name, data_name_or_path=str(data_dir))
    assert hub.model.encoder.sentence_encoder.layers[0].fc1.weight.shape == (64, 32)


def test_the_tasks_max_positions_is_the_one_fairseq_builds(fine_tuned, tmp_path):
    """sentence_prediction builds the model with its own max_positions, whatever cfg.model says."""
    load_state(saved(changed(fine_tuned, {"max_positions": HUGE}), tmp_path))


def test_pruned_layers_load(fine_tuned, tmp_path):
    """--encoder-layers-to-keep builds fewer layers than the weights hold; fairseq prunes them."""
    load_state(saved(changed(fine_tuned, {"encoder_layers_to_keep": "1"}), tmp_path))


@pytest.mark.parametrize("keep, expected", [("5", "keeps layers 5 of the 2"), ("1,1", "'1,1'; expected distinct")])
def test_a_hub_override_is_checked_as_the_checkpoint_is(keep, expected, fine_tuned, data_dir, tmp_path, monkeypatch):
    """An override (encoder_layers_to_keep=...) changes the model fairseq builds: a keep list the
    weights cannot fill is refused in one line, before any model is built (it ended in torch's
    "Missing key(s)" after building); one they can fill prunes."""
    path = saved(fine_tuned, tmp_path)
    hub = RobertaHireModel.from_pretrained(str(path.parent), path.name, data_name_or_path=str(data_dir),
                                           encoder_layers_to_keep="1")
    assert len(hub.model.encoder.sentence_encoder.layers) == 1
    built = []
    monkeypatch.setattr(RobertaHireModel, "build_model", classmethod(lambda cls, *a: built.append(a)))
    with pytest.raises(UnsafeConfigError) as refused:
        RobertaHireModel.from_pretrained(str(path.parent), path.name, data_name_or_path=str(data_dir),
                                         encoder_layers_to_keep=keep)
    message = str(refused.value)
    assert "\n" not in message and expected in message and message.endswith(
        f"(with the override encoder_layers_to_keep={keep!r})"), message
    assert not built


def test_a_hub_override_of_head_options_loads_the_head_untrained(fine_tuned, data_dir, tmp_path):
    """Overrides are checked for the encoder they build; a head they change is left untrained, as
    the hub reports and refuses at prediction (test_a_head_its_weights_do_not_hold_...)."""
    from fairseq_hire.checkpoints.shapes import head_shapes, untrained_heads

    path = saved(fine_tuned, tmp_path)
    hub = RobertaHireModel.from_pretrained(str(path.parent), path.name, data_name_or_path=str(data_dir),
                                           hire_gru_dim=8)
    assert list(untrained_heads(hub.model, head_shapes(fine_tuned["model"]))) == ["sentence_classification_head"]


@pytest.mark.parametrize("arch, flags, num_classes", [
    ("roberta_hire_base", ["--spectral-norm-classification-head", "--hire-gru-dim", "8"], 2),
    ("roberta_hire_base", ["--untie-weights-roberta", "--encoder-normalize-before", "--hire-extractor", "concat",
                           "--hire-last-k", "2", "--no-hire-fusion", "--hire-pooling", "mean-max"], 1),
    ("roberta_hire_base", ["--encoder-layers-to-keep", "0", "--hire-extractor", "scalar-mix",
                           "--hire-include-embeddings"], 2),
    ("roberta_hire_base", ["--quant-noise-pq", "0.1", "--quant-noise-pq-block-size", "4", "--freeze-encoder"], 2),
    ("roberta_prenorm", [], 2),
    ("roberta_base", ["--untie-weights-roberta", "--max-positions", "128"], 5),
])
def test_checkpoints_of_every_kind_of_run_load(arch, flags, num_classes, data_dir, tmp_path):
    """What fairseq-train writes for other architectures, heads and options loads, through the
    check and the hub."""
    path = tmp_path / "model" / "checkpoint_best.pt"
    path.parent.mkdir()
    save(build_trainer(finetune_args(data_dir, arch=arch, num_classes=num_classes, extra=flags)), path, {"epoch": 1})
    load_state(path)
    hub = RobertaHireModel.from_pretrained(str(path.parent), path.name, data_name_or_path=str(data_dir))
    assert hub.model.classification_heads["sentence_classification_head"].out_proj.out_features == num_classes
    assert hub.untrained_heads == {}  # every kind of head loads as trained (spectral norm's extra tensors too)


def test_original_release_format_loads(tmp_path):
    path = tmp_path / "roberta" / "model.pt"
    path.parent.mkdir()
    write_original_roberta_checkpoint(path, GPT2_BPE / "dict.txt")
    state = load_state(path)
    assert "decoder.sentence_encoder.embed_tokens.weight" in state["model"]


@pytest.mark.parametrize("weight, view", [
    (LAYER + "fc1.weight", lambda w: torch.zeros(1).expand(HUGE, w.shape[1])),
    ("encoder.sentence_encoder.embed_tokens.weight", lambda w: w[:1].expand(HUGE, w.shape[1])),
])
def test_weights_that_claim_more_numbers_than_they_store_are_refused(weight, view, fine_tuned, tmp_path):
    state = copy.deepcopy(fine_tuned)
    state["model"][weight] = view(state["model"][weight])
    path = saved(state, tmp_path)
    assert path.stat().st_size < 20 * 2 ** 20  # the view is a few bytes in the file
    message = refusal(state, tmp_path)
    assert weight in message and f"({HUGE}, 32)" in message and "stored whole" in message


def test_a_sparse_weight_is_refused(fine_tuned, tmp_path):
    state = copy.deepcopy(fine_tuned)
    state["model"][LAYER + "fc1.bias"] = state["model"][LAYER + "fc1.bias"].to_sparse()
    assert "sparse" in refusal(state, tmp_path)


def test_evaluate_exits_with_the_error_at_once(fine_tuned, rte_bin, tmp_path):
    """The issue's checkpoint: encoder_ffn_embed_dim = 2**31, weights of FFN 64. evaluate.py
    used to die allocating 256 GiB; now it names the option and the weight, in one line, after
    allocating nothing big (its peak memory is that of loading a tiny model)."""
    path = saved(changed(fine_tuned, {"encoder_ffn_embed_dim": HUGE}), tmp_path)
    command = [sys.executable, str(REPO / "scripts" / "evaluate.py"), str(path.parent), str(rte_bin),
               "--checkpoint", path.name]
    start = time.monotonic()
    with open(tmp_path / "stderr", "w") as stderr_file:  # a file, not a pipe nobody reads while waiting
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr_file, cwd=REPO,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"})
        _, status, usage = os.wait4(process.pid, 0)  # the child's own peak memory, not all children's
    seconds = time.monotonic() - start
    stderr = (tmp_path / "stderr").read_text()
    assert os.waitstatus_to_exitcode(status) == 2, stderr[-2000:]
    assert "Traceback" not in stderr and "allocate memory" not in stderr
    error = [line for line in stderr.splitlines() if "refusing to load checkpoint" in line]
    assert len(error) == 1 and f"encoder.ffn_embed_dim = {HUGE}" in error[0] and "fc1.weight" in error[0]
    assert usage.ru_maxrss * 1024 < 2 * 2 ** 30, f"evaluate.py peaked at {usage.ru_maxrss // 1024} MiB"
    assert seconds < 120


@pytest.fixture(scope="module")
def fine_tuned_on_rte(rte_bin, tmp_path_factory):
    path = tmp_path_factory.mktemp("fine-tuned-rte") / "checkpoint_best.pt"
    save(build_trainer(finetune_args(rte_bin)), path, {"epoch": 1})
    return safe_torch_load(path)


def without_heads(state):
    state = copy.deepcopy(state)
    state["model"] = {k: v for k, v in state["model"].items() if not k.startswith("classification_heads.")}
    return state


@pytest.mark.parametrize("damage", [lambda state: changed(state, {"hire_fusion": False}), without_heads],
                         ids=["other-head-options", "no-head-weights"])
def test_a_head_its_weights_do_not_hold_is_refused_at_prediction(damage, fine_tuned_on_rte, rte_bin, tmp_path):
    """Loading is lenient with heads on purpose (fine-tuning starts a head of other parts or classes
    fresh), and the hub loaded with it too: evaluate.py, predict.py and the comparison's scores came
    from a freshly initialised head, with one warning line at most (none for missing weights)."""
    path = saved(damage(fine_tuned_on_rte), tmp_path)
    hub = RobertaHireModel.from_pretrained(str(path.parent), path.name, data_name_or_path=str(rte_bin))
    assert "sentence_classification_head" in hub.untrained_heads
    with pytest.raises(CheckpointError) as refused:
        hub.predict("sentence_classification_head", hub.encode("A premise.", "A hypothesis."))
    message = str(refused.value)
    assert str(path) in message and "classification_heads.sentence_classification_head." in message
    assert "\n" not in message
    command = [sys.executable, str(REPO / "scripts" / "evaluate.py"), str(path.parent), str(rte_bin),
               "--checkpoint", path.name, "--out", str(tmp_path / "scores.json")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    # the scripts ask for their head when loading: weights without any of it are refused there
    expected = ("its weights hold no 'sentence_classification_head' head" if damage is without_heads
                else "refusing to predict with head 'sentence_classification_head'")
    assert done.returncode == 2 and expected in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "scores.json").exists()
    # the caller registers the head again (to train it, or to load weights of its own): theirs to use
    hub.model.register_classification_head("sentence_classification_head", num_classes=2)
    assert hub.predict("sentence_classification_head", hub.encode("A premise.", "A hypothesis.")).shape == (1, 2)


def test_a_head_as_trained_and_one_registered_after_loading_predict(fine_tuned_on_rte, rte_bin, tmp_path):
    path = saved(fine_tuned_on_rte, tmp_path)
    hub = RobertaHireModel.from_pretrained(str(path.parent), path.name, data_name_or_path=str(rte_bin))
    assert hub.untrained_heads == {}
    tokens = hub.encode("A premise.", "A hypothesis.")
    assert hub.predict("sentence_classification_head", tokens).shape == (1, 2)
    hub.model.register_classification_head("mine", num_classes=3)  # the caller's own, to train
    assert hub.predict("mine", tokens).shape == (1, 3)
