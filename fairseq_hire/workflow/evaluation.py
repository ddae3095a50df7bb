"""Score fine-tuned checkpoints on a task's files through the hub interface (GLUE's, or a
user task's TSV, CSV or JSON Lines), and write GLUE server submissions.

The rows come from the file that glue_prep binarised (its glue_prep.json names it), read with
glue_prep's own reader, so evaluation sees the same sentences as training did, cut as
training's were when glue_prep truncated them; the text goes through the hub's tokenizer, so
this also checks tokenizer and dictionary.
"""
import io
import reprlib
import sys
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from glue_prep.atomic import write_atomically
from glue_prep.errors import GlueFormatError
from glue_prep.metadata import metadata_file, read_metadata

from ..checkpoints.head_classes import head_classes
from .. import metrics
from ..metrics import glue_metrics, positive_class

HEAD = "sentence_classification_head"
SHORT = reprlib.Repr()  # a list in an error: a hostile file's may be huge, and repr keeps it on one line
SHORT.maxlist, SHORT.maxstring = 20, 60


@dataclass
class GlueSplit:
    task: str
    split: str
    examples: List[tuple]
    labels: Optional[List[str]]  # None for test splits
    lines: List[int]  # each example's line in `source`
    index: Optional[List[str]]  # GLUE index column (test splits)
    label_names: List[str]
    regression: bool
    source: Path
    target_scale: float = 1.0  # regression: the model predicts score / target_scale (STS-B: 5)
    score_range: Optional[tuple] = None  # regression: where a submitted score is clipped to
    positive_label: Optional[str] = None
    truncate_to: Optional[int] = None  # the positions glue_prep --truncate-to cut the rows to
    metadata: Optional[Path] = None  # the glue_prep.json that names the labels


def read_glue_split(data_bin, split: str, tsv: Optional[Path] = None) -> GlueSplit:
    """The rows glue_prep binarised as `split` of `data_bin` (valid, valid1, test, test1)."""
    from glue_prep.readers.splits import read_split
    from glue_prep.tasks import get_task

    meta = read_metadata(data_bin)
    task = get_task(meta.task, data_bin)
    splits = [s.name for s in task.splits]
    if split not in splits:
        raise ValueError(f"{data_bin} has no split {split!r}; its splits are {', '.join(splits)}")
    if not task.regression and not task.labels and meta.label_names:
        # a task whose labels were collected: a label the model never learned is refused at its line
        task = replace(task, labels=tuple(meta.label_names))
    source = Path(tsv) if tsv is not None else Path(meta.source[split])
    # the rows glue_prep binarised (--max-rows: its first rows); another file is read whole
    data = read_split(task, task.split(split), source, meta.max_rows if tsv is None else None)
    return GlueSplit(
        task=meta.task, split=split, examples=list(zip(*data.inputs)), labels=data.labels, lines=data.line_numbers,
        index=data.index, label_names=meta.label_names, regression=meta.regression,
        source=source, target_scale=task.target_scale, score_range=task.score_range,
        positive_label=task.positive_label, truncate_to=meta.max_positions if meta.truncated else None,
        metadata=metadata_file(data_bin),
    )


def load_hub(checkpoint_dir, checkpoint_file: str, data_bin):
    """The fine-tuned model through the hub, on the GPU when there is one."""
    from ..hub_interface import from_pretrained

    checkpoint = Path(checkpoint_dir) / checkpoint_file
    if not checkpoint.is_file():
        raise FileNotFoundError(f"no checkpoint {checkpoint}" + ("" if Path(checkpoint_dir).is_dir() else
                                f": the folder {checkpoint_dir} does not exist"))
    meta = read_metadata(data_bin)  # a folder glue_prep did not make, or a damaged record, is refused before loading
    check_dictionaries(Path(data_bin), meta)
    hub = from_pretrained(str(checkpoint_dir), checkpoint_file, data_name_or_path=str(Path(data_bin).resolve()),
                          head=HEAD)
    return hub.cuda() if torch.cuda.is_available() else hub


def check_dictionaries(data_bin: Path, meta) -> None:
    """The dictionaries fairseq's task loads with the model: refused here, naming the file,
    rather than as fairseq's bare [Errno 2] from inside the hub."""
    needed = {"input0/dict.txt": "the token dictionary"}
    if not meta.regression:
        needed["label/dict.txt"] = f"the class dictionary of {meta.task}'s {meta.num_classes} classes"
    for name, what in needed.items():
        if not (data_bin / name).is_file():
            raise GlueFormatError(f"missing; expected {what}, which glue_prep writes beside the binaries "
                                  f"({metadata_file(data_bin).name} records them): run glue_prep again to "
                                  "rebuild the folder", data_bin / name)


def check_label_names(hub, label_names, metadata: Optional[Path]) -> None:
    """Refuse to name the head's outputs by a glue_prep.json whose label_names are not the
    head's classes in output order.

    The head's classes are those of the loaded data's label/dict.txt, in its order (fairseq's
    class indices), which the hub's task has already checked against the classes the checkpoint
    recorded (head_classes.py). glue_prep.json keeps a copy of them, by which predictions,
    targets and submissions are named: an edited copy, or one left from another build, would
    swap every label while the scripts exit 0."""
    classes = head_classes(hub.task)
    if classes is not None and label_names != classes:
        raise GlueFormatError(
            f"label_names is {SHORT.repr(label_names)}, but the model's head outputs the classes "
            f"{SHORT.repr(classes)} in that order (label/dict.txt, fairseq's class indices): expected "
            "label_names to list them in that order; run glue_prep again to rebuild the folder", metadata)


def predict_with_weights(hub, rows: GlueSplit, max_sentences: int = 32):
    """(class indices, or regression outputs on the training scale (score / 5 for STS-B);
    layer weights N x J, or None for a stock RoBERTa head)."""
    check_label_names(hub, rows.label_names, rows.metadata)
    logits, layer_weights = classify_rows(hub, rows.examples, rows.source, rows.lines,
                                          "expected rows that fit, or binaries built with glue_prep --truncate-to N "
                                          "to cut them as training did", max_sentences=max_sentences,
                                          truncate=rows.truncate_to or False)
    predictions = logits.view(-1).double().numpy() if rows.regression else logits.argmax(-1).numpy()
    return predictions, None if layer_weights is None else layer_weights.float().numpy()


def classify_rows(hub, examples, source: Path, lines: Sequence[int], advice: str, **batching):
    """hub.classify_batch of a file's rows; a row too long for the model is refused naming its
    file and line (the hub knows only its place in the batch), with `advice`."""
    from ..hub_interface import OverLengthError

    try:
        return hub.classify_batch(HEAD, examples, **batching)
    except OverLengthError as error:
        raise GlueFormatError(f"this row takes {error.positions} positions, more than the model's {error.limit}; "
                              f"{advice}", source, lines[error.index]) from None


def predict(hub, rows: GlueSplit, max_sentences: int = 32) -> np.ndarray:
    """Class indices, or regression outputs on the training scale (score / 5 for STS-B)."""
    return predict_with_weights(hub, rows, max_sentences)[0]


def targets_of(rows: GlueSplit) -> np.ndarray:
    """The labels as the model predicts them: class indices, or scores on the training scale."""
    if rows.regression:
        return np.array([float(label) / rows.target_scale for label in rows.labels])
    return np.array([rows.label_names.index(label) for label in rows.labels])


def positive_of(rows: GlueSplit) -> int:
    return -1 if rows.regression else positive_class(rows.label_names, rows.positive_label or "1")


def constant_baseline(rows: GlueSplit, targets: np.ndarray, positive: int) -> Dict:
    """Each metric of the best constant prediction (none for regression, where a constant has no
    correlation): a result at or below it learned nothing, which matters on imbalanced data."""
    return {} if rows.regression else metrics.constant_baseline(targets, positive, len(rows.label_names))


def score(hub, rows: GlueSplit, max_sentences: int = 32, per_example: bool = False) -> Dict:
    """Official metrics of the split; with `per_example`, also every prediction, target and
    (HIRE) layer-weight vector, in the file's row order."""
    if rows.labels is None:
        raise ValueError(f"the {rows.task} {rows.split} split has no labels to score (a test split); "
                         "expected a validation split, e.g. --split valid")
    predictions, layer_weights = predict_with_weights(hub, rows, max_sentences)
    targets = targets_of(rows)
    positive = positive_of(rows)
    result = {
        "task": rows.task, "split": rows.split, "examples": len(rows.examples),
        "source": str(rows.source), "metrics": glue_metrics(predictions, targets, rows.regression, positive),
        "constant_baseline": constant_baseline(rows, targets, positive),
    }
    if per_example:
        result["per_example"] = {
            "regression": rows.regression, "label_names": rows.label_names, "positive_class": positive,
            "predictions": predictions.tolist(), "targets": targets.tolist(),
            "layer_weights": None if layer_weights is None else np.round(layer_weights, 6).tolist(),
            "first_scored_layer": first_scored_layer(hub),
        }
    return result


def first_scored_layer(hub) -> Optional[int]:
    head = hub.model.classification_heads[HEAD]
    return getattr(head, "first_scored_layer", None)


def on_task_scale(output: float, target_scale: float, score_range) -> float:
    """A regression output (trained on score / target_scale) as a score on the task's own
    scale, clipped to its range."""
    low, high = score_range or (-np.inf, np.inf)
    return min(max(float(output) * target_scale, low), high)


def submission_lines(rows: GlueSplit, predictions: np.ndarray) -> List[str]:
    """The GLUE server's format: a header `index\tprediction`, then one row per test example
    with the label name (STS-B: the score on 0-5, clipped to the task's range)."""
    lines = ["index\tprediction"]
    for index, prediction in zip(rows.index, predictions):
        if rows.regression:
            value = f"{on_task_scale(prediction, rows.target_scale, rows.score_range):.3f}"
        else:
            value = rows.label_names[int(prediction)]
        lines.append(f"{index}\t{value}")
    return lines


def write_submission(entries: Sequence[tuple], out_dir, checkpoint_file: str = "checkpoint_best.pt",
                     pack: bool = True, max_sentences: int = 32, allow_partial: bool = False) -> List[Path]:
    """entries: (checkpoint_dir, data_bin) pairs; writes one <GLUE name>.tsv per test split
    named in each data_bin's glue_prep.json (MNLI: MNLI-m, MNLI-mm; AX-bin: AX) and, with
    `pack`, submission.zip holding them all. Binaries of the first rows only (glue_prep
    --max-rows) are refused unless `allow_partial`; so are two pairs that make the same file, and
    a test file whose rows differ in number from those glue_prep binarised."""
    out_dir = Path(out_dir)
    made_by = {}  # file -> the pair that makes it, every pair's checked before any model is loaded
    metas = [read_metadata(data_bin) for _, data_bin in entries]
    for (checkpoint_dir, data_bin), meta in zip(entries, metas):
        if not meta.test_splits:
            raise GlueFormatError("has no test split to submit; expected binaries glue_prep built with the "
                                  "task's test file", metadata_file(data_bin))
        for glue_name in meta.test_splits.values():
            if glue_name in made_by:
                raise ValueError(f"--task {checkpoint_dir} {data_bin} and --task {made_by[glue_name]} both make "
                                 f"{glue_name}.tsv; expected one model per GLUE test file")
            made_by[glue_name] = f"{checkpoint_dir} {data_bin}"
    files = {}  # every task predicted before any file is written: a refused task leaves none behind
    for (checkpoint_dir, data_bin), meta in zip(entries, metas):
        hub = load_hub(checkpoint_dir, checkpoint_file, data_bin)
        if meta.max_rows is not None and not allow_partial:
            raise GlueFormatError(f"was built with --max-rows {meta.max_rows}; the GLUE server needs every test "
                                  "row: run glue_prep again without it (or pass --allow-partial for a trial "
                                  "submission of those rows)", metadata_file(data_bin))
        for split, glue_name in meta.test_splits.items():
            rows = read_glue_split(data_bin, split)
            if len(rows.examples) != meta.splits[split]:
                raise GlueFormatError(f"has {len(rows.examples)} rows now, {meta.splits[split]} when glue_prep "
                                      f"binarised it ({metadata_file(data_bin)}): run glue_prep again", rows.source)
            with torch.no_grad():
                lines = submission_lines(rows, predict(hub, rows, max_sentences))
            files[out_dir / f"{glue_name}.tsv"] = "\n".join(lines) + "\n"
    archive = out_dir / "submission.zip"
    blocked = [path for path in [*files, *([archive] if pack else [])] if path.is_dir()]
    if blocked:  # refused before any file is replaced
        raise IsADirectoryError(f"{blocked[0]} is a folder; expected a file name free for the submission")
    for path, text in files.items():
        write_atomically(path, text)
    written = list(files)
    if pack:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in written:
                zf.write(path, arcname=path.name)
        write_atomically(archive, buffer.getvalue())
        written.append(archive)
    return written


def main(argv=None) -> int:
    """scripts/evaluate.py: score a fine-tuned checkpoint on a dev set, as JSON."""
    import argparse
    import json

    parser = argparse.ArgumentParser(
        prog="evaluate.py",
        description="Score a fine-tuned checkpoint on a dev set through the hub interface, with the "
                    "task's official metrics (equal to the criterion's validation figures).")
    parser.add_argument("checkpoint_dir")
    parser.add_argument("data_bin", help="the task's glue_prep output; its glue_prep.json names the dev file")
    parser.add_argument("--checkpoint", default="checkpoint_best.pt")
    parser.add_argument("--split", default="valid", help="valid (MNLI: valid = matched, valid1 = mismatched)")
    parser.add_argument("--tsv", type=Path, help="score this file (same format) instead of the one glue_prep used")
    parser.add_argument("--max-sentences", type=int, default=32)
    parser.add_argument("--per-example", action="store_true",
                        help="also write every prediction, target and (HIRE) layer-weight vector")
    parser.add_argument("--out", type=Path, help="JSON file to write (default: print only)")
    args = parser.parse_args(argv)

    from glue_prep.errors import GlueFormatError

    from ..checkpoints.loading import CheckpointError

    try:
        hub = load_hub(args.checkpoint_dir, args.checkpoint, args.data_bin)
        with torch.no_grad():
            result = score(hub, read_glue_split(args.data_bin, args.split, args.tsv), args.max_sentences,
                           per_example=args.per_example)
        result["checkpoint"] = str(Path(args.checkpoint_dir) / args.checkpoint)
        if args.out:
            write_atomically(args.out, json.dumps(result, indent=1) + "\n")
    except (CheckpointError, GlueFormatError, OSError, ValueError, KeyError) as error:
        print(f"evaluate: error: {error}", file=sys.stderr)
        return 2
    shown = {k: v for k, v in result.items() if k != "per_example"}
    print(json.dumps(shown, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
