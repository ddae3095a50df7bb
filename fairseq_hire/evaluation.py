"""Score fine-tuned checkpoints on GLUE files through the hub interface, and write GLUE
server submissions.

The rows come from the GLUE file that glue_prep binarised (its glue_prep.json names it), read
with glue_prep's own reader, so evaluation sees the same sentences as training did; the
text goes through the hub's tokenizer, so this also checks tokenizer and dictionary.
"""
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .metrics import glue_metrics, positive_class

HEAD = "sentence_classification_head"
STSB_SCALE = 5.0  # glue_prep trains STS-B on score / 5, as fairseq's recipe does


@dataclass
class GlueSplit:
    task: str
    split: str
    examples: List[tuple]
    labels: Optional[List[str]]  # None for test splits
    index: Optional[List[str]]  # GLUE index column (test splits)
    label_names: List[str]
    regression: bool
    source: Path


def load_metadata(data_bin) -> dict:
    path = Path(data_bin) / "glue_prep.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {data_bin} was not made by glue_prep")
    return json.loads(path.read_text())


def read_glue_split(data_bin, split: str, tsv: Optional[Path] = None) -> GlueSplit:
    """The rows glue_prep binarised as `split` of `data_bin` (valid, valid1, test, test1)."""
    from glue_prep.tasks import get_task
    from glue_prep.tsv import read_split

    meta = load_metadata(data_bin)
    task = get_task(meta["task"])
    source = Path(tsv) if tsv is not None else Path(meta["source"][split])
    data = read_split(task, task.split(split), source, meta.get("max_rows"))
    return GlueSplit(
        task=meta["task"], split=split, examples=list(zip(*data.inputs)), labels=data.labels,
        index=data.index, label_names=meta.get("label_names", []), regression=meta["regression"],
        source=source,
    )


def predict(hub, rows: GlueSplit, max_sentences: int = 32) -> np.ndarray:
    """Class indices, or regression outputs on the training scale (score / 5 for STS-B)."""
    logits = hub.predict_batch(HEAD, rows.examples, max_sentences=max_sentences, return_logits=True)
    if rows.regression:
        return logits.view(-1).double().numpy()
    return logits.argmax(-1).numpy()


def score(hub, rows: GlueSplit, max_sentences: int = 32) -> Dict:
    predictions = predict(hub, rows, max_sentences)
    if rows.regression:
        targets = np.array([float(label) / STSB_SCALE for label in rows.labels])
    else:
        targets = np.array([rows.label_names.index(label) for label in rows.labels])
    positive = -1 if rows.regression else positive_class(rows.label_names)
    return {
        "task": rows.task, "split": rows.split, "examples": len(rows.examples),
        "source": str(rows.source), "metrics": glue_metrics(predictions, targets, rows.regression, positive),
    }


def write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file.
    The file keeps its permissions (a new one gets rw-r--r--, not the temporary's rw-------)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp", encoding="utf-8") as f:
        f.write(text)
    os.chmod(f.name, mode)
    os.replace(f.name, path)


def submission_lines(rows: GlueSplit, predictions: np.ndarray) -> List[str]:
    """The GLUE server's format: a header `index\tprediction`, then one row per test example
    with the label name (STS-B: the score on 0-5, clipped)."""
    lines = ["index\tprediction"]
    for index, prediction in zip(rows.index, predictions):
        if rows.regression:
            value = f"{min(max(float(prediction) * STSB_SCALE, 0.0), STSB_SCALE):.3f}"
        else:
            value = rows.label_names[int(prediction)]
        lines.append(f"{index}\t{value}")
    return lines


def write_submission(entries: Sequence[tuple], out_dir, checkpoint_file: str = "checkpoint_best.pt",
                     pack: bool = True, max_sentences: int = 32) -> List[Path]:
    """entries: (checkpoint_dir, data_bin) pairs; writes one <GLUE name>.tsv per test split
    named in each data_bin's glue_prep.json (MNLI: MNLI-m, MNLI-mm; AX-bin: AX) and, with
    `pack`, submission.zip holding them all."""
    from .hub_interface import from_pretrained

    out_dir = Path(out_dir)
    written = []
    for checkpoint_dir, data_bin in entries:
        hub = from_pretrained(str(checkpoint_dir), checkpoint_file, data_name_or_path=str(Path(data_bin).resolve()))
        for split, glue_name in load_metadata(data_bin)["test_splits"].items():
            rows = read_glue_split(data_bin, split)
            with torch.no_grad():
                lines = submission_lines(rows, predict(hub, rows, max_sentences))
            path = out_dir / f"{glue_name}.tsv"
            write_atomically(path, "\n".join(lines) + "\n")
            written.append(path)
    if pack:
        archive = out_dir / "submission.zip"
        tmp = archive.with_suffix(".zip.tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in written:
                zf.write(path, arcname=path.name)
        os.replace(tmp, archive)
        written.append(archive)
    return written
