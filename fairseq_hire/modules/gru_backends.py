"""The two ways HIRE runs its GRUs, behind one interface, and the one place that picks one.

Every backend takes an ``nn.GRU`` (time-major), a right-padded input x (T x N x I) and the
lengths (N,) of its real tokens, and gives what the GRU gives on packed sequences of the
real tokens alone:

    outputs(gru, x, lengths)        -> (T x N x directions*H, zero at padding;  h_n)
    final_states(gru, x, lengths)   -> h_n, (layers * directions) x N x H
    first_position(gru, x, lengths) -> N x 2H, position 0 of a 1-layer BiGRU's output

* ``packed``: packed sequences, no work on padding (``packed_gru``). With gradients on CPU
  a loop over packed steps with a hand-written backward; otherwise PyTorch's kernels.
* ``padded``: plain cuDNN-style calls over the padded batch, exact at the real tokens
  (``padded_gru``): faster on a GPU, where a GRU's cost is its number of steps.

``auto`` is ``padded`` on CUDA and ``packed`` elsewhere. All are exact; tests run every
backend on CPU against nn.GRU.
"""
from typing import Callable, NamedTuple

import torch

from . import packed_gru, padded_gru


class GruBackend(NamedTuple):
    name: str
    outputs: Callable
    final_states: Callable
    first_position: Callable


BACKENDS = {
    "packed": GruBackend("packed", packed_gru.outputs, packed_gru.final_states, packed_gru.first_position),
    "padded": GruBackend("padded", padded_gru.outputs, padded_gru.final_states, padded_gru.first_position),
}
CHOICES = ("auto", *BACKENDS)


def choose(name: str, device: torch.device) -> GruBackend:
    """The backend called `name`; "auto": padded on a CUDA device, packed elsewhere."""
    if name == "auto":
        name = "padded" if device.type == "cuda" else "packed"
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown GRU backend {name!r}; expected one of {', '.join(CHOICES)}") from None
