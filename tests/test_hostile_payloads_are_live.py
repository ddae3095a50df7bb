"""The controls of tests/test_checkpoint_safety.py: every hostile payload is live. Loaded the
unsafe way (torch.load with weights_only=False), or by plain fairseq without the plugin, it
creates its marker file; without these a refusal test would also pass where nothing ever
reached the payload."""
import copy
import itertools
import os
import subprocess
import sys

import pytest
import torch

import hostile_checkpoints as hostile
from test_checkpoint_safety import (FORCE, INTERPOLATION_VARIANTS, PICKLE_VARIANTS,  # noqa: F401  (fixtures)
                                    fine_tuned_state, force_unsafe_loading_everywhere, hostile_file, lm_data)


def test_every_pickled_payload_is_live_when_loaded_unsafely(fine_tuned_state, tmp_path, lm_data):
    for name, format_name in itertools.product(PICKLE_VARIANTS, hostile.FORMATS):
        path, marker = hostile_file(name, format_name, fine_tuned_state, tmp_path, lm_data)
        try:
            torch.load(path, weights_only=False)
        except Exception:  # some payloads break the rest of the load after they ran
            pass
        assert marker.exists(), f"control: {name} ({format_name}) never ran, so its test proves nothing"
        marker.unlink()


def with_fairseqs_own_task(state):
    """The checkpoint as a run of fairseq's own sentence_prediction task writes it: plain fairseq,
    without the plugin, knows no other (fine_tuned_state is a plugin run's)."""
    state = copy.deepcopy(state)
    assert state["cfg"]["task"]["_name"] == "sentence_prediction_hire"
    state["cfg"]["task"]["_name"] = "sentence_prediction"
    return state


EVALUATING_VARIANTS = ["architecture-that-evals", "attention-config-that-evals", "model-named-by-its-only-key",
                       "task-named-by-its-task-key"]


@pytest.mark.parametrize("name", EVALUATING_VARIANTS)
def test_configuration_payload_is_live_in_fairseq_without_the_plugin(name, fine_tuned_state, tmp_path, lm_data,
                                                                     rte_bin):
    """Plain fairseq (weights_only switched off, as users do to load the original checkpoints)
    builds what the configuration names, and evaluates the option: the marker appears. Without
    this control a refusal test would also pass where fairseq never reached the payload."""
    path, marker = hostile_file(name, "zip", with_fairseqs_own_task(fine_tuned_state), tmp_path, lm_data)
    # the data of the task it names
    data = lm_data if name in ("architecture-that-evals", "model-named-by-its-only-key") else rte_bin
    code = ("import sys; from fairseq import checkpoint_utils; "
            "checkpoint_utils.load_model_ensemble_and_task([sys.argv[1]], arg_overrides={'data': sys.argv[2]})")
    result = subprocess.run([sys.executable, "-c", code, str(path), str(data)], capture_output=True, text=True,
                            env={**os.environ, **FORCE}, cwd=tmp_path)
    assert marker.exists(), (f"control: {name} never ran in plain fairseq, so its refusal test proves nothing: "
                             + result.stderr[-1500:])


def test_interpolation_payloads_are_live_in_fairseq_without_the_plugin(fine_tuned_state, tmp_path, lm_data, rte_bin):
    """The same control for the payloads OmegaConf's resolution carries (all in one process:
    its start is most of the cost)."""
    evaluating = INTERPOLATION_VARIANTS[:4]  # the last one reads the environment: no code to run
    base = with_fairseqs_own_task(fine_tuned_state)
    files = [hostile_file(name, "zip", base, tmp_path / name, lm_data) for name in evaluating]
    code = ("import sys; from fairseq import checkpoint_utils\n"
            "for path in sys.argv[2:]:\n"
            "    try: checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides={'data': sys.argv[1]})\n"
            "    except Exception as error: print(path, type(error).__name__, error, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code, str(rte_bin), *(str(path) for path, _ in files)],
                            capture_output=True, text=True, env={**os.environ, **FORCE}, cwd=tmp_path)
    for name, (_, marker) in zip(evaluating, files):
        assert marker.exists(), (f"control: {name} never ran in plain fairseq, so its refusal test proves nothing: "
                                 + result.stderr[-1500:])
