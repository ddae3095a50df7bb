#!/usr/bin/env python
"""Score a fine-tuned checkpoint on a GLUE dev set through the hub interface, with the
task's official metrics, and write them as JSON.

    python scripts/evaluate.py CHECKPOINT_DIR DATA_BIN [--checkpoint checkpoint_best.pt]
        [--split valid] [--tsv PATH] [--per-example] [--out scores.json]

DATA_BIN is the task's glue_prep output (its glue_prep.json names the dev file; --tsv reads
another file of the same format). The figures equal the criterion's validation figures for
the same checkpoint (tests/test_end_to_end.py checks it).
"""
import sys

from fairseq_hire.workflow.evaluation import main

if __name__ == "__main__":
    sys.exit(main())
