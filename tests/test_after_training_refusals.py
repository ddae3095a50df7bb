"""After training (helper-42's review): glue_submission.py writes only what the GLUE server would
take (every test row, one model per file, a test split to submit) or nothing; evaluate.py reads
another file whole and names the line of a row too long for the model; predict.py leaves no
folder behind when it refuses; a GLUE test id holding a line break is refused like a user
task's."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, SHIPPED_GLUE
from test_input_defects import trained_rte_folder  # noqa: F401  (the fixture: a tiny RTE checkpoint)

SUBMISSION = REPO / "scripts" / "glue_submission.py"


def run(script, *arguments):
    return subprocess.run([sys.executable, str(REPO / "scripts" / script), *map(str, arguments)],
                          capture_output=True, text=True, cwd=REPO)


def edited_copy(rte_bin: Path, folder: Path, **changes) -> Path:
    shutil.copytree(rte_bin, folder)
    meta = json.loads((folder / "glue_prep.json").read_text())
    (folder / "glue_prep.json").write_text(json.dumps({**meta, **changes}))
    return folder


def test_a_submission_is_refused_before_anything_is_written(trained_rte_folder, rte_bin, tmp_path):  # noqa: F811
    out = tmp_path / "sub"
    twice = run("glue_submission.py", out, "--task", trained_rte_folder, rte_bin, "--task", trained_rte_folder, rte_bin,
                "--allow-partial")
    assert twice.returncode == 2 and "both make RTE.tsv; expected one model per GLUE test file" in twice.stderr
    untested = edited_copy(rte_bin, tmp_path / "untested", test_splits={})
    refused = run("glue_submission.py", out, "--task", trained_rte_folder, untested)
    assert refused.returncode == 2 and "has no test split to submit" in refused.stderr
    # the test file edited after glue_prep binarised it: 50 rows where 160 were
    short = tmp_path / "test.tsv"
    short.write_text("".join((SHIPPED_GLUE / "RTE" / "test.tsv").read_text().splitlines(keepends=True)[:51]))
    meta = json.loads((rte_bin / "glue_prep.json").read_text())
    changed = edited_copy(rte_bin, tmp_path / "changed", source={**meta["source"], "test": str(short)})
    refused = run("glue_submission.py", out, "--task", trained_rte_folder, changed, "--allow-partial")
    assert refused.returncode == 2 and "has 50 rows now, 160 when glue_prep binarised it" in refused.stderr
    assert not out.exists()
    # an output that cannot be written: refused before the TSV beside it is replaced
    (out / "submission.zip").mkdir(parents=True)
    (out / "RTE.tsv").write_text("OLD")
    blocked = run("glue_submission.py", out, "--task", trained_rte_folder, rte_bin, "--allow-partial")
    assert blocked.returncode == 2 and "submission.zip is a folder" in blocked.stderr
    assert (out / "RTE.tsv").read_text() == "OLD"


def test_evaluate_reads_another_file_whole_and_names_the_line_of_a_row_too_long(
        trained_rte_folder, rte_bin, tmp_path):  # noqa: F811
    dev = SHIPPED_GLUE / "RTE" / "dev.tsv"
    rows = dev.read_text(encoding="utf-8").splitlines()
    scored = run("evaluate.py", trained_rte_folder, rte_bin, "--tsv", dev)  # rte_bin: --max-rows 160
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert json.loads(scored.stdout[scored.stdout.index("{"):])["examples"] == len(rows) - 1
    index, first, second, label = rows[3].split("\t")
    rows[3] = "\t".join([index, " ".join([first] * 40), second, label])  # line 4: far over 512 positions
    long_dev = tmp_path / "dev.tsv"
    long_dev.write_text("\n".join(rows) + "\n", encoding="utf-8")
    refused = run("evaluate.py", trained_rte_folder, rte_bin, "--tsv", long_dev)
    assert refused.returncode == 2 and f"{long_dev}, line 4: this row takes " in refused.stderr
    assert "Traceback" not in refused.stderr


def test_predict_leaves_no_folder_it_made_when_it_refuses(trained_rte_folder, rte_bin, tmp_path):  # noqa: F811
    bad = tmp_path / "input.tsv"
    bad.write_text("id\twrong\theader\n0\ta\tb\n")
    refused = run("predict.py", trained_rte_folder, rte_bin, bad, "--out", tmp_path / "new" / "deeper" / "p.tsv",
                  "--no-progress")
    assert refused.returncode == 2 and "input.tsv, line 1" in refused.stderr
    assert not (tmp_path / "new").exists()


@pytest.mark.unit
@pytest.mark.parametrize("breaking", ["\u2028", "\x0c", "\x85"])
def test_a_glue_test_id_holding_a_line_break_is_refused_at_its_line(breaking, tmp_path):
    from glue_prep.errors import GlueFormatError
    from glue_prep.readers.splits import read_split
    from glue_prep.tasks import get_task

    lines = (SHIPPED_GLUE / "RTE" / "test.tsv").read_text(encoding="utf-8").splitlines()[:6]
    lines[3] = f"7{breaking}8" + lines[3][lines[3].index("\t"):]
    path = tmp_path / "test.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    task = get_task("RTE")
    with pytest.raises(GlueFormatError, match=r"test\.tsv, line 4: id '7.*8' holds a line break"):
        read_split(task, task.split("test"), path)


def test_a_pretrained_checkpoint_given_for_a_fine_tuned_one_is_refused_in_one_line(tiny_pretrained, rte_bin):
    """It failed inside fairseq's task setup with "No such file or directory: DATA/dict.txt"
    (a masked_lm task's dictionary), after some 35 lines of Hydra warnings."""
    refused = run("evaluate.py", tiny_pretrained.parent, rte_bin, "--checkpoint", tiny_pretrained.name)
    assert refused.returncode == 2
    assert "its weights hold no 'sentence_classification_head' head (a pre-trained model.pt?)" in refused.stderr
    assert "dict.txt" not in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.unit
def test_a_glue_test_id_given_twice_is_refused_at_its_line(tmp_path):
    from glue_prep.errors import GlueFormatError
    from glue_prep.readers.splits import read_split
    from glue_prep.tasks import get_task

    lines = (SHIPPED_GLUE / "RTE" / "test.tsv").read_text(encoding="utf-8").splitlines()[:6]
    lines[4] = lines[2].split("\t")[0] + lines[4][lines[4].index("\t"):]  # line 5 takes line 3's id
    path = tmp_path / "test.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    task = get_task("RTE")
    with pytest.raises(GlueFormatError, match=r"test\.tsv, line 5: id '1' is also the id of line 3; expected each id once"):
        read_split(task, task.split("test"), path)
