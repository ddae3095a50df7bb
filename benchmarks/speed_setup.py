"""What benchmarks/speed.py measures on: the sizes and configurations, their FLOP counts, the
models (built as fairseq-train builds them) and the workloads (fixed shapes, and real GLUE
training batches drawn by fairseq's own batching), and the clock every section reads (timed).
WORK and GLUE are set by speed.py's main."""
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from fairseq_hire.modules.options import HEADS, HireOptions  # noqa: E402
from fairseq_hire.workflow.recipes import recipe  # noqa: E402

HEAD = "sentence_classification_head"
WORK = REPO / "benchmarks" / "runs" / "speed"
GLUE = REPO.parent / "shared" / "glue_data"  # --glue-data
SIZES = {
    "minilm": dict(layers=6, embed_dim=384, ffn_dim=1536, heads=12),
    "base": dict(layers=12, embed_dim=768, ffn_dim=3072, heads=12),
    "large": dict(layers=24, embed_dim=1024, ffn_dim=4096, heads=16),
}
# fairseq's stock architecture, every head of the comparison (modules/options.HEADS) but the
# stock preset (the same computation as the stock architecture), and HIRE with smaller GRUs
CONFIGS = {
    "stock": ("roberta_base", []),
    **{name: ("roberta_hire_base", preset.options.flags()) for name, preset in HEADS.items() if name != "stock"},
    "hire-d4": ("roberta_hire_base", ["--hire-gru-dim", "d/4"]),
    "hire-d8": ("roberta_hire_base", ["--hire-gru-dim", "d/8"]),
}
DEFAULT_CONFIGS = ["stock", "hire", "hire-scalar-mix", "hire-d4", "hire-d8"]


def encoder_macs(size, padded_lengths):
    """Multiply-accumulates of the transformer layers over all positions (padding included:
    the encoder computes it). padded_lengths: the batch's padded length, once per example."""
    d, f, L = size["embed_dim"], size["ffn_dim"], size["layers"]
    return sum(L * (4 * d * d + 2 * d * f + 2 * T * d) * T for T in padded_lengths)


def hire_macs(size, gru_dim, options: HireOptions, real_lengths):
    """The head's extra multiply-accumulates over real tokens (its GRUs skip padding)."""
    d, L, h = size["embed_dim"], size["layers"], gru_dim
    tokens = sum(real_lengths)
    fusion = 2 * 3 * (4 * d * h + h * h) if options.fusion else 0  # 1-layer BiGRU on 4d inputs
    if options.extractor == "gru":  # 2-layer BiGRU on every layer: layer 1 reads d, layer 2 reads 2h
        extractor_macs = L * (2 * 3 * (d * h + h * h) + 2 * 3 * (2 * h * h + h * h) + d)
    else:  # a weighted sum, mean or concatenation of the layers
        extractor_macs = L * d
    return tokens * (extractor_macs + fusion)


def gru_dim_of(config, size):
    flags = CONFIGS[config][1]
    d = size["embed_dim"]
    if "--hire-gru-dim" in flags:
        return d // int(flags[flags.index("--hire-gru-dim") + 1].split("/")[1])
    return d // 2


def options_of(config) -> HireOptions:
    return HEADS[config].options if config in HEADS else HireOptions()


def flop_ratio(config, size, batches):
    if config == "stock":
        return 1.0
    padded = [b.shape[1] for b in batches for _ in range(b.shape[0])]
    real = [int(n) for b in batches for n in b.ne(1).sum(1)]
    return 1 + hire_macs(size, gru_dim_of(config, size), options_of(config), real) / encoder_macs(size, padded)


def dict_dir(kind):
    """A data folder holding only the dictionaries a sentence_prediction task reads."""
    from fairseq_setup import write_task_dicts

    path = WORK / f"dicts-{kind}"
    if not path.exists():
        write_task_dicts(path)
    return path


def build_model(config, size, device, half):
    from fairseq_setup import build_trainer, finetune_args

    arch, flags = CONFIGS[config]
    flags = [str(size["embed_dim"] // int(x.split("/")[1])) if x.startswith("d/") else x for x in flags]
    args = finetune_args(dict_dir("gpt2"), arch=arch, extra=[*flags, "--max-positions", "512"], sizes=size)
    torch.manual_seed(0)
    model = build_trainer(args).model.train()
    model = model.to(device)
    return model.half() if half else model


def gpt2_binaries(source: Path, task: str) -> Path:
    """glue_prep's GPT-2 binaries of `task` from the GLUE folder `source`, made once under WORK."""
    data = WORK / "data"
    if not (data / f"{task}-bin" / "glue_prep.json").exists():
        subprocess.run([sys.executable, "-m", "glue_prep", str(source), task, str(data), "--no-progress", "--force"],
                       check=True, cwd=REPO, capture_output=True)
    return data / f"{task}-bin"


def real_batches(task, count, seed=1):
    """The first `count` training batches fairseq's sentence_prediction task would draw
    (recipe batch size, shuffled), from glue_prep's GPT-2 binaries of the real files."""
    from fairseq import options, tasks

    source = GLUE if (GLUE / task / "train.tsv").exists() else REPO / "glue_prep" / "data"
    if source != GLUE:
        print(f"{task}: no files in {GLUE}, using {source}", flush=True)
    if not (source / task / "train.tsv").exists():
        return None
    data_bin = gpt2_binaries(source, task)
    batch_size = recipe(task).batch_size
    args = options.parse_args_and_arch(options.get_training_parser(), [
        str(data_bin), "--task", "sentence_prediction", "--num-classes", "2", "--init-token", "0",
        "--separator-token", "2", "--arch", "roberta_base", "--criterion", "sentence_prediction",
        "--max-positions", "512"])
    fairseq_task = tasks.setup_task(args)
    fairseq_task.load_dataset("train")
    itr = fairseq_task.get_batch_iterator(fairseq_task.dataset("train"), max_tokens=4400, max_sentences=batch_size,
                                          max_positions=512, seed=seed).next_epoch_itr(shuffle=True)
    return [next(itr)["net_input"]["src_tokens"] for _ in range(count)]


def workloads(size_name, quick, fixed_only=False):
    g = torch.Generator().manual_seed(0)

    def fixed(B, T):
        tokens = torch.randint(4, 30000, (B, T), generator=g)
        tokens[:, 0], tokens[:, -1] = 0, 2
        return [tokens]

    loads = {"B8xT128": fixed(8, 128)}
    if size_name == "base" and not quick:
        loads["B8xT512"] = fixed(8, 512)
    count = 2 if quick or size_name == "large" else 4
    for task in () if fixed_only else ("RTE", "MRPC"):
        batches = real_batches(task, count)
        if batches is not None:
            loads[f"{task} batches"] = batches
    return loads


def timed(fn, device):
    """Seconds fn takes, the GPU's queued work included (synchronised before and after)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start
