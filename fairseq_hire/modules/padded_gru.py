"""nn.GRU over right-padded batches, exact at the real tokens, for cuDNN.

On GPU a GRU's cost is the latency of its sequential steps, not its arithmetic, so skipping
padding saves nothing, and cuDNN's packed-sequence kernels were measured 1.4-2.2x slower
than the same GRU run over the padding (benchmarks/results/speed-*H100*.json). Running over
padding is only wrong for the backward direction, which would start from the padding. Here
every layer runs once, as one bidirectional cuDNN call over a batch of 2N sequences: the N
right-padded sequences, whose forward outputs are exact (padding comes after the real
tokens), and the same N shifted to the end of the time axis (left-padded), whose backward
outputs are exact (padding comes after the real tokens in backward time). The two directions
still run side by side, and the doubled batch is nearly free on a latency-bound GPU.

Results equal nn.GRU on packed sequences at the real tokens (tested against it to 1e-6 in
float32, gradients included); padding positions of the outputs are zero. The GRU's own
parameters are used; dropout between layers is not supported (HIRE's GRUs have none).

Pure PyTorch; shapes are time-major as in nn.GRU: x is T x N x I, lengths (N,) with
1 <= length <= T (on any device; moved to x's once per call).
"""
import warnings
from typing import List, Tuple

import torch
import torch.nn as nn

from .packed_gru import direction_parameters


def roll_each(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Roll every sequence n of x (T x N x *) forward in time by shifts[n] (on x's device)."""
    T = x.shape[0]
    index = (torch.arange(T, device=x.device).unsqueeze(1) - shifts.unsqueeze(0)) % T  # T x N
    return x.gather(0, index.view(T, -1, *([1] * (x.dim() - 2))).expand_as(x))


def shift_to_end(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Right-padded -> left-padded: sequence n's tokens move to T - length_n .. T - 1."""
    return roll_each(x, x.shape[0] - lengths)


def shift_to_start(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The inverse of ``shift_to_end``: left-padded -> right-padded."""
    return roll_each(x, lengths - x.shape[0])


def at_positions(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """x[positions[n], n] for every n: T x N x H -> N x H."""
    index = positions.view(1, -1, 1).expand(1, -1, x.shape[-1])
    return x.gather(0, index).squeeze(0)


def run_layer(gru: nn.GRU, layer: int, x: torch.Tensor, directions: List[bool]) -> torch.Tensor:
    """One layer of ``gru`` (the directions listed, False = forward) over all of x, padding
    included, in one call: T x N x I -> T x N x (len(directions) * H)."""
    weights = [w for reverse in directions for w in direction_parameters(gru, layer, reverse)]
    bidirectional = len(directions) == 2
    h0 = x.new_zeros(len(directions), x.shape[1], gru.hidden_size)
    with warnings.catch_warnings():
        # cuDNN copies one layer's weights out of the module's flat buffer: a few matrices,
        # cheap next to the T sequential steps, so its warning about that copy is noise here
        warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")
        # train=True whenever gradients are on: cuDNN keeps what its backward needs only in
        # training mode, and with no dropout the flag changes nothing else (an eval-mode
        # nn.GRU cannot be differentiated on GPU; this can)
        out, _ = torch._VF.gru(x, h0, weights, True, 1, 0.0, torch.is_grad_enabled(), bidirectional, False)
    return out


def outputs(gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``gru`` on packed sequences, computed over the padded batch.

    x: T x N x I right-padded, lengths: (N,). Returns the output T x N x (directions * H),
    zero at padding, and h_n (layers * directions) x N x H, the state after each sequence's
    own last token (first token for the backward direction), as nn.GRU returns for packed input.
    """
    if gru.dropout and gru.num_layers > 1:
        raise ValueError("padded_gru does not apply nn.GRU's dropout between layers")
    N, H = x.shape[1], gru.hidden_size
    lengths = lengths.to(x.device)  # once: every gather below indexes on x's device
    last = lengths - 1
    finals = []
    for layer in range(gru.num_layers):
        if gru.bidirectional:
            both = run_layer(gru, layer, torch.cat([x, shift_to_end(x, lengths)], dim=1), [False, True])
            forward = both[:, :N, :H]
            backward = shift_to_start(both[:, N:, H:], lengths)
            finals += [at_positions(forward, last), backward[0]]
            x = torch.cat([forward, backward], dim=-1)
        else:
            x = run_layer(gru, layer, x, [False])
            finals.append(at_positions(x, last))
    real = torch.arange(x.shape[0], device=x.device).unsqueeze(1) < lengths.unsqueeze(0)
    return x.masked_fill(~real.unsqueeze(-1), 0), torch.stack(finals)


def final_states(gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """h_n of ``outputs``."""
    return outputs(gru, x, lengths)[1]


def first_position(gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The output at position 0 of a 1-layer bidirectional GRU, N x 2H, without the rest: the
    forward direction's is its first step, the backward direction's its state after a
    backward-only pass over each sequence."""
    forward = run_layer(gru, 0, x[:1], [False])[0]
    lengths = lengths.to(x.device)
    # flipping the left-padded batch reverses each sequence within its length, real tokens
    # first: the reverse direction's weights run over it forward in time reach position 0 last
    reversed_in_length = shift_to_end(x, lengths).flip(0)
    backward = run_layer(gru, 0, reversed_in_length, [True])
    return torch.cat([forward, at_positions(backward, lengths - 1)], dim=1)
