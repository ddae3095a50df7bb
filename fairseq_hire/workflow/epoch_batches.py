"""How many batches fairseq-train makes of one epoch of its training split. A batch holds at
most --batch-size rows and at most --max-tokens tokens (padded): where rows are long, fairseq
splits batches (the recipes' --max-tokens 4400 holds 16 rows of up to 275 tokens), and rows
longer than the model's positions are skipped. Counted from the rows alone, the budget of a
run on long rows ended at --max-update before its last epoch. So finetune.py asks fairseq:
the plugin's task loads the split and batches it as the trainer does (trainer.get_train_iterator)."""
import logging
from typing import Optional, Sequence


def training_batches(train_arguments: Sequence[str]) -> Optional[int]:
    """The batches fairseq makes of the training split for these fairseq-train arguments (the
    words after ``-m fairseq_cli.train``), before they are dealt to the workers; None where
    fairseq's parser refuses the arguments (fairseq-train will say why when it runs)."""
    from fairseq import options, utils

    from ..tasks.sentence_prediction_hire import TASK_NAME, SentencePredictionHireTask

    fairseq_log = logging.getLogger("fairseq")
    level = fairseq_log.level
    fairseq_log.setLevel(logging.WARNING)  # the run logs its loading itself; a warning still shows
    try:
        args = options.parse_args_and_arch(options.get_training_parser(), list(train_arguments))
        if args.task != TASK_NAME:  # not a plugin run: not counted here
            return None
        # the parsed arguments serve as the task's configuration, as fairseq's legacy path has it
        task = SentencePredictionHireTask.for_planning(args)
        task.load_dataset(args.train_subset, combine=True, epoch=1)
        iterator = task.get_batch_iterator(
            dataset=task.dataset(args.train_subset), max_tokens=args.max_tokens, max_sentences=args.batch_size,
            max_positions=utils.resolve_max_positions(task.max_positions(), args.max_positions, args.max_tokens),
            ignore_invalid_inputs=True, required_batch_size_multiple=args.required_batch_size_multiple,
            seed=args.seed, num_shards=1, shard_id=0, epoch=1, disable_iterator_cache=True,
        )
        return len(iterator.frozen_batches)
    except SystemExit:  # fairseq's parser refused the arguments
        return None
    finally:
        fairseq_log.setLevel(level)
