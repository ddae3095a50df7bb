"""Safe loading of fairseq checkpoints under torch >= 2.6.

torch.load defaults to ``weights_only=True`` since torch 2.6, which rejects the
``argparse.Namespace`` of the original RoBERTa ``model.pt``, the omegaconf configs of Hydra
checkpoints and the numpy scalars fairseq keeps in ``extra_state``. The usual workaround,
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, unpickles anything, and a checkpoint is a pickle:
a hostile one runs code.

Instead we keep ``weights_only=True`` and allow exactly the globals fairseq's own
checkpoints contain (``torch.serialization.add_safe_globals``). fairseq's own
``torch.load`` calls (checkpoint_utils, the distributed broadcast) then work unchanged.
``load_checkpoint_to_cpu`` is wrapped only to turn torch's refusal, whose text suggests
``weights_only=False``, into a message that says what was refused and why.
"""
import argparse
import collections
import functools
import pickle
import re
import typing

import numpy as np
import omegaconf
import torch
from numpy._core import multiarray

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
    # numpy scalars and small arrays in extra_state (e.g. the best validation score)
    multiarray.scalar,
    multiarray._reconstruct,
    np.ndarray,
    np.dtype,
    *NUMERIC_DTYPE_CLASSES,
]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds pickled objects outside fairseq's checkpoint contents."""


def allow_fairseq_checkpoint_contents() -> None:
    """Let ``torch.load(weights_only=True)`` accept fairseq's checkpoint contents, and the
    checkpoint that distributed training broadcasts to ranks > 0, whose tensors fairseq
    replaces by ``_TensorPlaceholder`` (a dataclass holding one index)."""
    from fairseq.distributed.utils import _TensorPlaceholder

    torch.serialization.add_safe_globals([*FAIRSEQ_CHECKPOINT_GLOBALS, _TensorPlaceholder])


def refusal(path, error: Exception) -> UnsafeCheckpointError:
    # torch's message ends with advice to pass weights_only=False; keep only the reason
    text = str(error)
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text) or re.search(
        r"WeightsUnpickler error: ([^.]*)", text
    )
    reason = found.group(0) if found else text.strip().splitlines()[0]
    return UnsafeCheckpointError(
        f"refusing to load checkpoint {path}: it contains pickled objects outside fairseq's "
        "checkpoint contents (argparse.Namespace, omegaconf configs, numpy scalars, tensors), "
        f"and unpickling those could run arbitrary code. Nothing from it was executed. "
        f"Refused: {reason}"
    )


def safe_torch_load(path, map_location="cpu"):
    """torch.load with weights_only=True and fairseq's contents allowed."""
    allow_fairseq_checkpoint_contents()
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise refusal(path, error) from None


def install() -> None:
    """Allow fairseq's contents and give fairseq's loader a clear refusal message."""
    from fairseq import checkpoint_utils

    allow_fairseq_checkpoint_contents()
    load = checkpoint_utils.load_checkpoint_to_cpu
    if getattr(load, "__wrapped_by_fairseq_hire__", False):
        return

    @functools.wraps(load)
    def load_checkpoint_to_cpu(path, *args, **kwargs):
        try:
            return load(path, *args, **kwargs)
        except pickle.UnpicklingError as error:
            raise refusal(path, error) from None

    load_checkpoint_to_cpu.__wrapped_by_fairseq_hire__ = True
    checkpoint_utils.load_checkpoint_to_cpu = load_checkpoint_to_cpu
