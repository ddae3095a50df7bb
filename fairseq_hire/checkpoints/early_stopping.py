"""fairseq-train's --patience counters, kept in a plugin run's checkpoints.

fairseq counts the validations without improvement in attributes of
``fairseq_cli.train.should_stop_early`` (``best``, ``num_runs``), which no checkpoint stores. A
resumed run therefore starts counting again: a killed run trains longer than an uninterrupted
one, and a run that stopped early trains ``--patience`` + 1 more epochs each time it is started
again. A plugin run's checkpoints record the counters under ``RECORD`` in their extra state, and
resuming puts them back, under the conditions on which fairseq puts back ``best`` (the best
score): the state resumed is the run's own (not --finetune-from-model's first load) and neither
--reset-optimizer nor --reset-meters is given.
"""
import logging
import sys
from typing import Optional

logger = logging.getLogger(__name__)

RECORD = "fairseq_hire_early_stopping"  # key in a checkpoint's extra_state


def counters():
    """fairseq-train's ``should_stop_early``, which owns the counters: in the module that runs the
    training loop, ``__main__`` under ``python -m fairseq_cli.train`` (finetune.py's command; a
    second import of ``fairseq_cli.train`` would be another module with counters of its own)."""
    running = sys.modules.get("__main__")
    if getattr(getattr(running, "__spec__", None), "name", None) == "fairseq_cli.train":
        return running.should_stop_early
    from fairseq_cli.train import should_stop_early

    return should_stop_early


def saved_records(checkpoint_cfg, trainer) -> dict:
    """What the checkpoint about to be saved adds to its extra_state: the counters as they are
    after the validation that triggered the save (fairseq counts it before it saves)."""
    owner = counters()
    if checkpoint_cfg.patience <= 0 or not hasattr(owner, "num_runs"):
        return {}
    return {RECORD: {"best": float(owner.best), "num_runs": int(owner.num_runs),
                     "num_updates": trainer.get_num_updates()}}


def well_formed(record) -> bool:
    if isinstance(record, dict) and isinstance(record.get("best"), float) and all(
            type(record.get(key)) is int and record[key] >= 0 for key in ("num_runs", "num_updates")):
        return True
    logger.warning(f"ignoring the early-stopping counters of the checkpoint resumed: expected "
                   f"{{'best': float, 'num_runs': int, 'num_updates': int}}, found {str(record)[:200]}")
    return False


def restore(checkpoint_cfg, trainer, extra_state) -> Optional[str]:
    """After fairseq resumed `trainer` from a checkpoint with `extra_state`: put the counters back,
    where the checkpoint holds this run's own state. Returns why the run has already stopped
    early, or None."""
    record = (extra_state or {}).get(RECORD)
    patience = checkpoint_cfg.patience
    if (patience <= 0 or record is None or checkpoint_cfg.reset_optimizer or checkpoint_cfg.reset_meters
            or not well_formed(record) or record["num_updates"] != trainer.get_num_updates()):
        return None
    owner = counters()
    owner.best, owner.num_runs = record["best"], record["num_runs"]
    if owner.num_runs >= patience:
        return f"{owner.num_runs} validations without improvement (--patience {patience})"
    return None
