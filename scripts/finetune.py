#!/usr/bin/env python
"""Fine-tune RoBERTa+HIRE (any head of the comparison, or the stock RoBERTa baseline, same
recipe) on one task; see fairseq_hire/workflow/finetune.py, or --help.

    python scripts/finetune.py TASK DATA_BIN PRETRAINED_MODEL_PT SAVE_DIR [options] [fairseq-train flags]
"""
import sys

from fairseq_hire.workflow.finetune import main

if __name__ == "__main__":
    sys.exit(main())
