"""nn.GRU over packed sequences for CPU training, with a linear-cost backward.

PyTorch's CPU GRU backward grows faster than linearly with the sequence length: on RTE-length
batches (T ~ 200) a 2-layer BiGRU's backward takes ~10 s where its forward takes 0.4 s, more
than running it over all the padding. The cause is denormal floats: the gradient carried back
along a sequence shrinks geometrically, after ~150-250 steps it is below float32's smallest
normal number (1.2e-38), and x86 cores compute denormals ~100x slower. Flushing them with
``torch.set_flush_denormal`` reaches the calling thread only, not OpenMP's workers.

Here each layer and direction is one matrix product for the input projections over the real
tokens, then a loop over packed time steps (step t holds the batch_sizes[t] sequences still
running, longest first), with the backward written out by hand in the same loop
(``GruDirection``), where the carried gradient is floored at ``GRADIENT_FLOOR``. Results equal
nn.GRU's (tested to 1e-6 in float32, 1e-15 in float64, gradients included); the parameters are
the nn.GRU's own.

Pure PyTorch; shapes are time-major as in nn.GRU (batch_first=False).
"""
from typing import List, Tuple

import torch
import torch.nn as nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

# Entries of the gradient carried between time steps below this magnitude become 0. 2^-100
# (7.9e-31) is 26 binary orders above float32's denormals, so its products with the gates'
# derivatives stay normal numbers, and it is far below the rounding error of any gradient
# training acts on (with the recipe's adam_eps 1e-6 such an entry moves a weight by < 1e-24 lr).
# Measured at base size, B8 x T512: the fusion GRU's backward took 5.0 s with denormals, 0.3 s
# without.
GRADIENT_FLOOR = 2.0 ** -100


def gru_step(gates_in, h, w_hh, b_hh):
    """One GRU step as nn.GRU computes it. gates_in = W_ih x + b_ih (n x 3H), h (n x H).
    Returns the new state and what the backward needs: (h_new, [r ; z], candidate, W_hn h + b_hn)."""
    H = h.shape[1]
    gates_h = torch.addmm(b_hh, h, w_hh.t())
    reset_update = torch.sigmoid(gates_in[:, : 2 * H] + gates_h[:, : 2 * H])
    gates_h_new = gates_h[:, 2 * H:]
    candidate = torch.tanh(gates_in[:, 2 * H:] + reset_update[:, :H] * gates_h_new)
    return candidate + reset_update[:, H:] * (h - candidate), reset_update, candidate, gates_h_new


class GruDirection(torch.autograd.Function):
    """One direction of one GRU layer over packed steps.

    forward(gates_in: packed sum(batch_sizes) x 3H input projections, w_hh: 3H x H, b_hh: 3H,
    batch_sizes, reverse) -> packed outputs (sum x H), final states (N x H, longest first).
    """

    @staticmethod
    def forward(ctx, gates_in, w_hh, b_hh, batch_sizes: List[int], reverse: bool):
        H, T = w_hh.shape[1], len(batch_sizes)
        steps = gates_in.split(batch_sizes)
        outputs, saved = [None] * T, [None] * T
        finished = []  # forward: final states of sequences that ended, shortest last
        h = gates_in.new_zeros(0 if reverse else batch_sizes[0], H)
        for t in range(T - 1, -1, -1) if reverse else range(T):
            n = batch_sizes[t]
            if reverse and n > h.shape[0]:  # sequences start (from zero) at their last token
                h = torch.cat([h, h.new_zeros(n - h.shape[0], H)])
            elif not reverse and n < h.shape[0]:
                finished.append(h[n:])
                h = h[:n]
            h_new, reset_update, candidate, gates_h_new = gru_step(steps[t], h, w_hh, b_hh)
            saved[t] = (h, reset_update, candidate, gates_h_new)
            outputs[t] = h = h_new
        final = h if reverse else torch.cat([h, *reversed(finished)])
        ctx.batch_sizes, ctx.reverse = batch_sizes, reverse
        ctx.save_for_backward(w_hh, *(torch.cat(parts) for parts in zip(*saved)))
        return torch.cat(outputs), final

    @staticmethod
    def backward(ctx, grad_outputs, grad_final):
        w_hh, h_prev, reset_update, candidate, gates_h_new = ctx.saved_tensors
        batch_sizes, reverse = ctx.batch_sizes, ctx.reverse
        H, T = w_hh.shape[1], len(batch_sizes)
        grad_out, h_prev_t, ru_t, cand_t, ghn_t = (
            x.split(batch_sizes) for x in (grad_outputs, h_prev, reset_update, candidate, gates_h_new)
        )
        grad_gates = [None] * T
        grad_h = grad_final
        for t in range(T) if reverse else range(T - 1, -1, -1):  # the forward loop, backwards
            n = batch_sizes[t]
            dh = grad_h[:n] + grad_out[t]
            reset, update, c = ru_t[t][:, :H], ru_t[t][:, H:], cand_t[t]
            d_pre_new = dh * (1 - update) * (1 - c * c)
            d_pre_update = dh * (h_prev_t[t] - c) * update * (1 - update)
            d_pre_reset = d_pre_new * ghn_t[t] * reset * (1 - reset)
            grad_gates[t] = torch.cat([d_pre_reset, d_pre_update, d_pre_new], dim=1)
            d_gates_h = torch.cat([d_pre_reset, d_pre_update, d_pre_new * reset], dim=1)
            dh_prev = dh * update + d_gates_h.mm(w_hh)
            # the gradient shrinks geometrically along the sequence; floored, it never reaches
            # float32's denormals, which x86 computes ~100x slower (see GRADIENT_FLOOR)
            dh_prev = dh_prev.masked_fill(dh_prev.abs() < GRADIENT_FLOOR, 0)
            if reverse:  # sequences that started at step t had a zero initial state
                grad_h = dh_prev[: batch_sizes[t + 1] if t + 1 < T else 0]
            else:
                grad_h = torch.cat([dh_prev, grad_h[n:]]) if n < grad_h.shape[0] else dh_prev
        grad_gates_in = torch.cat(grad_gates)
        grad_gates_h = torch.cat(
            [grad_gates_in[:, : 2 * H], grad_gates_in[:, 2 * H:] * reset_update[:, :H]], dim=1
        )
        return grad_gates_in, grad_gates_h.t().mm(h_prev), grad_gates_h.sum(0), None, None


def direction_parameters(gru: nn.GRU, layer: int, reverse: bool):
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    return tuple(getattr(gru, name + suffix) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


def uses_step_loop(data: torch.Tensor) -> bool:
    """The loop pays off when training on CPU; cuDNN, and nn.GRU's CPU forward, are faster."""
    return torch.is_grad_enabled() and not data.is_cuda


def gru_on_packed(gru: nn.GRU, packed: PackedSequence) -> Tuple[PackedSequence, torch.Tensor]:
    """``gru(packed)``: the packed output and h_n ((layers * directions) x N x H)."""
    if not uses_step_loop(packed.data):
        return gru(packed)
    batch_sizes = packed.batch_sizes.tolist()
    data, finals = packed.data, []
    for layer in range(gru.num_layers):
        outputs = []
        for reverse in (False, True) if gru.bidirectional else (False,):
            w_ih, w_hh, b_ih, b_hh = direction_parameters(gru, layer, reverse)
            output, final = GruDirection.apply(torch.addmm(b_ih, data, w_ih.t()), w_hh, b_hh, batch_sizes, reverse)
            outputs.append(output)
            finals.append(final)
        data = torch.cat(outputs, dim=1)
    h_n = torch.stack(finals)
    if packed.unsorted_indices is not None:
        h_n = h_n.index_select(1, packed.unsorted_indices)
    return PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices), h_n


def reversed_in_length(packed: PackedSequence) -> torch.Tensor:
    """packed.data with every sequence reversed within its own length (same batch_sizes)."""
    batch_sizes = packed.batch_sizes
    step = torch.arange(len(batch_sizes)).repeat_interleave(batch_sizes)  # time step of each row
    first_row = torch.cumsum(batch_sizes, 0) - batch_sizes  # of each time step
    sequence = torch.arange(len(step)) - first_row[step]  # rank of each row's sequence, longest first
    lengths = (batch_sizes.unsqueeze(0) > torch.arange(int(batch_sizes[0])).unsqueeze(1)).sum(1)
    return packed.data.index_select(0, first_row[lengths[sequence] - 1 - step] + sequence)


def bigru_first_position(gru: nn.GRU, packed: PackedSequence, first: torch.Tensor) -> torch.Tensor:
    """The output at position 0 of a 1-layer bidirectional GRU, N x 2H, without the rest: the
    forward direction's is one step from a zero state, the backward direction's is its final
    state. `first` is every sequence's first input (N x I, batch order)."""
    w_ih, w_hh, b_ih, b_hh = direction_parameters(gru, 0, reverse=False)
    forward, *_ = gru_step(torch.addmm(b_ih, first, w_ih.t()), first.new_zeros(first.shape[0], w_hh.shape[1]), w_hh, b_hh)
    reverse = direction_parameters(gru, 0, reverse=True)
    if uses_step_loop(packed.data):
        w_ih, w_hh, b_ih, b_hh = reverse
        _, backward = GruDirection.apply(torch.addmm(b_ih, packed.data, w_ih.t()), w_hh, b_hh,
                                         packed.batch_sizes.tolist(), True)
    else:  # nn.GRU's kernel, one direction: forward in time over the sequences reversed
        h0 = first.new_zeros(1, int(packed.batch_sizes[0]), gru.hidden_size)
        _, h_n = torch._VF.gru(reversed_in_length(packed), packed.batch_sizes, h0, list(reverse),
                               True, 1, 0.0, False, False)
        backward = h_n[0]
    if packed.unsorted_indices is not None:
        backward = backward.index_select(0, packed.unsorted_indices)
    return torch.cat([forward, backward], dim=1)


# The backend interface (gru_backends): right-padded x (T x N x I), lengths (N,) on the CPU


def pack(x: torch.Tensor, lengths: torch.Tensor) -> PackedSequence:
    return pack_padded_sequence(x, lengths, enforce_sorted=False)


def outputs(gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The output T x N x (directions * H), zero at padding, and h_n."""
    out, h_n = gru_on_packed(gru, pack(x, lengths))
    return pad_packed_sequence(out, total_length=x.shape[0])[0], h_n


def final_states(gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Only h_n: the padded output is never built."""
    return gru_on_packed(gru, pack(x, lengths))[1]


def first_position(gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Position 0 of a 1-layer BiGRU's output, N x 2H, computed alone."""
    return bigru_first_position(gru, pack(x, lengths), x[0])
