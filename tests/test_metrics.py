"""fairseq_hire.metrics, the one implementation of each GLUE metric: equal to scikit-learn and
scipy, and giving the criterion, the evaluation and the comparison the same figures on the
same predictions."""
import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats
from sklearn.metrics import f1_score, matthews_corrcoef

from fairseq_hire import metrics
from fairseq_hire.compare.report import summarise
from test_criterion import validate  # fairseq's validation loop

pytestmark = pytest.mark.unit


def validation_logs(pred, targ, sizes, regression=False, positive=-1, num_classes=2):
    """The criterion's logging outputs of validation batches of these sizes."""
    logs, start = [], 0
    for size in sizes:
        p, t = pred[start:start + size], targ[start:start + size]
        start += size
        log = {"loss": torch.tensor(1.0), "ntokens": 10 * size, "nsentences": size, "sample_size": size,
               "pred": p.tolist(), "targ": t.tolist(), "regression": regression, "positive_class": positive}
        if not regression:
            log.update(ncorrect=int((p == t).sum()), num_classes=num_classes)
        logs.append(log)
    return logs


def test_each_metric_is_scikit_learns_and_scipys_bit_for_bit():
    rng = np.random.default_rng(0)
    for trial in range(300):
        n, classes = int(rng.integers(1, 80)), int(rng.integers(2, 5))
        targ = rng.integers(0, classes, n) if trial % 11 else np.full(n, 1)
        pred = rng.integers(0, classes, n) if trial % 5 else np.full(n, int(rng.integers(0, classes)))
        assert metrics.mcc(pred, targ) == matthews_corrcoef(targ, pred)
        assert metrics.macro_f1(pred, targ) == f1_score(targ, pred, average="macro", zero_division=0.0)
        assert metrics.f1(pred, targ, 1) == f1_score(targ == 1, pred == 1, zero_division=0.0)
        recorded = metrics.glue_metrics(pred, targ, False, 1)
        assert recorded["mcc"] == round(100.0 * matthews_corrcoef(targ, pred), metrics.METRIC_DIGITS)
        assert recorded["accuracy"] == round(100.0 * (pred == targ).mean(), metrics.METRIC_DIGITS)
    for trial in range(100):
        n = int(rng.integers(3, 200))
        targ = rng.random(n)
        pred = np.round(targ + rng.normal(0, 0.5, n), 1)  # ties, as scores often have
        assert metrics.pearson(pred, targ) == scipy_stats.pearsonr(pred, targ)[0]
        assert metrics.spearman(pred, targ) == pytest.approx(scipy_stats.spearmanr(pred, targ)[0], abs=1e-14)
        assert metrics.glue_metrics(pred, targ, True)["spearman"] == round(
            100.0 * scipy_stats.spearmanr(pred, targ)[0], metrics.METRIC_DIGITS)


def test_metrics_over_leading_axes_score_each_row_as_alone():
    """The comparison's bootstrap scores runs x resampled dev sets in one call."""
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 3, 300)
    predictions = np.where(rng.random((4, 300)) < 0.6, targets, rng.integers(0, 3, (4, 300)))
    for run in range(4):
        assert 100 * metrics.mcc(predictions, targets)[run] == pytest.approx(
            100 * matthews_corrcoef(targets, predictions[run]))
        assert metrics.metric_function("macro_f1", False)(predictions, targets)[run] == pytest.approx(
            100 * f1_score(targets, predictions[run], average="macro"))
        binary_t, binary_p = targets % 2, predictions[run] % 2
        assert 100 * metrics.f1(binary_p, binary_t, 1) == pytest.approx(100 * f1_score(binary_t, binary_p))
        for name in metrics.metric_names(False, 1):
            metric = metrics.metric_function(name, False, 1)
            assert metric(predictions % 2, targets % 2)[run] == metric(predictions[run] % 2, targets % 2)
    x = rng.random(200)
    y = x + rng.random((3, 200))
    assert 100 * metrics.pearson(y, x)[2] == pytest.approx(100 * scipy_stats.pearsonr(y[2], x)[0])
    assert 100 * metrics.spearman(y, x)[2] == pytest.approx(100 * scipy_stats.spearmanr(y[2], x)[0])
    for name in metrics.metric_names(True):
        assert metrics.metric_function(name, True)(y, x)[2] == metrics.metric_function(name, True)(y[2], x)


def binary_case():
    rng = np.random.default_rng(3)
    targ = (rng.random(203) < 0.7).astype(int)
    return np.where(rng.random(203) < 0.8, targ, 1 - targ), targ, False, 0, 2


def three_class_case():
    rng = np.random.default_rng(4)
    targ = rng.integers(0, 3, 150)
    return np.where(rng.random(150) < 0.6, targ, rng.integers(0, 3, 150)), targ, False, -1, 3


def regression_case():
    rng = np.random.default_rng(5)
    targ = rng.random(150)
    return targ + rng.normal(0, 0.2, 150), targ, True, -1, 1


@pytest.mark.parametrize("case", [binary_case, three_class_case, regression_case])
def test_the_criterion_the_evaluation_and_the_comparison_agree_exactly(case):
    """One set of predictions, split into batches and two workers for the criterion; recorded as
    a run file's scores (evaluation) and summarised as the comparison does: every metric and
    every constant baseline is the same float everywhere."""
    pred, targ, regression, positive, num_classes = case()
    logs = validation_logs(pred, targ, [16, 48, 64, len(pred) - 128], regression, positive, num_classes)
    criterion = validate([logs[:2], logs[2:]])
    evaluation = metrics.glue_metrics(pred, targ, regression, positive)
    names = metrics.metric_names(regression, positive)
    assert sorted(evaluation) == sorted(names)
    for name in names:
        comparison = metrics.rounded(metrics.metric_function(name, regression, positive)(pred, targ))
        assert criterion[name] == evaluation[name] == comparison, name
        run = {"task": "T", "recipe": {"train_flags": []}, "targets": targ.tolist(), "head": "stock", "seed": 1,
               "metric": name, "regression": regression, "label_names": [str(k) for k in range(num_classes)],
               "positive_class": positive, "predictions": pred.tolist(), "metrics": evaluation,
               "train_seconds": 60.0, "layer_weights": None, "file": "stock-seed1.json"}
        constant = metrics.rounded(summarise([run])["constant_score"])
        if regression:
            assert constant == 0.0 and f"constant_{name}" not in criterion
        else:
            assert criterion[f"constant_{name}"] == metrics.constant_baseline(targ, positive, num_classes)[name] \
                == constant, name


def test_validation_accuracy_is_the_whole_sets_not_an_average_of_batch_accuracies():
    """279 of 384 right in batches of 31, 24 and 329: averaging the batches' rounded-off
    percentages logged 72.6563, where the evaluation and the comparison record 72.6562."""
    pred, targ = np.zeros(384, int), np.zeros(384, int)
    wrong = np.concatenate([np.arange(25, 31), np.arange(31 + 15, 55), np.arange(55 + 239, 384)])
    pred[wrong] = 1
    assert (pred == targ).sum() == 279
    logs = validation_logs(pred, targ, [31, 24, 329])
    assert [log["ncorrect"] for log in logs] == [25, 15, 239]
    assert validate([[log] for log in logs])["accuracy"] == metrics.glue_metrics(pred, targ, False)["accuracy"] \
        == 72.6562
    training = [{key: value for key, value in log.items() if key not in ("pred", "targ")} for log in logs]
    assert validate([[log] for log in training])["accuracy"] == pytest.approx(72.656, abs=1e-3)
