"""The GRU backends on their own (fairseq_hire/modules/gru_backends.py): the packed step loop
and the padded path against nn.GRU on packed sequences, outputs and gradients, the gradient
floor that keeps the CPU backward out of denormal floats, and the first-position shortcut."""
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from fairseq_hire.modules import packed_gru, padded_gru
from fairseq_hire.modules.packed_gru import GruDirection, bigru_first_position, gru_on_packed

pytestmark = pytest.mark.unit  # the fast tier: make test-unit


@pytest.mark.parametrize("layers, bidirectional", [(1, False), (1, True), (2, True), (3, False)])
def test_step_loop_gru_equals_nn_gru(layers, bidirectional):
    torch.manual_seed(0)
    gru = torch.nn.GRU(6, 5, num_layers=layers, bidirectional=bidirectional)
    lengths = torch.tensor([4, 9, 1, 9, 6, 2])
    x = torch.randn(9, 6, 6, requires_grad=True)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    out, h_n = gru_on_packed(gru, packed)
    ref_out, ref_h_n = gru(packed)
    torch.testing.assert_close(out.data, ref_out.data, atol=1e-6, rtol=0)
    torch.testing.assert_close(h_n, ref_h_n, atol=1e-6, rtol=0)
    grads = torch.autograd.grad((out.data.sum() + h_n.sum()), [x, *gru.parameters()], retain_graph=True)
    ref_grads = torch.autograd.grad((ref_out.data.sum() + ref_h_n.sum()), [x, *gru.parameters()])
    for g, ref in zip(grads, ref_grads):
        torch.testing.assert_close(g, ref, atol=1e-5, rtol=0)


def count_denormals(x: torch.Tensor) -> int:
    return int(((x != 0) & (x.abs() < torch.finfo(x.dtype).tiny)).sum())


def test_vanishing_gradient_is_floored_before_it_turns_denormal(monkeypatch):
    """A loss on the final states only: the gradient carried over up to 600 steps vanishes in
    the middle of each sequence. Unfloored it passes through float32's denormals (which x86
    computes ~100x slower); floored it stops at 0, and still equals nn.GRU's to 1e-6."""
    torch.manual_seed(0)
    gru = torch.nn.GRU(16, 16, bidirectional=True)
    x = torch.randn(600, 4, 16, requires_grad=True)
    lengths = torch.tensor([600, 600, 450, 300])

    def input_gradient(run_gru):
        return torch.autograd.grad(run_gru(pack_padded_sequence(x, lengths))[1].sum(), x)[0]

    floored = input_gradient(lambda packed: gru_on_packed(gru, packed))
    assert count_denormals(floored) == 0
    assert (floored[250:350, :2] == 0).all() and (floored[0] != 0).all()
    torch.testing.assert_close(floored, input_gradient(gru), atol=1e-6, rtol=0)
    monkeypatch.setattr(packed_gru, "GRADIENT_FLOOR", 0.0)
    assert count_denormals(input_gradient(lambda packed: gru_on_packed(gru, packed))) > 0


def test_gru_direction_gradcheck_double():
    torch.manual_seed(0)
    batch_sizes = [3, 3, 2, 1]
    gates_in = torch.randn(sum(batch_sizes), 12, dtype=torch.double, requires_grad=True)
    w_hh = torch.randn(12, 4, dtype=torch.double, requires_grad=True)
    b_hh = torch.randn(12, dtype=torch.double, requires_grad=True)
    for reverse in (False, True):
        assert torch.autograd.gradcheck(
            lambda g, w, b: GruDirection.apply(g, w, b, batch_sizes, reverse), (gates_in, w_hh, b_hh)
        )


def test_reversed_in_length():
    lengths = torch.tensor([2, 5, 1, 3])
    x = torch.arange(5 * 4).view(5, 4, 1).float()  # value = 4 * position + sequence
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    reversed_x = torch.stack([torch.cat([x[:n, i].flip(0), x[n:, i]]) for i, n in enumerate(lengths)], dim=1)
    expected = pack_padded_sequence(reversed_x, lengths, enforce_sorted=False).data
    torch.testing.assert_close(packed_gru.reversed_in_length(packed), expected, atol=0, rtol=0)


@pytest.mark.parametrize("grad", [True, False])
def test_first_position_of_a_bigru(grad):
    torch.manual_seed(0)
    gru = torch.nn.GRU(6, 5, bidirectional=True)
    lengths = torch.tensor([4, 9, 1, 9, 6])
    x = torch.randn(9, 5, 6)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    with torch.set_grad_enabled(grad):
        first = bigru_first_position(gru, packed, x[0])
    full, _ = torch.nn.utils.rnn.pad_packed_sequence(gru(packed)[0])
    torch.testing.assert_close(first, full[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("layers, bidirectional", [(1, False), (1, True), (2, True), (3, False)])
def test_gru_over_padding_equals_nn_gru_on_packed(layers, bidirectional):
    torch.manual_seed(0)
    gru = torch.nn.GRU(6, 5, num_layers=layers, bidirectional=bidirectional)
    lengths = torch.tensor([4, 9, 1, 9, 6, 2])
    x = torch.randn(9, 6, 6)
    x[7:, 0] = 1e3  # padding holds garbage
    x.requires_grad_(True)
    out, h_n = padded_gru.outputs(gru, x, lengths)
    ref_out, ref_h_n = gru(pack_padded_sequence(x, lengths, enforce_sorted=False))
    ref_out, _ = torch.nn.utils.rnn.pad_packed_sequence(ref_out, total_length=9)
    torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=0)
    torch.testing.assert_close(h_n, ref_h_n, atol=1e-6, rtol=0)
    grads = torch.autograd.grad(out.sum() + h_n.sum(), [x, *gru.parameters()])
    ref_grads = torch.autograd.grad(ref_out.sum() + ref_h_n.sum(), [x, *gru.parameters()])
    for g, ref in zip(grads, ref_grads):
        torch.testing.assert_close(g, ref, atol=1e-5, rtol=0)
    assert grads[0][lengths[0]:, 0].abs().max() == 0  # padding gets no gradient


def test_first_position_over_padding():
    torch.manual_seed(0)
    gru = torch.nn.GRU(6, 5, bidirectional=True)
    lengths = torch.tensor([4, 9, 1, 9, 6])
    x = torch.randn(9, 5, 6)
    first = padded_gru.first_position(gru, x, lengths)
    full, _ = torch.nn.utils.rnn.pad_packed_sequence(gru(pack_padded_sequence(x, lengths, enforce_sorted=False))[0])
    torch.testing.assert_close(first, full[0], atol=1e-6, rtol=0)
