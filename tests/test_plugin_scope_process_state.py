"""Using the plugin leaves the process as stock fairseq would leave it (issue 27, item 1).

tests/test_plugin_scope.py checks the names of fairseq and torch and torch's safe globals around
the import, and fairseq's checkpoint functions for other trainers. Here: the process-wide state a
user's other work sees after a hub load of a plugin checkpoint, in a fresh process (torch imports
some of its own modules lazily, once per process): torch's weights_only allowlist, the warnings
filters and torch's functions.
"""
import subprocess
import sys

import pytest

from conftest import REPO
from fairseq_setup import build_trainer, finetune_args, save, write_task_dicts

HUB_LOAD = """
import sys, warnings
import torch
import fairseq.checkpoint_utils, fairseq.models.roberta
from fairseq_hire import RobertaHireModel

safe = list(torch.serialization.get_safe_globals())
filters = list(warnings.filters)
torch_names = dict(vars(torch))
hub = RobertaHireModel.from_pretrained(sys.argv[1], "checkpoint.pt", sys.argv[2])
print("predicted", tuple(hub.predict("sentence_classification_head", hub.encode("a", "b")).shape))
print("safe globals added:", sorted(str(g) for g in torch.serialization.get_safe_globals() if g not in safe))
print("warnings filters added:", [f for f in warnings.filters if f not in filters])
print("torch names changed:", sorted(k for k, v in torch_names.items() if vars(torch).get(k) is not v))
"""


@pytest.fixture
def plugin_checkpoint(tmp_path):
    data = write_task_dicts(tmp_path / "bin")
    trainer = build_trainer(finetune_args(data))
    save(trainer, tmp_path / "checkpoint.pt", {"epoch": 1})
    return tmp_path, data


@pytest.mark.unit
def test_a_hub_load_leaves_torchs_allowlist_warnings_and_functions_as_they_were(plugin_checkpoint):
    """The safe loader's shape check builds the checkpoint's heads on the meta device; HIRE's
    normal_ initialisation there went through torch's Python references, whose first use imports
    torch._dynamo: torch's weights_only allowlist grew by ten DTensor / dynamo classes, sympy's
    warnings filter was added and torch.manual_seed was replaced, all for the rest of the process."""
    folder, data = plugin_checkpoint
    result = subprocess.run([sys.executable, "-W", "ignore::DeprecationWarning", "-c", HUB_LOAD, str(folder),
                             str(data)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-4:] == ["predicted (1, 2)", "safe globals added: []",
                                               "warnings filters added: []", "torch names changed: []"]
