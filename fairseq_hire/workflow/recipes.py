"""fairseq's RoBERTa GLUE fine-tuning recipe as fairseq-train flags: one source for
scripts/finetune.py, the comparison and the Hydra YAMLs (scripts/generate_recipe_yamls.py
turns these very flags into YAML).

The per-task schedule (learning rate, batch size, updates, warmup) and the metric
checkpoints are selected by come from the task registry (``glue_prep.tasks``, whose
``get_task`` resolves a GLUE name, a task file or a user task's binaries); the flags
every task shares are written once, in SHARED_FLAGS, identical for base and large and for
HIRE and every other head. One deliberate difference to fairseq: the best checkpoint is
chosen by the task's official GLUE metric, which our criterion reports (fairseq chooses by
accuracy, and by loss for STS-B).

A user's task (a task file, see glue_prep/tasks/task_files.py) that sets no schedule gets one
derived from its data: fairseq's recipe for a task of that size. Batch size 16 below 10,000
training examples (RTE, MRPC, CoLA, STS-B) and 32 from there (SST-2, QNLI, QQP, MNLI),
learning rate 1e-5 (the recipe's rate for five of its eight tasks), 10 epochs, warmup 6% of
the updates, linear decay to 0.
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Optional

from glue_prep.tasks import TASKS, Recipe, TaskSpec, get_task

from .passthrough import UpdateShape

SHARED_FLAGS = [
    "--task", "sentence_prediction_hire", "--init-token", "0", "--separator-token", "2",
    "--max-tokens", "4400", "--required-batch-size-multiple", "1",
    "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--adam-eps", "1e-06",
    "--weight-decay", "0.1", "--clip-norm", "0.0", "--lr-scheduler", "polynomial_decay",
    "--dropout", "0.1", "--attention-dropout", "0.1", "--find-unused-parameters",
    "--no-epoch-checkpoints",
]
# on a GPU, fairseq's recipe trains in half precision with these loss-scaling settings
FP16_FLAGS = ["--fp16", "--fp16-init-scale", "4", "--threshold-loss-scale", "1", "--fp16-scale-window", "128"]
CRITERION = "sentence_prediction_hire"
WARMUP_RATIO = 0.06
LARGE_TASK_EXAMPLES = 10_000  # from here fairseq's recipe uses batch size 32
DERIVED_LR = 1e-5
DERIVED_EPOCHS = 10

ARCHITECTURES = {
    ("hire", "base"): "roberta_hire_base",
    ("hire", "large"): "roberta_hire_large",
    ("baseline", "base"): "roberta_base",
    ("baseline", "large"): "roberta_large",
}


@dataclass(frozen=True)
class Schedule:
    lr: float
    batch_size: int
    total_updates: int
    warmup_updates: int
    max_epoch: int


def budget(updates_per_epoch: int, epochs: int) -> Dict[str, int]:
    """Updates and warmup for `epochs` of `updates_per_epoch`: linear warmup over 6%, linear
    decay to 0 at the end (the recipe's shape)."""
    total = epochs * updates_per_epoch
    return {"max_epoch": epochs, "total_updates": total, "warmup_updates": warmup_of(total)}


def warmup_of(total_updates: int) -> int:
    return max(1, round(WARMUP_RATIO * total_updates))


@dataclass(frozen=True)
class TaskRecipe:
    task: TaskSpec

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def best_metric(self) -> str:
        return self.task.metric

    @property
    def regression(self) -> bool:
        return self.task.regression

    @property
    def num_classes(self) -> Optional[int]:
        return self.task.num_classes

    @property
    def batch_size(self) -> Optional[int]:
        return self.task.recipe.batch_size if self.task.recipe else None

    @property
    def lr(self) -> Optional[float]:
        return self.task.recipe.lr if self.task.recipe else None

    @property
    def valid_subsets(self) -> str:
        return ",".join(self.task.valid_subsets)

    @property
    def yaml_name(self) -> str:
        return self.task.name.lower().replace("-", "_")

    def schedule(self, epochs: Optional[int] = None, train_examples: Optional[int] = None,
                 lr: Optional[float] = None, batch_size: Optional[int] = None,
                 update_shape: UpdateShape = UpdateShape()) -> Schedule:
        """The task's schedule; what the task does not fix is derived from the data.

        `epochs` asks for another budget: that many epochs, warmup 6%. Otherwise a budget the
        task fixes in updates (GLUE's recipes, a task file's total_updates) is kept with its
        warmup; another batch per update scales both, so that the run still sees as many examples.
        A budget in epochs (a task file's, else 10) gives the updates from the data, and a task
        file's warmup_updates, if any, is kept, scaled in the same way.

        `batch_size` is fairseq's --batch-size, per worker and forward pass; one update takes
        `update_shape.batches` of them (workers x --update-freq), and fairseq counts the budget
        in updates: an epoch of N examples is ceil(N / (batch_size x batches)) updates, fewer
        with --skip-remainder-batch (``UpdateShape.updates_per_epoch``)."""
        given = self.task.recipe or Recipe(max_epoch=None)
        asked = {"epochs": epochs, "lr": lr, "batch_size": batch_size}
        for name, value in asked.items():
            if value is not None and not 0 < value < math.inf:
                raise ValueError(f"{self.name}: {name} {value!r}; expected a positive number, finite")

        def derived_batch():
            if train_examples is None:
                raise ValueError(f"{self.name}: the batch size follows from the training set's size: "
                                 "binarise the data first (glue_prep), then ask again")
            return 16 if train_examples < LARGE_TASK_EXAMPLES else 32

        batch = batch_size or given.batch_size or derived_batch()
        update_batch = batch * update_shape.batches  # examples per update, over every worker
        rate = lr or given.lr or DERIVED_LR

        def scaled(updates):  # the task's updates are of its own batch: as many examples in ours
            return max(1, round(updates * (given.batch_size or derived_batch()) / update_batch))

        if epochs is None and given.total_updates:
            total = scaled(given.total_updates)
            warmup = scaled(given.warmup_updates) if given.warmup_updates else warmup_of(total)
            # 0 is fairseq's "no epoch limit": a budget in updates ends at its last update
            max_epoch = given.max_epoch or 0
        else:
            if train_examples is None:
                raise ValueError(f"{self.name}: the number of updates follows from the training set's size: "
                                 "binarise the data first (glue_prep), then ask again")
            per_epoch = update_shape.updates_per_epoch(train_examples, batch)
            if per_epoch < 1:
                raise ValueError(
                    f"{self.name}: --skip-remainder-batch drops each worker's last batch, full or not: {train_examples} "
                    f"training examples in batches of {batch} over {update_shape.workers} worker(s) leave fewer than "
                    f"--update-freq {update_shape.update_freq} batches a worker, so no update; expected more "
                    "examples, a smaller batch, or no --skip-remainder-batch")
            length = budget(per_epoch, epochs or given.max_epoch or DERIVED_EPOCHS)
            total, max_epoch = length["total_updates"], length["max_epoch"]
            warmup = scaled(given.warmup_updates) if epochs is None and given.warmup_updates else length["warmup_updates"]
        if warmup >= total:
            raise ValueError(f"{self.name}: {warmup} warmup updates in a run of {total} updates; expected "
                             "fewer warmup updates than the run has (a shorter warmup_updates, or more epochs)")
        return Schedule(rate, batch, total, warmup, max_epoch)

    def flags(self, epochs: Optional[int] = None, train_examples: Optional[int] = None, lr: Optional[float] = None,
              batch_size: Optional[int] = None, num_classes: Optional[int] = None,
              update_shape: UpdateShape = UpdateShape()) -> List[str]:
        """fairseq-train flags of this task's recipe (everything but data, paths and the model,
        whose dimensions and --max-positions come from the pretrained checkpoint)."""
        schedule = self.schedule(epochs, train_examples, lr, batch_size, update_shape)
        classes = num_classes or self.num_classes
        if classes is None:
            raise ValueError(f"{self.name}: its labels are collected from the training file: binarise the "
                             "data first (glue_prep records them), then ask again")
        flags = SHARED_FLAGS + [
            "--criterion", CRITERION, "--num-classes", str(classes),
            "--batch-size", str(schedule.batch_size), "--lr", str(schedule.lr),
            "--total-num-update", str(schedule.total_updates),
            "--warmup-updates", str(schedule.warmup_updates),
            "--max-update", str(schedule.total_updates), "--max-epoch", str(schedule.max_epoch),
            "--valid-subset", self.valid_subsets, "--best-checkpoint-metric", self.best_metric,
        ]
        if self.best_metric != "loss":
            flags.append("--maximize-best-checkpoint-metric")
        if self.regression:
            flags.append("--regression-target")
        if self.task.positive_label not in (None, "1"):  # "1" is the criterion's default
            flags += ["--f1-positive-label", self.task.positive_label]
        return flags


RECIPES = {name: TaskRecipe(task) for name, task in TASKS.items() if task.recipe is not None}


def recipe(task, data_bin=None) -> TaskRecipe:
    """The recipe of a GLUE task (by name), a user's task (file, binaries) or a TaskSpec
    (glue_prep.tasks.get_task)."""
    return TaskRecipe(get_task(task, data_bin))
