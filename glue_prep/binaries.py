"""One split of a task's binaries, read as fairseq's sentence_prediction task reads it, and
checked as a whole: fairseq loads whatever files it finds, so a split with half of input1's
.bin/.idx pair trains on the first sentence alone, and one without its labels crashes mid-run.

A split is ``input0/<split>`` (and ``input1/<split>`` for a sentence pair), with its labels in
``label/<split>`` (classification: an indexed dataset of label indices) or
``label/<split>.label`` (regression: one target a text line). Both the subset code and
finetune.py's checks read splits through `read_binaries`, so they accept and refuse the same
folders, with the same one-line messages naming the file.
"""
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

from .errors import GlueFormatError
from .lengths import positions


@dataclass
class BinarisedSplit:
    name: str  # train, valid, test, ...
    inputs: List[str]  # ["input0"], or ["input0", "input1"] for a sentence pair
    sizes: List[np.ndarray]  # per input, each row's tokens with its </s>
    targets: Optional[List[bytes]]  # regression: each row's target line; None for classes

    @property
    def rows(self) -> int:
        return len(self.sizes[0])

    def fitting(self, max_positions: Optional[int]) -> np.ndarray:
        """The rows that fit `max_positions` (every row for None), ascending: fairseq-train skips
        longer training rows and stops at a longer validation row."""
        everything = np.arange(self.rows)
        if max_positions is None:
            return everything
        return everything[positions([n - 1 for n in self.sizes]) <= max_positions]


def read_binaries(data_bin: Path, split: str, regression: bool) -> Optional[BinarisedSplit]:
    """The split `split` of DATA_BIN, or None where it has no input0/<split>.bin and .idx; a
    GlueFormatError in one line, naming the file, where fairseq would misread it: a file it
    cannot read, half of input1's pair, an input or labels of other rows than input0's."""
    data_bin = Path(data_bin)
    if not all((data_bin / "input0" / split).with_suffix(ext).is_file() for ext in (".bin", ".idx")):
        return None
    inputs, sizes = [], []
    for name in ("input0", "input1"):
        prefix = data_bin / name / split
        if not (prefix.with_suffix(".bin").exists() or prefix.with_suffix(".idx").exists()):
            continue  # a single-sentence task; half a pair is read, and refused
        dataset = read_indexed(prefix)  # held while its sizes are copied: the memory map closes with it
        inputs.append(name)
        sizes.append(np.array(dataset.sizes))
        if len(sizes[-1]) != len(sizes[0]):
            raise GlueFormatError(f"{len(sizes[-1])} rows; expected {len(sizes[0])}, as input0/{split} has",
                                  prefix.with_suffix(".bin"))
    rows, targets = len(sizes[0]), None
    if regression:
        path = data_bin / "label" / f"{split}.label"
        if not path.is_file():
            raise GlueFormatError(f"missing; expected the regression targets of the {split} split, one a line", path)
        targets = path.read_bytes().splitlines()  # the lines fairseq's text-mode readlines() sees
        count, unit = len(targets), "lines"
    else:
        path = data_bin / "label" / f"{split}.bin"
        if not path.exists():
            raise GlueFormatError(f"missing; expected the label of each of input0/{split}'s {rows} rows", path)
        count, unit = len(read_indexed(path.with_suffix(""))), "rows"
    if count != rows:
        raise GlueFormatError(f"{count} {unit}; expected {rows}, one per row of input0/{split}", path)
    return BinarisedSplit(split, inputs, sizes, targets)


def read_indexed(prefix: Path):
    """fairseq's reader of the indexed dataset PREFIX.bin / PREFIX.idx, or a GlueFormatError
    naming the file where fairseq cannot read it."""
    from fairseq.data import data_utils

    problem = None
    # a reader whose __init__ failed fails again in its __del__ (AttributeError
    # _bin_buffer_mmap), printed as "Exception ignored": that is not the user's error
    hook, sys.unraisablehook = sys.unraisablehook, lambda unraisable: None
    try:
        try:
            dataset = data_utils.load_indexed_dataset(str(prefix), None)
        except Exception as e:  # fairseq raises what numpy or its own asserts raise
            problem = " ".join(repr(e).split())
    finally:  # the failed reader is gone once its exception is
        sys.unraisablehook = hook
    if problem:
        raise GlueFormatError(f"cannot read this fairseq indexed dataset: {problem}", prefix.with_suffix(".idx"))
    if dataset is None:
        raise GlueFormatError("not a fairseq indexed dataset (or its .bin is missing); expected the .bin and .idx "
                              "that fairseq-preprocess or glue_prep writes", prefix.with_suffix(".idx"))
    return dataset

