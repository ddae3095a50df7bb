"""Bad or unusual input gets a clear answer on every entry point: long rows (glue_prep reports
and truncates them, the hub refuses or truncates them the same way, finetune.py refuses
over-long validation rows before fairseq starts), text the hub must strip as glue_prep does,
the wrong data for a recipe, folders that do not exist, outputs that cannot be written."""
import json
import shlex
import subprocess
import sys

import pytest
import torch

from conftest import GPT2_BPE, REPO, SHIPPED_GLUE, real_glue_task_dir
from fairseq_hire import RobertaHireModel
from glue_prep.lengths import longest_first, positions
from roberta_checkpoints import write_original_roberta_checkpoint

HEAD = "sentence_classification_head"


def glue_prep(*arguments):
    return subprocess.run([sys.executable, "-m", "glue_prep", *map(str, arguments), "--workers", "1", "--no-progress"],
                          capture_output=True, text=True, cwd=REPO)


@pytest.mark.unit
def test_longest_first_cuts_the_longer_sentence_and_the_later_on_ties():
    assert longest_first([100, 20], 64) == [40, 20]
    assert longest_first([30, 30], 64) == [30, 30]  # 30 + 30 + 4 positions fit
    assert longest_first([31, 30], 64) == [30, 30]
    assert longest_first([31, 31], 63) == [30, 29]  # a tie loses from the later sentence
    assert longest_first([10], 64) == [10]
    assert positions(longest_first([300, 250], 512)) == 512
    with pytest.raises(ValueError, match="cannot hold"):
        longest_first([5, 5], 3)


@pytest.fixture(scope="module")
def rte_short(tmp_path_factory):
    """Real RTE rows binarised with a 64-position limit: reported, and a truncated copy."""
    out = tmp_path_factory.mktemp("short")
    source = real_glue_task_dir("RTE").parent
    reported = glue_prep(source, "RTE", out / "reported", "--max-rows", "60", "--max-positions", "64")
    truncated = glue_prep(source, "RTE", out / "truncated", "--max-rows", "60", "--truncate-to", "64")
    assert reported.returncode == 0 and truncated.returncode == 0, reported.stderr + truncated.stderr
    return out, reported.stderr


def row_positions(data_bin, split):
    from glue_prep.binaries import read_binaries

    return [positions([a - 1, b - 1]) for a, b in zip(*read_binaries(data_bin, split, regression=False).sizes)]


def test_glue_prep_reports_long_rows_and_truncates_them_on_request(rte_short):
    out, log = rte_short
    meta = json.loads((out / "reported" / "RTE-bin" / "glue_prep.json").read_text())
    first = meta["over_length"]["valid"]["lines"][0]
    assert f"RTE valid: {meta['over_length']['valid']['rows']} rows longer than 64 positions" in log
    assert f"dev.tsv, lines {first}" in log and "--truncate-to" in log
    long_rows = [p for p in row_positions(out / "reported" / "RTE-bin", "valid") if p > 64]
    assert len(long_rows) == meta["over_length"]["valid"]["rows"] > 0
    assert max(row_positions(out / "truncated" / "RTE-bin", "valid")) <= 64
    assert json.loads((out / "truncated" / "RTE-bin" / "glue_prep.json").read_text())["truncated"] is True


@pytest.fixture(scope="module")
def short_model(tmp_path_factory):
    """A tiny RoBERTa with 64 positions (original release format)."""
    path = tmp_path_factory.mktemp("short-model") / "model.pt"
    write_original_roberta_checkpoint(path, GPT2_BPE / "dict.txt", positions=64)
    return path


def test_finetune_refuses_validation_rows_longer_than_the_model(rte_short, short_model, tmp_path):
    out, _ = rte_short
    command = [sys.executable, str(REPO / "scripts" / "finetune.py"), "RTE"]
    refused = subprocess.run([*command, str(out / "reported" / "RTE-bin"), str(short_model), str(tmp_path / "a"),
                              "--dry-run"], capture_output=True, text=True, cwd=REPO)
    assert refused.returncode == 2
    assert "valid rows are longer than the model's 64 positions" in refused.stderr and "dev.tsv" in refused.stderr
    assert "--truncate-to 64" in refused.stderr
    accepted = subprocess.run([*command, str(out / "truncated" / "RTE-bin"), str(short_model), str(tmp_path / "b"),
                               "--dry-run"], capture_output=True, text=True, cwd=REPO)
    assert accepted.returncode == 0, accepted.stderr


def test_hub_truncates_exactly_as_glue_prep_does_and_otherwise_names_the_example(rte_short, tmp_path):
    from fairseq_setup import build_trainer, finetune_args, save

    out, _ = rte_short
    data_bin = out / "truncated" / "RTE-bin"
    trainer = build_trainer(finetune_args(data_bin, extra=["--max-positions", "64"]))
    save(trainer, tmp_path / "checkpoint_best.pt", {"epoch": 1})
    hub = RobertaHireModel.from_pretrained(str(tmp_path), "checkpoint_best.pt", data_name_or_path=str(data_bin))
    assert hub.model.max_positions() == 64
    task = hub.task
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    rows = [line.split("\t") for line in (real_glue_task_dir("RTE") / "dev.tsv").read_text().splitlines()[1:61]]
    for i, row in enumerate(rows):
        assert torch.equal(hub.encode_example((row[1], row[2]), truncate=True), dataset[i]["net_input.src_tokens"]), i
    long_row = next(i for i, row in enumerate(rows) if len(hub.encode(row[1], row[2])) > 64)
    with pytest.raises(ValueError, match=f"example {long_row} takes .* positions, more than the model's max_positions=64"):
        hub.predict_batch(HEAD, [(r[1], r[2]) for r in rows])
    # evaluate.py cuts the dev rows as glue_prep cut the training rows
    scored = subprocess.run([sys.executable, str(REPO / "scripts" / "evaluate.py"), str(tmp_path), str(data_bin),
                             "--per-example", "--out", str(tmp_path / "scores.json")], capture_output=True, text=True,
                            cwd=REPO)
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert json.loads(scored.stdout[scored.stdout.index("{"):])["examples"] == 60
    # and so does predict.py, without being asked: the same predictions for the same rows
    unlabelled = tmp_path / "rows.tsv"
    unlabelled.write_text("index\tsentence1\tsentence2\n" + "".join("\t".join(r[:3]) + "\n" for r in rows))
    predicted = subprocess.run([sys.executable, str(REPO / "scripts" / "predict.py"), str(tmp_path), str(data_bin),
                                str(unlabelled), "--out", str(tmp_path / "p.jsonl"), "--no-progress"],
                               capture_output=True, text=True, cwd=REPO)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    names = json.loads((data_bin / "glue_prep.json").read_text())["label_names"]
    per_example = json.loads((tmp_path / "scores.json").read_text())["per_example"]["predictions"]
    assert [json.loads(line)["label"] for line in (tmp_path / "p.jsonl").read_text().splitlines()] == \
        [names[i] for i in per_example]


def test_hub_input_is_stripped_checked_and_empty_batches_keep_their_width(trained_rte):
    hub = trained_rte
    assert torch.equal(hub.encode("  The cat sat.  ", "\tA cat. "), hub.encode("The cat sat.", "A cat."))
    with pytest.raises(TypeError, match="not one string"):
        hub.predict_batch(HEAD, "A cat sat on the mat.")
    with pytest.raises(ValueError, match=r"example 1 holds 1 sentence\(s\); the task of .* takes 2"):
        hub.predict_batch(HEAD, [("A premise.", "A hypothesis."), "A premise alone."])  # RTE: pairs
    for sentences in (("A premise alone.",), ("One.", "Two.", "Three.")):  # encode + predict: the same check
        with pytest.raises(ValueError, match=rf"row 0 of the tokens holds {2 * len(sentences) - 1} </s>, "
                                             rf"{len(sentences)} sentence\(s\) .* takes 2"):
            hub.predict(HEAD, hub.encode(*sentences))
    assert hub.predict(HEAD, hub.encode("A premise.", "")).shape == (1, 2)  # an empty hypothesis is a sentence
    assert hub.predict_batch(HEAD, []).shape == (0, 2)


@pytest.fixture(scope="module")
def trained_rte_folder(rte_bin, tiny_pretrained, tmp_path_factory):
    """A folder with an RTE checkpoint_best.pt of the plugin's model."""
    from fairseq_setup import build_trainer, finetune_args, save

    trainer = build_trainer(finetune_args(rte_bin))
    folder = tmp_path_factory.mktemp("rte-model")
    save(trainer, folder / "checkpoint_best.pt", {"epoch": 1})
    return folder


@pytest.fixture(scope="module")
def trained_rte(trained_rte_folder, rte_bin):
    return RobertaHireModel.from_pretrained(str(trained_rte_folder), "checkpoint_best.pt", data_name_or_path=str(rte_bin))


@pytest.mark.parametrize("task, expected", [("STS-B", "holds RTE"), ("MRPC", "the recipe is MRPC's")])
def test_finetune_refuses_data_of_another_task(task, expected, rte_bin, tiny_pretrained, tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "finetune.py"), task, str(rte_bin),
                             str(tiny_pretrained), str(tmp_path / "x"), "--dry-run"], capture_output=True, text=True,
                            cwd=REPO)
    assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("missing", ["valid.bin", "valid.idx"])
def test_finetune_names_a_missing_validation_file(missing, rte_bin, tiny_pretrained, tmp_path):
    import shutil

    copy = tmp_path / "RTE-bin"
    shutil.copytree(rte_bin, copy)
    (copy / "input0" / missing).unlink()
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "finetune.py"), "RTE", str(copy),
                             str(tiny_pretrained), str(tmp_path / "x"), "--dry-run"], capture_output=True, text=True,
                            cwd=REPO)
    assert result.returncode == 2 and "no binarised valid split (input0/valid.bin)" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "x").exists()


def test_finetune_refuses_regression_recipe_on_class_labels(rte_bin, tiny_pretrained, tmp_path):
    copy = tmp_path / "RTE-bin"
    import shutil

    shutil.copytree(rte_bin, copy)
    meta = json.loads((copy / "glue_prep.json").read_text())
    (copy / "glue_prep.json").write_text(json.dumps({**meta, "task": "STS-B"}))
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "finetune.py"), "STS-B", str(copy),
                             str(tiny_pretrained), str(tmp_path / "x"), "--dry-run"], capture_output=True, text=True,
                            cwd=REPO)
    assert result.returncode == 2 and "holds class labels" in result.stderr and "regression" in result.stderr


@pytest.mark.parametrize("script, arguments", [
    ("evaluate.py", ["{missing}", "{data}"]),
    ("predict.py", ["{missing}", "{data}", "{data}/glue_prep.json", "--out", "{tmp}/p.jsonl"]),
    ("glue_submission.py", ["{tmp}/out", "--task", "{missing}", "{data}"]),
])
def test_scripts_name_a_folder_that_does_not_exist(script, arguments, rte_bin, tmp_path):
    values = {"missing": tmp_path / "no-such-folder", "data": rte_bin, "tmp": tmp_path}
    result = subprocess.run([sys.executable, str(REPO / "scripts" / script), *(a.format(**values) for a in arguments)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "no-such-folder" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


# both scripts load through evaluation.load_hub: one case each
@pytest.mark.parametrize("script, dictionary", [("evaluate.py", "label/dict.txt"), ("predict.py", "input0/dict.txt")])
def test_scripts_name_a_missing_dictionary_of_the_binaries(script, dictionary, trained_rte_folder, rte_bin, tmp_path):
    import shutil

    data = tmp_path / "RTE-bin"
    shutil.copytree(rte_bin, data)
    (data / dictionary).unlink()
    arguments = [str(trained_rte_folder), str(data)] + ([str(data / "glue_prep.json"), "--out", str(tmp_path / "p.jsonl")]
                                                if script == "predict.py" else [])
    result = subprocess.run([sys.executable, str(REPO / "scripts" / script), *arguments],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2, result.stderr[-2000:]
    error = result.stderr.strip().splitlines()[-1]
    assert f"{data / dictionary}: missing; expected the " in error and "run glue_prep again" in error
    assert "Traceback" not in result.stderr and not (tmp_path / "p.jsonl").exists()


def test_a_regression_tasks_binaries_need_no_class_dictionary(tmp_path):
    from types import SimpleNamespace

    from fairseq_hire.workflow.evaluation import check_dictionaries
    from glue_prep.errors import GlueFormatError

    (tmp_path / "input0").mkdir()
    (tmp_path / "input0" / "dict.txt").write_text("a 1\n")
    check_dictionaries(tmp_path, SimpleNamespace(regression=True, task="STS-B", num_classes=1))  # no label/: fine
    with pytest.raises(GlueFormatError, match=r"label/dict.txt: missing; expected the class dictionary of RTE's 2"):
        check_dictionaries(tmp_path, SimpleNamespace(regression=False, task="RTE", num_classes=2))


def test_glue_prep_into_an_output_it_cannot_create(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = glue_prep(SHIPPED_GLUE, "RTE", blocker / "out", "--max-rows", "10")
    assert result.returncode == 1
    assert "glue_prep: error:" in result.stderr and "nothing was written" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.unit
def test_checkpoint_args_output_is_shell_safe(tmp_path, tiny_pretrained, capsys):
    from fairseq_hire.checkpoints import architecture
    from fairseq_hire.checkpoints.loading import safe_torch_load

    assert architecture.main([str(tiny_pretrained)]) == 0
    printed = capsys.readouterr().out.strip()
    assert shlex.split(printed) == architecture.architecture_flags(tiny_pretrained)
    state = safe_torch_load(tiny_pretrained)
    state["args"].activation_fn = "gelu --user-dir /tmp/elsewhere"
    torch.save(state, tmp_path / "model.pt")
    assert architecture.main([str(tmp_path / "model.pt")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "activation_fn" in err and "refusing" in err
