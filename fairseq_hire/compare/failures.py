"""Runs that did not finish: a run whose fine-tuning or scoring exits with an error (a diverged
run leaves no checkpoint_best.pt to score; fairseq stops on NaN gradients) has no run file, so
without a record the report would average the runs that survived and call none failed. Such a
run leaves OUT/runs/<head>-seed<seed>.failed (the stage, exit code, log and the log's last
line, and the recipe it was tried with); the report lists it and counts it as a failed run,
and a later successful run of that head and seed removes it. A run stopped by SIGINT or
SIGTERM (Ctrl-C, a scheduler), or killed by the comparison being stopped, is stopped, not
failed: no record."""
import json
import signal
from pathlib import Path
from typing import Dict, List

from glue_prep.atomic import write_atomically

SUFFIX = ".failed"
# exit codes of a process stopped by a signal: negative (killed) or 128 + signal (a shell's)
STOPPED = {-signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGINT, 128 + signal.SIGTERM}
REASON_CHARACTERS = 300


def failure_path(result: Path) -> Path:
    return result.with_suffix(SUFFIX)


def last_line(log: Path) -> str:
    try:
        lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return ""
    return next((line for line in reversed(lines) if line), "")[:REASON_CHARACTERS]


def record_failure(result: Path, head: str, seed: int, stage: str, code: int, log: Path, recipe: Dict,
                   stopping: bool = False) -> None:
    """Leave the record of a run that `stage` (fine-tuning, scoring) ended with exit `code`;
    none while the comparison itself is `stopping` (Ctrl-C: it kills its runs' processes)."""
    if stopping or code in STOPPED:
        return
    record = {"head": head, "seed": seed, "stage": stage, "exit_code": code, "log": str(log),
              "reason": last_line(log), "recipe": recipe}
    write_atomically(failure_path(result), json.dumps(record) + "\n")


def clear_failure(result: Path) -> None:
    failure_path(result).unlink(missing_ok=True)


def load_failures(runs_dir: Path, recipe_key, wanted_key) -> List[Dict]:
    """The records of runs that did not finish, tried with the recipe whose key is `wanted_key`
    (a record of another recipe is an earlier attempt in this folder, not this comparison's),
    for heads and seeds that have no run file."""
    found = []
    for path in sorted(Path(runs_dir).glob(f"*{SUFFIX}")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            tried_here = recipe_key(record["recipe"]) == wanted_key
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # a damaged record is no run: the run files decide
        if tried_here and not path.with_suffix(".json").exists():
            found.append({**record, "file": str(path)})
    return found
