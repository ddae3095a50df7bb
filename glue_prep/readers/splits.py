"""One split file of any task, read by the reader of its format."""
from pathlib import Path
from typing import Optional

from ..tasks.spec import SplitSpec, TaskSpec
from .glue_tsv import read_glue_tsv
from .rows import SplitData
from .user_formats import read_user_split


def read_split(task: TaskSpec, split: SplitSpec, path: Path, max_rows: Optional[int] = None) -> SplitData:
    """Read and check one split file: GLUE's own TSV files (glue_tsv), or a user task's TSV, CSV
    or JSON Lines file (user_formats). Raises GlueFormatError on the first bad line."""
    if task.file_format == "glue":
        return read_glue_tsv(task, split, path, max_rows)
    return read_user_split(task, split, path, max_rows)
