"""Review of session 34 (issue 28's options from outside): a frozen checkpoint's recorded
--layer-cache folder, when the checkpoint is loaded rather than trained, and a --layer-cache
folder that cannot be made, given to finetune.py or the comparison."""

import pytest
import torch

from fairseq_hire import RobertaHireModel
from fairseq_setup import build_trainer, finetune_args, save

pytestmark = pytest.mark.unit
HEAD = "sentence_classification_head"


def test_a_loaded_checkpoint_never_writes_the_layer_cache_its_configuration_names(rte_bin, tmp_path):
    """A checkpoint trained with --freeze-encoder --layer-cache DIR records DIR. Loaded through
    the hub (or fairseq-validate), a forward on rows of a split the task loaded built a cache
    there: the checkpoint's configuration decided where files were written (a folder of the
    machine that trained it: absent, read-only or someone else's here). A loaded checkpoint runs
    its encoder, as the scripts' hub always did."""
    recorded = tmp_path / "recorded-cache"
    trainer = build_trainer(finetune_args(rte_bin, extra=["--freeze-encoder", "--layer-cache", str(recorded)]))
    save(trainer, tmp_path / "model" / "checkpoint_best.pt", {"epoch": 1})
    hub = RobertaHireModel.from_pretrained(str(tmp_path / "model"), "checkpoint_best.pt",
                                           data_name_or_path=str(rte_bin))
    assert hub.model.args.layer_cache == str(recorded) and hub.model.frozen_encoder
    hub.task.load_dataset("valid")  # a hub user scoring the binarised dev split
    iterator = hub.task.get_batch_iterator(hub.task.dataset("valid"), max_sentences=16)
    batch = next(iter(iterator.next_epoch_itr(shuffle=False)))
    with torch.no_grad():
        logits, _ = hub.model(**batch["net_input"], classification_head_name=HEAD)
        features, extra = hub.model.encoder(batch["net_input"]["src_tokens"], features_only=True,
                                            return_all_hiddens=True)
        expected, _ = hub.model.classification_heads[HEAD](extra["inner_states"], features.transpose(0, 1),
                                                           batch["net_input"]["src_tokens"].eq(1))
    assert not recorded.exists()
    assert torch.equal(logits, expected)
