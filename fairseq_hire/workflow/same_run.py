"""What a fine-tuning run was started with, kept in its save dir, so that it is resumed only as
itself. fairseq-train resumes SAVE_DIR/checkpoint_last.pt whatever it is asked: a run on 100
training rows restarted with --train-size 50 (or frozen, or another seed, head or budget) would
train the 100-row model on, while the folder's train_subset named 50. finetune.py records its
request in SAVE_DIR/finetune_request.json when it starts a run and refuses, before anything is
written, a command asking for another run there.

The request is finetune.py's options that shape the run (paths resolved, the task by its
registry name, the device the run trains on) and the flags it passes on to fairseq-train as fairseq's argparse reads them
(``--flag=value`` is ``--flag value``), less those that change what is logged, not what is
trained. A checkpoint no request describes (fairseq-train's own, an older finetune.py's) is
resumed unchecked and left unrecorded: what started it is not known.
"""
import json
from pathlib import Path

from glue_prep.atomic import write_atomically
from glue_prep.tasks import get_task

REQUEST_FILE = "finetune_request.json"
NOT_THE_RUN = ("save_dir", "dry_run", "layer_cache")  # finetune.py options a run may resume with other values of
# fairseq-train's logging flags, with how many values each takes: a run may resume with others
LOGGING_FLAGS = {"--log-interval": 1, "--log-format": 1, "--log-file": 1, "--tensorboard-logdir": 1,
                 "--wandb-project": 1, "--aim-repo": 1, "--aim-run-hash": 1, "--no-progress-bar": 0,
                 "--azureml-logging": 0}


def argparse_words(words) -> list:
    """Command words as fairseq's argparse reads them: --flag=value is --flag value."""
    return [part for word in words for part in (word.split("=", 1) if word.startswith("--") else [word])]


def training_flags(passthrough) -> list:
    """The passed-through fairseq-train flags as its argparse reads them, less the logging ones."""
    kept, skip = [], 0
    for word in argparse_words(passthrough):
        if skip:
            skip -= 1
        elif word in LOGGING_FLAGS:
            skip = LOGGING_FLAGS[word]
        else:
            kept.append(word)
    return kept


def run_request(args, passthrough) -> dict:
    """What a run trains (args.device already resolved to the device it trains on)."""
    request = {name: value for name, value in vars(args).items() if name not in NOT_THE_RUN}
    for name in ("data", "pretrained", "mnli_init") + (("task",) if args.task.endswith(".json") else ()):
        request[name] = request[name] and str(Path(request[name]).resolve())
    if not args.task.endswith(".json"):  # rte and RTE, sts_b and STS-B: one task
        request["task"] = get_task(args.task, args.data).name
    return {**request, "fairseq_train_flags": training_flags(passthrough)}


def resumable(save_dir: Path) -> bool:
    """Whether fairseq-train would resume a checkpoint there (checkpoint_last<--checkpoint-suffix>.pt)."""
    return any(save_dir.glob("checkpoint_last*.pt"))


def request_differences(args, passthrough) -> list:
    """How the request recorded in SAVE_DIR differs from this one ("name 'before', now 'after'"),
    for a checkpoint fairseq-train would resume; empty where there is none or no record."""
    save_dir = Path(args.save_dir)
    recorded = save_dir / REQUEST_FILE
    if not resumable(save_dir) or not recorded.exists():
        return []
    try:
        before = json.loads(recorded.read_text(encoding="utf-8"))
    except ValueError:
        before = None
    if not isinstance(before, dict):
        raise ValueError(f"{recorded}: not the JSON finetune.py writes; delete {save_dir} to start the run anew")
    now = run_request(args, passthrough)
    return [f"{name} {before.get(name)!r}, now {now.get(name)!r}"
            for name in dict.fromkeys([*before, *now]) if before.get(name) != now.get(name)]


def check_same_run(args, passthrough) -> None:
    """Refuse (ValueError, one line) to resume a SAVE_DIR checkpoint that another request started."""
    differ = request_differences(args, passthrough)
    if differ:
        raise ValueError(f"{args.save_dir} holds a run started with other options ({'; '.join(differ)}), whose "
                         "checkpoint_last.pt fairseq-train would resume: use another SAVE_DIR, or delete this one")


def record_request(args, passthrough) -> None:
    """Keep in SAVE_DIR/REQUEST_FILE what the run is started with. A finished run's rerun writes
    nothing; nor does a resume of a checkpoint that no request describes."""
    save_dir = Path(args.save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    request, recorded = json.dumps(run_request(args, passthrough), indent=1) + "\n", save_dir / REQUEST_FILE
    if recorded.exists() and recorded.read_text(encoding="utf-8") == request:
        return
    if not recorded.exists() and resumable(save_dir):
        return
    write_atomically(recorded, request)
