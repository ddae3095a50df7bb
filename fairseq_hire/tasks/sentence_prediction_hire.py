"""sentence_prediction_hire: fairseq's sentence_prediction task, as the plugin's runs use it.

Every recipe (finetune.py, the comparison, the Hydra YAMLs) trains with this task. It is
fairseq's SentencePredictionTask (the same data, dictionaries, options and model building)
with these additions, for the runs that use it and no other:

1. ``build_model`` records the head's classes in the task state fairseq saves in every
   checkpoint, or refuses data whose classes differ from those a checkpoint recorded
   (``head_classes``); for training, it refuses a Hydra ``model.*`` key the model does not read
   (``roberta_hire.check_hydra_model_keys``) and roberta_hire's encoder options given to
   another model, which would ignore them (``roberta_hire.check_encoder_options``); loaded from
   a checkpoint, the model reads no layer cache (the folder recorded is the training run's);
2. its batch iterators keep the last, smaller batch that fairseq's ``batch_by_size`` drops when
   its size is not a multiple of ``--required-batch-size-multiple`` (``RemainderKeepingDataset``):
   validation scores every example (the recipes also set the multiple to 1, as fairseq's GLUE
   recipe does);
3. set up for training (fairseq-train, fairseq-hydra-train: not from a checkpoint), it installs
   the run's checkpoint hooks (``checkpoints.saving``): safe loading for --finetune-from-model,
   --restore-file and resuming, atomic saving, the repair of a corrupt checkpoint_last.pt and
   the finished-run check;
4. a --layer-cache is opened (and built) as each epoch begins, before fairseq's batch thread
   starts, so that a folder in the way ends the run with its one-line error.
"""
from dataclasses import dataclass
from typing import Dict

import numpy as np
from fairseq.data import BaseWrapperDataset, FairseqDataset
from fairseq.tasks import register_task
from fairseq.tasks.sentence_prediction import SentencePredictionConfig, SentencePredictionTask

from ..checkpoints import saving
from ..checkpoints.head_classes import record_or_check
from ..models.layer_cache import drop_layer_cache
from ..models.roberta_hire import check_encoder_options, check_hydra_model_keys
from ..patches import one_line_refusals

TASK_NAME = "sentence_prediction_hire"


class RemainderKeepingDataset(BaseWrapperDataset):
    """A dataset whose batches cover every example. fairseq main's batch_by_size drops the last
    batch when its size is not a multiple of required_batch_size_multiple (60 validation examples
    at batch 16 and the default multiple 8 are scored on 56); batches are consecutive slices of
    the ordered indices, so what it dropped is their tail, kept here as one more batch."""

    def batch_by_size(self, indices, max_tokens=None, max_sentences=None, required_batch_size_multiple=1):
        batches = super().batch_by_size(indices, max_tokens, max_sentences, required_batch_size_multiple)
        covered = sum(len(batch) for batch in batches)
        if covered < len(indices):
            batches = list(batches) + [np.asarray(indices[covered:], dtype=np.int64)]
        return batches

    @property
    def supports_fetch_outside_dataloader(self):
        return self.dataset.supports_fetch_outside_dataloader


@dataclass
class SentencePredictionHireConfig(SentencePredictionConfig):
    """fairseq's sentence_prediction options, all of them and no other."""


@register_task(TASK_NAME, dataclass=SentencePredictionHireConfig)
class SentencePredictionHireTask(SentencePredictionTask):
    def __init__(self, cfg, data_dictionary, label_dictionary):
        super().__init__(cfg, data_dictionary, label_dictionary)
        # one wrapper per dataset, so that fairseq's cache of epoch iterators (keyed by dataset) holds
        self.remainder_keeping: Dict[FairseqDataset, RemainderKeepingDataset] = {}

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        if not kwargs.get("from_checkpoint", False):  # a run that trains (fairseq_cli.train's main)
            saving.install(cls)
            one_line_refusals.install()
        return super().setup_task(cfg, **kwargs)

    @classmethod
    def for_planning(cls, cfg):
        """The task as a run sets it up, without the run's checkpoint hooks: finetune.py counts
        the batches of the runs it plans with it (``workflow.epoch_batches``)."""
        return super().setup_task(cfg)

    def build_model(self, cfg, from_checkpoint=False):
        record_or_check(self)
        if not from_checkpoint:
            check_hydra_model_keys(cfg)
        model = super().build_model(cfg, from_checkpoint)
        if not from_checkpoint:  # a run that trains; a checkpoint already trained is loaded as it is
            check_encoder_options(cfg, model)
        else:  # its recorded --layer-cache folder is the training machine's
            drop_layer_cache(model)
        return model

    def begin_epoch(self, epoch, model):
        """Open (and build) a --layer-cache before the epoch's first batch: a folder in the way then
        ends the run in the main thread, before fairseq's batch thread starts; raised while that
        thread runs, the error could end the process in a C++ abort instead of its one line."""
        super().begin_epoch(epoch, model)
        if getattr(model, "layer_cache", None) is not None:
            model.layer_cache.update()

    def get_batch_iterator(self, dataset, *args, **kwargs):
        if dataset not in self.remainder_keeping:
            self.remainder_keeping[dataset] = RemainderKeepingDataset(dataset)
        return super().get_batch_iterator(self.remainder_keeping[dataset], *args, **kwargs)
