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
from pathlib import Path
from typing import Dict, Optional

from ..errors import GlueFormatError, shown
from ..tasks.spec import SplitSpec, TaskSpec
from .reading import BOM, open_regular
from .rows import SplitData, check_label


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


def read_glue_tsv(
    task: TaskSpec, split: SplitSpec, path: Path, max_rows: Optional[int] = None
) -> SplitData:
    """Read and check one split file of a GLUE task. Raises GlueFormatError on the first bad line."""
    path = Path(path)
    ncols = split.ncols
    data = SplitData(
        path=path,
        inputs=[[] for _ in split.inputs],
        labels=None if split.is_test else [],
        index=[] if split.is_test else None,
    )
    first_line_of: Dict[str, int] = {}  # test id -> its line: each id once, as in a user task's file
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
                key = fields[split.index].strip() if split.index is not None else str(len(data.line_numbers))
                if len(key.splitlines()) > 1:  # a form feed, U+2028, ...: Python's line breaks, not the file's
                    raise GlueFormatError(f"id {shown(key)} holds a line break; expected an id on one line (it is "
                                          "written to test.index and the predictions, one per line)", path, lineno)
                if key in first_line_of:
                    raise GlueFormatError(f"id {shown(key)} is also the id of line {first_line_of[key]}; expected "
                                          "each id once", path, lineno)
                first_line_of[key] = lineno
                data.index.append(key)
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
