#!/usr/bin/env python
"""Print the fairseq-train flags that rebuild a checkpoint's encoder; see
fairseq_hire/checkpoints/architecture.py, or --help.

    fairseq-train ... --user-dir fairseq_hire --arch roberta_hire $(python scripts/checkpoint_args.py model.pt)
"""
import sys

from fairseq_hire.checkpoints.architecture import main

if __name__ == "__main__":
    sys.exit(main())
