"""Predict every row of a file with a fine-tuned model: ``scripts/predict.py``'s code.

    python scripts/predict.py CHECKPOINT_DIR DATA_BIN INPUT --out OUTPUT [--checkpoint checkpoint_best.pt]
        [--truncate] [--max-sentences 32]

INPUT is read in the task's own format (a user task's TSV, CSV or JSON Lines, by the columns
its task file names; a GLUE task's test-file layout), without labels. Rows go through the
hub in batches grouped by length; OUTPUT (.jsonl, or .tsv) gets one row per input row, in
order: its id (the task's id column, else the row number), the predicted label and its
probability (JSON Lines also every class's probability; regression: the score on the task's
own scale, clipped to its range as the GLUE submission is). A row longer than the model's
positions is refused with its file and line unless --truncate cuts it, longest sentence
first; on binaries built with glue_prep --truncate-to N every row is cut to N, as training's
were (and evaluate.py's are). The output is written atomically.
"""
import argparse
import csv
import io
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

from glue_prep.atomic import write_atomically
from glue_prep.errors import GlueFormatError
from glue_prep.metadata import metadata_file, read_metadata
from glue_prep.tasks import get_task

from ..checkpoints.loading import CheckpointError
from .evaluation import check_label_names, classify_rows, load_hub, on_task_scale


def prediction_spec(task):
    """How an input file is read: the task's test split, or its training columns without a
    label (with the task's id column)."""
    if any(s.name == "test" for s in task.splits):
        return task.split("test")
    return replace(task.split("train"), name="test", label=None, index=task.id_column)


def predict_file(hub, data_bin: Path, input_path: Path, truncate: bool = False, max_sentences: int = 32,
                 progress: bool = True):
    """[{id, label, probability[, probabilities]}] for every row of input_path."""
    from glue_prep.readers.splits import read_split
    from tqdm import tqdm

    meta = read_metadata(data_bin)
    names = meta.label_names
    check_label_names(hub, names, metadata_file(data_bin))
    task = get_task(meta.task, data_bin)
    rows = read_split(task, prediction_spec(task), input_path)
    examples = list(zip(*rows.inputs))
    # cut as the training rows were: to glue_prep --truncate-to's length always (as evaluate.py
    # does), else to the model's positions where asked
    cut = meta.max_positions if meta.truncated else truncate
    with tqdm(total=len(examples), desc="predict", unit=" rows", disable=not progress, file=sys.stderr) as bar:
        logits, _ = classify_rows(hub, examples, input_path, rows.line_numbers,
                                  "pass --truncate to cut it longest sentence first", max_sentences=max_sentences,
                                  truncate=cut, on_batch=bar.update)
    results = []
    if task.regression:
        for key, value in zip(rows.index, logits.view(-1).tolist()):
            results.append({"id": key, "label": round(on_task_scale(value, task.target_scale, task.score_range), 6)})
        return results
    probabilities = torch.softmax(logits.float(), dim=-1)
    for key, row in zip(rows.index, probabilities.tolist()):
        best = max(range(len(row)), key=row.__getitem__)
        results.append({"id": key, "label": names[best], "probability": round(row[best], 6),
                        "probabilities": {name: round(p, 6) for name, p in zip(names, row)}})
    return results


def render(results, output: Path) -> str:
    if output.suffix == ".jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
    buffer = io.StringIO()
    columns = [c for c in ("id", "label", "probability") if c in results[0]] if results else ["id", "label"]
    # TSV as GLUE's files are: no quoting (ids and labels hold no tab or line break: glue_prep
    # refuses those), so that cut, awk and glue_prep read the ids back as they were
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_NONE, quotechar=None)
    writer.writerow(columns)
    writer.writerows([r[c] for c in columns] for r in results)
    return buffer.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="predict.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint_dir")
    parser.add_argument("data_bin", help="the task's binaries from glue_prep (its task and label names)")
    parser.add_argument("input", type=Path, help="rows to predict, in the task's format (labels not needed)")
    parser.add_argument("--out", type=Path, required=True, help="OUTPUT.jsonl or OUTPUT.tsv")
    parser.add_argument("--checkpoint", default="checkpoint_best.pt")
    parser.add_argument("--truncate", action="store_true",
                        help="cut rows longer than the model's positions, longest sentence first")
    parser.add_argument("--max-sentences", type=int, default=32)
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    if args.out.suffix not in (".jsonl", ".tsv"):
        parser.error(f"--out {args.out}: expected a .jsonl or .tsv file")
    try:
        hub = load_hub(args.checkpoint_dir, args.checkpoint, args.data_bin)
        with torch.no_grad():
            results = predict_file(hub, Path(args.data_bin), args.input, args.truncate, args.max_sentences,
                                   args.progress)
        args.out.parent.mkdir(parents=True, exist_ok=True)  # only once there is something to write
        write_atomically(args.out, render(results, args.out))
    except (CheckpointError, GlueFormatError, OSError, ValueError, KeyError) as error:
        print(f"predict: error: {error}", file=sys.stderr)
        return 2
    print(f"predict: wrote {len(results)} rows to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
