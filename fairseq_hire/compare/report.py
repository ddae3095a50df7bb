"""A comparison's report, from its run files only: report.json, report.md, scores.png and,
for heads with per-example layer weights, layer_weights.png.

Per head: every seed's score on the official metric, median, mean +- sd, a 95% interval of
the mean, and the failed-run rate (runs at or below the best constant prediction, and runs that
did not finish: ``failures``). Against
the reference head (the stock RoBERTa head): the difference of the means, its 95% paired
bootstrap interval over dev examples pooled across seeds, Welch's t and Mann-Whitney over
seeds, the smallest difference these seeds could have detected (80% power), and the verdict
in words (``statistics``). For heads whose layer weights depend on the input (HIRE's
extractor): the per-example distribution of each layer's weight and the mean
total-variation distance between an example's weights and the mean weights.
"""
import json
import math
import statistics as pystats
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from glue_prep.atomic import write_atomically
from .. import metrics
from ..modules.options import head_preset, ordered_heads
from .failures import load_failures
from .plotting import pyplot, save_figure
from .provenance import differing_inputs
from . import statistics as st
from .runs import recipe_key, recorded_recipe

# below this mean total-variation distance the weights barely depend on the input
STATIC_TV = 0.05
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
CODE_DIGITS = 7  # of a run's plugin commit, as git abbreviates it
SCORE_TOLERANCE = 1e-3  # points: a recorded score is rounded to 4 decimals (metrics.METRIC_DIGITS)


class ReportError(ValueError):
    """The run files cannot be compared (different recipes, tasks or dev sets)."""


def load_runs(runs_dir: Path) -> List[Dict]:
    runs = []
    for path in sorted(Path(runs_dir).glob("*.json")):
        try:
            run = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise ReportError(f"{path}: not a run file: {error}") from None
        run["file"] = str(path)
        run["recipe"] = recorded_recipe(run)
        runs.append(run)
    return runs


def check_comparable(runs: List[Dict]) -> None:
    """Every run: the same task, encoder, data and training flags, and the same dev targets;
    every run that states its budget (`schedule`, the fairseq-train flags it trained with): the
    same budget, which the flags alone do not fix once --train-size lengthens it, among the runs
    of one seed where they trained on a subset (--train-size: the budget follows the subset's
    batches, so seeds, which draw other rows, may differ by an update or an epoch); the runs of
    one seed trained on a subset: the same rows."""
    first = runs[0]
    budget_of, rows_of_seed = {}, {}
    first_key = recipe_key(first["recipe"])
    # the first run that records what it was trained from (older run files do not)
    digested = next((run for run in runs if isinstance(run.get("inputs_sha256"), dict)), first)
    for run in runs[1:]:
        if recipe_key(run["recipe"]) != first_key:
            raise ReportError(f"{run['file']} was trained with {run['recipe']}, {first['file']} with "
                              f"{first['recipe']}: heads must share one recipe")
        if run["targets"] != first["targets"]:
            raise ReportError(f"{run['file']} and {first['file']} were scored on different dev sets")
        if differing_inputs(run.get("inputs_sha256"), digested.get("inputs_sha256")):
            raise ReportError(f"{run['file']} and {digested['file']} were trained from other files at the same paths "
                              "(the pretrained checkpoint's or the training data's sha256 differ): heads must share them")
    for run in [run for run in runs if run.get("schedule")]:
        budgeted = budget_of.setdefault(run["seed"] if run.get("train_subset") else None, run)
        if run["schedule"] != budgeted["schedule"]:
            raise ReportError(f"{run['file']} trained for {run['schedule']}, {budgeted['file']} for "
                              f"{budgeted['schedule']}: heads must share one budget"
                              + (f" (the heads of seed {run['seed']})" if run.get("train_subset") else ""))
    for run in runs:
        rows = (run.get("train_subset") or {}).get("rows_sha256")
        same_seed = rows_of_seed.setdefault(run["seed"], run)
        if rows != (same_seed.get("train_subset") or {}).get("rows_sha256"):
            raise ReportError(f"{run['file']} and {same_seed['file']} (seed {run['seed']}) were trained on "
                              "different training rows: the heads of a seed must share them")


def check_runs(runs: List[Dict], metric, targets: np.ndarray, metric_name: str) -> None:
    """Each head and seed once (a file copied under another name would count a seed twice), and
    each run's recorded score that of its predictions on the dev targets (within the rounding of
    METRIC_DIGITS): a run file changed by hand or damaged is refused, not averaged."""
    seen = {}
    for run in runs:
        other = seen.setdefault((run["head"], run["seed"]), run)
        if other is not run:
            raise ReportError(f"{run['file']} and {other['file']} are both {run['head']} seed {run['seed']}: "
                              "a run counts once; remove one of them")
        try:
            predictions = np.asarray(run["predictions"], targets.dtype)
        except (ValueError, TypeError) as error:
            raise ReportError(f"{run['file']}: its predictions are not {targets.dtype} numbers ({error})") from None
        if predictions.shape != targets.shape:
            raise ReportError(f"{run['file']}: {predictions.size} predictions for {targets.size} dev examples")
        recorded, scored = run["metrics"].get(metric_name), metrics.rounded(metric(predictions, targets))
        # a collapsed regression run (one value for every example) scores NaN, recorded so: it failed
        if not isinstance(recorded, (int, float)) or not (
                abs(recorded - scored) <= SCORE_TOLERANCE or (math.isnan(recorded) and math.isnan(scored))):
            raise ReportError(f"{run['file']}: records {metric_name} {recorded!r}, but its predictions score "
                              f"{scored} on the dev targets; expected the two to agree (a damaged or edited file)")


def description(head: str) -> str:
    """The head's one line, or none for a name this version does not know (an older run's)."""
    try:
        return head_preset(head).description
    except ValueError:
        return ""


def summarise(runs: List[Dict], reference: str = "stock", unfinished: Sequence[Dict] = ()) -> Dict:
    """`unfinished`: records of runs of this recipe that did not finish (``failures``); they, and
    runs that scored NaN (a regression run predicting one value for every example), count as
    failed runs of their head and are left out of every other figure."""
    if not runs:
        raise ReportError("no finished runs to report on")
    check_comparable(runs)
    first = runs[0]
    metric_name = first["metric"]
    regression = first["regression"]
    num_classes = 1 if regression else len(first["label_names"])
    metric = metrics.metric_function(metric_name, regression, first["positive_class"])
    targets = np.asarray(first["targets"], float if regression else int)
    check_runs(runs, metric, targets, metric_name)
    collapsed = [run for run in runs if math.isnan(run["metrics"][metric_name])]
    runs = [run for run in runs if run not in collapsed]
    unfinished = [*({**u, "why": f"{u['stage']} exited with {u['exit_code']} ({u['reason'] or 'log: ' + u['log']})"}
                    for u in unfinished),
                  *({"head": run["head"], "seed": run["seed"], "log": run["file"],
                     "why": f"its {metric_name} is NaN (one prediction for every example)"} for run in collapsed)]
    if not runs:
        raise ReportError("no run with a score to report on: " + "; ".join(
            f"{u['head']} seed {u['seed']}: {u['why']}" for u in unfinished))
    constant = metrics.constant_score(targets, metric_name, regression, first["positive_class"], num_classes)
    by_head: Dict[str, List[Dict]] = {}
    for run in sorted(runs, key=lambda r: r["seed"]):
        by_head.setdefault(run["head"], []).append(run)
    # a head whose every run failed has a row too: n 0, every run failed
    order = ordered_heads([*by_head, *(u["head"] for u in unfinished)])

    def predictions(head):
        return np.asarray([r["predictions"] for r in by_head[head]], float if regression else int)

    heads = {}
    for head in order:
        scored = by_head.get(head, [])
        scores = [r["metrics"][metric_name] for r in scored]
        # the runs' scores are rounded to METRIC_DIGITS: so is the constant they are held against
        lost = [u["seed"] for u in unfinished if u["head"] == head]
        failed = sum(score <= metrics.rounded(constant) for score in scores) + len(lost)
        heads[head] = {
            "description": description(head),
            "seeds": [r["seed"] for r in scored], "scores": scores, "n": len(scores),
            "median": pystats.median(scores) if scores else None, "mean": pystats.fmean(scores) if scores else None,
            "sd": pystats.stdev(scores) if len(scores) > 1 else None,
            "mean_interval": st.mean_interval(scores),
            "failed": failed, "failed_rate": failed / (len(scores) + len(lost)), "unfinished_seeds": lost,
            "train_minutes": pystats.fmean(r["train_seconds"] for r in scored) / 60 if scored else None,
            "layer_weights": layer_weight_summary(scored) if scored else None,
        }
    for head in by_head:
        if reference in by_head and head != reference:
            heads[head]["vs_reference"] = st.compare_heads(
                heads[head]["scores"], heads[reference]["scores"], predictions(head), predictions(reference),
                targets, metric,
            ).as_dict()
    return {
        "task": first["task"], "metric": metric_name, "dev_examples": len(targets),
        "constant_score": constant, "reference": reference, "recipe": first["recipe"],
        "heads": heads, "unfinished": [{key: u[key] for key in ("head", "seed", "why", "log")} for u in unfinished],
        "trained_by": trained_by(runs),
    }


def trained_by(runs: List[Dict]) -> Dict[str, Dict[str, int]]:
    """How many runs each plugin commit and torch version trained. Not a condition of the
    comparison (a plugin fix between seeds is allowed), so shown, for the reader to judge."""
    def count(values):
        return dict(Counter("unrecorded" if v is None else v for v in values).most_common())

    return {"code": count(r.get("code_version") and r["code_version"][:CODE_DIGITS] + r["code_version"][40:]
                          for r in runs),
            "torch": count(r.get("torch") for r in runs)}


def layer_weight_summary(runs: List[Dict]) -> Optional[Dict]:
    """Per-example layer weights of a head whose weights depend on the input; None for heads
    with fixed weights (every example alike)."""
    if any(r.get("layer_weights") is None for r in runs):
        return None
    per_run = [np.asarray(r["layer_weights"], float) for r in runs]
    tv = [float(st.total_variation_from_mean(weights).mean()) for weights in per_run]
    if max(tv) < 1e-6:
        return None  # global weights: scalar mix, or the fixed shares of mean / concat / stock
    pooled = np.concatenate(per_run)
    first = runs[0]["first_scored_layer"]
    return {
        "layers": list(range(first, first + pooled.shape[1])),
        "mean": pooled.mean(axis=0).tolist(),
        "quantiles": {str(q): np.quantile(pooled, q, axis=0).tolist() for q in QUANTILES},
        "tv_from_mean": tv, "tv_from_mean_mean": pystats.fmean(tv),
        "dynamic": pystats.fmean(tv) >= STATIC_TV,
    }


def number(value, digits=1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(summary: Dict) -> str:
    metric, ref = summary["metric"], summary["reference"]
    lines = [
        f"**{summary['task']}** ({summary['dev_examples']} dev examples; {metric}; best constant "
        f"prediction {summary['constant_score']:.1f}; reference head: {ref})",
        "",
        f"| head | seeds | median | mean ± sd | 95% CI of mean | failed runs | vs {ref}: difference "
        "[95% bootstrap CI] | Welch p | Mann-Whitney p | detectable (80% power) | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for head, data in summary["heads"].items():
        ci = data["mean_interval"]
        cells = [head, str(data["n"]), number(data["median"]),
                 f"{number(data['mean'])} ± {number(data['sd'])}" if data["n"] else "-",
                 f"{number(ci[0])} to {number(ci[1])}" if ci else "-",
                 f"{data['failed']} ({100 * data['failed_rate']:.0f}%)"]
        versus = data.get("vs_reference")
        if versus:
            cells += [f"{versus['difference']:+.2f} [{versus['bootstrap_low']:+.2f}, {versus['bootstrap_high']:+.2f}]",
                      number(versus["welch_p"], 3), number(versus["mannwhitney_p"], 3),
                      number(versus["detectable"], 2), versus["verdict"]]
        else:
            cells += ["(reference)" if head == ref else "-", "", "", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    if summary.get("unfinished"):
        lines += ["", "Runs without a score (counted as failed runs, left out of every other figure): "
                  + "; ".join(f"{u['head']} seed {u['seed']}, {u['why']}" for u in summary["unfinished"]) + "."]
    versions = summary.get("trained_by")
    if versions:
        lines += ["", "Trained by plugin code " + "; torch ".join(
            ", ".join(f"{version} ({runs} run{'s' if runs > 1 else ''})" for version, runs in versions[what].items())
            for what in ("code", "torch")) + "."]
    for head, data in summary["heads"].items():
        weights = data["layer_weights"]
        if weights:
            lines += ["", layer_weight_sentence(summary["task"], head, weights)]
    return "\n".join(lines) + "\n"


def beside_threshold(distance: float, threshold: float = STATIC_TV) -> str:
    """The distance to four decimals, or as many more as it takes not to print as the threshold
    itself (0.049996 must not read "0.0500 < 0.05")."""
    digits = 4
    while distance != threshold and float(f"{distance:.{digits}f}") == threshold and digits < 17:
        digits += 1
    return f"{distance:.{digits}f}"


def layer_weight_sentence(task: str, head: str, weights: Dict) -> str:
    tv = beside_threshold(weights["tv_from_mean_mean"])
    means = ", ".join(f"{layer}: {w:.2f}" for layer, w in zip(weights["layers"], weights["mean"]))
    if weights["dynamic"]:
        what = (f"the weights depend on the input (mean total-variation distance from the mean "
                f"weights {tv}, threshold {STATIC_TV})")
    else:
        what = (f"the weights barely depend on the input (mean total-variation distance from the "
                f"mean weights {tv} < {STATIC_TV}): the dynamic extractor is doing what a "
                "global scalar mix does")
    return f"{task}, {head}: mean layer weights ({means}); {what}."


def plot_scores(summary: Dict, path: Path) -> None:
    plt = pyplot()
    heads = list(summary["heads"])
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(heads) + 2), 4))
    for i, head in enumerate(heads):
        data = summary["heads"][head]
        jitter = np.linspace(-0.15, 0.15, len(data["scores"])) if len(data["scores"]) > 1 else [0.0] * data["n"]
        ax.scatter(i + np.asarray(jitter), data["scores"], s=14, alpha=0.7, color="tab:blue")
        if data["mean_interval"]:
            low, high = data["mean_interval"]
            ax.errorbar(i + 0.3, data["mean"], yerr=[[data["mean"] - low], [high - data["mean"]]],
                        fmt="o", color="black", capsize=4)
    ax.axhline(summary["constant_score"], color="grey", linestyle=":", label="best constant prediction")
    ax.set_xticks(range(len(heads)), heads, rotation=30, ha="right")
    ax.set_ylabel(summary["metric"])
    ax.set_title(f"{summary['task']}: dev score of every seed; mean and its 95% CI")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def plot_layer_weights(summary: Dict, path: Path) -> bool:
    plt = pyplot()
    dynamic = {h: d["layer_weights"] for h, d in summary["heads"].items() if d["layer_weights"]}
    if not dynamic:
        return False
    fig, axes = plt.subplots(1, len(dynamic), figsize=(4.5 * len(dynamic), 3.5), squeeze=False)
    for ax, (head, weights) in zip(axes[0], dynamic.items()):
        q = weights["quantiles"]
        layers = weights["layers"]
        ax.fill_between(layers, q["0.05"], q["0.95"], alpha=0.2, label="5-95% of examples")
        ax.fill_between(layers, q["0.25"], q["0.75"], alpha=0.4, label="25-75%")
        ax.plot(layers, q["0.5"], marker="o", label="median")
        ax.set_xticks(layers)
        ax.set_xlabel("layer")
        ax.set_ylabel("alpha")
        ax.set_title(f"{summary['task']}, {head}: TV from mean {weights['tv_from_mean_mean']:.3f}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    return True


def load_unfinished(runs_dir: Path, runs: List[Dict]) -> List[Dict]:
    """The records of the runs of these runs' recipe that did not finish (``failures``)."""
    return load_failures(runs_dir, recipe_key, recipe_key(runs[0]["recipe"])) if runs else []


def summarise_folder(out: Path, reference: str = "stock") -> Dict:
    """The summary of a comparison folder's run files (OUT/runs), as they are now."""
    runs = load_runs(Path(out) / "runs")
    return summarise(runs, reference, load_unfinished(Path(out) / "runs", runs))


def write_report(out: Path, reference: str = "stock") -> Dict:
    return write_summary(summarise_folder(out, reference), Path(out))


def report_texts(summary: Dict) -> Dict[str, str]:
    """file name -> text of a summary's report files (the plots aside)."""
    return {"report.json": json.dumps(summary, indent=1) + "\n", "report.md": markdown(summary)}


def write_summary(summary: Dict, out: Path) -> Dict:
    """A summary's report.json, report.md and plots, in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in report_texts(summary).items():
        write_atomically(out / name, text)
    plot_scores(summary, out / "scores.png")
    plot_layer_weights(summary, out / "layer_weights.png")
    return summary
