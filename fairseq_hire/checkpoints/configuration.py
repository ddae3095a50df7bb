"""A checkpoint's configuration is input too: check it before fairseq acts on it.

fairseq builds whatever a checkpoint's ``args`` (original releases) or ``cfg`` (Hydra era)
names: any registered architecture and task, with their options, some of which other
architectures evaluate as Python (``transformer_lm``'s ``--character-filters`` goes
through ``eval``) or import (``user_dir``). A clean pickle can therefore still run code.

``check(state, path)`` runs before any model code does and refuses, naming the field:

* an OmegaConf interpolation (``${...}``) in any string of ``args`` or ``cfg``, at any depth
  (also one that an ``args`` string becomes under ``ast.literal_eval``, which fairseq applies
  to them before Hydra parses them): fairseq resolves them when it reads the configuration,
  into values and whole sections this check would not see, while the configurations fairseq
  saves hold none (fairseq-train and fairseq-hydra-train resolve theirs when a run starts). So
  the configuration checked is exactly the one fairseq reads;
* a ``cfg`` that is no mapping, or a section of it that is no mapping (nor none), and ``args``
  that are no Namespace; a configuration nested more than MAX_NESTING levels deep (omegaconf,
  copy and repr would stop on it with a traceback). omegaconf containers are read unresolved:
  iterating one resolves its interpolations;
* an architecture that is not a RoBERTa model (``roberta*``, ``roberta_hire*``: what the
  hub and this plugin build), and a task other than RoBERTa's (sentence_prediction, the
  plugin's sentence_prediction_hire, masked_lm, multilingual_masked_lm);
* an option fairseq evaluates as Python although RoBERTa's parser does not declare it
  (``*xformers_att_config``), at any depth, and a model section that names no architecture;
* a ``user_dir`` other than this plugin's, a BPE other than RoBERTa's (gpt2,
  sentencepiece, this plugin's hire_tokenizer);
* any model or task option whose value does not have the type, or is not one of the
  choices, that the architecture's own argument parser and the task's config accept
  (e.g. a string where an integer belongs). Options those models do not know are never
  read by them and are left alone, so checkpoints of older fairseq versions still load;
* a ``task_state`` that is not a dict, or whose head classes are not a list of names.
"""
import argparse
import ast
import contextlib
import dataclasses
import enum
import functools
import itertools
import math
import typing
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

from .errors import UnsafeConfigError

ALLOWED_MODELS = ("roberta", "roberta_hire")
SENTENCE_PREDICTION_TASKS = ("sentence_prediction", "sentence_prediction_hire")  # the second: the plugin's
ALLOWED_TASKS = (*SENTENCE_PREDICTION_TASKS, "masked_lm", "multilingual_masked_lm")
ALLOWED_BPE = ("gpt2", "sentencepiece", "hire_tokenizer")
PLUGIN_NAME = "fairseq_hire"
MODEL_NAME_KEYS = ("_name", "arch")  # fairseq builds the model _name names, else arch
TASK_NAME_KEYS = ("task", "_name")
EVALUATED_SUFFIX = "xformers_att_config"
INTERPOLATION = "${"  # how OmegaConf and Hydra start an interpolation, also inside a longer string
SHOWN_CHARACTERS = 200  # of a refused value
MAX_NESTING = 100  # levels of sections and lists; fairseq's configurations nest a few


def as_mapping(section) -> Optional[Dict]:
    """A config section (Namespace, dict or omegaconf container) as a plain dict."""
    if section is None:
        return None
    if isinstance(section, argparse.Namespace):
        return vars(section)
    if isinstance(section, dict):
        return section
    from omegaconf import OmegaConf

    if OmegaConf.is_dict(section):
        container = OmegaConf.to_container(section, resolve=False)
        return container if isinstance(container, dict) else None  # content '${...}' or '???': no mapping
    return None


def model_name(section) -> Optional[str]:
    """The model fairseq builds from a model section: its _name, else its arch."""
    mapping = as_mapping(section) or {}
    return mapping.get("_name") or mapping.get("arch")


def task_name(section) -> Optional[str]:
    """The task fairseq's setup_task builds from a task section: a string task, else _name."""
    mapping = as_mapping(section) or {}
    named = mapping.get("task")
    return named if isinstance(named, str) else mapping.get("_name")


def strings(value, where: str, evaluate: bool = False) -> Iterable[Tuple[str, str]]:
    """(where, text) of every string in a configuration value, at any depth (iteratively: a
    configuration may be nested deeper than Python recurses). With evaluate, also of what
    ast.literal_eval makes of each string, as fairseq's convert_namespace_to_omegaconf does to
    an args string for an option that is not a string."""
    from omegaconf import OmegaConf

    stack = [(where, value, evaluate, 0)]
    while stack:
        where, value, evaluate, depth = stack.pop()
        if depth > MAX_NESTING:  # refused by within_depth, as what Python cannot recurse into
            raise RecursionError(f"{where} is nested more than {MAX_NESTING} levels deep")
        if OmegaConf.is_config(value):  # iterating an omegaconf container resolves what it holds
            value = OmegaConf.to_container(value, resolve=False)  # a '${...}' content is its string
        mapping = as_mapping(value)
        if mapping is not None:
            stack.extend((f"{where}.{key}", item, evaluate, depth + 1) for key, item in mapping.items())
            yield from ((f"{where}.{key}", key) for key in mapping if isinstance(key, str))  # keys too
        elif isinstance(value, (list, tuple)):
            stack.extend((f"{where}[{i}]", item, evaluate, depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str):
            yield where, value
            if evaluate:
                stack.append((where, literal(value), False, depth))


def literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def sections(state: Dict) -> Iterable[Tuple[str, Dict]]:
    """(name, mapping) of every config section fairseq may read: the flat ``args`` of the
    original releases, and ``cfg``'s model, task, common and bpe."""
    args = as_mapping(state.get("args"))
    if args is not None:
        yield "args", args
    cfg = as_mapping(state.get("cfg"))
    if cfg is not None:
        for name in ("model", "task", "common", "bpe"):
            section = as_mapping(cfg.get(name))
            if section is not None:
                yield f"cfg.{name}", section


class Checker:
    def __init__(self, path):
        self.path = path

    def refuse(self, where: str, value, expected: str):
        shown = repr(value)
        if len(shown) > SHOWN_CHARACTERS:
            shown = f"{shown[:SHOWN_CHARACTERS]}... ({len(shown)} characters)"
        raise UnsafeConfigError(
            f"refusing to load checkpoint {self.path}: its configuration field {where} = "
            f"{shown}; expected {expected}. fairseq would build what the configuration names, so a "
            "checkpoint can run code through it; nothing from this one was run."
        )

    def check(self, state: Dict) -> None:
        if not isinstance(state, dict):
            raise UnsafeConfigError(f"refusing to load checkpoint {self.path}: expected a dict of "
                                    f"model, args/cfg, ..., found a {type(state).__name__}")
        self.check_containers(state)
        self.check_no_interpolation(state)
        for where, section in sections(state):
            self.check_names(where, section)
        for where, section in sections(state):
            self.check_options(where, section)
        self.check_task_state(state.get("task_state"))

    def check_containers(self, state: Dict) -> None:
        """Sections fairseq reads as mappings must be mappings: a string there would be taken
        for another kind of value (e.g. an interpolation) that no check here reads."""
        args = state.get("args")
        if args is not None and as_mapping(args) is None:
            self.refuse("args", args, "a Namespace of options")
        cfg = state.get("cfg")
        if cfg is None:
            return
        if as_mapping(cfg) is None:
            self.refuse("cfg", cfg, "a mapping of configuration sections")
        for name, section in as_mapping(cfg).items():
            if name != "_name" and section is not None and as_mapping(section) is None:
                self.refuse(f"cfg.{name}", section, "a section (a mapping of options), or none")

    def check_no_interpolation(self, state: Dict) -> None:
        found = itertools.chain(strings(state.get("args"), "args", evaluate=True), strings(state.get("cfg"), "cfg"))
        for where, text in found:
            if INTERPOLATION in text:
                self.refuse(where, text, "no OmegaConf interpolation (${...}): fairseq resolves it into values this "
                                         "check cannot see, and the configurations fairseq saves hold none")

    def check_task_state(self, task_state) -> None:
        """fairseq merges a checkpoint's task_state into the task it builds the model with; the
        only entry a RoBERTa task reads is the head's classes (head_classes.py)."""
        from .head_classes import STATE_KEY

        if task_state is None:
            return
        if not isinstance(task_state, dict):
            self.refuse("task_state", task_state, "a dict")
        classes = task_state.get(STATE_KEY)
        if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
            self.refuse(f"task_state.{STATE_KEY}", classes, "a list of class names")

    def check_names(self, where: str, section: Dict) -> None:
        from fairseq.models import ARCH_MODEL_NAME_REGISTRY

        if where in ("args", "cfg.model"):
            named = [key for key in MODEL_NAME_KEYS if section.get(key) is not None]
            # fairseq takes the model's name from a section's only key when it names none
            if where == "cfg.model" and section and not named:
                self.refuse(where, sorted(section), "a model section that names its architecture (_name or arch)")
            for key in named:
                arch = section[key]
                if not isinstance(arch, str) or ARCH_MODEL_NAME_REGISTRY.get(arch) not in ALLOWED_MODELS:
                    self.refuse(f"{where}.{key}", arch, "a RoBERTa architecture (" + ", ".join(
                        sorted(a for a, m in ARCH_MODEL_NAME_REGISTRY.items() if m in ALLOWED_MODELS)) + ")")
        if where in ("args", "cfg.task"):
            # fairseq's setup_task reads a string ``task`` before ``_name``
            for key in TASK_NAME_KEYS:
                if section.get(key) is not None and section[key] not in ALLOWED_TASKS:
                    self.refuse(f"{where}.{key}", section[key], "one of RoBERTa's tasks: " + ", ".join(ALLOWED_TASKS))
        if where in ("args", "cfg.common"):
            user_dir = section.get("user_dir")
            if user_dir is not None and (not isinstance(user_dir, str)
                                         or Path(user_dir.rstrip("/")).name != PLUGIN_NAME):
                self.refuse(f"{where}.user_dir", user_dir, f"none, or this plugin's folder ({PLUGIN_NAME})")
        bpe_key = {"args": "bpe", "cfg.bpe": "_name"}.get(where)
        if bpe_key and section.get(bpe_key) is not None and section[bpe_key] not in ALLOWED_BPE:
            self.refuse(f"{where}.{bpe_key}", section[bpe_key], "one of RoBERTa's BPEs: " + ", ".join(ALLOWED_BPE))
        self.check_evaluated(where, section)

    def check_evaluated(self, where: str, section: Dict) -> None:
        """RoBERTa's encoder passes any *xformers_att_config to eval(), although its parser
        never declares it; nested sections (encoder, decoder, quant_noise) are read too."""
        for name, value in section.items():
            if isinstance(name, str) and name.endswith(EVALUATED_SUFFIX) and value is not None:
                self.refuse(f"{where}.{name}", value, "none (fairseq evaluates this option as Python)")
            nested = as_mapping(value)
            if nested is not None:
                self.check_evaluated(f"{where}.{name}", nested)

    def check_options(self, where: str, section: Dict) -> None:
        specs = {}
        if where in ("args", "cfg.model"):
            for key in MODEL_NAME_KEYS:
                if section.get(key) is not None:
                    specs.update(model_options(section[key]))
        if where in ("args", "cfg.task"):
            for key in TASK_NAME_KEYS:
                if section.get(key) is not None:
                    specs.update(task_options(section[key]))
        for name, value in section.items():
            # data is a path (a list of them in old checkpoints) that loading overrides
            if name in specs and value is not None and name != "data":
                problem = specs[name](value)
                if problem:
                    self.refuse(f"{where}.{name}", value, problem)


def check(state: Dict, path) -> None:
    """Refuse (UnsafeConfigError) a checkpoint whose configuration names anything but a
    RoBERTa model, or gives its options values of the wrong kind."""
    with within_depth(path):
        Checker(path).check(state)


@contextlib.contextmanager
def within_depth(path):
    """A configuration nested deeper than Python recurses (fairseq's nest a few levels) is
    refused in one line: omegaconf, copy and repr would stop on it with a traceback."""
    try:
        yield
    except RecursionError:
        raise UnsafeConfigError(f"refusing to load checkpoint {path}: its configuration is nested more than "
                                f"{MAX_NESTING} levels deep; expected the few levels of sections fairseq saves") from None


# ------------------------------------------------------------------ what the models accept


@functools.lru_cache(maxsize=None)  # a checkpoint is checked before and after fairseq upgrades it
def model_options(arch: str) -> Dict[str, typing.Callable]:
    """option name -> check(value) -> None, or what was expected, from the architecture's
    own add_args (the argparse actions fairseq-train would parse them with)."""
    from fairseq.models import ARCH_MODEL_REGISTRY

    from ..models.layernorm_eps import eps_argument

    parser = argparse.ArgumentParser(add_help=False)
    ARCH_MODEL_REGISTRY[arch].add_args(parser)
    specs = {action.dest: action_check(action) for action in parser._actions if action.dest != "help"}
    # the hub gives every RoBERTa model the epsilon its configuration records (models/layernorm_eps.py)
    specs.setdefault("encoder_layernorm_eps", functools.partial(scalar_problem, eps_argument))
    return specs


def action_check(action: argparse.Action) -> typing.Callable:
    if action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction):
        return lambda value: None if isinstance(value, bool) else "true or false"
    choices = action.choices
    kind = action.type

    def check_value(value):
        if choices is not None:
            return None if value in choices else "one of " + ", ".join(map(str, choices))
        return scalar_problem(kind, value)

    return check_value


def scalar_problem(kind, value) -> Optional[str]:
    """None if `value` is what a field of type `kind` holds, else what was expected."""
    if kind is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else "a finite number"
    if kind is bool:
        return None if isinstance(value, bool) else "true or false"
    if kind in (None, str):
        return None if isinstance(value, str) else "a string"
    if callable(kind):  # an argparse type function: it must accept the value as a command line would
        try:
            kind(value if isinstance(value, str) else str(value))
        except (ValueError, TypeError, argparse.ArgumentTypeError, SyntaxError) as error:
            return f"a value its parser accepts ({error})"
    return None


@functools.lru_cache(maxsize=None)
def task_options(task: str) -> Dict[str, typing.Callable]:
    from fairseq.tasks import TASK_DATACLASS_REGISTRY

    config = TASK_DATACLASS_REGISTRY.get(task)
    if config is None:
        return {}
    return {f.name: field_check(f.type) for f in dataclasses.fields(config)}


def field_check(annotation) -> typing.Callable:
    """check(value) for a dataclass field annotated int, float, bool, str, an Enum (fairseq's
    ChoiceEnum), or Optional of one of those; other annotations are not checked."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Union and type(None) in args:
        annotation = next(a for a in args if a is not type(None))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        names = [member.value for member in annotation]
        return lambda value: None if str(value) in map(str, names) else "one of " + ", ".join(map(str, names))
    if annotation in (int, float, bool, str):
        return functools.partial(scalar_problem, annotation)
    return lambda value: None
