"""The results report: README tables come from the result files, the plain-words answer and
the recommendation follow the statistics, and the atomic writer everything is saved through."""
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from glue_prep.atomic import write_atomically

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import report  # noqa: E402

pytestmark = pytest.mark.unit  # the fast tier: make test-unit


def test_readme_tables_match_the_result_files():
    """Every generated section of the README and docs/ equals what report.py makes of
    benchmarks/results now, in the page it lives in: no table is typed by hand or left stale
    after new results."""
    sections = report.readme_sections()
    assert set(sections) == set(report.PAGES)
    for name, body in sections.items():
        page = (REPO / report.PAGES[name]).read_text()
        assert report.replace_section(page, name, body) == page, (
            f"{report.PAGES[name]} section {name!r} is stale: run python benchmarks/report.py --update-readme")
    assert all(old == new for old, new in report.generated_pages(sections).values())


def test_each_generated_section_lives_in_one_page_only():
    """A section moved to docs/ leaves no stale copy behind in the README or another page."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    for name, home in report.PAGES.items():
        holders = [str(p.relative_to(REPO)) for p in pages if f"<!-- {name}:start -->" in p.read_text()]
        assert holders == [home], f"section {name!r} is in {holders}, expected only {home}"


def test_the_readme_headline_is_the_verdict_and_hire_against_stock_per_task():
    summaries = {"MRPC": {"metric": "acc_and_f1", "heads": {
        "stock": head(81.0, 1.0, 10), "hire": head(81.4, 0.8, 10, {**versus(0.4, False, 1.14), "verdict": "not detected"}),
        "last4-mean": head(81.2, 1.0, 10, versus(0.2, False))}},
        "CoLA": {"metric": "mcc", "reference": "hire-no-fusion", "heads": {
            "hire-no-fusion": head(25.0, 1.0, 5), "hire": head(27.0, 1.0, 5, versus(2.0, False))}}}
    text = report.headline_section(summaries)
    assert text.splitlines()[0] == report.verdict(summaries) and "does not measurably help" in text
    assert "| MRPC | acc_and_f1 | 10, 10 | 81.0 ± 1.0 | 81.4 ± 0.8 | +0.40 [-0.60, +1.40] | 1.14 | not detected |" in text
    assert "CoLA" not in text and "last4-mean" not in text  # not against the stock head; not HIRE
    assert report.headline_section({}).startswith("(no comparison of HIRE")


def test_plot_links_are_relative_to_the_page_that_holds_them():
    summaries = report.study_summaries()
    assert "](../benchmarks/results/compare/RTE/scores.png)" in report.readme_sections()["quality"]
    assert "](benchmarks/results/compare/RTE/scores.png)" in report.quality_section(summaries)


def head(mean, sd, n, vs=None):
    data = {"mean": mean, "sd": sd, "n": n, "median": mean, "scores": [mean] * n}
    if vs:
        data["vs_reference"] = vs
    return data


def versus(difference, detected, detectable=2.0):
    return {"difference": difference, "bootstrap_low": difference - 1, "bootstrap_high": difference + 1,
            "welch_p": 0.01 if detected else 0.5, "mannwhitney_p": 0.5, "detectable": detectable,
            "detected": detected}


def test_the_answer_says_not_detected_and_how_large_a_difference_would_have_been():
    summaries = {"MRPC": {"metric": "acc_and_f1", "heads": {
        "stock": head(81.0, 1.0, 5), "hire": head(81.4, 1.0, 5, versus(0.4, False, 2.0))}},
        "RTE": {"metric": "accuracy", "heads": {
            "stock": head(56.0, 2.0, 5), "hire": head(57.0, 2.0, 5, versus(1.0, False, 3.9))}}}
    text = report.answer(summaries)
    assert "not detected on MRPC, RTE; a difference of at least 2.0 points on MRPC, 3.9 points on RTE would have been" in text
    assert "**HIRE does not measurably help all-MiniLM-L6-v2** on MRPC, RTE, the task(s)" in text
    summaries["RTE"]["heads"]["stock"]["n"] = 4  # both heads need the seeds
    assert "help all-MiniLM-L6-v2** on MRPC, the task(s)" in report.answer(summaries)
    summaries["RTE"]["heads"]["stock"]["n"] = 5
    summaries["MRPC"]["heads"]["hire"]["vs_reference"] = versus(1.5, True)
    text = report.answer(summaries)
    assert "detected on MRPC (+1.5, 95% CI +0.5 to +2.5)" in text and "depends on the task" in text


def test_few_seeds_give_no_verdict():
    summaries = {"CoLA": {"metric": "mcc", "heads": {
        "stock": head(25.0, 1.0, 2), "hire": head(27.0, 1.0, 2, versus(2.0, False, 5.6))}}}
    text = report.answer(summaries)
    assert "fewer than 5 seeds so far on CoLA" in text and "no answer" in text
    assert report.recommendation(summaries, {"CPU": {"stock": {"ratio": 1.0}, "hire": {"ratio": 1.5}}}).startswith(
        "No recommendation yet")


def test_a_head_none_of_whose_runs_finished_is_said_so_and_holds_nothing_back():
    """Such a head has a row of failed runs (n 0, no comparison): the headline read it as a head
    with results and stopped with a KeyError; the answer called it 'fewer than 5 seeds'."""
    lost = {**head(None, None, 0), "failed": 5}
    summaries = {"RTE": {"metric": "accuracy", "heads": {
        "stock": head(56.0, 2.0, 5), "hire": lost, "scalar-mix": head(57.0, 2.0, 5, versus(1.0, False, 3.9))}}}
    text = report.answer(summaries)
    assert "- **hire**: every run failed on RTE (5 runs)." in text
    # the README's headline says so too, in its verdict and its row (it said "no comparison yet")
    verdict = "**Every HIRE run failed on RTE**; no other task has 5 seeds of both HIRE and the stock head yet."
    assert text.endswith(verdict) and report.headline_section(summaries).startswith(verdict)
    assert "| RTE | accuracy | 5, 0 | 56.0 ± 2.0 | every run failed (5 runs) | - | - | - |" in \
        report.headline_section(summaries)
    costs = {"CPU": {"stock": {"ratio": 1.0}, "hire": {"ratio": 1.5}, "scalar-mix": {"ratio": 1.02}}}
    text = report.recommendation(summaries, costs)
    assert "Recommended head: **stock**" in text and "(hire: every run failed on RTE, so not recommended)" in text
    # a head run on some tasks only is named too, not silently dropped (stock-mean-pool, run on MRPC only)
    summaries["MRPC"] = {"metric": "acc_and_f1", "heads": {"stock": head(80.0, 1.0, 5), "hire": head(80.5, 1.0, 5),
                                                           "scalar-mix": head(80.2, 1.0, 5),
                                                           "stock-mean-pool": head(80.4, 1.0, 5)}}
    assert "(stock-mean-pool: not run on every task, so not recommended)" in report.recommendation(summaries, costs)
    del summaries["MRPC"]
    summaries["RTE"]["heads"] = {"stock": lost, "hire": head(57.0, 2.0, 5)}  # the reference's every run failed
    assert report.headline_section(summaries).startswith("(no comparison of HIRE with the stock head yet")
    text = report.answer(summaries)
    assert "No task has 5 seeds" in text and "No head is compared with the stock head on RTE" in text
    # one failed try is a seed still to come, not a head that failed: it holds the recommendation back
    summaries["RTE"]["heads"] = {"stock": head(56.0, 2.0, 5), "hire": {**head(None, None, 0), "failed": 1}}
    assert "- **hire**: fewer than 5 seeds so far on RTE." in report.answer(summaries)
    assert report.recommendation(summaries, costs).startswith("No recommendation yet")


def test_recommendation_is_the_cheapest_head_within_the_band_of_the_best():
    summaries = {"MRPC": {"metric": "acc_and_f1", "heads": {
        "stock": head(80.0, 1.0, 10), "hire": head(82.0, 1.0, 10), "scalar-mix": head(81.6, 1.0, 10),
        "last4-mean": head(81.8, 1.0, 10)}}}
    costs = {"CPU": {"stock": {"ratio": 1.0}, "hire": {"ratio": 1.6}, "scalar-mix": {"ratio": 1.02},
                     "last4-mean": {"ratio": 1.01}}}
    # the band at 10 seeds and sd 1 is ~1.3 points: stock (2.0 below) is out, the others in
    text = report.recommendation(summaries, costs)
    assert "Recommended head: **last4-mean**" in text and "1.01x" in text
    assert "within the band everywhere: hire, scalar-mix, last4-mean" in text


def test_overlapping_step_time_ranges_are_a_tie_on_cost_and_a_tie_goes_to_the_stock_head():
    summaries = {"MRPC": {"metric": "acc_and_f1", "heads": {
        "stock": head(81.4, 1.0, 10), "hire": head(82.0, 1.0, 10), "scalar-mix": head(81.8, 1.0, 10)}}}
    stock = {"ratio": 1.0, "ranges": {"RTE batches": [1.0, 1.0], "MRPC batches": [1.0, 1.0]}}
    hire = {"ratio": 1.6, "ranges": {"RTE batches": [1.45, 1.5], "MRPC batches": [1.7, 1.8]}}
    # below stock on the mean, but its repeats straddle stock on one batch set: noise, not a saving
    scalar_mix = {"ratio": 0.98, "ranges": {"RTE batches": [0.95, 0.97], "MRPC batches": [0.97, 1.01]}}
    costs = {"CPU": {"stock": stock, "hire": hire, "scalar-mix": scalar_mix}}
    text = report.recommendation(summaries, costs)
    assert "Recommended head: **stock**" in text
    assert "cannot be told apart from that of scalar-mix: their paired step-time ranges overlap, so the " \
        "reference head is preferred." in text
    assert "hire" not in text.split("told apart")[1].split(":")[0]  # hire's spread lies wholly above stock's
    # wholly below stock on every batch set: measurably cheaper, so it is recommended, with no tie
    scalar_mix["ranges"]["MRPC batches"] = [0.97, 0.99]
    text = report.recommendation(summaries, costs)
    assert "Recommended head: **scalar-mix**" in text and "told apart" not in text
    # a tie without the reference head among the cheapest falls to the lower mean ratio
    del summaries["MRPC"]["heads"]["stock"], costs["CPU"]["stock"]
    costs["CPU"]["last4-mean"] = {"ratio": 0.99, "ranges": {"RTE batches": [0.96, 1.0], "MRPC batches": [0.98, 1.0]}}
    summaries["MRPC"]["heads"]["last4-mean"] = head(81.7, 1.0, 10)
    text = report.recommendation(summaries, costs)
    assert "Recommended head: **scalar-mix**" in text and "apart from that of last4-mean: their paired " \
        "step-time ranges overlap." in text


def test_step_costs_carry_each_batch_sets_paired_ratio_range():
    cpu = report.step_costs()["CPU"]
    assert set(cpu["stock"]["ranges"]) == {"RTE batches", "MRPC batches"}
    assert all(low <= high for cost in cpu.values() for low, high in cost["ranges"].values())
    assert report.costs_less(cpu["stock"], cpu["hire"]) and not report.costs_less(cpu["hire"], cpu["stock"])


def test_a_devices_costs_come_from_its_speed_file_that_times_the_most_heads(tmp_path, monkeypatch):
    def speed_file(name, gpu, ratios):
        configs = {c: {"ratio": r, "flop_ratio": 1.0, "paired_ratio_range": [r - 0.1, r + 0.1]} for c, r in ratios.items()}
        machine = {"gpu": gpu} if gpu else {}
        train_step = {"minilm": {"B8xT128": {"configs": configs}, "RTE batches": {"configs": configs}}}
        (tmp_path / name).write_text(json.dumps({"machine": machine, "train_step": train_step}))

    # sorted by name the smaller GPU file comes last: merging file by file would take its hire
    speed_file("speed-GPU-heads.json", "GPU", {"stock": 1.0, "hire": 2.0, "scalar-mix": 1.2})
    speed_file("speed-GPU.json", "GPU", {"stock": 1.0, "hire": 3.0})
    speed_file("speed-cpu.json", None, {"stock": 1.0, "hire": 1.5})
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    costs = report.step_costs()
    assert {c: v["ratio"] for c, v in costs["GPU"].items()} == {"stock": 1.0, "hire": 2.0, "scalar-mix": 1.2}
    assert {v["source"] for v in costs["GPU"].values()} == {"speed-GPU-heads.json"}
    assert costs["CPU"]["hire"]["ratio"] == 1.5 and costs["CPU"]["hire"]["ranges"] == {"RTE batches": [1.4, 1.6]}


def test_a_last_k_head_of_another_k_is_answered_tabled_and_recommended():
    summaries = {"MRPC": {"metric": "acc_and_f1", "heads": {
        "stock": head(80.0, 1.0, 10), "hire": head(80.2, 1.0, 10, versus(0.2, False, 1.3)),
        "last2-mean": head(83.0, 1.0, 10, versus(3.0, True))}}}
    costs = {"CPU": {"stock": {"ratio": 1.0, "flop_ratio": 1.0}, "hire": {"ratio": 1.6, "flop_ratio": 1.5}}}
    assert "- **last2-mean**: a difference from the stock head is detected on MRPC (+3.0" in report.answer(summaries)
    assert "| last2-mean | 83.0 (10) | - | - |" in report.cost_section(summaries, costs)
    # the best head has no speed results: it cannot be recommended, and the text says why
    assert "last2-mean: no speed results" in report.recommendation(summaries, costs)
    costs["CPU"]["last2-mean"] = {"ratio": 0.9, "flop_ratio": 1.0}
    assert "Recommended head: **last2-mean** (mean of the last 2 layers" in report.recommendation(summaries, costs)


def test_the_answer_speaks_only_of_tasks_compared_with_the_stock_head():
    summaries = {"MRPC": {"metric": "acc_and_f1", "reference": "hire-no-fusion", "heads": {
        "hire-no-fusion": head(81.0, 1.0, 5), "hire": head(81.4, 1.0, 5, versus(0.4, False, 2.0))}},
        "RTE": {"metric": "accuracy", "heads": {
            "stock": head(56.0, 2.0, 3), "hire": head(57.0, 2.0, 5, versus(1.0, False, 3.9))}}}
    text = report.answer(summaries)
    assert "MRPC" not in text and "fewer than 5 seeds so far on RTE" in text and "no answer" in text


def test_a_run_of_a_head_this_version_does_not_know_is_still_reported():
    from fairseq_hire.compare.report import summarise

    runs = [{"task": "RTE", "recipe": {"train_flags": []}, "targets": [0, 1, 1], "head": name, "seed": 1,
             "metric": "accuracy", "regression": False, "label_names": ["0", "1"], "positive_class": -1,
             "predictions": [0, 1, 0], "metrics": {"accuracy": 66.6667}, "train_seconds": 60.0,
             "layer_weights": None, "file": f"{name}.json"} for name in ("stock", "attention-pooling", "last12-mean",
                                                                        "last2-mean")]
    summary = summarise(runs)
    assert list(summary["heads"]) == ["stock", "last2-mean", "last12-mean", "attention-pooling"]
    assert summary["heads"]["attention-pooling"]["description"] == ""


def test_the_gpu_study_gets_its_own_section_naming_its_card_and_plots(tmp_path, monkeypatch):
    """compare-gpu.tar.gz unpacked into benchmarks/results/ is reported on its own, from its own
    run files (never pooled with the CPU study's), and says which GPU trained it."""
    monkeypatch.setattr(report, "REPO", tmp_path)
    study = tmp_path / "benchmarks" / "results" / "compare-gpu"
    assert "No GPU study has results yet" in report.gpu_quality_section(report.study_summaries(study=study), study)
    runs = study / "RTE" / "runs"
    runs.mkdir(parents=True)
    for name, predictions in (("stock", [0, 1, 0]), ("hire", [0, 1, 1])):
        run = {"task": "RTE", "recipe": {"train_flags": [], "device": "gpu"}, "targets": [0, 1, 1], "head": name,
               "seed": 1, "metric": "accuracy", "regression": False, "label_names": ["0", "1"], "positive_class": -1,
               "predictions": predictions, "metrics": {"accuracy": 100 * sum(p == t for p, t in zip(predictions, [0, 1, 1])) / 3},
               "train_seconds": 60.0, "layer_weights": None, "gpu": "NVIDIA H200"}
        (runs / f"{name}-seed1.json").write_text(json.dumps(run))
    text = report.gpu_quality_section(report.study_summaries(refresh=True, study=study), study)
    assert "trained in fp16 (fairseq's GPU recipe) on NVIDIA H200, from `benchmarks/results/compare-gpu/`" in text
    assert "**RTE** (3 dev examples" in text and "| hire | 1 |" in text
    assert "[every seed's score](benchmarks/results/compare-gpu/RTE/scores.png)" in text
    assert "fewer than 5 seeds so far on RTE" in text


def test_write_atomically_replaces_whole_files_and_keeps_permissions(tmp_path):
    """A new file gets what the umask gives (it got rw-r--r-- whatever the umask: a user's umask 077
    left checkpoints and run files readable to all), a replaced regular file keeps its mode, and a
    link is replaced, its target's mode neither read nor changed."""
    path = tmp_path / "deep" / "result.json"
    previous = os.umask(0o077)
    try:
        write_atomically(path, "first\n")
        assert path.read_text() == "first\n"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        path.chmod(0o664)
        write_atomically(path, "second\n")
        assert path.read_text() == "second\n"
        assert stat.S_IMODE(path.stat().st_mode) == 0o664
        target, link = tmp_path / "target", tmp_path / "link.json"
        target.write_text("kept\n")
        target.chmod(0o666)
        link.symlink_to(target)
        write_atomically(link, "third\n")
        assert not link.is_symlink() and stat.S_IMODE(link.stat().st_mode) == 0o600
        assert target.read_text() == "kept\n" and stat.S_IMODE(target.stat().st_mode) == 0o666
    finally:
        os.umask(previous)
    assert sorted(p.name for p in path.parent.iterdir()) == ["result.json"]  # no temporary left


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    write_atomically(path, "old\n")

    def broken_replace(*args):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", broken_replace)
    with pytest.raises(OSError):
        write_atomically(path, "new\n")
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_step_costs_come_in_the_same_order_under_any_hash_seed():
    """A set's order changes with the hash seed, which rewrote study_summary.json on every refresh."""
    import json
    import os
    import subprocess

    code = ("import json, sys; sys.path.insert(0, 'benchmarks'); import report; "
            "print(json.dumps({d: list(c) for d, c in report.step_costs().items()}))")
    orders = [json.loads(subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, text=True,
                                        capture_output=True, env={**os.environ, "PYTHONHASHSEED": seed}).stdout)
              for seed in ("1", "2", "3")]
    assert orders[0] and orders[0] == orders[1] == orders[2]


def test_the_verdict_says_hire_is_worse_where_it_is_detectably_worse_on_every_task():
    summaries = {task: {"metric": "accuracy", "heads": {
        "stock": head(60.0, 1.0, 5), "hire": head(55.0, 1.0, 5, versus(-5.0, True))}} for task in ("RTE", "MRPC")}
    assert report.verdict(summaries).startswith("**HIRE is measurably worse than the stock head on all-MiniLM-L6-v2** "
                                                "on RTE, MRPC")
    summaries["MRPC"]["heads"]["hire"]["vs_reference"] = versus(-1.0, False)
    assert "depends on the task" in report.verdict(summaries)


def test_a_head_tied_with_the_best_on_every_seed_is_within_its_band():
    """No spread between seeds gives no band; a head tied with the best is still as good as it."""
    summary = {"heads": {"stock": head(80.0, 0.0, 5), "hire": head(80.0, 0.0, 5), "last4-mean": head(79.0, 0.0, 5)}}
    assert report.within_band(summary, "hire", "stock") and report.within_band(summary, "stock", "hire")
    assert not report.within_band(summary, "last4-mean", "stock")  # a difference without noise is a difference


def test_check_readme_holds_each_report_against_its_run_files(tmp_path, monkeypatch):
    """A run file removed (or added) after a task's report was written left report.json, and so
    every page made from it, out of step with the runs, and --check-readme passed."""
    import shutil

    study = tmp_path / "compare"
    shutil.copytree(report.STUDY / "RTE", study / "RTE", ignore=shutil.ignore_patterns("*.png"))
    monkeypatch.setattr(report, "REPO", tmp_path)
    assert report.stale_reports(study) == []
    newest = max((study / "RTE" / "runs").glob("hire-seed*.json"), key=lambda p: int(p.stem.split("seed")[1]))
    newest.unlink()
    assert report.stale_reports(study) == ["compare/RTE/report.json", "compare/RTE/report.md"]
