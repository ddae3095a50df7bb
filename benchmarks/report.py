#!/usr/bin/env python
"""The README's results, generated from the benchmarks' own JSON files; nothing is typed by
hand.

    python benchmarks/report.py [--update-readme | --check-readme]

Writes benchmarks/results/quality_summary.json, quality_table.md, layer_weights.png and,
with --update-readme, replaces the README's generated sections (between
<!-- NAME:start --> and <!-- NAME:end --> for NAME in quality, cost, speed, glue-prep).

Per task and model: the official GLUE metrics of the best epoch (chosen, as in training, by
the recipe's best-checkpoint metric), over seeds: median, mean +- sample std, n. A
difference to the baseline is called within seed noise when it is smaller than twice its
standard error (sqrt(s_a^2/n_a + s_b^2/n_b)), roughly a 95% two-sided test.
"""
import argparse
import json
import math
import re
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from fairseq_hire.evaluation import write_atomically  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
OFFICIAL = {"MRPC": ["f1", "accuracy"], "STS-B": ["pearson", "spearman"], "CoLA": ["mcc"], "RTE": ["accuracy"],
            "SST-2": ["accuracy"], "QQP": ["f1", "accuracy"], "QNLI": ["accuracy"], "MNLI": ["accuracy"]}
TASK_ORDER = ["MRPC", "STS-B", "CoLA", "RTE", "SST-2"]
MODEL_ORDER = ["baseline", "hire", "scalar-mix", "hire-d4", "hire-d8"]
MODEL_NAMES = {"baseline": "stock RoBERTa head", "hire": "HIRE (defaults, h = d/2)", "scalar-mix": "HIRE, scalar-mix",
               "hire-d4": "HIRE, h = d/4", "hire-d8": "HIRE, h = d/8"}
SPEED_CONFIG = {"baseline": "stock", "hire": "hire", "scalar-mix": "scalar-mix", "hire-d4": "hire-d4", "hire-d8": "hire-d8"}


def load_runs():
    runs = []
    for path in sorted((RESULTS / "quality").glob("*/*.json")):
        runs.append(json.loads(path.read_text()))
    return runs


def describe(values):
    return {"n": len(values), "median": statistics.median(values), "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else float("nan"), "values": values}


def summarize(runs):
    summary = {}
    for task in sorted({r["task"] for r in runs}, key=lambda t: TASK_ORDER.index(t) if t in TASK_ORDER else 99):
        task_runs = [r for r in runs if r["task"] == task]
        primary = task_runs[0]["best_metric"]
        metrics = OFFICIAL.get(task, [primary]) + ([primary] if primary not in OFFICIAL.get(task, []) else [])
        entry = {"dev_size": task_runs[0]["dev_size"], "primary": primary, "epochs": task_runs[0]["epochs"],
                 "lr": task_runs[0].get("lr"), "models": {}}
        for model in sorted({r["model"] for r in task_runs}, key=lambda m: MODEL_ORDER.index(m)):
            model_runs = sorted((r for r in task_runs if r["model"] == model), key=lambda r: r["seed"])
            stats = {m: describe([r["best"][m] for r in model_runs]) for m in metrics}
            weights = [[r["best"][k] for k in sorted((k for k in r["best"] if k.startswith("alpha_")),
                                                     key=lambda k: int(k.split("_")[1]))] for r in model_runs]
            entry["models"][model] = {"seeds": [r["seed"] for r in model_runs], "metrics": stats,
                                      "layer_weights": [statistics.fmean(col) for col in zip(*weights)] if weights and weights[0] else None}
        base = entry["models"].get("baseline")
        for model, data in entry["models"].items():
            if base is None or model == "baseline":
                continue
            data["vs_baseline"] = {"metric": primary, **compare(data["metrics"][primary], base["metrics"][primary])}
        summary[task] = entry
    return summary


def cost_ratios():
    """HIRE's train-step cost at all-MiniLM-L6 dimensions on real GLUE batches, per device."""
    costs = {}
    for path in sorted(RESULTS.glob("speed-*.json")):
        speed = json.loads(path.read_text())
        device = speed["machine"].get("gpu", "CPU")
        loads = speed["train_step"].get("minilm", {})
        for config in SPEED_CONFIG.values():
            ratios = [v["configs"][config]["ratio"] for k, v in loads.items() if k.endswith("batches") and config in v["configs"]]
            flops = [v["configs"][config]["flop_ratio"] for k, v in loads.items() if k.endswith("batches") and config in v["configs"]]
            if ratios:
                costs.setdefault(device, {})[config] = {"ratio": statistics.fmean(ratios), "flop_ratio": statistics.fmean(flops)}
    return costs


def compare(a, b):
    """Mean difference a - b, its standard error, and whether it is within seed noise (< 2 SE);
    with one seed on either side the noise is unknown (standard error and verdict None)."""
    diff = a["mean"] - b["mean"]
    if a["n"] < 2 or b["n"] < 2:
        return {"mean_difference": diff, "standard_error": None, "within_noise": None}
    se = math.sqrt(a["std"] ** 2 / a["n"] + b["std"] ** 2 / b["n"])
    return {"mean_difference": diff, "standard_error": se, "within_noise": not (abs(diff) > 2 * se)}


NOISE_VERDICT = {True: " (within seed noise)", False: " (beyond seed noise)", None: " (one seed: noise unknown)"}


def fmt(stat):
    if stat["n"] == 1:
        return f"{stat['mean']:.1f} (1 seed)"
    return f"{stat['median']:.1f} / {stat['mean']:.1f} ± {stat['std']:.1f}"


def quality_table(summary):
    lines = []
    for task, entry in summary.items():
        metrics = list(next(iter(entry["models"].values()))["metrics"])
        lines.append(f"**{task}** (dev {entry['dev_size']} examples; {entry['epochs']} epochs, lr {entry['lr']}; "
                     f"best epoch by {entry['primary']}; median / mean ± std over seeds)\n")
        lines.append("| model | seeds | " + " | ".join(metrics) + " | vs stock head |")
        lines.append("|---|---|" + "---|" * len(metrics) + "---|")
        for model, data in entry["models"].items():
            versus = ""
            if "vs_baseline" in data:
                v = data["vs_baseline"]
                versus = f"{v['mean_difference']:+.1f} {v['metric']}" + NOISE_VERDICT[v["within_noise"]]
            lines.append(f"| {MODEL_NAMES[model]} | {len(data['seeds'])} | "
                         + " | ".join(fmt(data["metrics"][m]) for m in metrics) + f" | {versus} |")
        lines.append("")
    lines.append(noise_summary(summary))
    return "\n".join(lines)


def noise_summary(summary):
    """One plain sentence over all tasks: where HIRE's variants differ from the stock head."""
    verdicts = {task: [data["vs_baseline"]["within_noise"] for data in entry["models"].values() if "vs_baseline" in data]
                for task, entry in summary.items()}
    within = [t for t, v in verdicts.items() if v and all(x is True for x in v)]
    beyond = [t for t, v in verdicts.items() if any(x is False for x in v)]
    unknown = [t for t, v in verdicts.items() if t not in within and t not in beyond]
    parts = []
    if within:
        parts.append(f"every HIRE variant is within seed noise of the stock head on {', '.join(within)}")
    if beyond:
        parts.append(f"some variant differs beyond seed noise on {', '.join(beyond)} (see its table)")
    if unknown:
        parts.append(f"{', '.join(unknown)} lacks a second seed for some model, so its noise is unknown")
    return "In short: " + "; ".join(parts) + "." if parts else ""


def cost_table(summary, costs):
    devices = list(costs)
    lines = ["| model | " + " | ".join(f"{t} {summary[t]['primary']} (mean)" for t in summary)
             + " | " + " | ".join(f"step time vs stock, {d}" for d in devices) + " | FLOP ratio |",
             "|---|" + "---|" * (len(summary) + len(devices) + 1)]
    for model in MODEL_ORDER:
        if not any(model in e["models"] for e in summary.values()):
            continue
        scores = [f"{summary[t]['models'][model]['metrics'][summary[t]['primary']]['mean']:.1f}"
                  if model in summary[t]["models"] else "-" for t in summary]
        config = SPEED_CONFIG[model]
        ratios = [f"{costs[d][config]['ratio']:.2f}x" if config in costs[d] else "-" for d in devices]
        flops = next((f"{costs[d][config]['flop_ratio']:.2f}x" for d in devices if config in costs[d]), "-")
        lines.append(f"| {MODEL_NAMES[model]} | " + " | ".join(scores) + " | " + " | ".join(ratios) + f" | {flops} |")
    lines += ["", recommendation(summary, costs)]
    return "\n".join(lines)


COST_GOAL = 1.15


def recommendation(summary, costs):
    """The cheap configuration: at most COST_GOAL x the stock step on CPU, and within seed noise
    of HIRE's defaults on every task where both were run with at least two seeds."""
    cpu = costs.get("CPU", {})
    if not cpu:
        return "(no CPU speed results yet: no recommendation)"
    fits = []  # (cost, model, tasks) of every configuration that meets both conditions
    for model in MODEL_ORDER[2:]:
        cost = cpu.get(SPEED_CONFIG[model], {}).get("ratio")
        verdicts = {t: compare(e["models"][model]["metrics"][e["primary"]], e["models"]["hire"]["metrics"][e["primary"]])
                    ["within_noise"] for t, e in summary.items() if "hire" in e["models"] and model in e["models"]}
        tasks = [t for t, verdict in verdicts.items() if verdict is not None]
        if cost is None or cost > COST_GOAL or not tasks:
            continue
        if all(verdicts[t] for t in tasks):
            fits.append((cost, model, tasks))
    if not fits:
        return (f"No configuration costs at most {COST_GOAL:.2f}x the stock step on CPU while staying within seed "
                "noise of HIRE's defaults on every task measured.")
    ratio, model, tasks = min(fits)
    elsewhere = "".join(f"; {d}: {c[SPEED_CONFIG[model]]['ratio']:.2f}x" for d, c in costs.items()
                        if d != "CPU" and SPEED_CONFIG[model] in c)
    return (f"Recommended cheap configuration: **{MODEL_NAMES[model]}** ({ratio:.2f}x the stock step on CPU on real "
            f"GLUE batches, goal {COST_GOAL:.2f}x{elsewhere}), within seed noise of HIRE's defaults on "
            f"{', '.join(tasks)} (tasks where both have at least two seeds).")


def speed_tables():
    """Train-step, padding and inference tables of every speed-*.json (one per device)."""
    out = []
    for path in sorted(RESULTS.glob("speed-*.json")):
        speed = json.loads(path.read_text())
        device = speed["machine"].get("gpu") or f"CPU, {speed['machine']['cpu_count']} cores"
        configs = [c for c in SPEED_CONFIG.values() if c != "stock"]
        out.append(f"**{device}** ({speed['dtype']}, torch {speed['machine']['torch']}, median of "
                   f"{speed['repeats']} alternating repeats; `{path.relative_to(REPO)}`, plot `{path.with_suffix('.png').name}`)\n")
        out.append("| size | workload | padding | stock s/step | " + " | ".join(configs)
                   + " | peak memory, HIRE / stock |")
        out.append("|---|---|---|---|" + "---|" * len(configs) + "---|")
        for size, loads in speed["train_step"].items():
            for name, load in loads.items():
                rows = load["configs"]
                cells = [f"{rows[c]['ratio']:.2f}x ({rows[c]['flop_ratio']:.2f}x)" if c in rows else "-" for c in configs]
                memory = rows["hire"].get("memory_ratio") if "hire" in rows else None
                out.append(f"| {size} | {name} | {load['padding_fraction']:.0%} | {rows['stock']['median_seconds']:.3f} | "
                           + " | ".join(cells) + f" | {f'{memory:.2f}x' if memory else '-'} |")
        out.append("\nEach cell: measured step time / stock (FLOP ratio of that configuration).\n")
        if speed.get("padding"):
            out.append("| size | task batches | padding | HIRE's GRUs as the model runs them | time / the same code over "
                       "the padding | time / naive nn.GRU over the padding | cuDNN packed / naive |")
            out.append("|---|---|---|---|---|---|---|")
            for size, tasks in speed["padding"].items():
                for task, p in tasks.items():
                    same = p.get("model_over_same_path_over_padding")  # not timed before this column existed
                    packed = p.get("cudnn_packed_over_naive")
                    out.append(f"| {size} | {task} | {p['padding_fraction']:.0%} | {p['model_gru_path']} | "
                               f"{f'{same:.2f}x' if same else '-'} | {p['model_over_naive']:.2f}x | "
                               f"{f'{packed:.2f}x' if packed else '-'} |")
            out.append("")
        if speed.get("inference"):
            out.append("| model | encoder | one at a time (pairs/s) | naive batches of 32 | grouped by length | speed-up |")
            out.append("|---|---|---|---|---|---|")
            for model, inf in speed["inference"].items():
                rate = inf["pairs_per_second"]
                out.append(f"| {model} | {inf.get('encoder', 'minilm')} | {rate['one_at_a_time']} | {rate['naive_batches']} | "
                           f"{rate['grouped']} | {inf['batched_speedup']:.2f}x |")
            out.append("")
    return "\n".join(out)


def glue_prep_table():
    path = RESULTS / "glue_prep_speed.json"
    if not path.exists():
        return "(no glue_prep benchmark yet: python benchmarks/bench_glue_prep.py)"
    r = json.loads(path.read_text())
    median = r["median_s"]
    return "\n".join([
        f"SST-2 train ({r['train_rows']} rows), {r['workers']} workers, median of {r['repeats']} alternating runs "
        f"(`{path.relative_to(REPO)}`):\n",
        "| pipeline | seconds |", "|---|---|",
        f"| glue_prep, whole task | {median['glue_prep']:.1f} |",
        f"| fairseq's recipe, whole task | {median['recipe']:.1f} |",
        f"| fairseq's recipe, train split only | {median['recipe_train_only']:.1f} |",
        f"\nglue_prep / recipe = {r['ratio_glue_prep_over_recipe']:.2f}; outputs identical to the recipe's: "
        f"{r['outputs_identical_to_recipe']}.",
    ])


def plot_layer_weights(summary, path):
    import logging

    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t, e in summary.items() if e["models"].get("hire", {}).get("layer_weights")]
    if not tasks:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(tasks)
    for i, task in enumerate(tasks):
        weights = summary[task]["models"]["hire"]["layer_weights"]
        ax.bar([layer + 1 + i * width for layer in range(len(weights))], weights, width, label=task)
    ax.axhline(1 / len(weights), color="grey", ls="--", lw=0.8, label="uniform")
    ax.set_xlabel("encoder layer")
    ax.set_ylabel("mean alpha on dev (best epoch)")
    ax.set_title("HIRE layer weights, all-MiniLM-L6-v2, mean over seeds")
    ax.set_xticks([layer + 1 + 0.4 - width / 2 for layer in range(len(weights))], range(1, len(weights) + 1))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def replace_section(text, name, body):
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"README has no <!-- {name}:start --> ... <!-- {name}:end --> section")
    return pattern.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), text)


def readme_sections(summary, costs):
    """The README's generated sections, by marker name."""
    return {"quality": quality_table(summary), "cost": cost_table(summary, costs), "speed": speed_tables(),
            "glue-prep": glue_prep_table()}


def generated_readme(text, sections):
    for name, body in sections.items():
        text = replace_section(text, name, body)
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--update-readme", action="store_true")
    action.add_argument("--check-readme", action="store_true",
                        help="only check that the README's sections match the results; exit 1 if not")
    args = parser.parse_args(argv)
    summary = summarize(load_runs())
    costs = cost_ratios()
    sections = readme_sections(summary, costs)
    readme = REPO / "README.md"
    if args.check_readme:
        stale = generated_readme(readme.read_text(), sections) != readme.read_text()
        print("README.md is out of date: run python benchmarks/report.py --update-readme" if stale
              else "README.md matches benchmarks/results")
        return int(stale)
    write_atomically(RESULTS / "quality_summary.json", json.dumps({"quality": summary, "cost": costs}, indent=1) + "\n")
    write_atomically(RESULTS / "quality_table.md", sections["quality"] + "\n" + sections["cost"] + "\n")
    plotted = plot_layer_weights(summary, RESULTS / "layer_weights.png")
    print(sections["quality"])
    print(sections["cost"])
    print(sections["speed"])
    if args.update_readme:
        write_atomically(readme, generated_readme(readme.read_text(), sections))
        print("README.md updated")
    if plotted:
        print(f"wrote {RESULTS / 'layer_weights.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
