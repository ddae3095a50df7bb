"""roberta_hire inside fairseq: checkpoint restoring (original format, fine-tuned, MNLI
initialisation), safe loading, refusing layerdrop, padding invariance of the whole model."""
import logging
import pickle

import numpy as np
import pytest
import torch
from fairseq.data import data_utils

from fairseq_hire.checkpoints.loading import UnsafeCheckpointError, safe_torch_load
from fairseq_hire.modules.hire import HireHead
from fairseq_setup import build_trainer, finetune_args, restore, save, write_task_dicts
from roberta_checkpoints import write_original_roberta_checkpoint

pytestmark = pytest.mark.unit  # the fast tier: make test-unit

HEAD = "sentence_classification_head"
MNLI_LABELS = ("entailment", "neutral", "contradiction")


@pytest.fixture(autouse=True)
def no_unsafe_loading(monkeypatch):
    monkeypatch.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", raising=False)


@pytest.fixture
def rte_dir(tmp_path):
    return write_task_dicts(tmp_path / "RTE-bin")


@pytest.fixture
def mnli_dir(tmp_path):
    return write_task_dicts(tmp_path / "MNLI-bin", labels=MNLI_LABELS)


@pytest.fixture
def original_checkpoint(tmp_path, rte_dir):
    path = tmp_path / "roberta" / "model.pt"
    path.parent.mkdir()
    state = write_original_roberta_checkpoint(path, rte_dir / "input0" / "dict.txt")
    return path, state


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def perturb(model, seed=7):
    """Stand-in for fine-tuning: move every parameter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


def test_original_checkpoint_loads_bit_for_bit(original_checkpoint, rte_dir):
    path, original = original_checkpoint
    trainer = build_trainer(finetune_args(rte_dir))
    model = trainer.model
    fresh_head = snapshot(model.classification_heads[HEAD])
    restore(trainer, path)
    state = model.state_dict()
    for key, value in original.items():
        if key.endswith(".version"):
            continue
        new_key = "encoder" + key[len("decoder"):]
        new_key = new_key.replace(".emb_layer_norm.", ".layernorm_embedding.")
        assert torch.equal(state[new_key], value), key
    # every encoder and LM-head parameter came from the checkpoint, none was left out
    loaded = {"encoder" + k[len("decoder"):].replace(".emb_layer_norm.", ".layernorm_embedding.")
              for k in original}
    for key in state:
        assert key.startswith("classification_heads.") or key in loaded, key
    # every HIRE parameter is the fresh initialisation
    head = model.classification_heads[HEAD]
    assert isinstance(head, HireHead)
    for key, value in head.state_dict().items():
        assert torch.equal(value, fresh_head[key]), key


def test_original_checkpoint_with_unknown_key_is_not_silently_dropped(tmp_path, original_checkpoint, rte_dir):
    path, _ = original_checkpoint
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["model"]["decoder.sentence_encoder.mystery.weight"] = torch.zeros(3)
    torch.save(checkpoint, tmp_path / "odd.pt")
    trainer = build_trainer(finetune_args(rte_dir))
    with pytest.raises(Exception, match="Cannot load model parameters"):
        restore(trainer, tmp_path / "odd.pt")


def test_finetuned_checkpoint_restores_exactly(tmp_path, rte_dir):
    trainer = build_trainer(finetune_args(rte_dir, extra=["--save-dir", str(tmp_path / "ckpt")]))
    perturb(trainer.model)
    saved = snapshot(trainer.model)
    save(trainer, tmp_path / "finetuned.pt", {"epoch": 1, "best": np.float64(71.5)})
    other = build_trainer(finetune_args(rte_dir))
    extra = restore(other, tmp_path / "finetuned.pt")
    assert extra["best"] == 71.5
    restored = other.model.state_dict()
    assert restored.keys() == saved.keys()
    for key, value in saved.items():
        assert torch.equal(restored[key], value), key


@pytest.mark.parametrize("arch", ["roberta_hire_base", "roberta_base"])
def test_mnli_checkpoint_into_rte_starts_the_head_fresh_as_fairseq_does(tmp_path, rte_dir, mnli_dir, caplog, arch):
    """A head of other classes starts fresh entirely, HIRE's (extractor and fusion included) as
    fairseq's RoBERTa drops the stock head (--baseline): every head of an --mnli-init comparison
    starts from the same kind of state."""
    mnli = build_trainer(finetune_args(mnli_dir, arch=arch, num_classes=3))
    perturb(mnli.model)
    mnli_state = snapshot(mnli.model)
    save(mnli, tmp_path / "mnli.pt", {"epoch": 1})

    rte = build_trainer(finetune_args(rte_dir, arch=arch, num_classes=2))
    fresh_head = snapshot(rte.model.classification_heads[HEAD])
    with caplog.at_level(logging.INFO):
        restore(rte, tmp_path / "mnli.pt")
    for key, value in rte.model.state_dict().items():
        if key.startswith("classification_heads."):
            assert torch.equal(value, fresh_head[key.split(f"{HEAD}.")[1]]), key
        else:
            assert torch.equal(value, mnli_state[key]), key
    if arch == "roberta_hire_base":
        assert "differs from this model's in out_proj.bias, out_proj.weight" in caplog.text
        assert "it starts fresh" in caplog.text


def test_mnli_stock_roberta_checkpoint_into_hire_rte(tmp_path, rte_dir, mnli_dir, caplog):
    mnli = build_trainer(finetune_args(mnli_dir, arch="roberta_base", num_classes=3))
    perturb(mnli.model)
    mnli_state = snapshot(mnli.model)
    save(mnli, tmp_path / "mnli-stock.pt", {"epoch": 1})

    rte = build_trainer(finetune_args(rte_dir))
    fresh_head = snapshot(rte.model.classification_heads[HEAD])
    with caplog.at_level(logging.WARNING):
        restore(rte, tmp_path / "mnli-stock.pt")
    for key, value in rte.model.state_dict().items():
        if key.startswith("classification_heads."):
            assert torch.equal(value, fresh_head[key.split(f"{HEAD}.")[1]]), key
        else:
            assert torch.equal(value, mnli_state[key]), key
    assert "stock RoBERTa head" in caplog.text


class FileCreatingPayload:
    """Unpickling this would call open(path, "w"): it creates a file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_hostile_checkpoint_is_refused_and_payload_never_runs(tmp_path, original_checkpoint, rte_dir):
    path, _ = original_checkpoint
    marker = tmp_path / "payload-ran"
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["extra_state"]["innocent_looking"] = FileCreatingPayload(marker)
    hostile = tmp_path / "hostile.pt"
    torch.save(checkpoint, hostile)
    assert not marker.exists()

    with pytest.raises(UnsafeCheckpointError, match="refusing to load checkpoint .*hostile.pt"):
        safe_torch_load(hostile)
    trainer = build_trainer(finetune_args(rte_dir))
    with pytest.raises(UnsafeCheckpointError, match="GLOBAL io.open"):
        restore(trainer, hostile)
    assert not marker.exists()
    assert isinstance(UnsafeCheckpointError("x"), pickle.UnpicklingError)


def test_fairseq_checkpoint_contents_load_safely(tmp_path, rte_dir):
    """A Hydra-era checkpoint (omegaconf cfg, numpy scalars) passes weights_only loading."""
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    args = finetune_args(rte_dir)
    payload = {"cfg": convert_namespace_to_omegaconf(args), "args": args,
               "extra_state": {"best": np.float64(1.5), "epoch": np.int64(2), "seen": np.arange(3)}}
    torch.save(payload, tmp_path / "contents.pt")
    loaded = safe_torch_load(tmp_path / "contents.pt")
    assert loaded["cfg"].model.encoder_layers == args.encoder_layers
    assert loaded["extra_state"]["best"] == 1.5


def test_encoder_layerdrop_is_refused(rte_dir):
    with pytest.raises(ValueError, match="encoder-layerdrop"):
        build_trainer(finetune_args(rte_dir, extra=["--encoder-layerdrop", "0.1"]))


def test_layernorm_eps_option(rte_dir):
    trainer = build_trainer(finetune_args(rte_dir, extra=["--encoder-layernorm-eps", "1e-12"]))
    norms = [m for m in trainer.model.encoder.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(m.eps == 1e-12 for m in norms)
    default = build_trainer(finetune_args(rte_dir))
    assert all(m.eps == 1e-5 for m in default.model.encoder.modules() if isinstance(m, torch.nn.LayerNorm))


@pytest.mark.parametrize("pooling", ["first", "mean-max"])
def test_whole_model_padding_invariance(rte_dir, pooling):
    trainer = build_trainer(finetune_args(rte_dir, extra=["--hire-pooling", pooling]))
    model = trainer.model.eval()
    perturb(model)
    g = torch.Generator().manual_seed(0)
    sentences = [torch.cat([torch.tensor([0]), torch.randint(4, 50000, (n,), generator=g), torch.tensor([2])])
                 for n in (5, 17, 9)]
    with torch.no_grad():
        alone = [model(s.unsqueeze(0), classification_head_name=HEAD) for s in sentences]
        for left_pad in (False, True):
            tokens = data_utils.collate_tokens(sentences, pad_idx=1, left_pad=left_pad)
            logits, extra = model(tokens, classification_head_name=HEAD)
            for b, (single_logits, single_extra) in enumerate(alone):
                torch.testing.assert_close(logits[b], single_logits[0], atol=1e-5, rtol=0)
                torch.testing.assert_close(
                    extra["layer_weights"][b], single_extra["layer_weights"][0], atol=1e-5, rtol=0
                )


def test_forward_without_head_is_roberta(rte_dir):
    trainer = build_trainer(finetune_args(rte_dir))
    model = trainer.model.eval()
    tokens = torch.tensor([[0, 100, 200, 2]])
    lm_logits, extra = model(tokens)
    assert lm_logits.shape == (1, 4, len(trainer.task.source_dictionary))
    assert extra["inner_states"] is None


def test_stock_head_option_is_fairseqs_roberta_head(rte_dir):
    """--arch roberta_hire with the stock preset builds, initialises and computes exactly what
    --arch roberta_base does with the same seed: the comparison's baseline is fairseq's head."""
    from fairseq_hire.modules.options import HEADS

    torch.manual_seed(1)  # as fairseq-train seeds before building the model
    stock = build_trainer(finetune_args(rte_dir, arch="roberta_base")).model
    torch.manual_seed(1)
    hire = build_trainer(finetune_args(rte_dir, extra=HEADS["stock"].options.flags())).model
    stock_state, hire_state = stock.state_dict(), hire.state_dict()
    assert stock_state.keys() == hire_state.keys()
    for key, value in stock_state.items():
        assert torch.equal(value, hire_state[key]), key
    tokens = torch.tensor([[0, 100, 200, 300, 2], [0, 400, 2, 1, 1]])
    for model in (stock, hire):
        model.train()
    torch.manual_seed(3)
    stock_logits, _ = stock(tokens, classification_head_name=HEAD)
    torch.manual_seed(3)
    hire_logits, _ = hire(tokens, classification_head_name=HEAD)
    assert torch.equal(stock_logits, hire_logits)


def test_layernorm_eps_is_roberta_hires_own_option(rte_dir, capsys):
    """roberta_hire, with the stock head (the comparison's baseline) too, builds the epsilon it
    is given; fairseq's own roberta stays fairseq's: its parser has no such option."""
    from fairseq_hire.modules.options import HEADS

    for extra in ([], HEADS["stock"].options.flags()):
        trainer = build_trainer(finetune_args(rte_dir, extra=["--encoder-layernorm-eps", "1e-12", *extra]))
        norms = [m for m in trainer.model.encoder.modules() if isinstance(m, torch.nn.LayerNorm)]
        assert norms and all(m.eps == 1e-12 for m in norms)
    with pytest.raises(SystemExit):
        finetune_args(rte_dir, arch="roberta_base", extra=["--encoder-layernorm-eps", "1e-12"])
    assert "unrecognized arguments: --encoder-layernorm-eps" in capsys.readouterr().err
    stock = build_trainer(finetune_args(rte_dir, arch="roberta_base")).model
    assert {m.eps for m in stock.encoder.modules() if isinstance(m, torch.nn.LayerNorm)} == {1e-5}


@pytest.mark.parametrize("value", ["-1", "0", "nan"])
def test_layernorm_eps_must_be_positive(rte_dir, value, capsys):
    with pytest.raises(SystemExit):
        finetune_args(rte_dir, extra=["--encoder-layernorm-eps", value])
    assert "--encoder-layernorm-eps" in capsys.readouterr().err


def test_fairseqs_head_flags_apply_to_the_hire_head(rte_dir):
    """--spectral-norm-classification-head and --quant-noise-pq act on out_proj exactly as on
    RoBERTa's own head (they used to be ignored)."""
    spectral = build_trainer(finetune_args(rte_dir, extra=["--spectral-norm-classification-head"])).model
    out_proj = spectral.classification_heads[HEAD].out_proj
    assert hasattr(out_proj, "weight_orig") and hasattr(out_proj, "weight_u")
    noisy = build_trainer(finetune_args(rte_dir, extra=["--quant-noise-pq", "0.1"])).model
    assert noisy.classification_heads[HEAD].out_proj._forward_pre_hooks
    with pytest.raises(ValueError, match="cannot be combined"):
        build_trainer(finetune_args(rte_dir, extra=["--spectral-norm-classification-head", "--quant-noise-pq", "0.1"]))
    tokens = torch.tensor([[0, 100, 200, 2]])
    logits, _ = spectral.eval()(tokens, classification_head_name=HEAD)
    assert logits.shape == (1, 2)


@pytest.mark.parametrize("flag, value", [("--hire-gru-dim", "-1"), ("--hire-last-k", "0"),
                                         ("--hire-extractor", "concat")])
def test_bad_hire_options_name_their_flag(rte_dir, flag, value):
    with pytest.raises(ValueError, match=flag):
        build_trainer(finetune_args(rte_dir, extra=[flag, value]))
