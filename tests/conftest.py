"""Shared test fixtures: where the real GLUE and BPE files are. The builders of checkpoints,
trainers and fairseq's own GLUE recipe are shared with the benchmarks, in benchmarks/."""
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
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


def run_glue_prep(glue_task_dir: Path, task: str, out_dir: Path, *flags) -> Path:
    """Binarise a real GLUE task with glue_prep, as `bash glue_prep/prepare_glue.sh` does."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "glue_prep", str(glue_task_dir.parent), task, str(out_dir), *flags]
    subprocess.run(command, check=True, cwd=REPO, capture_output=True, text=True)
    return out_dir / f"{task}-bin"


@pytest.fixture(scope="session")
def rte_bin(tmp_path_factory) -> Path:
    """The first 160 rows of each split of the real RTE files, binarised by glue_prep."""
    return run_glue_prep(real_glue_task_dir("RTE"), "RTE", tmp_path_factory.mktemp("glue"),
                         "--max-rows", "160", "--workers", "1")


@pytest.fixture(scope="session")
def tiny_pretrained(tmp_path_factory) -> Path:
    """A tiny RoBERTa model.pt in the original release format (random weights)."""
    from roberta_checkpoints import write_original_roberta_checkpoint

    path = tmp_path_factory.mktemp("roberta") / "model.pt"
    write_original_roberta_checkpoint(path, GPT2_BPE / "dict.txt")
    return path
