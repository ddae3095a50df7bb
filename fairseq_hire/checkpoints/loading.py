"""The one safe way checkpoints are loaded: the hub, the scripts, checkpoint_args, the
converter and the plugin's own fairseq-train runs (--finetune-from-model, --restore-file,
resuming) all go through ``load_state`` (the checkpoint as stored) or
``load_checkpoint_to_cpu`` (the checkpoint as fairseq hands it to a model).

A checkpoint is a pickle, and its configuration is input too. ``load_state(path)``:

1. checks the file is a complete PyTorch checkpoint (zip, or the legacy format of the
   original releases) and calls anything else corrupt (``CorruptCheckpointError``);
2. unpickles it with ``weights_only=True``, always: torch.load's own default would obey
   ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, which unpickles anything. Allowed are exactly
   fairseq's checkpoint contents (Namespace, omegaconf configs, numpy scalars and small
   arrays, also as numpy 1.x pickled them, tensors, and the placeholder of fairseq's
   distributed checkpoint broadcast), added to torch's allowlist for this load only
   (``fairseq_contents_allowed``); anything else is refused, naming the object
   (``UnsafeCheckpointError``), and nothing from the file runs;
3. checks the configuration (``checkpoints.configuration``: no interpolation, only RoBERTa models,
   options of the types those models accept) before any model code sees it, and that it
   builds the model the weights are (``checkpoints.shapes``: sizes), before any model is
   built (``UnsafeConfigError``).

``load_checkpoint_to_cpu(path, arg_overrides)`` is fairseq's own
``checkpoint_utils.load_checkpoint_to_cpu`` (the refresh of remote caches, the
``load_on_all_ranks`` barrier, the overrides, the upgrades of old checkpoints: whatever
upstream does there) around ``load_state``: the file is checked as above first, then
fairseq reads it with its own function, its unpickling held to ``weights_only=True`` whatever
the environment says (``weights_only_unpickling``), and the configuration it returns is
checked again (the upgrades fill in what old checkpoints lack; a configuration fairseq
cannot read is refused in one line, not a traceback). The check before fairseq's code reads
the configuration memory-maps a zip checkpoint's tensors rather than reading them, so fairseq's
read is the only full one; the legacy format (the 2019 releases), which torch cannot map, is
read twice.
The hub and the scripts hand the result to fairseq (``load_model_ensemble_and_task(...,
state=...)``); a plugin run's trainer loads through it (``checkpoints.saving``).
"""
import argparse
import collections
import contextlib
import functools
import inspect
import logging
import os
import pickle
import re
import struct
import typing
import zipfile
from pathlib import Path

import hydra.errors
import numpy as np
import omegaconf
import torch
from numpy._core import multiarray

from . import configuration, shapes
from .errors import (CheckpointError, CorruptCheckpointError, UnsafeCheckpointError, UnsafeConfigError,
                                one_line)

logger = logging.getLogger(__name__)

# numpy 2 pickles a dtype through its class (e.g. numpy.dtypes.Float64DType); object and
# void dtypes are left out, since they can carry arbitrary pickled payloads
NUMERIC_DTYPE_CLASSES = [
    getattr(np.dtypes, name)
    for name in dir(np.dtypes)
    if name.endswith("DType") and not name.startswith(("Object", "Void"))
]

FAIRSEQ_CHECKPOINT_GLOBALS = [
    argparse.Namespace,
    collections.defaultdict,
    typing.Any,
    omegaconf.dictconfig.DictConfig,
    omegaconf.listconfig.ListConfig,
    omegaconf.base.ContainerMetadata,
    omegaconf.base.Metadata,
    omegaconf.nodes.AnyNode,
    omegaconf.nodes.StringNode,
    omegaconf.nodes.IntegerNode,
    omegaconf.nodes.FloatNode,
    omegaconf.nodes.BooleanNode,
    int,
    float,
    bool,
    str,
    list,
    dict,
    # numpy scalars and small arrays in extra_state (e.g. the best validation score), under
    # numpy 2's module names and the numpy.core ones numpy 1.x pickled them with (2019-era
    # checkpoints): the same functions
    multiarray.scalar,
    multiarray._reconstruct,
    (multiarray.scalar, "numpy.core.multiarray.scalar"),
    (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
    np.ndarray,
    np.dtype,
    *NUMERIC_DTYPE_CLASSES,
]

# what omegaconf, Hydra and fairseq's upgrade raise on a configuration they cannot read
CONFIGURATION_ERRORS = (omegaconf.errors.OmegaConfBaseException, hydra.errors.HydraException, ValueError, TypeError,
                        KeyError, AttributeError, SyntaxError, RecursionError, AssertionError)
FORCE_UNSAFE_VARIABLE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
FORCE_SAFE_VARIABLE = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
TRUE_VALUES = ("1", "y", "yes", "true")
HOOK_MARK = "__wrapped_by_fairseq_hire__"  # on the plugin's wrappers of fairseq functions
# what torch.save's legacy (pre-zip) format starts with: its magic number, pickled (protocol 2)
LEGACY_PREFIX = pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2)


def checkpoint_globals() -> list:
    """fairseq's checkpoint contents, and the placeholder of the checkpoint distributed training
    broadcasts to ranks > 0, whose tensors fairseq replaces by ``_TensorPlaceholder`` (a
    dataclass holding one index)."""
    from fairseq.distributed.utils import _TensorPlaceholder

    return [*FAIRSEQ_CHECKPOINT_GLOBALS, _TensorPlaceholder]


@contextlib.contextmanager
def fairseq_contents_allowed():
    """torch's weights_only allowlist holds fairseq's checkpoint contents inside, and is what it
    was outside: only what is not on it already is added, and removed again on the way out."""
    present = set(torch.serialization.get_safe_globals())
    with torch.serialization.safe_globals([item for item in checkpoint_globals() if item not in present]):
        yield


@contextlib.contextmanager
def weights_only_unpickling():
    """fairseq's own torch.load calls pass no ``weights_only``, so torch decides from the
    environment: ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` would unpickle anything. Inside, that
    variable is unset and ``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1`` set, with fairseq's contents
    allowed; both variables are restored on the way out. (The environment is the process's:
    a torch.load another thread makes meanwhile is held to weights_only too.)"""
    saved = {name: os.environ.get(name) for name in (FORCE_UNSAFE_VARIABLE, FORCE_SAFE_VARIABLE)}
    os.environ.pop(FORCE_UNSAFE_VARIABLE, None)
    os.environ[FORCE_SAFE_VARIABLE] = "1"
    try:
        with fairseq_contents_allowed():
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def not_a_file(path) -> typing.Optional[str]:
    """Why `path` is no file a checkpoint can be read from ("is a folder", "does not exist"), or None."""
    if os.path.isfile(path):
        return None
    return "is a folder" if os.path.isdir(path) else "does not exist"


def check_file(path: Path) -> None:
    """Refuse (CorruptCheckpointError) what is not a complete PyTorch checkpoint file."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint {path} does not exist") from None
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint {path} is a folder; expected a file (e.g. {path / 'model.pt'})")
    if size == 0:
        raise CorruptCheckpointError(f"checkpoint {path} is empty (0 bytes): it was truncated, "
                                     "e.g. by a run killed while writing it")
    with open(path, "rb") as f:
        head = f.read(len(LEGACY_PREFIX))
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as error:
            raise CorruptCheckpointError(f"checkpoint {path} is a damaged zip archive ({error})") from None
        if not any(name.endswith("data.pkl") for name in names):
            raise CorruptCheckpointError(f"{path} is a zip archive but not a PyTorch checkpoint (no data.pkl)")
    elif head.startswith(b"PK"):
        raise CorruptCheckpointError(f"checkpoint {path} is truncated: a zip archive ({size} bytes) "
                                     "without its central directory, e.g. a run killed while writing it")
    elif head != LEGACY_PREFIX:
        raise CorruptCheckpointError(f"{path} is not a PyTorch checkpoint: it starts with {head[:8]!r}, "
                                     "neither a zip archive nor torch.save's legacy format")


UNSAFE_REASONS = (
    re.compile(r"Trying to load unsupported (GLOBAL \S+) whose module (\S+) is blocked"),
    re.compile(r"Unsupported global: (GLOBAL \S+) was not an allowed global"),
    re.compile(r"Can only build Tensor, Parameter, OrderedDict or types allowlisted via `add_safe_globals`, "
               r"but got (<class '[^']+'>)"),
)


def classify_failure(path: Path, error: Exception) -> CheckpointError:
    """torch.load's error as ours: unsafe content (say which), else a corrupt file."""
    text = str(error)
    for pattern in UNSAFE_REASONS:
        found = pattern.search(text)
        if found:
            reason = found.group(1) + (f" (module {found.group(2)} is blocked)" if pattern.groups > 1 else "")
            if "numpy.dtypes.ObjectDType" in reason or "numpy.dtypes.VoidDType" in reason:
                reason += ": a numpy object array, which can hold any pickled object"
            return UnsafeCheckpointError(
                f"refusing to load checkpoint {path}: it contains pickled objects outside fairseq's "
                "checkpoint contents (argparse.Namespace, omegaconf configs, numpy scalars, tensors), "
                "and unpickling those could run arbitrary code. Nothing from it was executed. "
                f"Refused: {reason}"
            )
    # torch's unpickler met bytes that are no valid pickle: its reason follows this marker
    detail = text.split("WeightsUnpickler error:", 1)[-1]
    first_line = next((line.strip() for line in detail.splitlines() if line.strip()), "the file ends early")
    return CorruptCheckpointError(f"checkpoint {path} is truncated or corrupt: torch could not read it "
                                  f"({type(error).__name__}: {first_line})")


def safe_torch_load(path, map_location="cpu", lazy=False):
    """The checkpoint's contents, unpickled safely (steps 1 and 2 above); the configuration
    is not checked (``load_state`` does that). ``lazy``: a zip checkpoint's tensors are
    memory-mapped (``torch.load(mmap=True)``) instead of read, for a caller that looks at the
    configuration and the weights' shapes only, and reads the weights afterwards or not at all
    (a record shorter than its tensor is found only when read); torch cannot map the legacy
    format, read whole."""
    path = Path(path)
    check_file(path)
    mmap = lazy and zipfile.is_zipfile(path)
    if os.environ.get(FORCE_UNSAFE_VARIABLE, "0").lower() in TRUE_VALUES:
        # torch refuses the pair before it opens the file: not the file's fault, so not "corrupt"
        # (which would make a resume set checkpoint_last aside)
        if os.environ.get(FORCE_SAFE_VARIABLE, "0").lower() in TRUE_VALUES:
            raise CheckpointError(f"cannot load {path}: both {FORCE_SAFE_VARIABLE} and {FORCE_UNSAFE_VARIABLE} "
                                  f"are set, which torch refuses; unset {FORCE_UNSAFE_VARIABLE} (fairseq_hire "
                                  "ignores it and always loads with weights_only=True)")
        warn_once(f"{FORCE_UNSAFE_VARIABLE} is set; fairseq_hire ignores it and loads {path} with "
                  "weights_only=True all the same: the variable would let any checkpoint run code")
    try:
        with fairseq_contents_allowed():
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, UnicodeDecodeError, OverflowError, MemoryError, struct.error) as error:
        if mmap:  # a file system that cannot map files is no corrupt file: the full read decides
            return safe_torch_load(path, map_location)
        raise classify_failure(path, error) from None


@functools.lru_cache(maxsize=None)
def warn_once(message: str) -> None:
    logger.warning(message)


def load_state(path, map_location="cpu", lazy=False):
    """A checkpoint's contents, safely unpickled and with its configuration checked; ``lazy``
    as for ``safe_torch_load``."""
    state = safe_torch_load(path, map_location, lazy)
    configuration.check(state, path)
    shapes.check(state, path)
    return state


def fairseq_load_checkpoint_to_cpu():
    """fairseq's own ``checkpoint_utils.load_checkpoint_to_cpu``, also in a plugin run, whose
    hook stands in front of it (``checkpoints.saving``)."""
    from fairseq import checkpoint_utils

    return inspect.unwrap(checkpoint_utils.load_checkpoint_to_cpu, stop=lambda f: not getattr(f, HOOK_MARK, False))


def load_checkpoint_to_cpu(path, arg_overrides=None, load_on_all_ranks=False):
    """What fairseq's ``checkpoint_utils.load_checkpoint_to_cpu`` returns (the same overrides,
    omegaconf config and upgrades of old checkpoints, by fairseq's own function), for a file
    ``load_state`` accepted, unpickled with weights_only and checked again after the upgrades."""
    from fairseq.file_io import PathManager

    # the check reads the pickle and maps the tensors without reading them (a zip checkpoint)
    stored = load_state(PathManager.get_local_path(str(path)), lazy=True)
    had_cfg = stored.get("cfg") is not None
    changed = overridden_model_options(stored, arg_overrides)
    del stored  # fairseq reads the file itself; the mapping is closed before it does
    try:
        with weights_only_unpickling():
            # converts args through Hydra, whose parser and ast.literal_eval read their strings
            state = fairseq_load_checkpoint_to_cpu()(str(path), arg_overrides, load_on_all_ranks)
            if had_cfg and arg_overrides is not None:
                replace_named_components(state["cfg"], arg_overrides)
    except CONFIGURATION_ERRORS as error:  # first: RecursionError is a RuntimeError
        raise UnsafeConfigError(f"refusing to load checkpoint {path}: fairseq cannot read its configuration "
                                f"({one_line(error)}); nothing from it was run") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        # the file changed since it was checked, or a tensor's record is shorter than its storage,
        # which the mapped check cannot see (torch reads the record's size only when it reads it)
        raise classify_failure(Path(path), error) from None
    # the upgrade fills in what old checkpoints lack (a missing task becomes translation)
    configuration.check(state, path)
    if changed:  # e.g. the hub's encoder_layers_to_keep=...: another encoder than the one checked
        try:
            shapes.check(state, path, heads=False)
        except UnsafeConfigError as error:
            given = ", ".join(f"{key}={value!r}" for key, value in sorted(changed.items()))
            raise UnsafeConfigError(f"{error} (with the override {given})") from None
    return state


# what the hub overrides to read a checkpoint with the plugin (its data, tokenizer and heads), not to
# build another model than the checkpoint's
READING_OVERRIDES = frozenset({"bpe", "data", "user_dir", "hire_tokenizer_spec", "load_checkpoint_heads"})


def overridden_model_options(state, arg_overrides) -> dict:
    """The overrides that may build another model than the checkpoint's configuration: those that
    change its model section's value (fairseq sets an original-format checkpoint's missing ones too)."""
    _, model, _, _ = next(shapes.configurations(state), (None, None, None, None))
    options = configuration.as_mapping(model) or {}
    return {key: value for key, value in (arg_overrides or {}).items()
            if key not in READING_OVERRIDES and (key not in options or options[key] != value)}


def replace_named_components(cfg, arg_overrides) -> None:
    """An override that names a component (``bpe="hire_tokenizer"``, as the hub passes) replaces
    the checkpoint's section of it. fairseq's overwrite_args_by_name does so only where the
    checkpoint has no such section; where it has one, fairseq keeps the checkpoint's component
    and its options, e.g. a gpt2 BPE with encoder files at paths or URLs the checkpoint chose,
    which the hub would then open or download instead of the tokenizer asked for. Run on what
    fairseq's loader returns: the section is built again from the named component's defaults
    and the overrides, which fairseq applies once more (they set what they set before)."""
    from fairseq.dataclass.utils import overwrite_args_by_name
    from fairseq.registry import REGISTRIES
    from omegaconf import open_dict

    replaced = False
    with open_dict(cfg):
        for name, registry in REGISTRIES.items():
            named = arg_overrides.get(name)
            if name in cfg and isinstance(named, str) and named in registry["dataclass_registry"]:
                cfg[name] = None  # overwrite_args_by_name builds the named one from its defaults and the overrides
                replaced = True
    if replaced:
        overwrite_args_by_name(cfg, arg_overrides)


__all__ = ["CheckpointError", "CorruptCheckpointError", "UnsafeCheckpointError", "UnsafeConfigError",
           "load_checkpoint_to_cpu", "load_state", "safe_torch_load"]
