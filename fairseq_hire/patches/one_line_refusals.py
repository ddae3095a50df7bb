"""A fairseq command line that ends with one of the plugin's refusals prints it as one line.

The plugin refuses bad input (a checkpoint its run cannot load, binaries its head does not fit,
a layer cache folder it cannot use, --hire-* options that build no model) with an exception
whose message names the file or flag and what was expected. Under fairseq-train that line came
last, under some thirty lines of traceback through fairseq's ``main``, which offers no hook to
report an error. ``install()`` wraps Python's ``sys.excepthook`` (not a name of fairseq or
torch) when a training run sets up the plugin's task or criterion, or loads its checkpoint as a
plugin run (``checkpoints.saving``; a run of roberta_hire under fairseq's own task), never at
import, activation or a hub load: an exception of ``refusal_classes()`` whose traceback passes
through ``fairseq_cli`` (fairseq-train, fairseq-validate, ``python -m fairseq_cli.train``) prints
as the line that ended the traceback (``module.Class: message``), and the process exits with
status 1 as before. Every other exception, a plain ValueError (which may be a bug's), and a
refusal in the user's own program (the hub) print their traceback as Python does;
``FAIRSEQ_HIRE_TRACEBACK=1`` prints the traceback of refusals too. Not covered:
fairseq-hydra-train (Hydra reports errors itself) and CPU workers that fairseq's launcher spawns
(torch reports their errors in the parent).
"""
import os
import sys
import traceback

from ..checkpoints.loading import HOOK_MARK as MARK

TRACEBACK_VARIABLE = "FAIRSEQ_HIRE_TRACEBACK"


def refusal_classes() -> tuple:
    from glue_prep.errors import GlueFormatError
    from glue_prep.tokenizers import TokenizerFileError

    from ..checkpoints.errors import CheckpointError, DataMismatchError
    from ..models.layer_cache import LayerCacheError
    from ..modules.options import HireOptionError

    return CheckpointError, DataMismatchError, LayerCacheError, HireOptionError, GlueFormatError, TokenizerFileError


def ends_fairseq_command_line(trace) -> bool:
    # python -m fairseq_cli.train runs the module as __main__; its __spec__ keeps the name
    return any((getattr(frame.f_globals.get("__spec__"), "name", None) or frame.f_globals.get("__name__", ""))
               .startswith("fairseq_cli.") for frame, _ in traceback.walk_tb(trace))


def install() -> None:
    if getattr(sys.excepthook, MARK, False):
        return
    previous = sys.excepthook

    def excepthook(kind, error, trace):
        if (issubclass(kind, refusal_classes()) and ends_fairseq_command_line(trace)
                and os.environ.get(TRACEBACK_VARIABLE) != "1"):
            sys.stderr.write("".join(traceback.format_exception_only(kind, error)))
            sys.stderr.flush()
            return
        previous(kind, error, trace)

    setattr(excepthook, MARK, True)
    sys.excepthook = excepthook
