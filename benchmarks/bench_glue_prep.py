#!/usr/bin/env python
"""glue_prep vs fairseq's reference GLUE pipeline on SST-2 (67349 train rows), same run.

    .venv/bin/python benchmarks/bench_glue_prep.py [--workers N] [--repeats 3] [--data DIR]

Two references, each timed as wall clock of fresh processes, alternating with glue_prep
(order flipped every repeat), after one untimed warm-up of each:

* ``recipe``: fairseq's examples/roberta/preprocess_GLUE_tasks.sh for SST-2 (the installed copy,
  run by benchmarks/fairseq_recipe.py.run_recipe: wget replaced by a local copy, --workers N instead of
  60): train, dev and test through multiprocessing_bpe_encoder.py --workers N and
  fairseq-preprocess --only-source --srcdict --workers N, and the labels. The same job
  glue_prep does; both outputs are compared byte for byte.
* ``recipe_train_only``: only the train split's share of that recipe (cut, encoder,
  fairseq-preprocess for input0 and for the labels): a lower bound for the reference.

glue_prep runs as ``bash glue_prep/prepare_glue.sh DATA SST-2 OUT --workers N`` (whole task:
train, dev, test, labels, metadata). Writes benchmarks/results/glue_prep_speed.json.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_SST2 = REPO.parent / "shared" / "glue_data" / "SST-2"
SHIPPED_SST2 = REPO / "glue_prep" / "data" / "SST-2"
BPE = REPO / "fairseq_hire" / "assets" / "gpt2_bpe"
RESULT = REPO / "benchmarks" / "results" / "glue_prep_speed.json"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run_ours(data: Path, out: Path, workers: int):
    if out.exists():
        shutil.rmtree(out)
    subprocess.run(["bash", str(REPO / "glue_prep" / "prepare_glue.sh"), str(data.parent), "SST-2",
                    str(out), "--workers", str(workers), "--no-progress"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_recipe(data: Path, out: Path, workers: int):
    from fairseq_recipe import run_recipe as recipe

    if out.exists():
        shutil.rmtree(out)
    recipe(data.parent, "SST-2", out, BPE, workers=workers)


def run_recipe_train_only(data: Path, out: Path, workers: int):
    """The recipe's commands for the train split only (same programs, same options)."""
    from fairseq_recipe import default_preprocess_cmd, fairseq_examples_dir

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    p = out / "processed"
    p.mkdir()
    sh = f"""set -e
tail -n +2 "{data}/train.tsv" > "{p}/train.tsv"
cut -f1 "{p}/train.tsv" > "{p}/train.raw.input0"
cut -f2 "{p}/train.tsv" > "{p}/train.label"
"{sys.executable}" "{fairseq_examples_dir()}/multiprocessing_bpe_encoder.py" --encoder-json "{BPE}/encoder.json" --vocab-bpe "{BPE}/vocab.bpe" --inputs "{p}/train.raw.input0" --outputs "{p}/train.input0" --workers {workers} --keep-empty
"{default_preprocess_cmd()}" --only-source --trainpref "{p}/train.input0" --destdir "{out}/SST-2-bin/input0" --workers {workers} --srcdict "{BPE}/dict.txt"
"{default_preprocess_cmd()}" --only-source --trainpref "{p}/train.label" --destdir "{out}/SST-2-bin/label" --workers {workers}
"""
    subprocess.run(["bash", "-c", sh], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env=dict(os.environ, LOGLEVEL="WARNING"))


def same_output(ours: Path, ref: Path) -> bool:
    files = [p for p in ref.rglob("*") if p.is_file() and p.name != "preprocess.log"]
    return bool(files) and all((ours / f.relative_to(ref)).read_bytes() == f.read_bytes() for f in files)


def main():
    sys.path.insert(0, str(REPO))
    from glue_prep.binarize import available_cores

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=available_cores())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", type=Path, default=None, help="an SST-2 folder (default ../shared/glue_data/SST-2)")
    ap.add_argument("--output", type=Path, default=RESULT)
    args = ap.parse_args()
    if args.repeats < 3:
        ap.error("--repeats must be at least 3")

    data = args.data
    note = None
    if data is None:
        if (SHARED_SST2 / "train.tsv").exists():
            data = SHARED_SST2
        else:
            data = SHIPPED_SST2
            note = (f"{SHARED_SST2} not found: using the shipped 20000-row sample of SST-2 train "
                    "instead of the full 67349 rows")
            print(f"NOTE: {note}", file=sys.stderr)
    train_rows = sum(1 for l in open(data / "train.tsv", "rb") if l.strip()) - 1
    print(f"SST-2 from {data}: {train_rows} train rows; workers {args.workers}; "
          f"{args.repeats} repeats, alternating", flush=True)

    load_before = _loadavg()
    work = Path(tempfile.mkdtemp(prefix="bench_glue_prep_"))
    runners = {
        "glue_prep": lambda: run_ours(data, work / "ours", args.workers),
        "recipe": lambda: run_recipe(data, work / "recipe", args.workers),
        "recipe_train_only": lambda: run_recipe_train_only(data, work / "train_only", args.workers),
    }
    times = {k: [] for k in runners}
    try:
        for name, fn in runners.items():  # warm-up: page cache, .pyc files
            fn()
        identical = same_output(work / "ours" / "SST-2-bin", work / "recipe" / "SST-2-bin")
        identical_train = same_output(work / "ours" / "SST-2-bin", work / "train_only" / "SST-2-bin")
        print(f"outputs byte-identical to the recipe's: {identical} (whole task), "
              f"{identical_train} (train split)", flush=True)
        order = list(runners)
        for r in range(args.repeats):
            seq = order if r % 2 == 0 else order[::-1]
            for name in seq:
                t = timed(runners[name])
                times[name].append(t)
                print(f"  repeat {r + 1}: {name:18s} {t:7.2f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["glue_prep"] / med["recipe"]
    ratio_train = med["glue_prep"] / med["recipe_train_only"]
    result = {
        "benchmark": "glue_prep vs fairseq examples/roberta/preprocess_GLUE_tasks.sh, SST-2",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "data": str(data), "train_rows": train_rows, "note": note,
        "machine": {
            "cpu": cpu_model(), "cores": os.cpu_count(), "usable_cores": available_cores(),
            "platform": platform.platform(), "python": platform.python_version(),
            "load_average_1_5_15min": {"before": load_before, "after": _loadavg()},
        },
        "versions": _versions(),
        "workers": args.workers, "repeats": args.repeats,
        "times_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "median_s": {k: round(v, 3) for k, v in med.items()},
        "ratio_glue_prep_over_recipe": round(ratio, 3),
        "speedup_vs_recipe": round(1 / ratio, 2),
        "ratio_glue_prep_over_recipe_train_only": round(ratio_train, 3),
        "outputs_identical_to_recipe": identical,
        "train_split_identical_to_recipe_train_only": identical_train,
        "glue_prep_not_slower": ratio <= 1.0,
        "what": {
            "glue_prep": "bash glue_prep/prepare_glue.sh: whole task (train, dev, test, labels, metadata)",
            "recipe": "fairseq's preprocess_GLUE_tasks.sh for SST-2 (whole task), local BPE files, --workers N",
            "recipe_train_only": "the recipe's train-split commands only (cut, encoder, fairseq-preprocess x2)",
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"median: glue_prep {med['glue_prep']:.2f} s, recipe {med['recipe']:.2f} s, "
          f"recipe train only {med['recipe_train_only']:.2f} s")
    print(f"ratio glue_prep / recipe = {ratio:.3f} ({1 / ratio:.2f}x faster); "
          f"glue_prep (whole task) / recipe (train only) = {ratio_train:.3f}")
    print(f"wrote {args.output}")
    return 0 if ratio <= 1.0 and identical else 1


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _versions():
    import logging

    logging.getLogger("fairseq").setLevel(logging.WARNING)
    out = {}
    for mod in ("fairseq", "torch", "numpy"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception as e:  # noqa: BLE001
            out[mod] = f"unavailable ({type(e).__name__})"
    try:
        out["git_commit"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"],
                                           capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    return out


if __name__ == "__main__":
    sys.exit(main())
