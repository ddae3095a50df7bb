"""fairseq-hire: HIRE (Yang and Zhao, arXiv 1911.01940) for fairseq RoBERTa.

Importing the package (``--user-dir fairseq_hire``) registers the ``roberta_hire`` model
and architectures, the ``sentence_prediction_hire`` criterion and the ``hire_tokenizer``
BPE, makes fairseq's checkpoint loading safe (``checkpoint_io``: every loader, pickle and
configuration) and its saving atomic with a resume that survives a kill
(``checkpoint_saving``), records a sentence-prediction head's classes in its checkpoints
and refuses data whose classes differ (``head_classes``), and installs the small fixes to
fairseq in ``compat`` and ``cpu_distributed`` (fairseq's distributed training on CPU, over
gloo).
"""
from . import checkpoint_io, checkpoint_saving, compat, cpu_distributed, head_classes

checkpoint_io.install()
checkpoint_saving.install()
compat.install()
cpu_distributed.install()
head_classes.install()

from . import criterions, tokenizer  # noqa: E402,F401  (registration)
from .models.roberta_hire import RobertaHireModel  # noqa: E402

__all__ = ["RobertaHireModel"]
