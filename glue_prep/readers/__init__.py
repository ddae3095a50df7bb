"""Reading the files a task names, refusing what GLUE's loaders (or the task's format) can't read.

    reading.py       the rules for every file glue_prep reads: regular files only, strict UTF-8, JSON
    rows.py          SplitData (what a reader returns) and the label rule every reader applies
    glue_tsv.py      GLUE's own TSV files, read as GLUE's loaders and fairseq's recipe read them
    user_formats.py  a user task's TSV, CSV or JSON Lines files, columns by header name or key
    splits.py        read_split: one split file of any task, by the reader of its format

Nothing is imported here: tasks/task_files.py uses reading.py and the readers use the tasks, so an
import here would make a cycle.
"""
