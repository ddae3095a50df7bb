"""The reference tables of the docs that are not the comparison study's: the speed benchmark's
(benchmarks/speed.py), glue_prep's (benchmarks/bench_glue_prep.py), every --hire-* option and
every head of the comparison (fairseq_hire/modules/options.py). benchmarks/report.py puts them
into the pages that hold them."""
import json
from pathlib import Path

from fairseq_hire.modules.options import HEADS

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def speed_tables():
    """Train-step, padding and inference tables of every speed-*.json (one per device or run)."""
    out = []
    for path in sorted(RESULTS.glob("speed-*.json")):
        speed = json.loads(path.read_text())
        device = speed["machine"].get("gpu") or f"CPU, {speed['machine']['cpu_count']} cores"
        configs = sorted({c for loads in speed["train_step"].values() for load in loads.values()
                          for c in load["configs"] if c != "stock"},
                         key=lambda c: (list(HEADS).index(c) if c in HEADS else len(HEADS), c))
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


def options_table() -> str:
    """Every --hire-* option, from its one definition (modules/options.HireOptions)."""
    import dataclasses

    from fairseq_hire.modules.options import HireOptions, flag

    lines = ["| flag | default | meaning |", "|---|---|---|"]
    for option in dataclasses.fields(HireOptions):
        default = option.default
        shown = ("on" if default else "off") if option.type is bool else default
        choices = option.metadata.get("choices")
        name = flag(option.name) + (f" {{{','.join(choices)}}}" if choices else
                                    f" {option.metadata['metavar']}" if option.metadata.get("metavar") else "")
        if option.type is bool and default:
            name += f" / --no-{flag(option.name)[2:]}"
        lines.append(f"| `{name}` | {shown} | {option.metadata['help']} |")
    return "\n".join(lines)


def heads_table() -> str:
    """The heads HIRE is compared with, from modules/options.HEADS."""
    lines = ["| head | options | what it is |", "|---|---|---|"]
    for name, preset in HEADS.items():
        lines.append(f"| `{name}` | `{' '.join(preset.options.flags()) or '(the defaults)'}` | {preset.description} |")
    return "\n".join(lines)
