"""The classes a sentence-prediction head was trained on, kept in every checkpoint.

fairseq reads a head's outputs as the classes of the ``label/dict.txt`` of whatever data
folder the model is loaded with, in that file's order. Binaries of a task whose labels are
collected from train, built again from other rows, may order them differently (most
frequent first), and every prediction would then be read as the wrong class.

fairseq's trainer saves the task's state (``task.state``) in every checkpoint, and
``checkpoint_utils.load_model_ensemble_and_task`` restores it before the task builds the model.
So the plugin's task (``sentence_prediction_hire``) records its head's classes there when it
builds a model to train, whichever command trains it (finetune.py, fairseq-train,
fairseq-hydra-train, stock architecture or roberta_hire), and refuses to build one from a
checkpoint whose recorded classes are not those of the data it is given; the plugin's hub
(evaluate.py, predict.py, the comparison) checks the same for a checkpoint of fairseq's own
sentence_prediction task. ``--restore-file`` does not restore the task state, so fine-tuning an
MNLI checkpoint on RTE records RTE's classes, as it should.
"""
from typing import List, Optional

from .errors import DataMismatchError

STATE_KEY = "hire_head_classes"


def head_classes(task) -> Optional[List[str]]:
    """The classes of the head's outputs, in output order; None for a regression task."""
    labels = getattr(task, "label_dictionary", None)
    if labels is None or getattr(task.cfg, "regression_target", True):
        return None
    count = getattr(task.cfg, "num_classes", -1)
    end = labels.nspecial + count if count > 0 else len(labels)
    return list(labels.symbols[labels.nspecial:end])


def record_or_check(task) -> None:
    """Record the classes in the task state, or, when a checkpoint's state was restored into it,
    refuse data whose classes differ from those recorded."""
    given = head_classes(task)
    if given is None:
        return
    trained = task.state.state_dict.get(STATE_KEY)
    if trained is None:
        task.state.merge_state_dict({STATE_KEY: given})
    elif trained != given:  # checkpoints.configuration checked that it is a list of names
        from glue_prep.binarize import label_names  # every class of the data, not only the head's first ones

        # fairseq's sentence_prediction adds <mask> to every dictionary it loads, the labels' too
        classes = [name for name in label_names(task.label_dictionary) if name != "<mask>"]
        raise DataMismatchError(
            f"the checkpoint's head was trained on the classes {trained}, but {task.cfg.data} has {classes} "
            "(label/dict.txt): the head's outputs would be read as the wrong classes. Use the binaries the model "
            "was trained on"
        )
