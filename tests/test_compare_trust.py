"""What the comparison's report may average and how it words a verdict (helper-30's review): a
run counted twice, a run file whose score is not its predictions', a verdict that quoted a
detectable difference smaller than the difference it did not detect, the metric chosen by
--best-checkpoint-metric=NAME, and the budget of a run started again."""
import numpy as np
import pytest
from scipy import stats as scipy_stats

from fairseq_hire.compare import statistics as st
from fairseq_hire.compare.provenance import fairseq_schedule
from fairseq_hire.compare.report import ReportError, check_runs
from fairseq_hire.compare.runs import Comparison
from fairseq_hire.metrics import metric_function, rounded

pytestmark = pytest.mark.unit
ACCURACY = metric_function("accuracy", False)
TARGETS = np.array([0, 1] * 20)


def run(name, head, seed, correct):
    """A run file's content: the first `correct` dev examples right, the rest wrong."""
    predictions = np.where(np.arange(len(TARGETS)) < correct, TARGETS, 1 - TARGETS)
    return {"file": name, "head": head, "seed": seed, "predictions": predictions.tolist(),
            "metrics": {"accuracy": rounded(ACCURACY(predictions, TARGETS))}}


def test_a_run_counted_twice_or_changed_by_hand_is_refused_naming_its_file():
    runs = [run("stock-seed1.json", "stock", 1, 30), run("hire-seed1.json", "hire", 1, 32)]
    check_runs(runs, ACCURACY, TARGETS, "accuracy")
    copy = {**runs[1], "file": "hire-seed1 (copy).json"}
    with pytest.raises(ReportError, match=r"hire-seed1 \(copy\).json and hire-seed1.json are both hire seed 1"):
        check_runs([*runs, copy], ACCURACY, TARGETS, "accuracy")
    for damaged, expected in (({"metrics": {"accuracy": 87.5}}, r"records accuracy 87.5, but its predictions score 80.0"),
                              ({"metrics": {"accuracy": float("nan")}}, r"records accuracy nan"),
                              ({"metrics": {}}, r"records accuracy None"),
                              ({"predictions": runs[1]["predictions"][:-3]}, r"37 predictions for 40 dev examples")):
        with pytest.raises(ReportError, match=r"^hire-seed1.json: " + expected):
            check_runs([runs[0], {**runs[1], **damaged}], ACCURACY, TARGETS, "accuracy")


def test_a_difference_the_seeds_find_but_the_dev_set_cannot_is_worded_so():
    """5 seeds a side, 2 dev examples apart each: Welch finds it, the bootstrap over 40 examples
    does not exclude 0. The verdict said "a difference of 1.0 or more would have been" detected,
    beside a difference of 5 it did not detect."""
    a = [run("", "hire", seed, 30 + seed % 2) for seed in range(5)]
    b = [run("", "stock", seed, 28 + seed % 2) for seed in range(5)]
    scores_a, scores_b = [r["metrics"]["accuracy"] for r in a], [r["metrics"]["accuracy"] for r in b]
    predictions = [np.array([r["predictions"] for r in runs]) for runs in (a, b)]
    found = st.compare_heads(scores_a, scores_b, *predictions, TARGETS, ACCURACY)
    assert found.welch_p == pytest.approx(scipy_stats.ttest_ind(scores_a, scores_b, equal_var=False).pvalue)
    assert found.welch_p < st.ALPHA and found.bootstrap_low <= 0 < found.difference and not found.detected
    assert found.verdict() == (f"not detected; the seeds' test finds it (Welch p {found.welch_p:.3f}), but the "
                               "bootstrap interval over the dev examples includes 0: the dev set is too small to tell")


def test_the_metric_compared_is_the_one_fairseq_selects_checkpoints_by(tmp_path):
    def metric(*flags):
        return Comparison("RTE", tmp_path, tmp_path / "model.pt", tmp_path / "out", flags, device="cpu").metric

    assert metric() == "accuracy"  # RTE's official metric
    assert metric("--best-checkpoint-metric", "mcc") == metric("--best-checkpoint-metric=mcc") == "mcc"
    # fairseq's argparse takes the last of a flag given twice
    assert metric("--best-checkpoint-metric", "mcc", "--best-checkpoint-metric=macro_f1") == "macro_f1"


def test_a_run_started_again_records_the_budget_of_the_attempt_that_trained_it():
    """The run's log holds every attempt (a comparison stopped before the run's first checkpoint
    and started again with another --lr): the last command is the run's; fairseq's own log lines
    from fairseq_cli.train are no command."""
    log = ("/x/python -m fairseq_cli.train /d --lr 1e-05 --batch-size 16 --max-update 252 --max-epoch 36 "
           "--warmup-updates 15 --cpu\n2026-12-07 | INFO | fairseq_cli.train | task: SentencePredictionHireTask\n"
           "/x/python -m fairseq_cli.train /d --lr 3e-05 --batch-size 16 --max-update 252 --max-epoch 36 "
           "--warmup-updates 15 --cpu\n2026-12-07 | INFO | fairseq_cli.train | done training in 3.0 seconds\n")
    assert fairseq_schedule(log)["lr"] == "3e-05"


@pytest.mark.parametrize("case", ["seeds as two words", "OUT a file", "OUT a dangling link", "a damaged run file",
                                  "a flag fairseq refuses", "no trainable row", "a run's own flag"])
def test_a_command_line_or_folder_that_cannot_be_a_comparison_is_one_line_and_trains_nothing(
        rte_bin, tiny_pretrained, tmp_path, capsys, monkeypatch, case):
    from fairseq_hire.compare import __main__ as compare
    from fairseq_hire.compare import runs

    monkeypatch.setattr(runs, "run_sharing_lock", lambda *args: pytest.fail("a run was started"))
    out, extra = tmp_path / "out", []
    if case == "seeds as two words":
        extra = ["--seeds", "1", "2"]  # "2" went to fairseq-train, and every run failed inside it
        expected = "unexpected argument '2': seeds are one argument (--seeds 1-5 or 1,2,5)"
    elif case == "OUT a file":
        out.write_text("in the way")
        expected = f"OUT {out} is not a folder"
    elif case == "OUT a dangling link":
        out.symlink_to(tmp_path / "nowhere")
        expected = f"OUT {out} is not a folder"
    elif case == "a damaged run file":
        (out / "runs").mkdir(parents=True)
        (out / "runs" / "stock-seed1.json").write_text('{"recipe": ')
        expected = f"{out / 'runs' / 'stock-seed1.json'}: not a run file of a comparison (JSONDecodeError"
    elif case == "a flag fairseq refuses":  # every run failed inside fairseq-train, each leaving a failure record
        extra = ["--bogus-flag", "3"]
        expected = "fairseq-train refuses these flags: unrecognized arguments: --bogus-flag 3"
    elif case == "a run's own flag":  # --seed was taken for --seeds 5 (an abbreviation), or went to every run
        extra = ["--seeds", "1,2", "--seed", "5"]
        expected = "--seed is set by the comparison for each run (from --seeds and --heads)"
    else:
        extra = ["--train-size", "100", "--max-tokens", "5"]
        expected = f"{rte_bin} (its --train-size 100 sample): every training row is longer than a batch may be"
    code = compare.main(["RTE", str(rte_bin), str(tiny_pretrained), str(out), "--heads", "stock", "--device", "cpu",
                         *extra])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and error.startswith(f"compare: error: {expected}"), error
    assert not (out / "work").exists() and not list(out.glob("runs/*.failed"))


def full_run(head, seed, correct, recipe):
    """A run file a report can summarise (RTE-like: 2 labels, accuracy)."""
    return {**run(f"{head}-seed{seed}.json", head, seed, correct), "task": "RTE", "metric": "accuracy",
            "regression": False, "label_names": ["entailment", "not_entailment"], "positive_class": 1,
            "targets": TARGETS.tolist(), "train_seconds": 60.0, "layer_weights": None, "recipe": recipe}


def test_a_run_that_did_not_finish_is_listed_and_counted_as_failed_not_left_out(tmp_path, monkeypatch):
    """A diverged run (fairseq stops on NaN gradients, or leaves no checkpoint_best.pt to score)
    has no run file: the report averaged the survivors and said "failed runs 0 (0%)"."""
    import json
    import sys
    import threading

    from fairseq_hire.compare.failures import failure_path
    from fairseq_hire.compare.report import write_report
    from fairseq_hire.compare.runs import Runner

    diverging = "print('FloatingPointError: gradients are Nan/Inf'); raise SystemExit(1)"
    stopped = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"

    class Trial(Comparison):
        training_device, metric, program = "cpu", "accuracy", diverging

        def finetune_command(self, head, seed, save_dir):
            return [sys.executable, "-c", self.program, str(save_dir)]

    (tmp_path / "data").mkdir()
    (tmp_path / "model.pt").write_bytes(b"a stand-in: the run file records its digest")
    comparison = Trial("RTE", tmp_path / "data", tmp_path / "model.pt", tmp_path / "out", ("--lr", "1e6"))
    comparison.runs_dir.mkdir(parents=True)
    outcome = Runner(comparison, log=lambda text: None).run("hire", 2)
    record = json.loads(failure_path(comparison.result_path("hire", 2)).read_text())
    assert outcome.status == "failed" and record["stage"] == "fine-tuning" and record["exit_code"] == 1
    assert record["reason"] == "FloatingPointError: gradients are Nan/Inf"
    Trial.program = stopped  # stopped by a signal (Ctrl-C, a scheduler): stopped, not failed
    assert Runner(comparison, log=lambda text: None).run("hire", 3).status == "failed"
    assert not failure_path(comparison.result_path("hire", 3)).exists()
    # Ctrl-C: the comparison kills its runs' process groups (SIGKILL, exit -9): stopped, not failed
    from fairseq_hire.compare.watchdog import RUNNING

    Trial.program = "import time; time.sleep(60)"
    threading.Timer(1.0, RUNNING.stop).start()
    try:
        assert Runner(comparison, log=lambda text: None).run("hire", 4).status == "failed"
    finally:
        RUNNING.resume()
    assert not failure_path(comparison.result_path("hire", 4)).exists()
    Trial.program = diverging

    recipe = comparison.recipe()
    for head, seed, correct in (("stock", 1, 30), ("stock", 2, 31), ("hire", 1, 32)):
        comparison.result_path(head, seed).write_text(json.dumps(full_run(head, seed, correct, recipe)))
    other = {**record, "head": "stock", "seed": 3, "recipe": {**recipe, "train_flags": ["--lr", "3e-5"]}}
    failure_path(comparison.result_path("stock", 3)).write_text(json.dumps(other))  # an earlier recipe's try
    # a head whose every run failed: a row of its own, not only a line under the table
    for seed in (1, 2):
        failure_path(comparison.result_path("scalar-mix", seed)).write_text(
            json.dumps({**record, "head": "scalar-mix", "seed": seed}))
    summary = write_report(comparison.out)
    assert summary["heads"]["hire"]["failed"] == 1 and summary["heads"]["hire"]["failed_rate"] == 0.5
    assert summary["heads"]["hire"]["n"] == 1 and summary["heads"]["stock"]["failed"] == 0
    assert [(u["head"], u["seed"]) for u in summary["unfinished"]] == [("hire", 2), ("scalar-mix", 1),
                                                                       ("scalar-mix", 2)]
    mix = summary["heads"]["scalar-mix"]
    assert (mix["n"], mix["failed"], mix["failed_rate"], mix["mean"]) == (0, 2, 1.0, None) and "vs_reference" not in mix
    assert "| scalar-mix | 0 | - | - | - | 2 (100%) | - |" in (comparison.out / "report.md").read_text()
    assert (comparison.out / "scores.png").stat().st_size > 0
    for seed in (1, 2):
        failure_path(comparison.result_path("scalar-mix", seed)).unlink()
    summary = write_report(comparison.out)
    assert ("Runs without a score (counted as failed runs, left out of every other figure): hire "
            "seed 2, fine-tuning exited with 1 (FloatingPointError: gradients are Nan/Inf).") in \
        (comparison.out / "report.md").read_text()
    # the run trained again and finished: its record goes
    Trial.program = "import pathlib, sys; pathlib.Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)"
    monkeypatch.setattr(Trial, "evaluate_command", lambda self, save_dir, scores_file: [
        sys.executable, "-c", f"import json, pathlib; pathlib.Path({str(scores_file)!r}).write_text(json.dumps("
        f"{{'metrics': {{'accuracy': 80.0}}, 'split': 'valid', 'examples': 40, 'source': 'test', "
        f"'per_example': {{'predictions': [], 'targets': []}}}}))"])
    done = Runner(comparison, log=lambda text: None).run("hire", 2)
    assert done.status == "done", done
    assert not failure_path(comparison.result_path("hire", 2)).exists()
    from fairseq_hire.compare.provenance import input_digests

    recorded = json.loads(comparison.result_path("hire", 2).read_text())["inputs_sha256"]
    assert recorded == input_digests(tmp_path / "model.pt", tmp_path / "data") and recorded["pretrained"]


def test_another_checkpoint_or_data_at_the_same_paths_is_another_comparison(rte_bin, tiny_pretrained, tmp_path):
    """The recipe names the encoder and data by path: a model.pt overwritten with another
    checkpoint joined the comparison, pooling seeds of two encoders."""
    import json
    import shutil

    from fairseq_hire.compare.provenance import input_digests
    from fairseq_hire.compare.report import check_comparable
    from fairseq_hire.compare.runs import check_recipe

    model, data = tmp_path / "model.pt", tmp_path / "RTE-bin"
    shutil.copy(tiny_pretrained, model)
    shutil.copytree(rte_bin, data)
    comparison = Comparison("RTE", data, model, tmp_path / "out", ("--epochs", "1"), device="cpu")
    comparison.runs_dir.mkdir(parents=True)
    trained = {"recipe": comparison.recipe(), "targets": [0, 1], "seed": 1, "file": "stock-seed1.json",
               "inputs_sha256": input_digests(model, data)}
    comparison.result_path("stock", 1).write_text(json.dumps(trained))
    check_recipe(comparison)  # the same files: accepted
    with open(model, "ab") as f:
        f.write(b"another checkpoint")
    with pytest.raises(ValueError, match=r"stock-seed1.json was trained from other files at the same paths "
                                         r"\(pretrained: sha256 [0-9a-f]{12}, now [0-9a-f]{12}\)"):
        check_recipe(comparison)
    shutil.copy(tiny_pretrained, model)
    (data / "input0" / "train.bin").write_bytes((data / "input0" / "train.bin").read_bytes()[::-1])
    with pytest.raises(ValueError, match=r"\(training_data: sha256"):
        check_recipe(comparison)
    later = {**trained, "file": "hire-seed1.json", "inputs_sha256": input_digests(model, data)}
    with pytest.raises(ReportError, match="trained from other files at the same paths"):
        check_comparable([trained, later])
    check_comparable([trained, {**later, "inputs_sha256": None}])  # a run file from before the digests


def test_a_regression_run_that_scores_nan_is_a_failed_run_not_a_damaged_file(tmp_path):
    """A collapsed STS-B run (one prediction for every example) records pearson NaN, as its
    predictions score: counted as failed and left out of the figures, not refused as edited."""
    from fairseq_hire.compare.report import summarise

    targets = np.linspace(0.0, 5.0, 40)
    pearson = metric_function("pearson_and_spearman", True)

    def regression_run(seed, predictions):
        return {"file": f"stock-seed{seed}.json", "head": "stock", "seed": seed, "task": "STS-B",
                "metric": "pearson_and_spearman", "regression": True, "label_names": None, "positive_class": -1,
                "targets": targets.tolist(), "predictions": predictions.tolist(), "train_seconds": 1.0,
                "layer_weights": None, "recipe": {"train_flags": []},
                "metrics": {"pearson_and_spearman": rounded(pearson(predictions, targets))}}

    rng = np.random.default_rng(0)
    runs = [regression_run(1, targets + rng.normal(0, 1, 40)), regression_run(2, targets + rng.normal(0, 1, 40)),
            regression_run(3, np.full(40, 2.5))]
    assert np.isnan(runs[2]["metrics"]["pearson_and_spearman"])
    summary = summarise(runs)
    stock = summary["heads"]["stock"]
    assert stock["n"] == 2 and stock["failed"] == 1 and np.isfinite(stock["mean"])
    assert summary["unfinished"][0]["seed"] == 3 and "NaN" in summary["unfinished"][0]["why"]


def test_runs_recording_their_inputs_are_compared_with_each_other_past_an_older_file():
    """An older run file (no digests) sorted first no longer lets two newer runs of different
    encoders through."""
    from fairseq_hire.compare.report import check_comparable

    base = {"recipe": {"train_flags": []}, "targets": [0, 1], "seed": 1}
    older = {**base, "file": "a.json"}
    one = {**base, "file": "b.json", "seed": 2, "inputs_sha256": {"pretrained": "1" * 64, "training_data": "d"}}
    other = {**base, "file": "c.json", "seed": 3, "inputs_sha256": {"pretrained": "2" * 64, "training_data": "d"}}
    with pytest.raises(ReportError, match="c.json and b.json were trained from other files"):
        check_comparable([older, one, other])


def test_an_input_replaced_during_a_run_or_between_its_attempts_is_not_recorded(tmp_path, monkeypatch):
    """The run file records the digests taken as the run starts: a model.pt replaced while it
    trained (same size, same mtime), or data binarised again before a killed run was resumed
    from its checkpoints, left a run file naming files it was not (only) trained from."""
    import json
    import shutil
    import sys

    from fairseq_hire.compare.failures import failure_path
    from fairseq_hire.compare.provenance import input_digests
    from fairseq_hire.compare.runs import Runner

    model, data = tmp_path / "model.pt", tmp_path / "data"
    (data / "input0").mkdir(parents=True)
    (data / "input0" / "train.bin").write_bytes(b"rows")
    model.write_bytes(b"checkpoint A")
    replace_model = (f"import os, pathlib, sys; m = pathlib.Path({str(model)!r}); t = m.stat().st_mtime_ns; "
                     "m.write_bytes(b'checkpoint B'); os.utime(m, ns=(t, t)); "
                     "pathlib.Path(sys.argv[1]).mkdir(parents=True, exist_ok=True); "
                     "pathlib.Path(sys.argv[1], 'trained').write_text('')")

    class Trial(Comparison):
        training_device, metric, program = "cpu", "accuracy", replace_model

        def finetune_command(self, head, seed, save_dir):
            return [sys.executable, "-c", self.program, str(save_dir)]

        def evaluate_command(self, save_dir, scores_file):
            return [sys.executable, "-c", f"import json, pathlib; pathlib.Path({str(scores_file)!r}).write_text("
                    "json.dumps({'metrics': {'accuracy': 80.0}, 'split': 'valid', 'examples': 40, "
                    "'source': 'test', 'per_example': {'predictions': [], 'targets': []}}))"]

    comparison = Trial("RTE", data, model, tmp_path / "out", ())
    comparison.runs_dir.mkdir(parents=True)
    runner = Runner(comparison, log=lambda text: None)
    outcome = runner.run("hire", 1)
    assert outcome.status == "failed" and outcome.message.startswith("pretrained changed while the run trained")
    assert not comparison.result_path("hire", 1).exists() and not failure_path(comparison.result_path("hire", 1)).exists()
    assert not (comparison.work_dir / "hire-seed1").exists()  # its checkpoints mixed two encoders: gone

    # an attempt refused before training (no checkpoint), then the data binarised again: a fresh start
    Trial.program = "raise SystemExit(2)"
    assert runner.run("hire", 3).status == "failed"
    (data / "input0" / "train.bin").write_bytes(b"rows again")
    Trial.program = "import pathlib, sys; pathlib.Path(sys.argv[1], 'checkpoint_last.pt').write_text('')"
    assert runner.run("hire", 3).status == "done"
    # a first attempt stopped (SIGTERM: no failure record) with a checkpoint, then the data binarised again
    Trial.program = ("import os, pathlib, signal, sys; pathlib.Path(sys.argv[1], 'checkpoint_last.pt').write_text('');"
                     " os.kill(os.getpid(), signal.SIGTERM)")
    assert runner.run("hire", 2).status == "failed"
    (data / "input0" / "train.bin").write_bytes(b"other rows")
    Trial.program = ("import pathlib, sys; pathlib.Path(sys.argv[1]).mkdir(parents=True, exist_ok=True); "
                     "pathlib.Path(sys.argv[1], 'trained').write_text('')")
    outcome = runner.run("hire", 2)
    work = comparison.work_dir / "hire-seed2"
    assert outcome.status == "failed" and outcome.message == (
        f"training_data changed since the attempt whose checkpoints are in {work}; "
        "remove that folder to train the run from the new files")
    assert not (work / "trained").exists() and not comparison.result_path("hire", 2).exists()
    (work / "inputs_sha256.json").write_text("{")  # damaged: named, nothing trains
    assert "inputs_sha256.json: unreadable" in runner.run("hire", 2).message and not (work / "trained").exists()
    shutil.rmtree(work)  # as the message says: the run trains from the new files
    assert runner.run("hire", 2).status == "done"
    recorded = json.loads(comparison.result_path("hire", 2).read_text())["inputs_sha256"]
    assert recorded == input_digests(model, data)


def test_the_report_says_which_plugin_code_and_torch_trained_its_runs():
    """Runs of one comparison may be trained by different plugin commits (a fix between seeds is
    allowed): the report counts them, so that a reader can see a mixed comparison."""
    from fairseq_hire.compare.report import markdown, summarise

    recipe = {"task": "RTE", "train_flags": []}
    runs = [{**full_run(head, seed, 30 + seed, recipe), "code_version": commit, "torch": "2.13.0+cpu"}
            for head, seed, commit in (("stock", 1, "a" * 40), ("stock", 2, "b" * 40 + "+dirty"), ("hire", 1, "a" * 40))]
    summary = summarise(runs)
    assert summary["trained_by"] == {"code": {"aaaaaaa": 2, "bbbbbbb+dirty": 1}, "torch": {"2.13.0+cpu": 3}}
    assert ("Trained by plugin code aaaaaaa (2 runs), bbbbbbb+dirty (1 run); torch 2.13.0+cpu (3 runs)."
            in markdown(summary))
