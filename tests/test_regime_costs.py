"""benchmarks/regime_costs.py, which measures what one run of each kind of the regime study
costs: a short run of the study's own command through benchmarks/timed_fairseq_train.py (the
tiny RoBERTa on RTE's first 160 rows, frozen on the layer cache, as the study's frozen runs)."""
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import regime_costs  # noqa: E402
import regimes  # noqa: E402

from fairseq_hire.compare.runs import Comparison  # noqa: E402
from fairseq_hire.workflow.finetune import MIN_SUBSET_UPDATES, SUBSET_FOLDER  # noqa: E402

pytestmark = pytest.mark.unit


def test_a_short_run_of_the_studys_command_gives_seconds_per_update_epoch_end_and_run(rte_bin, tiny_pretrained,
                                                                                     tmp_path):
    flags = ("--epochs", "3", "--lr", "1e-3", "--freeze-encoder", "--train-size", "100",
             "--layer-cache", str(tmp_path / "cache"))
    comparison = Comparison("RTE", rte_bin, tiny_pretrained, tmp_path / "out", flags, device="cpu")
    log = tmp_path / "runs.log"
    save = tmp_path / "save"
    measured = regime_costs.measure(comparison, "hire", save, warmup=1, timed=2, log=log)

    times = json.loads((save / "times.json").read_text())
    assert measured["updates_run"] == len(times["updates"]) == 1 + 2 + 1  # --max-update warmup + timed + 1
    assert len(times["validate_and_save"]) == len(times["updates"])  # fairseq calls it after every update
    assert all(measured[name] > 0 for name in ("per_update", "per_epoch_end", "per_run", "scoring"))
    starts = [start for start, _ in times["updates"]]
    assert measured["per_update"] == pytest.approx((starts[-1] - starts[1]) / 2)  # the gaps after the warm-up update
    assert measured["per_update_range"][0] <= measured["per_update"] <= measured["per_update_range"][1]
    last_start, last_end = times["validate_and_save"][-1]
    assert measured["per_epoch_end"] == pytest.approx(last_end - last_start)
    # the epoch end validated and saved: slower than the calls after the other updates
    other_calls = [end - start for start, end in times["validate_and_save"][:-1]]
    assert measured["per_epoch_end"] > max(other_calls)
    # the study's command ran: on the seed's subset, the layer cache built, the checkpoint scored
    assert (save / SUBSET_FOLDER / "glue_prep.json").exists() and any((tmp_path / "cache").iterdir())
    assert (save / "checkpoint_last.pt").exists() and json.loads((save / "scores.json").read_text())["metrics"]

    # the point's budget is finetune.py's: 100 rows at RTE's batch 16, lengthened to the minimum updates
    per_epoch = -(-100 // 16)
    epochs = -(-MIN_SUBSET_UPDATES // per_epoch)
    assert regime_costs.budget(comparison, log) == {"updates": epochs * per_epoch, "epochs": epochs}


def test_a_runs_minutes_are_its_budget_times_the_measured_seconds(tmp_path):
    repeats = [{"per_update": 0.5, "per_update_range": [0.4, 0.7], "per_epoch_end": 10.0, "per_run": 30.0},
               {"per_update": 0.6, "per_update_range": [0.5, 0.8], "per_epoch_end": 12.0, "per_run": 20.0}]
    points = regimes.grid(["RTE"], ["frozen"])
    budgets = {p.key: {"updates": 100 * (i + 1), "epochs": 3 + i} for i, p in enumerate(points)}
    minutes, ranges = regime_costs.minutes_per_run({"measurements": {"RTE/frozen/stock": repeats}, "budgets": budgets},
                                                   ["RTE"], ["frozen"], ["stock"])

    def run_seconds(budget, repeat, per_update):
        return repeat["per_run"] + per_update * budget["updates"] + repeat["per_epoch_end"] * budget["epochs"]

    for p in points:
        budget, key = budgets[p.key], f"RTE/frozen/{p.size}/stock"
        assert minutes[key] == round(sum(run_seconds(budget, r, r["per_update"]) for r in repeats) / 2 / 60, 2)
        # from the fastest update of the fastest repeat to the slowest of the slowest
        assert ranges[key] == [round(min(run_seconds(budget, r, r["per_update_range"][0]) for r in repeats) / 60, 2),
                               round(max(run_seconds(budget, r, r["per_update_range"][1]) for r in repeats) / 60, 2)]
    # what regimes.py's plan and the report read back
    (tmp_path / "costs.json").write_text(json.dumps({"minutes_per_run": minutes, "minutes_range_per_run": ranges}))
    costs = regimes.read_costs(tmp_path / "costs.json")
    assert regimes.minutes_per_run(costs, "frozen", "n100", "stock", "RTE") == minutes["RTE/frozen/n100/stock"]
    assert costs["ranges"]["RTE/frozen/n100/stock"] == ranges["RTE/frozen/n100/stock"]
