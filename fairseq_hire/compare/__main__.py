"""python -m fairseq_hire.compare: run a comparison of heads, then write its report.

    python -m fairseq_hire.compare TASK DATA_BIN PRETRAINED OUT [--heads ...] [--seeds 1-10]
        [--jobs N] [--threads T] [--device auto|cpu|gpu] [--report-only] [finetune.py flags]

TASK and DATA_BIN are what scripts/finetune.py takes (a task glue_prep binarised); PRETRAINED
is any encoder the plugin loads (roberta.base/large model.pt, a converted checkpoint). Every
other flag (e.g. --epochs 3 --lr 3e-5, or fairseq-train flags) goes to scripts/finetune.py for
every head alike, so all heads share one recipe. Finished runs are skipped, a killed run
resumes, and several comparisons may share OUT: each run is trained by one of them, and its
trainer dies with the comparison that started it (runs.py says exactly what holds);
OUT/report.md, report.json, scores.png and layer_weights.png are written at the end.
"""
import argparse
import os
import sys
from pathlib import Path

from glue_prep.metadata import read_metadata
from glue_prep.subset import check_train_size

from ..checkpoints.architecture import architecture_flags, flag_number
from ..checkpoints.errors import CheckpointError
from ..workflow.finetune import build_command, parse_arguments
from ..workflow.same_run import argparse_words
from ..modules.options import HEADS, head_name, head_options
from .report import ReportError, markdown, write_report
from .runs import Comparison, Runner, check_recipe, run_all

DEFAULT_HEADS = ["stock", "hire", "hire-no-fusion", "scalar-mix", "last4-mean"]


def seed_list(text: str):
    """"1-10", "1,2,5" or "3" -> seeds."""
    seeds = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        try:
            seeds += list(range(int(low), int(high or low) + 1))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected seeds like 1-10 or 1,2,5") from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"{text!r}: no seeds")
    return seeds


def build_parser() -> argparse.ArgumentParser:
    # no abbreviations: the flags it does not know go to finetune.py and fairseq-train, whose --seed
    # argparse would otherwise take for this command's --seeds
    parser = argparse.ArgumentParser(prog="python -m fairseq_hire.compare", description=__doc__, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task")
    parser.add_argument("data", type=Path)
    parser.add_argument("pretrained", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--heads", nargs="+", default=DEFAULT_HEADS, type=head_name, metavar="HEAD",
                        help="heads to compare: " + ", ".join(HEADS) + ", or last<K>-mean / last<K>-concat for "
                             f"another K (default {' '.join(DEFAULT_HEADS)})")
    parser.add_argument("--reference", default="stock", type=head_name, help="the head the others are compared with")
    parser.add_argument("--seeds", type=seed_list, default=seed_list("1-5"), help="e.g. 1-10 (default 1-5)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--threads", type=int, help="torch threads per run (default: the cores / jobs)")
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep each run's checkpoints in OUT/work")
    parser.add_argument("--report-only", action="store_true", help="write the report from the finished runs")
    return parser


PER_RUN_FLAGS = ("--seed", "--head", "--baseline")


def usage_error(args, train_flags) -> str:
    """Why the command line cannot be a comparison, or "" (checked before anything is written)."""
    if train_flags and not train_flags[0].startswith("-"):  # every fairseq-train flag starts with -
        return (f"unexpected argument {train_flags[0]!r}: seeds are one argument (--seeds 1-5 or 1,2,5), and "
                "the fairseq-train flags passed on start with --")
    per_run = next((word for word in argparse_words(train_flags) if word in PER_RUN_FLAGS), None)
    if per_run:  # finetune.py would read the last one given: every run would get it
        return (f"{per_run} is set by the comparison for each run (from --seeds and --heads); expected only the "
                "flags every run shares")
    if os.path.lexists(args.out) and not args.out.is_dir():
        return f"OUT {args.out} is not a folder; expected a folder for the comparison (made if missing)"
    return ""


def main(argv=None) -> int:
    args, train_flags = build_parser().parse_known_args(argv)
    problem = usage_error(args, train_flags)
    if problem:
        print(f"compare: error: {problem}", file=sys.stderr)
        return 2
    comparison = Comparison(args.task, args.data, args.pretrained, args.out, tuple(train_flags), args.device)
    if not args.report_only:
        try:
            read_metadata(args.data, missing_ok=True)  # a damaged record: refused once, not by every run
            check_recipe(comparison)
            # the flags every run gets, refused once here rather than by each run in turn
            run, passthrough = parse_arguments(
                [*comparison.finetune_arguments(args.heads[0], args.seeds[0], comparison.work_dir), "--dry-run"])
            encoder = architecture_flags(args.pretrained)
            for head in args.heads:  # a last-k head longer than the encoder: refused before any run
                head_options(head).scored_layers(flag_number(encoder, "--encoder-layers"))
            if run.train_size:  # among the rows that fit the encoder's positions, as each run draws them
                check_train_size(Path(args.data), run.train_size, flag_number(encoder, "--max-positions"))
            build_command(run, passthrough)  # the first run as a dry run: fairseq's checks too; it writes nothing
        except (ValueError, OSError, CheckpointError) as error:
            print(f"compare: error: {error}", file=sys.stderr)
            return 2
        threads = args.threads or max(1, (os.cpu_count() or 1) // max(1, args.jobs))
        runner = Runner(comparison, threads=threads, keep_checkpoints=args.keep_checkpoints)
        # seed-major: an interrupted comparison still has whole seeds
        plan = [("", head, seed) for seed in args.seeds for head in args.heads]
        outcomes = run_all({"": runner}, plan, args.jobs)
        failed = [o for o in outcomes if o.status == "failed"]
        for outcome in failed:
            print(f"failed: {args.task} {outcome.head} seed {outcome.seed}: {outcome.message}", file=sys.stderr)
        for outcome in outcomes:  # the report leaves these out until their run lands
            if outcome.status == "claimed-elsewhere":
                print(f"compare: note: {args.task} {outcome.head} seed {outcome.seed} is being trained by another "
                      f"process ({outcome.message}); the report below does not have it yet", file=sys.stderr)
    try:
        summary = write_report(args.out, args.reference)
    except ReportError as error:
        print(f"compare: error: {error}", file=sys.stderr)
        return 2
    print(markdown(summary))
    return 1 if not args.report_only and failed else 0


if __name__ == "__main__":
    sys.exit(main())
