"""A checkpoint's configuration is checked exactly as fairseq reads it: no OmegaConf
interpolation anywhere (fairseq would resolve it into what the check does not see), sections
that are mappings, and a configuration fairseq cannot read refused in one line.

Every loader meets the interpolation payloads in tests/test_checkpoint_safety.py (the shared
variants of tests/hostile_checkpoints.py); here are the forms one by one, what fairseq's own
saving writes (no interpolation, so nothing legitimate is refused), and the args of the
original format, whose strings fairseq passes through ast.literal_eval and Hydra."""
import argparse
import copy
import os
import sys

import pytest
import torch

import fairseq_hire  # noqa: F401  (registers roberta_hire)
from conftest import GPT2_BPE
from fairseq_hire.tasks.sentence_prediction_hire import SentencePredictionHireTask
from fairseq_hire.checkpoints.configuration import INTERPOLATION, strings
from fairseq_hire.checkpoints.errors import UnsafeConfigError
from fairseq_hire.checkpoints.loading import load_state, safe_torch_load
from roberta_checkpoints import write_original_roberta_checkpoint
from test_checkpoint_shapes import data_dir, fine_tuned  # noqa: F401  (fixtures)

pytestmark = pytest.mark.unit

PROBE = "FAIRSEQ_HIRE_INTERPOLATION_PROBE"


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """The original release format (args Namespace of a masked_lm run)."""
    path = tmp_path_factory.mktemp("original") / "model.pt"
    write_original_roberta_checkpoint(path, GPT2_BPE / "dict.txt")
    return safe_torch_load(path)


def plain(state):
    """A copy whose cfg.model and cfg.task are plain dicts, as a hand-written cfg holds them."""
    state = copy.deepcopy(state)
    for name in ("model", "task"):
        if isinstance(state["cfg"][name], argparse.Namespace):
            state["cfg"][name] = dict(vars(state["cfg"][name]))
    return state


def refusal(state, tmp_path) -> str:
    path = tmp_path / "checkpoint_best.pt"
    torch.save(state, path)
    with pytest.raises(UnsafeConfigError) as refused:
        load_state(path)
    message = str(refused.value)
    assert "\n" not in message and str(path) in message
    return message


def test_checkpoints_fairseq_writes_hold_no_interpolation(fine_tuned, original, tmp_path):
    """fairseq-train (and fairseq-hydra-train) resolve the configuration when a run starts, and
    the trainer saves it resolved: refusing every interpolation refuses no checkpoint of theirs."""
    for state in (fine_tuned, original):
        assert not [where for where, text in strings(state.get("cfg"), "cfg") if INTERPOLATION in text]
        assert not [where for where, text in strings(state.get("args"), "args", evaluate=True) if INTERPOLATION in text]
        path = tmp_path / "legitimate.pt"
        torch.save(state, path)
        load_state(path)


@pytest.mark.parametrize("section, field, value", [
    ("model", "encoder", "${payload}"),
    ("model", "encoder", "${oc.create:{xformers_att_config: 'None'}}"),
    ("model", "dropout", "${oc.decode:'0.1'}"),
    ("task", "classification_head_name", "${oc.env:HOME}"),
    ("task", "classification_head_name", "head-${oc.env:HOME}"),  # inside a longer string
    ("common", "user_dir", ["fairseq_hire", "${oc.env:HOME}"]),  # inside a list
    ("criterion", "classification_head_name", "${task.classification_head_name}"),  # even between keys
    ("task", "${oc.env:HOME}", "a key"),  # and in a key
])
def test_every_interpolation_is_refused_naming_its_field(section, field, value, fine_tuned, tmp_path):
    state = plain(fine_tuned)
    state["cfg"][section][field] = value
    message = refusal(state, tmp_path)
    assert f"cfg.{section}.{field}" in message and "no OmegaConf interpolation" in message


@pytest.mark.parametrize("section", ["model", "task", "common", "bpe", "criterion", "tokenizer"])
def test_a_whole_section_as_an_interpolation_is_refused(section, fine_tuned, tmp_path):
    """cfg.model = "${payload}" would let any architecture through a check that skipped
    sections that are not mappings."""
    state = plain(fine_tuned)
    state["cfg"]["payload"] = {"_name": "transformer_lm"}
    state["cfg"][section] = "${payload}"
    assert f"cfg.{section} = '${{payload}}'" in refusal(state, tmp_path)


@pytest.mark.parametrize("section, value", [("model", "transformer_lm"), ("task", ["masked_lm"]), ("common", 3)])
def test_sections_that_are_not_mappings_are_refused(section, value, fine_tuned, tmp_path):
    state = plain(fine_tuned)
    state["cfg"][section] = value
    assert "a section (a mapping of options)" in refusal(state, tmp_path)


@pytest.mark.parametrize("cfg, args, expected", [("${payload}", None, "a mapping of configuration sections"),
                                                 (None, "${payload}", "a Namespace of options")])
def test_a_configuration_that_is_not_a_mapping_is_refused(cfg, args, expected, fine_tuned, tmp_path):
    assert expected in refusal({**fine_tuned, "cfg": cfg, "args": args}, tmp_path)


@pytest.fixture
def probe_resolver():
    """A resolver that records each call: a check that resolves what it checks calls it."""
    from omegaconf import OmegaConf

    calls = []
    OmegaConf.register_new_resolver("hire_probe", lambda value: calls.append(value) or "resolved", replace=True)
    yield calls
    OmegaConf.clear_resolver("hire_probe")


@pytest.mark.parametrize("where, value", [
    ("cfg.task.extra.items[0]", lambda o: o.create({"items": ["${hire_probe:a}"]})),  # iterating a list resolves it
    ("cfg.task.extra[1]", lambda o: o.create(["x", "${hire_probe:a}"])),
    ("cfg.task.extra", lambda o: __import__("omegaconf").ListConfig(content="${hire_probe:a}")),
    ("cfg.task.extra", lambda o: __import__("omegaconf").DictConfig(content="${hire_probe:a}")),
    ("cfg.task", lambda o: __import__("omegaconf").DictConfig(content="${hire_probe:a}")),  # a whole section
])
def test_interpolations_inside_omegaconf_containers_are_refused_unresolved(where, value, fine_tuned, tmp_path,
                                                                            probe_resolver):
    """The check walked omegaconf lists by iterating them, which resolves their interpolations (the
    check then saw the resolved text, and passed it); a DictConfig whose content is an
    interpolation was a traceback (AttributeError: 'str' object has no attribute 'items')."""
    from omegaconf import OmegaConf

    state = plain(fine_tuned)
    if where == "cfg.task":
        state["cfg"]["task"] = value(OmegaConf)
    else:
        state["cfg"]["task"]["extra"] = value(OmegaConf)
    message = refusal(state, tmp_path)
    assert f"field {where} = " in message and not probe_resolver


def nested(depth: int, leaf, kind):
    value = leaf
    for _ in range(depth):
        value = {"a": value} if kind == "dict" else [value]
    return value


@pytest.mark.parametrize("section, kind", [("task", "dict"), ("model", "dict"), ("task", "list"), ("model", "list")])
def test_a_configuration_nested_deeper_than_python_recurses_is_refused_in_one_line(section, kind, fine_tuned,
                                                                                    tmp_path):
    """RecursionError was a traceback from the check (and from copying the model section)."""
    from fairseq_hire.checkpoints.loading import load_checkpoint_to_cpu

    state = plain(fine_tuned)
    state["cfg"][section]["deep"] = nested(5000, "x", kind)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(50_000)  # for torch.save's pickler only
    try:
        torch.save(state, tmp_path / "deep.pt")
    finally:
        sys.setrecursionlimit(limit)
    for load in (load_state, load_checkpoint_to_cpu):
        with pytest.raises(UnsafeConfigError) as refused:
            load(tmp_path / "deep.pt")
        assert "\n" not in str(refused.value) and str(tmp_path / "deep.pt") in str(refused.value)


def test_an_interpolation_in_the_original_formats_args_is_refused(original, tmp_path):
    """fairseq converts args to its Hydra config through override strings, which Hydra
    resolves: an interpolation there is read as one."""
    state = copy.deepcopy(original)
    state["args"].sample_break_mode = "${oc.env:HOME}"
    assert "args.sample_break_mode" in refusal(state, tmp_path)


SMUGGLED = "'$' '{oc.env:" + PROBE + "}'"  # ast.literal_eval makes it "${oc.env:...}"


def test_interpolation_smuggled_through_literal_eval_is_live_in_fairseq(original, monkeypatch):
    """Control: fairseq literal_evals an args string of an option that is not a string, and
    Hydra resolves what comes out: common.log_interval (no model or task option, so no type of
    its own is checked) is read from the environment."""
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    monkeypatch.setenv(PROBE, "7")
    args = copy.deepcopy(original["args"])
    args.log_interval = SMUGGLED
    assert convert_namespace_to_omegaconf(args).common.log_interval == 7


def test_interpolation_smuggled_through_literal_eval_is_refused(original, tmp_path):
    state = copy.deepcopy(original)
    state["args"].log_interval = SMUGGLED
    assert "args.log_interval" in refusal(state, tmp_path)


def test_a_refused_value_is_shown_cut_short(fine_tuned, tmp_path):
    state = plain(fine_tuned)
    state["cfg"]["task"]["classification_head_name"] = "${oc.env:HOME}" + "x" * 5_000_000
    message = refusal(state, tmp_path)
    assert len(message) < 1000 and "characters)" in message


def test_args_fairseq_cannot_read_are_refused_in_one_line(original, tmp_path, capsys):
    """An args string fairseq's conversion passes to ast.literal_eval, nested deeper than
    Python parses: a one-line refusal from every loader, not a traceback (the safe loader, and
    fairseq's checkpoint_utils as a plugin run's trainer calls it)."""
    from fairseq import checkpoint_utils

    from fairseq_hire.checkpoints import architecture, loading, saving

    state = copy.deepcopy(original)
    state["args"].batch_size = "(" * 300 + ")" * 300
    path = tmp_path / "model.pt"
    torch.save(state, path)
    saving.install(SentencePredictionHireTask)
    for load in (loading.load_checkpoint_to_cpu, checkpoint_utils.load_checkpoint_to_cpu):
        with pytest.raises(UnsafeConfigError, match="fairseq cannot read its configuration") as refused:
            with saving.plugin_checkpoints():
                load(str(path))
        assert "\n" not in str(refused.value)
    assert architecture.main([str(path)]) == 0  # it reads args itself, without fairseq's conversion


def test_evaluate_refuses_args_fairseq_cannot_read_without_a_traceback(original, rte_bin, tmp_path):
    import subprocess

    from conftest import REPO

    state = copy.deepcopy(original)
    state["args"].batch_size = "(" * 300 + ")" * 300
    torch.save(state, tmp_path / "model.pt")
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "evaluate.py"), str(tmp_path), str(rte_bin),
                             "--checkpoint", "model.pt"], capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 2, result.stderr[-2000:]
    assert "fairseq cannot read its configuration" in result.stderr and "Traceback" not in result.stderr
