"""The layer cache of a frozen encoder (fairseq_hire/models/layer_cache.py), in process with the
tiny RoBERTa and real RTE rows: lookups give the encoder's outputs and the heads' logits; a
second model, or a subset of the rows, reads the cache without running the encoder; another
encoder's weights never read it; a damaged entry is refused; two processes filling the same
cache at once build it once; a cache built under autocast (fairseq's --amp) holds the encoder's
own precision. Which folder it is written to: tests/test_layer_cache_folder.py."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import REPO
from fairseq_hire.models.layer_cache import LayerCacheError, encoder_fingerprint
from fairseq_hire.modules.options import HEADS
from fairseq_setup import build_trainer, finetune_args, restore
from roberta_checkpoints import write_original_roberta_checkpoint

pytestmark = pytest.mark.unit
HEAD = "sentence_classification_head"


def frozen_trainer(data, pretrained, cache, head="hire"):
    """A trainer as fairseq-train builds it with --freeze-encoder --layer-cache CACHE, the
    pretrained encoder restored and the train and valid splits loaded."""
    trainer = build_trainer(finetune_args(data, extra=["--freeze-encoder", "--layer-cache", str(cache),
                                                       *HEADS[head].options.flags()]))
    restore(trainer, pretrained)
    for split in ("valid", "train"):
        trainer.task.load_dataset(split)
    return trainer


def batches(trainer, split="valid"):
    iterator = trainer.task.get_batch_iterator(trainer.task.dataset(split), max_sentences=16, seed=1)
    return list(iterator.next_epoch_itr(shuffle=False))


def first_batch(trainer):
    return batches(trainer)[0]


def count_encoder_calls(model):
    calls = []
    model.encoder.sentence_encoder.register_forward_hook(lambda *_: calls.append(1))
    return calls


class RowSubset:
    """Some rows of a data set, collated by its collater."""

    def __init__(self, dataset, rows):
        self.dataset, self.rows = dataset, list(rows)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return self.dataset[self.rows[index]]

    def collater(self, samples):
        return self.dataset.collater(samples)


def entries(cache_dir):
    return sorted(p for fingerprint in cache_dir.iterdir() if fingerprint.is_dir()
                  for p in fingerprint.iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def other_pretrained(tmp_path_factory):
    """Another tiny encoder: the same shape, other weights."""
    from conftest import GPT2_BPE

    path = tmp_path_factory.mktemp("other-roberta") / "model.pt"
    write_original_roberta_checkpoint(path, GPT2_BPE / "dict.txt", seed=5)
    return path


@pytest.mark.parametrize("head", ["stock", "hire", "scalar-mix"])
def test_lookups_give_the_encoders_outputs_and_logits(head, rte_bin, tiny_pretrained, tmp_path):
    trainer = frozen_trainer(rte_bin, tiny_pretrained, tmp_path / "cache", head)
    model, cache = trainer.model, trainer.model.layer_cache
    model.eval()
    for batch in batches(trainer):
        tokens = batch["net_input"]["src_tokens"]
        padding = tokens.eq(cache.padding_idx)
        with torch.no_grad():
            cached_final, cached_states = cache.lookup(tokens)
            features, extra = model.encoder(tokens, features_only=True, return_all_hiddens=True)
            cached_logits = model(**batch["net_input"], classification_head_name=HEAD)[0]
            model.layer_cache = None
            logits = model(**batch["net_input"], classification_head_name=HEAD)[0]
            model.layer_cache = cache
        assert torch.equal(features.transpose(0, 1), extra["inner_states"][-1])  # post-LN: nothing more to store
        real = ~padding.t()
        for cached, computed in zip([cached_final, *cached_states], [features.transpose(0, 1), *extra["inner_states"]]):
            assert cached.shape == computed.shape
            torch.testing.assert_close(cached[real], computed[real], rtol=0, atol=1e-5)
            assert not cached[~real].any()  # padding: zeros, which no head reads
        torch.testing.assert_close(cached_logits, logits, rtol=0, atol=1e-5)
    assert cache.missed_batches == 0


def test_a_second_model_and_a_subset_of_the_rows_read_the_cache_without_the_encoder(
        rte_bin, tiny_pretrained, tmp_path):
    first = frozen_trainer(rte_bin, tiny_pretrained, tmp_path / "cache", "stock")
    first_calls = count_encoder_calls(first.model)
    first.model.layer_cache.lookup(first_batch(first)["net_input"]["src_tokens"])
    assert len(first_calls) > 0 and len(entries(tmp_path / "cache")) == 2

    second = frozen_trainer(rte_bin, tiny_pretrained, tmp_path / "cache", "hire")
    calls = count_encoder_calls(second.model)
    subset = RowSubset(second.task.dataset("train"), range(3, 160, 4))  # as --train-size would pick
    second.task.datasets["train-subset"] = subset
    second.model.train()
    subset_batches = [subset.collater([subset[i] for i in range(start, min(start + 16, len(subset)))])
                      for start in range(0, len(subset), 16)]
    for batch in subset_batches + batches(second):
        second.model(**batch["net_input"], classification_head_name=HEAD)
    assert calls == [] and second.model.layer_cache.missed_batches == 0
    assert len(entries(tmp_path / "cache")) == 2


def test_another_encoder_never_reads_the_cache(rte_bin, tiny_pretrained, other_pretrained, tmp_path):
    first = frozen_trainer(rte_bin, tiny_pretrained, tmp_path / "cache")
    first.model.layer_cache.update()
    other = frozen_trainer(rte_bin, other_pretrained, tmp_path / "cache")
    calls = count_encoder_calls(other.model)
    tokens = first_batch(other)["net_input"]["src_tokens"]
    with torch.no_grad():
        cached_final, _ = other.model.layer_cache.lookup(tokens)
        features, _ = other.model.encoder(tokens, features_only=True)
    assert len(calls) > 1  # it built its own entries, then ran once above
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir()]) == 2  # one folder per encoder
    real = tokens.ne(1).t()
    torch.testing.assert_close(cached_final[real], features.transpose(0, 1)[real], rtol=0, atol=1e-5)


def test_the_fingerprint_tells_encoders_apart(tmp_path):
    """What decides the encoder's outputs changes the fingerprint (so another cache folder is
    used): a weight, the LayerNorm epsilon, the activation; dropout, which a frozen encoder
    never applies, does not."""
    from fairseq_setup import write_task_dicts

    data = write_task_dicts(tmp_path / "RTE-bin")

    def fingerprint(*flags, nudge=False):
        torch.manual_seed(0)
        encoder = build_trainer(finetune_args(data, extra=["--freeze-encoder", *flags])).model.encoder.sentence_encoder
        if nudge:
            with torch.no_grad():
                weight = encoder.layers[-1].fc2.weight
                weight[0, 0] = torch.nextafter(weight[0, 0], torch.tensor(1.0))
        return encoder_fingerprint(encoder)

    reference = fingerprint()
    assert fingerprint("--dropout", "0.3", "--attention-dropout", "0.2") == reference
    others = [fingerprint(nudge=True), fingerprint("--encoder-layernorm-eps", "1e-12"),
              fingerprint("--activation-fn", "relu")]
    assert len({reference, *others}) == 4


def damage_states(entry):
    path = entry / "states.npy"
    path.write_bytes(path.read_bytes()[:-100])


def damage_meta(entry):
    meta = json.loads((entry / "meta.json").read_text())
    (entry / "meta.json").write_text(json.dumps({**meta, "fingerprint": "0" * 64}))


def damage_index(entry):
    (entry / "index.npz").write_bytes(b"not an npz")


@pytest.mark.parametrize("damage, file", [(damage_states, "states.npy"), (damage_meta, "meta.json"),
                                          (damage_index, "index.npz")])
def test_a_damaged_entry_is_refused(damage, file, rte_bin, tiny_pretrained, tmp_path):
    frozen_trainer(rte_bin, tiny_pretrained, tmp_path / "cache").model.layer_cache.update()
    entry = entries(tmp_path / "cache")[0]
    damage(entry)
    trainer = frozen_trainer(rte_bin, tiny_pretrained, tmp_path / "cache")
    calls = count_encoder_calls(trainer.model)
    with pytest.raises(LayerCacheError, match=f"layer cache {entry}.*{file}.*delete the folder {entry} to rebuild"):
        trainer.model.layer_cache.lookup(first_batch(trainer)["net_input"]["src_tokens"])
    assert calls == []  # neither used nor silently rebuilt


def overwrite_states(entry):
    """Other values in place: the file keeps its size and header."""
    states = np.load(entry / "states.npy", mmap_mode="r+")
    states[1:] = states[:-1].copy()
    states.flush()


def shift_offsets(entry):
    """Rows that start one token late: still increasing offsets over the same tokens."""
    with np.load(entry / "index.npz") as index:
        arrays = dict(index)
    arrays["offsets"][1:-1] += 1
    with open(entry / "index.npz", "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("damage", [overwrite_states, shift_offsets])
def test_states_that_are_not_the_ones_written_are_refused(damage, rte_bin, tiny_pretrained, tmp_path):
    frozen_trainer(rte_bin, tiny_pretrained, tmp_path / "cache").model.layer_cache.update()
    for entry in entries(tmp_path / "cache"):
        damage(entry)
    trainer = frozen_trainer(rte_bin, tiny_pretrained, tmp_path / "cache")
    calls = count_encoder_calls(trainer.model)
    with pytest.raises(LayerCacheError, match="layer cache .*states.npy: the states of row .* do not match their "
                                              "checksum .*delete the folder .* to rebuild it"):
        trainer.model(**first_batch(trainer)["net_input"], classification_head_name=HEAD)
    assert calls == []


def test_two_processes_filling_the_same_cache_build_it_once(rte_bin, tiny_pretrained, tmp_path):
    cache = tmp_path / "cache"
    go = tmp_path / "go"
    workers = []
    for n in range(2):
        command = [sys.executable, str(REPO / "tests" / "layer_cache_worker.py"), str(rte_bin), str(tiny_pretrained),
                   str(cache), str(tmp_path / f"ready{n}"), str(go), str(tmp_path / f"out{n}.json")]
        workers.append(subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env={**os.environ, "PYTHONPATH": str(REPO)}))
    deadline = time.monotonic() + 300
    while not all((tmp_path / f"ready{n}").exists() for n in range(2)):
        assert all(w.poll() is None for w in workers), [w.communicate()[0][-3000:] for w in workers]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    go.touch()  # both fill the cache from here, at the same moment
    for worker in workers:
        log = worker.communicate(timeout=300)[0]
        assert worker.returncode == 0, log[-3000:]
    results = [json.loads((tmp_path / f"out{n}.json").read_text()) for n in range(2)]

    reference = frozen_trainer(rte_bin, tiny_pretrained, tmp_path / "reference")
    reference_calls = count_encoder_calls(reference.model)
    final, _ = reference.model.layer_cache.lookup(first_batch(reference)["net_input"]["src_tokens"])
    assert sum(r["encoder_calls"] for r in results) == len(reference_calls)  # built once, read by the other
    assert {r["states_sum"] for r in results} == {final.double().sum().item()}
    built = entries(cache)
    assert [p.name for p in built] == [p.name for p in entries(tmp_path / "reference")]
    for entry in built:
        assert np.array_equal(np.load(entry / "states.npy"),
                              np.load(tmp_path / "reference" / entry.parent.name / entry.name / "states.npy"))
    assert not [p for p in cache.rglob(".*")]  # no temporary folder left


def test_rows_too_long_for_the_encoder_are_left_out(rte_bin, tiny_pretrained, tmp_path):
    trainer = frozen_trainer(rte_bin, tiny_pretrained, tmp_path / "cache")
    cache = trainer.model.layer_cache
    cache.sentence_encoder.max_source_positions = 40  # fairseq could not run the longer rows either
    cache.update()
    valid = trainer.task.dataset("valid")
    assert max(valid.num_tokens(i) for i in range(len(valid))) > 40
    assert cache.index and max(length for _, _, length in cache.index.values()) <= 40


def test_a_cache_built_under_autocast_holds_the_encoders_own_precision(rte_bin, tiny_pretrained, tmp_path):
    """fairseq's --amp runs the training forward under autocast, where the cache of every split
    is built; the entries then held half-precision states, which a later fp32 run on the same
    encoder (the same fingerprint) read as its own: a cache that changed its results."""
    building = frozen_trainer(rte_bin, tiny_pretrained, tmp_path / "cache")
    batch = batches(building)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what torch.cuda.amp.autocast is on a GPU
        building.model(**batch["net_input"], classification_head_name=HEAD)

    reading = frozen_trainer(rte_bin, tiny_pretrained, tmp_path / "cache")
    model, cache = reading.model, reading.model.layer_cache
    model.eval()
    for batch in batches(reading):
        tokens = batch["net_input"]["src_tokens"]
        with torch.no_grad():
            _, cached_states = cache.lookup(tokens)
            _, extra = model.encoder(tokens, features_only=True, return_all_hiddens=True)
        real = tokens.ne(cache.padding_idx).t()
        for cached, computed in zip(cached_states, extra["inner_states"]):
            torch.testing.assert_close(cached[real], computed[real], rtol=0, atol=1e-5)
    assert cache.missed_batches == 0
