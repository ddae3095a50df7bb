"""The label dictionary of a task's binaries: the classes every split may use (those the train
split has rows of, as fairseq's recipe builds label/dict.txt from the train labels), and AX's,
borrowed from MNLI's binaries (AX has no labelled split)."""
import os
import shutil
from pathlib import Path
from typing import Dict

from .errors import GlueFormatError, listed, shown
from .readers.reading import fairseq_dictionary
from .readers.rows import SplitData
from .readers.splits import read_split
from .tasks import TASKS, TaskSpec
from .tasks.glue import MNLI_RECIPE_LABEL_ORDER


def check_label_coverage(task: TaskSpec, data: Dict[str, SplitData]) -> None:
    """Every label of every split, and every listed class, must have rows in train."""
    train = data["train"]
    present = set(train.labels)  # the classes the model can learn: those train has rows of

    # every label of another split must be a class the train labels define
    for d in data.values():
        if d is train or d.labels is None:
            continue
        for label, line in zip(d.labels, d.line_numbers):
            if label not in present:
                raise GlueFormatError(
                    f"{task.name} label {shown(label)} occurs here but in no row of the train split "
                    f"({train.path}); the label dictionary is built from the train labels, as "
                    "fairseq's recipe does, so this row could not be labelled", d.path, line)
    for label in task.labels:
        if label not in present:
            raise GlueFormatError(
                f"no row has the {task.name} label {shown(label)}; expected every class of "
                f"{listed(task.labels)} in the train split (use more rows)",
                train.path,
            )
    if task.metric in ("f1", "acc_and_f1") and len(present) != 2:
        raise GlueFormatError(
            f"the {task.name} metric {task.metric} is for two classes; the train labels are "
            f"{listed(sorted(present))}: choose accuracy or macro_f1", train.path)
    if task.positive_label is not None and task.positive_label not in present:
        raise GlueFormatError(
            f"the {task.name} positive label {shown(task.positive_label)} (whose F1 is reported) is in no row of "
            f"the train split; its labels are {listed(sorted(present))}", train.path)


def borrowable(built: Path, source: str):
    """The label dictionary of a task's binaries another task borrows (AX: MNLI-bin's), or None
    where there is none; refused unless it holds exactly the source task's classes."""
    from .binarize import label_names

    if not os.path.lexists(built):
        return None
    dictionary = fairseq_dictionary(built)
    if sorted(label_names(dictionary)) != sorted(TASKS[source].labels):
        raise GlueFormatError(f"holds the classes {listed(label_names(dictionary))}; expected {source}'s "
                              f"{listed(TASKS[source].labels)}", built)
    return dictionary


def borrowed_label_dict(task: TaskSpec, dest: Path, glue_dir: Path, out_dir: Path, log):
    """AX's label/dict.txt: MNLI-bin's if built, else from MNLI/train.tsv's labels (what the
    recipe would build), else the class order of fairseq's released MNLI heads."""
    from fairseq.data import Dictionary

    from .binarize import build_label_dictionary, label_names

    src = task.label_dict_from
    built = out_dir / f"{src}-bin" / "label" / "dict.txt"
    borrowed = borrowable(built, src)
    if borrowed is not None:
        shutil.copyfile(built, dest)
        return label_names(borrowed), str(built.resolve())
    source_task = TASKS[src]
    train_split = source_task.split("train")
    train_file = glue_dir / src / train_split.files[0]
    if train_file.is_file():
        log(f"{task.name}: label dictionary from the labels of {train_file} (no {built})")
        labels = read_split(source_task, train_split, train_file).labels
        d = build_label_dictionary(labels, str(dest.parent / ".train.label"))
        d.save(str(dest))
        return label_names(d), str(train_file.resolve())
    log(f"{task.name}: neither {built} nor {train_file} exists; label/dict.txt uses the class "
        f"order of fairseq's released MNLI models ({', '.join(MNLI_RECIPE_LABEL_ORDER)})")
    d = Dictionary()
    for s in MNLI_RECIPE_LABEL_ORDER:
        d.add_symbol(s, n=0)
    d.pad_to_multiple_(8)
    d.save(str(dest))
    return list(MNLI_RECIPE_LABEL_ORDER), "fairseq roberta.large.mnli class order"
