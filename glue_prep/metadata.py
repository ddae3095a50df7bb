"""glue_prep.json, the record glue_prep writes beside a task's binaries: its schema, read and
written here only.

It names the task and its files (the text each split was read from, the tokenizer, the
dictionary), the labels in the order of label/dict.txt, each split's rows, and what glue_prep
did to them (dropped, empty or over-length rows, truncation); ``glue_prep.subset`` adds the
record of a training subset. Fine-tuning, evaluation, prediction, the comparison and the
benchmarks read it through ``read_metadata``, which checks the type of every field and refuses
a file that does not fit in one line naming the file, the field and what was expected.

Fields that the first glue_prep did not write yet (from ``task_file`` on, below) have the
defaults today's readers give their absence, so older binaries stay readable. Keys the schema
does not know are ignored (a newer glue_prep's record still reads).
"""
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from .atomic import write_atomically
from .errors import SHOWN_CHARACTERS, GlueFormatError, shown
from .readers.reading import parsed_json, read_regular, utf8_text

METADATA_FILE = "glue_prep.json"
BINARIES = "a task's binaries from glue_prep (<TASK>-bin)"
RECORD = "glue_prep's record of a task's binaries"


@dataclass(frozen=True)
class OverLength:
    """The rows of a split longer than the model's positions."""
    rows: int
    lines: List[int]  # their lines in the source file (the first 100)


@dataclass(frozen=True)
class DictionaryRecord:
    source: str  # the fairseq dictionary the inputs were encoded with
    size: int


@dataclass(frozen=True)
class FullTrain:
    """The training split a subset was drawn from."""
    rows: int
    label_counts: Optional[Dict[str, int]]  # None for regression
    over_length: Optional[OverLength]


@dataclass(frozen=True)
class TrainSubset:
    """How glue_prep.subset drew a folder's training rows from another glue_prep folder."""
    size: int
    seed: int
    stratified: bool
    label_counts: Optional[Dict[str, int]]  # rows per class; None for regression
    source: str  # the full folder
    source_sha256: str  # its files' digest: a subset is reused only for the very same data
    rows_file: str  # the chosen rows of the full training split, one a line
    rows_sha256: str
    full_train: FullTrain
    # the draw was among the rows that fit this many positions (fairseq-train skips longer ones);
    # None: among every row, and over_length_rows is not counted
    max_positions: Optional[int] = None
    over_length_rows: Optional[int] = None


@dataclass(frozen=True, kw_only=True)
class GlueMetadata:
    """glue_prep.json; the fields in the order they are written."""
    task: str
    task_file: Optional[str] = None  # a user task's description beside the binaries (task.json)
    num_classes: int
    regression: bool
    label_names: List[str]  # label/dict.txt's classes, in class-index order
    metric: Optional[str] = None
    positive_label: Optional[str] = None
    target_scale: float = 1.0
    score_range: Optional[Tuple[float, float]] = None
    label_counts: Dict[str, Dict[str, int]] = field(default_factory=dict)  # split -> label -> rows
    splits: Dict[str, int]  # split -> rows
    test_splits: Dict[str, str]  # test split -> its GLUE submission name
    tokenizer: str  # the tokenizer spec, relative to the folder
    num_inputs: int
    source: Dict[str, str]  # split -> the file its rows were read from
    dictionary: DictionaryRecord
    label_dictionary_source: Optional[str]
    dropped_rows: Dict[str, int]
    empty_inputs: Dict[str, int]
    unk_fraction: float
    max_rows: Optional[int]
    max_positions: Optional[int] = None
    truncated: bool = False  # over-length rows were cut to max_positions
    over_length: Dict[str, OverLength] = field(default_factory=dict)
    in_fairseq_recipe: bool
    glue_prep_version: str
    seconds: Optional[float] = None  # how long glue_prep took (written once the build is done)
    train_subset: Optional[TrainSubset] = None  # written only for a subset


def metadata_file(data_bin_or_path) -> Path:
    """DATA_BIN/glue_prep.json, or the path itself when it names a file."""
    path = Path(data_bin_or_path)
    return path / METADATA_FILE if path.is_dir() or path.name != METADATA_FILE else path


def read_metadata(data_bin_or_path, missing_ok: bool = False) -> Optional[GlueMetadata]:
    """The glue_prep.json of a folder (or that file itself), every field checked; a
    GlueFormatError naming the file and what was expected otherwise. With `missing_ok`, a
    folder without one (binaries from fairseq-preprocess) gives None."""
    given = Path(data_bin_or_path)
    path = metadata_file(given)
    if path.parent == given and not given.is_dir():
        raise GlueFormatError(f"not a folder; expected {BINARIES}", given)
    missing = f"no {METADATA_FILE}; expected {BINARIES}"
    if not path.exists():
        if missing_ok:
            return None
        raise GlueFormatError(missing, path.parent)
    raw = read_regular(path, missing, f"glue_prep's {METADATA_FILE}")
    record = parsed_json(utf8_text(raw, path), path)
    return _typed(record, GlueMetadata, "", path)


def write_metadata(folder, metadata: GlueMetadata) -> Path:
    """FOLDER/glue_prep.json, written atomically; train_subset only for a subset."""
    record = dataclasses.asdict(metadata)
    if record["train_subset"] is None:
        del record["train_subset"]
    path = Path(folder) / METADATA_FILE
    write_atomically(path, json.dumps(record, indent=2) + "\n")
    return path


def _typed(value, kind, name: str, path: Path, expected=None):
    """`value` (parsed JSON) as `kind`, or a GlueFormatError naming the field `name` and what
    was `expected` (by default `kind`)."""
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if origin is Union:  # Optional[X]
        return None if value is None else _typed(value, arguments[0], name, path, expected=kind)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            _refuse(value, expected or kind, name, path)
        fields, hints = {}, typing.get_type_hints(kind)
        for f in dataclasses.fields(kind):
            inner = f"{name}.{f.name}" if name else f.name
            if f.name in value:
                fields[f.name] = _typed(value[f.name], hints[f.name], inner, path)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise GlueFormatError(f"no {inner}; expected it in {RECORD}", path)
        return kind(**fields)
    if origin is dict:
        if not isinstance(value, dict):
            _refuse(value, expected or kind, name, path)
        return {key: _typed(item, arguments[1], f"{name}.{_key(key)}", path) for key, item in value.items()}
    if origin in (list, tuple):
        if not isinstance(value, list) or (origin is tuple and len(value) != len(arguments)):
            _refuse(value, expected or kind, name, path)
        items = arguments if origin is tuple else arguments * len(value)
        typed = [_typed(item, k, f"{name}[{i}]", path) for i, (item, k) in enumerate(zip(value, items))]
        return tuple(typed) if origin is tuple else typed
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        _refuse(value, expected or kind, name, path)
    return value


def _key(key: str) -> str:
    """A key of the file (a split, a label) as a field name in a message: as it is, unless
    quoting it keeps the message on one short line."""
    plain = key.isprintable() and " " not in key and 0 < len(key) <= SHOWN_CHARACTERS
    return key if plain else shown(key)


def _described(kind) -> str:
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if origin is Union:
        return f"null or {_described(arguments[0])}"
    if dataclasses.is_dataclass(kind):
        return "an object"
    if origin is dict:
        return f"an object whose values are each {_described(arguments[1])}"
    if origin is tuple:
        return f"a list of {len(arguments)} items, each {_described(arguments[0])}"
    if origin is list:
        return f"a list whose items are each {_described(arguments[0])}"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}[kind]


def _refuse(value, kind, name: str, path: Path):
    if not name:  # the whole file
        raise GlueFormatError(f"holds {shown(value)}; expected {RECORD}, a JSON object", path)
    raise GlueFormatError(f"{name} is {shown(value)}; expected {_described(kind)}", path)
