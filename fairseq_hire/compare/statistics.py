"""Statistics of a comparison: is a head's difference from the reference head real?

Three views of the same question, on the task's official metric:

* seed level: each run's dev score is one observation; Welch's t-test and the Mann-Whitney
  U test (scipy.stats) compare the two heads' scores over seeds;
* example level: a paired bootstrap over dev examples (scipy.stats.bootstrap, percentile
  interval): every replicate resamples the dev set once, scores every run of both heads on
  it and takes the difference of the heads' mean scores, so that the interval reflects the
  dev set's sampling noise, pooled across seeds;
* power: the smallest true difference that Welch's test at this number of seeds would have
  detected with 80% power (two-sided, alpha 0.05), from the observed standard deviations,
  via the noncentral t distribution (scipy.stats.nct). It measures the seed noise only (the
  bootstrap must exclude 0 as well), and with the degrees of freedom fixed from the observed
  standard deviations it is optimistic at few seeds (simulated with the true sds equal to the
  observed ones, 80% power needed a difference 14% larger at 3 seeds a side, 3% at 5).

A difference is called "detected" only when both the seed-level test (p < 0.05) and the
bootstrap interval (excluding 0) say so.

The metric is fairseq_hire.metrics' (the runs' own scores come from it too), applied to many
resampled dev sets at once over its leading axes.
"""
import math
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import numpy as np
from scipy import optimize, stats

ALPHA = 0.05
POWER = 0.8
BOOTSTRAP_RESAMPLES = 2000


def paired_bootstrap(predictions_a: np.ndarray, predictions_b: np.ndarray, targets: np.ndarray,
                     metric: Callable, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES):
    """95% interval of mean_s metric(a_s) - mean_s metric(b_s) over dev resamples.

    predictions_*: runs x examples (every run of one head, any number of seeds);
    targets: examples. Each replicate draws one resample of the examples for all runs."""
    def difference(index, axis=-1):
        index = np.asarray(index)  # examples, or resamples x examples
        resampled = targets[index]
        return (metric(predictions_a[:, index], resampled).mean(axis=0)
                - metric(predictions_b[:, index], resampled).mean(axis=0))

    examples = np.arange(len(targets))
    result = stats.bootstrap((examples,), difference, vectorized=True, paired=False, axis=-1,
                             n_resamples=resamples, batch=100, method="percentile",
                             confidence_level=1 - ALPHA, random_state=np.random.default_rng(seed))
    interval = result.confidence_interval
    return float(interval.low), float(interval.high)


def detectable_difference(sd_a: float, n_a: int, sd_b: float, n_b: int) -> Optional[float]:
    """The smallest true difference Welch's test detects with POWER at ALPHA (two-sided),
    for these standard deviations and numbers of seeds; None where the seed noise cannot be
    estimated (below two seeds a side, or every seed scoring the same)."""
    if n_a < 2 or n_b < 2:
        return None
    var_a, var_b = sd_a ** 2 / n_a, sd_b ** 2 / n_b
    se = math.sqrt(var_a + var_b)
    if se == 0:
        return None
    df = (var_a + var_b) ** 2 / (var_a ** 2 / (n_a - 1) + var_b ** 2 / (n_b - 1))
    critical = stats.t.ppf(1 - ALPHA / 2, df)

    def power_gap(delta):
        noncentrality = delta / se
        power = stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality)
        # scipy's nct returns NaN far in its tail, where the power is 1 to many digits
        return (power if np.isfinite(power) else 1.0) - POWER

    high = (critical + 3) * se  # power is above 80% long before this; widen if not (tiny df)
    while power_gap(high) < 0:
        high *= 2
    return float(optimize.brentq(power_gap, 1e-9 * se, high))


@dataclass
class Difference:
    difference: float  # mean over seeds, a - b
    bootstrap_low: float
    bootstrap_high: float
    welch_p: Optional[float]
    mannwhitney_p: Optional[float]
    detectable: Optional[float]
    detected: bool

    def verdict(self) -> str:
        if self.detected:
            return "detected"
        if self.welch_p is not None and self.welch_p < ALPHA:  # the seeds tell it, the dev set does not
            return (f"not detected; the seeds' test finds it (Welch p {self.welch_p:.3f}), but the bootstrap "
                    "interval over the dev examples includes 0: the dev set is too small to tell")
        if self.detectable is None:
            return ("not detected; the seed noise is unknown (fewer than 2 seeds on a side, or every seed "
                    "scoring the same)")
        return f"not detected; a difference of {self.detectable:.1f} or more would have been"

    def as_dict(self) -> Dict:
        return {**self.__dict__, "verdict": self.verdict()}


def compare_heads(scores_a, scores_b, predictions_a, predictions_b, targets, metric) -> Difference:
    """Head a against head b: scores_* are per-seed dev scores, predictions_* runs x examples."""
    scores_a, scores_b = np.asarray(scores_a, float), np.asarray(scores_b, float)
    low, high = paired_bootstrap(predictions_a, predictions_b, targets, metric)
    enough = len(scores_a) >= 2 and len(scores_b) >= 2
    constant = enough and np.ptp(scores_a) == 0 and np.ptp(scores_b) == 0
    welch = stats.ttest_ind(scores_a, scores_b, equal_var=False).pvalue if enough and not constant else None
    mannwhitney = stats.mannwhitneyu(scores_a, scores_b, alternative="two-sided").pvalue if enough else None
    detectable = detectable_difference(np.std(scores_a, ddof=1) if len(scores_a) > 1 else 0.0, len(scores_a),
                                       np.std(scores_b, ddof=1) if len(scores_b) > 1 else 0.0, len(scores_b))
    detected = welch is not None and welch < ALPHA and (low > 0 or high < 0)
    return Difference(float(scores_a.mean() - scores_b.mean()), low, high,
                      None if welch is None else float(welch),
                      None if mannwhitney is None else float(mannwhitney), detectable, bool(detected))


def mean_interval(scores) -> Optional[tuple]:
    """95% t-interval of the mean over seeds (None below two seeds)."""
    scores = np.asarray(scores, float)
    if len(scores) < 2:
        return None
    half = stats.t.ppf(1 - ALPHA / 2, len(scores) - 1) * scores.std(ddof=1) / math.sqrt(len(scores))
    return float(scores.mean() - half), float(scores.mean() + half)


def total_variation_from_mean(layer_weights: np.ndarray) -> np.ndarray:
    """Per example: half the L1 distance between its layer weights and their mean over the
    examples (0 = every example weighs the layers alike, as a scalar mix does)."""
    return 0.5 * np.abs(layer_weights - layer_weights.mean(axis=0, keepdims=True)).sum(axis=-1)
