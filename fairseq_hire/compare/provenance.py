"""What a run file records about how its run was trained, read from the run itself: the
budget fairseq-train was given, the training rows, every validation fairseq logged, and the
code, torch and GPU that trained it. The report checks runs against these, so they are read
from what ran (the command and log of the run, its save dir), never from what was asked."""
import hashlib
import json
import shlex
import subprocess
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional

from glue_prep.atomic import write_atomically
from glue_prep.metadata import read_metadata

from ..workflow.same_run import argparse_words, resumable

INPUTS_FILE = "inputs_sha256.json"  # in a run's save dir: what its first attempt trained from
SCHEDULE_FLAGS = ("--lr", "--batch-size", "--update-freq", "--max-update", "--max-epoch", "--warmup-updates")
FLAG_ALIASES = {"--max-sentences": "--batch-size"}  # fairseq's argparse_alias: the same option


def fairseq_schedule(log: str) -> Optional[Dict]:
    """The budget the run trained with, from the fairseq-train command finetune.py prints first
    (with --train-size it follows the subset); of a log that holds several attempts (a run
    started again), the last one's, which trained the model scored. As in fairseq's argparse, a
    flag given twice (the recipe's, then one passed through) counts last, as `--flag value` or
    `--flag=value`, under its own name or fairseq's alias for it."""
    for line in reversed(log.splitlines()):
        if " -m fairseq_cli.train " in line:  # the command, not fairseq's log lines from that module
            words, schedule = argparse_words(shlex.split(line)), {}
            for name, value in zip(words, words[1:]):
                name = FLAG_ALIASES.get(name, name)
                if name in SCHEDULE_FLAGS:
                    schedule[name.lstrip("-").replace("-", "_")] = value
            return schedule
    return None


@lru_cache(maxsize=None)
def _digest(path: Path, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:  # cached per version
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    stat = Path(path).stat()
    # a file rewritten or replaced gets a new ctime or inode even where its size and mtime are kept
    return _digest(Path(path).resolve(), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)


def input_digests(pretrained: Path, data: Path) -> Dict[str, str]:
    """What a run was trained from, by content: the pretrained checkpoint, and the training
    split's binaries and dictionaries (every input's and the labels'), which the recipe names by
    path only: another model.pt or data binarised again at the same path is another comparison."""
    training = hashlib.sha256()
    files = [path for path in sorted(Path(data).glob("*/*"))
             if path.is_file() and path.name.split(".")[0] in ("train", "dict")]
    for path in files:
        training.update(f"{path.parent.name}/{path.name}:{file_digest(path)}\n".encode())
    # None where there is nothing to digest (a file gone since): not compared
    return {"pretrained": file_digest(pretrained) if Path(pretrained).is_file() else None,
            "training_data": training.hexdigest() if files else None}


def differing_inputs(mine, theirs) -> List[str]:
    """The inputs (pretrained, training_data) two runs' digests (``inputs_sha256``) both hold,
    and differ in."""
    if not isinstance(mine, dict) or not isinstance(theirs, dict):  # a run file from before the digests
        return []
    return [name for name in mine if None not in (mine[name], theirs.get(name)) and mine[name] != theirs[name]]


def pin_inputs(save_dir: Path, inputs: Dict[str, str]) -> Optional[str]:
    """Keep a run's input digests in its save dir while nothing there would be resumed; where
    a checkpoint would be (a stopped run started again goes on from checkpoints trained on the
    earlier attempt's files, whose run file must not record other files' digests), why it may
    not go on, if its inputs changed since. Checkpoints without a pin (an older version's run)
    are pinned now: what trained them is not known."""
    pinned = Path(save_dir) / INPUTS_FILE
    if resumable(Path(save_dir)) and pinned.exists():
        try:
            moved = differing_inputs(json.loads(pinned.read_text(encoding="utf-8")), inputs)
        except (OSError, ValueError) as error:
            return f"{pinned}: unreadable ({error}); expected the input digests of the run's earlier attempt"
        return (f"{', '.join(moved)} changed since the attempt whose checkpoints are in {save_dir}; remove that "
                "folder to train the run from the new files") if moved else None
    pinned.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(pinned, json.dumps(inputs) + "\n")
    return None


def subset_record(save_dir: Path) -> Optional[Dict]:
    """The training subset a --train-size run trained on (glue_prep.subset's record: size, seed,
    per-class counts and the digest of its rows), or None for a run on every training row."""
    from ..workflow.finetune import SUBSET_FOLDER

    subset = save_dir / SUBSET_FOLDER
    meta = read_metadata(subset, missing_ok=True) if subset.is_dir() else None
    return None if meta is None or meta.train_subset is None else asdict(meta.train_subset)


def parse_validations(log: str) -> List[Dict]:
    """Every validation fairseq logged (--log-format json): epoch and valid_* figures."""
    records = []
    for line in log.splitlines():
        if "| valid |" in line and "{" in line:
            record = json.loads(line[line.index("{"):])
            records.append({k[len("valid_"):] if k.startswith("valid_") else k: float(v)
                            for k, v in record.items() if k.startswith("valid_") or k == "epoch"})
    return records


def code_version() -> Optional[str]:
    """The git commit of the plugin that trained (with +dirty for uncommitted changes)."""
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no",
                                "fairseq_hire"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def torch_version() -> str:
    import torch

    return torch.__version__


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name()
