"""The regimes study's recommendation per regime (benchmarks/regime_report.py): which tasks it
ranks (those where some head beat the best constant prediction), which heads it may name (those
that learned, within the detectable-difference band of the best), and how it prices them (each
regime's measured minutes per run in costs.json), stating each recommended head's cost frozen and
fine-tuned, also where the tasks disagree and each gets its own head."""
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from fairseq_hire.compare import statistics as st

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import regime_report  # noqa: E402
import regime_tables  # noqa: E402

pytestmark = pytest.mark.unit

HEADS = ["stock", "hire", "stock-mean-pool"]


def summary_of(means, constant, sd=0.5, n=5):
    """A point's summary as the recommendation reads it: each head's mean, sd, seeds, the 95%
    t-interval of its mean and its failed runs (at or below the constant), of n evenly spread
    scores with exactly that mean and sd."""
    half = stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n)
    spread = np.linspace(-1, 1, n)
    spread = spread / spread.std(ddof=1)
    return {"constant_score": constant, "heads": {
        h: {"mean": m, "sd": sd, "n": n, "mean_interval": [m - half, m + half],
            "failed": int(np.sum(m + sd * spread <= constant))} for h, m in means.items()}}


def test_tasks_at_chance_are_left_out_and_disagreeing_tasks_get_each_their_own_head():
    """A task where no head beats the best constant prediction ranks noise: left out, said so.
    Tasks whose bands share no head: no single recommendation, each task's own cheapest head."""
    def result(task, means, constant):
        return {"task": task, "regime": "frozen", "size": "n1000", "complete": True,
                "summary": summary_of(means, constant)}

    costs = {"measured": "test", "ranges": {}, "minutes": {"frozen/n1000/stock": 1.0, "frozen/n1000/hire": 4.0,
                                                           "frozen/n1000/stock-mean-pool": 1.0}}  # as read_costs gives
    learns = result("SST-2", {"stock": 70.0, "hire": 75.0, "stock-mean-pool": 78.0}, 50.9)
    prefers_stock = result("MRPC", {"stock": 80.0, "hire": 74.0, "stock-mean-pool": 74.0}, 74.8)
    chance = result("RTE", {"stock": 50.0, "hire": 52.0, "stock-mean-pool": 48.0}, 52.7)
    found = regime_report.recommendations([learns, chance], costs, HEADS)["frozen-n1000"]
    assert found["at_chance"] == ["RTE"] and found["head"] == "stock-mean-pool" and found["best"] == {"SST-2": "stock-mean-pool"}
    line = regime_tables.recommendation_line("frozen-n1000", found, "minutes")
    assert line.startswith("- **frozen, n1000** on SST-2; left out: RTE, where no head beats the best constant "
                           "prediction: **stock-mean-pool**")
    split = regime_report.recommendations([learns, prefers_stock, chance], costs, HEADS)["frozen-n1000"]
    assert split["head"] is None and split["per_task"] == {"SST-2": "stock-mean-pool", "MRPC": "stock"}
    assert "each task's cheapest head within its band: SST-2 **stock-mean-pool**, MRPC **stock**" in \
        regime_tables.recommendation_line("frozen-n1000", split, "minutes")
    headline = regime_tables.headline([], [], {"frozen-n1000": split, "frozen-n100": {"tasks": [], "in_progress": ["RTE"]}})
    assert "Recommended head so far: frozen, 1,000 rows: per task, SST-2 **stock-mean-pool**, MRPC **stock**. " \
        "No recommendation yet for frozen, 100 rows (points in progress)." in headline
    nothing = regime_report.recommendations([chance], costs, HEADS)["frozen-n1000"]
    assert nothing["head"] is None and "no recommendation: no head learned; left out: RTE" in \
        regime_tables.recommendation_line("frozen-n1000", nothing, "minutes")
    # every task complete and no head learned: not "yet", said as settled
    settled = regime_tables.headline([], [], {"frozen-n1000": nothing})
    assert "No recommendation in frozen, 1,000 rows: no head that learned and has a measured cost." in settled
    assert "yet" not in settled.rstrip().split("\n")[-1]  # the recommendation paragraph


def test_regime_costs_rank_two_heads_only_where_their_measured_spreads_do_not_overlap():
    costs_less = regime_report.costs_less
    minutes = {"RTE/frozen/n100/stock": 2.0, "RTE/frozen/n100/scalar-mix": 2.1, "RTE/frozen/n100/hire": 6.0,
               "MRPC/frozen/n100/stock": 1.0, "MRPC/frozen/n100/scalar-mix": 1.0, "MRPC/frozen/n100/hire": 3.0,
               "RTE/frozen/n100/last4-mean": 2.0}
    ranges = {"RTE/frozen/n100/stock": [1.8, 2.3], "RTE/frozen/n100/scalar-mix": [1.9, 2.4],
              "RTE/frozen/n100/hire": [5.5, 6.6]}
    costs = {"minutes": minutes, "ranges": ranges}
    found = regime_report.regime_costs(costs, "frozen", "n100", ["stock", "scalar-mix", "hire", "last4-mean"], ["RTE", "MRPC"])
    assert "last4-mean" not in found  # not measured on MRPC: no cost, never a guess
    assert found["hire"]["ratio"] == pytest.approx((6.0 / 2.0 + 3.0 / 1.0) / 2)
    assert found["hire"]["ranges"] == {"RTE": [5.5, 6.6], "MRPC": [3.0, 3.0]}  # MRPC: no spread measured
    # a regime-wide measurement brings its own range, as its minutes
    wide = {"minutes": {"frozen/n100/stock": 2.0, "frozen/n100/hire": 6.0},
            "ranges": {"frozen/n100/stock": [1.9, 2.2], "frozen/n100/hire": [5.0, 7.0]}}
    assert regime_report.regime_costs(wide, "frozen", "n100", ["hire"], ["RTE"])["hire"]["ranges"] == {"RTE": [5.0, 7.0]}
    assert costs_less(found["stock"], found["hire"]) and not costs_less(found["hire"], found["stock"])
    # 2.1 against 2.0 minutes, within each other's spread: a tie, whichever way
    assert not costs_less(found["stock"], found["scalar-mix"]) and not costs_less(found["scalar-mix"], found["stock"])


def test_a_head_that_does_not_beat_the_best_constant_prediction_is_not_recommended():
    """MRPC frozen on 1,000 rows (the study's files): the stock head's mean (74.7, 2 of 5 seeds
    failed) is below the best constant prediction (74.8), yet its wide seed spread put it in the
    band of the best head, and it cost least: it was recommended. A head that learned nothing on
    a task is not recommended there, and is named."""
    costs = {"measured": "test", "ranges": {}, "minutes": {"frozen/n1000/stock": 1.0, "frozen/n1000/hire": 4.0,
                                                           "frozen/n1000/stock-mean-pool": 1.2}}
    summary = summary_of({"stock": 74.7, "hire": 76.2, "stock-mean-pool": 76.1}, 74.8, sd=1.0)
    mrpc = {"task": "MRPC", "regime": "frozen", "size": "n1000", "complete": True, "summary": summary}
    found = regime_report.recommendations([mrpc], costs, HEADS)["frozen-n1000"]
    assert found["head"] == "stock-mean-pool" and found["within_band"] == ["hire", "stock-mean-pool"]
    assert found["below_constant"] == {"stock": ["MRPC"]}
    line = regime_tables.recommendation_line("frozen-n1000", found, "minutes")
    assert "**stock-mean-pool**" in line and "**stock**" not in line
    assert "; stock does not beat the best constant prediction on MRPC, so not recommended" in line
    # two tasks whose bands share only a head that learned nothing on one of them: each task's own head
    sst2 = {**mrpc, "task": "SST-2", "summary": summary_of({"stock": 80.0, "hire": 74.0, "stock-mean-pool": 74.0}, 50.9)}
    split = regime_report.recommendations([sst2, mrpc], costs, HEADS)["frozen-n1000"]
    assert split["head"] is None and split["per_task"] == {"SST-2": "stock", "MRPC": "stock-mean-pool"}
    assert ("no head is within the detectable-difference band of the best (SST-2 stock, MRPC hire) on every task and "
            "beats the best constant prediction on each; each task's cheapest head within its band: SST-2 **stock**, "
            "MRPC **stock-mean-pool**; stock does not beat the best constant prediction on MRPC, so not recommended.") \
        in regime_tables.recommendation_line("frozen-n1000", split, "minutes")


def test_a_mean_above_the_constant_from_one_lucky_seed_is_not_a_head_that_learned():
    """MRPC frozen on 100 rows (the study's files): four seeds of every head at the constant
    prediction 74.8, one at 75.2-75.6. The means (74.9-75.0) sat above the constant, so the task was
    ranked and the stock head recommended: noise. Only a head whose mean's 95% interval lies above
    the constant has learned; here none has, the task is left out and nothing is recommended."""
    from fairseq_hire.compare.statistics import mean_interval

    constant, lucky = 74.8025, {"stock": 75.5037, "hire": 75.6, "scalar-mix": 75.3}
    heads = {h: [constant] * 4 + [score] for h, score in lucky.items()}
    summary = {"constant_score": constant, "heads": {
        h: {"mean": float(np.mean(s)), "sd": float(np.std(s, ddof=1)), "n": 5, "mean_interval": list(mean_interval(s)),
            "failed": sum(x <= constant for x in s)} for h, s in heads.items()}}
    assert all(d["mean"] > constant for d in summary["heads"].values())  # what the old rule counted as learning
    costs = {"measured": "test", "ranges": {}, "minutes": {f"frozen/n100/{h}": 1.0 for h in heads}}
    found = regime_report.recommendations(
        [{"task": "MRPC", "regime": "frozen", "size": "n100", "complete": True, "summary": summary}], costs, list(heads))
    assert found["frozen-n100"]["at_chance"] == ["MRPC"] and found["frozen-n100"]["head"] is None
    # one seed above the rest is not enough, five clearly above it are
    summary["heads"]["hire"]["mean_interval"] = list(mean_interval([75.6, 75.9, 76.2, 75.8, 76.0]))
    assert regime_report.beats_constant(summary, "hire") and not regime_report.beats_constant(summary, "stock")


def test_a_regime_cost_is_ranked_by_its_mean_over_tasks_not_by_its_most_variable_task():
    """The study's fine-tuned full-set measurements (costs.json): RTE's spreads overlap (its
    batches' lengths vary), MRPC's do not, and HIRE costs 1.5x the stock head over the two. The
    rule that needed separate spreads on every task called the two heads' costs a tie, and the
    report said stock's cost "ties with hire"."""
    minutes = {"RTE/finetuned/full/stock": 20.15, "RTE/finetuned/full/hire": 28.32,
               "RTE/finetuned/full/scalar-mix": 20.96, "MRPC/finetuned/full/stock": 14.56,
               "MRPC/finetuned/full/hire": 24.89, "MRPC/finetuned/full/scalar-mix": 15.25}
    ranges = {"RTE/finetuned/full/stock": [12.78, 25.19], "RTE/finetuned/full/hire": [20.9, 35.06],
              "RTE/finetuned/full/scalar-mix": [13.66, 27.52], "MRPC/finetuned/full/stock": [13.64, 16.77],
              "MRPC/finetuned/full/hire": [23.57, 26.87], "MRPC/finetuned/full/scalar-mix": [14.06, 17.24]}
    found = regime_report.regime_costs({"minutes": minutes, "ranges": ranges}, "finetuned", "full",
                                       ["stock", "hire", "scalar-mix"], ["RTE", "MRPC"])
    assert found["hire"]["ratio_range"] == pytest.approx([(20.9 / 20.15 + 23.57 / 14.56) / 2,
                                                          (35.06 / 20.15 + 26.87 / 14.56) / 2])
    assert regime_report.costs_less(found["stock"], found["hire"])
    assert not regime_report.costs_less(found["hire"], found["stock"])
    # scalar-mix costs what the stock head does, within either's spread: still a tie
    assert not regime_report.costs_less(found["stock"], found["scalar-mix"])
    assert not regime_report.costs_less(found["scalar-mix"], found["stock"])
    summary = summary_of({"stock": 81.6, "hire": 82.0, "scalar-mix": 81.9}, 74.8, sd=1.0)
    point = {"task": "MRPC", "regime": "finetuned", "size": "full", "complete": True, "summary": summary}
    chosen = regime_report.recommendations([point, {**point, "task": "RTE"}], {"minutes": minutes, "ranges": ranges},
                                           ["stock", "hire", "scalar-mix"])["finetuned-full"]
    assert chosen["head"] == "stock" and chosen["tied"] == ["scalar-mix"]


def test_a_head_predicting_the_majority_class_on_every_seed_does_not_beat_the_constant():
    """RTE's dev split: 146 of 277 rows entailment, so the best constant prediction scores
    52.70758..%; a run's score is recorded to 4 digits, 52.7076, above it. A head that predicts
    entailment on every seed (frozen, 100 rows) has the interval [52.7076, 52.7076]: it learned
    nothing, yet counted as beating the constant, so the task was ranked and the head could be
    recommended. The report's own `failed` count holds the scores against the rounded constant."""
    constant = 100 * 146 / 277
    scores = [52.7076] * 5
    # the report's count of runs at or below the constant, rounded as the scores are: all five
    at_chance = {"mean": 52.7076, "sd": 0.0, "n": 5, "mean_interval": list(st.mean_interval(scores)), "failed": 5}
    below = {"mean": 49.5, "sd": 0.4, "n": 5, "mean_interval": [49.0, 50.0], "failed": 5}
    summary = {"constant_score": constant, "heads": {"stock": below, "hire": at_chance, "stock-mean-pool": below}}
    point = {"task": "RTE", "regime": "frozen", "size": "n100", "complete": True, "summary": summary}
    costs = {"measured": "test", "ranges": {},
             "minutes": {f"frozen/n100/{h}": 1.0 for h in ("stock", "hire", "stock-mean-pool")}}
    assert not regime_report.beats_constant(summary, "hire")
    found = regime_report.recommendations([point], costs, ["stock", "hire", "stock-mean-pool"])["frozen-n100"]
    assert found["at_chance"] == ["RTE"] and found["head"] is None


# minutes per run: stock-mean-pool costs 1.20x the stock head frozen and 1.05x fine-tuned
COSTS = {"measured": "test", "ranges": {}, "minutes": {
    "frozen/n1000/stock": 1.0, "frozen/n1000/hire": 4.0, "frozen/n1000/stock-mean-pool": 1.2,
    "finetuned/n1000/stock": 10.0, "finetuned/n1000/hire": 16.0, "finetuned/n1000/stock-mean-pool": 10.5}}


def complete_point(task, means, constant, sd=0.5, n=5):
    return {"task": task, "regime": "frozen", "size": "n1000", "complete": True,
            "summary": summary_of(means, constant, sd, n)}


SST2 = complete_point("SST-2", {"stock": 70.0, "hire": 75.0, "stock-mean-pool": 78.0}, 50.9)
MRPC = complete_point("MRPC", {"stock": 80.0, "hire": 74.0, "stock-mean-pool": 74.0}, 74.8)


def test_each_tasks_own_head_is_given_with_its_measured_cost_frozen_and_fine_tuned():
    split = regime_report.recommendations([SST2, MRPC], COSTS, HEADS)["frozen-n1000"]
    assert split["per_task"] == {"SST-2": "stock-mean-pool", "MRPC": "stock"}
    assert split["per_task_costs"] == {
        "SST-2": {"frozen": {"ratio": pytest.approx(1.2), "minutes": 1.2},
                  "finetuned": {"ratio": pytest.approx(1.05), "minutes": 10.5}},
        "MRPC": {"frozen": {"ratio": 1.0, "minutes": 1.0}, "finetuned": {"ratio": 1.0, "minutes": 10.0}}}
    line = regime_tables.recommendation_line("frozen-n1000", split, "minutes")
    assert ("Their cost in minutes per run, and its ratio to the stock head's: SST-2 stock-mean-pool frozen 1.2 min "
            "a run (1.20x), fine-tuned 10.5 min a run (1.05x); MRPC stock frozen 1.0 min a run (1.00x), fine-tuned "
            "10.0 min a run (1.00x).") in line


def test_the_readme_headline_gives_each_recommended_heads_measured_cost_in_both_regimes():
    single = regime_report.recommendations([SST2], COSTS, HEADS)["frozen-n1000"]
    assert single["head"] == "stock-mean-pool"
    text = regime_tables.headline([], [], {"frozen-n1000": single})
    assert ("Recommended head so far: frozen, 1,000 rows: **stock-mean-pool** (SST-2). Measured cost, minutes per run "
            "and their ratio to the stock head's (costs.json): frozen, 1,000 rows: stock-mean-pool frozen 1.2 min a run "
            "(1.20x), fine-tuned 10.5 min a run (1.05x).") in text
    split = regime_report.recommendations([SST2, MRPC], COSTS, HEADS)["frozen-n1000"]
    text = regime_tables.headline([], [], {"frozen-n1000": split})
    assert ("frozen, 1,000 rows: SST-2 stock-mean-pool frozen 1.2 min a run (1.20x), fine-tuned 10.5 min a run "
            "(1.05x); MRPC stock frozen 1.0 min a run (1.00x), fine-tuned 10.0 min a run (1.00x).") in text
    # a regime whose head has no measurement in the other regime says so, never a guess
    frozen_only = {"measured": "test", "ranges": {}, "minutes": {
        k: v for k, v in COSTS["minutes"].items() if k.startswith("frozen/")}}
    single = regime_report.recommendations([SST2], frozen_only, HEADS)["frozen-n1000"]
    assert "stock-mean-pool frozen 1.2 min a run (1.20x), fine-tuned not measured." in regime_tables.headline([], [], {"frozen-n1000": single})


def test_a_head_every_seed_of_which_beats_the_constant_has_learned_though_its_interval_reaches_it():
    """MRPC frozen on the full set (the study's files): every one of hire-no-fusion's 5 seeds
    scored above the constant 74.80 (lowest 75.48), the table said 0 failed, and yet the report
    said it "does not beat the best constant prediction": the t-interval of its mean reached down
    to 74.71. Five of five above it is a sign test at p = 1/32: it learned."""
    from fairseq_hire.compare.statistics import mean_interval

    constant, scores = 74.80253018237863, [75.7785, 78.4413, 75.9986, 75.5502, 75.4795]
    assert mean_interval(scores)[0] < constant
    data = {"mean": float(np.mean(scores)), "sd": float(np.std(scores, ddof=1)), "n": 5,
            "mean_interval": list(mean_interval(scores)), "failed": 0}
    summary = {"constant_score": constant, "heads": {"hire-no-fusion": data}}
    assert regime_report.beats_constant(summary, "hire-no-fusion")
    data["failed"] = 1  # one seed at the constant: the interval alone decides, and it reaches the constant
    assert not regime_report.beats_constant(summary, "hire-no-fusion")


def test_heads_tied_with_the_best_are_within_its_band_even_without_seed_spread():
    """Two heads scoring the same on every seed have no band (no spread to estimate), and the
    tied one was left out, so the recommendation followed the order the heads were listed in."""
    costs = {"measured": "test", "ranges": {}, "minutes": {"frozen/n1000/stock": 4.0, "frozen/n1000/hire": 1.0}}
    point = complete_point("RTE", {"stock": 80.0, "hire": 80.0}, 52.7, sd=0.0)
    for order in (["stock", "hire"], ["hire", "stock"]):
        found = regime_report.recommendations([point], costs, order)["frozen-n1000"]
        assert found["head"] == "hire" and sorted(found["within_band"]) == ["hire", "stock"]


def test_a_head_every_run_of_which_failed_is_named_and_not_a_candidate():
    """A head with no scored run (every try failed) has no mean: ranking it crashed the report."""
    point = complete_point("RTE", {"stock": 60.0, "stock-mean-pool": 61.0}, 52.7)
    point["summary"]["heads"]["hire"] = {"mean": None, "sd": None, "n": 0, "mean_interval": None, "failed": 5}
    found = regime_report.recommendations([point], COSTS, HEADS)["frozen-n1000"]
    assert found["failed"] == {"hire": ["RTE"]} and found["head"] in ("stock", "stock-mean-pool")
    assert "; every run of hire failed on RTE, so not recommended" in \
        regime_tables.recommendation_line("frozen-n1000", found, "minutes")
