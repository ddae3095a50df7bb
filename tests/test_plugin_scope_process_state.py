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
print("excepthook changed:", sys.excepthook is not sys.__excepthook__)
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
    assert result.stdout.splitlines()[-5:] == ["predicted (1, 2)", "safe globals added: []",
                                               "warnings filters added: []", "torch names changed: []",
                                               "excepthook changed: False"]


REGISTRATION = """
import argparse, dataclasses, sys
from fairseq import options
from fairseq.dataclass import FairseqDataclass
from fairseq.registry import REGISTRIES
from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY, MODEL_REGISTRY
from fairseq.tasks import TASK_DATACLASS_REGISTRY, TASK_REGISTRY
from hydra.core.config_store import ConfigStore

def subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from subclasses(sub)

def state():
    entries = {f"{name}{suffix}.{key}": value for name, registry in REGISTRIES.items()
               for suffix, kind in (("", "registry"), ("_config", "dataclass_registry"))
               for key, value in registry[kind].items()}
    for name, registry in (("model", MODEL_REGISTRY), ("arch", ARCH_MODEL_REGISTRY), ("arch_config", ARCH_CONFIG_REGISTRY),
                           ("task", TASK_REGISTRY), ("task_config", TASK_DATACLASS_REGISTRY)):
        entries.update((f"{name}.{key}", value) for key, value in registry.items())
    defaults = {f"{c.__module__}.{c.__qualname__}.{f.name}": repr((f.default, f.default_factory, f.type))
                for c in set(subclasses(FairseqDataclass)) if c.__module__.startswith("fairseq.")
                for f in dataclasses.fields(c)}
    store = {f"{group}/{name}": repr(node.node) for group, nodes in ConfigStore.instance().repo.items()
             if isinstance(nodes, dict) for name, node in nodes.items() if hasattr(node, "node")}
    parsed = vars(options.parse_args_and_arch(options.get_training_parser(), [
        "data", "--task", "sentence_prediction", "--criterion", "sentence_prediction", "--arch", "roberta_base",
        "--num-classes", "2", "--optimizer", "adam", "--lr", "1e-5", "--cpu"]))
    return entries, defaults, store, parsed

before = state()
from fairseq.utils import import_user_module
import_user_module(argparse.Namespace(user_dir=sys.argv[1]))
after = state()
for label, old, new in zip(("registry entries", "fairseq dataclass defaults", "Hydra ConfigStore", "stock command line"),
                           before, after):
    changed = sorted(k for k in old if k not in new or (new[k] is not old[k] and new[k] != old[k]))
    print(f"{label} changed: {changed}; added: {sorted(k for k in new if k not in old)}")
"""


@pytest.mark.unit
def test_activating_the_plugin_only_adds_registrations():
    """--user-dir fairseq_hire adds its components to fairseq's registries and Hydra's ConfigStore,
    replaces no entry, changes no default of fairseq's own configurations, and a stock RoBERTa
    command line parses to the same options."""
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", REGISTRATION, str(REPO / "fairseq_hire")],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    registry, defaults, store, parsed = result.stdout.splitlines()[-4:]
    plugin = ["arch.roberta_hire", "arch.roberta_hire_base", "arch.roberta_hire_large", "arch_config.roberta_hire",
              "arch_config.roberta_hire_base", "arch_config.roberta_hire_large", "bpe.hire_tokenizer",
              "bpe_config.hire_tokenizer", "criterion.sentence_prediction_hire", "criterion_config.sentence_prediction_hire", "model.roberta_hire", "task.sentence_prediction_hire",
              "task_config.sentence_prediction_hire"]
    assert registry.startswith("registry entries changed: []; added: ")
    assert set(plugin) <= set(eval(registry.split("added: ")[1]))
    assert defaults == "fairseq dataclass defaults changed: []; added: []"
    assert store == ("Hydra ConfigStore changed: []; added: ['bpe/hire_tokenizer.yaml', 'criterion/sentence_prediction_hire.yaml', "
                     "'task/sentence_prediction_hire.yaml']")
    assert parsed == "stock command line changed: []; added: []"
