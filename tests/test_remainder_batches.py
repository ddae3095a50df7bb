"""The plugin's task keeps the last, smaller batch fairseq's batch_by_size drops
(fairseq_hire/tasks/sentence_prediction_hire.py); fairseq's own tasks keep fairseq's batches."""
import numpy as np
import pytest
from fairseq import tasks
from fairseq.data import FairseqDataset, data_utils
from fairseq.tasks.sentence_prediction import SentencePredictionTask

from fairseq_hire.tasks.sentence_prediction_hire import RemainderKeepingDataset, SentencePredictionHireTask
from fairseq_setup import finetune_args, write_task_dicts

pytestmark = pytest.mark.unit  # the fast tier: make test-unit


class Rows(FairseqDataset):
    """n examples of 100 tokens each."""

    def __init__(self, n):
        self.sizes = np.full(n, 100, dtype=np.int64)

    def __len__(self):
        return len(self.sizes)

    def num_tokens(self, index):
        return int(self.sizes[index])

    def num_tokens_vec(self, indices):
        return self.sizes[indices]

    def size(self, index):
        return int(self.sizes[index])


@pytest.mark.parametrize("n, multiple", [(60, 8), (12, 8), (61, 1), (7, 8), (200, 8)])
def test_batch_by_size_keeps_every_example(n, multiple):
    indices = np.arange(n, dtype=np.int64)
    batches = RemainderKeepingDataset(Rows(n)).batch_by_size(
        indices, max_tokens=4400, max_sentences=16, required_batch_size_multiple=multiple
    )
    assert np.concatenate(batches).tolist() == indices.tolist()
    assert all(len(b) <= 16 for b in batches)


def test_unfixed_fairseq_drops_the_remainder():
    """Documents why the plugin's task keeps it: fairseq main drops 4 of 60 examples here."""
    batches = data_utils.batch_by_size(np.arange(60, dtype=np.int64), lambda i: 100, max_tokens=4400,
                                       max_sentences=16, required_batch_size_multiple=8)
    assert sum(len(b) for b in batches) == 56


def batches_of(task, n, **sizes):
    return task.get_batch_iterator(Rows(n), required_batch_size_multiple=8, **sizes).frozen_batches


def test_the_plugins_task_scores_every_example_and_fairseqs_tasks_keep_their_batches(tmp_path):
    """Through the tasks' own batch iterators, in one process: fairseq's sentence_prediction,
    built beside the plugin's task, makes exactly fairseq's batches (60 examples at batch 16 and
    the default multiple 8: 56 covered; with --max-tokens 500: 95 of 100); the plugin's task
    makes the same batches and one more of the examples left."""
    args = finetune_args(write_task_dicts(tmp_path / "RTE-bin"))
    plugin = tasks.setup_task(args)
    args.task = "sentence_prediction"
    stock = tasks.setup_task(args)
    assert type(plugin) is SentencePredictionHireTask and type(stock) is SentencePredictionTask
    for n, sizes, kept in ((60, {"max_sentences": 16}, 56), (100, {"max_tokens": 500}, 95)):
        fairseq = data_utils.batch_by_size(np.arange(n, dtype=np.int64), lambda i: 100,
                                           required_batch_size_multiple=8, **sizes)
        stock_batches, plugin_batches = batches_of(stock, n, **sizes), batches_of(plugin, n, **sizes)
        assert [b.tolist() for b in stock_batches] == [b.tolist() for b in fairseq]
        assert sum(len(b) for b in stock_batches) == kept
        assert [b.tolist() for b in plugin_batches[:-1]] == [b.tolist() for b in fairseq]
        assert np.concatenate(plugin_batches).tolist() == list(range(n))
    # the same wrapper each time: fairseq's cache of epoch iterators (keyed by dataset) still hits
    rows = Rows(20)
    first = plugin.get_batch_iterator(rows, max_sentences=16)
    assert plugin.get_batch_iterator(rows, max_sentences=16) is first
