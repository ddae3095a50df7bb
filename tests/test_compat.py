"""The fixes in fairseq_hire.compat."""
import numpy as np
import pytest
from fairseq.data import data_utils

import fairseq_hire  # noqa: F401  (installs the fixes)

pytestmark = pytest.mark.unit  # the fast tier: make test-unit


@pytest.mark.parametrize("n, multiple", [(60, 8), (12, 8), (61, 1), (7, 8), (200, 8)])
def test_batch_by_size_keeps_every_example(n, multiple):
    indices = np.arange(n, dtype=np.int64)
    batches = data_utils.batch_by_size(
        indices, lambda i: 100, max_tokens=4400, max_sentences=16, required_batch_size_multiple=multiple
    )
    assert np.concatenate(batches).tolist() == indices.tolist()
    assert all(len(b) <= 16 for b in batches)


def test_unfixed_fairseq_drops_the_remainder():
    """Documents why the fix exists: fairseq main drops 4 of 60 examples here."""
    original = data_utils.batch_by_size.__wrapped__
    batches = original(np.arange(60, dtype=np.int64), lambda i: 100, max_tokens=4400, max_sentences=16,
                       required_batch_size_multiple=8)
    assert sum(len(b) for b in batches) == 56
