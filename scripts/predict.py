#!/usr/bin/env python
"""Predict every row of a file (in the task's TSV, CSV or JSON Lines format) with a fine-tuned
model; see fairseq_hire/workflow/predict.py, or --help.

    python scripts/predict.py CHECKPOINT_DIR DATA_BIN INPUT --out OUTPUT.jsonl|.tsv [--truncate]
"""
import sys

from fairseq_hire.workflow.predict import main

if __name__ == "__main__":
    sys.exit(main())
