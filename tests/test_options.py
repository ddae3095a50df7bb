"""The --hire-* options, each defined once (fairseq_hire/modules/options.py): every reader
(the flags, the architecture defaults, HireHead, the presets) takes them from HireOptions."""
import argparse
import dataclasses

import pytest

from fairseq_hire.modules.options import HEADS, HireOptions, add_arguments, flag, head_options, set_defaults

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


@pytest.mark.parametrize("values, message", [
    (dict(pooling="cls"), "--hire-pooling 'cls'"), (dict(gru_dim=-1), "--hire-gru-dim -1"),
    (dict(gru_dim="8"), "expected an integer"), (dict(fusion="yes"), "expected true or false"),
    (dict(last_k=0), "--hire-last-k 0"), (dict(extractor="concat"), "--no-hire-fusion"),
])
def test_bad_values_name_the_flag(values, message):
    with pytest.raises(ValueError, match=message):
        HireOptions(**values)
