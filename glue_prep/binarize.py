"""Token ids and labels into fairseq's binary datasets, with fairseq's own classes.

What fairseq's recipe does in two programs (multiprocessing_bpe_encoder.py writes ids as text,
``fairseq-preprocess --only-source --srcdict`` binarises them) happens here in one pass: each
worker encodes a chunk of rows and looks the tokens up in the dictionary exactly as
``Dictionary.encode_line(line, add_if_not_exist=False, append_eos=True)`` does; the main
process appends the rows, in order, to a ``MMapIndexedDatasetBuilder`` whose dtype is
``best_fitting_int_dtype(len(dictionary))`` (fairseq-preprocess's choice for
``--dataset-impl mmap``, its default).
"""
import math
import multiprocessing as mp
from collections import Counter
import os
import signal
from typing import List, Sequence

import numpy as np

from .tasks.spec import DICTIONARY_PADDING

_STATE = None  # (tokenizer, symbol->index, unk index, eos index) in each worker


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _init_worker(state):
    global _STATE
    _STATE = state
    # The main process handles Ctrl-C / SIGTERM (it stops the pool and removes the partial output).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _encode_chunk(columns: Sequence[Sequence[str]]):
    """Rows of one chunk (one list per input column) -> [(flat int32 ids, row lengths)] per column."""
    from fairseq.tokenizer import tokenize_line

    tokenizer, indices, unk, eos = _STATE
    out = []
    for texts in columns:
        flat: List[int] = []
        lengths = np.empty(len(texts), dtype=np.int64)
        for i, text in enumerate(texts):
            words = tokenize_line(tokenizer.encode(text))
            flat.extend([indices.get(w, unk) for w in words])
            flat.append(eos)
            lengths[i] = len(words) + 1
        out.append((np.asarray(flat, dtype=np.int32), lengths))
    return out


class Encoder:
    """A pool of `workers` processes encoding rows with `tokenizer` and `dictionary`."""

    def __init__(self, tokenizer, dictionary, workers: int):
        tokenizer.load()  # once, before the workers fork
        self.state = (tokenizer, dict(dictionary.indices), dictionary.unk(), dictionary.eos())
        self.workers = max(1, int(workers))
        self.pool = None

    def __enter__(self):
        if self.workers > 1:
            methods = mp.get_all_start_methods()
            ctx = mp.get_context("fork" if "fork" in methods else "spawn")
            self.pool = ctx.Pool(self.workers, initializer=_init_worker, initargs=(self.state,))
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.pool is not None:
            if exc_type is None:
                self.pool.close()
            else:
                self.pool.terminate()
            self.pool.join()
            self.pool = None

    def encode(self, columns: Sequence[Sequence[str]], on_rows=None):
        """Yield, chunk by chunk in row order, [(flat ids, lengths)] per input column."""
        n = len(columns[0])
        size = max(16, min(2000, math.ceil(n / (self.workers * 8))))
        chunks = [[col[i:i + size] for col in columns] for i in range(0, n, size)]
        if self.pool is None:
            global _STATE
            saved, _STATE = _STATE, self.state
            try:
                for chunk in chunks:
                    result = _encode_chunk(chunk)
                    if on_rows:
                        on_rows(len(chunk[0]))
                    yield result
            finally:
                _STATE = saved
        else:
            for chunk, result in zip(chunks, self.pool.imap(_encode_chunk, chunks)):
                if on_rows:
                    on_rows(len(chunk[0]))
                yield result


def make_builder(prefix: str, vocab_size: int):
    from fairseq.data import indexed_dataset

    return indexed_dataset.make_builder(
        indexed_dataset.data_file_path(prefix), impl="mmap", vocab_size=vocab_size
    )


def finalize(builder, prefix: str):
    from fairseq.data import indexed_dataset

    builder.finalize(indexed_dataset.index_file_path(prefix))


def write_encoded_split(encoder: Encoder, columns, prefixes: Sequence[str], vocab_size: int,
                        progress=None, max_positions: int = 512, truncate: bool = False) -> List[int]:
    """Encode the rows of one split and write prefixes[k].bin/.idx for input column k.

    Returns the (0-based) rows longer than `max_positions` as RoBERTa reads them; with
    `truncate` they are cut to fit, longest sentence first (``lengths.longest_first``)."""
    import torch

    from .lengths import longest_first, positions

    builders = [make_builder(p, vocab_size) for p in prefixes]
    too_long, row = [], 0
    for result in encoder.encode(columns, on_rows=progress.update if progress else None):
        starts = [0] * len(result)
        for lengths in zip(*(column_lengths.tolist() for _, column_lengths in result)):
            tokens = [n - 1 for n in lengths]  # every sentence ends in </s>
            kept = tokens
            if positions(tokens) > max_positions:
                too_long.append(row)
                if truncate:
                    kept = longest_first(tokens, max_positions)
            for k, (builder, (flat, _)) in enumerate(zip(builders, result)):
                ids = flat[starts[k]:starts[k] + lengths[k]]
                if kept[k] < tokens[k]:
                    ids = np.concatenate([ids[:kept[k]], ids[-1:]])  # keep the </s>
                builder.add_item(torch.from_numpy(ids))
                starts[k] += lengths[k]
            row += 1
    for builder, prefix in zip(builders, prefixes):
        finalize(builder, prefix)
    return too_long


def build_label_dictionary(train_labels: Sequence[str], scratch_file: str, listed: Sequence[str] = None):
    """The label dictionary exactly as ``fairseq-preprocess --only-source --trainpref train.label``
    builds it (no --srcdict): fairseq's FairseqTask.build_dictionary with fairseq-preprocess's
    defaults (threshold 0, nwords -1, padding_factor 8): ordered by frequency, ties by symbol,
    padded with madeupwordNNNN to a multiple of 8. With `listed`, the classes are those labels
    in that order instead (a user task that lists its labels)."""
    from fairseq.data import Dictionary
    from fairseq.tasks.fairseq_task import FairseqTask

    if listed is not None:
        dictionary = Dictionary()
        counts = Counter(train_labels)
        for label in listed:
            dictionary.add_symbol(label, n=counts[label])
        dictionary.pad_to_multiple_(8)
        return dictionary
    with open(scratch_file, "w", encoding="utf-8") as f:
        for label in train_labels:
            f.write(label + "\n")
    try:
        return FairseqTask.build_dictionary(
            [scratch_file], workers=1, threshold=0, nwords=-1, padding_factor=8
        )
    finally:
        os.remove(scratch_file)


def write_labels(label_dict, labels: Sequence[str], prefix: str) -> None:
    """label/<split>.bin/.idx: each row [label index, eos], as VocabularyDatasetBinarizer writes it."""
    from fairseq.tokenizer import tokenize_line

    builder = make_builder(prefix, len(label_dict))
    for label in labels:
        builder.add_item(
            label_dict.encode_line(label, line_tokenizer=tokenize_line, add_if_not_exist=False,
                                   append_eos=True)
        )
    finalize(builder, prefix)


def label_names(label_dict) -> List[str]:
    """Class index order: the symbols after the 4 specials, without madeupword padding."""
    return [s for s in label_dict.symbols[label_dict.nspecial:] if not DICTIONARY_PADDING.match(s)]


def format_score(text: str, scale: float) -> str:
    """A regression score on the training scale (score / the task's target_scale), as the
    recipe writes STS-B's: awk '{print $1 / 5.0}' (OFMT %.6g)."""
    value = float(text) / scale
    if value == int(value) and abs(value) < 1e16:  # awk prints integral values with %d
        return "%d" % int(value)
    return "%.6g" % value
