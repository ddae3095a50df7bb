#!/usr/bin/env python
"""Write a GLUE leaderboard submission from fine-tuned checkpoints.

    python scripts/glue_submission.py OUT_DIR --task CHECKPOINT_DIR DATA_BIN [--task ...]
        [--checkpoint checkpoint_best.pt] [--no-zip] [--allow-partial]

Each --task pairs a fine-tuned checkpoint folder with the glue_prep binaries it was trained
on; the test split(s) named in DATA_BIN/glue_prep.json are predicted from the original GLUE
test file and written as the server expects: CoLA.tsv, SST-2.tsv, MRPC.tsv, QQP.tsv,
STS-B.tsv (scores on 0-5), MNLI-m.tsv and MNLI-mm.tsv (from MNLI-bin's test and test1),
QNLI.tsv, RTE.tsv, WNLI.tsv and AX.tsv (pair the MNLI checkpoint with AX-bin), each with an
`index\tprediction` header and label names, then OUT_DIR/submission.zip with all of them.
"""
import argparse
import sys

from fairseq_hire.workflow.evaluation import write_submission


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--task", nargs=2, action="append", required=True, metavar=("CHECKPOINT_DIR", "DATA_BIN"))
    parser.add_argument("--checkpoint", default="checkpoint_best.pt")
    parser.add_argument("--no-zip", action="store_true")
    parser.add_argument("--allow-partial", action="store_true",
                        help="accept binaries built with glue_prep --max-rows (a trial submission of their rows)")
    args = parser.parse_args(argv)
    from glue_prep.errors import GlueFormatError

    from fairseq_hire.checkpoints.loading import CheckpointError

    try:
        written = write_submission(args.task, args.out_dir, args.checkpoint, pack=not args.no_zip,
                                   allow_partial=args.allow_partial)
    except (CheckpointError, GlueFormatError, OSError, ValueError, KeyError) as error:
        print(f"glue_submission: error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
