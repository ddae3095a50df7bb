"""python -m glue_prep GLUE_DIR TASK|ALL OUT_DIR [options]"""
import argparse
import logging
import os
import re
import signal
import sys
from pathlib import Path

from .errors import GlueFormatError, OutputExistsError, unwritten
from .tasks import TASK_ORDER
from .tasks.spec import score_value

EPILOG = """\
Writes OUT_DIR/<TASK>-bin/{input0,input1,label}/ exactly as fairseq's
examples/roberta/preprocess_GLUE_tasks.sh does (same token ids, label dictionary,
STS-B scores / 5, MNLI valid/valid1 and test/test1), plus glue_prep.json,
test.index (test1.index) and tokenizer/. Tasks: %s, or ALL (every task found).
Bad input stops the run with file, line and what was expected (exit status 1);
no partial <TASK>-bin is ever left behind. See glue_prep/README.md.
""" % " ".join(TASK_ORDER)


def score(text: str) -> float:
    """An argparse type: a regression score as the data files write one (a finite ASCII decimal)."""
    value = score_value(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite decimal number, e.g. -1e-2 or 5")
    return value


def build_parser() -> argparse.ArgumentParser:
    from .binarize import available_cores

    p = argparse.ArgumentParser(
        prog="glue_prep", description="GLUE files -> fairseq RoBERTa GLUE binaries, offline.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # argparse (before 3.14) takes -1e-2 or -1,1 for a flag: no flag of ours starts with a digit
    p._negative_number_matcher = re.compile(r"-\.?\d")
    p.add_argument("glue_dir", metavar="GLUE_DATA_DIR", help="glue_data folder as GLUE distributes it")
    p.add_argument("task", metavar="TASK|ALL", help="a GLUE task (or several: 'RTE,MRPC'), or ALL")
    p.add_argument("out_dir", metavar="OUTPUT_DIR", help="where <TASK>-bin/ is written")
    t = p.add_argument_group("tokenizer and dictionary")
    t.add_argument("--tokenizer", choices=("gpt2", "sentencepiece", "wordpiece"), default=None,
                   help="default gpt2 (RoBERTa), or the type named by --tokenizer-spec")
    t.add_argument("--tokenizer-spec", metavar="PATH",
                   help="a tokenizer_spec.json (e.g. beside a converted checkpoint); its folder's "
                        "dict.txt is the default --dict")
    t.add_argument("--dict", metavar="PATH", dest="dict_path",
                   help="the checkpoint's fairseq dict.txt (default: the packaged GPT-2 dict for "
                        "gpt2, dict.txt beside --tokenizer-spec)")
    t.add_argument("--encoder-json", metavar="PATH", help="GPT-2 encoder.json (default: packaged)")
    t.add_argument("--vocab-bpe", metavar="PATH", help="GPT-2 vocab.bpe (default: packaged)")
    t.add_argument("--sentencepiece-model", metavar="PATH", help="sentencepiece .model file")
    t.add_argument("--wordpiece-vocab", metavar="PATH", help="WordPiece vocab.txt")
    t.add_argument("--lowercase", action=argparse.BooleanOptionalAction, default=None,
                   help="WordPiece only: lowercase and strip accents (default: yes, or the spec's)")
    u = p.add_argument_group(
        "your own task (TASK is then its name, or a task file: see glue_prep/tasks/task_files.py)",
        "files are read from GLUE_DATA_DIR; their columns are named by the header (tsv, csv) or keys (jsonl)")
    u.add_argument("--format", choices=("tsv", "csv", "jsonl"), help="the files' format; makes TASK a new task's name")
    u.add_argument("--text", metavar="COLUMN", help="the column (key) of the text")
    u.add_argument("--text-pair", metavar="COLUMN", help="the column of the second text of a pair task")
    u.add_argument("--label", metavar="COLUMN", help="the column of the label (or score)")
    u.add_argument("--id", metavar="COLUMN", help="the column of the test rows' ids (default: the row number)")
    u.add_argument("--train", metavar="FILE", help="the training file, relative to GLUE_DATA_DIR")
    u.add_argument("--valid", metavar="FILE", help="the validation file")
    u.add_argument("--test", metavar="FILE", help="the test file (optional; labels not needed)")
    u.add_argument("--labels", metavar="A,B,...", help="the classes, in this order (default: collected from "
                                                        "train, most frequent first, ties by label)")
    u.add_argument("--regression", nargs=2, type=score, metavar=("LOW", "HIGH"),
                   help="a regression task with scores in [LOW, HIGH] (the model learns the score divided "
                        "by the range's largest magnitude, max(|LOW|, |HIGH|))")
    u.add_argument("--metric", help="the metric checkpoints are selected by (accuracy, f1, acc_and_f1, mcc, "
                                    "macro_f1; regression: pearson_and_spearman, pearson, spearman)")
    u.add_argument("--positive-label", metavar="LABEL", help="the class whose F1 is reported")
    r = p.add_argument_group("run")
    r.add_argument("--workers", type=int, default=available_cores(), metavar="N",
                   help="encoding processes (default: all cores, here %(default)s)")
    r.add_argument("--max-rows", type=int, default=None, metavar="N",
                   help="use only the first N rows of each split (quick checks and tests; the "
                        "result is not the full task)")
    r.add_argument("--max-positions", type=int, default=512, metavar="N",
                   help="report rows longer than N positions as RoBERTa reads them (<s> A </s> "
                        "</s> B </s>; default 512, RoBERTa's)")
    r.add_argument("--truncate-to", type=int, metavar="N",
                   help="cut rows longer than N positions to fit, longest sentence first (the "
                        "hub's truncate=True does the same)")
    r.add_argument("--force", action="store_true", help="replace an existing <TASK>-bin")
    r.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars")
    return p


class UsageError(Exception):
    pass


def resolve_tokenizer(args):
    """(Tokenizer, dict path) from the options."""
    from .tokenizers import build_tokenizer, default_gpt2_dir, read_spec

    file_opts = {"encoder_json": args.encoder_json, "vocab_bpe": args.vocab_bpe,
                 "model": args.sentencepiece_model, "vocab": args.wordpiece_vocab}
    flag = {"encoder_json": "--encoder-json", "vocab_bpe": "--vocab-bpe",
            "model": "--sentencepiece-model", "vocab": "--wordpiece-vocab"}
    needs = {"gpt2": ("encoder_json", "vocab_bpe"), "sentencepiece": ("model",),
             "wordpiece": ("vocab",)}
    dict_path = args.dict_path
    if args.tokenizer_spec:
        try:
            spec = read_spec(args.tokenizer_spec)
        except ValueError as e:
            raise UsageError(str(e))
        kind = spec.pop("type")
        if args.tokenizer and args.tokenizer != kind:
            raise UsageError(f"--tokenizer {args.tokenizer} contradicts {args.tokenizer_spec} "
                             f"(type {kind})")
        given = [flag[k] for k, v in file_opts.items() if v]
        if given:
            raise UsageError(f"{' '.join(given)} cannot be combined with --tokenizer-spec "
                             "(the spec names the files)")
        if dict_path is None:
            dict_path = Path(args.tokenizer_spec).resolve().parent / "dict.txt"
            if not dict_path.is_file():
                raise UsageError(f"no dict.txt beside {args.tokenizer_spec}; pass --dict")
        if args.lowercase is not None:
            if kind != "wordpiece":
                raise UsageError("--lowercase/--no-lowercase apply to wordpiece only")
            spec["lowercase"] = args.lowercase
        files = spec
    else:
        kind = args.tokenizer or "gpt2"
        wrong = [flag[k] for k, v in file_opts.items() if v and k not in needs[kind]]
        if wrong:
            raise UsageError(f"{' '.join(wrong)} do not apply to --tokenizer {kind}")
        if args.lowercase is not None and kind != "wordpiece":
            raise UsageError("--lowercase/--no-lowercase apply to --tokenizer wordpiece only "
                             "(GPT-2 BPE and sentencepiece see the text as it is)")
        files = {k: file_opts[k] for k in needs[kind]}
        if kind == "gpt2":
            default = default_gpt2_dir()
            for key, name in (("encoder_json", "encoder.json"), ("vocab_bpe", "vocab.bpe")):
                if files[key] is None:
                    if default is None:
                        raise UsageError(f"no packaged GPT-2 BPE files found; pass {flag[key]}")
                    files[key] = str(default / name)
            if dict_path is None:
                if default is None:
                    raise UsageError("no packaged GPT-2 dict.txt found; pass --dict")
                dict_path = default / "dict.txt"
        else:
            missing = [flag[k] for k in needs[kind] if not files[k]]
            if missing:
                raise UsageError(f"--tokenizer {kind} needs {' '.join(missing)}")
            if dict_path is None:
                raise UsageError(f"--tokenizer {kind} needs --dict: the checkpoint's own "
                                 "dict.txt (the packaged one is GPT-2's)")
            if kind == "wordpiece":
                files["lowercase"] = True if args.lowercase is None else args.lowercase
    dict_path = Path(dict_path)
    if not dict_path.is_file():
        raise UsageError(f"dictionary not found: {dict_path}")
    try:
        tokenizer = build_tokenizer(kind, **files)
    except (OSError, ValueError) as e:
        raise UsageError(str(e))
    return tokenizer, dict_path


USER_TASK_FLAGS = ("text", "text_pair", "label", "id", "train", "valid", "test", "labels", "regression",
                   "metric", "positive_label")


def user_tasks(args):
    """[the user's TaskSpec] from a task file (TASK ends in .json) or from the flags; None for
    GLUE task names."""
    from .tasks.task_files import COMMAND_LINE, read_task_file, task_from_description

    given = [name for name in USER_TASK_FLAGS if getattr(args, name) is not None]
    if args.task.endswith(".json"):
        if given or args.format:
            raise UsageError(f"--{given[0].replace('_', '-') if given else 'format'} cannot be combined "
                             "with a task file (the file describes the task)")
        return [read_task_file(args.task)]
    if args.format is None:
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')} describes your own task: add --format")
        return None
    description = {"name": args.task, "format": args.format, "text": args.text, "text_pair": args.text_pair,
                   "label": args.label, "id": args.id, "train": args.train, "valid": args.valid,
                   "test": args.test, "metric": args.metric, "positive_label": args.positive_label}
    if args.labels is not None:
        labels = [x.strip() for x in args.labels.split(",")]
        if "" in labels:
            raise UsageError(f"--labels {args.labels!r}: an empty label; expected the classes separated by commas")
        description["labels"] = labels
    if args.regression is not None:
        description.update(regression=True, score_range=list(args.regression))
    return [task_from_description({k: v for k, v in description.items() if v is not None},
                                  source=COMMAND_LINE)]


def _on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.max_rows is not None and args.max_rows < 1:
        parser.error("--max-rows must be at least 1")
    if args.truncate_to is not None:
        args.max_positions = args.truncate_to
    if args.max_positions < 5:
        parser.error("--max-positions/--truncate-to must be at least 5 (<s> A </s> </s> B </s> with one token each)")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # we fork our own workers
    # fairseq logs an INFO line about tensorboardX on import; keep stderr for our messages
    logging.getLogger("fairseq").setLevel(logging.WARNING)
    handles_sigterm = threading_main()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if handles_sigterm else None
    try:
        return run(args, parser)
    finally:
        if handles_sigterm:  # main() called from Python leaves the process's handler as it was
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def run(args, parser) -> int:
    from .prepare import Options, check_outputs_free, prepare, resolve_tasks

    try:
        # cheap checks first: a wrong task name or an existing output fails before any heavy import
        tasks = user_tasks(args) or resolve_tasks(Path(args.glue_dir), args.task)
        if not args.force:
            check_outputs_free(Path(args.out_dir), tasks)
        tokenizer, dict_path = resolve_tokenizer(args)
        opts = Options(tokenizer=tokenizer, dict_path=dict_path, workers=args.workers,
                       max_rows=args.max_rows, force=args.force, progress=args.progress,
                       max_positions=args.max_positions, truncate=args.truncate_to is not None)
        prepare(args.glue_dir, tasks if not isinstance(tasks[0], str) else ",".join(tasks), args.out_dir, opts)
    except UsageError as e:
        parser.print_usage(sys.stderr)
        print(f"glue_prep: error: {e}", file=sys.stderr)
        return 2
    except (GlueFormatError, OutputExistsError) as e:
        print(f"glue_prep: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"glue_prep: error: {unwritten(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("glue_prep: interrupted; no partial output left", file=sys.stderr)
        return 130
    return 0


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
