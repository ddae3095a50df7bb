"""No checkpoint runs code on any path, and legitimate old checkpoints load.

Every hostile checkpoint of tests/hostile_checkpoints.py goes through every loader: the safe
loader itself, fairseq's checkpoint_utils as the trainer of a plugin run calls it, fairseq's
model loading handed the safe loader's state (as the hub does), the hub, scripts/evaluate.py,
scripts/glue_submission.py, checkpoint_args, the converter, and fairseq-train running the
plugin's task with --finetune-from-model, --restore-file and a resumed checkpoint_last.pt,
also with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1. Each must be refused with a message that says
why, and the payload's marker file must never appear. The controls that show every payload is
live (loaded the unsafe way, it creates its marker): tests/test_hostile_payloads_are_live.py.
"""
import itertools
import os
import pickle
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import hostile_checkpoints as hostile
from conftest import GPT2_BPE, REPO
from fairseq_hire.tasks.sentence_prediction_hire import SentencePredictionHireTask
from fairseq_hire import RobertaHireModel
from fairseq_hire.checkpoints import architecture, loading, saving
from fairseq_hire.checkpoints.errors import (CheckpointError, CorruptCheckpointError, UnsafeCheckpointError,
                                            UnsafeConfigError)
from fairseq_hire.checkpoints.loading import load_state, safe_torch_load
from fairseq_hire.checkpoints.saving import repair_last_checkpoint
from fairseq_hire.workflow.evaluation import write_submission
from fairseq_setup import build_trainer, finetune_args, save
from test_end_to_end import train_command

FORCE = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
PICKLE_VARIANTS = ["top-level", "inside-args", "inside-extra-state", "inside-optimizer-history",
                   "defaultdict-factory", "numpy-object-array", "tensor-rebuild"]
INTERPOLATION_VARIANTS = ["interpolated-attention-config", "attention-config-from-oc-create",
                          "interpolated-model-section", "interpolated-task-section",
                          "task-option-from-the-environment"]
SIZE_VARIANTS = ["ffn-dim-that-allocates", "ffn-dim-under-another-name", "expanded-weights-that-allocate",
                 "head-size-that-allocates", "classes-that-allocate"]
CONFIG_VARIANTS = ["architecture-that-evals", "attention-config-that-evals", "model-named-by-its-only-key",
                   "task-named-by-its-task-key", "string-where-an-integer-belongs", "activation-that-adds-flags",
                   "foreign-user-dir", "foreign-architecture-name", "task-state-that-is-not-a-dict",
                   "head-classes-that-are-not-names", *INTERPOLATION_VARIANTS, *SIZE_VARIANTS]
# a configuration is read the same from either format: the newer variants in the zip format only,
# but for the weights that are views, which each format stores its own way
CONFIG_CASES = [(name, format_name) for name, format_name in itertools.product(CONFIG_VARIANTS, hostile.FORMATS)
                if format_name == "zip" or name not in INTERPOLATION_VARIANTS + SIZE_VARIANTS
                or name == "expanded-weights-that-allocate"]


@pytest.fixture(autouse=True)
def force_unsafe_loading_everywhere(monkeypatch):
    """Every test here runs with the variable that used to switch the protection off."""
    for name, value in FORCE.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def bounded_memory():
    """A size payload that gets through allocates what it names: with this limit on the address
    space (inherited by subprocesses) that fails at once instead of exhausting the machine. It is
    far above what loading a tiny model takes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    in_use = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    limit = in_use + 16 * 2 ** 30
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.fixture(scope="module")
def fine_tuned_state(rte_bin, tmp_path_factory):
    """A roberta_hire checkpoint as fairseq-train writes it (cfg, not args), for RTE."""
    trainer = build_trainer(finetune_args(rte_bin))
    path = tmp_path_factory.mktemp("fine-tuned") / "checkpoint_best.pt"
    save(trainer, path, {"epoch": 1, "best": np.float64(55.0)})
    return safe_torch_load(path)


@pytest.fixture(scope="module")
def pretrained_state(tiny_pretrained):
    """The original release format (args Namespace of a masked_lm run)."""
    return safe_torch_load(tiny_pretrained)


@pytest.fixture
def lm_data(tmp_path):
    data = tmp_path / "lm-data"
    data.mkdir()
    shutil.copy(GPT2_BPE / "dict.txt", data / "dict.txt")
    return data


def hostile_file(name, format_name, base, tmp_path, lm_data):
    """(checkpoint path, marker) of one variant; the marker does not exist yet."""
    marker = tmp_path / f"payload-ran-{name}-{format_name}"
    variants = {**hostile.pickle_variants(base, marker),
                **hostile.config_variants(base, lm_data, marker, tmp_path / "evil_plugin")}
    path = hostile.save(variants[name], tmp_path / "hostile" / "checkpoint_best.pt", format_name)
    assert not marker.exists()
    return path, marker


# ------------------------------------------------------------------ the in-process loaders


def via_safe_loader(path, data, tmp_path):
    load_state(path)


def via_fairseq_checkpoint_utils(path, data, tmp_path):
    """fairseq's load_checkpoint_to_cpu as a plugin run's trainer calls it: within the run's
    checkpoint hooks (a run of the plugin's task installs them)."""
    from fairseq import checkpoint_utils

    saving.install(SentencePredictionHireTask)
    with saving.plugin_checkpoints():
        checkpoint_utils.load_checkpoint_to_cpu(str(path))


def via_fairseq_model_loading(path, data, tmp_path):
    """fairseq's model loading handed the safe loader's state, as the hub hands it."""
    from fairseq import checkpoint_utils

    overrides = {"data": str(data)}
    state = loading.load_checkpoint_to_cpu(str(path), overrides)
    checkpoint_utils.load_model_ensemble_and_task([str(path)], arg_overrides=overrides, state=state)


def via_hub(path, data, tmp_path):
    RobertaHireModel.from_pretrained(str(path.parent), path.name, data_name_or_path=str(data))


def via_evaluate(path, data, tmp_path):
    from fairseq_hire.workflow.evaluation import main

    assert main([str(path.parent), str(data), "--checkpoint", path.name]) == 2
    raise CheckpointError("evaluate refused")


def via_glue_submission(path, data, tmp_path):
    write_submission([(path.parent, data)], tmp_path / "submission", checkpoint_file=path.name, allow_partial=True)


def via_checkpoint_args(path, data, tmp_path):
    assert architecture.main([str(path)]) == 2
    raise CheckpointError("checkpoint_args refused")


def via_converter(path, data, tmp_path):
    from fairseq_hire.conversion import ConversionError, load_pytorch_bin

    try:
        load_pytorch_bin(path)
    except ConversionError as error:
        raise CheckpointError(str(error)) from None


LOADERS = [via_safe_loader, via_fairseq_checkpoint_utils, via_fairseq_model_loading, via_hub, via_evaluate,
           via_glue_submission, via_checkpoint_args, via_converter]


@pytest.mark.parametrize("loader", LOADERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("format_name", hostile.FORMATS)
@pytest.mark.parametrize("name", PICKLE_VARIANTS)
@pytest.mark.parametrize("base", ["fine-tuned", "pretrained"])
def test_pickled_payloads_are_refused_by_every_loader(base, name, format_name, loader, request, tmp_path, lm_data,
                                                      rte_bin, capsys):
    state = request.getfixturevalue(f"{base.replace('-', '_')}_state")
    path, marker = hostile_file(name, format_name, state, tmp_path, lm_data)
    with pytest.raises(CheckpointError):
        loader(path, rte_bin, tmp_path)
    assert not marker.exists(), f"{name} ran through {loader.__name__}"
    if loader in (via_evaluate, via_checkpoint_args):
        message = capsys.readouterr().err
        assert "refusing to load checkpoint" in message and "weights_only=False" not in message


@pytest.mark.parametrize("loader", [f for f in LOADERS if f is not via_converter], ids=lambda f: f.__name__)
@pytest.mark.parametrize("name, format_name", CONFIG_CASES)
def test_configuration_payloads_are_refused_before_any_model_code_runs(name, format_name, loader, tmp_path,
                                                                       lm_data, rte_bin, fine_tuned_state,
                                                                       pretrained_state, capsys, bounded_memory):
    base = fine_tuned_state if name != "foreign-user-dir" else pretrained_state
    path, marker = hostile_file(name, format_name, base, tmp_path, lm_data)
    with pytest.raises((UnsafeConfigError, CheckpointError)) as refused:
        loader(path, rte_bin, tmp_path)
    assert not marker.exists(), f"{name} ran through {loader.__name__}"
    message = str(refused.value) + capsys.readouterr().err
    assert "configuration field" in message or "refused" in message


# ------------------------------------------------------------------ fairseq-train and the scripts


def fairseq_train(mode, hostile_path, rte_bin, tiny_pretrained, save_dir):
    command = train_command(rte_bin, hostile_path, save_dir)
    if mode != "restore-file":
        start = command.index("--restore-file")
        del command[start:start + 5]  # --restore-file X --reset-optimizer --reset-dataloader --reset-meters
        source = hostile_path if mode == "finetune-from-model" else tiny_pretrained
        command += ["--finetune-from-model", str(source)]
    if mode == "resume":
        save_dir.mkdir(parents=True)
        shutil.copy(hostile_path, save_dir / "checkpoint_last.pt")
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env={**os.environ, **FORCE})


TRAIN_CONFIG_VARIANTS = ["architecture-that-evals", "attention-config-that-evals", "string-where-an-integer-belongs"]
TRAIN_CASES = [("top-level", "zip", "fine-tuned"), ("inside-extra-state", "legacy", "pretrained"),
               ("head-classes-that-are-not-names", "zip", "fine-tuned"),
               ("architecture-that-evals", "zip", "fine-tuned"), ("attention-config-that-evals", "zip", "fine-tuned")]


@pytest.mark.parametrize("mode", ["finetune-from-model", "restore-file", "resume"])
@pytest.mark.parametrize("name, format_name, base", TRAIN_CASES)
def test_fairseq_train_refuses_hostile_checkpoints(name, format_name, base, mode, request, rte_bin,
                                                   tiny_pretrained, tmp_path, lm_data):
    state = request.getfixturevalue(f"{base.replace('-', '_')}_state")
    path, marker = hostile_file(name, format_name, state, tmp_path, lm_data)
    result = fairseq_train(mode, path, rte_bin, tiny_pretrained, tmp_path / "save")
    assert result.returncode != 0, "fairseq-train went on with a hostile checkpoint"
    assert "refusing to load checkpoint" in result.stdout + result.stderr
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["finetune-from-model", "restore-file", "resume"])
@pytest.mark.parametrize("name, format_name, base", [
    *((name, format_name, "pretrained")
      for name, format_name in itertools.product(PICKLE_VARIANTS + TRAIN_CONFIG_VARIANTS, hostile.FORMATS)),
    *((name, "zip", "fine-tuned") for name in INTERPOLATION_VARIANTS + SIZE_VARIANTS)])
def test_fairseq_train_refuses_every_hostile_checkpoint(name, format_name, base, mode, request, rte_bin,
                                                        tiny_pretrained, tmp_path, lm_data, bounded_memory):
    state = request.getfixturevalue(f"{base.replace('-', '_')}_state")
    path, marker = hostile_file(name, format_name, state, tmp_path, lm_data)
    result = fairseq_train(mode, path, rte_bin, tiny_pretrained, tmp_path / "save")
    assert result.returncode != 0
    assert "refusing to load checkpoint" in result.stdout + result.stderr
    assert not marker.exists()


@pytest.mark.parametrize("script", ["evaluate.py", "glue_submission.py", "predict.py"])
@pytest.mark.parametrize("name, format_name", [("inside-args", "legacy"), ("architecture-that-evals", "zip"),
                                               ("task-named-by-its-task-key", "zip"),
                                               ("head-classes-that-are-not-names", "zip"),
                                               ("interpolated-attention-config", "zip")])
def test_scripts_refuse_hostile_checkpoints(script, name, format_name, rte_bin, tmp_path, lm_data, fine_tuned_state,
                                            bounded_memory):
    path, marker = hostile_file(name, format_name, fine_tuned_state, tmp_path, lm_data)
    if script == "evaluate.py":
        arguments = [str(path.parent), str(rte_bin), "--checkpoint", path.name]
    elif script == "predict.py":
        arguments = [str(path.parent), str(rte_bin), str(REPO / "glue_prep" / "data" / "RTE" / "dev.tsv"),
                     "--out", str(tmp_path / "predictions.jsonl"), "--checkpoint", path.name]
    else:
        arguments = [str(tmp_path / "out"), "--task", str(path.parent), str(rte_bin), "--checkpoint", path.name]
    result = subprocess.run([sys.executable, str(REPO / "scripts" / script), *arguments], capture_output=True,
                            text=True, cwd=REPO, env={**os.environ, **FORCE})
    assert result.returncode == 2
    assert "refusing to load checkpoint" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()


# ------------------------------------------------------------------ legitimate checkpoints, bad files


def numpy1_legacy_checkpoint(pretrained_state, path: Path) -> Path:
    """The original release's format byte for byte: torch's legacy (pre-zip) serialisation,
    numpy scalars and arrays pickled under numpy 1.x's module names (numpy.core.multiarray),
    half-precision weights."""
    state = {**pretrained_state, "model": {k: v.half() for k, v in pretrained_state["model"].items()},
             "extra_state": {**pretrained_state["extra_state"], "best": np.float64(1.25), "seen": np.arange(3)}}
    hostile.save(state, path, "legacy")
    raw = path.read_bytes()
    numpy1 = raw.replace(b"cnumpy._core.multiarray\nscalar\n", b"cnumpy.core.multiarray\nscalar\n")
    numpy1 = numpy1.replace(b"cnumpy._core.multiarray\n_reconstruct\n", b"cnumpy.core.multiarray\n_reconstruct\n")
    assert b"cnumpy.core.multiarray\nscalar\n" in numpy1 and b"numpy._core" not in numpy1
    path.write_bytes(numpy1)
    return path


def test_numpy1_legacy_checkpoint_loads_through_every_loader(pretrained_state, rte_bin, tmp_path, lm_data):
    path = numpy1_legacy_checkpoint(pretrained_state, tmp_path / "roberta" / "model.pt")
    state = load_state(path)
    assert state["extra_state"]["best"] == 1.25 and state["extra_state"]["seen"].tolist() == [0, 1, 2]
    assert state["model"]["decoder.sentence_encoder.embed_tokens.weight"].dtype == torch.float16
    via_fairseq_checkpoint_utils(path, rte_bin, tmp_path)
    hub = RobertaHireModel.from_pretrained(str(path.parent), path.name, data_name_or_path=str(lm_data))
    assert hub.model.encoder.sentence_encoder.embed_tokens.weight.shape[0] == 50265
    assert architecture.main([str(path)]) == 0
    command = train_command(rte_bin, path, tmp_path / "save", "--max-update", "1")
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env={**os.environ, **FORCE})
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"Loaded checkpoint {path}" in result.stdout + result.stderr


@pytest.mark.parametrize("damage, expected", [
    (lambda raw: b"", "is empty"),
    (lambda raw: raw[: len(raw) // 2], "truncated"),
    (lambda raw: bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)), "not a PyTorch checkpoint"),
], ids=["empty", "truncated", "random-bytes"])
@pytest.mark.parametrize("format_name", hostile.FORMATS)
def test_corrupt_files_are_called_corrupt(damage, expected, format_name, pretrained_state, tmp_path):
    path = hostile.save(pretrained_state, tmp_path / "model.pt", format_name)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CorruptCheckpointError, match=expected if format_name == "zip" or expected != "truncated"
                       else "truncated or corrupt"):
        load_state(path)
    with pytest.raises(CorruptCheckpointError):
        via_fairseq_checkpoint_utils(path, None, tmp_path)


def test_contradictory_torch_variables_are_not_called_corrupt(pretrained_state, tmp_path, monkeypatch):
    """Both force variables set: torch refuses before reading the file. The file is intact, so a
    resume must not set it aside as corrupt."""
    monkeypatch.setenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "1")
    path = hostile.save(pretrained_state, tmp_path / "checkpoint_last.pt", "zip")
    with pytest.raises(CheckpointError, match="both TORCH_FORCE_WEIGHTS_ONLY_LOAD and") as refused:
        load_state(path)
    assert not isinstance(refused.value, CorruptCheckpointError)
    with pytest.raises(CheckpointError):
        repair_last_checkpoint(path, "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_last.pt"]


def test_refusal_names_the_object_and_gives_no_unsafe_advice(fine_tuned_state, tmp_path, lm_data):
    for name, reason in (("top-level", "GLOBAL exec"), ("inside-args", "GLOBAL posix.system"),
                         ("numpy-object-array", "numpy object array")):
        path, _ = hostile_file(name, "zip", fine_tuned_state, tmp_path, lm_data)
        with pytest.raises(UnsafeCheckpointError) as refused:
            load_state(path)
        message = str(refused.value)
        assert reason in message, message
        assert "weights_only=False" not in message and "Nothing from it was executed" in message
    assert isinstance(refused.value, pickle.UnpicklingError)


@pytest.mark.parametrize("task_state, field", [([("hire_head_classes", ["0", "1"])], "task_state ="),
                                               ({"hire_head_classes": "01"}, "task_state.hire_head_classes ="),
                                               ({"hire_head_classes": [0, 1]}, "task_state.hire_head_classes =")])
def test_a_task_state_that_is_not_what_the_task_reads_is_refused(task_state, field, fine_tuned_state, tmp_path):
    """fairseq merges task_state into the task before the model is built."""
    assert sorted(fine_tuned_state["task_state"]["hire_head_classes"]) == ["entailment", "not_entailment"]
    path = tmp_path / "checkpoint_best.pt"
    torch.save({**fine_tuned_state, "task_state": task_state}, path)
    with pytest.raises(UnsafeConfigError, match=f"its configuration field {field}"):
        load_state(path)
    torch.save(fine_tuned_state, path)
    load_state(path)
