"""Reading a user task's split files: TSV, CSV or JSON Lines, columns by header name or key.

The same rules as the GLUE reader (``tsv.py``) where they apply: strictly UTF-8, a byte-order
mark at the start of the file dropped, lines ending in LF or CRLF, texts stripped of
surrounding whitespace (as fairseq's recipe strips them), every bad row refused with file,
line and what was expected. Per format:

* tsv: a header line naming the columns, then tab-separated fields, no quoting (a ``"`` is
  text), as GLUE's own files are;
* csv: a header line, then Python's csv dialect "excel": fields quoted with ``"`` may hold
  commas, doubled quotes and line breaks (the line reported is where the row starts);
* jsonl: one JSON object per line, the texts strings, the label a string, number or boolean.
"""
import csv
import io
import json
import math
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

from .errors import GlueFormatError
from .task_files import label_text
from .tasks import SplitSpec, TaskSpec
from .tsv import BOM, SplitData, check_label


def decoded_text(path: Path) -> str:
    """The file as text: UTF-8 (a decoding error names its line), without a leading BOM."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise GlueFormatError("missing: no such file", path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise GlueFormatError(f"not valid UTF-8 (byte {raw[error.start]:#04x}); expected UTF-8 text",
                              path, line) from None
    return text[1:] if text.startswith(BOM) else text


def rows_of(task: TaskSpec, path: Path) -> Iterator[Tuple[int, Dict[str, object]]]:
    """(line number, row as column name -> value) of every data row."""
    text = decoded_text(path)
    if task.file_format == "jsonl":
        for number, line in enumerate(text.split("\n"), start=1):
            line = line[:-1] if line.endswith("\r") else line
            if not line.strip():
                if number == text.count("\n") + 1:  # after the final newline
                    continue
                raise GlueFormatError("empty line; expected one JSON object per line", path, number)
            try:
                row = json.loads(line)
            except ValueError as error:
                raise GlueFormatError(f"not valid JSON ({error.msg} at column {error.colno})", path, number) from None
            if not isinstance(row, dict):
                raise GlueFormatError(f"a JSON {type(row).__name__}; expected an object of keys", path, number)
            yield number, row
        return
    delimiter = "\t" if task.file_format == "tsv" else ","
    quoting = csv.QUOTE_NONE if task.file_format == "tsv" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise GlueFormatError("empty file; expected a header line naming the columns", path) from None
    header = [name.strip() for name in header]
    line = reader.line_num
    while True:
        start = line + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise GlueFormatError(f"not valid {task.file_format.upper()}: {error}", path, start) from None
        line = reader.line_num
        if fields == []:
            raise GlueFormatError("empty line; expected a row of " + ", ".join(header), path, start)
        if len(fields) != len(header):
            raise GlueFormatError(f"got {len(fields)} fields; expected {len(header)} ({' | '.join(header)})",
                                  path, start)
        yield start, dict(zip(header, fields))


def as_text(value, what: str, path: Path, line: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise GlueFormatError(f"{what} is {value!r}; expected text", path, line)
    if isinstance(value, float) and not math.isfinite(value):
        raise GlueFormatError(f"{what} is {value!r}; expected a finite number", path, line)
    return str(value)


def read_user_split(task: TaskSpec, split: SplitSpec, path: Path, max_rows: Optional[int] = None) -> SplitData:
    """Read and check one split file of a user task (``TaskSpec.file_format`` tsv/csv/jsonl)."""
    path = Path(path)
    data = SplitData(path=path, inputs=[[] for _ in split.inputs],
                     labels=None if split.is_test else [], index=[] if split.is_test else None)
    wanted = [*split.inputs, *([split.label] if not split.is_test else []),
              *([split.index] if split.is_test and split.index is not None else [])]
    for line, row in rows_of(task, path):
        missing = [name for name in wanted if name not in row]
        if missing:
            raise GlueFormatError(f"no {'column' if task.file_format != 'jsonl' else 'key'} {missing[0]!r}; "
                                  f"the task file names {', '.join(map(repr, wanted))}", path, line)
        if max_rows is not None and len(data.line_numbers) >= max_rows:
            break
        for k, column in enumerate(split.inputs):
            value = row[column]
            text = "" if value is None else as_text(value, f"{column!r}", path, line).strip()
            if not text:
                data.empty_inputs.append((line, k))
            data.inputs[k].append(text)
        if split.is_test:
            data.index.append(as_text(row[split.index], f"{split.index!r}", path, line).strip()
                              if split.index is not None else str(len(data.line_numbers)))
        else:
            label = row[split.label]
            text = label_text(label) if isinstance(label, bool) else as_text(label, f"label {split.label!r}", path, line)
            data.labels.append(check_label(task, text, path, line))
        data.line_numbers.append(line)
    if not data.line_numbers:
        raise GlueFormatError(f"no data rows; expected rows with {', '.join(map(repr, wanted))}", path)
    return data
