"""Reading a user task's split files: TSV, CSV or JSON Lines, columns by header name or key.

The same rules as the GLUE reader (``glue_tsv.py``) where they apply: strictly UTF-8, a byte-order
mark at the start of the file dropped, lines ending in LF or CRLF, texts stripped of
surrounding whitespace (as fairseq's recipe strips them), every bad row refused with file,
line and what was expected. Per format:

* tsv: a header line naming the columns, then tab-separated fields, no quoting (a ``"`` is
  text), as GLUE's own files are;
* csv: a header line, then Python's csv dialect "excel": fields quoted with ``"`` may hold
  commas, doubled quotes and line breaks (the line reported is where the row starts);
* jsonl: one JSON object per line, the texts strings, the label a string, number or boolean.

Errors quote values from the file shortened (errors.shown), and a header (or object) that has
none of the task's columns is described, not quoted: it is not the task's file.
"""
import csv
import io
import math
import re
from collections import Counter
from pathlib import Path
from typing import Dict, Iterator, Optional, Sequence, Tuple

from ..errors import GlueFormatError, listed, shown
from ..tasks.spec import SplitSpec, TaskSpec
from ..tasks.task_files import COMMAND_LINE, encodable, label_text
from .reading import parsed_json, read_regular, utf8_text
from .rows import SplitData, check_label

CR_INSIDE = "carriage return (CR) inside the line; expected lines ending in LF or CRLF"


def described_by(task: TaskSpec) -> str:
    if task.source is None:
        return "the task description"
    return COMMAND_LINE if task.source == COMMAND_LINE else f"the task file {task.source}"


def rows_of(task: TaskSpec, split: SplitSpec, path: Path,
            wanted: Sequence[str]) -> Iterator[Tuple[int, Dict[str, object]]]:
    """(line number, row as column name -> value) of every data row; the header (or each JSON
    object) must name every column of `wanted`, each once."""
    raw = read_regular(path, f"missing: the {task.name} {split.name} split needs this file",
                       f"the {task.name} {split.name} split's {task.file_format.upper()} file")
    text = utf8_text(raw, path)
    noun = "key" if task.file_format == "jsonl" else "column"

    def check_names(names, line):
        missing = [name for name in wanted if name not in names]
        if missing:
            holder = "object" if noun == "key" else "header"
            # a header with none of the task's columns is some other file: say so, don't quote it
            found = (f"has {listed(names) or 'none'}" if len(missing) < len(wanted)
                     else f"has {len(names)} {noun}s, none of them the task's")
            raise GlueFormatError(f"no {noun} {shown(missing[0])}; {described_by(task)} names "
                                  f"{', '.join(map(shown, wanted))} (this {holder} {found})", path, line)

    if task.file_format == "jsonl":
        lines = text.split("\n")
        for number, line in enumerate(lines, start=1):
            line = line[:-1] if line.endswith("\r") else line
            if "\r" in line:  # json.loads takes it for a space; a CR is only ever the end of a CRLF
                raise GlueFormatError(CR_INSIDE, path, number)
            if not line.strip():
                if number == len(lines):  # after the final newline
                    continue
                raise GlueFormatError("empty line; expected one JSON object per line", path, number)
            row = parsed_json(line, path, number)
            if not isinstance(row, dict):
                raise GlueFormatError(f"a JSON {type(row).__name__}; expected an object of keys", path, number)
            check_names(row, number)
            yield number, row
        return
    name = task.file_format.upper()
    if name == "TSV" and "\r" in text:  # no quoting: a CR is never text, only the end of a CRLF
        for number, line in enumerate(text.split("\n"), start=1):
            if "\r" in line[:-1]:
                raise GlueFormatError(CR_INSIDE, path, number)
    if name == "CSV":  # the csv module ends a row at a CR and drops a second one (CR CR LF) without a word
        for cr in re.finditer("\r(?=\r)|\r\\Z", text):
            if text.count('"', 0, cr.start()) % 2 == 0:  # outside quotes (a quoted field's quotes come in pairs)
                raise GlueFormatError(CR_INSIDE, path, text.count("\n", 0, cr.start()) + 1)
    delimiter = "\t" if task.file_format == "tsv" else ","
    quoting = csv.QUOTE_NONE if task.file_format == "tsv" else csv.QUOTE_MINIMAL
    # lines end at LF only (newline="\n"), so that line numbers are an editor's and a lone CR
    # is seen where it is rather than taken for a line end
    reader = csv.reader(io.StringIO(text, newline="\n"), delimiter=delimiter, quoting=quoting, strict=True)
    # the csv module refuses fields over 128 KiB by default; no field is longer than its file
    csv.field_size_limit(max(csv.field_size_limit(), len(text)))

    def next_row(line):
        try:
            return next(reader)
        except csv.Error as error:
            if "new-line character" in str(error):
                raise GlueFormatError(CR_INSIDE + (" (a CR that is text must be inside a quoted field)"
                                                   if name == "CSV" else ""), path, line) from None
            raise GlueFormatError(f"not valid {name}: {error}", path, line) from None

    try:
        header = next_row(1)
    except StopIteration:
        raise GlueFormatError("empty file; expected a header line naming the columns", path) from None
    header = [column.strip() for column in header]
    # unnamed columns (a spreadsheet's trailing commas) are never read; a named one must be unique
    twice = sorted(column for column, count in Counter(header).items() if column and count > 1)
    if twice:
        raise GlueFormatError(f"the header names column {shown(twice[0])} more than once; expected each column once",
                              path, 1)
    check_names(header, 1)
    line = reader.line_num
    while True:
        start = line + 1
        try:
            fields = next_row(start)
        except StopIteration:
            return
        line = reader.line_num
        if fields == []:
            raise GlueFormatError(f"empty line; expected a row of {listed(header)}", path, start)
        if len(fields) != len(header):
            raise GlueFormatError(f"got {len(fields)} fields; expected {len(header)} ({listed(header)})",
                                  path, start)
        yield start, dict(zip(header, fields))


def as_text(value, what: str, path: Path, line: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise GlueFormatError(f"{what} is {shown(value)}; expected text", path, line)
    if isinstance(value, float) and not math.isfinite(value):
        raise GlueFormatError(f"{what} is {shown(value)}; expected a finite number", path, line)
    if isinstance(value, str) and not encodable(value):
        raise GlueFormatError(f"{what} holds half of a UTF-16 surrogate pair; expected text that UTF-8 can encode",
                              path, line)
    return str(value)


def row_id(value, what: str, path: Path, line: int, seen: Dict[str, int]) -> str:
    """A test row's id as text (a whole JSON number as an integer), unique, on one line."""
    as_text(value, what, path, line)
    text = label_text(value).strip()
    if not text:
        raise GlueFormatError(f"{what} is empty; expected an id for every row", path, line)
    if "\t" in text or len(text.splitlines()) > 1:  # what splits a TSV row or a line (not a no-break space)
        raise GlueFormatError(f"{what} {shown(text)} holds a tab or line break; expected an id on one line "
                              "(it is written to test.index and the predictions, one per line)", path, line)
    if text in seen:
        raise GlueFormatError(f"{what} {shown(text)} is also the id of line {seen[text]}; expected each id once",
                              path, line)
    seen[text] = line
    return text


def read_user_split(task: TaskSpec, split: SplitSpec, path: Path, max_rows: Optional[int] = None) -> SplitData:
    """Read and check one split file of a user task (``TaskSpec.file_format`` tsv/csv/jsonl)."""
    path = Path(path)
    data = SplitData(path=path, inputs=[[] for _ in split.inputs],
                     labels=None if split.is_test else [], index=[] if split.is_test else None)
    wanted = [*split.inputs, *([split.label] if not split.is_test else []),
              *([split.index] if split.is_test and split.index is not None else [])]
    seen_ids: Dict[str, int] = {}
    for line, row in rows_of(task, split, path, wanted):
        if max_rows is not None and len(data.line_numbers) >= max_rows:
            break
        for k, column in enumerate(split.inputs):
            value = row[column]
            if not isinstance(value, str):  # JSON: a number or null is no text (1e-5 would become "1e-05")
                raise GlueFormatError(f"{shown(column)} is {shown(value)}; expected a string (the text)", path, line)
            text = as_text(value, shown(column), path, line).strip()
            if not text:
                data.empty_inputs.append((line, k))
            data.inputs[k].append(text)
        if split.is_test:
            data.index.append(row_id(row[split.index], f"id {shown(split.index)}", path, line, seen_ids)
                              if split.index is not None else str(len(data.line_numbers)))
        else:
            label = row[split.label]
            if not isinstance(label, bool):  # JSON true / false are labels too
                as_text(label, f"label {shown(split.label)}", path, line)
            data.labels.append(check_label(task, label_text(label), path, line))
        data.line_numbers.append(line)
    if not data.line_numbers:
        raise GlueFormatError(f"no data rows; expected rows with {', '.join(map(repr, wanted))}", path)
    return data
