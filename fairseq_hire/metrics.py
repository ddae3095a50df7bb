"""The official GLUE metrics (scikit-learn / scipy), in percent, shared by the criterion,
the evaluation script and the benchmarks.

    classification: accuracy, mcc (Matthews, CoLA), macro_f1 (the mean of every class's F1),
                    and with a positive class (binary tasks: "1" for MRPC, QQP, or a user task's
                    positive label) f1 and acc_and_f1
    regression:     pearson, spearman, pearson_and_spearman (STS-B)
"""
import warnings

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

METRIC_DIGITS = 4


def percent(value: float) -> float:
    return round(100.0 * float(value), METRIC_DIGITS)


def classification_metrics(pred: np.ndarray, targ: np.ndarray, positive: int) -> dict:
    """Official GLUE classification metrics, in percent. `positive` < 0: no F1."""
    accuracy = (pred == targ).mean()
    scores = {"accuracy": percent(accuracy), "mcc": percent(matthews_corrcoef(targ, pred)),
              "macro_f1": percent(f1_score(targ, pred, average="macro", zero_division=0.0))}
    if positive >= 0:
        f1 = f1_score(targ == positive, pred == positive, zero_division=0.0)
        scores["f1"] = percent(f1)
        scores["acc_and_f1"] = percent((accuracy + f1) / 2)  # of the exact values, not the rounded ones
    return scores


def regression_metrics(pred: np.ndarray, targ: np.ndarray) -> dict:
    """Pearson and Spearman correlations (STS-B), in percent; NaN below two examples or
    for a constant prediction."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if len(pred) < 2:
            pearson = spearman = float("nan")
        else:
            pearson, spearman = pearsonr(pred, targ)[0], spearmanr(pred, targ)[0]
    scores = {"pearson": percent(pearson), "spearman": percent(spearman),
              "pearson_and_spearman": percent((pearson + spearman) / 2)}
    return scores


def glue_metrics(pred: np.ndarray, targ: np.ndarray, regression: bool, positive: int = -1) -> dict:
    if regression:
        return regression_metrics(pred.astype(np.float64), targ.astype(np.float64))
    return classification_metrics(pred, targ, positive)


def positive_class(label_names, positive_label: str = "1") -> int:
    """Class index whose F1 GLUE reports: `positive_label` of a binary task, else -1 (no F1).
    Class indices follow fairseq's frequency-ordered label dictionary, so MRPC's "1" is 0."""
    labels = list(label_names)
    return labels.index(positive_label) if len(labels) == 2 and positive_label in labels else -1
