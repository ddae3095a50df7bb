"""End to end, the way a user works: real RTE rows binarised by glue_prep with the real
GPT-2 BPE and dictionary, a tiny RoBERTa in the original release format, `fairseq-train
--user-dir fairseq_hire --arch roberta_hire_base`, the logged GLUE metrics, then the hub."""
import csv
import json
import subprocess
import sys

import pytest
import torch
from fairseq.data import data_utils

from conftest import REPO, real_glue_task_dir
from fairseq_hire import RobertaHireModel
from fairseq_setup import tiny_arch_flags

HEAD = "sentence_classification_head"


def train_command(data, pretrained, save_dir, *extra):
    return [
        sys.executable, "-m", "fairseq_cli.train", str(data), "--user-dir", str(REPO / "fairseq_hire"),
        "--restore-file", str(pretrained), "--reset-optimizer", "--reset-dataloader", "--reset-meters",
        "--arch", "roberta_hire_base", *tiny_arch_flags(), "--task", "sentence_prediction_hire",
        "--criterion", "sentence_prediction_hire", "--num-classes", "2", "--init-token", "0",
        "--separator-token", "2", "--max-positions", "512", "--batch-size", "16", "--max-tokens", "4400",
        "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--adam-eps", "1e-6", "--weight-decay", "0.1",
        "--lr", "3e-4", "--lr-scheduler", "polynomial_decay", "--total-num-update", "30",
        "--warmup-updates", "3", "--max-epoch", "3", "--dropout", "0.1", "--attention-dropout", "0.1",
        "--find-unused-parameters", "--cpu", "--save-dir", str(save_dir), "--seed", "1",
        "--best-checkpoint-metric", "accuracy", "--maximize-best-checkpoint-metric",
        "--no-epoch-checkpoints", "--log-format", "json", "--log-interval", "5", *extra,
    ]


def valid_records(log: str):
    records = []
    for line in log.splitlines():
        if "| valid |" in line:
            records.append(json.loads(line[line.index("{"):]))
    return records


@pytest.fixture(scope="module")
def trained(rte_bin, tiny_pretrained, tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("checkpoints")
    result = subprocess.run(train_command(rte_bin, tiny_pretrained, save_dir),
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return save_dir, result.stdout + result.stderr


def dev_rows(n):
    with open(real_glue_task_dir("RTE") / "dev.tsv", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:n + 1]
    return [(row[1], row[2]) for row in rows], [row[3] for row in rows]


def test_training_logs_glue_metrics_and_layer_weights(trained, rte_bin, tiny_pretrained):
    _, log = trained
    records = valid_records(log)
    assert len(records) == 3  # one validation per epoch
    meta = json.loads((rte_bin / "glue_prep.json").read_text())
    for record in records:
        assert {"valid_accuracy", "valid_mcc", "valid_alpha_1", "valid_alpha_2", "valid_loss"} <= set(record)
        assert float(record["valid_alpha_1"]) + float(record["valid_alpha_2"]) == pytest.approx(1, abs=2e-3)
    assert f"Loaded checkpoint {tiny_pretrained} (epoch" in log
    assert meta["splits"]["valid"] == 160


def test_hub_predictions_equal_training_validation(trained, rte_bin):
    save_dir, log = trained
    best_accuracy = max(float(r["valid_accuracy"]) for r in valid_records(log))
    hub = RobertaHireModel.from_pretrained(str(save_dir), "checkpoint_best.pt", data_name_or_path=str(rte_bin))
    meta = json.loads((rte_bin / "glue_prep.json").read_text())
    pairs, labels = dev_rows(meta["splits"]["valid"])

    # hub, from raw text
    batched = hub.predict_batch(HEAD, pairs)
    names = meta["label_names"]
    hub_accuracy = 100 * sum(names[i] == gold for i, gold in zip(batched.argmax(-1).tolist(), labels)) / len(labels)
    assert hub_accuracy == pytest.approx(best_accuracy, abs=1e-3)

    # the validation path: the binarised dev set through the model's forward, as the criterion runs it
    task = hub.task
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    itr = task.get_batch_iterator(dataset, max_sentences=16).next_epoch_itr(shuffle=False)
    validation = {}
    with torch.no_grad():
        for sample in itr:
            logits, _ = hub.model(**sample["net_input"], features_only=True, classification_head_name=HEAD)
            for i, row in zip(sample["id"].tolist(), logits):
                validation[i] = row
    assert len(validation) == len(pairs)
    for i, (a, b) in enumerate(pairs[:40]):
        tokens = hub.encode(a, b)
        assert torch.equal(tokens, dataset[i]["net_input.src_tokens"]), i
        single = hub.predict(HEAD, tokens, return_logits=True)[0]
        torch.testing.assert_close(single, validation[i], atol=1e-5, rtol=0)
        torch.testing.assert_close(batched[i], torch.log_softmax(single, -1), atol=1e-5, rtol=0)


def test_hub_runs_hire_and_returns_layer_weights(trained, rte_bin):
    save_dir, _ = trained
    hub = RobertaHireModel.from_pretrained(str(save_dir), "checkpoint_best.pt", data_name_or_path=str(rte_bin))
    tokens = hub.encode("The cat sat on the mat.", "A cat was sitting.")
    alpha = hub.layer_weights(tokens)
    assert alpha.shape == (2,) and float(alpha.sum()) == pytest.approx(1, abs=1e-5)
    # predict goes through HIRE: the stock path (last layer -> head) would not even fit the head
    head = hub.model.classification_heads[HEAD]
    assert head.__class__.__name__ == "HireHead"
    calls = []
    handle = head.extractor.register_forward_hook(lambda *a: calls.append(1))
    hub.predict(HEAD, tokens)
    handle.remove()
    assert calls == [1]
    batch = data_utils.collate_tokens([tokens, hub.encode("Short.", "Brief.")], pad_idx=1)
    assert hub.layer_weights(batch).shape == (2, 2)


def test_hub_batched_predict_accepts_sentences_and_pairs(trained, rte_bin):
    save_dir, _ = trained
    hub = RobertaHireModel.from_pretrained(str(save_dir), "checkpoint_best.pt", data_name_or_path=str(rte_bin))
    examples = [("A man is here.", "Someone is here."), ["Two dogs.", "Animals."], ("x", "y")] * 5
    batched = hub.predict_batch(HEAD, examples, max_sentences=4)
    single = torch.stack([hub.predict(HEAD, hub.encode(*e))[0] for e in examples])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)
    assert hub.predict_batch(HEAD, []).numel() == 0


def test_evaluate_script_agrees_with_the_criterion(trained, rte_bin, tmp_path):
    save_dir, log = trained
    best = max(valid_records(log), key=lambda r: float(r["valid_accuracy"]))
    out = tmp_path / "scores.json"
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "evaluate.py"), str(save_dir), str(rte_bin),
                             "--out", str(out)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    scores = json.loads(out.read_text())
    assert scores["examples"] == 160
    assert scores["metrics"]["accuracy"] == pytest.approx(float(best["valid_accuracy"]), abs=1e-3)
    assert scores["metrics"]["mcc"] == pytest.approx(float(best["valid_mcc"]), abs=1e-3)


def test_glue_submission_for_rte(trained, rte_bin, tmp_path):
    import zipfile

    save_dir, _ = trained
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "glue_submission.py"), str(tmp_path / "sub"),
                             "--task", str(save_dir), str(rte_bin)], capture_output=True, text=True, cwd=REPO)
    # rte_bin holds the first 160 rows of each split: no submission the server would take
    assert result.returncode == 2 and "--max-rows 160; the GLUE server needs every test row" in result.stderr
    assert not (tmp_path / "sub").exists()
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "glue_submission.py"), str(tmp_path / "sub"),
                             "--task", str(save_dir), str(rte_bin), "--allow-partial"], capture_output=True, text=True,
                            cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = (tmp_path / "sub" / "RTE.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction"
    rows = [line.split("\t") for line in lines[1:]]
    assert [r[0] for r in rows] == [str(i) for i in range(160)]  # RTE's test index column
    assert {r[1] for r in rows} <= {"entailment", "not_entailment"}
    with zipfile.ZipFile(tmp_path / "sub" / "submission.zip") as zf:
        assert zf.namelist() == ["RTE.tsv"]
