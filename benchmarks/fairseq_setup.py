"""Build fairseq tasks, models and trainers the way fairseq-train does, for tests."""
import shutil
from pathlib import Path

from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.trainer import Trainer

from roberta_checkpoints import TINY

REPO = Path(__file__).resolve().parents[1]
USER_DIR = REPO / "fairseq_hire"
GPT2_DICT = USER_DIR / "assets" / "gpt2_bpe" / "dict.txt"


def write_task_dicts(data_dir: Path, labels=("entailment", "not_entailment")) -> Path:
    """The dictionaries a sentence_prediction(_hire) task reads (no data needed to build a model)."""
    for name in ("input0", "input1"):
        (data_dir / name).mkdir(parents=True, exist_ok=True)
        shutil.copy(GPT2_DICT, data_dir / name / "dict.txt")
    if labels:
        (data_dir / "label").mkdir(exist_ok=True)
        (data_dir / "label" / "dict.txt").write_text("".join(f"{label} 10\n" for label in labels))
    return data_dir


def tiny_arch_flags(sizes=TINY):
    return [
        "--encoder-layers", str(sizes["layers"]), "--encoder-embed-dim", str(sizes["embed_dim"]),
        "--encoder-ffn-embed-dim", str(sizes["ffn_dim"]),
        "--encoder-attention-heads", str(sizes["heads"]),
    ]


def finetune_args(data_dir, arch="roberta_hire_base", num_classes=2, extra=(), sizes=TINY):
    """Namespace of a GLUE fine-tuning command line (fairseq's RoBERTa recipe)."""
    criterion = "sentence_prediction_hire"
    argv = [
        str(data_dir), "--user-dir", str(USER_DIR), "--task", "sentence_prediction_hire",
        "--criterion", criterion, "--arch", arch, "--num-classes", str(num_classes),
        "--init-token", "0", "--separator-token", "2", "--max-positions", "512",
        "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--adam-eps", "1e-6",
        "--weight-decay", "0.1", "--lr", "1e-5", "--lr-scheduler", "polynomial_decay",
        "--total-num-update", "100", "--warmup-updates", "6", "--batch-size", "16",
        "--dropout", "0.1", "--attention-dropout", "0.1", "--cpu", "--seed", "1",
        *tiny_arch_flags(sizes), *extra,
    ]
    if num_classes == 1:
        argv.append("--regression-target")
    return options.parse_args_and_arch(options.get_training_parser(), argv)


def build_trainer(args):
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    return Trainer(cfg, task, model, criterion)


def restore(trainer, checkpoint):
    """What `fairseq-train --restore-file CHECKPOINT --reset-optimizer --reset-dataloader
    --reset-meters --reset-lr-scheduler` does to the model (in a run of the plugin's task, through
    the safe loader)."""
    from fairseq_hire.checkpoints.saving import plugin_checkpoints

    with plugin_checkpoints():
        return trainer.load_checkpoint(
            str(checkpoint), reset_optimizer=True, reset_lr_scheduler=True, reset_meters=True
        )


def save(trainer, path, extra_state):
    """What fairseq-train's checkpoint_utils.save_checkpoint does to write one file (in a run of
    the plugin's task, atomically)."""
    from fairseq_hire.checkpoints.saving import plugin_checkpoints

    trainer.consolidate_optimizer()
    with plugin_checkpoints():
        trainer.save_checkpoint(str(path), extra_state)
