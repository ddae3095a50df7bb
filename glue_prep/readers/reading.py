"""Reading the files a task names without trusting them: only regular files (a FIFO or a
device would block glue_prep or never end), UTF-8 errors named with their line, JSON that
Python cannot take (nesting deeper than its recursion limit, integers longer than it converts,
a key given twice) and dict.txt lines fairseq cannot read refused with the file and line like
any other mistake."""
import io
import json
import os
import stat
import sys
from typing import Dict, Optional

from ..errors import GlueFormatError, shown

BOM = "\ufeff"
KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
         (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))


def open_regular(path, missing: str, expected: str):
    """`path` open for reading bytes, refused unless it is a regular file. It is opened without
    blocking and checked once open, so a FIFO (or a file swapped for one) is never waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise GlueFormatError(missing, path) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = next((name for test, name in KINDS if test(mode)), "not a file")
        raise GlueFormatError(f"not a regular file ({kind}); expected {expected}", path)
    return os.fdopen(fd, "rb")


def read_regular(path, missing: str, expected: str, limit: Optional[int] = None) -> bytes:
    """The bytes of the regular file `path` (open_regular); with `limit`, refused beyond it."""
    with open_regular(path, missing, expected) as f:
        raw = f.read(-1 if limit is None else limit + 1)
    if limit is not None and len(raw) > limit:
        raise GlueFormatError(f"over {limit} bytes; expected {expected}", path)
    return raw


def utf8_text(raw: bytes, path) -> str:
    """`raw` as text: UTF-8 (a decoding error names its line), without a leading BOM."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise GlueFormatError(f"not valid UTF-8 (byte {raw[error.start]:#04x}); expected UTF-8 text",
                              path, line) from None
    return text[1:] if text.startswith(BOM) else text


def parsed_json(text: str, path, line: Optional[int] = None):
    """`text` (a whole file, or its line `line`) as JSON values, or a GlueFormatError."""

    def unique_keys(pairs) -> Dict[str, object]:
        row = {}
        for key, value in pairs:
            if key in row:
                raise GlueFormatError(f"key {shown(key)} appears twice in this object; expected each key once",
                                      path, line)
            row[key] = value
        return row

    try:
        return json.loads(text, object_pairs_hook=unique_keys)
    except GlueFormatError:
        raise
    except json.JSONDecodeError as error:
        at = f"column {error.colno}" if line is not None else f"line {error.lineno}, column {error.colno}"
        raise GlueFormatError(f"not valid JSON ({error.msg} at {at})", path, line) from None
    except RecursionError:
        raise GlueFormatError("JSON nested deeper than Python reads (its recursion limit); expected "
                              "a flat object", path, line) from None
    except ValueError:  # json's only other refusal: int() of more digits than Python converts
        raise GlueFormatError(f"a JSON number of more than {sys.get_int_max_str_digits()} digits; expected "
                              "numbers Python can read", path, line) from None


def fairseq_dictionary(path):
    """fairseq's Dictionary of the dict.txt at `path` (fairseq's own reader); one it cannot read
    is refused naming the first line it stops at, in one short line (fairseq's errors quote the
    whole line, or a whole file of another format)."""
    from fairseq.data import Dictionary

    expected = "a fairseq dictionary (dict.txt: a '<token> <count>' line per token)"
    text = utf8_text(read_regular(path, f"missing: expected {expected}", expected), path)
    try:
        dictionary = Dictionary()
        dictionary.add_from_file(io.StringIO(text, newline=None))  # newline=None: lines as open() reads them
        return dictionary
    except Exception:  # fairseq raises ValueError or RuntimeError; find its line, fed one at a time
        pass
    dictionary = Dictionary()
    for number, line in enumerate(io.StringIO(text, newline=None), 1):
        try:
            dictionary.add_from_file(io.StringIO(line))
        except Exception as error:  # its RuntimeError: a token again without the #fairseq:overwrite flag
            reason = "its token is on an earlier line too" if isinstance(error, RuntimeError) else "not '<token> <count>'"
            raise GlueFormatError(f"{shown(line.rstrip())}: {reason}; expected {expected}", path, number) from None
    raise GlueFormatError(f"fairseq cannot read it; expected {expected}", path)
