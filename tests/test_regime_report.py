"""The regimes study (benchmarks/regimes.py) and its report (benchmarks/regime_report.py), on
run files written in tmp_path in the format fairseq_hire.compare.runs writes: the plan counts runs
and reuse, the report computes the statistics, shows an incomplete point as in progress, marks a
constructed clear gain as detected and a noise-only difference as not, and writes its plots and
the full report of a point reused from today's comparison beside the study's other points."""
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import regime_report  # noqa: E402
import regime_tables  # noqa: E402
import regimes  # noqa: E402

pytestmark = pytest.mark.unit

DEV = 200
TARGETS = [i % 2 for i in range(DEV)]
HEADS = ["stock", "hire", "stock-mean-pool"]


def write_run(folder: Path, point: regimes.Point, head: str, seed: int, correct: float, rows_seed=None,
              size=None, dynamic=True):
    """One run file as compare/runs.py writes it, whose predictions are right with probability `correct`."""
    rng = np.random.default_rng(1000 * seed + HEADS.index(head) + 17 * len(point.key))
    predictions = [t if rng.random() < correct else 1 - t for t in TARGETS]
    accuracy = round(100 * float(np.mean(np.equal(predictions, TARGETS))), 4)
    weights = None
    if head == "hire":  # per-example weights: varying between examples, or nearly fixed
        weights = rng.dirichlet(np.ones(6) * (1.0 if dynamic else 1e4), DEV).tolist()
    subset = point.subset if size is None else size
    run = {
        "version": 1, "task": point.task, "head": head, "seed": seed, "metric": "accuracy", "head_options": {},
        "recipe": {"task": point.task, "data": f"/data/{point.task}-bin", "pretrained": "/minilm/model.pt",
                   "train_flags": list(point.train_flags()), "device": "cpu"},
        "metrics": {"accuracy": accuracy}, "dev": {"split": "valid", "examples": DEV, "source": "dev.tsv"},
        "regression": False, "label_names": ["entailment", "not_entailment"], "positive_class": -1,
        "predictions": predictions, "targets": TARGETS, "layer_weights": weights, "first_scored_layer": 1,
        "validations": [{"epoch": 1.0, "accuracy": accuracy}],
        "train_command": ["-m", "fairseq_hire.workflow.finetune", point.task, "--head", head, "--seed", str(seed)],
        "train_seconds": 120.0, "threads": 1, "code_version": "0" * 40, "torch": "2.13.0+cpu", "machine": "x86_64",
        "gpu": None,
    }
    if subset:
        rows = hashlib.sha256(f"rows {subset} {seed if rows_seed is None else rows_seed}".encode()).hexdigest()
        run["train_subset"] = {"size": subset, "seed": seed, "rows_sha256": rows}
    path = folder / "runs" / f"{head}-seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run))
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """RTE: fine-tuned n100 with a clear gain of HIRE; frozen n100 with noise only; the fine-tuned
    full set reused from today's study with the new head at 2 seeds; frozen n1000 at 3 seeds."""
    tmp_path = tmp_path_factory.mktemp("study")
    results, todays = tmp_path / "regimes", tmp_path / "compare"
    gain, noise = regimes.Point("RTE", "finetuned", "n100"), regimes.Point("RTE", "frozen", "n100")
    full, young = regimes.Point("RTE", "finetuned", "full"), regimes.Point("RTE", "frozen", "n1000")
    for seed in range(1, 6):
        for head, correct in (("stock", 0.6), ("hire", 0.85), ("stock-mean-pool", 0.6)):
            write_run(gain.folder(results, todays), gain, head, seed, correct)
        for head in HEADS:
            write_run(noise.folder(results, todays), noise, head, seed, 0.7, dynamic=False)
        for head in ("stock", "hire"):
            write_run(full.folder(results, todays), full, head, seed, 0.65)
    for seed in (1, 2):
        write_run(full.folder(results, todays), full, "stock-mean-pool", seed, 0.65)
    for seed in (1, 2, 3):
        for head in HEADS:
            write_run(young.folder(results, todays), young, head, seed, 0.7)
    (results / "costs.json").write_text(json.dumps({"measured": "test", "minutes_per_run": {
        "frozen/n100/stock": 2.0, "frozen/n100/hire": 6.0, "frozen/n100/stock-mean-pool": 2.0,
        "finetuned/n100/stock": 10.0, "finetuned/n100/hire": 16.0}}))  # fine-tuned stock-mean-pool: not measured
    pages = {regime_report.FULL_SECTION: tmp_path / "RESULTS.md", regime_report.HEADLINE_SECTION: tmp_path / "README.md"}
    report = regime_report.build(results, todays, HEADS, ["RTE"], pages=pages)
    return report, results, todays, tmp_path


def point(report, regime, size):
    return next(r for r in report["points"] if r["regime"] == regime and r["size"] == size)


def test_a_clear_gain_is_detected_and_noise_is_not(study):
    report, _, _, _ = study
    gain = point(report, "finetuned", "n100")["summary"]["heads"]["hire"]["vs_reference"]
    assert gain["detected"] and gain["difference"] > 15 and gain["bootstrap_low"] > 0 and gain["welch_p"] < 0.05
    assert gain["detectable"] is not None and gain["mannwhitney_p"] is not None
    noise = point(report, "frozen", "n100")["summary"]["heads"]["hire"]["vs_reference"]
    assert not noise["detected"] and noise["bootstrap_low"] < 0 < noise["bootstrap_high"]
    assert [(d["regime"], d["size"], d["head"]) for d in report["detected"]] == [("finetuned", "n100", "hire")]
    text = report["fragment"]
    assert "Where a head beats the stock head detectably (" in text and "RTE, fine-tuned, 100 rows: **hire** +" in text
    # the gain held against the last layer mean-pooled too (issue 28's control), by the same statistics
    line = next(line for line in text.splitlines() if line.startswith("- RTE, fine-tuned, 100 rows: **hire**"))
    pooled = point(report, "finetuned", "n100")["summary"]["heads"]["hire"]["vs_mean_pool"]
    assert pooled["detected"] and line.endswith(f"; against stock-mean-pool {pooled['difference']:+.1f} (95% CI "
                                                f"{pooled['bootstrap_low']:+.1f} to {pooled['bootstrap_high']:+.1f}; detected)")
    assert "vs_mean_pool" not in point(report, "frozen", "n1000")["summary"]["heads"]["hire"]  # 3 seeds: none
    assert "No head beats" not in text
    noise_only = regime_tables.fragment([point(report, "frozen", "n100")], HEADS, [], {}, {})
    assert "**No head beats the stock head detectably** in the 2 comparisons of a head with the stock head that " \
        "have 5 seeds so far (at RTE frozen 100 rows)." in noise_only
    assert point(report, "finetuned", "n100")["summary"]["heads"]["stock"]["failed"] == 0


def test_points_with_fewer_than_5_seeds_are_in_progress_never_results(study):
    report, _, _, _ = study
    full, young = point(report, "finetuned", "full"), point(report, "frozen", "n1000")
    assert full["reused_from"] and not full["complete"] and full["seeds"]["stock-mean-pool"] == 2
    assert not young["complete"] and young["seeds"] == {h: 3 for h in HEADS}
    row = next(line for line in report["fragment"].splitlines() if line.startswith("| frozen | 1,000 rows"))
    assert row.count("in progress (3 of 5 seeds)") == len(HEADS) and "±" not in row
    full_row = next(line for line in report["fragment"].splitlines() if line.startswith("| fine-tuned | 2,490 rows"))
    assert "in progress (2 of 5 seeds)" in full_row and full_row.count("±") == 2  # stock and hire count
    assert report["recommendations"]["finetuned-full"] == {"tasks": [], "in_progress": ["RTE"]}
    assert "**fine-tuned, full**: no recommendation yet" in report["fragment"]


def test_the_recommendation_is_the_cheapest_head_within_the_band_by_each_regimes_costs(study):
    report, _, _, _ = study
    finetuned, frozen = report["recommendations"]["finetuned-n100"], report["recommendations"]["frozen-n100"]
    assert finetuned["head"] == "hire" and finetuned["best"] == {"RTE": "hire"} and finetuned["ratio"] == 1.6
    assert "stock" not in finetuned["within_band"]  # the gain is far outside the band
    # noise: every head in the band; stock and stock-mean-pool cost the same minutes, a tie to stock
    assert frozen["head"] == "stock" and frozen["tied"] == ["stock-mean-pool"] and set(frozen["within_band"]) == set(HEADS)
    assert "stock-mean-pool" in finetuned["unpriced"] or "stock-mean-pool" not in finetuned["within_band"]
    assert "**frozen, n100** on RTE: **stock**" in report["fragment"]
    # the chosen head's cost in both regimes, each from its own minutes per run in costs.json
    assert finetuned["costs"] == {"finetuned": {"ratio": 1.6, "minutes": 16.0}, "frozen": {"ratio": 3.0, "minutes": 6.0}}
    assert frozen["costs"] == {"finetuned": {"ratio": 1.0, "minutes": 10.0}, "frozen": {"ratio": 1.0, "minutes": 2.0}}
    assert ("cost 1.60x the stock head's (minutes per run of the regime, mean over the tasks, from costs.json "
            "(benchmarks/regime_costs.py)); frozen: 3.00x the stock head's minutes per run") in report["fragment"]


def test_layer_weights_per_regime_and_the_files_written(study):
    report, results, todays, _ = study
    hire_frozen = point(report, "frozen", "n100")["summary"]["heads"]["hire"]["layer_weights"]
    hire_tuned = point(report, "finetuned", "n100")["summary"]["heads"]["hire"]["layer_weights"]
    assert hire_tuned["dynamic"] and not hire_frozen["dynamic"]
    row = next(line for line in report["fragment"].splitlines() if line.startswith("| RTE | 100 rows"))
    assert f"{hire_tuned['tv_from_mean_mean']:.3f} (input-dependent)" in row
    assert f"{hire_frozen['tv_from_mean_mean']:.3f} |" in row
    assert "input-dependent (0.05 or more) fine-tuned: at 2 of 2 points; frozen: at 0 of 1 points." in report["fragment"]
    curve = results / "RTE" / "learning_curve.png"
    assert curve.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (results / "RTE" / "finetuned-n100" / "report.md").exists()
    assert not (todays / "RTE" / "report.md").exists()  # today's folder is report.py's to rewrite
    assert "[learning curve](regimes/RTE/learning_curve.png)" in report["fragment"]


def test_heads_of_one_seed_on_other_rows_or_runs_of_another_size_are_refused(tmp_path):
    results, todays = tmp_path / "regimes", tmp_path / "compare"
    p = regimes.Point("MRPC", "frozen", "n100")
    write_run(p.folder(results, todays), p, "stock", 1, 0.7)
    bad = write_run(p.folder(results, todays), p, "hire", 1, 0.7, rows_seed=2)
    with pytest.raises(regime_report.ReportError, match="different training rows"):
        regime_report.point_result(p, HEADS, results, todays, write=False)
    bad.unlink()
    bad = write_run(p.folder(results, todays), p, "hire", 1, 0.7, size=1000)
    with pytest.raises(regime_report.ReportError, match=f"{bad.name}: trained on 1000 rows"):
        regime_report.point_result(p, HEADS, results, todays, write=False)


def test_a_run_of_a_point_that_did_not_finish_is_counted_as_a_failed_run(tmp_path):
    """A diverged run of the study leaves a failure record (compare/failures.py), not a run
    file: the point's report counted only the runs that finished, as if none had failed."""
    results, todays = tmp_path / "regimes", tmp_path / "compare"
    p = regimes.Point("RTE", "finetuned", "n100")
    finished = json.loads(write_run(p.folder(results, todays), p, "stock", 1, 0.7).read_text())
    write_run(p.folder(results, todays), p, "hire", 1, 0.7)
    record = {"head": "hire", "seed": 2, "stage": "fine-tuning", "exit_code": 1, "log": "hire-seed2.log",
              "reason": "FloatingPointError: gradients are Nan/Inf", "recipe": finished["recipe"]}
    (p.folder(results, todays) / "runs" / "hire-seed2.failed").write_text(json.dumps(record))
    heads = regime_report.point_result(p, HEADS, results, todays, write=False)["summary"]["heads"]
    assert (heads["hire"]["n"], heads["hire"]["failed"], heads["hire"]["unfinished_seeds"]) == (1, 1, [2])


def test_the_plan_counts_runs_reuse_and_measured_hours(tmp_path):
    results, todays = tmp_path / "regimes", tmp_path / "compare"
    points = regimes.grid(["RTE", "SST-2"])
    for seed in (1, 2, 3):
        write_run(todays / "RTE", regimes.Point("RTE", "finetuned", "full"), "stock", seed, 0.6)
    write_run(results / "RTE" / "frozen-n100", regimes.Point("RTE", "frozen", "n100"), "hire", 1, 0.6)
    heads, seeds = ["stock", "hire"], [1, 2, 3, 4, 5]
    plan = regimes.make_plan(points, heads, seeds, {}, 2, results, todays)
    assert plan["totals"]["runs"] == 2 * 6 * 2 * 5 and plan["totals"]["finished"] == 4
    assert plan["totals"]["reused_finished"] == 3 and plan["totals"]["to_run"] == 120 - 4
    assert plan["totals"]["cpu_hours_to_run"] is None and len(plan["totals"]["not_measured"]) == 2 * 6 * 2
    rows = {(r["task"], r["regime"], r["size"]): r for r in plan["points"]}
    assert rows["RTE", "finetuned", "full"]["reused_from"] == str(todays / "RTE")
    assert rows["RTE", "finetuned", "full"]["heads"]["stock"]["finished_minutes_mean"] == 2.0
    sst2 = rows["SST-2", "finetuned", "full"]
    assert sst2["reused_from"] is None and sst2["train_rows"] == 10000 and sst2["train_flags"][-2:] == ["--train-size", "10000"]
    assert rows["RTE", "frozen", "n1000"]["train_flags"] == ["--epochs", "3", "--lr", "0.001", "--freeze-encoder",
                                                             "--train-size", "1000"]
    # every kind measured (a task's own figure wins): hours = sum of minutes of the runs to do
    minutes = {f"{g}/{s}/{h}": 1.0 for g in regimes.REGIMES for s in regimes.SIZES for h in heads}
    minutes["SST-2/finetuned/full/hire"] = 61.0
    plan = regimes.make_plan(points, heads, seeds, {"measured": "t", "minutes": minutes}, 2, results, todays)
    assert plan["totals"]["cpu_hours_to_run"] == pytest.approx(round((111 + 5 * 61) / 60, 2))
    assert plan["totals"]["wall_hours_at_jobs"] == pytest.approx(round((111 + 5 * 61) / 120, 2))
    regimes.write_plan(plan, results)
    assert json.loads((results / "plan.json").read_text()) == plan
    assert "| RTE | finetuned | full | 2,490 |" in (results / "plan.md").read_text()
    assert "(reused: today's study)" in (results / "plan.md").read_text()


def test_runs_go_seed_major_and_cheapest_points_first_within_a_seed():
    points = regimes.grid(["RTE"], ["finetuned", "frozen"], ["n100"])
    costs = {"minutes": {"frozen/n100/stock": 1.0, "frozen/n100/hire": 1.0}}
    order = regimes.run_order(points, ["stock", "hire"], [1, 2], costs, "cheapest")
    assert [seed for _, _, seed in order] == [1, 1, 1, 1, 2, 2, 2, 2]
    assert [key for key, _, _ in order[:4]] == ["RTE/frozen-n100"] * 2 + ["RTE/finetuned-n100"] * 2
    assert regimes.run_order(points, ["stock"], [1], costs, "grid")[0][0] == "RTE/finetuned-n100"


def test_the_reused_points_recipe_is_todays_study():
    """The fine-tuned full-set points of MRPC and RTE use the very flags today's runs recorded."""
    for task in ("MRPC", "RTE"):
        run = json.loads(next((REPO / "benchmarks" / "results" / "compare" / task / "runs").glob("stock-seed1.json")).read_text())
        point = regimes.Point(task, "finetuned", "full")
        assert point.reused and run["recipe"]["train_flags"] == list(point.train_flags())
    assert not regimes.Point("SST-2", "finetuned", "full").reused


def test_a_damaged_costs_file_is_refused_in_one_line(tmp_path):
    path = tmp_path / "costs.json"
    path.write_text(json.dumps({"minutes_per_run": {"frozen/n100/hire": "fast"}}))
    with pytest.raises(regimes.PlanError, match=r"costs.json: minutes_per_run\['frozen/n100/hire'\] is 'fast'"):
        regimes.read_costs(path)
    path.write_text("[1, 2")
    with pytest.raises(regimes.PlanError, match="expected a JSON object with minutes_per_run"):
        regimes.read_costs(path)
    for spread in ([2.5, 3.0], [1.0], "wide", [0, 3.0]):  # not around the minutes, not a pair, not positive
        path.write_text(json.dumps({"minutes_per_run": {"frozen/n100/hire": 2.0},
                                    "minutes_range_per_run": {"frozen/n100/hire": spread}}))
        with pytest.raises(regimes.PlanError, match=r"costs.json: minutes_range_per_run\['frozen/n100/hire'\] is "):
            regimes.read_costs(path)
    path.write_text(json.dumps({"minutes_per_run": {"frozen/n100/hire": 2.0},  # a range of no measurement
                                "minutes_range_per_run": {"frozen/n100/stock": [1.0, 2.0]}}))
    with pytest.raises(regimes.PlanError, match=r"minutes_range_per_run\['frozen/n100/stock'\]"):
        regimes.read_costs(path)


def test_the_readme_headline_states_the_verdict_and_each_regimes_recommendation_from_the_files(study):
    report, _, _, tmp_path = study
    text = report["headline"]
    # the grid and how much of it is complete: 6 points of RTE, 2 with every head at 5 seeds
    assert "(all-MiniLM-L6-v2 on RTE; training on 100 rows, 1,000 rows, the full set; fine-tuned and frozen; " \
        "5 seeds per point): 2 of 6 points have every head at 5 seeds so far." in text
    # the same verdict as the full section: the constructed gain, with its interval and detectable difference
    gain = next(line for line in text.splitlines() if line.startswith("- RTE, fine-tuned, 100 rows: **hire** +"))
    assert "95% CI +" in gain and "Welch p < 0.001" in gain and "detectable" in gain and gain in report["fragment"]
    assert ("Recommended head so far: fine-tuned, 100 rows: **hire** (RTE); frozen, 100 rows: **stock** (RTE). "
            "No recommendation yet for fine-tuned, 1,000 rows; fine-tuned, the full set; frozen, 1,000 rows; "
            "frozen, the full set (points in progress).") in text
    assert "[RESULTS.md](RESULTS.md#across-training-set-sizes-and-with-a-frozen-encoder)" in text
    # nothing counted yet: no verdict, no recommendation, no number
    young = [point(report, "frozen", "n1000")]
    empty = regime_tables.headline(young, [], {"frozen-n1000": {"tasks": [], "in_progress": ["RTE"]}})
    assert "0 of 1 points" in empty and "no answer" in empty and "No regime has a recommendation yet." in empty
    assert "±" not in empty and "**stock**" not in empty


def test_check_readme_compares_the_fragment_file_and_the_marked_section(study, monkeypatch, capsys):
    _, results, todays, tmp_path = study
    monkeypatch.setattr(regimes, "RESULTS", results)
    monkeypatch.setattr(regimes, "TODAYS_STUDY", todays)
    monkeypatch.setattr(regime_report, "REPO", tmp_path)
    monkeypatch.setattr(regimes, "HEADS", HEADS)
    monkeypatch.setattr(regimes, "DEFAULT_TASKS", ["RTE"])
    page, results_page = tmp_path / "README.md", tmp_path / "docs" / "RESULTS.md"
    page.write_text("intro\n<!-- regimes-headline:start -->\nstale headline\n<!-- regimes-headline:end -->\n")
    results_page.parent.mkdir()
    results_page.write_text("## Across\n<!-- regimes:start -->\nstale section\n<!-- regimes:end -->\nend\n")
    assert regime_report.main(["--check-readme"]) == 1  # no fragment file yet
    assert regime_report.main([]) == 0 and page.read_text().count("stale headline") == 1  # only the fragment file
    assert regime_report.main(["--check-readme"]) == 1
    assert "out of date: docs/RESULTS.md, README.md" in capsys.readouterr().out
    assert regime_report.main(["--update-readme"]) == 0
    assert "stale section" not in results_page.read_text() and "stale headline" not in page.read_text()
    assert "Recommended head so far: fine-tuned, 100 rows: **hire** (RTE)" in page.read_text()
    assert "[docs/RESULTS.md](docs/RESULTS.md#across-training-set-sizes" in page.read_text()  # the page beside it
    assert "[learning curve](../regimes/RTE/learning_curve.png)" in results_page.read_text()  # linked from docs/
    assert regime_report.main(["--check-readme"]) == 0
    run = results / "RTE" / "frozen-n100" / "runs" / "hire-seed5.json"
    kept, _ = run.read_bytes(), capsys.readouterr()
    run.unlink()  # a run gone: its point's report no longer what the runs give
    assert regime_report.main(["--check-readme"]) == 1 and "frozen-n100/report.json" in capsys.readouterr().out
    run.write_bytes(kept)
    page.write_text(page.read_text().replace("**hire**", "**stock**", 1))  # a headline edited by hand
    assert regime_report.main(["--check-readme"]) == 1 and "out of date: README.md" in capsys.readouterr().out
    assert json.loads((results / "summary.json").read_text())["detected"][0]["head"] == "hire"


def test_the_readme_holds_the_headline_and_docs_results_the_full_section():
    assert regime_report.marker_pages() == {regime_report.FULL_SECTION: REPO / "docs" / "RESULTS.md",
                                            regime_report.HEADLINE_SECTION: REPO / "README.md"}


def test_a_gain_without_the_mean_pooled_control_says_so():
    """The list's heading promises each gain held against stock-mean-pool; where that head has
    fewer than 5 seeds (today's fine-tuned full-set points) the line says there is no such
    comparison yet instead of leaving the reader to take its absence for a pass."""
    gain = {"task": "MRPC", "regime": "finetuned", "size": "full", "train_rows": 3668, "head": "hire",
            "difference": 1.0, "bootstrap_low": 0.2, "bootstrap_high": 1.8, "welch_p": 0.01, "detectable": 0.9,
            "vs_mean_pool": None}
    lines = regime_tables.verdict_lines([], [gain, {**gain, "head": "stock-mean-pool"}])
    hire, pooled = (next(line for line in lines if f"**{head}**" in line) for head in ("hire", "stock-mean-pool"))
    assert hire.endswith("detectable 0.9); against stock-mean-pool: not compared (fewer than 5 seeds of it)")
    assert pooled.endswith("detectable 0.9)")


def test_a_reused_points_full_report_holds_every_head_it_counts(tmp_path):
    """The fine-tuned full-set points of MRPC and RTE are today's comparison, whose report.md
    (benchmarks/results/compare/<TASK>/) was written before the study added stock-mean-pool there
    and is not this report's to rewrite: the page linked it as the point's "full report", where
    stock-mean-pool (5 seeds, counted at the point) had no Welch or Mann-Whitney p anywhere on a
    page. The point's own report is written beside the study's other points and linked instead."""
    results, todays = tmp_path / "regimes", tmp_path / "compare"
    full = regimes.Point("RTE", "finetuned", "full")
    for seed in range(1, 6):
        for head in HEADS:
            write_run(full.folder(results, todays), full, head, seed, 0.65)
    (results / "costs.json").parent.mkdir(parents=True, exist_ok=True)
    (results / "costs.json").write_text(json.dumps({"measured": "test", "minutes_per_run": {}}))
    pages = {regime_report.FULL_SECTION: tmp_path / "RESULTS.md", regime_report.HEADLINE_SECTION: tmp_path / "README.md"}
    report = regime_report.build(results, todays, HEADS, ["RTE"], pages=pages)
    written = results / "RTE" / "finetuned-full" / "report.md"
    assert written.exists() and not (todays / "RTE" / "report.md").exists()  # today's folder left alone
    row = next(line for line in written.read_text().splitlines() if line.startswith("| stock-mean-pool | 5 |"))
    welch = next(r for r in report["points"] if r["size"] == "full" and r["regime"] == "finetuned")[
        "summary"]["heads"]["stock-mean-pool"]["vs_reference"]["welch_p"]
    assert f"| {welch:.3f} |" in row
    assert "[report.md](regimes/RTE/finetuned-full/report.md)" in report["fragment"]
    assert "[report.md](compare/RTE/report.md)" not in report["fragment"]

