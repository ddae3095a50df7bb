"""Reading one GLUE .tsv split the way GLUE's own loaders read it, refusing what they can't.

GLUE files are read as GLUE's loaders read them (transformers' ``DataProcessor._read_tsv``:
``open(..., encoding="utf-8-sig")`` + ``csv.reader(delimiter="\\t", quotechar=None)``; fairseq's
recipe: ``tail``/``cut -f``/``awk``):

* tab-separated, no quoting: a ``"`` is literal text;
* a UTF-8 byte-order mark at the start of the file is dropped;
* a line may end in LF or CRLF (the CR is dropped); a lone CR inside a line is refused,
  because both loaders would split the row there;
* the last line need not end in a newline;
* text is strictly UTF-8.

See glue_prep/README.md for the full table.
"""
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from .errors import GlueFormatError, listed, shown
from .reading import BOM, open_regular
from .tasks import SplitSpec, TaskSpec, label_problem, score_value

MAX_REPORTED = 5  # line numbers listed in a warning


@dataclass
class SplitData:
    """The columns glue_prep uses from one split file, in row order."""

    path: Path
    inputs: List[List[str]]  # one list of sentences per input column (stripped, as the recipe does)
    labels: Optional[List[str]] = None  # label text (stripped); None for test splits
    index: Optional[List[str]] = None  # GLUE index/id column (test splits)
    line_numbers: List[int] = field(default_factory=list)  # 1-based line of each row
    dropped_lines: List[int] = field(default_factory=list)  # QQP train/dev rows filtered out
    empty_inputs: List[tuple] = field(default_factory=list)  # (line, input number) with empty text

    def __len__(self):
        return len(self.inputs[0])


def _expect(split: SplitSpec) -> str:
    names = split.header
    if names is None:
        return f"{split.ncols} tab-separated fields"
    return f"{split.ncols} tab-separated fields ({' | '.join(names)})"


def _decode(raw: bytes, path: Path, lineno: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise GlueFormatError(
            f"not valid UTF-8 (byte {raw[e.start]:#04x} at byte offset {e.start} of the line); "
            "GLUE files are UTF-8 text",
            path,
            lineno,
        ) from None


def check_label(task: TaskSpec, text: str, path: Path, lineno: int) -> str:
    """The label as the recipe writes it, or a GlueFormatError naming what was expected."""
    label = text.strip()
    if task.regression:
        value = score_value(label)
        low, high = task.score_range or (-math.inf, math.inf)
        if value is None or not low <= value <= high:
            expected = f"between {low:g} and {high:g}" if task.score_range else "(finite)"
            raise GlueFormatError(f"{task.name} score {shown(text)} is not a number {expected}", path, lineno)
        return label
    if not task.labels:  # collected from the training file
        problem = label_problem(label)
        if problem:
            raise GlueFormatError(f"{task.name} label {shown(text)}: {problem}", path, lineno)
        return label
    if label not in task.label_set:
        raise GlueFormatError(
            f"{task.name} label {shown(text)} is not one of {listed(task.labels)}",
            path,
            lineno,
        )
    return label


def read_split(
    task: TaskSpec, split: SplitSpec, path: Path, max_rows: Optional[int] = None
) -> SplitData:
    """Read and check one split file. Raises GlueFormatError on the first bad line. A user
    task's TSV, CSV or JSON Lines files are read by ``formats``."""
    if task.file_format != "glue":
        from .formats import read_user_split

        return read_user_split(task, split, path, max_rows)
    path = Path(path)
    ncols = split.ncols
    data = SplitData(
        path=path,
        inputs=[[] for _ in split.inputs],
        labels=None if split.is_test else [],
        index=[] if split.is_test else None,
    )
    fh = open_regular(path, f"missing: the {task.name} {split.name} split needs this file",
                      f"the {task.name} {split.name} split's TSV file")
    with fh:
        lineno = 0
        for raw in fh:  # binary iteration splits on b"\n" only
            lineno += 1
            if raw.endswith(b"\n"):
                raw = raw[:-1]
            if raw.endswith(b"\r"):  # CRLF
                raw = raw[:-1]
            line = _decode(raw, path, lineno)
            if lineno == 1 and line.startswith(BOM):
                line = line[1:]
            if "\r" in line:
                raise GlueFormatError(
                    "carriage return (CR) inside the line; expected lines ending in LF or CRLF "
                    "(GLUE's loaders would split the row here)",
                    path,
                    lineno,
                )
            fields = line.split("\t")
            if lineno == 1 and split.header is not None:
                _check_header(task, split, fields, path)
                continue
            if len(fields) != ncols:
                if split.filter_bad_rows:
                    # fairseq's recipe: awk -F '\t' 'NF==6' (QQP train/dev)
                    data.dropped_lines.append(lineno)
                    continue
                got = "an empty line" if line == "" else f"{len(fields)} fields"
                raise GlueFormatError(
                    f"got {got}; expected {_expect(split)} for {task.name} {path.name}",
                    path,
                    lineno,
                )
            if max_rows is not None and len(data.line_numbers) >= max_rows:
                break
            for k, col in enumerate(split.inputs):
                text = fields[col].strip()  # multiprocessing_bpe_encoder.py: line.strip()
                if not text:
                    data.empty_inputs.append((lineno, k))
                data.inputs[k].append(text)
            if split.is_test:
                data.index.append(fields[split.index].strip() if split.index is not None
                                  else str(len(data.line_numbers)))
            else:
                data.labels.append(check_label(task, fields[split.label], path, lineno))
            data.line_numbers.append(lineno)
    if lineno == 0 or (split.header is not None and lineno == 1 and not data.line_numbers
                       and not data.dropped_lines):
        raise GlueFormatError(
            f"no data rows; expected a {task.name} {split.name} file with "
            f"{'a header and ' if split.header else ''}rows of {_expect(split)}",
            path,
        )
    return data


def _check_header(task: TaskSpec, split: SplitSpec, fields, path: Path):
    names = [f.strip() for f in fields]
    if len(names) != len(split.header):
        raise GlueFormatError(
            f"header has {len(names)} fields; expected the {task.name} header "
            f"{' | '.join(split.header)} ({len(split.header)} fields)",
            path,
            1,
        )
    used = list(split.inputs) + [c for c in (split.label, split.index) if c is not None]
    for col in sorted(used):
        if names[col] != split.header[col]:
            raise GlueFormatError(
                f"header column {col + 1} is {shown(names[col])}; expected {split.header[col]!r} "
                f"(the {task.name} header is {' | '.join(split.header)})",
                path,
                1,
            )


def format_lines(lines, limit=MAX_REPORTED) -> str:
    return listed(lines, limit, show=str)
