"""sentence_prediction_hire: same loss as fairseq's sentence_prediction, official GLUE
metrics over the whole validation set however it is split into batches and workers."""
import numpy as np
import pytest
import torch
from fairseq.criterions.sentence_prediction import SentencePredictionCriterion, SentencePredictionConfig
from fairseq.data import data_utils
from fairseq.logging import metrics
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

from fairseq_hire.criterions.sentence_prediction_hire import (
    SentencePredictionHireConfig,
    SentencePredictionHireCriterion,
)
from fairseq_setup import build_trainer, finetune_args, write_task_dicts

pytestmark = pytest.mark.unit  # the fast tier: make test-unit

HEAD = "sentence_classification_head"


def sample_batch(n, num_classes, regression=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    sentences = [torch.cat([torch.tensor([0]), torch.randint(4, 50000, (int(k),), generator=g), torch.tensor([2])])
                 for k in torch.randint(3, 20, (n,), generator=g)]
    tokens = data_utils.collate_tokens(sentences, pad_idx=1)
    target = torch.rand(n, 1, generator=g) if regression else torch.randint(0, num_classes, (n,), generator=g)
    return {"net_input": {"src_tokens": tokens, "src_lengths": torch.tensor([len(s) for s in sentences])},
            "target": target, "ntokens": int(tokens.ne(1).sum()), "nsentences": n, "id": torch.arange(n)}


def validate(logging_outputs_per_step):
    """fairseq's validation loop: a fresh root aggregator, one reduce per step."""
    with metrics.aggregate(new_root=True) as agg:
        for step_outputs in logging_outputs_per_step:
            with metrics.aggregate():
                SentencePredictionHireCriterion.reduce_metrics(step_outputs)
        return agg.get_smoothed_values()


@pytest.mark.parametrize("num_classes", [1, 3])
def test_loss_equals_fairseq_sentence_prediction(tmp_path, num_classes):
    labels = ("a", "b", "c") if num_classes == 3 else None
    data = write_task_dicts(tmp_path / "bin", labels=labels)
    trainer = build_trainer(finetune_args(data, num_classes=num_classes))
    model = trainer.model.eval()
    regression = num_classes == 1
    ours = SentencePredictionHireCriterion(SentencePredictionHireConfig(regression_target=regression), trainer.task)
    stock = SentencePredictionCriterion(SentencePredictionConfig(regression_target=regression), trainer.task)
    sample = sample_batch(12, num_classes, regression)
    with torch.no_grad():
        loss, size, log = ours(model, sample)
        stock_loss, stock_size, stock_log = stock(model, sample)
    assert torch.equal(loss, stock_loss) and size == stock_size
    assert log.get("ncorrect") == stock_log.get("ncorrect")
    assert len(log["pred"]) == 12 and len(log["layer_weights_sum"]) == 2


def classification_logs(pred, targ, positive, splits):
    return [{"loss": torch.tensor(1.0), "ntokens": 10 * len(p), "nsentences": len(p), "sample_size": len(p),
             "ncorrect": int((np.array(p) == np.array(t)).sum()), "pred": list(p), "targ": list(t),
             "regression": False, "positive_class": positive, "num_classes": 2}
            for p, t in zip(np.split(pred, splits), np.split(targ, splits))]


def test_the_best_constant_prediction_is_logged_beside_every_metric():
    """Imbalanced: 150 of class 1, 50 of class 0 (the positive class): always-1 has the best
    accuracy, always-0 the best F1."""
    targ = np.array([1] * 150 + [0] * 50)
    pred = np.where(np.arange(200) % 4 == 0, 1 - targ, targ)
    stats = validate([[log] for log in classification_logs(pred, targ, 0, [64, 128])])
    assert stats["constant_accuracy"] == 75.0 and stats["constant_mcc"] == 0.0
    assert stats["constant_f1"] == round(100 * f1_score(targ == 0, np.zeros(200) == 0), 4) == 40.0
    assert stats["constant_acc_and_f1"] == max(round(100 * (0.25 + 0.4) / 2, 4), round(100 * 0.75 / 2, 4))
    assert stats["constant_macro_f1"] == round(100 * f1_score(targ, np.ones(200), average="macro"), 4)


def test_classification_metrics_cover_the_whole_set_across_batches_and_workers():
    rng = np.random.default_rng(0)
    targ = rng.integers(0, 2, 203)
    pred = np.where(rng.random(203) < 0.8, targ, 1 - targ)
    positive = 0  # e.g. MRPC: label "1" is the most frequent, so it is class index 0
    expected = {"accuracy": 100 * (pred == targ).mean(),
                "f1": 100 * f1_score(targ == positive, pred == positive),
                "mcc": 100 * matthews_corrcoef(targ, pred)}
    logs = classification_logs(pred, targ, positive, [16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192])
    one_worker = validate([[log] for log in logs])
    # two workers: each step's logging outputs are gathered from both before reducing
    two_workers = validate([logs[i:i + 2] for i in range(0, len(logs), 2)])
    for stats in (one_worker, two_workers):
        for name, value in expected.items():
            assert stats[name] == pytest.approx(value, abs=1e-3), name
        assert stats["acc_and_f1"] == pytest.approx((expected["accuracy"] + expected["f1"]) / 2, abs=1e-3)
    # a per-batch average would differ from the whole-set score
    per_batch_f1 = np.mean([f1_score(np.array(l["targ"]) == 0, np.array(l["pred"]) == 0) for l in logs])
    assert abs(100 * per_batch_f1 - expected["f1"]) > 1e-3


def test_no_f1_without_a_positive_label():
    pred = np.array([0, 1, 2, 1]); targ = np.array([0, 1, 1, 1])
    stats = validate([classification_logs(pred, targ, -1, [])])
    assert "f1" not in stats and "mcc" in stats


def test_regression_metrics_over_the_whole_set():
    rng = np.random.default_rng(1)
    targ = rng.random(150); pred = targ + rng.normal(0, 0.2, 150)
    logs = [{"loss": torch.tensor(1.0), "ntokens": 100, "nsentences": len(p), "sample_size": len(p),
             "pred": list(p), "targ": list(t), "regression": True, "positive_class": -1}
            for p, t in zip(np.split(pred, [16, 32, 48, 100]), np.split(targ, [16, 32, 48, 100]))]
    stats = validate([[log] for log in logs])
    assert stats["pearson"] == pytest.approx(100 * pearsonr(pred, targ)[0], abs=1e-3)
    assert stats["spearman"] == pytest.approx(100 * spearmanr(pred, targ)[0], abs=1e-3)
    assert "accuracy" not in stats


def test_positive_class_follows_the_label_dictionary(tmp_path):
    data = write_task_dicts(tmp_path / "MRPC-bin", labels=("1", "0"))  # frequency order, as MRPC's
    trainer = build_trainer(finetune_args(data))
    criterion = SentencePredictionHireCriterion(SentencePredictionHireConfig(), trainer.task)
    assert criterion.positive_class == 0
    rte = write_task_dicts(tmp_path / "RTE-bin")
    criterion = SentencePredictionHireCriterion(SentencePredictionHireConfig(), build_trainer(finetune_args(rte)).task)
    assert criterion.positive_class == -1


def test_layer_weights_are_logged_as_the_mean_over_examples():
    logs = [{"loss": torch.tensor(1.0), "ntokens": 10, "nsentences": n, "sample_size": n, "ncorrect": 0,
             "pred": [0] * n, "targ": [1] * n, "regression": False, "positive_class": -1,
             "layer_weights_sum": [w * n for w in weights], "first_scored_layer": 1}
            for n, weights in ((4, [0.2, 0.8]), (12, [0.6, 0.4]))]
    stats = validate([[log] for log in logs])
    assert stats["alpha_1"] == pytest.approx((0.2 * 4 + 0.6 * 12) / 16, abs=1e-3)
    assert stats["alpha_2"] == pytest.approx((0.8 * 4 + 0.4 * 12) / 16, abs=1e-3)


@pytest.mark.parametrize("flag", ["--mha-reg-scale-factor", "--ffn-reg-scale-factor"])
def test_roberta_regularisers_are_added_as_in_fairseqs_criterion(tmp_path, flag):
    """fairseq's sentence_prediction adds RoBERTa's head / FFN regulariser when its scale factor
    is set; so does ours (it used to ignore the flags)."""
    data = write_task_dicts(tmp_path / "bin")
    trainer = build_trainer(finetune_args(data, extra=[flag, "0.01"]))
    model = trainer.model.eval()
    ours = SentencePredictionHireCriterion(SentencePredictionHireConfig(), trainer.task)
    stock = SentencePredictionCriterion(SentencePredictionConfig(), trainer.task)
    sample = sample_batch(8, 2)
    with torch.no_grad():
        loss, _, log = ours(model, sample)
        stock_loss, _, stock_log = stock(model, sample)
    name = flag[2:].replace("-scale-factor", "_loss").replace("-", "_")
    assert name in log and float(log[name]) > 0
    torch.testing.assert_close(loss, stock_loss)
