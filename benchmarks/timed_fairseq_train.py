#!/usr/bin/env python
"""fairseq-train, timed from the inside: python benchmarks/timed_fairseq_train.py TIMES.json
FAIRSEQ-TRAIN-ARGS...

Runs fairseq_cli.train exactly as `python -m fairseq_cli.train FAIRSEQ-TRAIN-ARGS` does, with
fairseq's Trainer.train_step and fairseq_cli.train.validate_and_save wrapped by timers (this
process only), and writes to TIMES.json the perf_counter seconds, from this process's start,
at which each update started and ended and each validate_and_save call started and ended.
regime_costs.py turns them into the seconds per update and per epoch end.
"""
import json
import sys
import time

STARTED = time.perf_counter()

from fairseq.trainer import Trainer  # noqa: E402
from fairseq_cli import train as fairseq_train  # noqa: E402


def timed(function, calls: list):
    def wrapper(*args, **kwargs):
        start = time.perf_counter() - STARTED
        try:
            return function(*args, **kwargs)
        finally:
            calls.append([start, time.perf_counter() - STARTED])
    return wrapper


def main() -> int:
    times_file, arguments = sys.argv[1], sys.argv[2:]
    updates, epoch_ends = [], []
    Trainer.train_step = timed(Trainer.train_step, updates)
    fairseq_train.validate_and_save = timed(fairseq_train.validate_and_save, epoch_ends)
    sys.argv = ["fairseq-train", *arguments]
    fairseq_train.cli_main()
    with open(times_file, "w", encoding="utf-8") as out:
        json.dump({"updates": updates, "validate_and_save": epoch_ends,
                   "ended": time.perf_counter() - STARTED}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
