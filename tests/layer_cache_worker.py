"""One process of tests/test_layer_cache.py's concurrency test: a frozen tiny RoBERTa with
--layer-cache, the RTE splits loaded, then, once GO_FILE exists, the cache filled for them.

    python tests/layer_cache_worker.py DATA PRETRAINED CACHE READY_FILE GO_FILE OUT_JSON

Writes READY_FILE when everything but the cache is set up, and to OUT_JSON how often the
encoder ran and the sum of the cached states of the first validation batch.
"""
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def main():
    data, pretrained, cache, ready, go, out = sys.argv[1:]
    from test_layer_cache import frozen_trainer, first_batch

    trainer = frozen_trainer(data, pretrained, cache)
    calls = []
    trainer.model.encoder.sentence_encoder.register_forward_hook(lambda *_: calls.append(1))
    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.01)
    final, _ = trainer.model.layer_cache.lookup(first_batch(trainer)["net_input"]["src_tokens"])
    Path(out).write_text(json.dumps({"encoder_calls": len(calls), "states_sum": final.double().sum().item()}))


if __name__ == "__main__":
    main()
