"""GLUE server file format, for the cases the end-to-end test does not train."""
from pathlib import Path

import pytest
import numpy as np

from fairseq_hire.workflow.evaluation import GlueSplit, submission_lines

pytestmark = pytest.mark.unit  # the fast tier: make test-unit


def rows(task, labels, regression=False, n=3):
    scale = {"target_scale": 5.0, "score_range": (0.0, 5.0)} if regression else {}  # STS-B's, from the registry
    return GlueSplit(task=task, split="test", examples=[("a",)] * n, labels=None, lines=list(range(2, n + 2)),
                     index=[str(i) for i in range(n)], label_names=labels, regression=regression,
                     source=Path("test.tsv"), **scale)


def test_stsb_scores_are_on_0_to_5_and_clipped():
    lines = submission_lines(rows("STS-B", [], regression=True), np.array([0.5, 1.2, -0.1]))
    assert lines == ["index\tprediction", "0\t2.500", "1\t5.000", "2\t0.000"]


def test_labels_are_names_in_label_dictionary_order():
    # MNLI's label dictionary is frequency-ordered: class 0 is whatever label was most frequent
    lines = submission_lines(rows("MNLI", ["contradiction", "entailment", "neutral"]), np.array([1, 0, 2]))
    assert lines[1:] == ["0\tentailment", "1\tcontradiction", "2\tneutral"]
    lines = submission_lines(rows("MRPC", ["1", "0"]), np.array([0, 1, 0]))
    assert lines[1:] == ["0\t1", "1\t0", "2\t1"]
