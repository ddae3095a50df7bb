"""Shared test fixtures: where the real GLUE and BPE files are."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHIPPED_GLUE = REPO / "glue_prep" / "data"
GPT2_BPE = REPO / "fairseq_hire" / "assets" / "gpt2_bpe"


def real_glue_task_dir(task: str) -> Path:
    """The real GLUE folder of `task`: ../shared/glue_data beside the checkout, else the
    copy the repo ships (RTE, SST-2). Skips the test, with the reason, when neither has it."""
    for root in (SHARED / "glue_data", SHIPPED_GLUE):
        if (root / task / "train.tsv").exists():
            return root / task
    pytest.skip(f"no real GLUE {task} files: neither {SHARED / 'glue_data' / task} nor {SHIPPED_GLUE / task} exists")


@pytest.fixture
def gpt2_bpe_dir() -> Path:
    return GPT2_BPE
