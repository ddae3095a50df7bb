"""Fine-tune RoBERTa with a HIRE head (or any head of the comparison, or the stock RoBERTa
architecture) on one task, with fairseq's RoBERTa GLUE recipe. ``scripts/finetune.py`` is
this module's command line.

    python scripts/finetune.py TASK DATA_BIN PRETRAINED_MODEL_PT SAVE_DIR [options] [fairseq-train flags]

Builds and runs fairseq-train with the recipe for TASK (``fairseq_hire/workflow/recipes.py``). The
encoder's dimensions come from the checkpoint itself, so roberta.base, roberta.large and
converted checkpoints all work unchanged. Any flag this script does not know goes to
fairseq-train as is (e.g. --hire-gru-dim 96, --log-interval 10).

For the regime study (issue 28): ``--train-size N`` trains on a seeded sample of N training rows,
stratified by label for classification, simple random for regression (``glue_prep.subset``; the
rows follow --seed, so every head of a seed gets the same ones) for a budget in epochs over
those rows, lengthened to at least MIN_SUBSET_UPDATES updates; ``--freeze-encoder`` trains the
head alone (``roberta_hire --freeze-encoder``), and ``--layer-cache DIR``, refused without it,
reads the frozen encoder's layer outputs from a cache.

The run is restart-safe: the pretrained weights are loaded with --finetune-from-model, which
fairseq uses only when SAVE_DIR has no checkpoint_last.pt; run the same command again after
a crash and it resumes from SAVE_DIR/checkpoint_last.pt. Run again once finished, it ends at
once and changes nothing (fairseq_hire/checkpoints/saving.py). A command asking for another run
in a save dir that holds one is refused before anything is written (``same_run.py``).
"""
import argparse
import math
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from glue_prep.metadata import metadata_file, read_metadata
from glue_prep.binaries import read_binaries
from glue_prep.subset import make_train_subset

from ..checkpoints.architecture import flag_number, flags_of, layernorm_eps, model_config, switches_of
from ..checkpoints.errors import DataMismatchError
from ..checkpoints.fitting import check_same_encoder, kept_layers
from ..checkpoints.loading import not_a_file
from ..models.layer_cache import check_layer_cache_folder
from ..models.layernorm_eps import FAIRSEQ_LAYERNORM_EPS, FLAG
from ..modules.options import HEADS, head_name, head_options
from .recipes import ARCHITECTURES, DERIVED_EPOCHS, FP16_FLAGS, recipe
from .epoch_batches import training_batches
from .passthrough import UpdateShape, check_encoder_flags, check_precision, check_save_dir, update_shape
from .same_run import REQUEST_FILE, argparse_words, check_same_run, record_request, resumable

USER_DIR = Path(__file__).resolve().parents[1]  # fairseq_hire/, the --user-dir
SUBSET_FOLDER = "train_subset"
MIN_SUBSET_UPDATES = 250


def count_train_examples(data_bin: Path) -> int:
    split = read_binaries(data_bin, "train", regression=not (data_bin / "label" / "dict.txt").is_file())
    if split is None:
        raise FileNotFoundError(f"no binarised training split at {data_bin / 'input0' / 'train'}")
    return split.rows


def data_labels(data_bin: Path):
    """The classes of binarised labels, in class-index order (label/dict.txt)."""
    from fairseq.data import Dictionary
    from glue_prep.binarize import label_names

    return label_names(Dictionary.load(str(data_bin / "label" / "dict.txt")))


def check_data(task_recipe, data_bin: Path, max_positions: int) -> int:
    """Refuse, before fairseq starts, binaries the recipe cannot train on: another task's
    (label kind, number of classes, glue_prep's task name), splits fairseq cannot read, rows
    without their label or an input, or validation rows longer than the model's positions
    (fairseq would stop at the first one, mid-run). The training rows, once read."""
    if not (data_bin / "input0" / "dict.txt").is_file():
        raise DataMismatchError(f"{data_bin}: no input0/dict.txt; expected a task's binaries from glue_prep")
    meta = read_metadata(data_bin, missing_ok=True)  # None: binaries from fairseq-preprocess
    if meta is not None and meta.task != task_recipe.name:
        raise DataMismatchError(f"{data_bin} holds {meta.task} ({metadata_file(data_bin)}); the recipe is "
                                f"{task_recipe.name}'s: pass {meta.task} as the task, or the {task_recipe.name} binaries")
    label_dict = data_bin / "label" / "dict.txt"
    regression = not label_dict.is_file()
    if regression != task_recipe.regression:
        kinds = {True: "regression targets (no label/dict.txt)", False: "class labels (label/dict.txt)"}
        raise DataMismatchError(f"{data_bin} holds {kinds[regression]}, but {task_recipe.name} is a "
                                f"{'regression' if task_recipe.regression else 'classification'} task")
    if not regression:
        labels = data_labels(data_bin)
        if task_recipe.num_classes is not None and len(labels) != task_recipe.num_classes:
            raise DataMismatchError(f"{label_dict} has {len(labels)} labels ({', '.join(labels)}); "
                                    f"the {task_recipe.name} recipe trains {task_recipe.num_classes} classes")
        positive = task_recipe.task.positive_label
        if positive is not None and positive not in labels:
            raise DataMismatchError(f"{label_dict} has no label {positive!r}, the {task_recipe.name} positive label "
                                    f"whose F1 selects checkpoints; its labels are {', '.join(labels)}")
        if task_recipe.best_metric in ("f1", "acc_and_f1") and len(labels) != 2:
            raise DataMismatchError(f"{label_dict} has {len(labels)} labels ({', '.join(labels)}); the "
                                    f"{task_recipe.name} metric {task_recipe.best_metric} is for two classes")
    splits = {}
    for name in ["train", *task_recipe.valid_subsets.split(",")]:
        split = splits[name] = read_binaries(data_bin, name, regression)
        if split is None:
            raise DataMismatchError(f"{data_bin}: no binarised {name} split (input0/{name}.bin)")
        if len(split.inputs) != len(splits["train"].inputs):
            raise DataMismatchError(f"{data_bin}: the {name} split has {len(split.inputs)} input(s) and the train "
                                    f"split {len(splits['train'].inputs)}; expected the same sentences per row in every split")
        if name == "train":
            continue  # fairseq skips long training rows
        too_long = np.setdiff1d(np.arange(split.rows), split.fitting(max_positions))
        if len(too_long):
            recorded = meta.over_length.get(name) if meta is not None else None
            where = (f"line {recorded.lines[0]} of {meta.source[name]}"
                     if recorded and recorded.lines and meta.max_positions == max_positions
                     else f"row {too_long[0]} of the split")
            raise DataMismatchError(
                f"{data_bin}: {len(too_long)} {name} rows are longer than the model's {max_positions} "
                f"positions (the first: {where}); fairseq would stop at them mid-run. Binarise "
                f"again with glue_prep --truncate-to {max_positions}")
    return splits["train"].rows


def gpu_available() -> bool:
    import torch

    return torch.cuda.is_available()


def check_options(args) -> None:
    """Refuse options that cannot train together, before anything is written or run (the
    comparison checks its flags with this once, before its first run)."""
    if args.baseline and args.freeze_encoder:
        raise ValueError("--freeze-encoder is an option of the plugin's roberta_hire model; fairseq's stock "
                         "roberta (--baseline) has none: use --head stock for the stock head with a frozen encoder")
    if args.layer_cache == "":
        raise ValueError("--layer-cache '': expected a folder for the cache (or no --layer-cache)")
    if args.layer_cache and not args.freeze_encoder:
        raise ValueError(f"--layer-cache {args.layer_cache}: the cache holds a frozen encoder's layer outputs; "
                         "expected --freeze-encoder with it")
    if args.layer_cache:
        check_layer_cache_folder(Path(args.layer_cache))
    # fairseq-train would read a folder as no checkpoint and train from random weights; a dry run may
    # plan before the MNLI run has written its checkpoint
    state = args.mnli_init and not_a_file(args.mnli_init)
    if state and (state == "is a folder" or not args.dry_run):
        raise ValueError(f"--mnli-init {args.mnli_init} {state}; expected a checkpoint file (e.g. the MNLI run's "
                         "checkpoint_best.pt)")
    if args.train_size and Path(args.data).exists():  # a dry run may plan before the data is binarised
        from glue_prep.subset import check_train_size

        check_train_size(Path(args.data), args.train_size)


def parse_arguments(argv):
    """finetune.py's options (checked) and the fairseq-train flags it passes on; a bad option is
    a ValueError in one line instead of argparse's exit (the comparison parses its flags so)."""
    parser = build_parser()
    parser.exit_on_error = False
    try:
        args, passthrough = parser.parse_known_args(argv)
    except argparse.ArgumentError as error:
        raise ValueError(f"finetune.py {error}") from None
    check_options(args)
    return args, passthrough


def build_command(args, passthrough) -> list:
    check_options(args)
    data = Path(args.data)
    task_recipe = recipe(args.task, data)
    model = "baseline" if args.baseline else "hire"
    source = args.mnli_init or args.pretrained
    encoder = model_config(args.pretrained)
    if args.baseline:
        check_stock_roberta_eps(encoder, args.pretrained)
    flags = flags_of(encoder, for_stock_roberta=args.baseline, described_as=args.pretrained)
    layers, max_positions = flag_number(flags, "--encoder-layers"), flag_number(flags, "--max-positions")
    words = argparse_words(passthrough)
    keep = [words[i + 1] for i, word in enumerate(words[:-1]) if word == "--encoder-layers-to-keep"]
    built_layers = len(kept_layers(keep[-1])) if keep else layers  # fairseq-train reads the last list given
    if args.mnli_init and Path(args.mnli_init).is_file():  # a dry run may plan before it exists
        check_same_encoder(args.mnli_init, args.pretrained, keep[-1] if keep else None)
    if args.head:
        head_options(args.head).scored_layers(built_layers)  # a last-k head longer than the encoder: refused now
    size = args.size or ("large" if layers >= 24 else "base")
    device = training_device(args.device)
    check_precision(passthrough, device)
    check_save_dir(passthrough)
    check_encoder_flags(passthrough, flags, switches_of(encoder), args.pretrained,
                        unrecorded=() if encoder.get("encoder_layernorm_eps") else (FLAG,))
    shape = update_shape(passthrough)
    schedule = {"lr": args.lr, "epochs": args.epochs, "batch_size": args.batch_size, "update_shape": shape}
    checked = data.exists() or not args.dry_run
    if not checked:  # a command planned before the data is binarised
        print(f"finetune: note: {data} does not exist yet; the data is not checked", file=sys.stderr)
    else:
        train_rows = check_data(task_recipe, data, max_positions)
        schedule["num_classes"] = None if task_recipe.regression else len(data_labels(data))
        if args.train_size:
            schedule.update(train_examples=args.train_size,
                            epochs=subset_epochs(task_recipe, args, args.train_size, shape))
        else:
            schedule["train_examples"] = train_rows
        task_recipe.flags(**schedule)  # a schedule the recipe refuses is refused before anything is written

    def command_with(schedule, data):
        command = [
            sys.executable, "-m", "fairseq_cli.train", str(data),
            "--user-dir", str(USER_DIR), "--arch", ARCHITECTURES[(model, size)], *flags,
            *(head_options(args.head).flags() if args.head else []),
            *(["--freeze-encoder"] if args.freeze_encoder else []),
            *(["--layer-cache", args.layer_cache] if args.layer_cache else []),
            "--finetune-from-model", str(source), "--save-dir", str(args.save_dir),
            "--seed", str(args.seed), *task_recipe.flags(**schedule),
        ]
        return command + (FP16_FLAGS if device == "gpu" else ["--cpu"]) + passthrough

    if checked:  # the budget in the batches fairseq makes of the rows (--max-tokens splits long ones), counted
        with tempfile.TemporaryDirectory() as scratch:  # on the subset drawn here, before any is written
            rows = make_train_subset(data, args.train_size, args.seed, Path(scratch) / SUBSET_FOLDER,
                                     max_positions).folder if args.train_size else data
            counted = training_batches(command_with(schedule, rows)[3:], described_as=f"{data}" + (
                f" (its --train-size {args.train_size} sample)" if args.train_size else ""))
            schedule["update_shape"] = replace(shape, epoch_batches=counted)
        if args.train_size:
            schedule["epochs"] = subset_epochs(task_recipe, args, args.train_size, schedule["update_shape"])
            # a dry run names the subset's folder without writing it
            data = Path(args.save_dir) / SUBSET_FOLDER if args.dry_run else train_subset(args, data, max_positions).folder
    return command_with(schedule, data)


def training_device(device: str) -> str:
    """cpu or gpu (fp16, fairseq's recipe): --device, with auto resolved on this machine."""
    return "gpu" if device == "gpu" or (device == "auto" and gpu_available()) else "cpu"


def check_stock_roberta_eps(encoder, pretrained) -> None:
    """fairseq's stock roberta (--baseline) builds its LayerNorms with 1e-5 and has no option to
    say otherwise: refuse a checkpoint that records another epsilon (a converted BERT-family
    encoder) rather than train another encoder than the checkpoint's."""
    eps = layernorm_eps(encoder)
    if eps != FAIRSEQ_LAYERNORM_EPS:
        raise ValueError(f"{pretrained} records a LayerNorm epsilon of {eps:g} ({FLAG}), which fairseq's stock "
                         f"roberta (--baseline) does not take: it would build its encoder with {FAIRSEQ_LAYERNORM_EPS:g}. "
                         "Use --head stock (roberta_hire with fairseq's RoBERTa head), which honours it")


def train_subset(args, data: Path, max_positions: int):
    """The run's training rows: a sample of --train-size rows (stratified by label where there are
    classes) drawn with the run's --seed (every head of a seed gets the same rows) among those
    that fit the model's positions (fairseq-train would skip the others), kept in
    SAVE_DIR/train_subset; refused where the save dir's run trained on other rows."""
    save_dir = Path(args.save_dir)
    # a run of this script's (its request recorded) resumed or finished: its rows may not change under it
    trained = (save_dir / REQUEST_FILE).exists() and resumable(save_dir)
    info = make_train_subset(data, args.train_size, args.seed, save_dir / SUBSET_FOLDER, max_positions, keep=trained)
    print(f"finetune: training on {args.train_size} of {info.record['full_train']['rows']} training rows "
          f"(seed {args.seed}, rows {info.record['rows_sha256'][:12]}, {info.folder})", file=sys.stderr)
    return info


def subset_epochs(task_recipe, args, train_size: int, shape: UpdateShape = UpdateShape()) -> int:
    """A budget in epochs over the subset (--epochs, else the recipe's, else 10), lengthened by
    whole epochs to at least MIN_SUBSET_UPDATES updates of `shape`: 100 rows at batch 16 are
    7 updates an epoch, and a few dozen updates leave a head barely trained
    (few-sample fine-tuning needs more steps, not fewer; Mosbach et al. 2021, Zhang et al. 2021)."""
    given = task_recipe.task.recipe
    epochs = args.epochs or (given.max_epoch if given and given.max_epoch else DERIVED_EPOCHS)
    batch = args.batch_size or task_recipe.schedule(epochs=epochs, train_examples=train_size).batch_size
    per_epoch = shape.updates_per_epoch(train_size, batch)
    if not per_epoch:
        return epochs  # not one whole update an epoch: the recipe's schedule refuses it
    return max(epochs, math.ceil(MIN_SUBSET_UPDATES / per_epoch))


def positive(kind):
    """An argparse type: a number of `kind` above 0 (a recipe value of 0 would mean 'not given')."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0 or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r}: expected a positive {'integer' if kind is int else 'number'}")
        return value
    return parse


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    # no abbreviations: a flag it does not know goes to fairseq-train whole, never read as a prefix of its own
    parser = argparse.ArgumentParser(prog="finetune.py", description=__doc__, add_help=add_help, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", help="a GLUE task (CoLA, SST-2, MRPC, QQP, STS-B, MNLI, QNLI, RTE, WNLI), your "
                                     "own task's name (its binaries hold its task file) or a task file (.json)")
    parser.add_argument("data", help="the task's binaries from glue_prep (<TASK>-bin)")
    parser.add_argument("pretrained", help="pretrained RoBERTa model.pt (roberta.base, roberta.large or converted)")
    parser.add_argument("save_dir")
    head = parser.add_mutually_exclusive_group()
    head.add_argument("--baseline", action="store_true",
                      help="fairseq's stock roberta architecture and head, same recipe (a checkpoint recording a "
                           "LayerNorm epsilon other than fairseq's 1e-5 is refused: use --head stock)")
    head.add_argument("--head", type=head_name, metavar="NAME",
                      help="a head HIRE is compared with, as roberta_hire options: "
                           + "; ".join(f"{name}: {preset.description}" for name, preset in HEADS.items())
                           + "; last<K>-mean, last<K>-concat: the same over the last K layers")
    parser.add_argument("--size", choices=["base", "large"], help="architecture name; default from the checkpoint")
    parser.add_argument("--mnli-init", metavar="CHECKPOINT",
                        help="start from an MNLI fine-tuned checkpoint (RTE, MRPC, STS-B in the RoBERTa paper): "
                             "its encoder; the head starts fresh, as under --baseline")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", type=positive(int),
                        help="shorter budget: N epochs, warmup 6%%, linear decay to 0 at the end")
    parser.add_argument("--lr", type=positive(float),
                        help="learning rate instead of the recipe's (e.g. for a shorter budget)")
    parser.add_argument("--batch-size", type=positive(int),
                        help="batch size instead of the recipe's (a budget in epochs gives the updates; one in "
                             "updates is scaled to see as many examples)")
    parser.add_argument("--train-size", type=positive(int), metavar="N",
                        help="train on a sample of N training rows drawn with --seed (stratified by label; simple "
                             "random for a regression task; the same rows for every head at a seed), kept in "
                             "SAVE_DIR/train_subset; the budget is in epochs "
                             f"over the N rows, at least {MIN_SUBSET_UPDATES} updates")
    parser.add_argument("--freeze-encoder", action="store_true",
                        help="train the head alone: the encoder runs without dropout and is never updated "
                             "(add --layer-cache DIR to compute its layer outputs once per encoder and data)")
    parser.add_argument("--layer-cache", metavar="DIR",
                        help="with --freeze-encoder: read the encoder's layer outputs from a cache in DIR, "
                             "computed once per encoder and data set (fairseq_hire/models/layer_cache.py)")
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto",
                        help="gpu uses fp16 as fairseq's recipe does; cpu adds --cpu")
    parser.add_argument("--dry-run", action="store_true", help="print the fairseq-train command only")
    return parser


def constant_note(data_bin: Path, task_recipe) -> str:
    """What the best constant prediction scores on the validation split (glue_prep.json's label
    counts), on the metric that selects checkpoints and the others: on imbalanced data, the
    figure every result should be read against (the criterion logs it as constant_<metric>)."""
    from ..metrics import constant_baseline, positive_class

    meta = read_metadata(data_bin, missing_ok=True) if data_bin.is_dir() else None
    if meta is None:
        return ""
    counts, names = meta.label_counts.get("valid"), meta.label_names
    if not counts or not names or any(label not in names for label in counts):
        return ""
    targets = np.concatenate([np.full(count, names.index(label)) for label, count in counts.items()])
    scores = constant_baseline(targets, positive_class(names, task_recipe.task.positive_label or "1"), len(names))
    label, count = max(counts.items(), key=lambda item: item[1])
    metric = task_recipe.best_metric
    others = ", ".join(f"{name} {value:.1f}" for name, value in scores.items() if name != metric)
    return (f"finetune: note: a constant prediction scores {metric} {scores.get(metric, float('nan')):.1f} on the "
            f"validation rows ({others}; the majority class {label!r} is {100 * count / len(targets):.1f}% of them): "
            "a model at or below that learned nothing")


def main(argv=None) -> int:
    from ..checkpoints.loading import CheckpointError

    args, passthrough = build_parser().parse_known_args(argv)
    args.device = training_device(args.device)  # resolved once: what the run trains on, and what it records
    try:
        check_same_run(args, passthrough)
        command = build_command(args, passthrough)
    except (DataMismatchError, CheckpointError, OSError, ValueError) as error:
        print(f"finetune: error: {error}", file=sys.stderr)
        return 2
    note = constant_note(Path(args.data), recipe(args.task, Path(args.data)))
    if note:
        print(note, file=sys.stderr)
    print(shlex.join(command), flush=True)
    if args.dry_run:
        return 0
    record_request(args, passthrough)
    return subprocess.call(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})


if __name__ == "__main__":
    sys.exit(main())
