"""fairseq's RoBERTa GLUE fine-tuning recipe, as data: one source for scripts/finetune.py and
the Hydra YAMLs in fairseq_hire/config/finetuning (scripts/generate_recipe_yamls.py).

Hyperparameters are fairseq's (examples/roberta/README.glue.md and its config/finetuning
YAMLs), identical for base and large and for HIRE and the stock baseline. WNLI is not in
fairseq's recipe: it gets RTE's learning rate and batch size, 10 epochs of its 635 training
examples and 6% warmup (fairseq's ratio).

One deliberate difference: the best checkpoint is chosen by the task's official GLUE metric,
which our criterion reports (fairseq chooses by accuracy, and by loss for STS-B).
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Optional

SHARED_FLAGS = [
    "--task", "sentence_prediction", "--init-token", "0", "--separator-token", "2",
    "--max-tokens", "4400", "--required-batch-size-multiple", "1",
    "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--adam-eps", "1e-06",
    "--weight-decay", "0.1", "--clip-norm", "0.0", "--lr-scheduler", "polynomial_decay",
    "--dropout", "0.1", "--attention-dropout", "0.1", "--find-unused-parameters",
    "--no-epoch-checkpoints",
]
CRITERION = "sentence_prediction_hire"
WARMUP_RATIO = 0.06


@dataclass(frozen=True)
class GlueRecipe:
    task: str
    num_classes: int
    lr: float
    batch_size: int
    total_updates: int
    warmup_updates: int
    best_metric: str
    valid_subsets: str = "valid"
    max_epoch: int = 10

    @property
    def regression(self) -> bool:
        return self.num_classes == 1

    @property
    def yaml_name(self) -> str:
        return self.task.lower().replace("-", "_")

    def budget(self, train_examples: int, epochs: int) -> Dict[str, int]:
        """Updates and warmup for a shorter budget of `epochs` over `train_examples`,
        keeping the recipe's shape: linear warmup over 6%, linear decay to 0 at the end."""
        total = epochs * math.ceil(train_examples / self.batch_size)
        return {"max_epoch": epochs, "total_updates": total, "warmup_updates": max(1, round(WARMUP_RATIO * total))}

    def flags(self, epochs: Optional[int] = None, train_examples: Optional[int] = None,
              lr: Optional[float] = None) -> List[str]:
        """fairseq-train flags of this task's recipe (everything but data, paths and the model,
        whose dimensions and --max-positions come from the pretrained checkpoint)."""
        schedule = {"max_epoch": self.max_epoch, "total_updates": self.total_updates,
                    "warmup_updates": self.warmup_updates}
        if epochs is not None:
            schedule = self.budget(train_examples, epochs)
        flags = SHARED_FLAGS + [
            "--criterion", CRITERION, "--num-classes", str(self.num_classes),
            "--batch-size", str(self.batch_size), "--lr", str(lr or self.lr),
            "--total-num-update", str(schedule["total_updates"]),
            "--warmup-updates", str(schedule["warmup_updates"]),
            "--max-update", str(schedule["total_updates"]), "--max-epoch", str(schedule["max_epoch"]),
            "--valid-subset", self.valid_subsets, "--best-checkpoint-metric", self.best_metric,
        ]
        if self.best_metric != "loss":
            flags.append("--maximize-best-checkpoint-metric")
        if self.regression:
            flags.append("--regression-target")
        return flags


RECIPES = {r.task: r for r in [
    GlueRecipe("MNLI", 3, 1e-5, 32, 123873, 7432, "accuracy", valid_subsets="valid,valid1"),
    GlueRecipe("QNLI", 2, 1e-5, 32, 33112, 1986, "accuracy"),
    GlueRecipe("QQP", 2, 1e-5, 32, 113272, 28318, "acc_and_f1"),
    GlueRecipe("RTE", 2, 2e-5, 16, 2036, 122, "accuracy"),
    GlueRecipe("SST-2", 2, 1e-5, 32, 20935, 1256, "accuracy"),
    GlueRecipe("MRPC", 2, 1e-5, 16, 2296, 137, "acc_and_f1"),
    GlueRecipe("CoLA", 2, 1e-5, 16, 5336, 320, "mcc"),
    GlueRecipe("STS-B", 1, 2e-5, 16, 3598, 214, "pearson_and_spearman"),
    GlueRecipe("WNLI", 2, 2e-5, 16, 400, 24, "accuracy"),
]}

ARCHITECTURES = {
    ("hire", "base"): "roberta_hire_base",
    ("hire", "large"): "roberta_hire_large",
    ("baseline", "base"): "roberta_base",
    ("baseline", "large"): "roberta_large",
}


def recipe(task: str) -> GlueRecipe:
    for name, found in RECIPES.items():
        if name.lower() == task.lower() or found.yaml_name == task.lower():
            return found
    raise ValueError(f"unknown GLUE task {task!r}; expected one of {', '.join(RECIPES)}")
