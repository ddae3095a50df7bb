"""What a task is: its splits' files and columns, its labels (or regression scale), its official
metric (which checkpoints are selected by and every report uses), its GLUE submission names and
its fine-tuning recipe, in a ``TaskSpec``; and the rules every task's labels and scores follow.
glue_prep, fairseq_hire.workflow.recipes, scripts/finetune.py, the evaluation and the reports
all read them from here.
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
