"""Everything about a task, in one place: glue_prep, training, evaluation and the reports read it.

    spec.py        TaskSpec, SplitSpec, Recipe, and the rules every task's labels and scores follow
    glue.py        the GLUE tasks: files, columns, labels, metric, submission names, download, recipe
    task_files.py  a user's own task, from a JSON task file or glue_prep's flags
    resolver.py    get_task: the one way from a name, a task file or a task's binaries to its TaskSpec
"""
from .glue import TASK_ORDER, TASKS
from .resolver import get_task
from .spec import Recipe, SplitSpec, TaskSpec

__all__ = ["TASKS", "TASK_ORDER", "Recipe", "SplitSpec", "TaskSpec", "get_task"]
