"""The checkpoint hooks of the plugin's fairseq-train runs: checkpoints a kill can never leave
half-written, a resume that survives one that was, a finished run that stays finished, and the
safe loader for every checkpoint such a run reads.

fairseq offers no hook around its checkpoint loading and saving, so ``install()`` puts one in
front of five names of ``fairseq.checkpoint_utils`` (``load_checkpoint``, ``save_checkpoint``,
``load_checkpoint_to_cpu``, ``torch_persistent_save``, ``PathManager``). It is called when the
plugin's task is set up to train (fairseq-train, fairseq-hydra-train), its criterion is built
or its model is built (``roberta_hire``), never at import. Each hook acts for
the trainer of a plugin run only (``plugin_run``: its task or its criterion is
``sentence_prediction_hire``, as in every recipe, finetune.py, the comparison and the YAMLs,
or its model is ``roberta_hire`` under fairseq's own sentence_prediction task and criterion, or
masked_lm) and hands every other call to fairseq unchanged, so a run of other components stays
stock fairseq even in a process where a plugin run was set up. For a plugin run's trainer:

1. ``load_checkpoint`` (fairseq-train's start-up) refuses a --restore-file or
   --finetune-from-model that is no file (``check_named_checkpoint``: fairseq would train from
   random weights). Before resuming from ``checkpoint_last.pt``, it checks that file with the
   safe loader. If it is truncated or
   corrupt (an older fairseq, a full disk, a bad copy), it is kept aside as
   ``checkpoint_last.pt.corrupt-<time>`` and replaced by the newest intact checkpoint in the
   save dir (the most updates), with a warning: the run resumes and, fairseq's training being
   deterministic, ends where an uninterrupted run ends. With no intact checkpoint left it
   stops with an error instead of silently starting over. Temporary files of dead writers
   are removed. Then fairseq's own ``load_checkpoint`` runs inside ``plugin_checkpoints()``,
   where ``load_checkpoint_to_cpu`` is the safe loader (``checkpoints.loading``:
   --finetune-from-model, --restore-file, resuming), whose checkpoint must be the encoder the
   run built (``fitting``: a converted checkpoint fine-tuned without its sizes, epsilon or
   activation), and torch's allowlist holds fairseq's checkpoint contents for the checkpoint
   fairseq broadcasts to ranks > 0. After resuming, a run whose budget is spent
   (``budget_spent``) ends there, with exit status 0: fairseq checks --max-update and
   --stop-time-hours only after an update, so a finished run started again would train one
   more and overwrite its checkpoints. fairseq's --patience counters are put back from the
   checkpoint (``early_stopping``), so a run that stopped early stays stopped too.
2. ``save_checkpoint`` runs fairseq's own inside ``plugin_checkpoints()`` too, where
   ``torch_persistent_save`` writes through ``atomic.atomic_file`` (a temporary file named
   after the writer's pid, flushed to disk, renamed over the destination, the folder synced)
   and ``PathManager.copy``, which fairseq uses to copy the file to its other names
   (``checkpoint_best.pt``, ``checkpoint_last.pt``) in place with ``shutil.copyfile``, goes
   through ``atomic.copy_atomically``: every checkpoint file is at any moment either the old
   or the new one, whole. (A SIGKILL during fairseq's in-place copy leaves a truncated
   ``checkpoint_last.pt``, and every rerun of the same command would fail at once.) The
   checkpoints carry fairseq's --patience counters, and the layers a run pruned with
   --encoder-layers-to-keep kept (``fitting``: resuming it gives them back their numbers).

Remote paths (ioPath handlers) and asynchronous writes keep fairseq's own behaviour.
"""
import contextlib
import contextvars
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

from . import early_stopping, fitting, loading
from .configuration import ALLOWED_TASKS, task_name
from .errors import CheckpointError, CorruptCheckpointError, MissingCheckpointError
from .loading import HOOK_MARK, fairseq_contents_allowed, load_state
from ..patches import one_line_refusals

logger = logging.getLogger(__name__)


def is_local(path) -> bool:
    from fairseq.file_io import PathManager

    return not PathManager.path_requires_pathmanager(str(path))


def updates_of(state) -> int:
    return int(state["optimizer_history"][-1].get("num_updates", 0))


def newest_intact(save_dir: Path, suffix: str, exclude: Path):
    """(path, updates) of the checkpoint in save_dir with the most updates that loads, or None."""
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
    try:
        load_state(last)  # read whole: a mapped read does not see a record shorter than its tensor
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


# ------------------------------------------------------------------ the hooks

PLUGIN_CHECKPOINTS = contextvars.ContextVar("fairseq_hire_plugin_checkpoints", default=False)
# the model a plugin run's load_checkpoint loads into: each checkpoint it reads must fit it (``fitting``)
LOADING_INTO = contextvars.ContextVar("fairseq_hire_loading_into", default=None)


# the plugin's task, criterion and model classes, added by install(): a trainer with any is a plugin run
PLUGIN_COMPONENTS: set = set()


def plugin_run(trainer) -> bool:
    """Whether `trainer` trains with the plugin's task or criterion, or with its model under a task
    the safe loader reads (fairseq's sentence_prediction, masked_lm: ``configuration.ALLOWED_TASKS``;
    under another, e.g. sentence_ranking, the run stays fairseq's, as its checkpoints would be refused)."""
    components = tuple(PLUGIN_COMPONENTS)
    if isinstance(trainer.task, components) or isinstance(trainer.get_criterion(), components):
        return True
    return isinstance(trainer.get_model(), components) and task_name(trainer.cfg.task) in ALLOWED_TASKS


@contextlib.contextmanager
def plugin_checkpoints():
    """Inside, the hooks of ``install()`` make fairseq's checkpoint functions load safely and
    write atomically, as they do in a plugin run's load_checkpoint and save_checkpoint."""
    token = PLUGIN_CHECKPOINTS.set(True)
    try:
        with fairseq_contents_allowed():
            yield
    finally:
        PLUGIN_CHECKPOINTS.reset(token)


def check_named_checkpoint(cfg, trainer) -> None:
    """The checkpoint fairseq's load_checkpoint reads by the user's name must be a file: it reads a
    missing --restore-file, or a folder named by it or by --finetune-from-model, as no checkpoint
    at all, and trains from random weights."""
    suffix = trainer.checkpoint_suffix
    if cfg.restore_file != "checkpoint_last.pt":
        flag, path = "--restore-file", cfg.restore_file.replace(".pt", suffix + ".pt")
    elif cfg.finetune_from_model and not os.path.exists(os.path.join(cfg.save_dir, f"checkpoint_last{suffix}.pt")):
        flag, path = "--finetune-from-model", cfg.finetune_from_model
    else:
        return
    if is_local(path) and loading.not_a_file(path):
        raise MissingCheckpointError(f"{flag} {path} {loading.not_a_file(path)}; expected a checkpoint file "
                                     "(fairseq would train from random weights)")


def prepare_resume(cfg, trainer) -> None:
    """Before fairseq resumes: temporary files of killed writers removed, checkpoint_last repaired."""
    suffix = trainer.checkpoint_suffix
    last = Path(cfg.save_dir) / f"checkpoint_last{suffix}.pt"
    if trainer.is_data_parallel_master and is_local(last):
        removed = remove_stale(Path(cfg.save_dir), prefix=".checkpoint")
        if removed:
            logger.info(f"removed {removed} temporary files of killed runs from {cfg.save_dir}")
        if cfg.restore_file == "checkpoint_last.pt" and last.exists():
            repair_last_checkpoint(last, suffix)


@contextlib.contextmanager
def extra_records(trainer, records: dict):
    """Inside, the checkpoints `trainer` saves carry `records` in their extra_state."""
    if not records:
        yield
        return
    fairseq_save = trainer.save_checkpoint

    def save_checkpoint(filename, extra_state):
        return fairseq_save(filename, {**extra_state, **records})

    trainer.save_checkpoint = save_checkpoint  # this trainer, for this one save only
    try:
        yield
    finally:
        del trainer.save_checkpoint


def hook(original, hooked):
    functools.update_wrapper(hooked, original)
    setattr(hooked, HOOK_MARK, True)
    return hooked


def install(component: type) -> None:
    """Make trainers with `component` (the plugin's task, criterion or model class) plugin runs, and put
    the hooks in front of fairseq's checkpoint functions, once per process."""
    from fairseq import checkpoint_utils

    PLUGIN_COMPONENTS.add(component)

    if getattr(checkpoint_utils.load_checkpoint, HOOK_MARK, False):
        return
    fairseq_load = checkpoint_utils.load_checkpoint
    fairseq_save = checkpoint_utils.save_checkpoint
    fairseq_load_to_cpu = checkpoint_utils.load_checkpoint_to_cpu
    fairseq_persistent_save = checkpoint_utils.torch_persistent_save
    fairseq_path_manager = checkpoint_utils.PathManager

    def load_checkpoint(cfg, trainer, **passthrough_args):
        if not plugin_run(trainer):
            return fairseq_load(cfg, trainer, **passthrough_args)
        one_line_refusals.install()  # also a run of roberta_hire under fairseq's own task and criterion
        check_named_checkpoint(cfg, trainer)
        prepare_resume(cfg, trainer)
        fitting.remember_kept_layers(trainer.get_model())
        token = LOADING_INTO.set(trainer.get_model())
        try:
            with plugin_checkpoints():
                extra_state, epoch_itr = fairseq_load(cfg, trainer, **passthrough_args)
        finally:
            LOADING_INTO.reset(token)
        fitting.forget_pruning(trainer.cfg.model)
        stopped_early = early_stopping.restore(cfg, trainer, extra_state)
        spent = budget_spent(trainer, extra_state, epoch_itr) or stopped_early
        if spent:
            # every rank loaded the same state, so every rank ends here, before any update or save
            logger.info(f"nothing left to train: the run has reached {spent}; its checkpoints are unchanged")
            raise SystemExit(0)
        return extra_state, epoch_itr

    def save_checkpoint(cfg, trainer, epoch_itr, val_loss):
        # fairseq keeps the best score as an attribute of checkpoint_utils.save_checkpoint, this function
        if not plugin_run(trainer):
            return fairseq_save(cfg, trainer, epoch_itr, val_loss)
        records = {**early_stopping.saved_records(cfg, trainer), **fitting.saved_records(trainer.get_model())}
        with plugin_checkpoints(), extra_records(trainer, records):
            return fairseq_save(cfg, trainer, epoch_itr, val_loss)

    def load_checkpoint_to_cpu(path, arg_overrides=None, load_on_all_ranks=False):
        if PLUGIN_CHECKPOINTS.get():
            state = loading.load_checkpoint_to_cpu(path, arg_overrides, load_on_all_ranks)
            if LOADING_INTO.get() is not None:
                fitting.fit(LOADING_INTO.get(), state, path)
            return state
        return fairseq_load_to_cpu(path, arg_overrides, load_on_all_ranks)

    def torch_persistent_save(obj, filename, async_write: bool = False):
        if not PLUGIN_CHECKPOINTS.get() or async_write or not is_local(filename):
            return fairseq_persistent_save(obj, filename, async_write)
        import torch

        with atomic_file(Path(filename)) as f:
            torch.save(obj, f)

    class PluginRunPathManager(fairseq_path_manager):
        """fairseq's PathManager, whose copies are never seen half-done in a plugin run."""

        @staticmethod
        def copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
            if not (PLUGIN_CHECKPOINTS.get() and is_local(src_path) and is_local(dst_path)):
                return fairseq_path_manager.copy(src_path, dst_path, overwrite)
            copy_atomically(Path(src_path), Path(dst_path))
            return True

    setattr(PluginRunPathManager, HOOK_MARK, True)
    checkpoint_utils.load_checkpoint = hook(fairseq_load, load_checkpoint)
    checkpoint_utils.save_checkpoint = hook(fairseq_save, save_checkpoint)
    checkpoint_utils.load_checkpoint_to_cpu = hook(fairseq_load_to_cpu, load_checkpoint_to_cpu)
    checkpoint_utils.torch_persistent_save = hook(fairseq_persistent_save, torch_persistent_save)
    checkpoint_utils.PathManager = PluginRunPathManager
