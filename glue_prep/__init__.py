"""glue_prep: the original GLUE files into the binaries fairseq's RoBERTa GLUE recipe consumes.

Command line: ``python -m glue_prep GLUE_DIR TASK|ALL OUT_DIR [options]`` or
``bash glue_prep/prepare_glue.sh ...``; see glue_prep/README.md.
"""
__version__ = "0.1.0"

from .errors import GlueFormatError, OutputExistsError  # noqa: E402
from .tasks import TASK_ORDER, TASKS, get_task  # noqa: E402

__all__ = ["GlueFormatError", "OutputExistsError", "TASKS", "TASK_ORDER", "get_task", "__version__"]
