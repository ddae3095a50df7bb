"""A comparison run whose trainer and scorer are stand-ins, to kill comparisons cheaply.

    python fake_run.py compare OUT SEED...   a comparison of head stock, printing each run's outcome
    python fake_run.py finetune SAVE_DIR     stands for finetune.py: starts `train` as a subprocess
    python fake_run.py train SAVE_DIR        stands for fairseq-train
    python fake_run.py evaluate ... --out F  stands for the scorer

The trainer appends "start PID" and, after $FAKE_TRAIN_SECONDS, "end PID" to
$FAKE_TRAINERS/events; it appends "overlap PID OTHER" if another trainer of the run was alive
when it started (each live trainer has a file named by its pid in $FAKE_TRAINERS).
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a zombie holds no files)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def log_event(trainers: Path, text: str) -> None:
    with open(trainers / "events", "a") as events:
        events.write(text + "\n")


def train(save_dir: Path) -> int:
    trainers, me = Path(os.environ["FAKE_TRAINERS"]), os.getpid()
    (trainers / str(me)).touch()
    others = [int(p.name) for p in trainers.iterdir() if p.name.isdigit() and int(p.name) != me]
    log_event(trainers, f"start {me}")
    for other in others:
        if alive(other):
            log_event(trainers, f"overlap {me} {other}")
    time.sleep(float(os.environ["FAKE_TRAIN_SECONDS"]))
    save_dir.mkdir(parents=True, exist_ok=True)
    (save_dir / "checkpoint_last.pt").write_text("trained\n")
    log_event(trainers, f"end {me}")
    (trainers / str(me)).unlink()
    return 0


def fake_comparison(out: Path):
    """A comparison of one task whose runs train and score with this file's stand-ins. With
    FAKE_DEAF_WATCHDOG set, each run's watchdog does nothing: as one that Ctrl-C reached
    before it had set its handlers."""
    from fairseq_hire.compare import runs
    from fairseq_hire.compare.runs import Comparison

    if os.environ.get("FAKE_DEAF_WATCHDOG"):
        runs.WATCHDOG = [sys.executable, "-c", "import sys; sys.stdin.read()"]

    class FakeComparison(Comparison):
        training_device = "cpu"
        metric = "accuracy"

        def finetune_command(self, head, seed, save_dir):
            return [sys.executable, str(HERE), "finetune", str(save_dir)]

        def evaluate_command(self, save_dir, scores_file):
            return [sys.executable, str(HERE), "evaluate", "--out", str(scores_file)]

    return FakeComparison("RTE", out / "data", out / "model.pt", out)


def compare(out: Path, seeds) -> int:
    from fairseq_hire.compare.runs import Runner, run_all

    runner = Runner(fake_comparison(out))
    for outcome in run_all({"": runner}, [("", "stock", seed) for seed in seeds], jobs=1):
        print(f"outcome {outcome.status}: {outcome.message}", flush=True)
    return 0


def main() -> int:
    mode, argument = sys.argv[1], Path(sys.argv[-1])
    if mode == "compare":
        return compare(Path(sys.argv[2]), [int(seed) for seed in sys.argv[3:]])
    if mode == "finetune":  # like finetune.py: fairseq-train in a subprocess that closes every other descriptor
        return subprocess.call([sys.executable, str(HERE), "train", str(argument)])
    if mode == "train":
        return train(argument)
    scores = {"metrics": {"accuracy": 50.0}, "split": "valid", "examples": 2, "source": "fake",
              "per_example": {"predictions": [0, 1], "targets": [1, 1]}}
    argument.write_text(json.dumps(scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
