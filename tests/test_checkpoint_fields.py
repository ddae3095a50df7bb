"""Every configuration field of a checkpoint that reaches eval, ast.literal_eval, import_module
or a file path in fairseq when a RoBERTa model is built (sentence_prediction, masked_lm) is
refused or type-checked after resolution (there is no resolution left: interpolations are
refused, tests/test_checkpoint_interpolation.py). The sites in fairseq 0.12.3, and what holds:

* eval: ``*xformers_att_config`` (MultiheadAttention, through utils.eval_str_dict), read from
  the flat option or from an ``encoder`` section: refused at any depth (checkpoint_config);
  the other eval sites (fconv, lightconv, transformer_lm's character_filters, wav2vec, the
  optimizers' betas) belong to architectures, tasks or optimizers a checkpoint cannot name
  (only RoBERTa architectures and tasks; the optimizer is the command line's);
* ast.literal_eval: convert_namespace_to_omegaconf applies it to every args string of an
  option that is not a string: an interpolation it would make is refused, a string it cannot
  parse is a one-line refusal (tests/test_checkpoint_interpolation.py);
  ``optimizer_overrides`` is the command line's;
* import_module: ``user_dir`` (only this plugin's folder) and the registries, by name (only
  RoBERTa's architectures, tasks and BPEs);
* paths: the task's ``data`` is replaced by every loader; the BPE's files (gpt2_encoder_json,
  gpt2_vocab_bpe, sentencepiece_model, hire_tokenizer_spec) are never the checkpoint's: the
  hub names its BPE, and that override now replaces the checkpoint's BPE section (fairseq kept
  a BPE section the checkpoint has, and opened or downloaded the files it names);
  ``layer_cache`` is a string (its parser's type), read only with ``freeze_encoder``.
"""
import argparse
import copy

import pytest

import fairseq_hire  # noqa: F401  (registers roberta_hire)
from fairseq_hire import RobertaHireModel
from fairseq_hire.checkpoints.errors import UnsafeConfigError
from fairseq_hire.checkpoints.loading import load_state
from fairseq_hire.bpe.hire_tokenizer import HireTokenizerBPE
from test_checkpoint_shapes import data_dir, fine_tuned, saved  # noqa: F401  (fixtures)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("kind", [dict, argparse.Namespace])
def test_an_evaluated_option_inside_an_encoder_section_is_refused(kind, fine_tuned, tmp_path):
    """TransformerConfig.from_namespace reads an ``encoder`` section whole, xformers_att_config
    included, which the attention layers eval()."""
    state = copy.deepcopy(fine_tuned)
    model = {**vars(state["cfg"]["model"]), "encoder": {"xformers_att_config": "print('ran')"}}
    state["cfg"]["model"] = model if kind is dict else argparse.Namespace(**model)
    with pytest.raises(UnsafeConfigError, match=r"cfg\.model\.encoder\.xformers_att_config"):
        load_state(saved(state, tmp_path))


@pytest.mark.parametrize("bpe", [
    {"_name": "gpt2", "gpt2_encoder_json": "{folder}/encoder.json", "gpt2_vocab_bpe": "{folder}/vocab.bpe"},
    {"_name": "sentencepiece", "sentencepiece_model": "{folder}/spm.model"},
    {"_name": "hire_tokenizer", "hire_tokenizer_spec": "{folder}/tokenizer_spec.json"},
])
def test_the_hub_builds_the_tokenizer_it_names_not_the_checkpoints(bpe, fine_tuned, data_dir, tmp_path):
    """A checkpoint's BPE section names files (or URLs); the hub passes its own BPE, which
    replaces the section: the checkpoint's files are never opened (here they do not exist:
    opening them was an error)."""
    folder = tmp_path / "chosen-by-the-checkpoint"
    state = copy.deepcopy(fine_tuned)
    state["cfg"]["bpe"] = {key: value.format(folder=folder) for key, value in bpe.items()}
    path = saved(state, tmp_path)
    hub = RobertaHireModel.from_pretrained(str(path.parent), path.name, data_name_or_path=str(data_dir))
    assert isinstance(hub.bpe, HireTokenizerBPE)
    assert str(folder) not in str(hub.cfg.bpe) and not folder.exists()
    assert hub.encode("a sentence").dim() == 1


def test_a_layer_cache_is_a_string(fine_tuned, tmp_path):
    state = copy.deepcopy(fine_tuned)
    vars(state["cfg"]["model"]).update(freeze_encoder=True, layer_cache=["/elsewhere"])
    with pytest.raises(UnsafeConfigError, match=r"cfg\.model\.layer_cache"):
        load_state(saved(state, tmp_path))
