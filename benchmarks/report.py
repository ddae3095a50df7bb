#!/usr/bin/env python
"""The generated parts of the README and docs/, from the benchmarks' own files (none typed by hand).

    python benchmarks/report.py [--update-readme | --check-readme] [--refresh]

Sections (between <!-- NAME:start --> and <!-- NAME:end -->, each in the page PAGES names):

* headline (README.md): the comparison study's one-line answer, HIRE against the stock head per task;
* options and heads (docs/OPTIONS.md): every --hire-* option and every head of the comparison,
  from their one definition (fairseq_hire/modules/options.py);
* glue-prep (docs/USAGE.md): the glue_prep benchmark's table;
* quality (docs/RESULTS.md): the comparison study (benchmarks/quality.py) per task, from
  results/compare/<TASK>/report.json: every head against the stock head (paired bootstrap
  interval, seed-level tests, the smallest difference the seeds could detect), then the answer;
* quality-gpu (docs/RESULTS.md): the same for the study on a lent GPU (benchmarks/gpu_replicate.sh,
  fp16, results/compare-gpu/<TASK>/), kept apart from the CPU study as another recipe;
* cost (docs/RESULTS.md): each head's quality next to its training-step cost (benchmarks/speed.py)
  and the recommendation: the cheapest head within the detectable-difference band of the best
  head on every task (overlapping per-repeat step-time ratios tie; a tie goes to the reference head);
* speed (docs/RESULTS.md): the speed benchmark's tables.

--update-readme rewrites every page's sections, --check-readme exits 1 if any page is stale or
any task's report.json or report.md differs from what its run files give now.
--refresh first rewrites every task's report of both studies from its run files
(fairseq_hire.compare.report).
"""
import argparse
import json
import os
import re
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from fairseq_hire.compare import statistics as st  # noqa: E402
from fairseq_hire.compare.report import (ReportError, load_runs, markdown, number, report_texts,  # noqa: E402
                                         summarise_folder, write_report)
from fairseq_hire.modules.options import head_preset, ordered_heads  # noqa: E402
from glue_prep.atomic import write_atomically  # noqa: E402
from quality import MIN_SEEDS  # noqa: E402
from quality import TASKS as STUDY_TASKS  # noqa: E402
from report_tables import glue_prep_table, heads_table, options_table, speed_tables  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
STUDY = RESULTS / "compare"
GPU_STUDY = RESULTS / "compare-gpu"  # benchmarks/gpu_replicate.sh's compare-gpu.tar.gz, unpacked here
TASK_ORDER = STUDY_TASKS
# the page (relative to the repository) that holds each generated section
PAGES = {"headline": "README.md", "options": "docs/OPTIONS.md", "heads": "docs/OPTIONS.md",
         "glue-prep": "docs/USAGE.md", "quality": "docs/RESULTS.md", "quality-gpu": "docs/RESULTS.md",
         "cost": "docs/RESULTS.md", "speed": "docs/RESULTS.md"}


def study_summaries(refresh: bool = False, study: Path = STUDY) -> dict:
    """task -> its comparison summary (report.json), in TASK_ORDER."""
    summaries = {}
    for folder in sorted(study.glob("*"), key=lambda p: TASK_ORDER.index(p.name) if p.name in TASK_ORDER else 99):
        if refresh and (folder / "runs").is_dir() and any((folder / "runs").glob("*.json")):
            write_report(folder)
        if (folder / "report.json").exists():
            summaries[folder.name] = json.loads((folder / "report.json").read_text())
    return summaries


def stale_reports(study: Path = STUDY) -> list:
    """The report files of a study whose text differs from what their run files give now (a run
    added or removed since the report was written), relative to the repository."""
    stale = []
    for folder in sorted(study.glob("*")):
        if not (folder / "report.json").exists():
            continue
        reference = json.loads((folder / "report.json").read_text()).get("reference", "stock")
        try:
            texts = report_texts(summarise_folder(folder, reference))
        except ReportError:  # its runs are gone, or none scored: the report is of runs no longer there
            texts = {}
        stale += [str((folder / name).relative_to(REPO)) for name in ("report.json", "report.md")
                  if not (folder / name).exists() or (folder / name).read_text() != texts.get(name)]
    return stale


def quality_section(summaries: dict, study: Path = STUDY, page_dir: Path = None) -> str:
    """Each task's table and plots (linked relative to page_dir, the folder of the page that
    holds the section; the repository by default), then the answer."""
    if not summaries:
        return "(no comparison results yet: python benchmarks/quality.py)"
    lines = []
    for task, summary in summaries.items():
        folder = Path(os.path.relpath(study / task, REPO if page_dir is None else page_dir)).as_posix()
        lines += [markdown(summary).rstrip(), "",
                  f"Plots: [every seed's score]({folder}/scores.png)"
                  + (f", [per-example layer weights]({folder}/layer_weights.png)"
                     if (study / task / "layer_weights.png").exists() else "") + ".", ""]
    lines += [run_minutes(summaries), "", answer(summaries)]
    return "\n".join(lines)


def gpu_quality_section(summaries: dict, study: Path = GPU_STUDY, page_dir: Path = None) -> str:
    """The GPU study: where it came from (the cards its runs name), then its tables and answer."""
    if not summaries:
        return ("No GPU study has results yet. `benchmarks/gpu_replicate.sh` runs it on a lent GPU after "
                "`benchmarks/device_carry.py pack` has fitted what the machine lacks into the device tool's "
                f"64 MiB transfer; unpack its `compare-gpu.tar.gz` into `{study.parent.relative_to(REPO)}/`.")
    cards = sorted({run.get("gpu") or "an unnamed GPU" for task in summaries for run in load_runs(study / task / "runs")})
    return "\n".join([f"The same heads and seeds trained in fp16 (fairseq's GPU recipe) on {', '.join(cards)}, "
                      f"from `{study.relative_to(REPO)}/`: another recipe than the CPU study's fp32, so "
                      "the two are never pooled.", "", quality_section(summaries, study, page_dir)])


def run_minutes(summaries: dict) -> str:
    """How long a run trained, per task: the mean over its runs, from their own files."""
    def mean(summary):
        heads = [h for h in summary["heads"].values() if h["n"]]  # not a head whose every run failed
        return sum(h["train_minutes"] * h["n"] for h in heads) / sum(h["n"] for h in heads)

    return ("Training minutes per run (the mean over the task's runs, from their files): "
            + ", ".join(f"{task} {mean(summary):.0f}" for task, summary in summaries.items()) + ".")


def heads_of(summaries: dict) -> list:
    """Every head of these tasks' reports, in the report's order."""
    return ordered_heads(h for s in summaries.values() for h in s["heads"])


def answer(summaries: dict) -> str:
    """The answer in plain words, for HIRE and every other head against the stock head (a
    task's report made against another reference head says nothing of the stock head)."""
    unreferenced = [t for t, s in summaries.items() if s.get("reference", "stock") == "stock" and not scored(s, "stock")]
    summaries = against_stock(summaries)
    heads = [h for h in heads_of(summaries) if h != "stock"]
    sentences = []
    for head in heads:
        present = {task: s["heads"][head] for task, s in summaries.items() if head in s["heads"]}
        found = {task: data for task, data in present.items() if data["n"]}
        failed = {task: data["failed"] for task, data in present.items() if lost(data)}
        versus = {task: data["vs_reference"] for task, data in found.items() if "vs_reference" in data}
        few = [t for t, data in present.items()
               if t not in failed and min(data["n"], summaries[t]["heads"]["stock"]["n"]) < MIN_SEEDS]
        detected = {t: v for t, v in versus.items() if v["detected"]}
        undetected = {t: v for t, v in versus.items() if not v["detected"]}
        parts = []
        if detected:
            parts.append("a difference from the stock head is detected on " + ", ".join(
                f"{t} ({v['difference']:+.1f}, 95% CI {v['bootstrap_low']:+.1f} to {v['bootstrap_high']:+.1f})"
                for t, v in detected.items()))
        if undetected:
            bands = [f"{v['detectable']:.1f} points on {t}" for t, v in undetected.items() if v["detectable"] is not None]
            band = f"; a difference of at least {', '.join(bands)} would have been" if bands else ""
            parts.append(f"not detected on {', '.join(undetected)}{band}")
        if few:
            parts.append(f"fewer than {MIN_SEEDS} seeds so far on {', '.join(few)}")
        if failed:
            parts.append("every run failed on " + ", ".join(f"{t} ({k} run{'s' if k != 1 else ''})"
                                                           for t, k in failed.items()))
        sentences.append(f"- **{head}**: " + "; ".join(parts) + ".")
    if unreferenced:
        sentences.append(f"- No head is compared with the stock head on {', '.join(unreferenced)}: the stock head "
                         "has no finished run there.")
    return "\n".join(["In plain words, against the stock RoBERTa head:", "", *sentences, "", verdict(summaries)])


def against_stock(summaries: dict) -> dict:
    """The tasks whose report compares the heads with the stock head (one made against another
    reference head says nothing of the stock head)."""
    return {t: s for t, s in summaries.items() if s.get("reference", "stock") == "stock" and scored(s, "stock")}


def scored(summary: dict, head: str) -> bool:
    """Whether `head` has a finished run in this report (a head none of whose runs finished has
    a row of failed runs only)."""
    return summary["heads"].get(head, {}).get("n", 0) > 0


def lost(data: dict) -> bool:
    """A head none of whose MIN_SEEDS or more runs finished: every run failed (with fewer tries,
    its seeds are still to come)."""
    return data["n"] == 0 and data.get("failed", 0) >= MIN_SEEDS


def verdict(summaries: dict) -> str:
    """The study's answer for HIRE in one line, from the tasks compared with the stock head that
    have MIN_SEEDS seeds of both, and the tasks where every HIRE run failed."""
    compared = against_stock(summaries)
    hire = {task: s["heads"]["hire"]["vs_reference"] for task, s in compared.items()
            if scored(s, "hire") and min(s["heads"]["hire"]["n"], s["heads"]["stock"]["n"]) >= MIN_SEEDS}
    failed = [task for task, s in compared.items() if "hire" in s["heads"] and lost(s["heads"]["hire"])]
    failed_words = f"every HIRE run failed on {', '.join(failed)}" if failed else ""
    enough = f"{', '.join(hire)}, the task(s) with at least {MIN_SEEDS} seeds of both heads"
    if not hire:
        return (f"**{failed_words[0].upper() + failed_words[1:]}**; no other task has {MIN_SEEDS} seeds of both HIRE "
                "and the stock head yet." if failed else
                f"No task has {MIN_SEEDS} seeds of both HIRE and the stock head yet: no answer.")
    also = f" And {failed_words}." if failed else ""
    if not any(v["detected"] for v in hire.values()):
        return f"**HIRE does not measurably help all-MiniLM-L6-v2** on {enough}.{also}"
    if all(v["detected"] and v["difference"] > 0 for v in hire.values()):
        return f"**HIRE helps all-MiniLM-L6-v2** on {enough}.{also}"
    if all(v["detected"] and v["difference"] < 0 for v in hire.values()):
        return f"**HIRE is measurably worse than the stock head on all-MiniLM-L6-v2** on {enough}.{also}"
    return f"HIRE's effect on all-MiniLM-L6-v2 depends on the task (see each table).{also}"


def headline_section(summaries: dict) -> str:
    """The README's headline: the verdict, and HIRE against the stock head on every task."""
    summaries = {t: s for t, s in against_stock(summaries).items()
                 if scored(s, "hire") or ("hire" in s["heads"] and lost(s["heads"]["hire"]))}
    if not summaries:
        return "(no comparison of HIRE with the stock head yet: python benchmarks/quality.py)"
    lines = [verdict(summaries), "",
             "| task | metric | seeds (stock, HIRE) | stock, mean ± sd | HIRE, mean ± sd | HIRE - stock "
             "[95% bootstrap CI] | detectable (80% power) | verdict |", "|---|---|---|---|---|---|---|---|"]
    for task, summary in summaries.items():
        stock, hire = summary["heads"]["stock"], summary["heads"]["hire"]
        if lost(hire):
            lines.append(f"| {task} | {summary['metric']} | {stock['n']}, 0 | {number(stock['mean'])} ± "
                         f"{number(stock['sd'])} | every run failed ({hire['failed']} runs) | - | - | - |")
            continue
        versus = hire["vs_reference"]
        lines.append(f"| {task} | {summary['metric']} | {stock['n']}, {hire['n']} | {number(stock['mean'])} ± "
                     f"{number(stock['sd'])} | {number(hire['mean'])} ± {number(hire['sd'])} | "
                     f"{versus['difference']:+.2f} [{versus['bootstrap_low']:+.2f}, {versus['bootstrap_high']:+.2f}] | "
                     f"{number(versus['detectable'], 2)} | {versus['verdict']} |")
    return "\n".join(lines)


def step_costs() -> dict:
    """device -> configuration -> {ratio, flop_ratio, ranges}: training-step time / stock at
    all-MiniLM-L6 dimensions, mean over the real GLUE batches (RTE, MRPC); ranges holds each
    batch set's spread of the paired per-repeat ratios. Each device's figures come from one
    speed JSON, the one that times the most configurations there (the first by name on a tie),
    so that every ratio of a device is paired against the same stock timings."""
    chosen = {}
    for path in sorted(RESULTS.glob("speed-*.json")):
        speed = json.loads(path.read_text())
        device = speed["machine"].get("gpu", "CPU")
        loads = {name: load for name, load in speed["train_step"].get("minilm", {}).items() if name.endswith("batches")}
        # first-seen order, not a set's: the generated JSON must not change from run to run
        configs = list(dict.fromkeys(c for load in loads.values() for c in load["configs"]))
        if len(configs) > len(chosen.get(device, (None, {}, []))[2]):
            chosen[device] = (path, loads, configs)
    costs = {}
    for device, (path, loads, configs) in chosen.items():
        for config in configs:
            rows = {name: load["configs"][config] for name, load in loads.items() if config in load["configs"]}
            costs.setdefault(device, {})[config] = {
                "ratio": statistics.fmean(r["ratio"] for r in rows.values()),
                "flop_ratio": statistics.fmean(r["flop_ratio"] for r in rows.values()), "source": path.name,
                "ranges": {name: r["paired_ratio_range"] for name, r in rows.items() if "paired_ratio_range" in r}}
    return costs


def costs_less(a: dict, b: dict) -> bool:
    """Whether cost `a` is measurably below cost `b`: on every batch set timed for both, the highest
    of a's paired per-repeat ratios is below the lowest of b's. Overlapping spreads are a tie, so
    repeat noise cannot rank two heads of equal FLOPs. Without ranges the mean ratios decide."""
    shared = [name for name in a.get("ranges", {}) if name in b.get("ranges", {})]
    if not shared:
        return a["ratio"] < b["ratio"]
    return all(a["ranges"][name][1] < b["ranges"][name][0] for name in shared)


def within_band(summary: dict, head: str, best: str) -> bool:
    """Whether `head` is within the detectable-difference band of `best` on this task: the seeds
    could not have detected a gap the size of theirs (80% power)."""
    a, b = summary["heads"][best], summary["heads"][head]
    gap = a["mean"] - b["mean"]
    if gap <= 0:  # tied with the best (seeds without spread have no band, and need none)
        return True
    band = st.detectable_difference(a["sd"] or 0.0, a["n"], b["sd"] or 0.0, b["n"])
    return band is not None and gap < band


def why_left_out(tasks: dict, head: str) -> str:
    """Why a head without a scored run on every task has no place in the recommendation."""
    failed = [t for t, s in tasks.items() if head in s["heads"] and lost(s["heads"][head])]
    return f"every run failed on {', '.join(failed)}" if failed else "not run on every task"


def recommendation(summaries: dict, costs: dict) -> str:
    cpu = costs.get("CPU", {})
    # a head every one of whose runs failed is no candidate, and does not hold the others back
    tasks = {t: s for t, s in summaries.items() if all(d["n"] >= MIN_SEEDS or lost(d) for d in s["heads"].values())}
    if not tasks or not cpu:
        return (f"No recommendation yet: it needs every head of a task at {MIN_SEEDS} seeds and the CPU speed "
                "results of every head.")
    heads = [h for h in heads_of(tasks) if all(scored(s, h) for s in tasks.values())]
    left_out = {h: why_left_out(tasks, h) for h in heads_of(tasks) if h not in heads}
    unpriced = [h for h in heads if h not in cpu]
    heads = [h for h in heads if h in cpu]
    best = {t: max((h for h in s["heads"] if scored(s, h)), key=lambda h: s["heads"][h]["mean"])
            for t, s in tasks.items()}
    fits = [h for h in heads if all(h == best[t] or within_band(s, h, best[t]) for t, s in tasks.items())]
    unpriced_note = (f" ({', '.join(unpriced)}: no speed results, so not recommended)" if unpriced else "")
    unpriced_note += "".join(f" ({h}: {why}, so not recommended)" for h, why in left_out.items())
    if not fits:
        return "No head with speed results is within the detectable-difference band of the best head on every task" \
            + unpriced_note + "."
    # the heads no other fitting head is measurably cheaper than; on a tie the reference head
    # (no extra parameters) is preferred, as nothing measured pays for the extra ones
    reference = next(iter(tasks.values())).get("reference", "stock")
    cheapest_tie = [h for h in fits if not any(costs_less(cpu[o], cpu[h]) for o in fits if o != h)]
    cheapest = reference if reference in cheapest_tie else min(cheapest_tie, key=lambda h: cpu[h]["ratio"])
    others = [h for h in cheapest_tie if h != cheapest]
    tie_note = ""
    if others:
        tie_note = (f" Its cost cannot be told apart from {'those' if len(others) > 1 else 'that'} of "
                    f"{', '.join(others)}: their paired step-time ranges overlap"
                    + (", so the reference head is preferred." if cheapest == reference else "."))
    elsewhere = "".join(f"; {device}: {c[cheapest]['ratio']:.2f}x"
                        for device, c in costs.items() if device != "CPU" and cheapest in c)
    return (f"Recommended head: **{cheapest}** ({head_preset(cheapest).description}): the cheapest head within the "
            f"detectable-difference band of the best head on {', '.join(tasks)} (best: "
            + ", ".join(f"{t} {b}" for t, b in best.items())
            + f"); its training step costs {cpu[cheapest]['ratio']:.2f}x the stock "
            f"step on CPU at all-MiniLM-L6 dimensions on real GLUE batches{elsewhere}.{tie_note} Heads within the "
            f"band everywhere: {', '.join(fits)}{unpriced_note}.")


def cost_section(summaries: dict, costs: dict) -> str:
    devices = list(costs)
    tasks = list(summaries)
    heads = heads_of(summaries)
    lines = ["| head | " + " | ".join(f"{t} {summaries[t]['metric']} (mean, seeds)" for t in tasks)
             + " | " + " | ".join(f"step time vs stock, {d}" for d in devices) + " | FLOP ratio |",
             "|---|" + "---|" * (len(tasks) + len(devices) + 1)]
    for head in heads:
        config = head
        scores = [f"{summaries[t]['heads'][head]['mean']:.1f} ({summaries[t]['heads'][head]['n']})"
                  if scored(summaries[t], head) else "-" for t in tasks]
        ratios = [f"{costs[d][config]['ratio']:.2f}x" if config in costs[d] else "-" for d in devices]
        flops = next((f"{costs[d][config]['flop_ratio']:.2f}x" for d in devices if config in costs[d]), "-")
        lines.append(f"| {head} | " + " | ".join(scores) + " | " + " | ".join(ratios) + f" | {flops} |")
    lines += ["", recommendation(summaries, costs)]
    return "\n".join(lines)


def replace_section(text, name, body, where="README.md"):
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"{where} has no <!-- {name}:start --> ... <!-- {name}:end --> section")
    return pattern.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), text)


def readme_sections(summaries=None, costs=None, gpu_summaries=None):
    """Every generated section of the README and docs/, by marker name (PAGES says where each goes)."""
    summaries = study_summaries() if summaries is None else summaries
    gpu_summaries = study_summaries(study=GPU_STUDY) if gpu_summaries is None else gpu_summaries
    costs = step_costs() if costs is None else costs
    results_dir = (REPO / PAGES["quality"]).parent  # the plots are linked from the page holding the tables
    return {"headline": headline_section(summaries), "options": options_table(), "heads": heads_table(),
            "glue-prep": glue_prep_table(), "quality": quality_section(summaries, page_dir=results_dir),
            "quality-gpu": gpu_quality_section(gpu_summaries, page_dir=results_dir),
            "cost": cost_section(summaries, costs), "speed": speed_tables()}


def generated_pages(sections) -> dict:
    """page path -> (its text now, its text with the sections regenerated), for every page of PAGES."""
    pages = {}
    for name, body in sections.items():
        path = REPO / PAGES[name]
        old, new = pages.get(path, (path.read_text(), path.read_text()))
        pages[path] = (old, replace_section(new, name, body, PAGES[name]))
    return pages


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--update-readme", action="store_true", help="rewrite the generated sections of every page")
    action.add_argument("--check-readme", action="store_true",
                        help="only check that every page's sections match the results; exit 1 if not")
    parser.add_argument("--refresh", action="store_true", help="rewrite every task's report from its runs first")
    args = parser.parse_args(argv)
    summaries = study_summaries(refresh=args.refresh)
    gpu_summaries = study_summaries(refresh=args.refresh, study=GPU_STUDY)
    costs = step_costs()
    sections = readme_sections(summaries, costs, gpu_summaries)
    pages = generated_pages(sections)
    if args.check_readme:  # the pages against the reports, and the reports against their run files
        stale = [str(path.relative_to(REPO)) for path, (old, new) in pages.items() if old != new]
        stale += [] if args.refresh else stale_reports(STUDY) + stale_reports(GPU_STUDY)
        print(f"out of date: {', '.join(stale)}: run python benchmarks/report.py --refresh --update-readme" if stale
              else f"{', '.join(str(p.relative_to(REPO)) for p in pages)} and the reports match benchmarks/results")
        return int(bool(stale))
    write_atomically(RESULTS / "study_summary.json",
                     json.dumps({"quality": summaries, "quality_gpu": gpu_summaries, "cost": costs}, indent=1) + "\n")
    for name in ("quality", "quality-gpu", "cost", "speed"):
        print(sections[name])
    if args.update_readme:
        for path, (old, new) in pages.items():
            if new != old:
                write_atomically(path, new)
                print(f"{path.relative_to(REPO)} updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
