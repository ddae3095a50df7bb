"""Fine-tune RoBERTa with a HIRE head (or any head of the comparison, or the stock RoBERTa
architecture) on one task, with fairseq's RoBERTa GLUE recipe. ``scripts/finetune.py`` is
this module's command line.

    python scripts/finetune.py TASK DATA_BIN PRETRAINED_MODEL_PT SAVE_DIR [options] [fairseq-train flags]

Builds and runs fairseq-train with the recipe for TASK (``fairseq_hire/recipes.py``). The
encoder's dimensions come from the checkpoint itself, so roberta.base, roberta.large and
converted checkpoints all work unchanged. Any flag this script does not know goes to
fairseq-train as is (e.g. --hire-gru-dim 96, --log-interval 10).

The run is restart-safe: the pretrained weights are loaded with --finetune-from-model, which
fairseq uses only when SAVE_DIR has no checkpoint_last.pt; run the same command again after
a crash and it resumes from SAVE_DIR/checkpoint_last.pt.
"""
import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

from .checkpoint_args import architecture_flags
from .modules.options import HEADS
from .recipes import ARCHITECTURES, recipe

USER_DIR = Path(__file__).resolve().parent


def count_train_examples(data_bin: Path) -> int:
    from fairseq.data import data_utils

    dataset = data_utils.load_indexed_dataset(str(data_bin / "input0" / "train"), None)
    if dataset is None:
        raise FileNotFoundError(f"no binarised training split at {data_bin / 'input0' / 'train'}")
    return len(dataset)


def gpu_available() -> bool:
    import torch

    return torch.cuda.is_available()


def build_command(args, passthrough) -> list:
    task_recipe = recipe(args.task)
    model = "baseline" if args.baseline else "hire"
    source = args.mnli_init or args.pretrained
    flags = architecture_flags(args.pretrained)
    size = args.size or ("large" if int(flags[flags.index("--encoder-layers") + 1]) >= 24 else "base")
    schedule = {"lr": args.lr}
    if args.epochs is not None:
        schedule.update(epochs=args.epochs, train_examples=count_train_examples(Path(args.data)))
    command = [
        sys.executable, "-m", "fairseq_cli.train", str(args.data),
        "--user-dir", str(USER_DIR), "--arch", ARCHITECTURES[(model, size)], *flags,
        *(HEADS[args.head].options.flags() if args.head else []),
        "--finetune-from-model", str(source), "--save-dir", str(args.save_dir),
        "--seed", str(args.seed), *task_recipe.flags(**schedule),
    ]
    use_gpu = args.device == "gpu" or (args.device == "auto" and gpu_available())
    command += ["--fp16", "--fp16-init-scale", "4", "--threshold-loss-scale", "1",
                "--fp16-scale-window", "128"] if use_gpu else ["--cpu"]
    return command + passthrough


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="finetune.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", help="GLUE task: CoLA, SST-2, MRPC, QQP, STS-B, MNLI, QNLI, RTE, WNLI")
    parser.add_argument("data", help="the task's binaries from glue_prep (<TASK>-bin)")
    parser.add_argument("pretrained", help="pretrained RoBERTa model.pt (roberta.base, roberta.large or converted)")
    parser.add_argument("save_dir")
    head = parser.add_mutually_exclusive_group()
    head.add_argument("--baseline", action="store_true",
                      help="fairseq's stock roberta architecture and head, same recipe")
    head.add_argument("--head", choices=HEADS, metavar="NAME",
                      help="a head HIRE is compared with, as roberta_hire options: "
                           + "; ".join(f"{name}: {preset.description}" for name, preset in HEADS.items()))
    parser.add_argument("--size", choices=["base", "large"], help="architecture name; default from the checkpoint")
    parser.add_argument("--mnli-init", metavar="CHECKPOINT",
                        help="start from an MNLI fine-tuned checkpoint (RTE, MRPC, STS-B in the RoBERTa paper)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", type=int,
                        help="shorter budget: N epochs, warmup 6%%, linear decay to 0 at the end")
    parser.add_argument("--lr", type=float, help="learning rate instead of the recipe's (e.g. for a shorter budget)")
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto",
                        help="gpu uses fp16 as fairseq's recipe does; cpu adds --cpu")
    parser.add_argument("--dry-run", action="store_true", help="print the fairseq-train command only")
    return parser


def main(argv=None) -> int:
    args, passthrough = build_parser().parse_known_args(argv)
    command = build_command(args, passthrough)
    print(shlex.join(command), flush=True)
    if args.dry_run:
        return 0
    Path(args.save_dir).mkdir(parents=True, exist_ok=True)
    return subprocess.call(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})


if __name__ == "__main__":
    sys.exit(main())
