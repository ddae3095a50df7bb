"""sentence_prediction_hire: fairseq's sentence_prediction loss with the official GLUE
metrics over the whole validation set, and HIRE's mean layer weights.

The loss is exactly sentence_prediction's: summed NLL, or summed MSE with
--regression-target, plus RoBERTa's attention-head and FFN-block regularisers when
--mha-reg-scale-factor / --ffn-reg-scale-factor are set (logged as mha_reg_loss,
ffn_reg_loss). On validation every prediction and target is kept, gathered across
batches (fairseq's ConcatTensorMeter in the validation aggregator) and across workers
(logging outputs are all-gathered, not summed), and the metrics are computed once over the
full set by fairseq_hire.metrics, the functions the evaluation and the comparison score with:

    classification: accuracy, mcc (Matthews, CoLA), macro_f1, and for a binary task whose
                    label set holds --f1-positive-label ("1": MRPC, QQP) f1 and acc_and_f1
    regression:     pearson, spearman, pearson_and_spearman (STS-B)

All are in percent, logged beside the best constant prediction's (constant_<metric>), and
usable as --best-checkpoint-metric (with --maximize-best-checkpoint-metric); the training
log's accuracy is the batches' running accuracy, as fairseq's. With a HIRE model the mean layer weight alpha of each
scored layer is logged as alpha_<layer> (layer 0 = embeddings).
"""
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics

from .. import metrics as glue
from ..checkpoints import saving
from ..checkpoints.head_classes import head_classes
from ..patches import cpu_distributed, one_line_refusals

PRED_KEY = "_hire_pred"  # meters whose names start with "_" are kept out of the logs
TARG_KEY = "_hire_targ"


@dataclass
class SentencePredictionHireConfig(FairseqDataclass):
    classification_head_name: str = field(
        default="sentence_classification_head",
        metadata={"help": "name of the classification head to use"},
    )
    regression_target: bool = field(default=False, metadata={"help": "regression (STS-B)"})
    f1_positive_label: str = field(
        default="1",
        metadata={"help": "label whose F1 is reported for binary tasks (GLUE: '1' for MRPC, QQP)"},
    )


@register_criterion("sentence_prediction_hire", dataclass=SentencePredictionHireConfig)
class SentencePredictionHireCriterion(FairseqCriterion):
    @classmethod
    def add_args(cls, parser):
        """fairseq's parser reads a run's command line (fairseq-train, torchrun -m
        fairseq_cli.train) before it starts the workers: where fairseq's distributed training on
        CPU processes is made to run (patches/cpu_distributed.py)."""
        super().add_args(parser)
        cpu_distributed.install()

    def __init__(self, cfg: SentencePredictionHireConfig, task):
        saving.install(type(self))  # built by the run that trains with it (saving.plugin_run)
        one_line_refusals.install()
        super().__init__(task)
        self.classification_head_name = cfg.classification_head_name
        self.regression_target = cfg.regression_target
        self.positive_class = -1
        labels = head_classes(task)
        if not self.regression_target and labels is not None:
            self.positive_class = glue.positive_class(labels, cfg.f1_positive_label)

    def forward(self, model, sample, reduce=True):
        if self.classification_head_name not in getattr(model, "classification_heads", {}):
            raise ValueError(
                f"model has no classification head {self.classification_head_name!r} "
                "(--classification-head-name must match the task's)"
            )
        logits, extra = model(
            **sample["net_input"],
            features_only=True,
            classification_head_name=self.classification_head_name,
        )
        targets = model.get_targets(sample, [logits]).view(-1)
        sample_size = targets.numel()
        if self.regression_target:
            logits = logits.view(-1).float()
            loss = F.mse_loss(logits, targets.float(), reduction="sum")
        else:
            lprobs = F.log_softmax(logits, dim=-1, dtype=torch.float32)
            loss = F.nll_loss(lprobs, targets, reduction="sum")

        logging_output = {}
        args = getattr(model, "args", None)
        for flag, regulariser in (("mha_reg_scale_factor", "_get_adaptive_head_loss"),
                                  ("ffn_reg_scale_factor", "_get_adaptive_ffn_loss")):
            if getattr(args, flag, 0.0):
                term = getattr(model, regulariser)()
                loss = loss + term
                logging_output[flag.replace("_scale_factor", "_loss")] = term.data
        logging_output.update({
            "loss": loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample_size,
            "sample_size": sample_size,
        })
        if not self.regression_target:
            preds = logits.argmax(dim=1)
            logging_output["ncorrect"] = (preds == targets).sum()
        if not model.training:
            outputs = logits.detach() if self.regression_target else preds
            logging_output["pred"] = outputs.cpu().tolist()
            logging_output["targ"] = targets.detach().cpu().tolist()
            logging_output["regression"] = self.regression_target
            logging_output["positive_class"] = self.positive_class
            logging_output["num_classes"] = 0 if self.regression_target else logits.size(-1)
            layer_weights = extra.get("layer_weights") if isinstance(extra, dict) else None
            if layer_weights is not None:
                logging_output["layer_weights_sum"] = layer_weights.detach().float().sum(0).cpu().tolist()
                logging_output["first_scored_layer"] = extra["first_scored_layer"]
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        loss_sum = sum(log.get("loss", 0) for log in logging_outputs)
        ntokens = sum(log.get("ntokens", 0) for log in logging_outputs)
        nsentences = sum(log.get("nsentences", 0) for log in logging_outputs)
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)

        metrics.log_scalar("loss", loss_sum / sample_size / math.log(2), sample_size, round=3)
        for name in ("mha_reg_loss", "ffn_reg_loss"):
            if any(name in log for log in logging_outputs):
                total = sum(log.get(name, 0) for log in logging_outputs)
                metrics.log_scalar(name, total / sample_size / math.log(2), sample_size, round=3)
        if sample_size != ntokens:
            metrics.log_scalar("nll_loss", loss_sum / ntokens / math.log(2), ntokens, round=3)
        evaluated = [log for log in logging_outputs if "pred" in log]
        if not evaluated:
            if any("ncorrect" in log for log in logging_outputs):  # training: the batches' running accuracy
                ncorrect = sum(log.get("ncorrect", 0) for log in logging_outputs)
                metrics.log_scalar("accuracy", 100.0 * ncorrect / nsentences, nsentences, round=glue.METRIC_DIGITS)
            return
        regression = evaluated[0]["regression"]
        positive = evaluated[0]["positive_class"]
        dtype = torch.float64 if regression else torch.long
        for key, field_name in ((PRED_KEY, "pred"), (TARG_KEY, "targ")):
            values = [v for log in evaluated for v in log[field_name]]
            metrics.log_concat_tensor(key, torch.tensor(values, dtype=dtype))
        # validation: every metric over the whole set, as the evaluation and the comparison score it
        names = glue.metric_names(regression, positive)
        for name in names:
            metrics.log_derived(
                name,
                lambda meters, name=name: glue.rounded(glue.metric_function(name, regression, positive)(
                    meters[PRED_KEY].tensor.numpy(), meters[TARG_KEY].tensor.numpy())),
            )
        num_classes = evaluated[0].get("num_classes")
        if num_classes:  # beside every result, what the best constant prediction scores
            for name in names:
                metrics.log_derived(
                    f"constant_{name}",
                    lambda meters, name=name: glue.rounded(glue.constant_score(
                        meters[TARG_KEY].tensor.numpy(), name, False, positive, num_classes)),
                )

        weighted = [log for log in evaluated if "layer_weights_sum" in log]
        if weighted:
            count = sum(len(log["pred"]) for log in weighted)
            sums = np.sum([log["layer_weights_sum"] for log in weighted], axis=0)
            first = weighted[0]["first_scored_layer"]
            for j, total in enumerate(sums):
                metrics.log_scalar(f"alpha_{first + j}", total / count, count, round=3)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        # validation outputs carry per-example predictions: gather them, never sum
        return False
