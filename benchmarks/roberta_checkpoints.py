"""Build RoBERTa checkpoints in the exact format of the original fairseq releases
(roberta.base / roberta.large ``model.pt``): an ``args`` Namespace from the masked_lm
pre-training command line, ``decoder.sentence_encoder.*`` and ``decoder.lm_head.*`` keys with
the old ``emb_layer_norm`` name, no classification head. Only the sizes are small."""
import argparse
import shutil
from pathlib import Path

import torch
from fairseq import options, tasks

TINY = dict(layers=2, embed_dim=32, ffn_dim=64, heads=2, positions=512)


def pretraining_args(data_dir: Path, layers: int, embed_dim: int, ffn_dim: int, heads: int,
                     positions: int = 512) -> argparse.Namespace:
    parser = options.get_training_parser()
    return options.parse_args_and_arch(parser, [
        str(data_dir), "--task", "masked_lm", "--criterion", "masked_lm", "--arch", "roberta_base",
        "--encoder-layers", str(layers), "--encoder-embed-dim", str(embed_dim),
        "--encoder-ffn-embed-dim", str(ffn_dim), "--encoder-attention-heads", str(heads),
        "--tokens-per-sample", str(positions), "--max-positions", str(positions), "--optimizer", "adam",
        "--lr", "0.0006", "--lr-scheduler", "polynomial_decay", "--total-num-update", "500000",
        "--max-update", "500000", "--cpu",
    ])


def build_pretrained_roberta(dict_path: Path, workdir: Path, seed: int = 0, **sizes):
    """A randomly initialised pre-training RoBERTa model and its args."""
    sizes = {**TINY, **sizes}
    data_dir = Path(workdir) / "mlm-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(dict_path, data_dir / "dict.txt")
    args = pretraining_args(data_dir, sizes["layers"], sizes["embed_dim"], sizes["ffn_dim"], sizes["heads"],
                            sizes["positions"])
    torch.manual_seed(seed)
    task = tasks.setup_task(args)
    model = task.build_model(args)
    return model, args


def original_format_state(model) -> dict:
    """The model's weights under the original release's key names."""
    state = {}
    for key, value in model.state_dict().items():
        key = "decoder" + key[len("encoder"):] if key.startswith("encoder") else key
        state[key.replace(".layernorm_embedding.", ".emb_layer_norm.")] = value.clone()
    return state


def write_original_roberta_checkpoint(path: Path, dict_path: Path, seed: int = 0, **sizes) -> dict:
    """Write model.pt as the original release does; return its state dict."""
    path = Path(path)
    model, args = build_pretrained_roberta(dict_path, path.parent / ".build", seed=seed, **sizes)
    state = original_format_state(model)
    torch.save({
        "args": args,
        "model": state,
        "optimizer_history": [{
            "criterion_name": "MaskedLmLoss", "optimizer_name": "FairseqAdam",
            "lr_scheduler_state": {"best": None}, "num_updates": 500000,
        }],
        "extra_state": {"epoch": 1, "val_loss": 1.5},
        "last_optimizer_state": None,
    }, path)
    shutil.rmtree(path.parent / ".build")
    return state
