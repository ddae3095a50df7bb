"""fairseq-hire: HIRE (Yang and Zhao, arXiv 1911.01940) for fairseq RoBERTa.

Importing the package (``--user-dir fairseq_hire``) registers components and changes nothing
else: the ``roberta_hire`` model and architectures, the ``sentence_prediction_hire`` task and
criterion and the ``hire_tokenizer`` BPE. No name of fairseq or torch is reassigned and torch's
list of safe globals is left as it is. What the plugin's own runs add (safe checkpoint loading,
atomic saving, the recorded head classes, the full last validation batch, CPU distributed
training) is installed by its task and criterion when a run uses them, for that run; the
checkpoint hooks also by its model when one is built (docs/FAIRSEQ_CHANGES.md).
"""
from . import bpe, criterions, tasks  # noqa: F401  (registration)
from .models.roberta_hire import RobertaHireModel
from .tasks import sentence_prediction_hire  # noqa: F401  (registration)

__all__ = ["RobertaHireModel"]
