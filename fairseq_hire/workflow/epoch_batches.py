"""How many batches fairseq-train makes of one epoch of its training split. A batch holds at
most --batch-size rows and at most --max-tokens tokens (padded): where rows are long, fairseq
splits batches (the recipes' --max-tokens 4400 holds 16 rows of up to 275 tokens), and rows
longer than the model's positions are skipped. Counted from the rows alone, the budget of a
run on long rows ended at --max-update before its last epoch. So finetune.py asks fairseq:
the plugin's task loads the split and batches it as the trainer does (trainer.get_train_iterator)."""
import contextlib
import io
import logging
import struct
from typing import Optional, Sequence


def training_batches(train_arguments: Sequence[str], described_as: Optional[str] = None) -> Optional[int]:
    """The batches fairseq makes of the training split for these fairseq-train arguments (the
    words after ``-m fairseq_cli.train``), before they are dealt to the workers; None for a run
    of another task than the plugin's (passed through), which is not counted. A ValueError in
    one line where fairseq's parser refuses the arguments, --hire-* values build no head
    (HireOptionError, as roberta_hire would refuse them), or fairseq cannot load or batch the
    split (the data named `described_as`, else by its path)."""
    from fairseq import options, utils

    from ..modules.options import HireOptionError, HireOptions
    from ..tasks.sentence_prediction_hire import TASK_NAME, SentencePredictionHireTask

    data = described_as or train_arguments[0]
    fairseq_log = logging.getLogger("fairseq")
    level = fairseq_log.level
    fairseq_log.setLevel(logging.WARNING)  # the run logs its loading itself; a warning still shows
    refusal, split = io.StringIO(), "train"
    try:
        with contextlib.redirect_stderr(refusal):  # argparse's usage text: the last line says why
            args = options.parse_args_and_arch(options.get_training_parser(), list(train_arguments))
        if getattr(args, "hire_extractor", None) is not None:  # roberta_hire refuses these as it builds
            HireOptions.from_args(args)
        if args.task != TASK_NAME:
            return None
        split = args.train_subset
        # the parsed arguments serve as the task's configuration, as fairseq's legacy path has it
        task = SentencePredictionHireTask.for_planning(args)
        task.load_dataset(split, combine=True, epoch=1)
        iterator = task.get_batch_iterator(
            dataset=task.dataset(split), max_tokens=args.max_tokens, max_sentences=args.batch_size,
            max_positions=utils.resolve_max_positions(task.max_positions(), args.max_positions, args.max_tokens),
            ignore_invalid_inputs=True, required_batch_size_multiple=args.required_batch_size_multiple,
            seed=args.seed, num_shards=1, shard_id=0, epoch=1, disable_iterator_cache=True,
        )
    except HireOptionError:
        raise
    except SystemExit:
        lines = refusal.getvalue().strip().splitlines() or ["(no message)"]
        raise ValueError(f"fairseq-train refuses these flags: {lines[-1].split('error: ', 1)[-1]}") from None
    except (AssertionError, OSError, ValueError, KeyError, IndexError, EOFError, RuntimeError, struct.error) as error:
        raise ValueError(f"{data}: fairseq cannot load or batch its training split "
                         f"'{split}': {' '.join(str(error).split())}; expected binaries as glue_prep writes them") from None
    finally:
        fairseq_log.setLevel(level)
    batches = len(iterator.frozen_batches)
    if not batches:
        raise ValueError(f"{data}: every training row is longer than a batch may be (--max-tokens "
                         f"{args.max_tokens}, --max-positions {args.max_positions}): fairseq would train on none")
    return batches
