"""HIRE: the HIdden Representation Extractor and fusion layer, in plain PyTorch.

Yang and Zhao, "Deepening Hidden Representations from Pre-trained Language Models"
(arXiv 1911.01940); the choices the paper leaves open are documented in docs/HIRE.md and
each is a constructor argument here (a ``--hire-*`` flag in the fairseq model).

Notation: L encoder layers, J scored layers (L, or L + 1 with the embedding output),
B examples, T positions, C = d hidden size, h GRU size per direction. Tensors are
time-major, ``T x B x C``, as inside fairseq's encoder. ``padding_mask`` is ``B x T``,
True at padding.

    Extractor ("gru"), for every scored layer j with output H_j (T x B x C):
        u_j   = [fwd_T ; bwd_1] of BiGRU_2layer(H_j)       B x 2h  (last real token, padding-aware)
        s_j   = w . u_j + b                                B
        alpha = softmax_j(s)                               B x J   (per example)
        A     = sum_j alpha_j H_j                          T x B x C
    Extractor ("scalar-mix", ELMo / AllenNLP ScalarMix): alpha = softmax(w) shared by all
        examples, A = gamma * sum_j alpha_j H_j.
    Fusion, with R the final encoder output (T x B x C):
        M = [R ; A ; R + A ; R * A]                        T x B x 4C
        F = BiGRU_1layer(M)                                T x B x 2h
    Pooling of F over the real tokens ("first" = <s>, "mean", "max", "mean-max" = [mean ; max]),
    then RoBERTa's head shape: dropout -> dense(P, d) -> tanh -> dropout -> out_proj(d, K).

Padding never influences a result: sequences are compacted so that real tokens come
first (a no-op for fairseq's right-padded batches), every GRU gives exactly what it gives
on packed sequences of the real tokens only, and pooling ignores padding. How the GRUs run
depends on the device (``run_gru``):
  * CPU: on packed sequences, so no work is spent on padding; when training, as a loop over
    packed time steps with a hand-written backward (``packed_gru``), because PyTorch's CPU
    GRU backward grows faster than linearly with the sequence length (denormal floats).
  * GPU: over the padded batch in plain cuDNN calls, with each backward direction run on
    the sequences shifted to the end of the time axis (``padded_gru``); cuDNN's packed
    kernels are slower than that, and GPU cost is the number of steps, not the padding.
With pooling "first" only F's first position is computed: one step of the fusion GRU's
forward direction and the final state of its backward direction.
"""
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .packed_gru import bigru_first_position, gru_on_packed
from .padded_gru import bigru_first_position_over_padding, gru_over_padding

EXTRACTORS = ("gru", "scalar-mix")
POOLINGS = ("first", "mean", "max", "mean-max")


def compact_padding(
    states: Sequence[torch.Tensor], padding_mask: Optional[torch.Tensor]
) -> Tuple[List[torch.Tensor], torch.Tensor]:
    """Move every sequence's real tokens to the front (right padding).

    Args:
        states: tensors of shape T x B x *.
        padding_mask: B x T, True at padding, or None (no padding).
    Returns:
        the states with real tokens first, and the lengths (B,) as a CPU int64 tensor
        (what ``pack_padded_sequence`` wants).
    """
    T, B = states[0].shape[:2]
    if padding_mask is None:
        return list(states), torch.full((B,), T, dtype=torch.long)
    real = ~padding_mask
    lengths = real.sum(dim=1)
    if (lengths == 0).any():
        raise ValueError("HIRE got an example made only of padding")
    # right-padded already (fairseq's collater) when no real token follows a pad
    if not (padding_mask[:, :-1] & real[:, 1:]).any():
        return list(states), lengths.cpu()
    # stable sort puts real tokens (key 0) before padding (key 1), keeping their order
    order = torch.sort(padding_mask.to(torch.int8), dim=1, stable=True).indices.t()  # T x B
    gathered = []
    for x in states:
        index = order.reshape(T, B, *([1] * (x.dim() - 2))).expand_as(x)
        gathered.append(x.gather(0, index))
    return gathered, lengths.cpu()


def lengths_mask(lengths: torch.Tensor, T: int, device) -> torch.Tensor:
    """T x B mask, True at real tokens of right-padded sequences."""
    return torch.arange(T, device=device).unsqueeze(1) < lengths.to(device).unsqueeze(0)


def runs_over_padding(x: torch.Tensor) -> bool:
    """Whether the GRUs run over the padded batch (GPU) rather than on packed sequences (CPU)."""
    return x.is_cuda


def run_gru(gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``gru`` over right-padded x (T x N x I) as on packed sequences of the real tokens:
    -> output T x N x (directions * h), zero at padding, and h_n."""
    if runs_over_padding(x):
        return gru_over_padding(gru, x, lengths)
    out, h_n = gru_on_packed(gru, pack_padded_sequence(x, lengths, enforce_sorted=False))
    return pad_packed_sequence(out, total_length=x.shape[0])[0], h_n


def gru_final_states(gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Only h_n of ``run_gru`` (on CPU the padded output is never built)."""
    if runs_over_padding(x):
        return gru_over_padding(gru, x, lengths)[1]
    return gru_on_packed(gru, pack_padded_sequence(x, lengths, enforce_sorted=False))[1]


def bigru_first_output(gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Position 0 of ``run_gru``'s output for a 1-layer BiGRU, N x 2h, computed alone."""
    if runs_over_padding(x):
        return bigru_first_position_over_padding(gru, x, lengths)
    return bigru_first_position(gru, pack_padded_sequence(x, lengths, enforce_sorted=False), x[0])


def weighted_sum(alpha: torch.Tensor, layers: torch.Tensor) -> torch.Tensor:
    """A = sum_j alpha_j H_j: alpha B x J, layers T x J x B x C -> T x B x C."""
    return torch.einsum("bj,tjbc->tbc", alpha, layers)


class GruExtractor(nn.Module):
    """Per-example layer weights from a 2-layer BiGRU summary of each layer.

    One GRU, shared by all layers, runs over the J layers at once as a batch of J*B
    sequences.
    """

    def __init__(self, embed_dim: int, hidden_dim: int, num_layers: int):
        super().__init__()
        self.num_layers = num_layers
        self.gru = nn.GRU(embed_dim, hidden_dim, num_layers=2, bidirectional=True)
        self.score = nn.Linear(2 * hidden_dim, 1)
        nn.init.normal_(self.score.weight, std=0.02)
        nn.init.zeros_(self.score.bias)

    def forward(
        self, layers: torch.Tensor, lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """layers: T x J x B x C (right-padded), lengths: (B,) -> A: T x B x C, alpha: B x J."""
        T, J, B, C = layers.shape
        # (2 layers * 2 directions) x J*B x h
        h_n = gru_final_states(self.gru, layers.reshape(T, J * B, C), lengths.repeat(J))
        summary = torch.cat([h_n[-2], h_n[-1]], dim=-1)  # top layer: forward, backward
        scores = self.score(summary).view(J, B)
        alpha = scores.float().softmax(dim=0).to(layers.dtype).t()
        return weighted_sum(alpha, layers), alpha


class ScalarMixExtractor(nn.Module):
    """ELMo-style global layer weights: alpha = softmax(w), the same for every example."""

    def __init__(self, num_layers: int):
        super().__init__()
        self.num_layers = num_layers
        self.scalar_weights = nn.Parameter(torch.zeros(num_layers))
        self.gamma = nn.Parameter(torch.ones(1))

    def forward(
        self, layers: torch.Tensor, lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """layers: T x J x B x C -> A: T x B x C, alpha: B x J (identical rows)."""
        B = layers.shape[2]
        alpha = self.scalar_weights.float().softmax(dim=0).to(layers.dtype)
        alpha = alpha.unsqueeze(0).expand(B, -1)
        return self.gamma * weighted_sum(alpha, layers), alpha


class FusionLayer(nn.Module):
    """F = BiGRU([R ; A ; R + A ; R * A]) over the real tokens; zeros at padding."""

    def __init__(self, embed_dim: int, hidden_dim: int):
        super().__init__()
        self.gru = nn.GRU(4 * embed_dim, hidden_dim, num_layers=1, bidirectional=True)

    def forward(self, R: torch.Tensor, A: torch.Tensor, lengths: torch.Tensor,
                first_only: bool = False) -> torch.Tensor:
        """R, A: T x B x C (right-padded) -> F: T x B x 2h, or F[0]: B x 2h if first_only."""
        M = torch.cat([R, A, R + A, R * A], dim=-1)
        if first_only:
            return bigru_first_output(self.gru, M, lengths)
        return run_gru(self.gru, M, lengths)[0]


def pool(fused: torch.Tensor, lengths: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool F (T x B x P, right-padded) over real tokens -> B x P (2P for mean-max)."""
    if pooling == "first":
        return fused[0]
    real = lengths_mask(lengths, fused.shape[0], fused.device).unsqueeze(-1)
    mean = (fused * real).sum(dim=0) / lengths.to(fused.device, fused.dtype).unsqueeze(-1)
    if pooling == "mean":
        return mean
    maximum = fused.masked_fill(~real, float("-inf")).max(dim=0).values
    if pooling == "max":
        return maximum
    return torch.cat([mean, maximum], dim=-1)


class HireHead(nn.Module):
    """HIRE extractor + fusion + pooling + RoBERTa-shaped classification head.

    Args:
        embed_dim: d, the encoder's hidden size.
        num_encoder_layers: L.
        num_classes: K (1 for regression).
        gru_dim: h, GRU hidden size per direction (extractor and fusion); default d/2.
        inner_dim: size of the head's dense layer (RoBERTa: d).
        extractor: "gru" (per-example weights) or "scalar-mix" (global weights).
        include_embeddings: score the embedding output as a layer too (J = L + 1).
        pooling: one of POOLINGS.
        pooler_dropout: dropout before dense and before out_proj.
        activation_fn: the dense layer's activation (RoBERTa: tanh).
    """

    def __init__(
        self,
        embed_dim: int,
        num_encoder_layers: int,
        num_classes: int,
        gru_dim: Optional[int] = None,
        inner_dim: Optional[int] = None,
        extractor: str = "gru",
        include_embeddings: bool = False,
        pooling: str = "first",
        pooler_dropout: float = 0.0,
        activation_fn: Callable[[torch.Tensor], torch.Tensor] = torch.tanh,
    ):
        super().__init__()
        if extractor not in EXTRACTORS:
            raise ValueError(f"unknown HIRE extractor {extractor!r}; expected one of {EXTRACTORS}")
        if pooling not in POOLINGS:
            raise ValueError(f"unknown HIRE pooling {pooling!r}; expected one of {POOLINGS}")
        gru_dim = gru_dim or embed_dim // 2
        inner_dim = inner_dim or embed_dim
        self.include_embeddings = include_embeddings
        self.pooling = pooling
        num_scored = num_encoder_layers + int(include_embeddings)
        if extractor == "gru":
            self.extractor = GruExtractor(embed_dim, gru_dim, num_scored)
        else:
            self.extractor = ScalarMixExtractor(num_scored)
        self.fusion = FusionLayer(embed_dim, gru_dim)
        pooled_dim = 2 * gru_dim * (2 if pooling == "mean-max" else 1)
        self.dropout = nn.Dropout(pooler_dropout)
        self.dense = nn.Linear(pooled_dim, inner_dim)
        self.activation_fn = activation_fn
        self.out_proj = nn.Linear(inner_dim, num_classes)
        for linear in (self.dense, self.out_proj):
            nn.init.normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)

    @property
    def first_scored_layer(self) -> int:
        """Index in ``inner_states`` of the first scored layer (0 = embedding output)."""
        return 0 if self.include_embeddings else 1

    def extract(
        self,
        inner_states: Sequence[torch.Tensor],
        final: torch.Tensor,
        padding_mask: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Layer weights and fused representation.

        Args:
            inner_states: L + 1 tensors T x B x C (embedding output, then each layer).
            final: R, the encoder's final output, T x B x C.
            padding_mask: B x T, True at padding, or None.
        Returns:
            F (T' x B x 2h, real tokens first; with pooling "first" only F[0], B x 2h),
            lengths (B,), alpha (B x J).
        """
        scored = inner_states[self.first_scored_layer:]
        if len(scored) != self.extractor.num_layers:
            raise ValueError(
                f"HIRE expected {self.extractor.num_layers} layer outputs, got {len(scored)}"
            )
        (R, *scored), lengths = compact_padding([final, *scored], padding_mask)
        layers = torch.stack(scored, dim=1)  # T x J x B x C
        A, alpha = self.extractor(layers, lengths)
        return self.fusion(R, A, lengths, first_only=self.pooling == "first"), lengths, alpha

    def forward(
        self,
        inner_states: Sequence[torch.Tensor],
        final: torch.Tensor,
        padding_mask: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """-> logits (B x K), alpha (B x J)."""
        fused, lengths, alpha = self.extract(inner_states, final, padding_mask)
        x = self.dropout(fused if self.pooling == "first" else pool(fused, lengths, self.pooling))
        x = self.dropout(self.activation_fn(self.dense(x)))
        return self.out_proj(x), alpha
