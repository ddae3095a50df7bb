"""The regimes study's generated text (benchmarks/regime_report.py computes, this renders): the
section of docs/RESULTS.md (every point's table, HIRE's layer weights, the recommendation per
regime) and the README's short headline of the same results."""
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import regimes as rg
from fairseq_hire.compare.report import number
from report import lost as every_run_failed

REPO = Path(__file__).resolve().parents[1]
MIN_SEEDS = rg.MIN_SEEDS
LAYER_WEIGHT_HEADS = ("hire", "hire-no-fusion")
REGIME_WORDS = {"finetuned": "fine-tuned", "frozen": "frozen"}
MEAN_POOL = "stock-mean-pool"  # the last layer mean-pooled: the control for heads that read every token

FULL_SECTION_ANCHOR = "across-training-set-sizes-and-with-a-frozen-encoder"  # the heading above the full tables


def size_label(size: str) -> str:
    """A size of the grid in words: "1,000 rows", "the full set"."""
    return f"{rg.SIZES[size]:,} rows" if rg.SIZES[size] else "the full set"


def size_words(point: rg.Point) -> str:
    if point.size != "full":
        return f"{point.train_rows:,} rows"
    capped = f"capped, of {rg.FULL_ROWS[point.task]:,}" if point.subset else "the full set"
    return f"{point.train_rows:,} rows ({capped})"


def counted(result: Dict, head: str) -> bool:
    """The head, and the stock head, have MIN_SEEDS seeds (scored runs) at this point."""
    return result["seeds"].get(head, 0) >= MIN_SEEDS and result["seeds"].get("stock", 0) >= MIN_SEEDS


def lost(result: Dict, head: str) -> bool:
    """None of the head's MIN_SEEDS or more runs at this point scored: every run failed (the
    comparison report's rule, report.lost)."""
    heads = (result["summary"] or {}).get("heads", {})
    return head in heads and every_run_failed(heads[head])


def uncounted(result: Dict, head: str) -> Optional[str]:
    """Why the head has no comparison with the stock head at this point, in words; None if it has one."""
    for who in (head, "stock"):
        if lost(result, who):
            failed = f"every run failed ({result['failed_tries'][who]} runs)"
            return failed if who == head else f"not compared: stock head's {failed}"
        if result["seeds"].get(who, 0) < MIN_SEEDS:
            failed = result["failed_tries"].get(who, 0)
            return (f"in progress ({'' if who == head else 'stock head: '}{result['seeds'].get(who, 0)} of "
                    f"{MIN_SEEDS} seeds" + (f", {failed} failed run{'s' if failed != 1 else ''}" if failed else "") + ")")
    return None


def cell(result: Dict, head: str) -> str:
    why = uncounted(result, head)
    if why:
        return why
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
                elif uncounted(r, head):
                    cells.append(uncounted(r, head))
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


def below_constant_note(below_constant: Dict[str, List[str]]) -> str:
    """The heads left out for not beating the best constant prediction (head -> those tasks)."""
    return "".join(f"; {head} does not beat the best constant prediction on {', '.join(tasks)}, so not recommended"
                   for head, tasks in below_constant.items())


def failed_note(failed: Dict[str, List[str]]) -> str:
    """The heads left out because every run of theirs failed (head -> those tasks)."""
    return "".join(f"; every run of {head} failed on {', '.join(tasks)}, so not recommended"
                   for head, tasks in failed.items())


def ranked_tasks(entry: Dict) -> List[str]:
    """The complete tasks a recommendation ranked heads on (those where some head learned)."""
    return [t for t in entry["tasks"] if t not in entry.get("at_chance", [])]


def per_task_words(entry: Dict) -> str:
    """Each task's own choice, where the tasks' bands share no head."""
    return ", ".join(f"{t} **{h or 'none priced'}**" for t, h in entry["per_task"].items())


def cost_words(head: str, costs: Dict[str, Dict[str, float]], regime: str) -> str:
    """A recommended head's minutes per run and their ratio to the stock head's, its own regime
    first, then the other (issue 28: "with its measured step cost frozen and fine-tuned")."""
    order = [regime] + [r for r in rg.REGIMES if r != regime]
    return f"{head} " + ", ".join(
        f"{REGIME_WORDS[r]} {costs[r]['minutes']:.1f} min a run ({costs[r]['ratio']:.2f}x)" if r in costs
        else f"{REGIME_WORDS[r]} not measured" for r in order)


def chosen_costs(name: str, entry: Dict) -> str:
    """The cost of the head(s) a regime's recommendation names: one head, or each task's own."""
    regime = name.split("-")[0]
    if entry.get("per_task"):
        return "; ".join(f"{t} {cost_words(h, entry['per_task_costs'][t], regime)}" if h else f"{t} none priced"
                         for t, h in entry["per_task"].items())
    return cost_words(entry["head"], entry.get("costs", {}), regime)


def recommendation_line(name: str, entry: Dict, cost_source: str) -> str:
    regime, size = name.split("-", 1)
    words = f"**{REGIME_WORDS[regime]}, {size}**"
    waiting = f" (in progress: {', '.join(entry['in_progress'])})" if entry["in_progress"] else ""
    if not entry["tasks"]:
        return f"- {words}: no recommendation yet: no task has every head at {MIN_SEEDS} seeds{waiting}."
    left_out = (f"; left out: {', '.join(entry['at_chance'])}, where no head beats the best constant prediction"
                if entry.get("at_chance") else "")
    ranked = ranked_tasks(entry)
    if not ranked:
        return f"- {words} on {', '.join(entry['tasks'])}{waiting}: no recommendation: no head learned{left_out}."
    where = f"- {words} on {', '.join(ranked)}{waiting}{left_out}"
    not_recommended = (f"; no measured cost of {', '.join(entry['unpriced'])}, so not recommended" if entry["unpriced"] else "")
    not_recommended += below_constant_note(entry.get("below_constant", {})) + failed_note(entry.get("failed", {}))
    best = ", ".join(f"{t} {h}" for t, h in entry["best"].items())
    if entry.get("per_task"):
        chosen = per_task_words(entry)
        return (f"{where}: no head is within the detectable-difference band of the best ({best}) on every task"
                f"{' and beats the best constant prediction on each' if entry.get('below_constant') else ''}; "
                f"each task's cheapest head within its band: {chosen}"
                f"{below_constant_note(entry.get('per_task_below_constant', {}))}{failed_note(entry.get('failed', {}))}. "
                f"Their cost in minutes per run, and its ratio to the stock head's: {chosen_costs(name, entry)}.")
    if entry["head"] is None:
        return (f"{where}: within the band of the best head ({best}): "
                f"{', '.join(entry['within_band'])}{not_recommended}; no recommendation.")
    tied = f"; its cost ties with {', '.join(entry['tied'])}" if entry["tied"] else ""
    other = next((f"; {REGIME_WORDS[name]}: {cost['ratio']:.2f}x the stock head's minutes per run"
                  for name, cost in entry.get("costs", {}).items() if name != regime), "")
    return (f"{where}: **{entry['head']}**, the cheapest head within the "
            f"detectable-difference band of the best ({best}); cost {entry['ratio']:.2f}x the stock head's "
            f"({cost_source}){other}{tied}. Within the band: {', '.join(entry['within_band'])}{not_recommended}.")


def p_value(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def verdict_lines(results: Sequence[Dict], detected: List[Dict]) -> List[str]:
    """Where a head beats (or loses to) the stock head detectably, or that none does, over the
    comparisons with MIN_SEEDS seeds so far."""
    counted_pairs = sum(counted(r, h) for r in results for h in r["seeds"] if h != "stock")
    reported = [f"{r['task']} {REGIME_WORDS[r['regime']]} {r['train_rows']:,} rows" for r in results
                if any(counted(r, h) for h in r["seeds"] if h != "stock")]
    gains = [d for d in detected if d["difference"] > 0]
    losses = [d for d in detected if d["difference"] < 0]

    def against_mean_pool(d):
        versus = d.get("vs_mean_pool")
        if not versus:  # the heading promises the control: its absence is said, not left to be read as a pass
            return "" if d["head"] == MEAN_POOL else f"; against {MEAN_POOL}: not compared (fewer than {MIN_SEEDS} seeds of it)"
        return (f"; against {MEAN_POOL} {versus['difference']:+.1f} (95% CI {versus['bootstrap_low']:+.1f} to "
                f"{versus['bootstrap_high']:+.1f}; {'detected' if versus['detected'] else 'not detected'})")

    def listed(items):
        return [f"- {d['task']}, {REGIME_WORDS[d['regime']]}, {d['train_rows']:,} rows: **{d['head']}** "
                f"{d['difference']:+.1f} (95% CI {d['bootstrap_low']:+.1f} to {d['bootstrap_high']:+.1f}; Welch p "
                f"{p_value(d['welch_p'])}; detectable {number(d['detectable'])}){against_mean_pool(d)}" for d in items]

    lines = []
    if gains:
        lines += [f"Where a head beats the stock head detectably (and how it fares against {MEAN_POOL}, the last "
                  "layer mean-pooled, which tells a gain from combining layers from one from reading every token):",
                  "", *listed(gains), ""]
    elif counted_pairs:
        lines += [f"**No head beats the stock head detectably** in the {counted_pairs} comparisons of a head with the "
                  f"stock head that have {MIN_SEEDS} seeds so far (at {', '.join(reported)}).", ""]
    else:
        lines += [f"No point has {MIN_SEEDS} seeds of a head and the stock head yet: no answer.", ""]
    if losses:
        lines += ["Where a head is detectably worse than the stock head:", "", *listed(losses), ""]
    return lines


def fragment(results: Sequence[Dict], heads: Sequence[str], detected: List[Dict], recommended: Dict,
             costs: Dict, folder: Path = rg.RESULTS, page_dir: Path = REPO) -> str:
    """The section of docs/RESULTS.md: the verdict, every point's table, the layer weights and the
    recommendation per regime."""
    lines = [f"Generated by `python benchmarks/regime_report.py` from the run files of `benchmarks/results/regimes/` "
             "(the fine-tuned full-set points of today's tasks are today's comparison, `benchmarks/results/compare/`, "
             f"the same recipe). A head counts at a point once it and the stock head have {MIN_SEEDS} seeds; "
             "\"detected\" needs Welch p < 0.05 over seeds and a 95% paired bootstrap interval excluding 0.", ""]
    lines += verdict_lines(results, detected)
    lines += ["Each cell: mean ± sd over seeds; against the stock head the difference [95% bootstrap CI] and the "
              "smallest difference the seeds could detect (band, 80% power); bold: detected.", ""]
    for task in dict.fromkeys(r["task"] for r in results):
        lines += task_table(task, [r for r in results if r["task"] == task], heads,
                            folder / task / "learning_curve.png", page_dir) + [""]
    lines += ["HIRE's per-example layer weights: mean total-variation distance of an example's weights from the mean "
              "weights (input-dependent at 0.05 or more):", "", *layer_weight_lines(results), "",
              input_dependence(results), "",
              "Recommendation per regime (a head beats the best constant prediction on a task when the lower end of "
              "its mean's 95% interval over seeds lies above it, or every one of its runs does; a head costs less than another when its minutes per "
              "run over the stock head's, with every task's measurement at the slow end of its spread, stay below "
              "the other's at the fast end, else their costs tie, and a tie goes to the stock head):", ""]
    source = ("minutes per run of the regime, mean over the tasks, from costs.json (benchmarks/regime_costs.py)"
              if costs.get("minutes") else "no costs.json")
    lines += [recommendation_line(name, entry, source) for name, entry in recommended.items()]
    return "\n".join(lines).rstrip() + "\n"


def headline(results: Sequence[Dict], detected: List[Dict], recommended: Dict, page: Path = REPO / "README.md",
             full_page: Path = REPO / "docs" / "RESULTS.md") -> str:
    """The README's short account of the study (`page`): its grid and progress, the verdict, and
    the head recommended in each regime that has one, linking to the full section (`full_page`)."""
    tasks = list(dict.fromkeys(r["task"] for r in results))
    sizes = list(dict.fromkeys(r["size"] for r in results))
    capped = "".join(f"; {task}'s full set capped at {rows:,} rows"
                     for task, rows in dict.fromkeys((r["task"], r["train_rows"]) for r in results if r["capped"]))
    complete = sum(r["complete"] for r in results)
    lines = [f"**Across training-set sizes and with a frozen encoder** (all-MiniLM-L6-v2 on {', '.join(tasks)}; "
             f"training on {', '.join(size_label(s) for s in sizes)}{capped}; fine-tuned and frozen; "
             f"{MIN_SEEDS} seeds per point): {complete} of {len(results)} points have every head at {MIN_SEEDS} seeds so far.",
             ""]
    lines += verdict_lines(results, detected)
    def choice(entry):
        if entry.get("per_task"):
            return "per task, " + per_task_words(entry)
        return f"**{entry['head']}** ({', '.join(ranked_tasks(entry))})"

    def regime_words(name):
        return f"{REGIME_WORDS[name.split('-')[0]]}, {size_label(name.split('-', 1)[1])}"

    decided = {name: entry for name, entry in recommended.items() if entry.get("head") or entry.get("per_task")}
    waiting = [name for name, entry in recommended.items() if name not in decided and entry["in_progress"]]
    without = [regime_words(name) for name, entry in recommended.items() if name not in decided and not entry["in_progress"]]
    recommendation = ("Recommended head so far: " + "; ".join(f"{regime_words(n)}: {choice(e)}" for n, e in decided.items())
                      + "." if decided else "")
    if waiting:
        recommendation += (f" No recommendation yet for {'; '.join(regime_words(n) for n in waiting)} (points in progress)."
                           if decided else " No regime has a recommendation yet.")
    if without:  # every task complete, and still no head to recommend
        recommendation += f" No recommendation in {'; '.join(without)}: no head that learned and has a measured cost."
    if decided:
        recommendation += (" Measured cost, minutes per run and their ratio to the stock head's (costs.json): "
                           + "; ".join(f"{regime_words(n)}: {chosen_costs(n, e)}" for n, e in decided.items()) + ".")
    recommendation = recommendation.strip()
    full = os.path.relpath(full_page, page.parent)
    lines += [recommendation + " Every point, the learning curves, HIRE's layer weights and the costs: "
              f"[{full}]({full}#{FULL_SECTION_ANCHOR})."]
    return "\n".join(lines).rstrip() + "\n"
