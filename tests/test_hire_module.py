"""The pure-PyTorch HIRE module on its own: shapes, padding invariance, equality with a
plain reference implementation, gradients, determinism."""
import itertools
from dataclasses import asdict, replace

import pytest
import torch
import torch.nn.functional as F


from fairseq_hire.modules import hire
from fairseq_hire.modules.hire import HireHead, compact_padding
from fairseq_hire.modules.options import HEADS, POOLINGS

pytestmark = pytest.mark.unit  # the fast tier: make test-unit

EXTRACTORS = ("gru", "scalar-mix")  # the extractors HIRE's fusion layer runs with

C, L, K = 16, 3, 3


def make_head(seed=0, **kwargs):
    torch.manual_seed(seed)
    return HireHead(embed_dim=C, num_encoder_layers=L, num_classes=K, **{"gru_dim": 8, **kwargs}).eval()


def random_sequences(lengths, seed=1):
    """One list of L + 1 states (T_i x C) per example, with R = the last state."""
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(n, C, generator=g) for _ in range(L + 1)] for n in lengths]


def batch(sequences, left_pad=False, extra_pad=0):
    """Pad examples into L + 1 tensors T x B x C and a B x T padding mask; padding holds
    garbage so that any leak shows."""
    T = max(seq[0].shape[0] for seq in sequences) + extra_pad
    B = len(sequences)
    states = [torch.full((T, B, C), 1e3) for _ in range(L + 1)]
    mask = torch.ones(B, T, dtype=torch.bool)
    for b, seq in enumerate(sequences):
        n = seq[0].shape[0]
        span = slice(T - n, T) if left_pad else slice(0, n)
        mask[b, span] = False
        for j in range(L + 1):
            states[j][span, b] = seq[j]
    return states, mask


def run(head, sequences, **kwargs):
    states, mask = batch(sequences, **kwargs)
    return head(states, states[-1], mask)


def reference(head, sequence):
    """A head for one unpadded example, written as plainly as possible: one GRU call per
    layer, no packing, no batching."""
    options = head.options
    layers = sequence[head.first_scored_layer:]
    if options.layer_norm:
        layers = [(H - H.mean()) / torch.sqrt(H.var(unbiased=False) + 1e-12) for H in layers]
    R = sequence[-1]
    J, k = len(layers), options.last_k
    if options.extractor == "gru":
        scores = []
        for H in layers:
            _, h_n = head.extractor.gru(H.unsqueeze(1))
            u = torch.cat([h_n[-2, 0], h_n[-1, 0]])
            scores.append(head.extractor.score(u))
        alpha = torch.cat(scores).softmax(0)
        A = sum(a * H for a, H in zip(alpha, layers))
    elif options.extractor == "scalar-mix":
        alpha = head.extractor.scalar_weights.softmax(0)
        A = head.extractor.gamma * sum(a * H for a, H in zip(alpha, layers))
    else:
        alpha = torch.tensor([0.0] * (J - k) + [1.0 / k] * k)
        A = torch.cat(layers[-k:], dim=-1) if options.extractor == "concat" else sum(layers[-k:]) / k
    if head.fusion is not None:
        M = torch.cat([R, A, R + A, R * A], dim=-1)
        fused, _ = head.fusion.gru(M.unsqueeze(1))
        fused = fused[:, 0]
    else:
        fused = A
    pooled = {
        "first": fused[0],
        "mean": fused.mean(0),
        "max": fused.max(0).values,
        "mean-max": torch.cat([fused.mean(0), fused.max(0).values]),
    }[options.pooling]
    logits = head.out_proj(torch.tanh(head.dense(pooled)))
    return logits, alpha


CONFIGS = [
    dict(extractor=e, pooling=p, include_embeddings=i)
    for e, p, i in itertools.product(EXTRACTORS, POOLINGS, (False, True))
]
# every head HIRE is compared with (k = 2 of the 3 test layers for the last-k heads)
PRESETS = {name: asdict(replace(preset.options, last_k=min(preset.options.last_k, 2)))
           for name, preset in HEADS.items()}
HEAD_CONFIGS = [dict(PRESETS[name], pooling=p) for name, p in itertools.product(PRESETS, POOLINGS)]
ALL_CONFIGS = CONFIGS + HEAD_CONFIGS


def config_id(config):
    return "-".join(map(str, config.values()))


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=config_id)
def test_shapes(config):
    head = make_head(**config)
    states, mask = batch(random_sequences([5, 9, 2]))
    logits, alpha = head(states, states[-1], mask)
    assert logits.shape == (3, K)
    assert alpha.shape == (3, L + int(config["include_embeddings"]))
    torch.testing.assert_close(alpha.sum(-1), torch.ones(3))
    fused, lengths, _ = head.extract(states, states[-1], mask)
    assert fused.shape[:2] == (states[0].shape[0], 3)  # whatever the pooling
    assert lengths.tolist() == [5, 9, 2]


GRU_PATHS = {  # name: (gradients on, GRU backend)
    "step-loop-gru": (True, "packed"),
    "nn-gru": (False, "packed"),
    "over-padding": (True, "padded"),
    "over-padding-no-grad": (False, "padded"),
}


@pytest.mark.parametrize("path", GRU_PATHS)
@pytest.mark.parametrize("config", ALL_CONFIGS, ids=config_id)
def test_batched_padded_equals_plain_reference(config, path):
    """With gradients on CPU the GRUs run as a loop over packed steps (packed_gru), without
    them as nn.GRU on packed sequences; on GPU over the padding (padded_gru, chosen here on
    CPU, with and without gradients): each must equal one unpadded example at a time."""
    grad, backend = GRU_PATHS[path]
    head = make_head(gru_backend=backend, **config)
    sequences = random_sequences([7, 3, 11, 1, 6])
    for kwargs in (dict(), dict(left_pad=True), dict(extra_pad=4)):
        with torch.set_grad_enabled(grad):
            logits, alpha = run(head, sequences, **kwargs)
        for b, seq in enumerate(sequences):
            ref_logits, ref_alpha = reference(head, seq)
            assert (logits[b] - ref_logits).abs().max() <= 1e-5
            assert (alpha[b] - ref_alpha).abs().max() <= 1e-5


@pytest.mark.parametrize("config", [dict(extractor=e) for e in EXTRACTORS] + list(PRESETS.values()),
                         ids=["gru", "scalar-mix", *PRESETS])
def test_padding_invariance_alone_vs_in_batch(config):
    head = make_head(**{**config, "pooling": "mean-max"})
    sequences = random_sequences([4, 12, 8])
    together, together_alpha = run(head, sequences)
    for b, seq in enumerate(sequences):
        alone, alone_alpha = run(head, [seq])
        torch.testing.assert_close(together[b], alone[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(together_alpha[b], alone_alpha[0], atol=1e-5, rtol=0)


def test_padding_gets_no_gradient_and_parameters_do():
    head = make_head(pooling="mean").train()
    states, mask = batch(random_sequences([6, 3]))
    states = [s.clone().requires_grad_(True) for s in states]
    logits, _ = head(states, states[-1], mask)
    F.cross_entropy(logits, torch.tensor([0, 2])).backward()
    assert states[0].grad is None  # the embedding output is not scored by default
    for s in states[1:]:
        grad_at_padding = s.grad.transpose(0, 1)[mask]
        assert grad_at_padding.abs().max() == 0
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("config", [dict(extractor=e) for e in EXTRACTORS] + list(PRESETS.values()),
                         ids=["gru", "scalar-mix", *PRESETS])
def test_gradcheck_double(config):
    torch.manual_seed(0)
    head = HireHead(embed_dim=4, num_encoder_layers=2, num_classes=2,
                    **{**config, "gru_dim": 3, "pooling": "mean"}).double().eval()
    T, B = 4, 2
    mask = torch.tensor([[False] * 4, [False, False, False, True]])
    inputs = [torch.randn(T, B, 4, dtype=torch.double, requires_grad=True) for _ in range(3)]

    def fn(*xs):
        return head(list(xs), xs[-1], mask)[0]

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", PRESETS)
def test_every_head_trains_every_parameter_and_padding_gets_no_gradient(name):
    head = make_head(**{**PRESETS[name], "pooling": "mean"}).train()
    states, mask = batch(random_sequences([6, 3]))
    states = [s.clone().requires_grad_(True) for s in states]
    logits, _ = head(states, states[-1], mask)
    F.cross_entropy(logits, torch.tensor([0, 2])).backward()
    for s in states:
        if s.grad is not None:
            assert s.grad.transpose(0, 1)[mask].abs().max() == 0
    assert any(s.grad is not None and s.grad.abs().sum() > 0 for s in states)
    for param_name, p in head.named_parameters():
        if param_name == "extractor.score.bias":  # the softmax over layers ignores a shared shift
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, param_name


def test_extract_then_pool_equals_forward():
    """forward computes only F's first position for pooling "first"; extract() gives all of
    F whatever the pooling, and pooling it gives the same logits."""
    for config in (dict(), dict(fusion=False), dict(extractor="scalar-mix")):
        head = make_head(**config)
        states, mask = batch(random_sequences([7, 3, 11]))
        fused, lengths, alpha = head.extract(states, states[-1], mask)
        logits = head.out_proj(torch.tanh(head.dense(hire.pool(fused, lengths, "first"))))
        expected, expected_alpha = head(states, states[-1], mask)
        torch.testing.assert_close(logits, expected, atol=1e-6, rtol=0)
        assert torch.equal(alpha, expected_alpha)


def test_layer_norm_uses_each_examples_real_tokens():
    layers = torch.randn(5, 2, 3, 4)  # T x J x B x C
    lengths = torch.tensor([5, 2, 4])
    normalised = hire.normalise_layers(layers, lengths)
    for b, n in enumerate(lengths.tolist()):
        for j in range(2):
            real = normalised[:n, j, b]
            torch.testing.assert_close(real.mean(), torch.tensor(0.0), atol=1e-6, rtol=0)
            torch.testing.assert_close(real.var(unbiased=False), torch.tensor(1.0), atol=1e-5, rtol=0)


def test_last_layers_heads_weigh_the_last_k_layers():
    states, mask = batch(random_sequences([4, 6]))
    for extractor in ("mean", "concat"):
        head = make_head(extractor=extractor, last_k=2, fusion=False)
        fused, _, alpha = head.extract(states, states[-1], mask)
        torch.testing.assert_close(alpha, torch.tensor([[0.0, 0.5, 0.5]] * 2))
        if extractor == "concat":
            assert fused.shape[-1] == 2 * C
            assert torch.equal(fused[:, :, :C], states[2]) and torch.equal(fused[:, :, C:], states[3])
        else:
            torch.testing.assert_close(fused, (states[2] + states[3]) / 2)


def test_stock_head_reads_the_last_layer_at_the_first_position():
    head = make_head(**PRESETS["stock"])
    states, mask = batch(random_sequences([4, 6]))
    logits, _ = head(states, states[-1], mask)
    assert torch.equal(logits, head.out_proj(torch.tanh(head.dense(states[-1][0]))))
    assert sorted(name for name, _ in head.named_parameters()) == [
        "dense.bias", "dense.weight", "out_proj.bias", "out_proj.weight"]


def test_determinism():
    sequences = random_sequences([5, 8])
    a = run(make_head(seed=3), sequences)
    b = run(make_head(seed=3), sequences)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    head = make_head(seed=3)
    assert torch.equal(run(head, sequences)[0], run(head, sequences)[0])


def test_scalar_mix_weights_are_global():
    head = make_head(extractor="scalar-mix")
    with torch.no_grad():
        head.extractor.scalar_weights.copy_(torch.tensor([0.0, 1.0, 2.0]))
    _, alpha = run(head, random_sequences([3, 7]))
    expected = torch.tensor([0.0, 1.0, 2.0]).softmax(0)
    torch.testing.assert_close(alpha, expected.expand(2, -1))


def test_gru_extractor_weights_depend_on_the_example():
    head = make_head()
    with torch.no_grad():
        head.extractor.score.weight.normal_(std=1.0)
    _, alpha = run(head, random_sequences([5, 5], seed=4))
    assert (alpha[0] - alpha[1]).abs().max() > 1e-3


def test_compact_padding_moves_real_tokens_first():
    x = torch.arange(8.0).view(4, 2, 1)  # T=4, B=2
    mask = torch.tensor([[True, False, False, True], [False, False, True, True]])
    (compact,), lengths = compact_padding([x], mask)
    assert lengths.tolist() == [2, 2]
    assert compact[:2, 0, 0].tolist() == [2.0, 4.0]
    assert compact[:2, 1, 0].tolist() == [1.0, 3.0]


def test_rejects_bad_configuration_and_empty_example():
    with pytest.raises(ValueError, match="pooling"):
        HireHead(C, L, K, pooling="cls")
    with pytest.raises(ValueError, match="extractor"):
        HireHead(C, L, K, extractor="attention")
    with pytest.raises(ValueError, match="--hire-gru-dim -1"):
        HireHead(C, L, K, gru_dim=-1)
    with pytest.raises(ValueError, match="--hire-last-k 4: the head scores only 3 layers"):
        HireHead(C, L, K, extractor="mean", fusion=False, last_k=4)
    with pytest.raises(ValueError, match="--no-hire-fusion"):
        HireHead(C, L, K, extractor="concat")
    with pytest.raises(ValueError, match="GRU backend"):
        HireHead(C, L, K, gru_backend="cudnn")
    head = make_head()
    states, mask = batch(random_sequences([3, 2]))
    mask[1] = True
    with pytest.raises(ValueError, match="only of padding"):
        head(states, states[-1], mask)
    with pytest.raises(ValueError, match="layer outputs"):
        head(states[:-1], states[-1], None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("config", ALL_CONFIGS, ids=config_id)
def test_gpu_equals_cpu(config, monkeypatch):
    """On GPU the GRUs run over the padding in cuDNN: outputs and gradients must equal the
    CPU's (rounding only: TF32 is turned off)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    states, mask = batch(random_sequences([7, 3, 11, 1, 6]), extra_pad=4)
    results = []
    for device in ("cpu", "cuda"):
        head = make_head(**config).to(device)
        inputs = [s.detach().to(device).requires_grad_(True) for s in states]
        logits, alpha = head(inputs, inputs[-1], mask.to(device))
        (logits.sum() + alpha[:, 0].sum()).backward()
        results.append([logits, alpha, inputs[-1].grad, *(p.grad for p in head.parameters())])
    for cpu, gpu in zip(*results):
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
    assert results[1][2][mask.t().cuda()].abs().max() == 0  # padding gets no gradient
