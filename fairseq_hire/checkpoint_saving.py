"""Checkpoints a kill can never leave half-written, and a resume that survives one that was.

fairseq writes one checkpoint file per save (``torch_persistent_save``: a temporary name,
then a rename) and then *copies* it to the other names (``checkpoint_best.pt``,
``checkpoint_last.pt``, ...) with ``shutil.copyfile``, in place. A SIGKILL during that copy
(preemption) leaves a truncated ``checkpoint_last.pt``, and every rerun of the same command
fails at once. ``install()`` changes three functions of ``fairseq.checkpoint_utils``:

1. ``torch_persistent_save`` writes through ``atomic.atomic_file``: a temporary file named
   after the writer's pid, flushed to disk, renamed over the destination;
2. the copies go through ``atomic.copy_atomically``, so every checkpoint file is at any
   moment either the old or the new one, whole;
3. ``load_checkpoint`` (fairseq-train's start-up), before resuming from
   ``checkpoint_last.pt``, checks that file with the safe loader. If it is truncated or
   corrupt (an older fairseq, a full disk, a bad copy), it is kept aside as
   ``checkpoint_last.pt.corrupt-<time>`` and replaced by the newest intact checkpoint in the
   save dir (the most updates), with a warning: the run resumes and, fairseq's training being
   deterministic, ends where an uninterrupted run ends. With no intact checkpoint left it
   stops with an error instead of silently starting over. Temporary files of dead writers
   are removed. After resuming, a run whose budget is spent (``budget_spent``) ends there,
   with exit status 0: fairseq checks --max-update and --stop-time-hours only after an
   update, so a finished run started again would train one more and overwrite its
   checkpoints.

Remote paths (ioPath handlers) keep fairseq's own behaviour.
"""
import functools
import glob
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Optional

from glue_prep.atomic import atomic_file, copy_atomically, remove_stale
from .checkpoint_errors import CheckpointError, CorruptCheckpointError

logger = logging.getLogger(__name__)


def is_local(path) -> bool:
    from fairseq.file_io import PathManager

    return not PathManager.path_requires_pathmanager(str(path))


def updates_of(state) -> int:
    return int(state["optimizer_history"][-1].get("num_updates", 0))


def newest_intact(save_dir: Path, suffix: str, exclude: Path):
    """(path, updates) of the checkpoint in save_dir with the most updates that loads, or None."""
    from .checkpoint_io import load_state

    found = []
    for name in glob.glob(str(save_dir / f"checkpoint*{suffix}.pt")):
        path = Path(name)
        if path == exclude:
            continue
        try:
            found.append((updates_of(load_state(path)), path.stat().st_mtime, path))
        except (CheckpointError, OSError, KeyError, IndexError, TypeError) as error:
            logger.warning(f"not resuming from {path}: {error}")
    if not found:
        return None
    updates, _, path = max(found)
    return path, updates


def repair_last_checkpoint(last: Path, suffix: str) -> None:
    """If checkpoint_last is unreadable, put the newest intact checkpoint in its place."""
    from .checkpoint_io import load_state

    try:
        load_state(last)
        return
    except CorruptCheckpointError as error:
        problem = error
    fallback = newest_intact(last.parent, suffix, exclude=last)
    aside = last.with_name(f"{last.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        os.link(last, aside)  # instant, and the file never disappears from its name
    except OSError:
        shutil.copyfile(last, aside)
    if fallback is None:
        raise CorruptCheckpointError(
            f"cannot resume: {problem}; no other intact checkpoint in {last.parent} (kept the file as "
            f"{aside.name}). Delete {last} to start the run over from the pretrained model."
        )
    path, updates = fallback
    logger.warning(f"{problem}. Resuming from {path.name} instead ({updates} updates); the "
                   f"unreadable file is kept as {aside.name}")
    copy_atomically(path, last)


def budget_spent(trainer, extra_state, epoch_itr) -> Optional[str]:
    """Which of fairseq-train's limits a resumed run (``checkpoint_utils.load_checkpoint``'s
    result) has already reached: its --max-update, --max-epoch or --stop-time-hours, tested
    as fairseq tests them. None while it has training left."""
    limits = trainer.cfg.optimization
    updates = trainer.get_num_updates()
    if updates >= (limits.max_update or math.inf):
        return f"{updates} updates (--max-update {limits.max_update})"
    if epoch_itr.next_epoch_idx > (limits.max_epoch or math.inf):
        return f"the end of epoch {limits.max_epoch} (--max-epoch {limits.max_epoch})"
    hours = (extra_state or {}).get("previous_training_time", 0) / 3600
    if 0 < limits.stop_time_hours < hours:
        return f"{hours:.3g} hours of training (--stop-time-hours {limits.stop_time_hours})"
    return None


def install() -> None:
    from fairseq import checkpoint_utils

    if getattr(checkpoint_utils.load_checkpoint, "__wrapped_by_fairseq_hire__", False):
        return
    fairseq_save = checkpoint_utils.torch_persistent_save
    fairseq_load_checkpoint = checkpoint_utils.load_checkpoint
    fairseq_path_manager = checkpoint_utils.PathManager

    @functools.wraps(fairseq_save)
    def torch_persistent_save(obj, filename, async_write: bool = False):
        if async_write or not is_local(filename):
            return fairseq_save(obj, filename, async_write)
        import torch

        with atomic_file(Path(filename)) as f:
            torch.save(obj, f)

    class AtomicCopyPathManager(fairseq_path_manager):
        """fairseq's PathManager, with copies that are never seen half-done."""

        @staticmethod
        def copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
            if not (is_local(src_path) and is_local(dst_path)):
                return fairseq_path_manager.copy(src_path, dst_path, overwrite)
            copy_atomically(Path(src_path), Path(dst_path))
            return True

    @functools.wraps(fairseq_load_checkpoint)
    def load_checkpoint(cfg, trainer, **passthrough_args):
        suffix = trainer.checkpoint_suffix
        last = Path(cfg.save_dir) / f"checkpoint_last{suffix}.pt"
        if trainer.is_data_parallel_master and is_local(last):
            removed = remove_stale(Path(cfg.save_dir), prefix=".checkpoint")
            if removed:
                logger.info(f"removed {removed} temporary files of killed runs from {cfg.save_dir}")
            if cfg.restore_file == "checkpoint_last.pt" and last.exists():
                repair_last_checkpoint(last, suffix)
        extra_state, epoch_itr = fairseq_load_checkpoint(cfg, trainer, **passthrough_args)
        spent = budget_spent(trainer, extra_state, epoch_itr)
        if spent:
            # every rank loaded the same state, so every rank ends here, before any update or save
            logger.info(f"nothing left to train: the run has reached {spent}; its checkpoints are unchanged")
            raise SystemExit(0)
        return extra_state, epoch_itr

    load_checkpoint.__wrapped_by_fairseq_hire__ = True
    checkpoint_utils.torch_persistent_save = torch_persistent_save
    checkpoint_utils.PathManager = AtomicCopyPathManager
    checkpoint_utils.load_checkpoint = load_checkpoint
