#!/usr/bin/env python
"""Score a fine-tuned checkpoint on a GLUE dev set through the hub interface, with the
task's official metrics, and write them as JSON.

    python scripts/evaluate.py CHECKPOINT_DIR DATA_BIN [--checkpoint checkpoint_best.pt]
        [--split valid] [--tsv PATH] [--out scores.json]

DATA_BIN is the task's glue_prep output (its glue_prep.json names the dev file; --tsv reads
another file of the same format). The figures equal the criterion's validation figures for
the same checkpoint (tests/test_end_to_end.py checks it).
"""
import argparse
import json
import sys
from pathlib import Path

import torch

from fairseq_hire.evaluation import read_glue_split, score, write_atomically
from fairseq_hire.hub_interface import from_pretrained


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint_dir")
    parser.add_argument("data_bin")
    parser.add_argument("--checkpoint", default="checkpoint_best.pt")
    parser.add_argument("--split", default="valid", help="valid (MNLI: valid = matched, valid1 = mismatched)")
    parser.add_argument("--tsv", type=Path, help="score this GLUE-format file instead of the one glue_prep used")
    parser.add_argument("--max-sentences", type=int, default=32)
    parser.add_argument("--out", type=Path, help="JSON file to write (default: print only)")
    args = parser.parse_args(argv)

    hub = from_pretrained(args.checkpoint_dir, args.checkpoint, data_name_or_path=str(Path(args.data_bin).resolve()))
    if torch.cuda.is_available():
        hub.cuda()
    with torch.no_grad():
        result = score(hub, read_glue_split(args.data_bin, args.split, args.tsv), args.max_sentences)
    result["checkpoint"] = str(Path(args.checkpoint_dir) / args.checkpoint)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        write_atomically(args.out, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
