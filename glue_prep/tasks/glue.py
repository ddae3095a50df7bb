"""The GLUE tasks: each one's files and columns, labels, official metric, submission names, where
download_glue.sh fetches it, and fairseq's RoBERTa fine-tuning recipe for it (learning rate,
batch size, updates, warmup).

Column numbers are 0-based; fairseq's examples/roberta/preprocess_GLUE_tasks.sh uses the same
columns 1-based (``cut -f``). Header names are those of the files GLUE distributes.
"""
from typing import Dict, List

from .spec import Recipe, SplitSpec, TaskSpec

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
