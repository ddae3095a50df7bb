"""HIRE: the HIdden Representation Extractor and fusion layer, in plain PyTorch, and the
simpler multi-layer heads it is compared with, as options of the same head.

Yang and Zhao, "Deepening Hidden Representations from Pre-trained Language Models"
(arXiv 1911.01940). The method, the choices the paper leaves open and the flag of each are
in docs/METHOD.md; the options themselves are defined once, in ``options.HireOptions``.

Notation: L encoder layers, J scored layers (L, or L + 1 with the embedding output),
B examples, T positions, C = d hidden size, h GRU size per direction, k = last_k. Tensors
are time-major, ``T x B x C``, as inside fairseq's encoder. ``padding_mask`` is ``B x T``,
True at padding.

    Optional layer norm (layer_norm), per example b and scored layer j, over the real
    tokens t and all channels c (AllenNLP ScalarMix's do_layer_norm, one example at a time):
        H_j <- (H_j - mean_{t,c} H_j) / sqrt(var_{t,c} H_j + 1e-12)
    Extractor, giving A and the layer weights alpha (B x J):
      "gru" (HIRE), for every scored layer j with output H_j (T x B x C):
        u_j   = [fwd_T ; bwd_1] of BiGRU_2layer(H_j)       B x 2h  (last real token, padding-aware)
        s_j   = w . u_j + b                                B
        alpha = softmax_j(s)                               B x J   (per example)
        A     = sum_j alpha_j H_j                          T x B x C
      "scalar-mix" (ELMo / AllenNLP ScalarMix): alpha = softmax(w), shared by all examples,
        A = gamma * sum_j alpha_j H_j                      T x B x C
      "mean": A = mean of H_{J-k+1} .. H_J                 T x B x C   (alpha = 1/k on those)
      "concat": A = [H_{J-k+1} ; ... ; H_J]                T x B x kC  (alpha = 1/k on those)
    Fusion (fusion), with R the final encoder output (T x B x C):
        M = [R ; A ; R + A ; R * A]                        T x B x 4C
        F = BiGRU_1layer(M)                                T x B x 2h
      without fusion F = A.
    Pooling of F over the real tokens ("first" = <s>, "mean", "max", "mean-max" = [mean ; max]),
    then RoBERTa's head shape: dropout -> dense(P, d) -> tanh -> dropout -> out_proj(d, K).

The stock RoBERTa head is the case "mean" over the last k = 1 layer without fusion:
A = R, and the head reads R at <s>, as fairseq's RobertaClassificationHead does.

Padding never influences a result: sequences are compacted so that real tokens come
first (a no-op for fairseq's right-padded batches), every GRU gives exactly what it gives
on packed sequences of the real tokens only, the layer norm's statistics and the pooling
use the real tokens only. How the GRUs run is chosen once per forward (``gru_backends``):
packed sequences on CPU, plain calls over the padding on GPU. With pooling "first" only
F's first position is computed (``HireHead.forward``): without fusion A[0]; with it, one
step of the fusion GRU's forward direction and the final state of its backward direction.
"""
from dataclasses import replace
from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from . import gru_backends
from .gru_backends import GruBackend
from .options import HireOptions

LAYER_NORM_EPS = 1e-12  # AllenNLP ScalarMix's


def compact_padding(
    states: Sequence[torch.Tensor], padding_mask: Optional[torch.Tensor]
) -> Tuple[list, torch.Tensor]:
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


def weighted_sum(alpha: torch.Tensor, layers: torch.Tensor) -> torch.Tensor:
    """A = sum_j alpha_j H_j: alpha B x J, layers T x J x B x C -> T x B x C."""
    return torch.einsum("bj,tjbc->tbc", alpha, layers)


def normalise_layers(layers: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each example's layer j scaled to mean 0, variance 1 over its real tokens and all
    channels: T x J x B x C (right-padded) -> the same shape."""
    T, _, _, C = layers.shape
    real = lengths_mask(lengths, T, layers.device)[:, None, :, None].to(layers.dtype)  # T x 1 x B x 1
    count = (lengths.to(layers.device, layers.dtype) * C).view(1, 1, -1, 1)
    mean = (layers * real).sum(dim=(0, 3), keepdim=True) / count
    variance = (((layers - mean) * real) ** 2).sum(dim=(0, 3), keepdim=True) / count
    return (layers - mean) / torch.sqrt(variance + LAYER_NORM_EPS)


class GruExtractor(nn.Module):
    """Per-example layer weights from a 2-layer BiGRU summary of each layer.

    One GRU, shared by all layers, runs over the J layers at once as a batch of J*B
    sequences.
    """

    def __init__(self, embed_dim: int, hidden_dim: int, num_layers: int):
        super().__init__()
        self.num_layers = num_layers
        self.output_dim = embed_dim
        self.gru = nn.GRU(embed_dim, hidden_dim, num_layers=2, bidirectional=True)
        self.score = nn.Linear(2 * hidden_dim, 1)
        nn.init.normal_(self.score.weight, std=0.02)
        nn.init.zeros_(self.score.bias)

    def forward(
        self, layers: torch.Tensor, lengths: torch.Tensor, backend: GruBackend
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """layers: T x J x B x C (right-padded), lengths: (B,) -> A: T x B x C, alpha: B x J."""
        T, J, B, C = layers.shape
        # (2 layers * 2 directions) x J*B x h
        h_n = backend.final_states(self.gru, layers.reshape(T, J * B, C), lengths.repeat(J))
        summary = torch.cat([h_n[-2], h_n[-1]], dim=-1)  # top layer: forward, backward
        scores = self.score(summary).view(J, B)
        alpha = scores.float().softmax(dim=0).to(layers.dtype).t()
        return weighted_sum(alpha, layers), alpha


class ScalarMixExtractor(nn.Module):
    """ELMo-style global layer weights: alpha = softmax(w), the same for every example."""

    def __init__(self, embed_dim: int, num_layers: int):
        super().__init__()
        self.num_layers = num_layers
        self.output_dim = embed_dim
        self.scalar_weights = nn.Parameter(torch.zeros(num_layers))
        self.gamma = nn.Parameter(torch.ones(1))

    def forward(
        self, layers: torch.Tensor, lengths: torch.Tensor, backend: GruBackend
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """layers: T x J x B x C -> A: T x B x C, alpha: B x J (identical rows)."""
        B = layers.shape[2]
        alpha = self.scalar_weights.float().softmax(dim=0).to(layers.dtype)
        alpha = alpha.unsqueeze(0).expand(B, -1)
        return self.gamma * weighted_sum(alpha, layers), alpha


class LastLayersExtractor(nn.Module):
    """The last k scored layers, averaged (T x B x C) or concatenated (T x B x kC); no
    parameters. alpha holds each layer's fixed share: 1/k on the last k, 0 elsewhere."""

    def __init__(self, embed_dim: int, num_layers: int, k: int, concat: bool):
        super().__init__()
        self.num_layers, self.k, self.concat = num_layers, k, concat
        self.output_dim = embed_dim * (k if concat else 1)

    def forward(
        self, layers: torch.Tensor, lengths: torch.Tensor, backend: GruBackend
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        T, J, B, C = layers.shape
        last = layers[:, J - self.k:]  # T x k x B x C
        A = last.permute(0, 2, 1, 3).reshape(T, B, self.k * C) if self.concat else last.mean(dim=1)
        alpha = layers.new_zeros(B, J)
        alpha[:, J - self.k:] = 1.0 / self.k
        return A, alpha


def build_extractor(options: HireOptions, embed_dim: int, gru_dim: int, num_layers: int) -> nn.Module:
    if options.extractor == "gru":
        return GruExtractor(embed_dim, gru_dim, num_layers)
    if options.extractor == "scalar-mix":
        return ScalarMixExtractor(embed_dim, num_layers)
    return LastLayersExtractor(embed_dim, num_layers, options.last_k, concat=options.extractor == "concat")


class FusionLayer(nn.Module):
    """F = BiGRU([R ; A ; R + A ; R * A]) over the real tokens; zeros at padding."""

    def __init__(self, embed_dim: int, hidden_dim: int):
        super().__init__()
        self.gru = nn.GRU(4 * embed_dim, hidden_dim, num_layers=1, bidirectional=True)

    def forward(self, R: torch.Tensor, A: torch.Tensor, lengths: torch.Tensor, backend: GruBackend,
                first_only: bool = False) -> torch.Tensor:
        """R, A: T x B x C (right-padded) -> F: T x B x 2h, or F[0]: B x 2h if first_only."""
        M = torch.cat([R, A, R + A, R * A], dim=-1)
        if first_only:
            return backend.first_position(self.gru, M, lengths)
        return backend.outputs(self.gru, M, lengths)[0]


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
    """Extractor + optional fusion + pooling + RoBERTa-shaped classification head.

    Args:
        embed_dim: d, the encoder's hidden size.
        num_encoder_layers: L.
        num_classes: K (1 for regression).
        options: a HireOptions; keyword arguments named like its fields override it
            (``HireHead(d, L, K, extractor="scalar-mix", pooling="mean")``).
        inner_dim: size of the head's dense layer (RoBERTa: d).
        pooler_dropout: dropout before dense and before out_proj.
        activation_fn: the dense layer's activation (RoBERTa: tanh).
        gru_backend: "auto", "packed" or "padded" (``gru_backends``); results are the same.
    """

    def __init__(
        self,
        embed_dim: int,
        num_encoder_layers: int,
        num_classes: int,
        options: Optional[HireOptions] = None,
        inner_dim: Optional[int] = None,
        pooler_dropout: float = 0.0,
        activation_fn: Callable[[torch.Tensor], torch.Tensor] = torch.tanh,
        gru_backend: str = "auto",
        **option_values,
    ):
        super().__init__()
        self.options = options = replace(options or HireOptions(), **option_values)
        gru_backends.choose(gru_backend, torch.device("cpu"))  # refuse an unknown name now
        self.gru_backend = gru_backend
        gru_dim = options.gru_dim or embed_dim // 2
        inner_dim = inner_dim or embed_dim
        num_scored = options.scored_layers(num_encoder_layers)
        self.extractor = build_extractor(options, embed_dim, gru_dim, num_scored)
        self.fusion = FusionLayer(embed_dim, gru_dim) if options.fusion else None
        features_dim = 2 * gru_dim if options.fusion else self.extractor.output_dim
        pooled_dim = features_dim * (2 if options.pooling == "mean-max" else 1)
        self.dropout = nn.Dropout(pooler_dropout)
        self.dense = nn.Linear(pooled_dim, inner_dim)
        self.activation_fn = activation_fn
        self.out_proj = nn.Linear(inner_dim, num_classes)
        if options.classifier_init == "normal":
            for linear in (self.dense, self.out_proj):
                nn.init.normal_(linear.weight, std=0.02)
                nn.init.zeros_(linear.bias)

    @property
    def pooling(self) -> str:
        return self.options.pooling

    @property
    def first_scored_layer(self) -> int:
        """Index in ``inner_states`` of the first scored layer (0 = embedding output)."""
        return 0 if self.options.include_embeddings else 1

    def mix(
        self,
        inner_states: Sequence[torch.Tensor],
        final: torch.Tensor,
        padding_mask: Optional[torch.Tensor],
        backend: GruBackend,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> R and A (T' x B x C, real tokens first), lengths (B,), alpha (B x J)."""
        scored = inner_states[self.first_scored_layer:]
        if len(scored) != self.extractor.num_layers:
            raise ValueError(
                f"HIRE expected {self.extractor.num_layers} layer outputs, got {len(scored)}"
            )
        (R, *scored), lengths = compact_padding([final, *scored], padding_mask)
        layers = torch.stack(scored, dim=1)  # T x J x B x C
        if self.options.layer_norm:
            layers = normalise_layers(layers, lengths)
        A, alpha = self.extractor(layers, lengths, backend)
        return R, A, lengths, alpha

    def combine(self, R: torch.Tensor, A: torch.Tensor, lengths: torch.Tensor, backend: GruBackend,
                first_only: bool = False) -> torch.Tensor:
        """F: the fusion of R and A, or A itself without fusion; T' x B x P, or B x P (F[0])."""
        if self.fusion is None:
            return A[0] if first_only else A
        return self.fusion(R, A, lengths, backend, first_only=first_only)

    def extract(
        self,
        inner_states: Sequence[torch.Tensor],
        final: torch.Tensor,
        padding_mask: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The representation the head pools, and the layer weights.

        Args:
            inner_states: L + 1 tensors T x B x C (embedding output, then each layer).
            final: R, the encoder's final output, T x B x C.
            padding_mask: B x T, True at padding, or None.
        Returns:
            F (T' x B x P, real tokens first, whatever the pooling), lengths (B,), alpha (B x J).
        """
        backend = gru_backends.choose(self.gru_backend, final.device)
        R, A, lengths, alpha = self.mix(inner_states, final, padding_mask, backend)
        return self.combine(R, A, lengths, backend), lengths, alpha

    def forward(
        self,
        inner_states: Sequence[torch.Tensor],
        final: torch.Tensor,
        padding_mask: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """-> logits (B x K), alpha (B x J). Equals pooling ``extract()``'s F, but with
        pooling "first" only F's first position is computed."""
        backend = gru_backends.choose(self.gru_backend, final.device)
        R, A, lengths, alpha = self.mix(inner_states, final, padding_mask, backend)
        if self.pooling == "first":
            pooled = self.combine(R, A, lengths, backend, first_only=True)
        else:
            pooled = pool(self.combine(R, A, lengths, backend), lengths, self.pooling)
        x = self.dropout(pooled)
        x = self.dropout(self.activation_fn(self.dense(x)))
        return self.out_proj(x), alpha
