"""download_glue.sh: needs a network, which this machine lacks. Tested: --help, argument
checks, the URL table, and the MRPC building step, which from the local MSR files must
reproduce GLUE's real MRPC/{train,dev,test}.tsv byte for byte (as download_glue_data.py does)."""
import shutil

import pytest

from conftest import real_glue_task_dir
from test_glue_prep_helpers import DOWNLOAD_SH, run

from glue_prep import download


def test_help_and_argument_checks(tmp_path):
    proc = run(["bash", DOWNLOAD_SH, "--help"])
    assert proc.returncode == 0 and "--tasks" in proc.stdout and "--path-to-mrpc" in proc.stdout
    proc = run(["bash", DOWNLOAD_SH])
    assert proc.returncode == 2 and "usage" in proc.stderr
    proc = run(["bash", DOWNLOAD_SH, tmp_path, "--tasks", "CoLA,NOPE"])
    assert proc.returncode == 2 and "unknown task 'NOPE'" in proc.stderr


def test_task_names_and_urls():
    assert download.parse_tasks("all") == download.ALL
    assert download.parse_tasks("SST,STS,diagnostic,rte") == ["SST-2", "STS-B", "AX", "RTE"]
    assert set(download.ZIPS) | {"MRPC", "AX"} == set(download.ALL)
    assert all(u.startswith("https://dl.fbaipublicfiles.com/glue/data/") for u in download.ZIPS.values())
    assert download.AX_URL.endswith("/AX.tsv")


def test_mrpc_built_from_msr_files_equals_glue(tmp_path):
    src = real_glue_task_dir("MRPC")
    needed = ["msr_paraphrase_train.txt", "msr_paraphrase_test.txt", "dev_ids.tsv"]
    if not all((src / n).exists() for n in needed):
        pytest.skip(f"{src} lacks the MSR source files {needed}")
    msr = tmp_path / "msr"
    msr.mkdir()
    for n in needed:
        shutil.copyfile(src / n, msr / n)
    proc = run(["bash", DOWNLOAD_SH, tmp_path / "glue", "--tasks", "MRPC", "--path-to-mrpc", msr])
    assert proc.returncode == 0, proc.stderr
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        assert (tmp_path / "glue" / "MRPC" / name).read_bytes() == (src / name).read_bytes(), name
