"""A seeded training subset of a task's binaries: N training rows, stratified by label
(classification) or a simple random sample (regression).

    python -m glue_prep.subset DATA_BIN N SEED OUT

OUT is DATA_BIN with only N of its training rows: input0/, input1/ and label/ hold those rows,
copied row by row through fairseq's indexed-dataset reader and builder (so the files are in
the format fairseq-preprocess writes), in their original order; every other file (the valid
and test splits, dictionaries, tokenizer, task file) is carried over unchanged. Its
glue_prep.json counts the subset's rows (so a budget in epochs follows the subset) and
records the draw under ``train_subset``; ``train_subset.rows`` lists the chosen rows of
DATA_BIN's training split (0-based, one a line).

The draw depends only on DATA_BIN's training labels, N and SEED: a classification task gets a
stratified sample (each class its share of N by largest remainder, at least one row each),
a regression task (STS-B) a simple random sample, both drawn with numpy's Generator seeded
with SEED. With ``--max-positions P`` (finetune.py passes the model's) the draw is among the
rows that fit P positions: fairseq-train skips longer training rows, and a subset holding them
would train on fewer than N; where every row fits, the draw is the same. Calling again with the same arguments reuses OUT; an OUT made from other
arguments or other data is rebuilt, and anything else at OUT is refused.
"""
import argparse
import hashlib
import logging
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .atomic import remove_stale, replace_folder, temporary_name
from .errors import GlueFormatError, unwritten
from .binaries import read_binaries, read_indexed
from .metadata import METADATA_FILE, FullTrain, GlueMetadata, TrainSubset, read_metadata, write_metadata
from .readers.reading import fairseq_dictionary

ROWS_FILE = "train_subset.rows"
REGRESSION_LABELS = Path("label") / "train.label"


@dataclass
class SubsetInfo:
    folder: Path
    rows: np.ndarray  # the chosen rows of the full training split, ascending
    record: dict  # glue_prep.json's train_subset
    reused: bool  # the folder was already there, made with the same arguments from the same data
    label_counts: Dict[str, int] = field(default_factory=dict)  # rows per class (empty for regression)


def stratified_allocation(class_counts: Sequence[int], size: int) -> List[int]:
    """Rows to draw from each class: its share of `size` (size * count / total), rounded by
    largest remainder (ties to the earlier class), then at least one row for every class that
    has rows, taken from the class furthest above its share. Every class then differs from its
    share by less than one row unless the minimum of one forced it."""
    counts = [int(c) for c in class_counts]
    total = sum(counts)
    allocation = [size * c // total for c in counts]
    remainders = [size * c % total for c in counts]
    for k in sorted(range(len(counts)), key=lambda k: (-remainders[k], k))[:size - sum(allocation)]:
        allocation[k] += 1
    for empty in [k for k, c in enumerate(counts) if c and not allocation[k]]:
        donor = max((k for k in range(len(counts)) if allocation[k] > 1),
                    key=lambda k: (allocation[k] * total - size * counts[k], -k))
        allocation[donor] -= 1
        allocation[empty] += 1
    return allocation


def choose_rows(classes: Optional[np.ndarray], total: int, size: int, seed: int) -> np.ndarray:
    """The chosen rows, ascending: per class (in class order) a uniform draw without
    replacement of its allocation when `classes` (each row's class) is given, else a uniform
    draw of `size` of `total` rows."""
    generator = np.random.default_rng(seed)
    if classes is None:
        return np.sort(generator.choice(total, size=size, replace=False))
    present = np.unique(classes)
    allocation = stratified_allocation([int((classes == c).sum()) for c in present], size)
    chosen = [generator.choice(np.flatnonzero(classes == c), size=k, replace=False)
              for c, k in zip(present, allocation)]
    return np.sort(np.concatenate(chosen))


def check_train_size(data_bin: Path, size, max_positions: Optional[int] = None) -> None:
    """Refuse (GlueFormatError) a size make_train_subset would refuse, drawing and writing nothing."""
    data_bin = Path(data_bin)
    full = _TrainSplit(data_bin, read_metadata(data_bin))
    fitting = full.split.fitting(max_positions)
    classes = None if full.regression else len(np.unique(full.classes()[fitting]))
    _check_size(data_bin, size, len(fitting), classes, max_positions)


def make_train_subset(data_bin: Path, size: int, seed: int, out: Path,
                      max_positions: Optional[int] = None, keep: bool = False) -> SubsetInfo:
    """Write (or reuse) OUT: DATA_BIN with `size` of its training rows, drawn with `seed` (among
    those that fit `max_positions`, if given). Raises GlueFormatError (one line: the folder and
    what was expected) for bad arguments, and with `keep` (a run has trained on OUT's rows) where
    OUT is gone or the draw gives other training rows than OUT's (another file of DATA_BIN
    changed: the record follows it, the rows stay)."""
    data_bin, out = Path(data_bin), Path(out)
    meta = read_metadata(data_bin)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise GlueFormatError(f"seed {seed!r}: expected an integer >= 0", data_bin)
    if out.resolve() == data_bin.resolve() or data_bin.resolve() in out.resolve().parents:
        raise GlueFormatError(f"the subset folder {out} is the data folder or inside it; "
                              "expected a folder elsewhere", data_bin)
    full = _TrainSplit(data_bin, meta)
    fitting = full.split.fitting(max_positions)
    classes = None if full.regression else full.classes()
    drawable = None if classes is None else classes[fitting]
    _check_size(data_bin, size, len(fitting), None if classes is None else len(np.unique(drawable)), max_positions)
    rows = fitting[choose_rows(drawable, len(fitting), size, int(seed))]  # ascending, as fitting is
    rows_text = "".join(f"{r}\n" for r in rows.tolist()).encode("ascii")
    counts = {} if classes is None else full.label_counts(classes[rows])
    record = TrainSubset(
        size=int(size), seed=int(seed), stratified=classes is not None, label_counts=counts or None,
        source=str(data_bin.resolve()), source_sha256=_folder_digest(data_bin),
        rows_file=ROWS_FILE, rows_sha256=hashlib.sha256(rows_text).hexdigest(),
        full_train=FullTrain(rows=full.rows, label_counts=meta.label_counts.get("train"),
                             over_length=meta.over_length.get("train")),
        max_positions=max_positions, over_length_rows=None if max_positions is None else full.rows - len(fitting),
    )

    existing = _existing_record(out)
    if existing == record:
        return SubsetInfo(out, rows, asdict(record), True, counts)
    if existing is None and out.exists():
        raise GlueFormatError(f"exists and is not a training subset made by glue_prep.subset; expected a new "
                              f"folder (or one this command made) for the subset of {data_bin}", out)
    if keep and existing is None:
        raise GlueFormatError("missing, and a run has trained on the subset kept here; expected it as the run left "
                              "it (to start over, use another save dir)", out)

    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out.parent, prefix=f".{out.name}.")
    built = temporary_name(out)
    built.mkdir()
    try:
        full.write_rows(rows, built)
        _carry_over(data_bin, built, skip=full.files)
        (built / ROWS_FILE).write_bytes(rows_text)
        write_metadata(built, _subset_meta(meta, record, counts))
        if keep and not _same_files(built, out, full.files - {Path(METADATA_FILE)}):
            changed = [name for name in ("source", "source_sha256", "size", "seed", "max_positions", "rows_sha256")
                       if getattr(existing, name) != getattr(record, name)]
            raise GlueFormatError(f"a run has trained on the subset here, and these data and arguments draw other "
                                  f"training rows (its record's {', '.join(changed) or 'draw'} differ); expected the "
                                  "rows it trained on (to start over, use another save dir)", out)
        reused = not _publish(built, out, record)
    finally:
        shutil.rmtree(built, ignore_errors=True)
    return SubsetInfo(out, rows, asdict(record), reused, counts)


def _same_files(one: Path, other: Path, files) -> bool:
    """Whether these files (relative paths) are in both folders, or neither, with the same bytes."""
    for relative in files:
        a, b = one / relative, other / relative
        if a.exists() != b.exists() or (a.exists() and a.read_bytes() != b.read_bytes()):
            return False
    return True


def _publish(built: Path, out: Path, record: TrainSubset) -> bool:
    """Put the built folder at OUT, unless another process (a head of the same comparison)
    has just put the same subset there: then False, and OUT is left as it is."""
    if _existing_record(out) == record:
        return False
    try:
        replace_folder(built, out)
    except OSError:  # OUT appeared between the check and the rename
        if _existing_record(out) != record:
            raise
        return False
    return True


class _TrainSplit:
    """The training split of a glue_prep folder: its files, rows and labels."""

    def __init__(self, data_bin: Path, meta: GlueMetadata):
        self.data_bin = data_bin
        self.regression = meta.regression
        self.split = read_binaries(data_bin, "train", self.regression)
        if self.split is None:
            raise GlueFormatError("no training split (input0/train.bin and .idx); expected a task's binaries "
                                  "from glue_prep with a train split", data_bin)
        self.inputs, self.rows = self.split.inputs, self.split.rows
        self.files = {Path(name) / f"train{ext}" for name in self.inputs + ["label"] for ext in (".bin", ".idx")}
        self.files |= {REGRESSION_LABELS, Path(METADATA_FILE)}

    def _load(self, name: str):
        return read_indexed(self.data_bin / name / "train")

    def _dictionary(self, name: str):
        return fairseq_dictionary(self.data_bin / name / "dict.txt")

    def classes(self) -> np.ndarray:
        """Each row's label index in label/dict.txt."""
        return np.array([int(tokens[0]) for tokens in self._rows("label", range(self.rows))], dtype=np.int64)

    def _rows(self, name: str, rows):
        """The token tensors of these rows of name/train."""
        dataset = self._load(name)
        for row in rows:
            try:
                tokens = dataset[row]
            except Exception as e:  # a .bin shorter than its .idx says: numpy's ValueError
                raise GlueFormatError(f"row {row} cannot be read ({e}); expected the rows that "
                                      f"{name}/train.idx lists", self.data_bin / name / "train.bin") from None
            yield tokens

    def label_counts(self, classes: np.ndarray) -> Dict[str, int]:
        symbols = self._dictionary("label").symbols
        values, counts = np.unique(classes, return_counts=True)
        pairs = sorted(((symbols[v], int(n)) for v, n in zip(values.tolist(), counts)), key=lambda p: (-p[1], p[0]))
        return dict(pairs)

    def write_rows(self, rows: np.ndarray, folder: Path) -> None:
        """The chosen rows of every train file, in order, into the same paths under `folder`."""
        from fairseq.data import indexed_dataset

        for name in self.inputs + ([] if self.regression else ["label"]):
            (folder / name).mkdir(exist_ok=True)
            source = str(self.data_bin / name / "train")
            builder = indexed_dataset.make_builder(
                indexed_dataset.data_file_path(str(folder / name / "train")),
                impl=indexed_dataset.infer_dataset_impl(source), vocab_size=len(self._dictionary(name)))
            for tokens in self._rows(name, rows.tolist()):
                builder.add_item(tokens)
            builder.finalize(indexed_dataset.index_file_path(str(folder / name / "train")))
        if self.regression:
            (folder / "label").mkdir(exist_ok=True)
            (folder / REGRESSION_LABELS).write_bytes(b"".join(self.split.targets[r] + b"\n" for r in rows.tolist()))


def _check_size(data_bin: Path, size, rows: int, classes: Optional[int], max_positions: Optional[int] = None) -> None:
    smallest = classes or 1
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not smallest <= size <= rows:
        why = f"one row of each of its {classes} classes" if classes else "one row"
        fit = f" that fit {max_positions} positions" if max_positions is not None else ""
        raise GlueFormatError(f"a training subset of {size!r} rows: expected an integer from {smallest} "
                              f"(at least {why}) to {rows} (its training rows{fit})", data_bin)


def _existing_record(out: Path) -> Optional[TrainSubset]:
    """OUT's train_subset record, or None if OUT is not a subset this module made."""
    try:
        return read_metadata(out).train_subset
    except (OSError, GlueFormatError):
        return None


def _data_files(folder: Path) -> List[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())


def _folder_digest(folder: Path) -> str:
    """SHA-256 over every file's relative path and content: a subset is reused only for the
    very data it was drawn from."""
    digest = hashlib.sha256()
    for relative in _data_files(folder):
        digest.update(f"{relative.as_posix()}\0{(folder / relative).stat().st_size}\0".encode())
        with open(folder / relative, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _carry_over(data_bin: Path, folder: Path, skip) -> None:
    """Every file but the training split's, as it is: a hard link where the file system
    allows one (glue_prep replaces files, never rewrites them in place), else a copy."""
    for relative in _data_files(data_bin):
        if relative in skip:
            continue
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(data_bin / relative, target)
        except OSError:
            shutil.copyfile(data_bin / relative, target)


def _subset_meta(meta: GlueMetadata, record: TrainSubset, counts: Dict[str, int]) -> GlueMetadata:
    """DATA_BIN's record with the subset's training rows; the full split's over-length rows
    (named by their lines) move to the train_subset record."""
    label_counts = {**meta.label_counts, "train": counts} if counts else meta.label_counts
    over_length = {split: rows for split, rows in meta.over_length.items() if split != "train"}
    return replace(meta, splits={**meta.splits, "train": record.size}, label_counts=label_counts,
                   over_length=over_length, train_subset=record)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m glue_prep.subset", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_bin", type=Path, help="a task's binaries from glue_prep (<TASK>-bin)")
    parser.add_argument("size", type=int, help="training rows to keep")
    parser.add_argument("seed", type=int, help="seed of the draw (an integer >= 0)")
    parser.add_argument("out", type=Path, help="the subset's folder")
    parser.add_argument("--max-positions", type=int, metavar="P",
                        help="draw among the rows that fit P positions (fairseq-train skips longer ones)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.getLogger("fairseq").setLevel(logging.WARNING)  # its "loaded N examples" lines
    try:
        info = make_train_subset(args.data_bin, args.size, args.seed, args.out, args.max_positions)
    except GlueFormatError as e:
        print(f"glue_prep.subset: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"glue_prep.subset: error: {unwritten(e)}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{label} {n}" for label, n in info.label_counts.items())
    print(f"{'reused' if info.reused else 'wrote'} {info.folder}: {info.record['size']} of "
          f"{info.record['full_train']['rows']} training rows, seed {info.record['seed']}"
          + (f" ({counts})" if counts else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
