"""The tokenizer glue_prep recorded, registered as fairseq BPE ``hire_tokenizer``."""
from . import hire_tokenizer  # noqa: F401  (registers the BPE)
