"""The GLUE tasks: which file holds each split, its columns, and the labels.

Column numbers here are 0-based; fairseq's examples/roberta/preprocess_GLUE_tasks.sh uses the
same columns 1-based (``cut -f``). Header names are those of the files GLUE distributes.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple


@dataclass(frozen=True)
class SplitSpec:
    name: str  # fairseq split name: train, valid, valid1, test, test1
    files: Tuple[str, ...]  # candidate file names, relative to the task folder (first found is used)
    header: Optional[Tuple[str, ...]]  # expected header (None: the file has no header line)
    inputs: Tuple[int, ...]  # 0-based columns of input0 (and input1)
    label: Optional[int] = None  # 0-based label column (None for test splits)
    index: Optional[int] = None  # 0-based column holding the GLUE index/id (test splits)
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
    labels: Tuple[str, ...] = ()  # the task's label set (classification); empty for regression
    regression: bool = False
    num_classes: int = 2
    test_names: Dict[str, str] = field(default_factory=dict)  # split -> GLUE submission name
    in_fairseq_recipe: bool = True
    # AX is scored with an MNLI model: its label dictionary comes from MNLI.
    label_dict_from: Optional[str] = None

    @property
    def num_inputs(self) -> int:
        return len(self.splits[0].inputs)

    def split(self, name: str) -> SplitSpec:
        for s in self.splits:
            if s.name == name:
                return s
        raise KeyError(name)


def _pair(name, header, test_header, inputs, label, test_inputs, labels, extra=None, **kw):
    """A task with train/dev/test files named train.tsv, dev.tsv, test.tsv."""
    return TaskSpec(
        name=name,
        splits=(
            SplitSpec("train", ("train.tsv",), header, inputs, label=label, **(extra or {})),
            SplitSpec("valid", ("dev.tsv",), header, inputs, label=label, **(extra or {})),
            SplitSpec("test", ("test.tsv",), test_header, test_inputs, index=0),
        ),
        labels=labels,
        test_names={"test": name},
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

TASKS["CoLA"] = TaskSpec(
    name="CoLA",
    splits=(
        SplitSpec("train", ("train.tsv",), None, (3,), label=1, ncols_no_header=4),
        SplitSpec("valid", ("dev.tsv",), None, (3,), label=1, ncols_no_header=4),
        SplitSpec("test", ("test.tsv",), ("index", "sentence"), (1,), index=0),
    ),
    labels=("0", "1"),
    test_names={"test": "CoLA"},
)
TASKS["SST-2"] = _pair(
    "SST-2", ("sentence", "label"), ("index", "sentence"), (0,), 1, (1,), ("0", "1")
)
TASKS["MRPC"] = _pair(
    "MRPC", MRPC_HEADER, ("index",) + MRPC_HEADER[1:], (3, 4), 0, (3, 4), ("0", "1")
)
TASKS["QQP"] = _pair(
    "QQP", QQP_HEADER, ("id", "question1", "question2"), (3, 4), 5, (1, 2), ("0", "1"),
    extra={"filter_bad_rows": True},
)
TASKS["STS-B"] = _pair(
    "STS-B", STSB_HEADER, STSB_HEADER[:-1], (7, 8), 9, (7, 8), (), regression=True, num_classes=1
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
    num_classes=3,
    test_names={"test": "MNLI-m", "test1": "MNLI-mm"},
)
TASKS["QNLI"] = _pair(
    "QNLI", ("index", "question", "sentence", "label"), ("index", "question", "sentence"),
    (1, 2), 3, (1, 2), ("entailment", "not_entailment"),
)
TASKS["RTE"] = _pair(
    "RTE", NLI_HEADER, NLI_HEADER[:3], (1, 2), 3, (1, 2), ("entailment", "not_entailment")
)
TASKS["WNLI"] = _pair(
    "WNLI", NLI_HEADER, NLI_HEADER[:3], (1, 2), 3, (1, 2), ("0", "1"), in_fairseq_recipe=False
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
    num_classes=3,
    test_names={"test": "AX"},
    in_fairseq_recipe=False,
    label_dict_from="MNLI",
)

# ALL: MNLI before AX, so AX can reuse MNLI's label dictionary.
TASK_ORDER: List[str] = ["CoLA", "SST-2", "MRPC", "QQP", "STS-B", "MNLI", "QNLI", "RTE", "WNLI", "AX"]
# Folder names a task's files may be in, relative to the glue_data folder.
TASK_DIRS: Dict[str, Sequence[str]] = {t: (t,) for t in TASK_ORDER}
TASK_DIRS["AX"] = ("AX", "diagnostic", ".")


def get_task(name: str) -> TaskSpec:
    """The spec of `name` (exact GLUE spelling; case-insensitive match accepted)."""
    if name in TASKS:
        return TASKS[name]
    for key in TASKS:
        if key.lower() == name.lower():
            return TASKS[key]
    raise KeyError(name)
