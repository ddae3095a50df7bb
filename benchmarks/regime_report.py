#!/usr/bin/env python
"""The regimes study's report (benchmarks/regimes.py, issue 28), from its run files only.

    python benchmarks/regime_report.py [--update-readme | --check-readme]

Per point (task, regime, training-set size): the comparison's own report (report.md,
report.json, scores.png, layer_weights.png in the point's folder; the fine-tuned full-set
points of today's tasks are today's comparison and are summarised without rewriting its
files): every head's seeds, mean and its 95% interval, failed runs (at or below the best
constant prediction), and against the stock head the paired bootstrap interval, Welch and
Mann-Whitney, the detectable difference at 80% power (fairseq_hire.compare.report/statistics).
Per task: learning_curve.png, the score against the training rows (log axis), one line per head,
a fine-tuned and a frozen panel, every seed a dot, the mean with its 95% interval.

A head counts at a point only with MIN_SEEDS (5) seeds of it and of the stock head; before that
it is "in progress (k of 5 seeds)", never a result. "Detected" is today's rule: Welch p < 0.05
and a bootstrap interval that excludes 0. The recommendation per regime (fine-tuned or frozen at
one size) is the cheapest head within the detectable-difference band of the best head on every
task with the point complete; step costs: fine-tuned from today's speed files
(report.step_costs, CPU), frozen from the minutes per run in results/regimes/costs.json
(relative to the stock head's); a head without a cost is named and not recommended.

Written: results/regimes/summary.json, README_fragment.md (the README section), and with
--update-readme the section between <!-- regimes:start --> and <!-- regimes:end --> of the page
that holds those markers (README.md or docs/RESULTS.md); --check-readme exits 1 if the fragment
file or that section differs from what the run files give now.
"""
import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import regimes as rg  # noqa: E402
from fairseq_hire.compare.report import ReportError, load_runs, number, summarise, write_report  # noqa: E402
from fairseq_hire.compare.plotting import pyplot, save_figure  # noqa: E402
from glue_prep.atomic import write_atomically  # noqa: E402
from report import costs_less, replace_section, step_costs, within_band  # noqa: E402

MIN_SEEDS = rg.MIN_SEEDS
MARKER = "regimes"
PAGES = ("README.md", "docs/RESULTS.md")  # where the markers may be placed
LAYER_WEIGHT_HEADS = ("hire", "hire-no-fusion")
REGIME_WORDS = {"finetuned": "fine-tuned", "frozen": "frozen"}
COST_MEASURES = {"finetuned": "training step (today's speed files)", "frozen": "minutes per run (costs.json)"}


def size_words(point: rg.Point) -> str:
    if point.size != "full":
        return f"{point.train_rows:,} rows"
    capped = f"capped, of {rg.FULL_ROWS[point.task]:,}" if point.subset else "the full set"
    return f"{point.train_rows:,} rows ({capped})"


def check_subset(point: rg.Point, runs: Sequence[Dict]) -> None:
    """Every run of a point was trained on the point's number of rows (train_subset.size)."""
    for run in runs:
        size = (run.get("train_subset") or {}).get("size")
        if size != point.subset:
            raise ReportError(f"{run['file']}: trained on {size or 'the full training set'} rows; the point "
                              f"{point.key} is {point.subset or 'the full training set'}")


def point_result(point: rg.Point, heads: Sequence[str], results: Path, todays_study: Path, write: bool = True) -> Dict:
    folder = point.folder(results, todays_study)
    runs = load_runs(folder / "runs") if (folder / "runs").is_dir() else []
    check_subset(point, runs)
    seeds = {h: sum(r["head"] == h for r in runs) for h in heads}
    summary = None
    if runs:  # today's folders are report.py's to rewrite, not this report's
        summary = write_report(folder) if write and not point.reused else summarise(runs)
    return {"task": point.task, "regime": point.regime, "size": point.size, "train_rows": point.train_rows,
            "capped": bool(point.size == "full" and point.subset), "folder": rg.shown(folder),
            "reused_from": rg.shown(folder) if point.reused else None, "seeds": seeds,
            "complete": all(n >= MIN_SEEDS for n in seeds.values()), "summary": summary}


def counted(result: Dict, head: str) -> bool:
    """The head, and the stock head, have MIN_SEEDS seeds at this point."""
    return result["seeds"].get(head, 0) >= MIN_SEEDS and result["seeds"].get("stock", 0) >= MIN_SEEDS


def in_progress(result: Dict, head: str) -> str:
    return f"in progress ({min(result['seeds'].get(head, 0), MIN_SEEDS)} of {MIN_SEEDS} seeds)"


def detected_differences(results: Sequence[Dict]) -> List[Dict]:
    found = []
    for r in results:
        for head in r["seeds"]:
            versus = r["summary"]["heads"][head].get("vs_reference") if counted(r, head) else None
            if versus and versus["detected"]:
                found.append({"task": r["task"], "regime": r["regime"], "size": r["size"], "head": head,
                              "train_rows": r["train_rows"], **versus})
    return found


def frozen_costs(costs: Dict, size: str, heads: Sequence[str], tasks: Sequence[str]) -> Dict:
    """head -> {ratio, minutes, ranges}: minutes per frozen run at `size` over the stock head's
    (costs.json), the mean over `tasks`; ranges: per task, the measurement's [low, high] minutes
    (report.costs_less ranks two heads only where these do not overlap on every task). A head
    without a measurement on every task has no cost."""
    found = {}
    for head in heads:
        minutes = [rg.minutes_per_run(costs, "frozen", size, h, t) for t in tasks for h in (head, "stock")]
        if not tasks or None in minutes:
            continue
        pairs = list(zip(minutes[::2], minutes[1::2]))
        found[head] = {"ratio": statistics.fmean(m / stock for m, stock in pairs),
                       "minutes": statistics.fmean(m for m, _ in pairs),
                       "ranges": {t: rg.minutes_range(costs, "frozen", size, head, t) for t in tasks}}
    return found


def choose_head(tasks: Dict, costs: Dict, heads: Sequence[str]) -> Dict:
    """Among `heads` with a cost that are within the detectable-difference band of the best
    head on every task: the cheapest (report.costs_less; overlapping spreads tie, a tie goes to
    the stock head, else the lower mean ratio)."""
    best = {t: max(heads, key=lambda h: s["heads"][h]["mean"]) for t, s in tasks.items()}
    fits = [h for h in heads if all(h == best[t] or within_band(s, h, best[t]) for t, s in tasks.items())]
    priced = [h for h in fits if h in costs]
    cheapest = [h for h in priced if not any(costs_less(costs[o], costs[h]) for o in priced if o != h)]
    chosen = "stock" if "stock" in cheapest else min(cheapest, key=lambda h: costs[h]["ratio"], default=None)
    return {"best": best, "within_band": fits, "unpriced": [h for h in fits if h not in costs], "head": chosen,
            "ratio": costs[chosen]["ratio"] if chosen else None, "tied": [h for h in cheapest if h != chosen]}


def recommendations(results: Sequence[Dict], finetuned: Dict, costs: Dict, heads: Sequence[str]) -> Dict:
    """(regime-size) -> the recommendation, or why there is none yet."""
    out = {}
    for regime in rg.REGIMES:
        for size in rg.SIZES:
            here = [r for r in results if r["regime"] == regime and r["size"] == size]
            if not here:
                continue
            tasks = {r["task"]: r["summary"] for r in here if r["complete"]}
            waiting = [r["task"] for r in here if not r["complete"]]
            entry = {"tasks": list(tasks), "in_progress": waiting}
            if tasks:
                frozen = frozen_costs(costs, size, heads, list(tasks))
                entry.update(choose_head(tasks, finetuned if regime == "finetuned" else frozen, heads))
                # what the chosen head costs in the other regime too (issue 28: "frozen and fine-tuned")
                entry["ratios"] = {name: priced[entry["head"]]["ratio"]
                                   for name, priced in (("finetuned", finetuned), ("frozen", frozen))
                                   if entry["head"] in priced}
            out[f"{regime}-{size}"] = entry
    return out


def learning_curve(task: str, results: Sequence[Dict], heads: Sequence[str], path: Path) -> None:
    plt = pyplot()
    summaries = [r["summary"] for r in results if r["summary"]]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, regime in zip(axes, rg.REGIMES):
        points = sorted((r for r in results if r["regime"] == regime), key=lambda r: r["train_rows"])
        for i, head in enumerate(heads):
            shown = [r for r in points if counted(r, head) and head in r["summary"]["heads"]]
            if not shown:
                continue
            # heads side by side around each size (multiplicative: the axis is logarithmic)
            x = np.array([r["train_rows"] for r in shown]) * 1.07 ** (i - (len(heads) - 1) / 2)
            data = [r["summary"]["heads"][head] for r in shown]
            color = f"C{i}"
            for xi, d in zip(x, data):
                ax.scatter([xi] * d["n"], d["scores"], s=10, alpha=0.45, color=color)
            means = np.array([d["mean"] for d in data])
            low = means - np.array([d["mean_interval"][0] for d in data])
            high = np.array([d["mean_interval"][1] for d in data]) - means
            ax.errorbar(x, means, yerr=[low, high], marker="o", capsize=3, color=color, label=head)
        if summaries:
            ax.axhline(summaries[0]["constant_score"], color="grey", linestyle=":", label="best constant prediction")
        if not any(counted(r, "stock") for r in points):
            ax.text(0.5, 0.5, f"no point with {MIN_SEEDS} seeds yet", transform=ax.transAxes, ha="center")
        ax.set_xscale("log")
        sizes = sorted({r["train_rows"] for r in points})
        ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
        ax.minorticks_off()
        ax.set_xlabel("training rows" + (" (full set capped)" if any(r["capped"] for r in points) else ""))
        ax.set_title(f"{task}, {REGIME_WORDS[regime]}")
    axes[0].set_ylabel(summaries[0]["metric"] if summaries else "score")
    # one legend for both panels: a head may have 5 seeds in one regime only
    shown = {label: handle for ax in axes for handle, label in zip(*ax.get_legend_handles_labels())}
    if shown:
        axes[0].legend(list(shown.values()), list(shown), fontsize=7, loc="lower right")
    fig.suptitle(f"{task}: every seed (dots), mean and its 95% interval; heads with {MIN_SEEDS}+ seeds")
    fig.tight_layout()
    save_figure(fig, path)


def cell(result: Dict, head: str) -> str:
    if not counted(result, head):
        return in_progress(result, head if result["seeds"].get(head, 0) < MIN_SEEDS else "stock")
    data = result["summary"]["heads"][head]
    text = f"{data['mean']:.1f} ± {number(data['sd'])}" + (f", {data['failed']} failed" if data["failed"] else "")
    versus = data.get("vs_reference")
    if versus:
        text += (f"; {versus['difference']:+.1f} [{versus['bootstrap_low']:+.1f}, {versus['bootstrap_high']:+.1f}], "
                 f"band {number(versus['detectable'])}")
        text = f"**{text}**" if versus["detected"] else text
    return text


def link(path: Path, page_dir: Path) -> str:
    """`path` (absolute, or relative to the repository) as a link from a page in `page_dir`."""
    return os.path.relpath(REPO / path, page_dir)


def task_table(task: str, results: Sequence[Dict], heads: Sequence[str], curve: Path, page_dir: Path) -> List[str]:
    summary = next((r["summary"] for r in results if r["summary"]), None)
    about = (f" ({summary['dev_examples']} dev examples; {summary['metric']}; best constant prediction "
             f"{summary['constant_score']:.1f})" if summary else "")
    lines = [f"**{task}**{about}: [learning curve]({link(curve, page_dir)})", "",
             "| regime | training rows | " + " | ".join(heads) + " | full report |",
             "|---|---|" + "---|" * (len(heads) + 1)]
    for r in results:
        report_link = f"[report.md]({link(Path(r['folder']) / 'report.md', page_dir)})" if r["summary"] else "-"
        lines.append(f"| {REGIME_WORDS[r['regime']]} | {size_words(rg.Point(r['task'], r['regime'], r['size']))} | "
                     + " | ".join(cell(r, h) for h in heads) + f" | {report_link} |")
    return lines


def layer_weight_lines(results: Sequence[Dict]) -> List[str]:
    lines = ["| task | training rows | " + " | ".join(f"{h}, {REGIME_WORDS[g]}" for h in LAYER_WEIGHT_HEADS
                                                   for g in rg.REGIMES) + " |",
             "|---|---|" + "---|" * (len(LAYER_WEIGHT_HEADS) * len(rg.REGIMES))]
    by_key = {(r["task"], r["size"], r["regime"]): r for r in results}
    for task, size in dict.fromkeys((r["task"], r["size"]) for r in results):
        cells = []
        for head in LAYER_WEIGHT_HEADS:
            for regime in rg.REGIMES:
                r = by_key.get((task, size, regime))
                if r is None or head not in r["seeds"]:
                    cells.append("-")
                elif not counted(r, head):
                    cells.append(in_progress(r, head))
                else:
                    weights = r["summary"]["heads"][head]["layer_weights"]
                    cells.append("fixed (no per-example weights)" if weights is None else
                                 f"{weights['tv_from_mean_mean']:.3f}" + (" (input-dependent)" if weights["dynamic"] else ""))
        point = rg.Point(task, rg.REGIMES[0], size)
        lines.append(f"| {task} | {size_words(point)} | " + " | ".join(cells) + " |")
    return lines


def input_dependence(results: Sequence[Dict]) -> str:
    """Does HIRE's extractor become input-dependent with the encoder frozen? Counted over the
    points where HIRE has MIN_SEEDS seeds."""
    parts = []
    for regime in rg.REGIMES:
        weights = [r["summary"]["heads"]["hire"]["layer_weights"] for r in results
                   if r["regime"] == regime and "hire" in r["seeds"] and counted(r, "hire")]
        dynamic = sum(bool(w and w["dynamic"]) for w in weights)
        parts.append(f"{REGIME_WORDS[regime]}: at {dynamic} of {len(weights)} points" if weights
                     else f"{REGIME_WORDS[regime]}: no point with {MIN_SEEDS} seeds yet")
    return "HIRE's weights are input-dependent (0.05 or more) " + "; ".join(parts) + "."


def recommendation_line(name: str, entry: Dict, cost_source: str) -> str:
    regime, size = name.split("-", 1)
    words = f"**{REGIME_WORDS[regime]}, {size}**"
    waiting = f" (in progress: {', '.join(entry['in_progress'])})" if entry["in_progress"] else ""
    if not entry["tasks"]:
        return f"- {words}: no recommendation yet: no task has every head at {MIN_SEEDS} seeds{waiting}."
    unpriced = (f"; no measured cost of {', '.join(entry['unpriced'])}, so not recommended" if entry["unpriced"] else "")
    best = ", ".join(f"{t} {h}" for t, h in entry["best"].items())
    if entry["head"] is None:
        return (f"- {words} on {', '.join(entry['tasks'])}{waiting}: within the band of the best head ({best}): "
                f"{', '.join(entry['within_band'])}{unpriced}; no recommendation.")
    tied = f"; its cost ties with {', '.join(entry['tied'])}" if entry["tied"] else ""
    other = next((f"; {REGIME_WORDS[name]}: {ratio:.2f}x the stock head's {COST_MEASURES[name]}"
                  for name, ratio in entry.get("ratios", {}).items() if name != regime), "")
    return (f"- {words} on {', '.join(entry['tasks'])}{waiting}: **{entry['head']}**, the cheapest head within the "
            f"detectable-difference band of the best ({best}); cost {entry['ratio']:.2f}x the stock head's "
            f"({cost_source}){other}{tied}. Within the band: {', '.join(entry['within_band'])}{unpriced}.")


def fragment(results: Sequence[Dict], heads: Sequence[str], detected: List[Dict], recommended: Dict,
             costs: Dict, folder: Path = rg.RESULTS, page_dir: Path = REPO) -> str:
    counted_pairs = sum(counted(r, h) for r in results for h in r["seeds"] if h != "stock")
    reported = [f"{r['task']} {REGIME_WORDS[r['regime']]} {r['train_rows']:,} rows" for r in results
                if any(counted(r, h) for h in r["seeds"] if h != "stock")]
    lines = [f"Generated by `python benchmarks/regime_report.py` from the run files of `benchmarks/results/regimes/` "
             "(the fine-tuned full-set points of today's tasks are today's comparison, `benchmarks/results/compare/`, "
             f"the same recipe). A head counts at a point once it and the stock head have {MIN_SEEDS} seeds; "
             "\"detected\" needs Welch p < 0.05 over seeds and a 95% paired bootstrap interval excluding 0.", ""]
    gains = [d for d in detected if d["difference"] > 0]
    losses = [d for d in detected if d["difference"] < 0]

    def listed(items):
        return [f"- {d['task']}, {REGIME_WORDS[d['regime']]}, {d['train_rows']:,} rows: **{d['head']}** "
                f"{d['difference']:+.1f} (95% CI {d['bootstrap_low']:+.1f} to {d['bootstrap_high']:+.1f}; Welch p "
                f"{d['welch_p']:.3f}; detectable {number(d['detectable'])})" for d in items]

    if gains:
        lines += ["Where a head beats the stock head detectably:", "", *listed(gains), ""]
    elif counted_pairs:
        lines += [f"**No head beats the stock head detectably** in the {counted_pairs} comparisons of a head with the "
                  f"stock head that have {MIN_SEEDS} seeds so far (at {', '.join(reported)}).", ""]
    else:
        lines += [f"No point has {MIN_SEEDS} seeds of a head and the stock head yet: no answer.", ""]
    if losses:
        lines += ["Where a head is detectably worse than the stock head:", "", *listed(losses), ""]
    lines += ["Each cell: mean ± sd over seeds; against the stock head the difference [95% bootstrap CI] and the "
              "smallest difference the seeds could detect (band, 80% power); bold: detected.", ""]
    for task in dict.fromkeys(r["task"] for r in results):
        lines += task_table(task, [r for r in results if r["task"] == task], heads,
                            folder / task / "learning_curve.png", page_dir) + [""]
    lines += ["HIRE's per-example layer weights: mean total-variation distance of an example's weights from the mean "
              "weights (input-dependent at 0.05 or more):", "", *layer_weight_lines(results), "",
              input_dependence(results), "",
              "Recommendation per regime:", ""]
    sources = {"finetuned": "training step on CPU, today's speed files",
               "frozen": ("minutes per frozen run, mean over the tasks, from costs.json (benchmarks/regime_costs.py)"
                          if costs.get("minutes") else "no costs.json")}
    lines += [recommendation_line(name, entry, sources[name.split("-")[0]]) for name, entry in recommended.items()]
    return "\n".join(lines).rstrip() + "\n"


def study_tasks(results: Path) -> List[str]:
    """The default tasks, then any other task with a folder of the study."""
    return [t for t in rg.TASKS if t in rg.DEFAULT_TASKS or (results / t).is_dir()]


def build(results: Optional[Path] = None, todays_study: Optional[Path] = None, heads: Optional[Sequence[str]] = None,
          tasks: Optional[Sequence[str]] = None, finetuned_costs: Optional[Dict] = None, page_dir: Path = REPO,
          write: bool = True) -> Dict:
    """Every point's statistics, the plots (with `write`), the summary and the README fragment."""
    results = rg.RESULTS if results is None else results
    todays_study = rg.TODAYS_STUDY if todays_study is None else todays_study
    heads = rg.HEADS if heads is None else heads
    tasks = study_tasks(results) if tasks is None else tasks
    costs = rg.read_costs(results / "costs.json")
    finetuned = step_costs().get("CPU", {}) if finetuned_costs is None else finetuned_costs
    found = [point_result(p, heads, results, todays_study, write) for p in rg.grid(tasks)]
    if write:
        for task in tasks:
            learning_curve(task, [r for r in found if r["task"] == task], heads, results / task / "learning_curve.png")
    detected = detected_differences(found)
    recommended = recommendations(found, finetuned, costs, heads)
    return {"min_seeds": MIN_SEEDS, "points": found, "detected": detected, "recommendations": recommended,
            "frozen_costs_measured": costs.get("measured") or rg.NOT_MEASURED,
            "fragment": fragment(found, heads, detected, recommended, costs, results, page_dir)}


def marker_page() -> Optional[Path]:
    """The page that holds the regimes markers, if the lead has placed them."""
    return next((REPO / p for p in PAGES if (REPO / p).exists()
                 and f"<!-- {MARKER}:start -->" in (REPO / p).read_text(encoding="utf-8")), None)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--update-readme", action="store_true")
    action.add_argument("--check-readme", action="store_true",
                        help="only check that the fragment (and the page's section) match the run files; exit 1 if not")
    args = parser.parse_args(argv)
    page = marker_page()
    try:
        report = build(page_dir=page.parent if page else REPO, write=not args.check_readme)
    except ValueError as error:  # ReportError, a damaged costs.json
        print(f"regime_report: error: {error}", file=sys.stderr)
        return 2
    fragment_file = rg.RESULTS / "README_fragment.md"
    if args.check_readme:
        stale = [str(fragment_file.relative_to(REPO))] if (
            not fragment_file.exists() or fragment_file.read_text(encoding="utf-8") != report["fragment"]) else []
        if page and replace_section(page.read_text(), MARKER, report["fragment"]) != page.read_text():
            stale.append(str(page.relative_to(REPO)))
        print(f"out of date: {', '.join(stale)}: run python benchmarks/regime_report.py --update-readme" if stale
              else "the regimes section matches benchmarks/results/regimes")
        return int(bool(stale))
    write_atomically(rg.RESULTS / "summary.json", json.dumps({k: v for k, v in report.items() if k != "fragment"},
                                                             indent=1) + "\n")
    write_atomically(fragment_file, report["fragment"])
    print(report["fragment"])
    if args.update_readme:
        if page is None:
            print(f"no page holds <!-- {MARKER}:start --> ... <!-- {MARKER}:end --> yet; the section is in {fragment_file}")
        else:
            write_atomically(page, replace_section(page.read_text(), MARKER, report["fragment"]))
            print(f"{page.relative_to(REPO)} updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
