"""What a reader returns for one split file (SplitData), and the label rule every reader applies."""
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from ..errors import GlueFormatError, listed, shown
from ..tasks.spec import TaskSpec, label_problem, score_value

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


def format_lines(lines, limit=MAX_REPORTED) -> str:
    return listed(lines, limit, show=str)
