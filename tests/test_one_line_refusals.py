"""The plugin's refusals end a fairseq-train run in one line, not under fairseq's traceback
(fairseq_hire/patches/one_line_refusals.py): installed by a training run of the plugin's
components, never at activation (nor by a hub load: tests/test_plugin_scope_process_state.py),
and acting only on a refusal that ends a fairseq command line."""
import os
import subprocess
import sys

import pytest

from conftest import REPO
from test_finished_run import fairseq_train_command

PARSE = """
import sys
from fairseq import options
parser = options.get_training_parser()
options.parse_args_and_arch(parser, input_args=[
    "data", "--user-dir", sys.argv[1], "--task", "sentence_prediction_hire", "--criterion", "sentence_prediction_hire",
    "--arch", "roberta_hire_base"])
print("excepthook changed:", sys.excepthook is not sys.__excepthook__)
"""


def test_activating_the_plugin_and_parsing_its_command_line_leave_the_excepthook():
    """fairseq's activation calls every plugin task's and model's add_args on a scratch parser."""
    result = subprocess.run([sys.executable, "-c", PARSE, str(REPO / "fairseq_hire")],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == "excepthook changed: False"


RAISE = """
import sys
from fairseq_hire.patches import one_line_refusals
from fairseq_hire.checkpoints.errors import UnsafeConfigError
one_line_refusals.install()
one_line_refusals.install()  # twice: one hook
raise UnsafeConfigError("refusing x.pt: y")
"""


def test_a_refusal_in_the_users_own_program_keeps_its_traceback():
    result = subprocess.run([sys.executable, "-c", RAISE], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1 and result.stderr.count("Traceback") == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == "fairseq_hire.checkpoints.errors.UnsafeConfigError: refusing x.pt: y"


@pytest.mark.parametrize("variable, stock_task", [(None, False), ("1", False), (None, True)])
def test_fairseq_train_ends_a_refused_run_in_one_line(rte_bin, tiny_pretrained, tmp_path, variable, stock_task):
    """--encoder-layers-to-keep naming a layer the checkpoint lacks: refused by the load hook,
    inside fairseq_cli.train's main, also for roberta_hire under fairseq's own task and criterion;
    FAIRSEQ_HIRE_TRACEBACK=1 shows the traceback."""
    env = {k: v for k, v in os.environ.items() if k != "FAIRSEQ_HIRE_TRACEBACK"}
    if variable:
        env["FAIRSEQ_HIRE_TRACEBACK"] = variable
    command = fairseq_train_command(rte_bin, tiny_pretrained, tmp_path / "save", "--encoder-layers-to-keep", "0,7")
    if stock_task:
        command = ["sentence_prediction" if word == "sentence_prediction_hire" else word for word in command]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    assert result.returncode == 1 and ("Traceback" in result.stderr) == bool(variable), result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith(
        "fairseq_hire.checkpoints.fitting.ArchitectureMismatchError: cannot load ")
    assert not (tmp_path / "save").exists() or not list((tmp_path / "save").glob("checkpoint*.pt"))


def test_a_refused_model_option_ends_fairseq_train_in_one_line(rte_bin, tiny_pretrained, tmp_path):
    """roberta_hire refuses --encoder-layerdrop as it builds the model (HireOptionError)."""
    command = fairseq_train_command(rte_bin, tiny_pretrained, tmp_path / "save", "--encoder-layerdrop", "0.1")
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith(
        "fairseq_hire.modules.options.HireOptionError: roberta_hire does not support --encoder-layerdrop")


THROUGH_FAIRSEQ_CLI = """
import sys
from fairseq_hire.patches import one_line_refusals
from fairseq_hire.checkpoints.errors import UnsafeConfigError
one_line_refusals.install()
command_line = {"__name__": "fairseq_cli.train"}  # a frame of fairseq's command line, as in its main
exec("def main(error): raise error", command_line)
command_line["main"](UnsafeConfigError("refusing x.pt: y") if sys.argv[1] == "refusal" else ValueError("a bug"))
"""


@pytest.mark.parametrize("raised, last, traceback", [
    ("refusal", "fairseq_hire.checkpoints.errors.UnsafeConfigError: refusing x.pt: y", False),
    ("other", "ValueError: a bug", True),
])
def test_under_fairseq_cli_only_a_refusal_loses_its_traceback(raised, last, traceback):
    """Any other exception of a plugin run (a ValueError may be a bug's) keeps its traceback."""
    result = subprocess.run([sys.executable, "-c", THROUGH_FAIRSEQ_CLI, raised], capture_output=True, text=True,
                            cwd=REPO)
    assert result.returncode == 1 and ("Traceback" in result.stderr) == traceback, result.stderr
    assert result.stderr.strip().splitlines()[-1] == last
