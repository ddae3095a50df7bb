"""Hostile checkpoints for tests/test_checkpoint_safety.py: each one, loaded unsafely, creates
a marker file; loaded through the plugin, it must be refused with the marker never created.

Pickle-level payloads (the file unpickles code) hide at the top level, inside args, inside
extra_state and optimizer_history, as a defaultdict's factory, inside a numpy object array
and behind a tensor-rebuild function; config-level payloads are clean pickles whose
configuration makes fairseq run code (an architecture that evaluates an option), or names
what this plugin does not build (another task, a user_dir, a BPE, a string where an integer
belongs). Interpolation payloads are clean Hydra-era configurations whose strings fairseq's
OmegaConf resolves into what the unresolved configuration does not show (``${payload}``,
``${oc.create:...}``, ``${oc.env:...}``). Size payloads name dimensions their weights do not
have (an FFN of 2**31), so that building the model allocates what they name. Every variant
exists in torch's zip format and in the legacy format of the original releases.
"""
import argparse
import collections
import copy
import os
from pathlib import Path

import numpy as np
import torch

FORMATS = {"zip": True, "legacy": False}


class SystemPayload:
    """os.system("touch marker") when unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))

    def __call__(self):  # so that it can stand as a defaultdict factory
        return None


class ExecPayload(SystemPayload):
    """exec(...) creating the marker when unpickled."""

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


class TensorRebuildPayload(SystemPayload):
    """A tensor "rebuilt" by torch's own _rebuild_from_type_v2, whose function is os.system."""

    def __reduce__(self):
        return (torch._tensor._rebuild_from_type_v2, (os.system, torch.Tensor, (f"touch {self.marker}",), None))


def config_section(state):
    """The mutable place a state keeps its model options: args, or cfg["model"]."""
    if state.get("args") is not None:
        return state["args"]
    model = state["cfg"]["model"]
    return model if isinstance(model, argparse.Namespace) else argparse.Namespace(**model)


def pickle_variants(base: dict, marker: Path) -> dict:
    """name -> a copy of base with a pickled payload somewhere in it."""
    def variant(change):
        state = copy.deepcopy(base)
        change(state)
        return state

    def into_args(state):
        if state.get("args") is not None:
            state["args"].payload = SystemPayload(marker)
        else:
            state["cfg"]["common"]["payload"] = SystemPayload(marker)

    return {
        "top-level": variant(lambda s: s.update(payload=ExecPayload(marker))),
        "inside-args": variant(into_args),
        "inside-extra-state": variant(lambda s: s["extra_state"].update(payload=SystemPayload(marker))),
        "inside-optimizer-history": variant(lambda s: s["optimizer_history"][-1].update(payload=ExecPayload(marker))),
        "defaultdict-factory": variant(lambda s: s["extra_state"].update(
            payload=collections.defaultdict(SystemPayload(marker)))),
        "numpy-object-array": variant(lambda s: s["extra_state"].update(
            payload=np.array([ExecPayload(marker), 1], dtype=object))),
        "tensor-rebuild": variant(lambda s: s["model"].update(payload=TensorRebuildPayload(marker))),
    }


def eval_config_state(data_dir: Path, marker: Path) -> dict:
    """A clean pickle of a transformer_lm whose --character-filters fairseq passes to eval()
    when it builds the model: the marker is created by building it."""
    from fairseq import options

    code = f"__import__('pathlib').Path({str(marker)!r}).touch() or [(1, 4)]"
    args = options.parse_args_and_arch(options.get_training_parser(), [
        str(data_dir), "--task", "language_modeling", "--arch", "transformer_lm", "--character-embeddings",
        "--character-filters", code, "--decoder-layers", "1", "--decoder-embed-dim", "8",
        "--decoder-ffn-embed-dim", "8", "--decoder-attention-heads", "1", "--cpu",
    ])
    return {"args": args, "model": {}, "extra_state": {"epoch": 1}, "last_optimizer_state": None,
            "optimizer_history": [{"criterion_name": "CrossEntropyCriterion", "optimizer_name": "FairseqAdam",
                                   "lr_scheduler_state": {"best": None}, "num_updates": 0}]}


def config_variants(base: dict, data_dir: Path, marker: Path, user_dir: Path) -> dict:
    """name -> a clean pickle whose configuration is refused."""
    def variant(field, value):
        state = copy.deepcopy(base)
        section = config_section(state)
        setattr(section, field, value)
        if state.get("args") is None:
            state["cfg"]["model"] = section
        return state

    write_plugin_that_creates(user_dir, marker)
    state_with_user_dir = copy.deepcopy(base)
    if state_with_user_dir.get("args") is not None:
        state_with_user_dir["args"].user_dir = str(user_dir)
    else:
        state_with_user_dir["cfg"]["common"]["user_dir"] = str(user_dir)
    return {
        "architecture-that-evals": eval_config_state(data_dir, marker),
        "string-where-an-integer-belongs": variant("encoder_layers", f"__import__('os').system('touch {marker}')"),
        "activation-that-adds-flags": variant("activation_fn", "gelu --user-dir /tmp/elsewhere"),
        "foreign-user-dir": state_with_user_dir,
        "foreign-architecture-name": variant("arch", "transformer"),
        "attention-config-that-evals": attention_config_that_evals(variant, marker),
        "model-named-by-its-only-key": model_named_by_its_key(base, data_dir, marker),
        "task-named-by-its-task-key": task_named_by_its_task_key(base, marker),
        # fairseq merges task_state into the task before building the model (head_classes.py)
        "task-state-that-is-not-a-dict": {**copy.deepcopy(base), "task_state": [("hire_head_classes", ["0", "1"])]},
        "head-classes-that-are-not-names": {**copy.deepcopy(base), "task_state": {"hire_head_classes": [0, 1]}},
        **interpolation_variants(base, marker),
        **size_variants(base, variant),
    }


def touch(marker: Path) -> str:
    """Python that creates the marker and evaluates to None."""
    return f"__import__('pathlib').Path({str(marker)!r}).touch()"


def with_plain_cfg(base: dict, change) -> dict:
    """A copy of a Hydra-era state whose cfg sections are plain dicts (a clean pickle), changed."""
    state = copy.deepcopy(base)
    cfg = state["cfg"]
    for name in ("model", "task"):
        if isinstance(cfg.get(name), argparse.Namespace):
            cfg[name] = dict(vars(cfg[name]))
    change(cfg)
    return state


def interpolation_variants(base: dict, marker: Path) -> dict:
    """Configurations whose payload only shows once OmegaConf resolves them, as fairseq does when
    it builds the model: an ``encoder`` section that carries an xformers_att_config, which
    RoBERTa's attention layers eval(); a whole model or task section replaced by another
    architecture (transformer_lm eval()s character_filters) or task (multilingual_translation
    eval()s left_pad_source); an option read from the environment. Hydra-era states only (the
    original format's args Namespace is no OmegaConf container)."""
    if base.get("cfg") is None:
        return {}

    # on plain roberta_base, so that fairseq without the plugin builds it too
    def encoder_from_payload(cfg):
        cfg["model"].update(encoder="${payload}", arch="roberta_base", _name="roberta_base")
        cfg["payload"] = {"xformers_att_config": touch(marker)}

    def encoder_from_oc_create(cfg):
        cfg["model"].update(encoder='${oc.create:{xformers_att_config: "' + touch(marker) + '"}}',
                            arch="roberta_base", _name="roberta_base")

    def model_from_payload(cfg):
        cfg["model"] = "${payload}"
        cfg["payload"] = {"_name": "transformer_lm", "character_embeddings": True,
                          "character_filters": touch(marker) + " or [(1, 4)]", "decoder_layers": 1,
                          "decoder_embed_dim": 8, "decoder_ffn_embed_dim": 8, "decoder_attention_heads": 1,
                          "max_target_positions": 64, "tokens_per_sample": 64}

    def task_from_payload(cfg):
        cfg["payload"] = {**cfg["task"], "task": "multilingual_translation", "lang_pairs": "a-b",
                          "left_pad_source": touch(marker) + " or 'True'"}
        cfg["task"] = "${payload}"

    return {
        "interpolated-attention-config": with_plain_cfg(base, encoder_from_payload),
        "attention-config-from-oc-create": with_plain_cfg(base, encoder_from_oc_create),
        "interpolated-model-section": with_plain_cfg(base, model_from_payload),
        "interpolated-task-section": with_plain_cfg(base, task_from_payload),
        "task-option-from-the-environment": with_plain_cfg(
            base, lambda cfg: cfg["task"].update(classification_head_name="${oc.env:HOME}")),
    }


def with_task_option(base: dict, name: str, value) -> dict:
    """A copy of base whose task section (args, or cfg.task) sets name to value."""
    if base.get("args") is not None:
        state = copy.deepcopy(base)
        setattr(state["args"], name, value)
        return state
    return with_plain_cfg(base, lambda cfg: cfg["task"].update({name: value}))


HUGE = 2 ** 31  # an FFN, class count or head size fairseq would allocate (x 4 bytes x the embed dim)


def size_variants(base: dict, variant) -> dict:
    """Configurations that name sizes their weights do not have: building the model allocates
    hundreds of GiB before load_state_dict could notice (no marker: the effect is the
    allocation, which the tests bound)."""
    def expanded_weights():
        """The FFN's weights as views of one number: their shapes match the configuration, yet
        they add 4 bytes each to the file."""
        state = variant("encoder_ffn_embed_dim", HUGE)
        model = state["model"]
        for key in [k for k in model if k.endswith((".fc1.weight", ".fc1.bias", ".fc2.weight"))]:
            shape = list(model[key].shape)
            shape[1 if key.endswith(".fc2.weight") else 0] = HUGE
            model[key] = torch.zeros(1, dtype=model[key].dtype).expand(*shape)
        return state

    return {
        "ffn-dim-that-allocates": variant("encoder_ffn_embed_dim", HUGE),
        "ffn-dim-under-another-name": variant("ffn_embed_dim", HUGE),
        "expanded-weights-that-allocate": expanded_weights(),
        "head-size-that-allocates": variant("hire_gru_dim", 2 ** 20),
        "classes-that-allocate": with_task_option(base, "num_classes", HUGE),
    }


def attention_config_that_evals(variant, marker: Path) -> dict:
    """RoBERTa's attention layers eval() --encoder-xformers-att-config, which its parser never
    declares; on plain roberta_base, so that fairseq without the plugin builds it too."""
    state = variant("encoder_xformers_att_config", f"__import__('os').system('touch {marker}') and None")
    section = config_section(state)
    section.arch = section._name = "roberta_base"
    return state


def model_named_by_its_key(base: dict, data_dir: Path, marker: Path) -> dict:
    """fairseq builds the model a cfg.model section's only key names when it has no _name (on a
    task that adds nothing to the section: masked_lm)."""
    state = copy.deepcopy(base)
    state["args"] = None
    state["cfg"] = state.get("cfg") or {}
    code = f"__import__('pathlib').Path({str(marker)!r}).touch() or [(1, 4)]"
    state["cfg"]["model"] = {"transformer_lm": {
        "character_embeddings": True, "character_filters": code, "decoder_layers": 1, "decoder_embed_dim": 8,
        "decoder_ffn_embed_dim": 8, "decoder_attention_heads": 1, "max_target_positions": 64, "tokens_per_sample": 64}}
    state["cfg"]["task"] = {"_name": "masked_lm", "data": str(data_dir)}
    return state


def task_named_by_its_task_key(base: dict, marker: Path) -> dict:
    """fairseq's setup_task prefers cfg.task.task; multilingual_translation eval()s left_pad_source."""
    state = copy.deepcopy(base)
    state["cfg"] = state.get("cfg") or {}
    task = state["cfg"].get("task") or {}
    task = dict(vars(task) if isinstance(task, argparse.Namespace) else task)
    task.update(task="multilingual_translation", lang_pairs="a-b",
                left_pad_source=f"__import__('os').system('touch {marker}') or 'True'")
    state["cfg"]["task"] = task
    return state


def write_plugin_that_creates(user_dir: Path, marker: Path) -> None:
    user_dir.mkdir(parents=True, exist_ok=True)
    (user_dir / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")


def save(state: dict, path: Path, format_name: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path, _use_new_zipfile_serialization=FORMATS[format_name])
    return path
