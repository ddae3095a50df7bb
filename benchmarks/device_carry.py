#!/usr/bin/env python
"""What a lent GPU machine needs for the quality study and the speed benchmark, packed to fit
the device tool's 64 MiB transfer, and unpacked there (benchmarks/gpu_replicate.sh).

The machine has Python 3.12 and torch but no fairseq and no network, and all-MiniLM-L6-v2's
converted checkpoint (87 MB in float32) alone is over the limit. So `pack`:

- fairseq-fixed and the packages it needs that the machine lacks, as cp312 wheels from the
  registry, unpacked into one tar.xz, without fairseq's examples/ and the extensions that
  sentence classification never loads (libnat, libbase, the alignment binding);
- the checkpoint with its float tensors in float16, which loses nothing for a GPU study:
  fairseq's fp16 trainer casts the model to half before it loads the pretrained weights, so
  the float32 values never reach training. The two bytes of each value are stored as two
  planes (high bytes, then low bytes) and xz-compressed; shared tensors (the tied embedding
  and LM-head weight) are stored once;
- the glue_prep binaries of the study's tasks without their test split (training and scoring
  read train and valid only), the vocabulary once per task, and the dev TSVs scoring reads,
  their paths in glue_prep.json rewritten there;
- the speed benchmark's GPT-2 binaries of RTE and MRPC (without the BPE files, which it does
  not read), and MRPC's train.tsv (speed.py reads real batches only for a task whose
  train.tsv it finds; RTE's is in glue_prep/data).

    python benchmarks/device_carry.py pack .devcarry --tasks MRPC RTE     # here (converts the
                                                                          # encoder if needed)
    python3 benchmarks/device_carry.py unpack .devcarry /tmp/work           # there
"""
import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from glue_prep.metadata import read_metadata, write_metadata  # noqa: E402
WHEELS = ["fairseq-fixed==0.12.3.1", "bitarray==3.12.3"]
# pure Python, taken from this environment: antlr4 4.9 (omegaconf's pin) has no wheel
PURE = ["hydra", "omegaconf", "antlr4"]
UNUSED = ["fairseq/examples", "fairseq/libnat.*.so", "fairseq/libbase.*.so", "alignment_train_cpu_binding.*.so"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]


def pack_site(carry: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        wheels, site = Path(tmp) / "wheels", Path(tmp) / "site"
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.12", "--implementation", "cp",
                        *[f"--platform={p}" for p in PLATFORMS], "-d", str(wheels), *WHEELS], check=True)
        for wheel in wheels.glob("*.whl"):
            zipfile.ZipFile(wheel).extractall(site)
        here = Path(__import__("omegaconf").__file__).parents[1]
        for name in PURE:
            shutil.copytree(here / name, site / name, ignore=shutil.ignore_patterns("__pycache__"))
            for info in here.glob(f"{name}*.dist-info"):
                shutil.copytree(info, site / info.name)
        for pattern in UNUSED:
            for path in site.glob(pattern):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        with tarfile.open(carry / "site.tar.xz", "w:xz") as tar:
            tar.add(site, arcname=".")


def pack_checkpoint(checkpoint: Path, carry: Path) -> None:
    import numpy as np
    import torch

    from fairseq_hire.checkpoints.loading import load_state

    state = load_state(checkpoint)
    manifest, planes, seen = [], [], {}
    for key, tensor in state["model"].items():
        if not tensor.is_floating_point():
            manifest.append({"key": key, "kept": True})
            continue
        storage = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if storage not in seen:
            seen[storage] = len(planes)
            planes.append(tensor.detach().half().contiguous().view(torch.int16).reshape(-1).numpy())
        manifest.append({"key": key, "shape": list(tensor.shape), "index": seen[storage]})
    state["model"] = {m["key"]: state["model"][m["key"]] for m in manifest if m.get("kept")}
    torch.save(state, carry / "skeleton.pt")
    (carry / "manifest.json").write_text(json.dumps(manifest))
    pairs = np.concatenate(planes).view(np.uint8).reshape(-1, 2)  # (low, high) bytes: x86-64 both ends
    with open(carry / "weights.planes", "wb") as out:
        out.write(pairs[:, 1].tobytes())
        out.write(pairs[:, 0].tobytes())
    subprocess.run(["xz", "-T1", "-6", "-f", str(carry / "weights.planes")], check=True)


def unpack_checkpoint(carry: Path, out: Path) -> None:
    import numpy as np
    import torch

    from fairseq_hire.checkpoints.loading import safe_torch_load

    # the weights come from the planes (the skeleton has none, which load_state refuses);
    # model.pt is checked whole wherever it is loaded
    state = safe_torch_load(carry / "skeleton.pt")
    manifest = json.loads((carry / "manifest.json").read_text())
    raw = subprocess.run(["xz", "-dc", str(carry / "weights.planes.xz")], check=True, capture_output=True).stdout
    half = len(raw) // 2
    values = np.empty((half, 2), dtype=np.uint8)
    values[:, 1], values[:, 0] = np.frombuffer(raw[:half], np.uint8), np.frombuffer(raw[half:], np.uint8)
    flat = torch.from_numpy(values.reshape(-1).view(np.int16).copy()).view(torch.float16)
    tensors, offset, model = [], 0, {}
    for entry in manifest:
        if entry.get("kept"):
            model[entry["key"]] = state["model"][entry["key"]]
            continue
        if entry["index"] == len(tensors):
            count = int(np.prod(entry["shape"], dtype=np.int64))
            tensors.append(flat[offset:offset + count].view(entry["shape"]))
            offset += count
        model[entry["key"]] = tensors[entry["index"]]
    if offset != flat.numel():
        raise ValueError(f"{carry}: {flat.numel() - offset} values left over after the manifest's tensors")
    state["model"] = model
    out.mkdir(parents=True, exist_ok=True)
    torch.save(state, out / "model.pt")


def copy_binaries(source: Path, target: Path, dev_files: bool = True) -> None:
    """A glue_prep folder without its test split; the dictionaries equal to input0's (the
    encoder's vocabulary, repeated per input) are listed in copies.txt instead of copied. With
    dev_files, the dev TSVs its glue_prep.json names go along in sources/: scoring reads the
    dev rows from them, and their recorded paths are this machine's."""
    vocabulary = (source / "input0" / "dict.txt").read_bytes()
    copies = []
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_dir() or relative.name.startswith("test."):
            continue
        if relative.name == "dict.txt" and relative.parent.name != "input0" and path.read_bytes() == vocabulary:
            copies.append(str(relative))
            continue
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target / relative)
    (target / "copies.txt").write_text("".join(f"{c}\n" for c in copies))
    if dev_files:
        for split, tsv in read_metadata(source).source.items():
            if split.startswith("valid"):
                (target / "sources").mkdir(exist_ok=True)
                shutil.copy2(tsv, target / "sources" / f"{split}.tsv")


def restore_binaries(source: Path, target: Path) -> None:
    shutil.copytree(source, target, dirs_exist_ok=True)
    for relative in (target / "copies.txt").read_text().split():
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(target / "input0" / "dict.txt", target / relative)
    meta = read_metadata(target)
    carried = sorted((target / "sources").glob("*.tsv")) if (target / "sources").is_dir() else []
    write_metadata(target, replace(meta, source={**meta.source, **{tsv.stem: str(tsv.resolve()) for tsv in carried}}))


def pack(args) -> None:
    import quality  # the study's encoder and binaries, made here if missing
    import speed_setup  # the speed benchmark's binaries, likewise

    carry = args.carry
    carry.mkdir(parents=True, exist_ok=True)
    pack_site(carry)
    minilm = quality.ensure_minilm(args.work)
    pack_checkpoint(minilm / "model.pt", carry)
    shutil.copy2(minilm / "dict.txt", carry / "dict.txt")
    for task in args.tasks:
        copy_binaries(quality.ensure_data(args.glue_data, task, minilm, args.work), carry / "data" / f"{task}-bin")
    for task in ["RTE", "MRPC"]:
        copy_binaries(speed_setup.gpt2_binaries(args.glue_data, task), carry / "speed" / f"{task}-bin", dev_files=False)
        shutil.rmtree(carry / "speed" / f"{task}-bin" / "tokenizer")  # GPT-2's BPE files: in the repo
    (carry / "glue" / "MRPC").mkdir(parents=True, exist_ok=True)
    shutil.copy2(args.glue_data / "MRPC" / "train.tsv", carry / "glue" / "MRPC" / "train.tsv")
    size = sum(p.stat().st_size for p in carry.rglob("*") if p.is_file())
    print(f"{carry}: {size / 2 ** 20:.1f} MiB")


def unpack(args) -> None:
    import speed_setup

    carry, work = args.carry, args.work
    unpack_checkpoint(carry, work / "minilm")
    shutil.copy2(carry / "dict.txt", work / "minilm" / "dict.txt")
    for folder in (carry / "data").iterdir():
        restore_binaries(folder, work / "data" / folder.name)
    for folder in (carry / "speed").iterdir():
        restore_binaries(folder, speed_setup.WORK / "data" / folder.name)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    packing = sub.add_parser("pack")
    packing.add_argument("carry", type=Path)
    packing.add_argument("--tasks", nargs="+", default=["MRPC", "RTE"])
    packing.add_argument("--work", type=Path, default=REPO / "benchmarks" / "runs")
    packing.add_argument("--glue-data", type=Path, default=REPO.parent / "shared" / "glue_data")
    unpacking = sub.add_parser("unpack")
    unpacking.add_argument("carry", type=Path)
    unpacking.add_argument("work", type=Path)
    args = parser.parse_args(argv)
    pack(args) if args.command == "pack" else unpack(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
