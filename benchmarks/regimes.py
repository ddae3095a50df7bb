#!/usr/bin/env python
"""When does a multi-layer head help? The comparison study across training-set sizes, with the
encoder fine-tuned and frozen (issue 28): all-MiniLM-L6-v2, resumable, one file per run.

Grid: tasks (SST-2, MRPC, RTE; CoLA and STS-B selectable) x regimes (finetuned, frozen) x
training-set sizes (n100, n1000, full) x heads x seeds. Each (task, regime, size) is one
comparison (fairseq_hire.compare), since the training flags are part of its recipe:
benchmarks/results/regimes/<TASK>/<regime>-<size>/runs/<head>-seed<seed>.json. The one
exception is REUSED: the fine-tuned full-set point of a task of today's study (quality.py;
MRPC and RTE of the default grid) is today's comparison, benchmarks/results/compare/<TASK>,
because its recipe is the same (same data, encoder, `--epochs 3 --lr <task lr>`, CPU): its
finished runs count, only the heads it lacks (stock-mean-pool) are trained there, and its
recipe check refuses to add runs if that ever stops being true.

Recipes (one budget for every head of a point; the sizes differ only by --train-size):

* n100 / n1000: `--train-size N`, a seeded stratified sample of N training rows, drawn by the
  run's seed (the same rows for every head at a seed); the budget in epochs follows N, with
  finetune.py's minimum-updates floor so that 100 rows are not trained for a handful of steps;
* full: the whole training split, except SST-2, capped at `--train-size 10000` (FULL_CAP): its
  67,349 rows are 18 times MRPC's, whose fine-tuned runs took 21 minutes on average in today's
  study, so by row count a run would take hours and 6 heads x 5 seeds would not fit the study's
  CPU budget; the cap is stated in the plan and the report;
* finetuned: today's recipe, `--epochs 3 --lr <task lr>` (quality.LEARNING_RATES). SST-2 is not
  in today's study: 3e-5, the rate of the other single-sentence task (CoLA) and of MRPC, not
  tuned (fairseq's 1e-5 for roberta.base over 10 epochs left MRPC's stock head near the constant
  score at this budget, quality.py);
* frozen: `--freeze-encoder --epochs 3 --lr 1e-3` for every task and head (FROZEN_RATE). Only
  the head trains, from scratch: the fine-tuning rates are small so as not to wreck the
  pre-trained encoder, which a frozen encoder no longer needs, and at 3e-5 a head alone would
  barely move in 3 epochs. 1e-3 is Adam's default rate and the order of magnitude classifiers
  on frozen features (linear probes, feature-based heads) are trained with; it is not tuned on
  the dev sets the study reports. The epochs stay at 3 so that the regimes differ only in what
  trains and its rate. Frozen runs read the encoder's layers from a cache (--layer-cache,
  WORK/layer-cache; equal results within float tolerance, not part of the recipe).

Runs go seed-major (every point and head of seed 1, then seed 2, ...), so an interrupted study
has whole seeds; --order cheapest runs a seed's cheapest points first (by costs.json). One
thread per run, --jobs runs at a time.

The plan (`--plan-only`): results/regimes/plan.json and plan.md: the grid, the runs per point and
in total, which are reused or finished, the minutes per run of each kind and the CPU hours,
from costs.json, which holds measured minutes only (benchmarks/regime_costs.py measures them):

    {"measured": "how and where (free text)",
     "minutes_per_run": {"frozen/n100/stock": 0.8, "SST-2/finetuned/full/hire": 95.0, ...},
     "minutes_range_per_run": {"SST-2/finetuned/full/hire": [90.1, 99.7], ...}}   (optional)

A key is REGIME/SIZE/HEAD, or TASK/REGIME/SIZE/HEAD for one task (which wins); a kind without
a measurement is "not measured" in the plan, never estimated. A range is the spread of the
measurement (the fastest and slowest timed update): the report ranks two heads' costs only
where their spreads do not overlap.

    python benchmarks/regimes.py --plan-only
    python benchmarks/regimes.py --seeds 1-5 --jobs 2 --order cheapest
    python benchmarks/regimes.py --tasks RTE --regimes frozen --sizes n100 --seeds 1-5
"""
import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from fairseq_hire.compare.__main__ import DEFAULT_HEADS, seed_list  # noqa: E402
from fairseq_hire.compare.runs import Comparison, Runner, check_recipe, run_all  # noqa: E402
from fairseq_hire.modules.options import head_options  # noqa: E402
from glue_prep.atomic import write_atomically  # noqa: E402
from glue_prep.metadata import metadata_file, read_metadata  # noqa: E402
from quality import DEFAULT_GLUE, EPOCHS, LEARNING_RATES, MIN_SEEDS, WORK  # noqa: E402
from quality import ensure_data, ensure_minilm, study  # noqa: E402
from quality import RESULTS as TODAYS_STUDY  # noqa: E402
from quality import TASKS as TODAYS_TASKS  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "regimes"
TASKS = ["SST-2", "MRPC", "RTE", "CoLA", "STS-B"]
DEFAULT_TASKS = ["SST-2", "MRPC", "RTE"]
REGIMES = ["finetuned", "frozen"]
SIZES = {"n100": 100, "n1000": 1000, "full": None}
FULL_CAP = {"SST-2": 10_000}
# the GLUE training splits' rows (glue_prep.json's splits.train); checked against the binaries
FULL_ROWS = {"SST-2": 67349, "MRPC": 3668, "RTE": 2490, "CoLA": 8551, "STS-B": 5749}
HEADS = [*DEFAULT_HEADS, "stock-mean-pool"]
FINETUNE_RATES = {**LEARNING_RATES, "SST-2": 3e-5}
FROZEN_RATE = 1e-3
NOT_MEASURED = "not measured"


class PlanError(ValueError):
    """costs.json cannot be read as measured minutes."""


@dataclass(frozen=True)
class Point:
    """One comparison of the grid: a task, a regime and a training-set size."""

    task: str
    regime: str  # finetuned | frozen
    size: str  # n100 | n1000 | full

    @property
    def name(self) -> str:
        return f"{self.regime}-{self.size}"

    @property
    def key(self) -> str:
        return f"{self.task}/{self.name}"

    @property
    def subset(self) -> Optional[int]:
        """--train-size, or None for the whole training split."""
        return SIZES[self.size] or FULL_CAP.get(self.task)

    @property
    def train_rows(self) -> int:
        return self.subset or FULL_ROWS[self.task]

    @property
    def reused(self) -> bool:
        """Today's comparison (quality.py) is this point: the same recipe on the same data."""
        return self.regime == "finetuned" and self.subset is None and self.task in TODAYS_TASKS

    def folder(self, results: Path = RESULTS, todays_study: Path = TODAYS_STUDY) -> Path:
        return todays_study / self.task if self.reused else results / self.task / self.name

    def train_flags(self, layer_cache: Optional[Path] = None) -> tuple:
        rate = FROZEN_RATE if self.regime == "frozen" else FINETUNE_RATES[self.task]
        flags = ["--epochs", str(EPOCHS), "--lr", str(rate)]
        if self.regime == "frozen":
            flags.append("--freeze-encoder")
        if self.subset:
            flags += ["--train-size", str(self.subset)]
        if self.regime == "frozen" and layer_cache is not None:
            flags += ["--layer-cache", str(layer_cache)]
        return tuple(flags)


def grid(tasks: Sequence[str] = DEFAULT_TASKS, regimes: Sequence[str] = REGIMES,
         sizes: Sequence[str] = tuple(SIZES)) -> List[Point]:
    return [Point(task, regime, size) for task in tasks for regime in regimes for size in sizes]


def result_file(folder: Path, task: str, head: str, seed: int) -> Path:
    return Comparison(task, Path(), Path(), folder).result_path(head, seed)


def read_costs(path: Path) -> Dict:
    """costs.json's measured minutes per run by key; {} where the file is absent."""
    if not path.exists():
        return {}
    try:
        costs = json.loads(path.read_text(encoding="utf-8"))
        minutes = costs["minutes_per_run"]
        bad = [k for k, v in minutes.items() if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise PlanError(f"{path}: expected a JSON object with minutes_per_run, an object of "
                        "REGIME/SIZE/HEAD keys and positive minutes") from None
    if bad:
        raise PlanError(f"{path}: minutes_per_run[{bad[0]!r}] is {minutes[bad[0]]!r}; expected positive minutes")
    ranges = costs.get("minutes_range_per_run", {})
    if not isinstance(ranges, dict):
        raise PlanError(f"{path}: minutes_range_per_run is {ranges!r}; expected an object of [low, high] minutes")
    for key, spread in ranges.items():
        if (not isinstance(spread, list) or len(spread) != 2 or key not in minutes
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in spread)
                or not spread[0] <= minutes[key] <= spread[1]):
            raise PlanError(f"{path}: minutes_range_per_run[{key!r}] is {spread!r}; expected [low, high] positive "
                            f"minutes around minutes_per_run[{key!r}]")
    return {"measured": costs.get("measured", ""), "minutes": minutes, "ranges": ranges}


def cost_key(costs: Dict, regime: str, size: str, head: str, task: Optional[str] = None) -> Optional[str]:
    """The key of costs.json that measures this kind: the task's own first; None if none."""
    minutes = costs.get("minutes", {})
    return next((key for key in ([f"{task}/{regime}/{size}/{head}"] if task else []) + [f"{regime}/{size}/{head}"]
                 if key in minutes), None)


def minutes_per_run(costs: Dict, regime: str, size: str, head: str, task: Optional[str] = None) -> Optional[float]:
    """The measured minutes of one run of this kind (the task's own figure first); None if none."""
    key = cost_key(costs, regime, size, head, task)
    return None if key is None else float(costs["minutes"][key])


def minutes_range(costs: Dict, regime: str, size: str, head: str, task: Optional[str] = None) -> Optional[List[float]]:
    """[low, high] minutes of the measurement minutes_per_run gives ([m, m] where the file has no
    range for it); None if none."""
    key = cost_key(costs, regime, size, head, task)
    if key is None:
        return None
    minutes = float(costs["minutes"][key])
    return [float(v) for v in costs.get("ranges", {}).get(key, [minutes, minutes])]


def shown(path: Path) -> str:
    """A path as the plan prints it: relative to the repository when inside it."""
    path = Path(path)
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def point_plan(point: Point, heads: Sequence[str], seeds: Sequence[int], costs: Dict,
               results: Path, todays_study: Path) -> Dict:
    folder = point.folder(results, todays_study)
    per_head, hours, unmeasured = {}, 0.0, False
    for head in heads:
        done = [p for p in (result_file(folder, point.task, head, s) for s in seeds) if p.exists()]
        to_run = len(seeds) - len(done)
        minutes = minutes_per_run(costs, point.regime, point.size, head, point.task)
        finished_minutes = (statistics.fmean(json.loads(p.read_text())["train_seconds"] / 60 for p in done)
                            if done else None)
        per_head[head] = {"finished": len(done), "to_run": to_run,
                          "minutes_per_run": NOT_MEASURED if minutes is None else minutes,
                          "finished_minutes_mean": None if finished_minutes is None else round(finished_minutes, 1)}
        if to_run and minutes is None:
            unmeasured = True
        elif to_run:
            hours += to_run * minutes / 60
    return {"task": point.task, "regime": point.regime, "size": point.size, "train_rows": point.train_rows,
            "train_size_flag": point.subset, "folder": shown(folder),
            "reused_from": shown(folder) if point.reused else None, "train_flags": list(point.train_flags()),
            "runs": len(heads) * len(seeds), "finished": sum(h["finished"] for h in per_head.values()),
            "to_run": sum(h["to_run"] for h in per_head.values()), "heads": per_head,
            "cpu_hours_to_run": None if unmeasured else round(hours, 2),
            "cpu_hours_to_run_measured_part": round(hours, 2)}


def make_plan(points: Sequence[Point], heads: Sequence[str], seeds: Sequence[int], costs: Dict, jobs: int = 2,
              results: Path = RESULTS, todays_study: Path = TODAYS_STUDY) -> Dict:
    rows = [point_plan(p, heads, seeds, costs, results, todays_study) for p in points]
    unmeasured = [f"{r['task']}/{r['regime']}/{r['size']}/{h}" for r in rows for h, d in r["heads"].items()
                  if d["to_run"] and d["minutes_per_run"] == NOT_MEASURED]
    hours = sum(d["to_run"] * d["minutes_per_run"] for r in rows for d in r["heads"].values()
                if d["to_run"] and d["minutes_per_run"] != NOT_MEASURED) / 60
    return {
        "generated_by": "python benchmarks/regimes.py --plan-only",
        "encoder": "all-MiniLM-L6-v2, converted (quality.ensure_minilm)",
        "grid": {"tasks": list(dict.fromkeys(p.task for p in points)),
                 "regimes": list(dict.fromkeys(p.regime for p in points)),
                 "sizes": list(dict.fromkeys(p.size for p in points)), "heads": list(heads), "seeds": list(seeds),
                 "full_cap": {t: n for t, n in FULL_CAP.items() if any(p.task == t for p in points)}},
        "recipes": {"epochs": EPOCHS, "finetuned_lr": {t: FINETUNE_RATES[t] for t in dict.fromkeys(p.task for p in points)},
                    "frozen_lr": FROZEN_RATE, "frozen_flags": ["--freeze-encoder"],
                    "not_in_recipe": "frozen runs add --layer-cache WORK/layer-cache"},
        "costs": {"file": "costs.json",
                  "measured": (costs.get("measured") or "no description given") if costs else NOT_MEASURED},
        "points": rows,
        "totals": {"runs": sum(r["runs"] for r in rows), "finished": sum(r["finished"] for r in rows),
                   "reused_finished": sum(r["finished"] for r in rows if r["reused_from"]),
                   "to_run": sum(r["to_run"] for r in rows),
                   "cpu_hours_to_run": None if unmeasured else round(hours, 2),
                   "cpu_hours_to_run_measured_part": round(hours, 2), "not_measured": unmeasured,
                   "jobs": jobs, "wall_hours_at_jobs": None if unmeasured else round(hours / max(1, jobs), 2)},
    }


def hours_text(value) -> str:
    return NOT_MEASURED if value is None else f"{value:.1f}"


def plan_markdown(plan: Dict) -> str:
    grid_, totals, recipes = plan["grid"], plan["totals"], plan["recipes"]
    cap = "; ".join(f"{t}'s full set capped at {n:,} rows (--train-size {n})" for t, n in grid_["full_cap"].items())
    lines = [
        "# Regimes study plan (generated by `python benchmarks/regimes.py --plan-only`)", "",
        f"Encoder: {plan['encoder']}. Tasks: {', '.join(grid_['tasks'])}; regimes: {', '.join(grid_['regimes'])}; "
        f"sizes: {', '.join(grid_['sizes'])}{'; ' + cap if cap else ''}. Heads: {', '.join(grid_['heads'])}. "
        f"Seeds: {len(grid_['seeds'])} ({grid_['seeds'][0]}-{grid_['seeds'][-1]}).", "",
        f"Recipes: {recipes['epochs']} epochs; fine-tuned at "
        + ", ".join(f"{t} {lr:g}" for t, lr in recipes["finetuned_lr"].items())
        + f"; frozen (--freeze-encoder) at {recipes['frozen_lr']:g} for every task; {recipes['not_in_recipe']}.", "",
        f"Minutes per run: {'from costs.json: ' + plan['costs']['measured'] if plan['costs']['measured'] != NOT_MEASURED else 'not measured (no costs.json)'}.",
        "", "| task | regime | size | training rows | folder | runs | finished | to run | CPU hours to run |",
        "|---|---|---|---|---|---|---|---|---|"]
    for r in plan["points"]:
        folder = f"`{r['folder']}`" + (" (reused: today's study)" if r["reused_from"] else "")
        lines.append(f"| {r['task']} | {r['regime']} | {r['size']} | {r['train_rows']:,} | {folder} | {r['runs']} | "
                     f"{r['finished']} | {r['to_run']} | {hours_text(r['cpu_hours_to_run'])} |")
    lines += ["", f"Total: {totals['runs']} runs, {totals['finished']} finished ({totals['reused_finished']} of them "
              f"reused from today's study), {totals['to_run']} to run."]
    if totals["not_measured"]:
        lines += ["", f"CPU hours to run: not measured: {len(totals['not_measured'])} kinds of run with runs to do have "
                  f"no measured minutes (below); the measured part is {totals['cpu_hours_to_run_measured_part']:.1f} "
                  "CPU hours."]
    else:
        lines += ["", f"CPU hours to run: {totals['cpu_hours_to_run']:.1f}, about {totals['wall_hours_at_jobs']:.1f} "
                  f"hours at {totals['jobs']} runs at a time (one thread each)."]
    heads = grid_["heads"]
    lines += ["", "Minutes per run (costs.json; in parentheses the mean of the runs already finished, from their files):",
              "", "| task | regime | size | " + " | ".join(heads) + " |", "|---|---|---|" + "---|" * len(heads)]
    for r in plan["points"]:
        cells = []
        for head in heads:
            d = r["heads"][head]
            minutes = d["minutes_per_run"] if d["minutes_per_run"] == NOT_MEASURED else f"{d['minutes_per_run']:g}"
            finished = d["finished_minutes_mean"]
            cells.append(minutes + (f" ({finished:g} over {d['finished']} finished)" if finished is not None else ""))
        lines.append(f"| {r['task']} | {r['regime']} | {r['size']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_plan(plan: Dict, results: Path = RESULTS) -> None:
    write_atomically(results / "plan.json", json.dumps(plan, indent=1) + "\n")
    write_atomically(results / "plan.md", plan_markdown(plan))


def run_order(points: Sequence[Point], heads: Sequence[str], seeds: Sequence[int], costs: Dict,
              order: str) -> List[tuple]:
    """(point key, head, seed), seed-major; within a seed the grid's order, or with `cheapest`
    the points by their measured minutes over the heads (unmeasured points last)."""
    if order == "cheapest":
        def cost(point):
            minutes = [minutes_per_run(costs, point.regime, point.size, h, point.task) for h in heads]
            return (1, 0.0) if None in minutes else (0, sum(minutes))
        points = sorted(points, key=cost)
    return [(p.key, head, seed) for seed in seeds for p in points for head in heads]


def check_full_rows(task: str, data: Path) -> None:
    """FULL_ROWS (what the plan and the report put on the x axis) is the binaries' training split."""
    rows = read_metadata(data).splits.get("train")
    if rows != FULL_ROWS[task]:
        raise PlanError(f"{metadata_file(data)}: {rows} training rows; expected {FULL_ROWS[task]} "
                        f"(regimes.FULL_ROWS[{task!r}])")


def comparisons(points: Sequence[Point], glue_data: Path, work: Path, results: Path, todays_study: Path,
                layer_cache: Optional[Path]) -> Dict[str, Comparison]:
    minilm = ensure_minilm(work)
    data = {}
    for task in dict.fromkeys(p.task for p in points):
        data[task] = ensure_data(glue_data, task, minilm, work)
        check_full_rows(task, data[task])
    found = {}
    for point in points:
        if point.reused:  # today's comparison itself, built by today's study
            found[point.key] = study(point.task, glue_data, minilm, todays_study, work, "cpu")
        else:
            found[point.key] = Comparison(point.task, data[point.task], minilm / "model.pt",
                                          point.folder(results, todays_study), point.train_flags(layer_cache),
                                          device="cpu", work=work / "regimes" / point.task / point.name)
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS, choices=TASKS)
    parser.add_argument("--regimes", nargs="+", default=REGIMES, choices=REGIMES)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--heads", nargs="+", default=HEADS)
    parser.add_argument("--seeds", type=seed_list, default=seed_list(f"1-{MIN_SEEDS}"))
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each")
    parser.add_argument("--order", choices=["grid", "cheapest"], default="grid",
                        help="within a seed: the grid's order, or the cheapest points first (costs.json)")
    parser.add_argument("--plan-only", action="store_true", help="write plan.json and plan.md, run nothing")
    parser.add_argument("--glue-data", type=Path, default=DEFAULT_GLUE)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--todays-study", type=Path, default=TODAYS_STUDY,
                        help="today's comparison folders, reused for the fine-tuned full-set points")
    parser.add_argument("--work", type=Path, default=WORK, help="converted encoder, binaries, checkpoints, layer cache")
    parser.add_argument("--no-layer-cache", action="store_true", help="frozen runs run the encoder every step")
    args = parser.parse_args(argv)
    points = grid(args.tasks, args.regimes, args.sizes)
    try:
        costs = read_costs(args.out / "costs.json")
        if args.plan_only:
            plan = make_plan(points, args.heads, args.seeds, costs, args.jobs, args.out, args.todays_study)
            write_plan(plan, args.out)
            print(plan_markdown(plan))
            return 0
        for head in args.heads:
            head_options(head)  # an unknown head is refused before anything runs
    except ValueError as error:
        print(f"regimes: error: {error}", file=sys.stderr)
        return 2
    layer_cache = None if args.no_layer_cache else args.work / "layer-cache"
    found = comparisons(points, args.glue_data, args.work, args.out, args.todays_study, layer_cache)
    for comparison in found.values():
        check_recipe(comparison)
    runners = {key: Runner(comparison, threads=1) for key, comparison in found.items()}
    plan = run_order(points, args.heads, args.seeds, costs, args.order)
    failed = [o for o in run_all(runners, plan, args.jobs) if o.status == "failed"]
    for outcome in failed:
        print(f"failed: {outcome.head} seed {outcome.seed}: {outcome.message}", file=sys.stderr)
    print("report: python benchmarks/regime_report.py")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
