"""Helpers shared by the glue_prep tests (no tests here).

The reference everywhere is fairseq's own recipe: examples/roberta/preprocess_GLUE_tasks.sh from
the installed fairseq, run by benchmarks/fairseq_recipe.py (the literal script in subprocesses for the
slow tests; the same script with its two Python programs replayed in-process for the fast ones).
"""
import shutil
from pathlib import Path

import numpy as np

from conftest import GPT2_BPE, SHIPPED_GLUE

REPO = Path(__file__).resolve().parents[1]
PREPARE_SH = REPO / "glue_prep" / "prepare_glue.sh"
DOWNLOAD_SH = REPO / "glue_prep" / "download_glue.sh"
VENV_PY = REPO / ".venv" / "bin" / "python"


def gpt2_tokenizer():
    from glue_prep.tokenizers import build_tokenizer

    return build_tokenizer("gpt2", encoder_json=str(GPT2_BPE / "encoder.json"),
                           vocab_bpe=str(GPT2_BPE / "vocab.bpe"))


def ours(glue_dir, task, out_dir, workers=2, max_rows=None, tokenizer=None, dict_path=None,
         force=False, log=None):
    """glue_prep in-process (the CLI does exactly this after parsing its options)."""
    from glue_prep.prepare import Options, prepare_task

    opts = Options(tokenizer=tokenizer or gpt2_tokenizer(),
                   dict_path=Path(dict_path or GPT2_BPE / "dict.txt"), workers=workers,
                   max_rows=max_rows, force=force, progress=False)
    return prepare_task(glue_dir, task, out_dir, opts, log=log or (lambda m: None))


def reference(glue_dir, task, out_dir, workers=2):
    """fairseq's recipe (in-process replay of its Python steps)."""
    from fairseq_recipe import run_recipe_inprocess

    return run_recipe_inprocess(glue_dir, task, out_dir, GPT2_BPE, workers=workers)


def load_rows(prefix):
    """Rows of a fairseq binary dataset, read with fairseq's own loader."""
    from fairseq.data import data_utils

    ds = data_utils.load_indexed_dataset(str(prefix), None, dataset_impl="mmap")
    assert ds is not None, f"no dataset at {prefix}"
    return [ds[i].numpy() for i in range(len(ds))]


def assert_rows_equal(ours_prefix, ref_prefix):
    a, b = load_rows(ours_prefix), load_rows(ref_prefix)
    assert len(a) == len(b), f"{ours_prefix}: {len(a)} rows, reference {len(b)}"
    for i, (x, y) in enumerate(zip(a, b)):
        if not np.array_equal(x, y):
            raise AssertionError(f"{ours_prefix} row {i}: {x.tolist()} != reference {y.tolist()}")
    return len(a)


def assert_same_as_recipe(ours_bin: Path, ref_bin: Path, splits_with_labels=("train", "valid")):
    """Every file the recipe wrote (but its preprocess.log) is byte-identical in ours, and
    every dataset has the same rows (read with fairseq's load_indexed_dataset)."""
    ref_files = sorted(p.relative_to(ref_bin) for p in ref_bin.rglob("*")
                       if p.is_file() and p.name != "preprocess.log")
    assert ref_files, f"the recipe wrote nothing in {ref_bin}"
    for rel in ref_files:
        assert (ours_bin / rel).is_file(), f"{rel} missing from {ours_bin}"
        for prefix in [rel.with_suffix("")] if rel.suffix == ".bin" else []:
            assert_rows_equal(ours_bin / prefix, ref_bin / prefix)
        if (ours_bin / rel).read_bytes() != (ref_bin / rel).read_bytes():
            raise AssertionError(f"{rel} differs from the recipe's")
    # label dictionaries: same symbols, same order, same counts
    if (ref_bin / "label" / "dict.txt").exists():
        assert (ours_bin / "label" / "dict.txt").read_text() == (ref_bin / "label" / "dict.txt").read_text()
    return ref_files


def truncated_copy(src: Path, dest: Path, rows: int, header=True) -> Path:
    """The first `rows` data rows of each .tsv in src (GLUE bytes unchanged), into dest."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in src.glob("*.tsv"):
        lines = f.read_bytes().split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        has_header = header and not (src.name == "CoLA" and f.name != "test.tsv")
        keep = lines[: rows + (1 if has_header else 0)]
        (dest / f.name).write_bytes(b"\n".join(keep) + b"\n")
    return dest


def rte_pairs():
    """Real sentence pairs (and labels) from GLUE's RTE train, always available (shipped)."""
    rows = []
    for line in (SHIPPED_GLUE / "RTE" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        idx, s1, s2, label = line.split("\t")
        rows.append((s1, s2, label))
    return rows


def copy_task(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def run(cmd, **kw):
    import subprocess

    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
