"""Small, isolated fixes to fairseq behaviour that would make our numbers wrong.

Installed when the plugin is imported (``--user-dir fairseq_hire``); each is a wrapper
around one fairseq function, documented here and tested in tests/test_compat.py.

1. ``data_utils.batch_by_size`` (fairseq main) drops the last batch when its size is not a
   multiple of ``--required-batch-size-multiple`` (default 8): a validation set of 60
   examples at batch size 16 is scored on 56. GLUE dev metrics must cover every example,
   so the remainder is kept as a final, smaller batch.
"""
import functools

import numpy as np


def keep_remainder_batch(batch_by_size):
    @functools.wraps(batch_by_size)
    def wrapper(indices, num_tokens_fn, num_tokens_vec=None, max_tokens=None,
                max_sentences=None, required_batch_size_multiple=1, fixed_shapes=None):
        batches = batch_by_size(
            indices, num_tokens_fn, num_tokens_vec=num_tokens_vec, max_tokens=max_tokens,
            max_sentences=max_sentences, required_batch_size_multiple=required_batch_size_multiple,
            fixed_shapes=fixed_shapes,
        )
        # batches are consecutive slices of `indices`, so what was dropped is the tail
        covered = sum(len(batch) for batch in batches)
        if covered < len(indices):
            batches = list(batches) + [np.asarray(indices[covered:], dtype=np.int64)]
        return batches

    wrapper.__wrapped_by_fairseq_hire__ = True
    return wrapper


def install() -> None:
    from fairseq.data import data_utils

    if not getattr(data_utils.batch_by_size, "__wrapped_by_fairseq_hire__", False):
        data_utils.batch_by_size = keep_remainder_batch(data_utils.batch_by_size)
