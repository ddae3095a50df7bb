"""The task registry: every decision about a task, in one table.

A task's files and columns, its labels (or regression scale), its official metric (which
checkpoints are selected by and every report uses), its GLUE submission names, where
download_glue.sh fetches it, and fairseq's RoBERTa fine-tuning recipe for it (learning rate,
batch size, updates, warmup) live in its ``TaskSpec``; glue_prep, fairseq_hire.workflow.recipes,
scripts/finetune.py, the evaluation and the reports all read them from here. ``get_task``
finds a GLUE task by name, or reads a user's task from a task file (``task_files``).

Column numbers of the GLUE tasks are 0-based; fairseq's examples/roberta/
preprocess_GLUE_tasks.sh uses the same columns 1-based (``cut -f``). Header names are those
of the files GLUE distributes.
"""
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Dict, List, Optional, Tuple, Union

Column = Union[int, str]  # a 0-based column (GLUE files), or a header name / JSON key (user files)
METRICS = ("accuracy", "f1", "acc_and_f1", "mcc", "macro_f1", "pearson", "spearman", "pearson_and_spearman")
REGRESSION_METRICS = ("pearson", "spearman", "pearson_and_spearman")
# fairseq's Dictionary reserves these symbols (the specials, and the padding that
# pad_to_multiple_ adds): a label spelled like one would share its index with it
RESERVED_LABELS = ("<s>", "<pad>", "</s>", "<unk>")
DICTIONARY_PADDING = re.compile(r"^madeupword\d{4}$")
# a score as text: ASCII decimal digits only (float() would also take "1_0" and other scripts' digits)
DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)


def label_problem(label: str) -> Optional[str]:
    """Why `label` cannot be a class in fairseq's label dictionary, or None."""
    if not label or any(c.isspace() for c in label):
        return "expected a non-empty label without spaces (fairseq's label dictionary splits on whitespace)"
    if label in RESERVED_LABELS or DICTIONARY_PADDING.match(label):
        return ("it is one of the symbols fairseq's dictionary reserves (<s>, <pad>, </s>, <unk>, madeupwordNNNN), "
                "so its rows would share a class index with it: rename the label")
    return None


def score_value(text: str) -> Optional[float]:
    """A regression score written as a finite ASCII decimal number, or None."""
    if not DECIMAL.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Recipe:
    """fairseq's RoBERTa GLUE fine-tuning schedule for one task (examples/roberta/README.glue.md);
    for a user's task, what its task file sets (None: derived from the data by
    fairseq_hire.workflow.recipes)."""

    lr: Optional[float] = None
    batch_size: Optional[int] = None
    total_updates: Optional[int] = None
    warmup_updates: Optional[int] = None
    max_epoch: Optional[int] = 10


@dataclass(frozen=True)
class SplitSpec:
    name: str  # fairseq split name: train, valid, valid1, test, test1
    files: Tuple[str, ...]  # candidate file names, relative to the task folder (first found is used)
    header: Optional[Tuple[str, ...]]  # expected header (None: the file has no header line)
    inputs: Tuple[Column, ...]  # the columns of input0 (and input1)
    label: Optional[Column] = None  # the label column (None for test splits)
    index: Optional[Column] = None  # the column holding the GLUE index / row id (test splits)
    filter_bad_rows: bool = False  # QQP train/dev: drop rows without exactly len(header) fields

    # CoLA train/dev have no header: their column count
    ncols_no_header: int = 0

    @property
    def ncols(self) -> int:
        return len(self.header) if self.header is not None else self.ncols_no_header

    @property
    def is_test(self) -> bool:
        return self.label is None


@dataclass(frozen=True)
class TaskSpec:
    name: str
    splits: Tuple[SplitSpec, ...]
    # classification: the label set (empty for a user task whose labels are collected from train)
    labels: Tuple[str, ...] = ()
    regression: bool = False
    metric: str = "accuracy"  # the official metric: checkpoints are selected by it, reports use it
    positive_label: Optional[str] = None  # the class whose F1 a binary task reports ("1": MRPC, QQP)
    score_range: Optional[Tuple[float, float]] = None  # regression: the scores a file may hold
    target_scale: float = 1.0  # regression: the model learns score / target_scale (STS-B: 5)
    # class order of the label dictionary: "frequency" (fairseq-preprocess's: most frequent in
    # train first, ties by label; the GLUE recipe's) or "listed" (the order of `labels`)
    label_order: str = "frequency"
    test_names: Dict[str, str] = field(default_factory=dict)  # split -> GLUE submission name
    recipe: Optional[Recipe] = None  # None: derived from the data (fairseq_hire.workflow.recipes)
    in_fairseq_recipe: bool = True
    # AX is scored with an MNLI model: its label dictionary comes from MNLI.
    label_dict_from: Optional[str] = None
    folders: Tuple[str, ...] = ()  # where the task's files are, relative to the data folder
    download: Optional[str] = None  # what download_glue.sh fetches: a zip URL, "mrpc" or "ax"
    file_format: str = "glue"  # glue (GLUE's own TSV files), or a user task's tsv, csv, jsonl
    source: Optional[str] = None  # the task file a user task was read from
    id_column: Optional[Column] = None  # a user task's row ids (test rows, predictions)

    @cached_property
    def label_set(self) -> frozenset:
        """The labels, for looking up each row's (a tuple's `in` made 100,000 classes quadratic)."""
        return frozenset(self.labels)

    @property
    def num_classes(self) -> Optional[int]:
        """1 for regression; the number of labels; None while a user task's labels are to be
        collected from its training file (glue_prep.json records them then)."""
        if self.regression:
            return 1
        return len(self.labels) or None

    @property
    def num_inputs(self) -> int:
        return len(self.splits[0].inputs)

    @property
    def valid_subsets(self) -> List[str]:
        return [s.name for s in self.splits if s.name.startswith("valid")]

    def split(self, name: str) -> SplitSpec:
        for s in self.splits:
            if s.name == name:
                return s
        raise KeyError(name)


GLUE_ZIPS = "https://dl.fbaipublicfiles.com/glue/data/"


def _pair(name, header, test_header, inputs, label, test_inputs, labels, extra=None, zip_name=None, **kw):
    """A task with train/dev/test files named train.tsv, dev.tsv, test.tsv, fetched as a GLUE
    zip unless `download` says otherwise."""
    return TaskSpec(
        name=name,
        splits=(
            SplitSpec("train", ("train.tsv",), header, inputs, label=label, **(extra or {})),
            SplitSpec("valid", ("dev.tsv",), header, inputs, label=label, **(extra or {})),
            SplitSpec("test", ("test.tsv",), test_header, test_inputs, index=0),
        ),
        labels=labels,
        test_names={"test": name},
        folders=(name,),
        download=kw.pop("download", GLUE_ZIPS + f"{zip_name or name}.zip"),
        **kw,
    )


MNLI_TRAIN_HEADER = (
    "index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
    "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label",
)
MNLI_DEV_HEADER = MNLI_TRAIN_HEADER[:11] + ("label2", "label3", "label4", "label5", "gold_label")
MNLI_TEST_HEADER = MNLI_TRAIN_HEADER[:10]
STSB_HEADER = (
    "index", "genre", "filename", "year", "old_index", "source1", "source2",
    "sentence1", "sentence2", "score",
)
MRPC_HEADER = ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")
QQP_HEADER = ("id", "qid1", "qid2", "question1", "question2", "is_duplicate")
NLI_HEADER = ("index", "sentence1", "sentence2", "label")

MNLI_LABELS = ("contradiction", "entailment", "neutral")
# Class order of fairseq's released roberta.*.mnli heads (fairseq's RoBERTa README:
# {0: 'contradiction', 1: 'neutral', 2: 'entailment'}), i.e. the frequency order of the real
# MNLI train labels. Used for AX only when neither MNLI-bin nor MNLI/train.tsv is available.
MNLI_RECIPE_LABEL_ORDER = ("contradiction", "neutral", "entailment")

TASKS: Dict[str, TaskSpec] = {}

# The recipes are fairseq's (examples/roberta/README.glue.md and its config/finetuning YAMLs),
# identical for base and large; WNLI is not in fairseq's recipe: it gets RTE's learning rate
# and batch size, 10 epochs of its 635 training examples and 6% warmup (fairseq's ratio).
# The metric is each task's official GLUE metric (fairseq's recipe selects by accuracy, and
# by loss for STS-B).
TASKS["CoLA"] = TaskSpec(
    name="CoLA",
    splits=(
        SplitSpec("train", ("train.tsv",), None, (3,), label=1, ncols_no_header=4),
        SplitSpec("valid", ("dev.tsv",), None, (3,), label=1, ncols_no_header=4),
        SplitSpec("test", ("test.tsv",), ("index", "sentence"), (1,), index=0),
    ),
    labels=("0", "1"),
    metric="mcc",
    test_names={"test": "CoLA"},
    recipe=Recipe(1e-5, 16, 5336, 320),
    folders=("CoLA",),
    download=GLUE_ZIPS + "CoLA.zip",
)
TASKS["SST-2"] = _pair(
    "SST-2", ("sentence", "label"), ("index", "sentence"), (0,), 1, (1,), ("0", "1"),
    recipe=Recipe(1e-5, 32, 20935, 1256),
)
TASKS["MRPC"] = _pair(
    "MRPC", MRPC_HEADER, ("index",) + MRPC_HEADER[1:], (3, 4), 0, (3, 4), ("0", "1"),
    metric="acc_and_f1", positive_label="1", recipe=Recipe(1e-5, 16, 2296, 137),
    download="mrpc",  # built from Microsoft's files, as download_glue_data.py builds it
)
TASKS["QQP"] = _pair(
    "QQP", QQP_HEADER, ("id", "question1", "question2"), (3, 4), 5, (1, 2), ("0", "1"),
    extra={"filter_bad_rows": True}, zip_name="QQP-clean",
    metric="acc_and_f1", positive_label="1", recipe=Recipe(1e-5, 32, 113272, 28318),
)
TASKS["STS-B"] = _pair(
    "STS-B", STSB_HEADER, STSB_HEADER[:-1], (7, 8), 9, (7, 8), (), regression=True,
    score_range=(0.0, 5.0), target_scale=5.0,  # fairseq's recipe trains on score / 5
    metric="pearson_and_spearman", recipe=Recipe(2e-5, 16, 3598, 214),
)
TASKS["MNLI"] = TaskSpec(
    name="MNLI",
    splits=(
        SplitSpec("train", ("train.tsv",), MNLI_TRAIN_HEADER, (8, 9), label=11),
        SplitSpec("valid", ("dev_matched.tsv",), MNLI_DEV_HEADER, (8, 9), label=15),
        SplitSpec("valid1", ("dev_mismatched.tsv",), MNLI_DEV_HEADER, (8, 9), label=15),
        SplitSpec("test", ("test_matched.tsv",), MNLI_TEST_HEADER, (8, 9), index=0),
        SplitSpec("test1", ("test_mismatched.tsv",), MNLI_TEST_HEADER, (8, 9), index=0),
    ),
    labels=MNLI_LABELS,
    test_names={"test": "MNLI-m", "test1": "MNLI-mm"},
    recipe=Recipe(1e-5, 32, 123873, 7432),
    folders=("MNLI",),
    download=GLUE_ZIPS + "MNLI.zip",
)
TASKS["QNLI"] = _pair(
    "QNLI", ("index", "question", "sentence", "label"), ("index", "question", "sentence"),
    (1, 2), 3, (1, 2), ("entailment", "not_entailment"), zip_name="QNLIv2",
    recipe=Recipe(1e-5, 32, 33112, 1986),
)
TASKS["RTE"] = _pair(
    "RTE", NLI_HEADER, NLI_HEADER[:3], (1, 2), 3, (1, 2), ("entailment", "not_entailment"),
    recipe=Recipe(2e-5, 16, 2036, 122),
)
TASKS["WNLI"] = _pair(
    "WNLI", NLI_HEADER, NLI_HEADER[:3], (1, 2), 3, (1, 2), ("0", "1"), in_fairseq_recipe=False,
    recipe=Recipe(2e-5, 16, 400, 24),
)
# The diagnostic set: test only, scored with an MNLI model. download_glue_data.py saves it as
# diagnostic/diagnostic.tsv; the GLUE site serves it as AX.tsv.
TASKS["AX"] = TaskSpec(
    name="AX",
    splits=(
        SplitSpec(
            "test", ("AX.tsv", "diagnostic.tsv"), NLI_HEADER[:3], (1, 2), index=0
        ),
    ),
    labels=MNLI_LABELS,
    test_names={"test": "AX"},
    in_fairseq_recipe=False,
    label_dict_from="MNLI",
    folders=("AX", "diagnostic", "."),
    download="ax",
)

# ALL: MNLI before AX, so AX can reuse MNLI's label dictionary.
TASK_ORDER: List[str] = ["CoLA", "SST-2", "MRPC", "QQP", "STS-B", "MNLI", "QNLI", "RTE", "WNLI", "AX"]
TASKS = {name: TASKS[name] for name in TASK_ORDER}


def get_task(name: str) -> TaskSpec:
    """A GLUE task by name (exact spelling, or case-insensitive, or its YAML name such as
    sts_b), or a user's task from its task file (a path ending in .json, see task_files)."""
    if name in TASKS:
        return TASKS[name]
    for key in TASKS:
        if name.lower() in (key.lower(), key.lower().replace("-", "_")):
            return TASKS[key]
    if name.endswith(".json"):
        from .task_files import read_task_file

        return read_task_file(name)
    raise KeyError(name)
