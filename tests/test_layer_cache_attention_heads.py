"""The layer cache's encoder fingerprint and the number of attention heads. The
heads split the attention's projections without changing a weight's
shape, so one checkpoint loads into encoders of 2 or 4 heads (fairseq-train --finetune-from-model
builds the model from the command's --encoder-attention-heads, not the checkpoint's), and their
outputs differ. The fingerprint held the module tree, the weights, the LayerNorms and
activations, but not the heads: the second encoder read the first one's cached layers."""
import pytest
import torch

from fairseq_hire.models.layer_cache import encoder_fingerprint
from fairseq_setup import build_trainer, finetune_args, restore

pytestmark = pytest.mark.unit


def frozen_model(data, pretrained, cache, heads):
    trainer = build_trainer(finetune_args(data, extra=["--freeze-encoder", "--layer-cache", str(cache),
                                                       "--encoder-attention-heads", str(heads)]))
    restore(trainer, pretrained)
    with torch.no_grad():  # sharper attention than the random tiny encoder's near-uniform one
        for layer in trainer.model.encoder.sentence_encoder.layers:
            layer.self_attn.q_proj.weight.mul_(30)
    trainer.task.load_dataset("valid")
    trainer.model.eval()
    return trainer


def test_encoders_with_other_attention_heads_do_not_share_cached_layers(rte_bin, tiny_pretrained, tmp_path):
    two = frozen_model(rte_bin, tiny_pretrained, tmp_path / "cache", 2)
    four = frozen_model(rte_bin, tiny_pretrained, tmp_path / "cache", 4)
    encoders = [trainer.model.encoder.state_dict() for trainer in (two, four)]
    assert all(torch.equal(encoders[0][name], encoders[1][name]) for name in encoders[0])
    assert encoder_fingerprint(two.model.encoder.sentence_encoder) != \
        encoder_fingerprint(four.model.encoder.sentence_encoder)

    two.model.layer_cache.update()  # the 2-head encoder's entries of the valid rows
    iterator = four.task.get_batch_iterator(four.task.dataset("valid"), max_sentences=16)
    tokens = next(iter(iterator.next_epoch_itr(shuffle=False)))["net_input"]["src_tokens"]
    with torch.no_grad():
        cached, _ = four.model.layer_cache.lookup(tokens)
        computed = four.model.encoder(tokens, features_only=True)[0].transpose(0, 1)
        other = two.model.encoder(tokens, features_only=True)[0].transpose(0, 1)
    real = tokens.ne(1).t()
    assert (computed[real] - other[real]).abs().max() > 1e-3  # the heads change the outputs (100 times the tolerance below)
    torch.testing.assert_close(cached[real], computed[real], rtol=0, atol=1e-5)
