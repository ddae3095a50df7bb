"""The comparison: its statistics against scipy, which runs share a recipe (flags in any order or
as --flag=value, a recorded recipe finetune.py cannot read), its resumable runs and report on a
tiny RoBERTa and real RTE rows (its metrics: tests/test_metrics.py)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as scipy_stats
from sklearn.metrics import f1_score

from conftest import REPO
from fairseq_hire.compare import statistics as st
from fairseq_hire.compare.report import ReportError, check_comparable, layer_weight_summary, load_runs
from fairseq_hire.compare.claims import Claim
from fairseq_hire.compare.runs import Comparison, check_recipe
from fairseq_hire.metrics import metric_function



@pytest.mark.unit
def test_detectable_difference_has_80_percent_power():
    for sd, n in ((1.0, 10), (2.0, 5), (1.5, 15)):
        delta = st.detectable_difference(sd, n, sd, n)
        se = np.sqrt(2 * sd ** 2 / n)
        df = 2 * n - 2
        critical = scipy_stats.t.ppf(0.975, df)
        power = scipy_stats.nct.sf(critical, df, delta / se) + scipy_stats.nct.cdf(-critical, df, delta / se)
        assert power == pytest.approx(0.8, abs=1e-6)
    # the rule of thumb: sd 1 needs 10-15 seeds a side to see +1 point
    assert st.detectable_difference(1.0, 10, 1.0, 10) > 1.0 > st.detectable_difference(1.0, 20, 1.0, 20)
    assert st.detectable_difference(1.0, 1, 1.0, 5) is None


@pytest.mark.unit
def test_paired_bootstrap_interval():
    rng = np.random.default_rng(1)
    targets = rng.integers(0, 2, 400)
    metric = metric_function("accuracy", False)
    better = np.where(rng.random((5, 400)) < 0.8, targets, 1 - targets)
    worse = np.where(rng.random((5, 400)) < 0.7, targets, 1 - targets)
    low, high = st.paired_bootstrap(better, worse, targets, metric)
    observed = metric(better, targets).mean() - metric(worse, targets).mean()
    assert low < observed < high and low > 0
    low, high = st.paired_bootstrap(better, better, targets, metric)
    assert low == high == pytest.approx(0)


@pytest.mark.unit
def test_verdicts_need_both_tests():
    rng = np.random.default_rng(2)
    targets = rng.integers(0, 2, 400)
    metric = metric_function("accuracy", False)
    a = np.where(rng.random((5, 400)) < 0.85, targets, 1 - targets)
    b = np.where(rng.random((5, 400)) < 0.70, targets, 1 - targets)
    scores_a, scores_b = metric(a, targets), metric(b, targets)
    assert st.compare_heads(scores_a, scores_b, a, b, targets, metric).verdict() == "detected"
    same = st.compare_heads(scores_a, scores_a[::-1], a, a[::-1], targets, metric)
    assert same.verdict().startswith("not detected; a difference of")
    one = st.compare_heads(scores_a[:1], scores_b, a[:1], b, targets, metric)
    assert "seed noise is unknown" in one.verdict()
    flat = st.compare_heads([87.5, 87.5], [50.0, 50.0], a[:2], b[:2], targets, metric)
    assert flat.detectable is None and "every seed scoring the same" in flat.verdict()


@pytest.mark.unit
def test_layer_weight_summary_tells_dynamic_from_global():
    rng = np.random.default_rng(3)
    dynamic = rng.dirichlet(np.ones(6), size=50).tolist()
    summary = layer_weight_summary([{"layer_weights": dynamic, "first_scored_layer": 1}])
    assert summary["dynamic"] and summary["layers"] == [1, 2, 3, 4, 5, 6]
    flat = [[1 / 6] * 6 for _ in range(50)]
    assert layer_weight_summary([{"layer_weights": flat, "first_scored_layer": 1}]) is None
    nearly = (np.array(flat) + rng.normal(0, 1e-3, (50, 6))).tolist()
    assert not layer_weight_summary([{"layer_weights": nearly, "first_scored_layer": 1}])["dynamic"]


@pytest.mark.unit
def test_runs_of_another_recipe_are_not_compared():
    run = {"recipe": {"train_flags": ["--epochs", "3"]}, "targets": [0, 1], "file": "a.json"}
    with pytest.raises(ReportError, match="share one recipe"):
        check_comparable([run, {**run, "recipe": {"train_flags": ["--epochs", "2"]}, "file": "b.json"}])
    with pytest.raises(ReportError, match="different dev sets"):
        check_comparable([run, {**run, "targets": [1, 1], "file": "b.json"}])


@pytest.mark.unit
def test_runs_trained_for_another_budget_are_not_compared():
    """Same flags, another budget (e.g. a --train-size run lengthened by another version's rule):
    refused; a run that states no budget (an older run file) is compared on its recipe alone."""
    budget = {"lr": "0.001", "batch_size": "16", "max_update": "252", "max_epoch": "36", "warmup_updates": "15"}
    run = {"recipe": {"train_flags": ["--train-size", "100"]}, "targets": [0, 1], "seed": 1, "schedule": budget,
           "file": "a.json"}
    longer = {**run, "schedule": {**budget, "max_update": "300"}, "file": "b.json", "seed": 2}
    with pytest.raises(ReportError, match=r"b.json trained for .*'max_update': '300'.*a.json for .*heads must share one budget"):
        check_comparable([run, longer])
    with pytest.raises(ReportError, match="share one budget"):
        check_comparable([{**run, "schedule": None, "file": "old.json"}, run, longer])
    check_comparable([run, {**run, "file": "b.json", "seed": 2}, {**run, "schedule": None, "file": "old.json"}])


@pytest.mark.unit
def test_seeds_drawing_other_rows_may_train_other_budgets_the_heads_of_a_seed_may_not():
    """The budget follows the subset's batches: seeds draw other rows, and long rows split batches
    at --max-tokens, so 50 rows made 4 batches an epoch at one seed and 5 at another (252 and 250
    updates). The report refused such a comparison after every run had trained."""
    budget = {"lr": "0.001", "batch_size": "16", "max_update": "252", "max_epoch": "63", "warmup_updates": "15"}
    other = {**budget, "max_update": "250", "max_epoch": "50"}

    def run(head, seed, schedule, rows):
        return {"recipe": {"train_flags": ["--train-size", "50"]}, "targets": [0, 1], "seed": seed, "head": head,
                "schedule": schedule, "train_subset": {"rows_sha256": rows}, "file": f"{head}-seed{seed}.json"}

    check_comparable([run("stock", 1, budget, "r1"), run("hire", 1, budget, "r1"),
                      run("stock", 2, other, "r2"), run("hire", 2, other, "r2")])
    with pytest.raises(ReportError, match=r"hire-seed2.json trained for .*stock-seed2.json for .*heads must share one "
                                          r"budget \(the heads of seed 2\)"):
        check_comparable([run("stock", 1, budget, "r1"), run("stock", 2, other, "r2"), run("hire", 2, budget, "r2")])


@pytest.mark.unit
def test_the_same_recipe_written_in_another_order_or_with_an_equals_sign_joins_the_comparison(tmp_path):
    """A comparison rerun to add seeds, its flags typed in another order or as --flag=value
    (which finetune.py and fairseq-train read alike), was refused as another recipe ("use
    another OUT folder"), and the report refused such run files side by side."""
    import json

    from fairseq_hire.compare.report import check_comparable, load_runs
    from fairseq_hire.compare.runs import Comparison, check_recipe

    def comparison(*flags):
        return Comparison("RTE", tmp_path, tmp_path / "model.pt", tmp_path / "out", flags, device="cpu")

    first = comparison("--train-size", "100", "--freeze-encoder", "--lr", "1e-3", "--max-update", "300")
    first.runs_dir.mkdir(parents=True)
    (first.runs_dir / "stock-seed1.json").write_text(json.dumps(
        {"recipe": first.recipe(), "targets": [0, 1], "seed": 1, "file": "stock-seed1.json"}))
    again = comparison("--freeze-encoder", "--lr=0.001", "--train-size=100", "--max-update=300", "--log-interval", "5")
    check_recipe(again)  # the same recipe: accepted
    (first.runs_dir / "hire-seed1.json").write_text(json.dumps(
        {"recipe": again.recipe(), "targets": [0, 1], "seed": 1, "file": "hire-seed1.json"}))
    check_comparable(load_runs(first.runs_dir))
    for other in (("--freeze-encoder", "--lr", "1e-3", "--train-size", "50", "--max-update", "300"),
                  ("--train-size", "100", "--lr", "1e-3", "--max-update", "300"),
                  ("--train-size", "100", "--freeze-encoder", "--lr", "1e-3", "--max-update", "301")):
        with pytest.raises(ValueError, match="use another OUT folder"):
            check_recipe(comparison(*other))


def write_run(runs_dir, name, train_flags):
    recipe = {"task": "RTE", "data": "/d", "pretrained": "/m.pt", "train_flags": train_flags, "device": "cpu"}
    (runs_dir / name).write_text(json.dumps({"recipe": recipe, "targets": [0, 1], "seed": 1, "file": name}))


@pytest.mark.unit
@pytest.mark.parametrize("odd_flags", [["--b", "8"], ["-h"]], ids=["ambiguous-abbreviation", "help"])
def test_a_recorded_recipe_finetune_py_cannot_read_is_another_recipe_not_an_exit(tmp_path, capsys, odd_flags):
    """A run file whose train_flags finetune.py's parser refuses with an exit rather than an
    error (an abbreviation that today matches two options, or --help), written by hand or by
    another version: the report and a comparison adding runs exited (finetune.py's usage, or
    its whole help, and status 0) instead of naming the file whose recipe differs."""
    runs_dir = tmp_path / "out" / "runs"
    runs_dir.mkdir(parents=True)
    write_run(runs_dir, "stock-seed1.json", ["--lr", "1e-3"])
    write_run(runs_dir, "hire-seed1.json", odd_flags)
    with pytest.raises(ReportError, match="hire-seed1.json with .*heads must share one recipe"):
        check_comparable(load_runs(runs_dir))
    comparison = Comparison("RTE", tmp_path, tmp_path / "model.pt", tmp_path / "out", ("--lr", "1e-3"), device="cpu")
    with pytest.raises(ValueError, match="hire-seed1.json was trained with"):
        check_recipe(comparison)
    printed = capsys.readouterr()
    assert "usage:" not in printed.out + printed.err


@pytest.mark.unit
def test_the_device_is_resolved_once_recorded_in_the_recipe_and_trained_on(tmp_path, monkeypatch):
    """fp16 on a GPU and fp32 on the CPU are two recipes: auto is resolved when the comparison
    starts, the run is trained on that device and its file names it; a GPU run is then refused
    by a CPU comparison of the same folder, at run time and at report time."""
    import fairseq_hire.workflow.finetune as finetune

    def comparison(device, gpu):
        monkeypatch.setattr(finetune, "gpu_available", lambda: gpu)
        made = Comparison("RTE", tmp_path / "RTE-bin", tmp_path / "model.pt", tmp_path / "out", ("--epochs", "3"), device)
        made.recipe()  # resolved here, while gpu_available says `gpu`
        return made

    on_gpu, on_cpu = comparison("auto", True), comparison("auto", False)
    assert (on_gpu.recipe()["device"], on_cpu.recipe()["device"], comparison("cpu", True).recipe()["device"]) \
        == ("gpu", "cpu", "cpu")
    command = on_gpu.finetune_command("stock", 1, tmp_path / "run")
    assert command[command.index("--device") + 1] == "gpu"
    runs = on_cpu.runs_dir
    runs.mkdir(parents=True)
    (runs / "stock-seed1.json").write_text(json.dumps({"recipe": on_gpu.recipe(), "targets": [0, 1]}))
    (runs / "stock-seed2.json").write_text(json.dumps({"recipe": on_cpu.recipe(), "targets": [0, 1]}))
    with pytest.raises(ValueError, match="stock-seed2.json was trained with .*'device': 'cpu'"):
        check_recipe(on_gpu)
    with pytest.raises(ReportError, match="share one recipe"):
        check_comparable(load_runs(runs))


@pytest.mark.unit
def test_a_run_file_older_than_the_device_in_the_recipe_is_read_by_its_command(tmp_path, monkeypatch):
    """The study's first runs recorded the device only in their fine-tuning command."""
    import fairseq_hire.workflow.finetune as finetune

    monkeypatch.setattr(finetune, "gpu_available", lambda: False)
    comparison = Comparison("RTE", tmp_path / "RTE-bin", tmp_path / "model.pt", tmp_path / "out", ("--epochs", "3"))
    older = {key: value for key, value in comparison.recipe().items() if key != "device"}
    comparison.runs_dir.mkdir(parents=True)
    on_cpu = comparison.runs_dir / "stock-seed1.json"
    on_cpu.write_text(json.dumps({"recipe": older, "train_command": ["--seed", "1", "--device", "cpu"], "targets": [0]}))
    check_recipe(comparison)  # the same recipe: accepted
    assert load_runs(comparison.runs_dir)[0]["recipe"] == comparison.recipe()
    (comparison.runs_dir / "stock-seed2.json").write_text(
        json.dumps({"recipe": older, "train_command": ["--device", "auto"], "targets": [0]}))
    with pytest.raises(ValueError, match="stock-seed2.json was trained with .*'device': 'not recorded'"):
        check_recipe(comparison)


@pytest.mark.unit
def test_a_claim_is_exclusive_and_a_dead_owners_claim_is_taken_over(tmp_path):
    lock = tmp_path / "stock-seed1.lock"
    with Claim(lock) as first:
        assert first.held
        with Claim(lock) as second:
            assert not second.held
    assert not lock.exists()
    import socket

    lock.write_text(f"{socket.gethostname()} 99999999\n")  # a process that is gone
    with Claim(lock) as taken:
        assert taken.held


def test_end_to_end_on_tiny_roberta(rte_bin, tiny_pretrained, tmp_path):
    """Two heads x two seeds, resumable, one result file per run with every dev prediction."""
    out = tmp_path / "compare"
    command = [sys.executable, "-m", "fairseq_hire.compare", "RTE", str(rte_bin), str(tiny_pretrained), str(out),
               "--heads", "stock", "hire", "--seeds", "1-2", "--jobs", "2", "--epochs", "1", "--lr", "3e-4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    runs = sorted(p.name for p in (out / "runs").glob("*.json"))
    assert runs == ["hire-seed1.json", "hire-seed2.json", "stock-seed1.json", "stock-seed2.json"]
    record = json.loads((out / "runs" / "hire-seed1.json").read_text())
    assert len(record["predictions"]) == len(record["targets"]) == 160
    assert len(record["layer_weights"]) == 160 and len(record["layer_weights"][0]) == 2
    assert record["metrics"]["accuracy"] == pytest.approx(
        100 * np.mean(np.array(record["predictions"]) == np.array(record["targets"])), abs=1e-3)
    report = json.loads((out / "report.json").read_text())
    assert set(report["heads"]) == {"stock", "hire"} and "vs_reference" in report["heads"]["hire"]
    for name in ("report.md", "scores.png"):
        assert (out / name).exists()
    again = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    assert again.returncode == 0 and "run RTE" not in again.stdout  # every run skipped
    other = subprocess.run(command[:-2] + ["--lr", "1e-4"], capture_output=True, text=True, cwd=REPO, env=env)
    assert other.returncode == 2 and "share one recipe" in other.stderr


def test_end_to_end_on_your_own_task(tiny_pretrained, tmp_path):
    """The README's reviews task (string labels, f1 of "positive"): compare takes a task only
    glue_prep's task file defines, scores it on that task's metric and positive label, and
    holds the runs against the best constant prediction of that metric."""
    reviews = REPO / "glue_prep" / "data" / "reviews"
    made = subprocess.run([sys.executable, "-m", "glue_prep", str(reviews), str(reviews / "reviews.json"),
                           str(tmp_path / "data"), "--workers", "1", "--no-progress"],
                          capture_output=True, text=True, cwd=REPO)
    assert made.returncode == 0, made.stderr
    out = tmp_path / "compare"
    command = [sys.executable, "-m", "fairseq_hire.compare", "reviews", str(tmp_path / "data" / "reviews-bin"),
               str(tiny_pretrained), str(out), "--heads", "stock", "hire", "--seeds", "1-2", "--jobs", "2",
               "--epochs", "1", "--lr", "3e-4"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    valid = (reviews / "valid.csv").read_text(encoding="utf-8").splitlines()[1:]
    wanted = [line.rsplit(",", 1)[1] for line in valid]
    for path in sorted((out / "runs").glob("*.json")):
        record = json.loads(path.read_text())
        assert record["metric"] == "f1" and record["label_names"] == ["negative", "positive"]
        assert [record["label_names"][t] for t in record["targets"]] == wanted
        f1 = 100 * f1_score(record["targets"], record["predictions"], pos_label=record["label_names"].index("positive"))
        assert record["metrics"]["f1"] == pytest.approx(f1, abs=1e-3)
    report = json.loads((out / "report.json").read_text())
    positives = wanted.count("positive")
    assert report["metric"] == "f1" and report["dev_examples"] == len(wanted) == 100
    # always "positive": precision positives/100, recall 1
    assert report["constant_score"] == pytest.approx(100 * 2 * positives / (positives + 100))
    assert set(report["heads"]) == {"stock", "hire"} and report["heads"]["hire"]["n"] == 2


def test_the_layer_weight_sentence_shows_the_distance_beside_the_threshold_without_rounding_onto_it():
    from fairseq_hire.compare.report import STATIC_TV, layer_weight_sentence

    weights = {"layers": [1, 2], "mean": [0.4, 0.6], "tv_from_mean_mean": STATIC_TV - 3e-4, "dynamic": False}
    sentence = layer_weight_sentence("CoLA", "hire", weights)
    assert f"weights 0.0497 < {STATIC_TV}" in sentence and "barely depend" in sentence
    dynamic = layer_weight_sentence("CoLA", "hire", {**weights, "tv_from_mean_mean": STATIC_TV, "dynamic": True})
    assert f"weights 0.0500, threshold {STATIC_TV}" in dynamic
    just_below = layer_weight_sentence("CoLA", "hire", {**weights, "tv_from_mean_mean": STATIC_TV - 3e-6})
    assert f"weights 0.049997 < {STATIC_TV}" in just_below
    just_above = layer_weight_sentence("CoLA", "hire", {**weights, "tv_from_mean_mean": STATIC_TV + 4e-7, "dynamic": True})
    assert f"weights 0.0500004, threshold {STATIC_TV}" in just_above


@pytest.mark.unit
def test_a_recipe_recorded_with_an_abbreviated_flag_reads_as_it_did():
    """finetune.py now refuses abbreviations on its command line; a run file recorded before, with
    --freeze for --freeze-encoder, must still be the same recipe (a rerun adding seeds was refused)."""
    from fairseq_hire.compare.runs import recipe_key

    assert recipe_key({"train_flags": ["--freeze", "--train-size", "100"], "device": "cpu"}) == \
        recipe_key({"train_flags": ["--freeze-encoder", "--train-size", "100"], "device": "cpu"})
