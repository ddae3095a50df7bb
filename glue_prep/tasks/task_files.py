"""A user's own task, described by a JSON task file (or by glue_prep's flags), as a TaskSpec
of the registry: binarised, trained, evaluated and predicted through the same code as GLUE.

    {
      "name": "reviews",                     letters, digits, - _ . (the binaries: reviews-bin); not a
                                             GLUE task's name
      "format": "csv",                       tsv, csv (with quoting) or jsonl
      "text": "review", "text_pair": null,   the column (header name) or key of the text(s)
      "label": "stars", "id": "review_id",   the label's column; an optional id column (test rows'
                                             and predictions' ids; default: the row number)
      "train": "train.csv", "valid": "dev.csv", "test": "test.csv",   in the data folder, relative to
                                             it (a file elsewhere: glue_prep's --train etc.)
      "labels": ["bad", "good"],             optional: the classes, in this order; without it the
                                             labels are collected from train, most frequent first,
                                             ties by label (fairseq-preprocess's order, GLUE's)
      "regression": false, "score_range": [0, 5],   regression: the model learns score divided by
                                             the range's largest magnitude (5 here)
      "metric": "f1", "positive_label": "good",      accuracy (default), f1, acc_and_f1, mcc,
                                             macro_f1; regression: pearson_and_spearman (default),
                                             pearson, spearman
      "recipe": {"lr": 1e-5, "batch_size": 16, "epochs": 10}   optional: fairseq_hire.workflow.recipes;
                                             the budget as epochs or total_updates (not both),
                                             and warmup_updates
    }

Labels are one word each and not a symbol fairseq's dictionary reserves (<s>, <pad>, </s>,
<unk>, madeupwordNNNN); JSON numbers that are whole are one label (1 and 1.0 are "1"). The
positive label holds no "${" and is not "???": fairseq passes it through its configuration,
where OmegaConf would read ${...} as an interpolation and ??? as a missing value.

Every mistake is refused naming the task file and the key. A task file is a regular file of at
most 16 MiB of UTF-8 JSON, each key once; the files it names must be inside the data folder,
so that a task file from elsewhere cannot have glue_prep read (and quote) any other file.
"""
import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Dict, Optional

from ..errors import GlueFormatError, listed, shown
from ..readers.reading import parsed_json, read_regular, utf8_text
from .glue import TASKS
from .spec import METRICS, REGRESSION_METRICS, Recipe, SplitSpec, TaskSpec, label_problem

FORMATS = ("tsv", "csv", "jsonl")
KEYS = ("name", "format", "text", "text_pair", "label", "id", "train", "valid", "test", "labels",
        "regression", "score_range", "metric", "positive_label", "recipe")
RECIPE_KEYS = ("lr", "batch_size", "epochs", "total_updates", "warmup_updates")
COMMAND_LINE = "the command line"  # the source of a task described by glue_prep's flags
FLAGS = {"name": "TASK", "format": "--format", "text": "--text", "text_pair": "--text-pair", "label": "--label",
         "id": "--id", "train": "--train", "valid": "--valid", "test": "--test", "labels": "--labels",
         "regression": "--regression", "score_range": "--regression LOW HIGH", "metric": "--metric",
         "positive_label": "--positive-label"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
TASK_FILE_LIMIT = 16 << 20  # bytes; 100,000 listed classes take about 1 MiB
OMEGACONF_MISSING = "???"
LARGEST_COUNT = 2 ** 31 - 1  # a recipe's integers: fairseq and torch count in 32-bit integers


def read_task_file(path) -> TaskSpec:
    path = Path(path)
    try:
        raw = read_regular(path, "missing: expected a JSON task file", "a JSON task file", TASK_FILE_LIMIT)
    except OSError as error:
        raise GlueFormatError(f"not a readable JSON task file: {error.strerror or error}", path) from None
    return task_from_description(parsed_json(utf8_text(raw, path), path), source=path)


def label_text(value) -> str:
    """A label as text: JSON booleans as true / false, a whole number as an integer whichever way
    JSON wrote it (1 and 1.0 are one class), the rest as written."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def encodable(text: str) -> bool:
    """Whether UTF-8 can write `text` (JSON's "\\ud800" escapes half a surrogate pair)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def task_from_description(description: Dict, source=None) -> TaskSpec:
    where = source if source is not None else "the task description"

    def refuse(message):
        raise GlueFormatError(message, where)

    def named(key):  # a key as the user wrote it: glue_prep's flag, or the task file's key
        return FLAGS[key] if source == COMMAND_LINE else repr(key)

    if not isinstance(description, dict):
        refuse("expected a JSON object with name, format, text, label, train, valid")
    unknown = sorted(set(description) - set(KEYS))
    if unknown:
        refuse(f"unknown key {shown(unknown[0])}; expected some of {', '.join(KEYS)}")

    def get(key, kind=str, required=False, default=None):
        value = description.get(key, default)
        if value is None:
            if required:
                refuse(f"missing {named(key)}")
            return default
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            refuse(f"{named(key)} is {shown(value)}; expected {getattr(kind, '__name__', kind)}")
        if kind is str and not value.strip():
            refuse(f"{named(key)} is empty; expected a name")
        if kind is str and not encodable(value):
            refuse(f"{named(key)} holds half of a UTF-16 surrogate pair; expected text that UTF-8 can encode")
        return value

    def label_value(value, key):
        if not isinstance(value, (str, int, float)) or isinstance(value, float) and not math.isfinite(value):
            refuse(f"{named(key)}: {shown(value)} is not a label; expected text, a number or true/false")
        if isinstance(value, str) and not encodable(value):
            refuse(f"{named(key)}: a label holds half of a UTF-16 surrogate pair; expected text that UTF-8 can encode")
        return label_text(value)

    name = get("name", required=True)
    if not NAME.match(name):
        refuse(f"name {shown(name)}: expected letters, digits, '-', '_' or '.' (it names the <name>-bin folder)")
    if any(name.lower() in (glue.lower(), glue.lower().replace("-", "_")) for glue in TASKS):
        refuse(f"name {shown(name)} is a GLUE task's: choose another, so that the task's name always means one task")
    file_format = get("format", required=True)
    if file_format not in FORMATS:
        refuse(f"format {shown(file_format)}: expected one of {', '.join(FORMATS)}")
    text, text_pair = get("text", required=True), get("text_pair")
    inputs = (text,) if text_pair is None else (text, text_pair)
    label, index = get("label", required=True), get("id")
    regression = get("regression", bool, default=False)
    labels = tuple(label_value(x, "labels") for x in get("labels", list, default=[]))
    if "labels" in description and not labels:
        refuse(f"{named('labels')} lists no label; expected the classes in order, or no {named('labels')}")
    if regression and labels:
        refuse(f"{named('labels')} and {named('regression')} exclude each other")
    twice = [listed_label for listed_label, count in Counter(labels).items() if count > 1]
    if twice:
        refuse(f"{named('labels')} lists a label twice: {shown(twice[0])}; expected each class once")
    for listed_label in labels:
        problem = label_problem(listed_label)
        if problem:
            refuse(f"{named('labels')}: label {shown(listed_label)}: {problem}")
    score_range = get("score_range", list)
    if score_range is not None:
        if not regression:
            refuse(f"{named('score_range')} is for regression tasks ('regression': true)")
        if len(score_range) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                            and math.isfinite(x) for x in score_range) or not score_range[0] < score_range[1]:
            refuse(f"{named('score_range')} {shown(score_range)}: expected finite [low, high] with low < high")
    if regression and score_range is None:
        refuse(f"a regression task needs {named('score_range')}: [low, high] (the model learns score / high)")
    metric = get("metric", default="pearson_and_spearman" if regression else "accuracy")
    allowed = REGRESSION_METRICS if regression else tuple(m for m in METRICS if m not in REGRESSION_METRICS)
    if metric not in allowed:
        refuse(f"metric {shown(metric)} for a {'regression' if regression else 'classification'} task: "
               f"expected one of {', '.join(allowed)}")
    positive_label = description.get("positive_label")
    if positive_label is not None:
        if regression:
            refuse(f"{named('positive_label')} is for classification tasks (F1 of one class); this is a regression task")
        positive_label = label_value(positive_label, "positive_label")
        if "${" in positive_label or positive_label == OMEGACONF_MISSING:
            refuse(f"{named('positive_label')} {shown(positive_label)}: fairseq passes the positive label through "
                   "its configuration (OmegaConf), which reads '${...}' as an interpolation and '???' as a missing "
                   "value; expected a class name without '${' that is not '???' (rename the class)")
    if metric in ("f1", "acc_and_f1"):
        if positive_label is None:
            refuse(f"metric {metric!r} needs {named('positive_label')}: the class whose F1 is reported")
        if labels and (len(labels) != 2 or positive_label not in labels):
            refuse(f"metric {shown(metric)} is for two classes, one of them {shown(positive_label)}; "
                   f"{named('labels')} lists {listed(labels)}")
    recipe = recipe_from(get("recipe", dict), refuse)

    splits = []
    for split_name in ("train", "valid", "test"):
        file_name = get(split_name, required=split_name != "test")
        if file_name is None:
            continue
        is_test = split_name == "test"
        splits.append(SplitSpec(split_name, (file_name,), None, inputs, label=None if is_test else label,
                                index=index if is_test else None))
    return TaskSpec(
        name=name, splits=tuple(splits), labels=labels, regression=regression, metric=metric,
        positive_label=positive_label,
        score_range=tuple(float(x) for x in score_range) if score_range else None,
        # scores reach the model within [-1, 1]: STS-B's 0-5 become 0-1, as in fairseq's recipe
        target_scale=float(max(abs(x) for x in score_range)) if regression else 1.0,
        label_order="listed" if labels else "frequency", recipe=recipe, in_fairseq_recipe=False,
        folders=(".",), file_format=file_format, source=str(source) if source is not None else None,
        test_names={"test": name} if any(s.name == "test" for s in splits) else {}, id_column=index,
    )


def split_file(data_dir, task: TaskSpec, split: SplitSpec) -> Path:
    """Where a user task's split file is: named relative to the data folder (or absolute). A
    task file may name only files inside the data folder (checked on the names, so that a link
    the folder's owner made is followed); files named on the command line may be anywhere."""
    name = split.files[0]
    path = Path(data_dir) / name
    if task.source in (None, COMMAND_LINE):
        return path
    inside = Path(os.path.abspath(path)).is_relative_to(os.path.abspath(data_dir))
    if not inside or ".." in Path(name).parts:
        raise GlueFormatError(
            f"{split.name!r} is {shown(name)}, outside the data folder {data_dir}; expected a file inside it, "
            f"named relative to it (to read a file elsewhere, describe the task with glue_prep's flags: "
            f"--{split.name} FILE)", task.source)
    return path


def recipe_from(given: Optional[Dict], refuse) -> Optional[Recipe]:
    """A task file's recipe section: lr, batch_size, the budget as epochs (the updates follow
    from the data) or as total_updates (not both: one follows from the other), and
    warmup_updates; what is left out is derived from the data (fairseq_hire.workflow.recipes)."""
    if not given:
        return None
    unknown = sorted(set(given) - set(RECIPE_KEYS))
    if unknown:
        refuse(f"recipe: unknown key {shown(unknown[0])}; expected some of {', '.join(RECIPE_KEYS)}")
    for key, value in given.items():
        if key == "lr":  # JSON's 1e999 is Python's inf: fairseq-train would get --lr inf
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                refuse(f"recipe: lr is {shown(value)}; expected a positive finite number")
        elif isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= LARGEST_COUNT:
            refuse(f"recipe: {key} is {shown(value)}; expected a positive integer up to {LARGEST_COUNT}")
    if "epochs" in given and "total_updates" in given:
        refuse("recipe: give the budget as 'epochs' or as 'total_updates', not both (one follows from the "
               "other and the training set's size)")
    if given.get("warmup_updates", 0) >= given.get("total_updates", float("inf")):
        refuse(f"recipe: warmup_updates {given['warmup_updates']} is not below total_updates "
               f"{given['total_updates']}; expected a warmup shorter than the run")
    return Recipe(lr=given.get("lr"), batch_size=given.get("batch_size"), total_updates=given.get("total_updates"),
                  warmup_updates=given.get("warmup_updates"), max_epoch=given.get("epochs"))


def task_description(task: TaskSpec) -> Dict:
    """The task file of a user's TaskSpec (what glue_prep writes beside the binaries)."""
    split = {s.name: s for s in task.splits}
    train = split["train"]
    description = {
        "name": task.name, "format": task.file_format, "text": train.inputs[0],
        "text_pair": train.inputs[1] if len(train.inputs) > 1 else None, "label": train.label,
        "id": task.id_column,
        **{name: s.files[0] for name, s in split.items()},
        "labels": list(task.labels) or None, "regression": task.regression,
        "score_range": list(task.score_range) if task.score_range else None,
        "metric": task.metric, "positive_label": task.positive_label,
    }
    if task.recipe is not None:
        r = task.recipe
        given = {"lr": r.lr, "batch_size": r.batch_size, "epochs": r.max_epoch, "total_updates": r.total_updates,
                 "warmup_updates": r.warmup_updates}
        description["recipe"] = {k: v for k, v in given.items() if v is not None}
    return {k: v for k, v in description.items() if v is not None}
