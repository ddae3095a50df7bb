"""The one way to a task: a GLUE task's name, a user's task file, or the user task whose
binaries glue_prep made (it keeps the task file beside them)."""
from pathlib import Path
from typing import Optional, Union

from ..errors import UnknownTaskError
from .glue import TASKS
from .spec import TaskSpec
from .task_files import read_task_file

KEPT_TASK_FILE = "task.json"  # the task file glue_prep writes beside a user task's binaries


def get_task(task: Union[str, TaskSpec], data_bin: Optional[Union[str, Path]] = None) -> TaskSpec:
    """A GLUE task by name (exact spelling, or case-insensitive, or its YAML name such as
    sts_b), a user's task from its task file (a path ending in .json, see task_files), or, with
    `data_bin`, the user task of that name whose binaries these are. A TaskSpec is returned
    as it is. Raises UnknownTaskError (a ValueError) for any other name."""
    if isinstance(task, TaskSpec):
        return task
    if data_bin is not None:
        kept = Path(data_bin) / KEPT_TASK_FILE
        if kept.is_file():
            recorded = read_task_file(kept)
            if recorded.name == task:
                return recorded
    if task in TASKS:
        return TASKS[task]
    for key in TASKS:
        if task.lower() in (key.lower(), key.lower().replace("-", "_")):
            return TASKS[key]
    if task.endswith(".json"):
        return read_task_file(task)
    raise UnknownTaskError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}, a task file (.json), or "
                           "the name of the user task whose binaries are given")
