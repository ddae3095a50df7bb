"""The official GLUE metrics, in percent: the one implementation that the criterion, the
evaluation, the comparison (its scores, bootstrap and constant baseline) and the benchmarks call.

    classification: accuracy, mcc (Matthews, CoLA), macro_f1 (the mean F1 of the classes that
                    occur), and with a positive class (binary tasks: "1" for MRPC, QQP, or a user
                    task's positive label) f1 and acc_and_f1
    regression:     pearson, spearman, pearson_and_spearman (STS-B)

Every metric is computed over the last axis, so that the comparison's bootstrap scores many
resampled dev sets of many runs in one call. The classification metrics are scikit-learn's
formulas on the confusion counts, giving the exact floats scikit-learn gives on one set (its
functions take one set per call; tests/test_metrics.py holds them equal bit for bit); the
correlations are scipy's pearsonr (over an axis), Spearman's being Pearson's of the ranks.
"""
import warnings
from typing import Callable, Dict, List

import numpy as np
from scipy.stats import pearsonr, rankdata

METRIC_DIGITS = 4


def rounded(score: float) -> float:
    """A score as logged and recorded: percent to METRIC_DIGITS."""
    return round(float(score), METRIC_DIGITS)


def class_counts(pred: np.ndarray, targ: np.ndarray):
    """Per class (last axis): true positives, predictions and targets of that class."""
    num_classes = 1 + int(max(np.max(pred, initial=0), np.max(targ, initial=0)))
    classes = np.arange(num_classes)
    predicted = pred[..., None] == classes  # ... x examples x classes
    true = targ[..., None] == classes
    return (predicted & true).sum(-2), predicted.sum(-2), true.sum(-2)


def accuracy(pred: np.ndarray, targ: np.ndarray) -> np.ndarray:
    return (pred == targ).mean(axis=-1)


def f1(pred: np.ndarray, targ: np.ndarray, positive: int) -> np.ndarray:
    """F1 of the positive class (scikit-learn's f1_score, zero_division=0)."""
    predicted, true = pred == positive, targ == positive
    return f1_of_counts((predicted & true).sum(-1), predicted.sum(-1), true.sum(-1))


def f1_of_counts(tp, predicted, true) -> np.ndarray:
    denominator = (true + predicted).astype(np.float64)
    return np.divide(2.0 * tp, denominator, out=np.zeros_like(denominator), where=denominator > 0)


def macro_f1(pred: np.ndarray, targ: np.ndarray) -> np.ndarray:
    """The mean F1 of the classes among the targets or predictions (scikit-learn's
    average="macro", zero_division=0)."""
    tp, predicted, true = class_counts(pred, targ)
    present = (predicted + true) > 0
    return np.where(present, f1_of_counts(tp, predicted, true), 0.0).sum(-1) / present.sum(-1)


def mcc(pred: np.ndarray, targ: np.ndarray) -> np.ndarray:
    """Matthews correlation, multi-class (Gorodkin's R_K; scikit-learn's matthews_corrcoef,
    0 where undefined)."""
    tp, predicted, true = class_counts(pred, targ)
    predicted, true = predicted.astype(np.float64), true.astype(np.float64)
    n = predicted.sum(-1)
    covariance = tp.sum(-1).astype(np.float64) * n - (true * predicted).sum(-1)
    variances = (n ** 2 - (predicted * predicted).sum(-1)) * (n ** 2 - (true * true).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(variances != 0, covariance / np.sqrt(variances), 0.0)


def pearson(pred: np.ndarray, targ: np.ndarray) -> np.ndarray:
    """Pearson's r; NaN below two examples or for a constant prediction."""
    pred, targ = np.broadcast_arrays(np.asarray(pred, np.float64), np.asarray(targ, np.float64))
    if pred.shape[-1] < 2:
        return np.full(pred.shape[:-1], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant input: NaN, as it has no correlation
        return pearsonr(pred, targ, axis=-1).statistic


def spearman(pred: np.ndarray, targ: np.ndarray) -> np.ndarray:
    return pearson(rankdata(pred, axis=-1), rankdata(targ, axis=-1))


FRACTIONS = {
    "accuracy": lambda p, t, positive: accuracy(p, t),
    "mcc": lambda p, t, positive: mcc(p, t),
    "macro_f1": lambda p, t, positive: macro_f1(p, t),
    "f1": f1,
    "acc_and_f1": lambda p, t, positive: (accuracy(p, t) + f1(p, t, positive)) / 2,
    "pearson": lambda p, t, positive: pearson(p, t),
    "spearman": lambda p, t, positive: spearman(p, t),
    "pearson_and_spearman": lambda p, t, positive: (pearson(p, t) + spearman(p, t)) / 2,
}


def metric_names(regression: bool, positive: int = -1) -> List[str]:
    """The metrics a task reports: F1 only with a positive class."""
    if regression:
        return ["pearson", "spearman", "pearson_and_spearman"]
    return ["accuracy", "mcc", "macro_f1"] + (["f1", "acc_and_f1"] if positive >= 0 else [])


def metric_function(name: str, regression: bool, positive: int = -1) -> Callable:
    """f(pred, targ) -> the metric in percent, unrounded, over the last axis."""
    names = metric_names(regression, positive)
    if name not in names:
        raise ValueError(f"no metric {name!r} for a {'regression' if regression else 'classification'} "
                         f"task; expected one of {', '.join(names)}")
    dtype = np.float64 if regression else None
    return lambda pred, targ: 100.0 * FRACTIONS[name](np.asarray(pred, dtype), np.asarray(targ, dtype), positive)


def glue_metrics(pred: np.ndarray, targ: np.ndarray, regression: bool, positive: int = -1) -> Dict[str, float]:
    """Every metric of the task on one set of predictions, rounded as logged and recorded."""
    return {name: rounded(metric_function(name, regression, positive)(pred, targ))
            for name in metric_names(regression, positive)}


def constant_score(targets: np.ndarray, name: str, regression: bool, positive: int, num_classes: int) -> float:
    """The best score a constant prediction reaches on these targets (the majority class, or
    the class that maximises e.g. F1; a constant has no correlation: 0), unrounded. A run at or
    below it learned nothing."""
    if regression:
        return 0.0
    metric = metric_function(name, False, positive)
    targets = np.asarray(targets)
    return max(float(metric(np.full_like(targets, k), targets)) for k in range(num_classes))


def constant_baseline(targets: np.ndarray, positive: int, num_classes: int) -> Dict[str, float]:
    """Every classification metric of the best constant prediction, rounded as the metrics are
    (the figure beside every result: at or below it, a model learned nothing)."""
    return {name: rounded(constant_score(targets, name, False, positive, num_classes))
            for name in metric_names(False, positive)}


def positive_class(label_names, positive_label: str = "1") -> int:
    """Class index whose F1 GLUE reports: `positive_label` of a binary task, else -1 (no F1).
    Class indices follow fairseq's frequency-ordered label dictionary, so MRPC's "1" is 0."""
    labels = list(label_names)
    return labels.index(positive_label) if len(labels) == 2 and positive_label in labels else -1
