"""The regimes report on failed runs (benchmarks/regime_report.py): a run that did not finish,
or a regression run that scored NaN, is a failed try of its head, not a seed; a head every try of
which failed completes its point, is said so, and is never ranked or recommended."""
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
from test_regime_report import DEV, HEADS, point, write_run  # noqa: E402  (the run files those tests write)

pytestmark = pytest.mark.unit


def write_failure(folder: Path, point: regimes.Point, head: str, seed: int, recipe: dict) -> None:
    """The record compare/failures.py leaves for a run that did not finish."""
    record = {"head": head, "seed": seed, "stage": "fine-tuning", "exit_code": 1, "log": f"{head}-seed{seed}.log",
              "reason": "FloatingPointError: gradients are Nan/Inf", "recipe": recipe}
    (folder / "runs" / f"{head}-seed{seed}.failed").write_text(json.dumps(record))


def test_a_head_every_run_of_which_failed_completes_its_point_and_is_not_recommended(tmp_path):
    """Failure records never become run files: a head with 5 failed tries was 'in progress (0 of
    5 seeds)' for ever, and held back every recommendation of its regime."""
    results, todays = tmp_path / "regimes", tmp_path / "compare"
    p = regimes.Point("RTE", "frozen", "n100")
    folder = p.folder(results, todays)
    for seed in range(1, 6):
        recipe = json.loads(write_run(folder, p, "stock", seed, 0.7).read_text())["recipe"]
        write_run(folder, p, "stock-mean-pool", seed, 0.72)
        write_failure(folder, p, "hire", seed, recipe)
    (results / "costs.json").write_text(json.dumps({"measured": "test", "minutes_per_run": {
        f"frozen/n100/{h}": 1.0 for h in HEADS}}))
    report = regime_report.build(results, todays, HEADS, ["RTE"], write=False)
    found = point(report, "frozen", "n100")
    assert found["complete"] and found["seeds"]["hire"] == 0 and found["failed_tries"]["hire"] == 5
    row = next(line for line in report["fragment"].splitlines() if line.startswith("| frozen | 100 rows"))
    assert "every run failed (5 runs)" in row and "in progress" not in row
    entry = report["recommendations"]["frozen-n100"]
    assert entry["failed"] == {"hire": ["RTE"]} and entry["head"] in ("stock", "stock-mean-pool")
    assert "every run of hire failed on RTE, so not recommended" in report["fragment"]
    # four seeds and a failed try: still 4 of 5, and said so in the cells of the heads it holds back
    (folder / "runs" / "stock-seed5.json").unlink()
    write_failure(folder, p, "stock", 5, recipe)
    found = regime_report.point_result(p, HEADS, results, todays, write=False)
    assert not found["complete"] and found["seeds"]["stock"] == 4
    assert regime_tables.cell(found, "stock-mean-pool") == "in progress (stock head: 4 of 5 seeds, 1 failed run)"


def test_a_regression_run_that_collapsed_is_a_failed_try_not_a_seed(tmp_path):
    """A run predicting one value for every example scores NaN: the report left it out of the
    statistics but counted it as a seed (a 4-seed head passed as 5), and a head whose every run
    collapsed crashed the recommendation."""
    from fairseq_hire import metrics

    results, todays = tmp_path / "regimes", tmp_path / "compare"
    p = regimes.Point("STS-B", "frozen", "n100")
    rng = np.random.default_rng(0)
    targets = rng.uniform(0, 5, DEV).round(2).tolist()

    def regression_run(head, seed, collapsed):
        predictions = [2.5] * DEV if collapsed else (np.asarray(targets) + rng.normal(0, 1, DEV)).tolist()
        path = write_run(p.folder(results, todays), p, head, seed, 0.7)
        run = json.loads(path.read_text())
        run.update(regression=True, label_names=[], metric="pearson_and_spearman", targets=targets,
                   predictions=predictions, layer_weights=None,
                   metrics=metrics.glue_metrics(np.asarray(predictions), np.asarray(targets), True, -1))
        path.write_text(json.dumps(run))

    for seed in range(1, 6):
        regression_run("stock", seed, collapsed=seed == 5)
        regression_run("hire", seed, collapsed=True)
    (results / "costs.json").write_text(json.dumps({"measured": "test", "minutes_per_run": {}}))
    report = regime_report.build(results, todays, ["stock", "hire"], ["STS-B"], write=False)
    found = point(report, "frozen", "n100")
    assert found["seeds"] == {"stock": 4, "hire": 0} and found["failed_tries"] == {"stock": 1, "hire": 5}
    assert not found["complete"] and report["detected"] == []
    # a sixth seed completes the stock head; hire, every run collapsed, is named, never ranked
    regression_run("stock", 6, collapsed=False)
    report = regime_report.build(results, todays, ["stock", "hire"], ["STS-B"], write=False)
    assert point(report, "frozen", "n100")["complete"]
    assert report["recommendations"]["frozen-n100"]["failed"] == {"hire": ["STS-B"]}
