"""The --hire-* options, each defined once (fairseq_hire/modules/options.py): every reader
(the flags, the architecture defaults, HireHead, the presets) takes them from HireOptions."""
import argparse
import dataclasses

import pytest

from fairseq_hire.modules.options import (HEADS, HireOptions, add_arguments, flag, head_name, head_options, head_preset,
                                          set_defaults)

pytestmark = pytest.mark.unit


def test_every_option_has_one_flag_with_its_help_and_choices():
    parser = argparse.ArgumentParser(argument_default=argparse.SUPPRESS)  # as fairseq parses model args
    add_arguments(parser)
    actions = {a.dest: a for a in parser._actions if a.dest != "help"}
    for option in dataclasses.fields(HireOptions):
        action = actions["hire_" + option.name]
        assert flag(option.name) in action.option_strings and action.help == option.metadata["help"]
        if option.metadata.get("choices"):
            assert tuple(action.choices) == option.metadata["choices"]
    assert vars(parser.parse_args([])) == {}  # defaults come from the architecture, not argparse
    args = parser.parse_args(["--hire-gru-dim", "96", "--no-hire-fusion", "--hire-extractor", "mean"])
    set_defaults(args, getattr)
    assert HireOptions.from_args(args) == HireOptions(gru_dim=96, fusion=False, extractor="mean")


def test_flags_of_the_presets_parse_back_to_the_presets():
    parser = argparse.ArgumentParser(argument_default=argparse.SUPPRESS)
    add_arguments(parser)
    for name, preset in HEADS.items():
        args = parser.parse_args(preset.options.flags())
        set_defaults(args, getattr)
        assert HireOptions.from_args(args) == preset.options == head_options(name), name
    with pytest.raises(ValueError, match="unknown head"):
        head_options("attention-pooling")


def test_last_k_heads_for_any_k():
    """BERT's feature-based heads with k a flag: last<K>-mean / last<K>-concat, k = 4 in HEADS."""
    assert head_options("last2-concat") == HireOptions(extractor="concat", last_k=2, fusion=False)
    assert head_options("last12-mean") == HireOptions(extractor="mean", last_k=12, fusion=False)
    assert head_preset("last4-mean") is HEADS["last4-mean"]
    assert head_preset("last4-concat") == HEADS["last4-concat"]
    assert "last 12 layers" in head_preset("last12-mean").description
    for bad in ("last0-mean", "last-mean", "last2-max", "last02-mean", "last2-mean "):
        with pytest.raises(argparse.ArgumentTypeError, match="unknown head.*last<K>-mean"):
            head_name(bad)


def test_finetune_and_compare_take_a_last_k_head(tmp_path):
    """--head / --heads last<K>-...: its flags in the fine-tuning command; a bad name refused."""
    from fairseq_hire.compare.__main__ import build_parser
    from fairseq_hire.compare.runs import Comparison

    args, _ = build_parser().parse_known_args(["RTE", "bin", "model.pt", "out", "--heads", "stock", "last2-concat"])
    assert args.heads == ["stock", "last2-concat"]
    command = Comparison("RTE", tmp_path, tmp_path / "model.pt", tmp_path).finetune_command("last2-concat", 1, tmp_path)
    assert command[command.index("--head") + 1] == "last2-concat"
    with pytest.raises(SystemExit):
        build_parser().parse_known_args(["RTE", "bin", "model.pt", "out", "--heads", "last0-mean"])



def test_a_last_k_head_longer_than_the_encoder_is_refused_before_training(rte_bin, tiny_pretrained, tmp_path):
    from fairseq_hire.compare.__main__ import main as compare
    from fairseq_hire.workflow.finetune import main as finetune

    layers = 2  # the tiny RoBERTa's
    assert finetune(["RTE", str(rte_bin), str(tiny_pretrained), str(tmp_path / "ckpt"), "--head", f"last{layers}-concat",
                     "--dry-run"]) == 0
    assert finetune(["RTE", str(rte_bin), str(tiny_pretrained), str(tmp_path / "ckpt"), "--head",
                     f"last{layers + 1}-mean", "--dry-run"]) == 2
    assert compare(["RTE", str(rte_bin), str(tiny_pretrained), str(tmp_path / "out"), "--heads", "stock",
                    f"last{layers + 1}-mean"]) == 2
    assert not (tmp_path / "out" / "runs").exists()  # nothing ran


@pytest.mark.parametrize("values, message", [
    (dict(pooling="cls"), "--hire-pooling 'cls'"), (dict(gru_dim=-1), "--hire-gru-dim -1"),
    (dict(gru_dim="8"), "expected an integer"), (dict(fusion="yes"), "expected true or false"),
    (dict(last_k=0), "--hire-last-k 0"), (dict(extractor="concat"), "--no-hire-fusion"),
])
def test_bad_values_name_the_flag(values, message):
    with pytest.raises(ValueError, match=message):
        HireOptions(**values)
