"""The runs of a comparison: one fine-tuning per (head, seed), each leaving one result file.

A run is ``scripts/finetune.py`` (``fairseq_hire.workflow.finetune``) with the head's options and the
comparison's training flags, then the dev split scored through the hub
(``fairseq_hire.workflow.evaluation``, per example), then ``OUT/runs/<head>-seed<seed>.json``,
written atomically. A rerun skips runs whose file exists; a run killed mid-training resumes
from its checkpoint_last.pt (fine-tuning is restart-safe).

Several processes may work on one comparison. What holds, on one machine:

- A run is claimed by an exclusive ``flock`` on ``OUT/runs/<head>-seed<seed>.lock``: at most
  one process holds it, and the kernel releases it when the last process holding it ends,
  however it ends. The file's text (host and pid of the comparison) is for people only;
  nothing is decided by it. A lock file is unlinked only by a process holding its lock (a
  claimant checks that the file it locked is still the one at the path), so there is no
  read-unlink-create race.
- The training and scoring processes share the claim: each gets the locked file as its stdin,
  which every process it starts inherits (finetune.py's fairseq-train included: Python's
  subprocesses close every other descriptor), so the lock stays held while any of them lives,
  even if the comparison was killed. At most one trainer writes a run's save dir. (Processes
  started through multiprocessing close their stdin: DataLoader workers, and the per-GPU
  workers of a multi-GPU run, which torch interrupts when their fairseq-train dies.)
- The trainer does not outlive its comparison: it runs in a process group of its own, and a
  watchdog (``watchdog.py``) kills that group when the comparison dies (kill -9 included) or
  on Ctrl-C, which the comparison also answers by killing its runs' groups itself (run_all);
  the comparison kills the group when the trainer's first process ends, so nothing it left
  runs on. Only if the comparison and its watchdog are both killed (or the comparison
  dies in the instant between starting a trainer and its watchdog) does the trainer run on to
  its end, holding the lock: other comparisons skip the run until then, and a rerun resumes
  from its checkpoint.

Machines sharing OUT over NFS: Linux emulates ``flock`` there with the server's byte-range
locks, so the claim is exclusive across machines only when the mount has locking (NFSv4, or
NFSv3 with lockd; not ``nolock`` or ``local_lock=flock``, which make it per machine), and a
machine that loses the server for longer than its lease (about 90 s) can lose its lock while
its trainer still runs. On a shared folder without working locks, give each machine its own
heads or seeds.
"""
import argparse
import errno
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence, TextIO

from glue_prep.atomic import write_atomically
from ..modules.options import head_options, head_preset
from ..workflow.same_run import argparse_words, request_differences, training_flags
from .claims import Claim
from .failures import clear_failure, record_failure
from .provenance import (code_version, differing_inputs, fairseq_schedule, gpu_name, input_digests,
                         parse_validations, pin_inputs, subset_record, torch_version)
from .watchdog import RUNNING, kill_group

FINETUNE = [sys.executable, "-m", "fairseq_hire.workflow.finetune"]
EVALUATE = [sys.executable, "-m", "fairseq_hire.workflow.evaluation"]
WATCHDOG = [sys.executable, "-I", str(Path(__file__).with_name("watchdog.py"))]
LOG_FLAGS = ["--log-format", "json", "--log-interval", "50"]
RESULT_VERSION = 1
LAYER_CACHE_FLAG = "--layer-cache"


@dataclass(frozen=True)
class Comparison:
    """One task, one encoder, one training recipe; the heads and seeds are chosen per run."""

    task: str
    data: Path
    pretrained: Path
    out: Path
    train_flags: Sequence[str] = ()  # e.g. --epochs 3 --lr 3e-5, the same for every head
    device: str = "auto"
    work: Optional[Path] = None  # checkpoints and training logs; default OUT/work

    @property
    def runs_dir(self) -> Path:
        return self.out / "runs"

    @property
    def work_dir(self) -> Path:
        return Path(self.work) if self.work is not None else self.out / "work"

    def result_path(self, head: str, seed: int) -> Path:
        return self.runs_dir / f"{head}-seed{seed}.json"

    @property
    def metric(self) -> str:
        """The metric checkpoints are selected by, and the comparison is made on: the task's
        official one, unless the training flags choose another."""
        from ..workflow.recipes import recipe

        words = argparse_words(self.train_flags)  # as fairseq reads them: --flag=value, the last one counts
        chosen = [value for name, value in zip(words, words[1:]) if name == "--best-checkpoint-metric"]
        return chosen[-1] if chosen else recipe(self.task, self.data).best_metric

    @cached_property
    def training_device(self) -> str:
        """cpu or gpu, resolved once: on a GPU fine-tuning runs in fp16 (fairseq's recipe), on
        the CPU in fp32, so the device is part of the recipe and every run uses the same one."""
        from ..workflow.finetune import training_device

        return training_device(self.device)

    def recipe(self) -> Dict:
        """What every run of this comparison shares; a run with another recipe is refused. The
        layer cache's folder is not part of it: a run on the cache ends where the same run
        without it ends (tests/test_freeze_encoder.py)."""
        return {"task": self.task, "data": str(Path(self.data).resolve()),
                "pretrained": str(Path(self.pretrained).resolve()),
                "train_flags": without_flag(self.train_flags, LAYER_CACHE_FLAG), "device": self.training_device}

    def finetune_arguments(self, head: str, seed: int, save_dir: Path) -> List[str]:
        """finetune.py's arguments for one run."""
        return [self.task, str(self.data), str(self.pretrained), str(save_dir),
                "--head", head, "--seed", str(seed), "--device", self.training_device,
                *self.train_flags, *LOG_FLAGS]

    def finetune_command(self, head: str, seed: int, save_dir: Path) -> List[str]:
        return [*FINETUNE, *self.finetune_arguments(head, seed, save_dir)]

    def evaluate_command(self, save_dir: Path, scores_file: Path) -> List[str]:
        return [*EVALUATE, str(save_dir), str(self.data), "--per-example", "--out", str(scores_file)]


def recorded_recipe(record: Dict) -> Optional[Dict]:
    """A run file's recipe. Files written before the recipe held the device name it in their
    fine-tuning command's --device; where that said auto, the device is not known."""
    recipe = record.get("recipe")
    if recipe is None or "device" in recipe:
        return recipe
    command = record.get("train_command", [])
    device = command[command.index("--device") + 1] if "--device" in command else "auto"
    return {**recipe, "device": device if device in ("cpu", "gpu") else "not recorded"}


@lru_cache(maxsize=None)
def recipe_parser():
    """finetune.py's parser, reading a recorded recipe: no --help, and every argparse exit (an
    ambiguous abbreviation exits despite exit_on_error) an ArgumentError instead."""
    from ..workflow.finetune import build_parser

    def unreadable(message):
        raise argparse.ArgumentError(None, message)

    parser = build_parser(add_help=False)
    # read as finetune.py read recipes recorded before it refused abbreviations (--freeze for --freeze-encoder)
    parser.exit_on_error, parser.error, parser.allow_abbrev = False, unreadable, True
    return parser


def recipe_key(recipe: Optional[Dict]) -> Optional[Dict]:
    """The recipe with its training flags as finetune.py reads them: its own options by value
    (in any order, --flag=value or not), the flags it passes on as the request a resumed run is
    checked against (same_run: as fairseq-train's argparse reads them, less logging flags). Two
    recipes train alike when their keys are equal."""
    if not isinstance(recipe, dict) or not isinstance(recipe.get("train_flags"), list):
        return recipe
    try:  # the positional arguments are the recipe's own fields
        options, passthrough = recipe_parser().parse_known_args(["task", "data", "pretrained", "save_dir",
                                                                 *map(str, recipe["train_flags"])])
    except argparse.ArgumentError:  # a recipe finetune.py cannot read is compared as recorded
        return recipe
    return {**recipe, "train_flags": {**vars(options), "fairseq_train_flags": training_flags(passthrough)}}


def check_recipe(comparison: Comparison) -> None:
    """Refuse to add runs to a comparison whose finished runs were trained another way."""
    wanted = comparison.recipe()
    wanted_key = recipe_key(wanted)
    inputs = None  # digested once, where a finished run records its own
    for path in sorted(comparison.runs_dir.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            recipe = recorded_recipe(record)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"{path}: not a run file of a comparison ({type(error).__name__}: {error}); "
                             "expected the file a finished run writes: delete it, or use another OUT folder") from None
        if recipe_key(recipe) != wanted_key:
            raise ValueError(f"{path} was trained with {recipe}; this comparison's recipe is {wanted}. "
                             "Every head must share one recipe: use another OUT folder")
        trained_from = record.get("inputs_sha256")
        if not isinstance(trained_from, dict):  # a run file from before the digests
            continue
        inputs = inputs or input_digests(comparison.pretrained, comparison.data)
        changed = differing_inputs(trained_from, inputs)
        if changed:
            raise ValueError(f"{path} was trained from other files at the same paths ({', '.join(changed)}: sha256 "
                             f"{', '.join(str(trained_from[n])[:12] for n in changed)}, now "
                             f"{', '.join(inputs[n][:12] for n in changed)}): use another OUT folder")
    check_stopped_runs(comparison)


def check_stopped_runs(comparison: Comparison) -> None:
    """Refuse to add runs to a comparison whose stopped runs (a checkpoint, no run file yet) were
    started with another recipe: each would resume as itself, or its finetune.py would refuse it
    and the refusal count as a failed run of the head."""
    from ..workflow.finetune import parse_arguments

    for save_dir in sorted(comparison.work_dir.glob("*-seed*")):
        head, _, seed = save_dir.name.rpartition("-seed")
        try:
            head_preset(head)
        except ValueError:  # no folder of this comparison's runs
            continue
        if not (save_dir.is_dir() and seed.isdigit()):
            continue
        differ = request_differences(*parse_arguments(comparison.finetune_arguments(head, int(seed), save_dir)))
        if differ:
            raise ValueError(f"{save_dir} holds a stopped run started with another recipe ({'; '.join(differ)}); "
                             "every head must share one recipe: use another OUT folder, or delete that folder")


@dataclass
class RunOutcome:
    head: str
    seed: int
    status: str  # done, skipped, failed, claimed-elsewhere
    message: str = ""
    seconds: float = 0.0


@dataclass
class Runner:
    comparison: Comparison
    threads: int = 1
    keep_checkpoints: bool = False
    log: callable = field(default=lambda text: print(text, flush=True))

    def run(self, head: str, seed: int) -> RunOutcome:
        head_options(head)  # an unknown head is refused here, naming the known ones
        result = self.comparison.result_path(head, seed)
        if result.exists():
            return RunOutcome(head, seed, "skipped", f"{result} exists")
        try:
            with Claim(result.with_suffix(".lock")) as claim:
                if not claim.held:
                    return RunOutcome(head, seed, "claimed-elsewhere", claim.owner)
                if result.exists():  # finished while we waited for the claim
                    return RunOutcome(head, seed, "skipped", f"{result} exists")
                return self.train_and_score(head, seed, result, claim.file)
        except OSError as error:
            if error.errno != errno.ELOOP:
                raise
            return RunOutcome(head, seed, "failed", f"{error}: a link, where the comparison keeps its own lock and log "
                              "files (opened without following links); remove it")

    def train_and_score(self, head: str, seed: int, result: Path, lock: TextIO) -> RunOutcome:
        comparison = self.comparison
        name = f"{comparison.task} {head} seed {seed}"
        work = comparison.work_dir / f"{head}-seed{seed}"
        logs = comparison.work_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = run_environment(self.threads)
        command = comparison.finetune_command(head, seed, work)
        self.log(f"run {name}" + (" (resuming)" if (work / "checkpoint_last.pt").exists() else ""))
        inputs = input_digests(comparison.pretrained, comparison.data)  # the files as the run starts from them
        refused = pin_inputs(work, inputs)
        if refused:
            return RunOutcome(head, seed, "failed", refused)
        start = time.time()
        train_log = logs / f"{head}-seed{seed}.log"
        code = run_sharing_lock(command, lock, train_log, env)
        if code != 0:
            record_failure(result, head, seed, "fine-tuning", code, train_log, comparison.recipe(), RUNNING.stopping)
            return RunOutcome(head, seed, "failed", f"fine-tuning exited with {code}; log: {train_log}")
        train_seconds = time.time() - start
        scores_file = work / "dev-scores.json"
        scoring_log = logs / f"{head}-seed{seed}-scoring.log"
        code = run_sharing_lock(comparison.evaluate_command(work, scores_file), lock, scoring_log, env)
        if code != 0:
            record_failure(result, head, seed, "scoring", code, scoring_log, comparison.recipe(), RUNNING.stopping)
            return RunOutcome(head, seed, "failed", f"scoring exited with {code}; log: {scoring_log}")
        changed = differing_inputs(inputs, input_digests(comparison.pretrained, comparison.data))
        if changed:  # trained partly from other files than those it would record
            shutil.rmtree(work, ignore_errors=True)
            return RunOutcome(head, seed, "failed", f"{', '.join(changed)} changed while the run trained: not "
                              "recorded, its checkpoints removed; run it again")
        scores = json.loads(scores_file.read_text())
        record = {
            "version": RESULT_VERSION, "task": comparison.task, "head": head, "seed": seed,
            "metric": comparison.metric,
            "head_options": head_options(head).as_args(), "recipe": comparison.recipe(),
            "metrics": scores["metrics"], "dev": {k: scores[k] for k in ("split", "examples", "source")},
            **scores["per_example"],
            "validations": parse_validations(train_log.read_text(encoding="utf-8")),
            "train_command": command[1:], "train_seconds": round(train_seconds, 1),
            "threads": self.threads, "code_version": code_version(), "torch": torch_version(),
            "machine": f"{platform.machine()} {os.cpu_count()} cores, {socket.gethostname()}",
            "gpu": gpu_name() if comparison.training_device == "gpu" else None,
            "schedule": fairseq_schedule(train_log.read_text(encoding="utf-8")),
            "train_subset": subset_record(work),
            "inputs_sha256": inputs,
        }
        write_atomically(result, json.dumps(record) + "\n")
        clear_failure(result)
        if not self.keep_checkpoints:
            shutil.rmtree(work, ignore_errors=True)
        return RunOutcome(head, seed, "done", f"{scores['metrics']}", time.time() - start)


def run_environment(threads: int) -> Dict[str, str]:
    """The environment a run's training and scoring processes get: `threads` torch threads."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}


def without_flag(flags: Sequence[str], name: str) -> List[str]:
    """flags less `name` and its value (given as two words or as name=value)."""
    kept, skip = [], False
    for word in flags:
        if skip:
            skip = False
        elif word == name:
            skip = True
        elif not word.startswith(name + "="):
            kept.append(word)
    return kept


def run_all(runners: Dict[str, Runner], plan: Sequence[tuple], jobs: int, log=print) -> List[RunOutcome]:
    """plan: (comparison key, head, seed) in the order to run them; `jobs` at a time."""
    def one(entry):
        key, head, seed = entry
        outcome = runners[key].run(head, seed)
        if outcome.status in ("done", "failed"):
            log(f"{outcome.status} {runners[key].comparison.task} {head} seed {seed} "
                f"({outcome.seconds / 60:.1f} min): {outcome.message}")
        return outcome

    pool = ThreadPoolExecutor(max(1, jobs))
    try:
        return list(pool.map(one, plan))
    except BaseException:  # Ctrl-C (or an error): the runs' trainers end with the comparison
        pool.shutdown(wait=False, cancel_futures=True)
        RUNNING.stop()
        raise
    finally:
        pool.shutdown(wait=True)
        RUNNING.resume()


def run_sharing_lock(command: List[str], lock: TextIO, log: Path, env: Dict[str, str]) -> int:
    """Run `command` to its end, appending its output to `log`, with the run's locked file as
    its stdin: the only descriptor that every process it starts inherits, so the lock stays
    held while any of them lives. It runs in a process group of its own, which a watchdog
    kills if this process dies, and which is killed here when the command ends."""
    with os.fdopen(os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666), "a",
                   encoding="utf-8") as out:
        out.write(f"$ {shlex.join(command)}\n")
        out.flush()
        with subprocess.Popen(command, stdin=lock, stdout=out, stderr=subprocess.STDOUT, env=env,
                              start_new_session=True) as process:
            watchdog = None
            RUNNING.add(process.pid)
            try:
                watchdog = subprocess.Popen([*WATCHDOG, str(process.pid)], stdin=subprocess.PIPE)
                # not reaped yet, so that its pid still names the group killed below
                os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
            finally:
                kill_group(process.pid)  # whatever it left running, e.g. a fairseq-train whose finetune.py died
                RUNNING.discard(process.pid)
                if watchdog is not None:
                    watchdog.communicate(b"done")
    return process.returncode
