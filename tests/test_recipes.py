"""Recipes: one table drives scripts/finetune.py and the Hydra YAMLs; HIRE and the baseline
run the same recipe; the YAMLs run under fairseq-hydra-train."""
import json
import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from fairseq_hire.workflow.recipes import RECIPES, recipe

FINETUNE = [sys.executable, str(REPO / "scripts" / "finetune.py")]
sys.path.insert(0, str(REPO / "scripts"))


def dry_run(*args):
    result = subprocess.run([*FINETUNE, *args, "--dry-run"], capture_output=True, text=True, cwd=REPO, check=True)
    return result.stdout.strip().splitlines()[-1].split()


def test_yamls_match_the_recipe_table():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "generate_recipe_yamls.py"), "--check"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    for size in ("base", "large"):
        for task in RECIPES.values():
            config = yaml.safe_load((REPO / "fairseq_hire" / "config" / "finetuning" / size / f"{task.yaml_name}.yaml").read_text())
            schedule = task.task.recipe
            assert config["optimization"]["lr"] == [schedule.lr]
            assert config["dataset"]["batch_size"] == schedule.batch_size
            assert config["lr_scheduler"]["warmup_updates"] == schedule.warmup_updates
            assert config["optimization"]["max_update"] == schedule.total_updates
            assert config["model"]["_name"] == f"roberta_hire_{size}"
            assert config["criterion"]["regression_target"] == task.regression


def test_every_flag_of_the_command_line_is_in_every_yaml():
    """Each fairseq-train flag finetune.py passes (on a GPU) appears in the YAML exactly once,
    with the value fairseq's parser gives it, and every --hire-* option with its default."""
    import generate_recipe_yamls as generator

    from fairseq_hire.modules.options import HireOptions

    for size in ("base", "large"):
        for task in RECIPES.values():
            config = yaml.safe_load((generator.CONFIG_DIR / size / f"{task.yaml_name}.yaml").read_text())
            command = generator.recipe_command(task, size)
            args = generator.parsed(command)
            for flag in (word for word in command if word.startswith("--")):
                dest = flag[2:].replace("-", "_")
                key = "_name" if dest in generator.CHOICE_FLAGS else dest
                holders = [g for g, section in config.items() if isinstance(section, dict) and key in section
                           and (key != "_name" or g == generator.CHOICE_FLAGS[dest])]
                assert len(holders) == 1, (task.name, size, flag, holders)
                value = config[holders[0]][key]
                expected = getattr(args, dest)
                assert value == expected or float(value) == float(expected), (task.name, flag, value, expected)
            for name, default in HireOptions().as_args().items():
                assert config["model"][name] == default, (task.name, name)


@pytest.mark.parametrize("task", ["RTE", "STS-B", "MNLI"])
def test_baseline_runs_the_same_recipe(task, tiny_pretrained, tmp_path):
    hire = dry_run(task, str(tmp_path / "bin"), str(tiny_pretrained), str(tmp_path / "ckpt"), "--device", "cpu")
    stock = dry_run(task, str(tmp_path / "bin"), str(tiny_pretrained), str(tmp_path / "ckpt"), "--device", "cpu",
                    "--baseline")

    def without_model(command):
        command = list(command)
        del command[command.index("--arch"):command.index("--arch") + 2]
        if "--encoder-layernorm-eps" in command:  # only roberta_hire has the option; 1e-5 is roberta's own
            i = command.index("--encoder-layernorm-eps")
            assert command[i + 1] == "1e-05"
            del command[i:i + 2]
        return command

    assert hire[hire.index("--arch") + 1] == "roberta_hire_base"
    assert stock[stock.index("--arch") + 1] == "roberta_base"
    assert without_model(hire) == without_model(stock)
    r = recipe(task)
    assert hire[hire.index("--lr") + 1] == str(r.lr)
    assert hire[hire.index("--batch-size") + 1] == str(r.batch_size)
    assert ("--regression-target" in hire) == r.regression
    assert hire[hire.index("--finetune-from-model") + 1] == str(tiny_pretrained)


def test_mnli_initialisation_and_budget(tiny_pretrained, tmp_path, rte_bin):
    command = dry_run("RTE", str(rte_bin), str(tiny_pretrained), str(tmp_path / "ckpt"), "--device", "cpu",
                      "--mnli-init", str(tmp_path / "mnli.pt"), "--epochs", "2", "--lr", "3e-5")
    assert command[command.index("--finetune-from-model") + 1] == str(tmp_path / "mnli.pt")
    assert command[command.index("--max-epoch") + 1] == "2"
    assert command[command.index("--total-num-update") + 1] == "20"  # 2 epochs x 160 rows / 16
    assert command[command.index("--lr") + 1] == "3e-05" and command.count("--lr") == 1


@pytest.mark.parametrize("flags, expected", [
    (("--hire-last-k", "0"), "--hire-last-k 0: expected at least 1 layer"),
    (("--hire-gru-dim", "-3"), "--hire-gru-dim -3: expected a size >= 1"),
    (("--hire-extractor", "concat"), "--hire-extractor concat gives A of k x C channels"),
])
def test_hire_values_that_build_no_head_are_refused_before_starting(tiny_pretrained, tmp_path, rte_bin, flags,
                                                                     expected):
    """They were refused only when fairseq-train built the model; a dry run printed a command."""
    refused = subprocess.run([*FINETUNE, "RTE", str(rte_bin), str(tiny_pretrained), str(tmp_path / "ckpt"),
                              *flags, "--dry-run"], capture_output=True, text=True, cwd=REPO)
    assert refused.returncode == 2 and expected in refused.stderr.strip().splitlines()[-1], refused.stderr[-2000:]
    assert not (tmp_path / "ckpt").exists()


def test_a_last_k_head_of_any_k(tiny_pretrained, tmp_path, rte_bin):
    """--head last<K>-concat: BERT's feature-based head over the last K layers, as HIRE options."""
    command = dry_run("RTE", str(rte_bin), str(tiny_pretrained), str(tmp_path / "ckpt"), "--device", "cpu",
                      "--head", "last2-concat")
    assert command[command.index("--hire-extractor") + 1] == "concat"
    assert command[command.index("--hire-last-k") + 1] == "2" and "--no-hire-fusion" in command
    refused = subprocess.run([*FINETUNE, "RTE", str(rte_bin), str(tiny_pretrained), str(tmp_path / "ckpt"),
                              "--head", "last0-mean", "--dry-run"], capture_output=True, text=True, cwd=REPO)
    assert refused.returncode == 2 and "last<K>-mean" in refused.stderr


@pytest.mark.parametrize("keep, expected", [
    ("1", "--hire-last-k 2: the head scores only 1 layers"),
    ("0,0", "--encoder-layers-to-keep '0,0': expected distinct layer indices"),
])
def test_a_head_longer_than_the_kept_layers_is_refused_before_training(tiny_pretrained, tmp_path, rte_bin, keep,
                                                                        expected):
    refused = subprocess.run([*FINETUNE, "RTE", str(rte_bin), str(tiny_pretrained), str(tmp_path / "ckpt"),
                              "--head", "last2-mean", "--encoder-layers-to-keep", keep, "--dry-run"],
                             capture_output=True, text=True, cwd=REPO)
    assert refused.returncode != 0 and expected in refused.stderr.strip().splitlines()[-1], refused.stderr[-2000:]


def test_hydra_yaml_runs_on_cpu(rte_bin, tiny_pretrained, tmp_path):
    """fairseq-hydra-train with a shipped YAML, the documented CPU override and the tiny model."""
    save_dir = tmp_path / "hydra"
    result = subprocess.run([
        sys.executable, "-m", "fairseq_cli.hydra_train", "--config-dir", str(REPO / "fairseq_hire" / "config" / "finetuning" / "base"),
        "--config-name", "rte", f"task.data={rte_bin}", f"checkpoint.finetune_from_model={tiny_pretrained}",
        "common.fp16=false", "common.cpu=true", f"common.user_dir={REPO / 'fairseq_hire'}",
        f"checkpoint.save_dir={save_dir}", "optimization.max_update=6",
        "+model.encoder_layers=2", "+model.encoder_embed_dim=32", "+model.encoder_ffn_embed_dim=64",
        "+model.encoder_attention_heads=2", "common.log_interval=1",
    ], capture_output=True, text=True, cwd=tmp_path)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert "RobertaHireModel" in log
    valid = [json.loads(line[line.index("{"):]) for line in log.splitlines() if "valid_accuracy" in line]
    assert valid and "valid_alpha_1" in valid[-1] and "valid_mcc" in valid[-1]
    assert (save_dir / "checkpoint_best.pt").exists()
