"""A fairseq BPE ("hire_tokenizer") that wraps glue_prep's tokenizers, so the hub encodes
text exactly as glue_prep did when it binarised the task (GPT-2 BPE through fairseq's own
encoder, sentencepiece, or WordPiece for converted BERT-family checkpoints)."""
from dataclasses import dataclass, field

from fairseq.data.encoders import register_bpe
from fairseq.dataclass import FairseqDataclass


@dataclass
class HireTokenizerConfig(FairseqDataclass):
    hire_tokenizer_spec: str = field(
        default="", metadata={"help": "tokenizer_spec.json written by glue_prep or the converter"}
    )


@register_bpe("hire_tokenizer", dataclass=HireTokenizerConfig)
class HireTokenizerBPE:
    def __init__(self, cfg):
        from glue_prep.tokenizers import load_tokenizer

        if not cfg.hire_tokenizer_spec:
            raise ValueError("--bpe hire_tokenizer needs --hire-tokenizer-spec")
        self.tokenizer = load_tokenizer(cfg.hire_tokenizer_spec)
        try:  # read the files now: files of another format are refused before any text is encoded
            self.tokenizer.load()
        except ValueError as error:
            raise ValueError(f"{cfg.hire_tokenizer_spec}: {error}") from None

    def encode(self, x: str) -> str:
        return self.tokenizer.encode(x)

    def decode(self, x: str) -> str:
        return self.tokenizer.decode(x)
