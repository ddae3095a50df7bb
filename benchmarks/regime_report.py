#!/usr/bin/env python
"""The regimes study's report (benchmarks/regimes.py, issue 28), from its run files only.

    python benchmarks/regime_report.py [--update-readme | --check-readme]

Per point (task, regime, training-set size): the comparison's own report (report.md,
report.json, scores.png, layer_weights.png in the point's folder of results/regimes; the
fine-tuned full-set points of today's tasks are today's comparison, whose runs are read without
rewriting its files): every head's seeds, mean and its 95% interval, failed runs (at or below the best
constant prediction), and against the stock head the paired bootstrap interval, Welch and
Mann-Whitney, the detectable difference at 80% power (fairseq_hire.compare.report/statistics).
Per task: learning_curve.png, the score against the training rows (log axis), one line per head,
a fine-tuned and a frozen panel, every seed a dot, the mean with its 95% interval.

A head counts at a point only with MIN_SEEDS (5) seeds of it and of the stock head; before that
it is "in progress (k of 5 seeds)", never a result. "Detected" is today's rule: Welch p < 0.05
and a bootstrap interval that excludes 0. The recommendation per regime (fine-tuned or frozen at
one size) is the cheapest head within the detectable-difference band of the best head on every
task with the point complete; costs: the measured minutes per run of the regime at that size in
results/regimes/costs.json (benchmarks/regime_costs.py), relative to the stock head's; a head
without a cost, that does not beat the best constant prediction on a task (neither the lower end
of its mean's 95% interval nor every one of its runs is above it: it learned nothing there), or
every run of which failed on a task, is named and not recommended; a task where no head beats
the constant is left out. A run that did not finish, or scored NaN, is a failed try of its head,
not a seed; a point is complete when every head has 5 seeds or 5 failed tries and no seed.

Written: results/regimes/summary.json, README_fragment.md (the full section), and with
--update-readme the generated sections of the pages that hold their markers (the text is
benchmarks/regime_tables.py's): <!-- regimes:start --> ... <!-- regimes:end --> (every point,
docs/RESULTS.md) and <!-- regimes-headline:start --> ... <!-- regimes-headline:end --> (the
verdict and the recommendation per regime in short, README.md); --check-readme exits 1 if the
fragment file, a section or a point's report.json or report.md differs from what the run files
give now.
"""
import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import regimes as rg  # noqa: E402
from fairseq_hire.compare.report import (ReportError, load_runs, load_unfinished, report_texts,  # noqa: E402
                                         summarise, write_summary)
from fairseq_hire.compare.plotting import pyplot, save_figure  # noqa: E402
from fairseq_hire.metrics import rounded  # noqa: E402
from glue_prep.atomic import write_atomically  # noqa: E402
from regime_tables import MEAN_POOL, MIN_SEEDS, REGIME_WORDS, counted, fragment, headline, lost  # noqa: E402
from report import replace_section, within_band  # noqa: E402

FULL_SECTION, HEADLINE_SECTION = "regimes", "regimes-headline"  # marker names
PAGES = ("README.md", "docs/RESULTS.md")  # where the markers may be placed
DEFAULT_PAGES = {FULL_SECTION: "docs/RESULTS.md", HEADLINE_SECTION: "README.md"}  # links are made as if there


def check_subset(point: rg.Point, runs: Sequence[Dict]) -> None:
    """Every run of a point was trained on the point's number of rows (train_subset.size)."""
    for run in runs:
        size = (run.get("train_subset") or {}).get("size")
        if size != point.subset:
            raise ReportError(f"{run['file']}: trained on {size or 'the full training set'} rows; the point "
                              f"{point.key} is {point.subset or 'the full training set'}")


def point_result(point: rg.Point, heads: Sequence[str], results: Path, todays_study: Path, write: bool = True,
                 stale: Optional[List[Path]] = None) -> Dict:
    """A point's statistics, and its report written (`write`), or else its report files that
    differ from what its runs give now added to `stale`."""
    folder = point.folder(results, todays_study)
    # the point's report, in the study's folder of the point: a reused point's runs are today's
    # comparison, whose report is report.py's to rewrite (and older than the heads added there)
    report_folder = results / point.task / point.name
    runs = load_runs(folder / "runs") if (folder / "runs").is_dir() else []
    check_subset(point, runs)
    summary = None
    if runs:
        summary = summarise(runs, unfinished=load_unfinished(folder / "runs", runs))
        if write:
            write_summary(summary, report_folder)
        elif stale is not None:
            stale += [report_folder / name for name, text in report_texts(summary).items()
                      if not (report_folder / name).is_file() or (report_folder / name).read_text() != text]
        add_mean_pool_comparison(summary, runs)
    found = summary["heads"] if summary else {}
    # a seed is a scored run; a run that did not finish, or scored NaN, is a failed try of its head
    seeds = {h: found[h]["n"] if h in found else 0 for h in heads}
    failed_tries = {h: len(found[h]["unfinished_seeds"]) if h in found else 0 for h in heads}
    result = {"task": point.task, "regime": point.regime, "size": point.size, "train_rows": point.train_rows,
              "capped": bool(point.size == "full" and point.subset), "folder": rg.shown(report_folder),
              "reused_from": rg.shown(folder) if point.reused else None, "seeds": seeds,
              "failed_tries": failed_tries, "summary": summary}
    # complete: every head has its seeds, or every run of it failed (more tries would not change that)
    result["complete"] = all(n >= MIN_SEEDS or lost(result, h) for h, n in seeds.items())
    return result


def add_mean_pool_comparison(summary: Dict, runs: Sequence[Dict]) -> None:
    """Each head with MIN_SEEDS seeds against the last layer mean-pooled (`vs_mean_pool`), where
    that head has them too: the control that tells a gain from combining layers from a gain
    from reading every token (issue 28), by the same statistics as against the stock head."""
    heads = summary["heads"]
    if heads.get(MEAN_POOL, {}).get("n", 0) < MIN_SEEDS:
        return
    against = summarise(list(runs), reference=MEAN_POOL)["heads"]
    for head, data in heads.items():
        if head != MEAN_POOL and data["n"] >= MIN_SEEDS:
            data["vs_mean_pool"] = against[head]["vs_reference"]


def detected_differences(results: Sequence[Dict]) -> List[Dict]:
    found = []
    for r in results:
        for head in r["seeds"]:
            data = r["summary"]["heads"][head] if counted(r, head) else {}
            versus = data.get("vs_reference")
            if versus and versus["detected"]:
                found.append({"task": r["task"], "regime": r["regime"], "size": r["size"], "head": head,
                              "train_rows": r["train_rows"], **versus, "vs_mean_pool": data.get("vs_mean_pool")})
    return found


def regime_costs(costs: Dict, regime: str, size: str, heads: Sequence[str], tasks: Sequence[str]) -> Dict:
    """head -> {ratio, minutes, ranges, ratio_range}: minutes per run of `regime` at `size` over
    the stock head's (costs.json), the mean over `tasks`; ranges: per task, the measurement's
    [low, high] minutes; ratio_range: the ratio with each task's minutes at their low and at
    their high end (costs_less ranks two heads by it). A head without a measurement on every
    task has no cost."""
    found = {}
    for head in heads:
        minutes = [rg.minutes_per_run(costs, regime, size, h, t) for t in tasks for h in (head, "stock")]
        if not tasks or None in minutes:
            continue
        stock = dict(zip(tasks, minutes[1::2]))
        ranges = {t: rg.minutes_range(costs, regime, size, head, t) for t in tasks}
        found[head] = {"ratio": statistics.fmean(m / stock[t] for t, m in zip(tasks, minutes[::2])),
                       "minutes": statistics.fmean(minutes[::2]), "ranges": ranges,
                       "ratio_range": [statistics.fmean(ranges[t][end] / stock[t] for t in tasks) for end in (0, 1)]}
    return found


def costs_less(a: Dict, b: Dict) -> bool:
    """Whether regime cost `a` is measurably below `b` (regime_costs): a's ratio with every task's
    minutes at their high end is below b's with every task's at their low end. The spreads are
    wide (each run's fixed times with every update as fast as the fastest timed update, or as
    slow as the slowest), so a tie means the measurements cannot tell the heads apart, and the
    regime's mean decides, not its most variable task: on RTE fine-tuned the spreads of stock
    (12.8-25.2 min) and HIRE (20.9-35.1) overlap, on MRPC (13.6-16.8, 23.6-26.9) they do not."""
    return a["ratio_range"][1] < b["ratio_range"][0]


def costs_in_regimes(costs: Dict, size: str, head: str, tasks: Sequence[str]) -> Dict[str, Dict[str, float]]:
    """regime -> `head`'s minutes per run at `size` (the mean over `tasks`) and their ratio to
    the stock head's (regime_costs); a regime without a measurement is left out."""
    found = {}
    for regime in rg.REGIMES:
        costed = regime_costs(costs, regime, size, [head], tasks)
        if head in costed:
            found[regime] = {"ratio": costed[head]["ratio"], "minutes": costed[head]["minutes"]}
    return found


def beats_constant(summary: Dict, head: str) -> bool:
    """Whether `head` learned something on this point: the lower end of its mean's 95% interval
    over seeds lies above the best constant prediction, or every one of its MIN_SEEDS or more
    runs does (none failed; a one-sided sign test, p = 2**-n <= 1/32). A mean just above it is
    not enough: on MRPC frozen with 100 rows, one seed of five at 75.5 and four at the constant
    74.8 gave a mean of 74.9, and ranked noise. Held against the constant rounded as the runs'
    scores are (the report's `failed` count does the same): on RTE the constant 52.70758 is
    recorded as 52.7076, and a head predicting the majority class on every seed is at it, not above."""
    data = summary["heads"][head]
    interval = data.get("mean_interval")
    every_run = data["n"] >= MIN_SEEDS and data["failed"] == 0
    return every_run or (bool(interval) and interval[0] > rounded(summary["constant_score"]))


def choose_head(tasks: Dict, costs: Dict, heads: Sequence[str]) -> Dict:
    """Among `heads` with a cost that are within the detectable-difference band of the best
    head on every task and beat the best constant prediction there (beats_constant): the cheapest
    (costs_less; overlapping spreads tie, a tie goes to the stock head, else the lower
    mean ratio). A head that does not beat the constant learned nothing on that task, however
    wide its seeds' spread makes the band: named (`below_constant`: head -> those tasks), not
    recommended; nor is a head every run of which failed on a task (`failed`: head -> those tasks)."""
    failed = {h: [t for t, s in tasks.items() if s["heads"][h]["n"] == 0] for h in heads}
    failed = {h: where for h, where in failed.items() if where}
    heads = [h for h in heads if h not in failed]
    best = {t: max(heads, key=lambda h: s["heads"][h]["mean"], default=None) for t, s in tasks.items()}
    in_band = [h for h in heads if all(h == best[t] or within_band(s, h, best[t]) for t, s in tasks.items())]
    below_constant = {h: [t for t, s in tasks.items() if not beats_constant(s, h)] for h in in_band}
    below_constant = {h: where for h, where in below_constant.items() if where}
    fits = [h for h in in_band if h not in below_constant]
    priced = [h for h in fits if h in costs]
    cheapest = [h for h in priced if not any(costs_less(costs[o], costs[h]) for o in priced if o != h)]
    chosen = "stock" if "stock" in cheapest else min(cheapest, key=lambda h: costs[h]["ratio"], default=None)
    return {"best": best, "within_band": fits, "below_constant": below_constant, "failed": failed,
            "unpriced": [h for h in fits if h not in costs], "head": chosen,
            "ratio": costs[chosen]["ratio"] if chosen else None, "tied": [h for h in cheapest if h != chosen]}


def recommendations(results: Sequence[Dict], costs: Dict, heads: Sequence[str]) -> Dict:
    """(regime-size) -> the recommendation, or why there is none yet."""
    out = {}
    for regime in rg.REGIMES:
        for size in rg.SIZES:
            here = [r for r in results if r["regime"] == regime and r["size"] == size]
            if not here:
                continue
            complete = {r["task"]: r["summary"] for r in here if r["complete"]}
            # where no head beats the best constant prediction, no head learned: the ranking there is noise
            at_chance = [t for t, s in complete.items() if not any(beats_constant(s, h) for h in heads)]
            tasks = {t: s for t, s in complete.items() if t not in at_chance}
            entry = {"tasks": list(complete), "in_progress": [r["task"] for r in here if not r["complete"]]}
            if complete:
                entry.update(at_chance=at_chance, head=None)
            if tasks:
                def priced(names, regime=regime):  # a regime's costs of the heads over `names`
                    return regime_costs(costs, regime, size, heads, names)

                entry.update(choose_head(tasks, priced(list(tasks)), heads))
                if not entry["within_band"] and len(tasks) > 1:  # the tasks disagree: each task's own choice
                    choices = {t: choose_head({t: s}, priced([t]), heads) for t, s in tasks.items()}
                    entry["per_task"] = {t: choice["head"] for t, choice in choices.items()}
                    entry["per_task_below_constant"] = {
                        h: [t for t, choice in choices.items() if h in choice["below_constant"]] for h in heads
                        if any(h in choice["below_constant"] for choice in choices.values())}
                # what the chosen head costs in both regimes (issue 28: "frozen and fine-tuned")
                entry["costs"] = costs_in_regimes(costs, size, entry["head"], list(tasks)) if entry["head"] else {}
                if entry.get("per_task"):
                    entry["per_task_costs"] = {t: costs_in_regimes(costs, size, h, [t])
                                                for t, h in entry["per_task"].items() if h}
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
        if sizes:  # the whole grid on both panels, points or not, so that they read alike
            ax.set_xlim(sizes[0] / 1.5, sizes[-1] * 1.5)
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


def study_tasks(results: Path) -> List[str]:
    """The default tasks, then any other task with a folder of the study."""
    return [t for t in rg.TASKS if t in rg.DEFAULT_TASKS or (results / t).is_dir()]


def build(results: Optional[Path] = None, todays_study: Optional[Path] = None, heads: Optional[Sequence[str]] = None,
          tasks: Optional[Sequence[str]] = None,
          pages: Optional[Dict[str, Path]] = None, write: bool = True) -> Dict:
    """Every point's statistics, the plots (with `write`), the summary, the full section and the
    headline, their links made from the pages that hold them (`pages`: marker -> page)."""
    pages = {**{m: REPO / p for m, p in DEFAULT_PAGES.items()}, **(pages or {})}
    results = rg.RESULTS if results is None else results
    todays_study = rg.TODAYS_STUDY if todays_study is None else todays_study
    heads = rg.HEADS if heads is None else heads
    tasks = study_tasks(results) if tasks is None else tasks
    costs = rg.read_costs(results / "costs.json")
    stale: List[Path] = []
    found = [point_result(p, heads, results, todays_study, write, stale) for p in rg.grid(tasks)]
    if write:
        for task in tasks:
            learning_curve(task, [r for r in found if r["task"] == task], heads, results / task / "learning_curve.png")
    detected = detected_differences(found)
    recommended = recommendations(found, costs, heads)
    return {"min_seeds": MIN_SEEDS, "points": found, "detected": detected, "recommendations": recommended,
            "stale_reports": [rg.shown(path) for path in stale],
            "costs_measured": costs.get("measured") or rg.NOT_MEASURED,
            "fragment": fragment(found, heads, detected, recommended, costs, results, pages[FULL_SECTION].parent),
            "headline": headline(found, detected, recommended, pages[HEADLINE_SECTION], pages[FULL_SECTION])}


def marker_pages() -> Dict[str, Path]:
    """Section marker -> the page that holds it; a section no page holds yet is left out."""
    found = {}
    for marker in (FULL_SECTION, HEADLINE_SECTION):
        page = next((REPO / p for p in PAGES if (REPO / p).exists()
                     and f"<!-- {marker}:start -->" in (REPO / p).read_text(encoding="utf-8")), None)
        if page:
            found[marker] = page
    return found


def pages_with_sections(pages: Dict[str, Path], sections: Dict[str, str]) -> Dict[Path, str]:
    """Each page that holds a section, as its text with its sections replaced by `sections`."""
    texts = {}
    for marker, page in pages.items():
        text = texts.get(page) or page.read_text(encoding="utf-8")
        texts[page] = replace_section(text, marker, sections[marker], where=str(page.relative_to(REPO)))
    return texts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--update-readme", action="store_true")
    action.add_argument("--check-readme", action="store_true",
                        help="only check that the fragment (and the pages' sections) match the run files; exit 1 if not")
    args = parser.parse_args(argv)
    pages = marker_pages()
    try:
        report = build(pages=pages, write=not args.check_readme)
    except ValueError as error:  # ReportError, a damaged costs.json
        print(f"regime_report: error: {error}", file=sys.stderr)
        return 2
    fragment_file = rg.RESULTS / "README_fragment.md"
    updated = pages_with_sections(pages, {FULL_SECTION: report["fragment"], HEADLINE_SECTION: report["headline"]})
    if args.check_readme:
        stale = [str(fragment_file.relative_to(REPO))] if (
            not fragment_file.exists() or fragment_file.read_text(encoding="utf-8") != report["fragment"]) else []
        stale += [str(page.relative_to(REPO)) for page, text in updated.items() if text != page.read_text(encoding="utf-8")]
        stale += report["stale_reports"]  # each point's report.json and report.md against its runs
        print(f"out of date: {', '.join(stale)}: run python benchmarks/regime_report.py --update-readme" if stale
              else "the regimes sections match benchmarks/results/regimes")
        return int(bool(stale))
    write_atomically(rg.RESULTS / "summary.json", json.dumps(
        {k: v for k, v in report.items() if k not in ("fragment", "headline", "stale_reports")}, indent=1) + "\n")
    write_atomically(fragment_file, report["fragment"])
    print(report["fragment"])
    if args.update_readme:
        for marker in (FULL_SECTION, HEADLINE_SECTION):
            if marker not in pages:
                print(f"no page holds <!-- {marker}:start --> ... <!-- {marker}:end --> yet")
        for page, text in updated.items():
            write_atomically(page, text)
            print(f"{page.relative_to(REPO)} updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
