#!/usr/bin/env python
"""The measured cost of one run of each kind of the regime study (issue 28, item 3): writes
benchmarks/results/regimes/costs.json, which regimes.py's plan (--plan-only) and its
--order cheapest read.

    python benchmarks/regime_costs.py                      # SST-2, MRPC, RTE; every head
    python benchmarks/regime_costs.py --tasks SST-2 --regimes frozen --heads stock hire

A kind is a task, a regime and a head. For each, the study's own run is started short: the
comparison's finetune.py command for the task's n1000 point (seed 1; its 1,000-row training
subset drawn as the study draws it), resolved with --dry-run to its fairseq-train command, with
--max-update WARMUP + TIMED + 1, run in benchmarks/timed_fairseq_train.py (fairseq-train with
timers on Trainer.train_step and validate_and_save) at one thread; then the comparison's
scoring command on its checkpoint. Measured:

* per update: the seconds between the starts of successive updates after WARMUP (the step,
  loading its batch and fairseq's per-update bookkeeping);
* per epoch end: the last validate_and_save (at --max-update fairseq validates on the whole dev
  set and saves the checkpoints, as it does at each epoch's end);
* per run: the rest, paid once per run: finetune.py resolving its command (its --dry-run, timed
  as a process), drawing the subset, the fairseq-train process's wall time less its updates and
  its epoch end (imports, loading checkpoint and data, the warm-up updates' extra time), and the
  scoring process.

The minutes of a run of each point are then (per run + updates x per update + epochs x per
epoch end) / 60, with the point's own --max-update and --max-epoch (finetune.py --dry-run of
the point's command: the budget is the same for every head of a point). Per update and per
epoch end do not depend on the training-set size (batches of the same rows' distribution, the
same dev set), so one subset serves every size.

With --repeats R each kind is measured R times: its minutes are the mean over the repeats, and
its range (minutes_range_per_run) runs from the fastest to the slowest the repeats allow.

Frozen runs read the layer cache. The frozen regime's first head is first run on a fresh cache:
that run builds the rows (the subset's and the dev set's) and is reported as
cache_build_seconds (its wall time less the next run's); the later runs are the timed ones. In
the study a training subset's rows are encoded once, by the first of its runs; the cache build
is not in minutes_per_run.

Each process runs at one thread, like the study's runs; other work on the machine slows it. The
file lists every measurement made (--merge adds one, keeping the other kinds' figures): its
kinds, repeats, the machine and its load average before and after.
"""
import argparse
import json
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Sequence

from regimes import DEFAULT_TASKS, HEADS, REGIMES, RESULTS, TASKS, Point, comparisons, grid, read_costs
from quality import DEFAULT_GLUE, WORK

# importable once regimes has put the repository on sys.path
from fairseq_hire.compare.runs import run_environment  # noqa: E402
from fairseq_hire.workflow.finetune import SUBSET_FOLDER  # noqa: E402
from glue_prep.atomic import write_atomically  # noqa: E402
from glue_prep.subset import make_train_subset  # noqa: E402

TIMED_TRAIN = Path(__file__).with_name("timed_fairseq_train.py")
TIMING_SIZE = "n1000"
TIMING_SEED = 1
ONE_THREAD = run_environment(1)  # what the study's runs get (regimes.py: Runner(threads=1))


def timed_process(command: List[str], log: Path) -> float:
    """Run `command` alone at one thread, its output appended to `log`; its wall seconds."""
    start = time.perf_counter()
    with open(log, "a", encoding="utf-8") as out:
        code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT, env=ONE_THREAD)
    if code:
        raise RuntimeError(f"{shlex.join(command)} exited with {code}; see {log}")
    return time.perf_counter() - start


def fairseq_train_command(finetune_command: List[str], extra: Sequence[str], log: Path) -> List[str]:
    """finetune.py's fairseq-train command for these flags (its --dry-run's last line)."""
    result = subprocess.run([*finetune_command, "--dry-run", *extra], capture_output=True, text=True,
                            env=ONE_THREAD)
    with open(log, "a", encoding="utf-8") as out:
        out.write(result.stderr + result.stdout)
    if result.returncode:
        raise RuntimeError(f"{shlex.join(finetune_command)} --dry-run exited with {result.returncode}; see {log}")
    return shlex.split(result.stdout.strip().splitlines()[-1])


def flag_value(command: Sequence[str], flag: str) -> int:
    return int(command[len(command) - 1 - command[::-1].index(flag) + 1])  # the last one wins, as in argparse


def budget(comparison, log: Path) -> Dict[str, int]:
    """The updates and epochs of every run of a point (the same for every head)."""
    command = fairseq_train_command(comparison.finetune_command(HEADS[0], TIMING_SEED, log.parent / "budget"), [], log)
    epochs = flag_value(command, "--max-epoch") if "--max-epoch" in command else 0
    if epochs <= 0:  # a budget in updates: how many epoch ends it has depends on fairseq's batching
        raise RuntimeError(f"{comparison.out}: the runs' budget is in updates, not epochs; this script costs "
                           "budgets in epochs (pass --epochs, as the study does)")
    return {"updates": flag_value(command, "--max-update"), "epochs": epochs}


def measure(comparison, head: str, save_dir: Path, warmup: int, timed: int, log: Path) -> Dict[str, float]:
    """One short run of this head: seconds per update, per epoch end and per run."""
    shutil.rmtree(save_dir, ignore_errors=True)
    save_dir.mkdir(parents=True)
    finetune = comparison.finetune_command(head, TIMING_SEED, save_dir)
    start = time.perf_counter()
    command = fairseq_train_command(finetune, ["--max-update", str(warmup + timed + 1)], log)
    resolving = time.perf_counter() - start
    start = time.perf_counter()
    if "--train-size" in finetune:  # the dry run names the subset finetune.py would draw: draw it as it would
        make_train_subset(comparison.data, flag_value(finetune, "--train-size"), TIMING_SEED, save_dir / SUBSET_FOLDER,
                          max_positions=flag_value(command, "--max-positions"))
    subset = time.perf_counter() - start
    times_file = save_dir / "times.json"
    train = timed_process([sys.executable, str(TIMED_TRAIN), str(times_file), *command[3:]], log)
    times = json.loads(times_file.read_text(encoding="utf-8"))
    starts = [update[0] for update in times["updates"]]
    gaps = [later - earlier for earlier, later in zip(starts[warmup:], starts[warmup + 1:])]
    per_update = sum(gaps) / len(gaps)
    epoch_end = times["validate_and_save"][-1][1] - times["validate_and_save"][-1][0]
    scoring = timed_process(comparison.evaluate_command(save_dir, save_dir / "scores.json"), log)
    return {"per_update": per_update, "per_update_range": [min(gaps), max(gaps)], "per_epoch_end": epoch_end,
            "per_run": resolving + subset + (train - len(starts) * per_update - epoch_end) + scoring,
            "finetune_resolving": resolving, "subset": subset, "fairseq_train_wall": train,
            "scoring": scoring, "updates_run": len(starts)}


def measure_all(tasks, regimes, heads, glue_data: Path, work: Path, scratch: Path, warmup: int,
                timed: int, repeats: int, log: Path) -> Dict:
    """Measurements of every kind (`repeats` short runs each), the budgets of every point, the
    cache builds."""
    measured, budgets, cache_builds = {}, {}, {}
    points = grid(tasks, regimes)
    found = comparisons(points, glue_data, work, scratch / "results", scratch / "todays-study", scratch / "cache")
    for point in points:
        budgets[point.key] = budget(found[point.key], scratch / "budget.log")
    for task in tasks:
        for regime in regimes:
            comparison = found[Point(task, regime, TIMING_SIZE).key]
            for position, head in enumerate(heads):
                folder = scratch / task / regime / head
                print(f"measuring {task} {regime} {head}", flush=True)
                cold = None
                if regime == "frozen" and position == 0:  # the first run on a fresh cache builds its rows
                    shutil.rmtree(scratch / "cache", ignore_errors=True)
                    cold = measure(comparison, head, folder, warmup, timed, log)
                runs = [measure(comparison, head, folder, warmup, timed, log) for _ in range(repeats)]
                measured[f"{task}/{regime}/{head}"] = runs
                if cold is not None:
                    cache_builds[task] = cold["fairseq_train_wall"] - runs[0]["fairseq_train_wall"]
    return {"measurements": measured, "budgets": budgets, "cache_builds": cache_builds}


def minutes_per_run(found: Dict, tasks, regimes, heads):
    """TASK/REGIME/SIZE/HEAD -> minutes of one run (the mean over the kind's repeats), and ->
    [low, high]: the fastest and slowest the repeats allow, each repeat's fixed times with every
    update as fast as its fastest timed one, or as slow as its slowest (the spread by which
    regime_report ranks two heads' costs only where they do not overlap)."""
    minutes, ranges = {}, {}
    for point in grid(tasks, regimes):
        spent = found["budgets"][point.key]
        for head in heads:
            key = f"{point.task}/{point.regime}/{point.size}/{head}"
            means, lows, highs = [], [], []
            for m in found["measurements"][f"{point.task}/{point.regime}/{head}"]:
                fixed = m["per_run"] + spent["epochs"] * m["per_epoch_end"]
                means.append(fixed + spent["updates"] * m["per_update"])
                lows.append(fixed + spent["updates"] * m["per_update_range"][0])
                highs.append(fixed + spent["updates"] * m["per_update_range"][1])
            minutes[key] = round(sum(means) / len(means) / 60, 2)
            ranges[key] = [round(min(lows) / 60, 2), round(max(highs) / 60, 2)]
    return minutes, ranges


def description() -> str:
    return ("per-update, per-epoch-end and per-run seconds of each task, regime and head, measured by "
            f"benchmarks/regime_costs.py: short runs of the study's own command per kind (its {TIMING_SIZE} point, "
            f"seed {TIMING_SEED}; measurements: which kinds, how many timed updates and repeats, the machine's load), "
            "each process at one thread as the study's runs, times each point's budget from finetune.py --dry-run "
            "(updates, epochs), the mean over the repeats; frozen runs on a warm layer cache (its one-time build "
            "per training subset, cache_build_seconds, not included)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS, choices=TASKS)
    parser.add_argument("--regimes", nargs="+", default=REGIMES, choices=REGIMES)
    parser.add_argument("--heads", nargs="+", default=HEADS)
    parser.add_argument("--warmup", type=int, default=2, help="untimed updates first")
    parser.add_argument("--timed", type=int, default=8, help="timed updates")
    parser.add_argument("--repeats", type=int, default=1, help="short runs per kind (their spread widens the range)")
    parser.add_argument("--glue-data", type=Path, default=DEFAULT_GLUE)
    parser.add_argument("--work", type=Path, default=WORK, help="converted encoder and binaries (as regimes.py)")
    parser.add_argument("--out", type=Path, default=RESULTS / "costs.json")
    parser.add_argument("--merge", action="store_true",
                        help="keep the file's measurements of the kinds not measured now")
    args = parser.parse_args(argv)
    logging.getLogger("fairseq").setLevel(logging.WARNING)  # the subsets' loading, once per kind
    try:
        if args.merge and args.out.exists():
            read_costs(args.out)  # a damaged file is refused before anything runs
            previous = json.loads(args.out.read_text(encoding="utf-8"))
        else:
            previous = {}
    except ValueError as error:
        print(f"regime_costs: error: {error}", file=sys.stderr)
        return 2
    load_before = os.getloadavg()[1]
    with tempfile.TemporaryDirectory(prefix="regime-costs-") as scratch:
        log = Path(scratch) / "runs.log"
        try:
            found = measure_all(args.tasks, args.regimes, args.heads, args.glue_data, args.work, Path(scratch),
                                args.warmup, args.timed, args.repeats, log)
        except (RuntimeError, ValueError, OSError) as error:
            print(f"regime_costs: error: {error}", file=sys.stderr)
            if log.exists():
                print(log.read_text(encoding="utf-8")[-3000:], file=sys.stderr)
            return 1
    minutes, ranges = minutes_per_run(found, args.tasks, args.regimes, args.heads)
    this_measurement = {
        "generated_by": "python benchmarks/regime_costs.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "kinds": sorted(found["measurements"]), "warmup_updates": args.warmup, "timed_updates": args.timed,
        "repeats": args.repeats,
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "threads_per_run": 1, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                    # other work on the machine: 5-minute load averages, as the runs started and ended
                    "load_average_5min": [round(load_before, 2), round(os.getloadavg()[1], 2)]},
    }
    costs = {
        "measured": description(),
        "measurements": [*previous.get("measurements", []), this_measurement],
        "minutes_per_run": dict(sorted({**previous.get("minutes_per_run", {}), **minutes}.items())),
        "minutes_range_per_run": dict(sorted({**previous.get("minutes_range_per_run", {}), **ranges}.items())),
        "seconds": {**previous.get("seconds", {}), **found["measurements"]},
        "budgets": {**previous.get("budgets", {}), **found["budgets"]},
        "cache_build_seconds": {**previous.get("cache_build_seconds", {}),
                                **{t: round(s, 1) for t, s in found["cache_builds"].items()}},
    }
    write_atomically(args.out, json.dumps(costs, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
