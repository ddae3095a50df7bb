"""What finetune.py reads of the fairseq-train flags it passes on (the flags it does not know):
how fairseq groups batches into updates, which its budget in updates depends on, and
half-precision flags fairseq cannot train with on the CPU, refused before anything runs."""
import argparse
import math
from dataclasses import dataclass
from typing import Optional

from .same_run import argparse_words


@dataclass(frozen=True)
class UpdateShape:
    """How fairseq makes updates of --batch-size batches: each of `workers` takes every
    workers-th batch (the shards padded to one length), and `update_freq` of a worker's batches
    are one update. With --skip-remainder-batch it drops each worker's last batch, full or not,
    and then a last group shorter than `update_freq` (fairseq's data/iterators.py)."""
    workers: int = 1
    update_freq: int = 1
    skip_remainder_batch: bool = False
    # the batches fairseq makes of the training split, where counted (``epoch_batches``: long
    # rows split batches at --max-tokens); else ceil(examples / batch_size)
    epoch_batches: Optional[int] = None

    @property
    def batches(self) -> int:
        return self.workers * self.update_freq

    def updates_per_epoch(self, examples: int, batch_size: int) -> int:
        epoch_batches = math.ceil(examples / batch_size) if self.epoch_batches is None else self.epoch_batches
        worker_batches = math.ceil(epoch_batches / self.workers)
        if self.skip_remainder_batch:
            return (worker_batches - 1) // self.update_freq
        return math.ceil(worker_batches / self.update_freq)  # = ceil(examples / (batch_size x batches))


def update_shape(passthrough) -> UpdateShape:
    """The update shape the fairseq-train flags passed on ask for: --distributed-world-size
    (whose fairseq default is the number of visible GPUs, also for a --cpu run, which then
    starts that many CPU workers), --update-freq and --skip-remainder-batch. The budget
    (--max-update, --total-num-update, the warmup) is counted in updates, so it is reckoned in
    updates of this shape."""
    from fairseq.utils import eval_str_list

    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    parser.add_argument("--update-freq", default="1")
    parser.add_argument("--distributed-world-size", default=None)
    parser.add_argument("--skip-remainder-batch", action="store_true")
    known = known_flags(parser, passthrough)
    try:
        frequencies = set(eval_str_list(known.update_freq, int))
    except (ValueError, SyntaxError, TypeError):
        frequencies = set()
    if len(frequencies) != 1 or min(frequencies) < 1:
        raise ValueError(f"--update-freq {known.update_freq}: expected one positive integer (finetune.py "
                         "reckons the budget in updates from it; a frequency per epoch is not supported)")
    if known.distributed_world_size is None:
        import torch

        workers = max(1, torch.cuda.device_count())  # fairseq's default, on any device
    elif known.distributed_world_size.isdigit() and int(known.distributed_world_size) >= 1:
        workers = int(known.distributed_world_size)
    else:
        raise ValueError(f"--distributed-world-size {known.distributed_world_size}: expected a positive integer")
    return UpdateShape(workers, frequencies.pop(), known.skip_remainder_batch)


def check_save_dir(passthrough) -> None:
    """fairseq-train reads the last --save-dir given: one passed on would train elsewhere than the
    SAVE_DIR whose run finetune.py checks, records and resumes. A --finetune-from-model or
    --restore-file passed on would load another checkpoint than PRETRAINED or --mnli-init (fairseq
    ignores --finetune-from-model beside a --restore-file) and never resume SAVE_DIR's."""
    words = argparse_words(passthrough)
    if "--save-dir" in words:
        raise ValueError("--save-dir: finetune.py takes the save dir as its SAVE_DIR argument; expected it there "
                         "(fairseq-train would train in the one passed on, which finetune.py does not check)")
    for flag in ("--finetune-from-model", "--restore-file"):
        if flag in words:
            raise ValueError(f"{flag}: finetune.py loads PRETRAINED, or --mnli-init, and resumes SAVE_DIR's last "
                             "checkpoint itself; expected one of them instead")


def check_precision(passthrough, device: str) -> None:
    """Refuse half-precision flags fairseq cannot train with on the CPU: it would stop after
    loading the model (--fp16's flattened-gradient optimizer calls CUDA, --bf16 asks for an XLA
    device). --memory-efficient-fp16 and --amp do train on the CPU."""
    if device != "cpu":
        return
    words = set(argparse_words(passthrough))
    for flag in ("--bf16", "--memory-efficient-bf16"):
        if flag in words:
            raise ValueError(f"{flag}: fairseq trains in bfloat16 on CUDA or a TPU only, and this run trains on "
                             "the CPU (--device cpu, or no GPU found); expected no bf16 flag on the CPU")
    if "--fp16" in words and "--memory-efficient-fp16" not in words:
        raise ValueError("--fp16: fairseq's fp16 optimizer needs CUDA, and this run trains on the CPU (--device "
                         "cpu, or no GPU found); expected no --fp16 there (--memory-efficient-fp16 and --amp "
                         "train on the CPU)")


def known_flags(parser: argparse.ArgumentParser, passthrough) -> argparse.Namespace:
    """The flags `parser` knows among those passed on; a ValueError in fairseq's words where one
    lacks its value (fairseq-train's parser would refuse it)."""
    try:
        return parser.parse_known_args(argparse_words(passthrough))[0]
    except argparse.ArgumentError as error:
        raise ValueError(f"fairseq-train refuses these flags: {error}") from None


def check_encoder_flags(passthrough, encoder_flags, switches, pretrained, unrecorded=()) -> None:
    """Refuse a flag passed on that builds another encoder than the checkpoint's: one of
    `encoder_flags` (the flags with a value finetune.py sets from the checkpoint) with another
    value, or one of `switches` (the encoder's on/off flags, as the checkpoint records them) that
    it does not record on. fairseq-train reads the last one given, then stops with a traceback
    after its start-up, unable to load the weights into what it built (--max-positions 128 on a
    512-position encoder, --encoder-normalize-before), or trains another encoder than the
    checkpoint's (an activation). Given with the checkpoint's own value, a flag is left alone,
    and so is one of `unrecorded`, an option the checkpoint does not record (finetune.py gives
    fairseq's default for it)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    recorded = dict(switches)
    for name in switches:
        parser.add_argument(name, action="store_true")
    for index, word in enumerate(encoder_flags[:-1]):
        if word.startswith("--") and not encoder_flags[index + 1].startswith("--") and word not in unrecorded:
            parser.add_argument(word)
            recorded[word] = encoder_flags[index + 1]
    for flag, value in vars(known_flags(parser, passthrough)).items():
        name = "--" + flag.replace("_", "-")
        if value in (None, False) or same_value(value, recorded.get(name)):
            continue
        built = f"{name} {recorded[name]}" if isinstance(recorded.get(name), str) else (
            name if recorded.get(name) else f"no {name}")
        hint = " (cut long rows with glue_prep --truncate-to instead)" if name == "--max-positions" else ""
        raise ValueError(f"{name if value is True else f'{name} {value}'}: {pretrained} holds an encoder built with "
                         f"{built}; expected its own (fairseq-train would build another encoder than the one its "
                         f"weights are for){hint}")


def same_value(given, recorded) -> bool:
    try:
        return float(given) == float(recorded)
    except (TypeError, ValueError):
        return given == recorded
