"""fairseq-train that counts how often a Transformer encoder ran, for tests/test_freeze_encoder.py.

    python tests/count_encoder_calls.py <fairseq-train arguments>

A process-wide forward hook counts the calls of every fairseq TransformerEncoder (RoBERTa's
sentence encoder); the count is printed last, as "encoder forward calls: N".
"""
import atexit
import sys

import torch

PREFIX = "encoder forward calls: "


def main():
    from fairseq_cli.train import cli_main  # first: it sets up fairseq-train's logging format
    from fairseq.models.transformer import TransformerEncoderBase

    calls = [0]

    def count(module, inputs, output):
        if isinstance(module, TransformerEncoderBase):
            calls[0] += 1

    torch.nn.modules.module.register_module_forward_hook(count)
    atexit.register(lambda: print(f"{PREFIX}{calls[0]}", flush=True))
    sys.argv = ["fairseq-train", *sys.argv[1:]]
    cli_main()


def calls_in(log: str) -> int:
    return int(log.rsplit(PREFIX, 1)[1].split()[0])


if __name__ == "__main__":
    main()
