"""fairseq's own distributed training, run as two CPU processes over gloo
(fairseq_hire/patches/cpu_distributed.py, docs/DISTRIBUTED.md).

The claim tested: a 2-process data-parallel run ends with the same parameters as a 1-process
run with the same global batch, and its validation covers the whole dev set.

What "the same global batch" means in fairseq. ``EpochBatchIterator`` builds one list of
batches (``batch_by_size`` with ``--batch-size`` examples each, over the length-sorted,
seed-shuffled dataset), shuffles that list of batches with ``seed + epoch``, and only then
shards it: worker r of W gets batches r, r + W, r + 2W, ... (``ShardedIterator``), and
``--update-freq F`` groups F consecutive batches of one worker into an update
(``GroupedIterator``). So with ``--batch-size 8``:

- 2 workers, update-freq 1: update k is batch 2k (worker 0) + batch 2k+1 (worker 1);
- 1 worker,  update-freq 2: update k is batches 2k and 2k+1 -- the same 16 examples.

A single process with ``--batch-size 16`` is *not* the equivalent: its batches are other
pairs of 8-example groups (16 consecutive examples of the sorted order, shuffled as units),
and its parameters end up ~6e-4 away from the 2-process run's (measured), against ~1.5e-8
for update-freq 2. The gradients agree too: DDP averages the two workers' summed-loss
gradients and the trainer multiplies by W / (total sample size of the update), which is what
one process does after accumulating two batches (sum / total sample size); only the order of
float additions differs. 160 training rows make 20 batches, 10 updates, one epoch, in both
runs. Dropout is 0, so nothing random differs between workers.

The runs are plain fairseq-train (``python -m fairseq_cli.train``) with the plugin's recipe:
parsing the command line, fairseq adds the options of the plugin's criterion, which installs
the patches before fairseq works out the distributed setup. One thread per process, as
torchrun does.
"""
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from conftest import REPO
from fairseq_hire.patches import cpu_distributed
from fairseq_hire.checkpoints.loading import safe_torch_load
from fairseq_setup import tiny_arch_flags

ATOL = 1e-5
FAIRSEQ_TRAIN = ["-m", "fairseq_cli.train"]
LAUNCHER = [sys.executable, *FAIRSEQ_TRAIN]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "--no-python", sys.executable, *FAIRSEQ_TRAIN]
GLOO = ["--distributed-world-size", "2", "--distributed-backend", "gloo"]
# a fairseq-train log record: "| valid | {...}"
RECORD = re.compile(r"\| (train_inner|valid) \| (\{.*\})\s*$")


def train_args(data, pretrained, save_dir, *extra):
    return [
        str(data), "--user-dir", str(REPO / "fairseq_hire"), "--finetune-from-model", str(pretrained),
        "--arch", "roberta_hire_base", *tiny_arch_flags(), "--task", "sentence_prediction_hire",
        "--criterion", "sentence_prediction_hire", "--num-classes", "2", "--init-token", "0",
        "--separator-token", "2", "--max-positions", "512", "--max-tokens", "4400",
        "--required-batch-size-multiple", "1", "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)",
        "--adam-eps", "1e-6", "--weight-decay", "0.1", "--lr", "1e-4", "--lr-scheduler", "polynomial_decay",
        "--total-num-update", "40", "--warmup-updates", "4", "--max-update", "10",
        "--dropout", "0", "--attention-dropout", "0", "--find-unused-parameters", "--cpu", "--seed", "1",
        "--save-dir", str(save_dir), "--no-epoch-checkpoints",
        "--best-checkpoint-metric", "accuracy", "--maximize-best-checkpoint-metric",
        "--log-format", "json", "--log-interval", "1", *extra,
    ]


def run(command):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    return log


def records(log, kind):
    found = []
    for line in log.splitlines():
        match = RECORD.search(line)
        if match and match.group(1) == kind:
            found.append(json.loads(match.group(2)))
    return found


def final_parameters(save_dir):
    return safe_torch_load(save_dir / "checkpoint_last.pt")["model"]


def max_parameter_difference(a, b):
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def one_process(rte_bin, tiny_pretrained, tmp_path_factory):
    """1 process, --batch-size 8 --update-freq 2: global batch 16, as two workers of 8."""
    save_dir = tmp_path_factory.mktemp("one_process")
    log = run([*LAUNCHER, *train_args(rte_bin, tiny_pretrained, save_dir, "--batch-size", "8", "--update-freq", "2")])
    return save_dir, log


def check_matches_one_process(one_process, save_dir, log):
    one_dir, one_log = one_process
    assert "distributed init (rank 1)" in log
    difference = max_parameter_difference(final_parameters(one_dir), final_parameters(save_dir))
    print(f"max |parameter difference|, 1 vs 2 processes: {difference:.3g}")
    assert difference <= ATOL

    # every update saw the same 16 examples: same loss, accuracy and batch size, update by update
    keys = ("num_updates", "bsz", "loss", "accuracy")
    one_updates = [{k: r[k] for k in keys} for r in records(one_log, "train_inner")]
    two_updates = [{k: r[k] for k in keys} for r in records(log, "train_inner")]
    assert len(one_updates) == 10 and two_updates == one_updates
    assert {u["bsz"] for u in two_updates} == {"16"}

    # validation gathers both workers' predictions: the metrics are over the whole dev set
    (one_valid,) = records(one_log, "valid")
    (two_valid,) = records(log, "valid")
    for key in ("valid_loss", "valid_accuracy", "valid_mcc"):
        assert two_valid[key] == one_valid[key], key
    # each validation step gathers a batch of 8 from each worker: 10 steps of 16 vs 20 of 8
    assert (float(one_valid["valid_bsz"]), float(two_valid["valid_bsz"])) == (8, 16)


def test_two_gloo_processes_match_one_process(one_process, rte_bin, tiny_pretrained, tmp_path):
    """fairseq's launcher: `--distributed-world-size 2 --distributed-backend gloo --cpu`
    (fairseq picks the port, spawns both workers; rank 1 receives the fine-tuning start
    checkpoint through fairseq's broadcast)."""
    save_dir = tmp_path / "two_processes"
    log = run([*LAUNCHER, *train_args(rte_bin, tiny_pretrained, save_dir, "--batch-size", "8", *GLOO)])
    check_matches_one_process(one_process, save_dir, log)


def test_torchrun_matches_one_process(one_process, rte_bin, tiny_pretrained, tmp_path):
    """torchrun starts the workers; fairseq reads WORLD_SIZE / RANK from its environment."""
    save_dir = tmp_path / "torchrun"
    command = [*TORCHRUN, *train_args(rte_bin, tiny_pretrained, save_dir, "--batch-size", "8",
                                      "--distributed-backend", "gloo")]
    check_matches_one_process(one_process, save_dir, run(command))


# the patches themselves, in process ---------------------------------------------------------


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return "fairseq"


def distributed_cfg(**overrides):
    from fairseq.dataclass.configs import FairseqConfig
    from omegaconf import OmegaConf

    cfg = OmegaConf.structured(FairseqConfig()).distributed_training  # tpu interpolates common.tpu
    cfg.distributed_world_size = 2
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def full_cfg(cpu, components=("sentence_prediction_hire", "sentence_prediction_hire")):
    """A run's configuration; by default the plugin's (its task and criterion)."""
    cfg = type("Cfg", (), {})()
    cfg.distributed_training = distributed_cfg()
    cfg.common = type("Common", (), {"tpu": False, "cpu": cpu})()
    cfg.task, cfg.criterion = (type("Component", (), {"_name": name})() for name in components)
    return cfg


def launcher_free_machine(monkeypatch, gpus):
    """A machine with `gpus` CUDA devices, started by no launcher (no torchrun or SLURM
    variables); torch's spawn recorded instead of run: the recorder."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    for name in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "SLURM_JOB_NODELIST", "SLURM_STEP_NODELIST"):
        monkeypatch.delenv(name, raising=False)
    spawn = Recorder()
    monkeypatch.setattr(torch.multiprocessing, "spawn", spawn)
    return spawn


def test_install_twice_is_a_no_op(monkeypatch):
    """install() runs whenever fairseq's parser adds the criterion's options, so possibly twice in
    one process: the second changes nothing, and each name fairseq calls hands its call straight to
    what the name was before the first install (fairseq's function, torch's DDP: the gloo runs
    above build real DDP through it). Recorders stand in for those here, and monkeypatch puts the
    names back afterwards."""
    from fairseq.distributed import utils as distributed_utils
    from fairseq.models import distributed_fairseq_model

    names = [(distributed_utils, "infer_init_method"), (distributed_utils, "call_main"),
             (distributed_utils, "all_gather_list"), (distributed_fairseq_model, "DistributedDataParallel")]
    originals = {name: Recorder() for _, name in names}
    for module, name in names:
        monkeypatch.setattr(module, name, originals[name])
    cpu_distributed.install()
    before = [getattr(module, name) for module, name in names]
    cpu_distributed.install()
    assert [getattr(module, name) for module, name in names] == before

    # a GPU machine: every call reaches the original once, with its arguments as fairseq gave them
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    cfg, main = full_cfg(cpu=False), print
    assert distributed_utils.infer_init_method(cfg.distributed_training) == "fairseq"
    assert distributed_utils.call_main(cfg, main) == "fairseq"
    assert distributed_utils.all_gather_list({"x": 1}) == "fairseq"
    # a module on CPU: DDP is built without the device arguments DDP refuses for it
    module = torch.nn.Linear(2, 2)
    with cpu_distributed.in_plugin_run():
        assert distributed_fairseq_model.DistributedDataParallel(module, device_ids=[0], output_device=0) == "fairseq"
    assert {name: recorder.calls for name, recorder in originals.items()} == {
        "infer_init_method": [((cfg.distributed_training, False), {})],
        "call_main": [((cfg, main), {})],
        "all_gather_list": [(({"x": 1},), {"group": None, "max_size": 16384})],
        "DistributedDataParallel": [((module,), {})],
    }


def test_with_a_gpu_every_patch_calls_fairseq(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for patch, args in ((cpu_distributed.cpu_infer_init_method, (distributed_cfg(),)),
                        (cpu_distributed.cpu_all_gather_list, ({"x": 1},))):
        original = Recorder()
        assert patch(original)(*args) == "fairseq" and len(original.calls) == 1

    # call_main, GPU workers: handed to fairseq with the config untouched
    original = Recorder()
    cfg = full_cfg(cpu=False)
    assert cpu_distributed.cpu_call_main(original)(cfg, print) == "fairseq"
    assert cfg.distributed_training.distributed_init_method is None


def test_cpu_workers_on_a_gpu_machine(monkeypatch):
    """--cpu with more workers than GPUs: fairseq would assert world size <= GPU count and
    spawn min(GPU count, world size) processes; the wrapper spawns the whole world."""
    spawn = launcher_free_machine(monkeypatch, gpus=1)
    original = Recorder()
    cfg = full_cfg(cpu=True)
    assert cpu_distributed.cpu_call_main(original)(cfg, print) is None and not original.calls
    ((_, kwargs),) = spawn.calls
    assert kwargs["fn"] is cpu_distributed.spawned_worker and kwargs["nprocs"] == 2
    assert kwargs["args"][2]["start_rank"] == 0
    assert cfg.distributed_training.distributed_init_method.startswith("tcp://localhost:")


def test_outside_a_plugin_run_every_patch_calls_fairseq(monkeypatch):
    """The patches stay installed in a process where a plugin command line was parsed: a run of
    fairseq's own components there, on CPU workers, is still stock fairseq's (its assertion on the
    GPU count included), and so is a call outside any run."""
    spawn = launcher_free_machine(monkeypatch, gpus=0)
    original = Recorder()
    cfg = full_cfg(cpu=True, components=("sentence_prediction", "sentence_prediction"))
    assert cpu_distributed.cpu_call_main(original)(cfg, print) == "fairseq"
    assert original.calls == [((cfg, print), {})] and not spawn.calls
    assert cfg.distributed_training.distributed_init_method is None  # left for fairseq to infer

    for patch, args in ((cpu_distributed.cpu_infer_init_method, (distributed_cfg(),)),
                        (cpu_distributed.cpu_all_gather_list, ({"x": 1},))):
        original = Recorder()
        assert patch(original)(*args) == "fairseq" and len(original.calls) == 1
    ddp = Recorder()
    cpu_module = torch.nn.Linear(2, 2)
    cpu_distributed.cpu_module_ddp(ddp)(cpu_module, device_ids=[0], output_device=0)
    assert ddp.calls == [((cpu_module,), {"device_ids": [0], "output_device": 0})]


def test_ddp_keeps_device_ids_for_gpu_modules_only():
    ddp = Recorder()
    wrapper = cpu_distributed.cpu_module_ddp(ddp)
    cpu_module = torch.nn.Linear(2, 2)
    with cpu_distributed.in_plugin_run():
        wrapper(cpu_module, device_ids=[0], output_device=0, find_unused_parameters=True)
    assert ddp.calls[-1] == ((cpu_module,), {"find_unused_parameters": True})

    class OnGpu(torch.nn.Module):
        def parameters(self, recurse=True):
            yield type("P", (), {"device": torch.device("cuda", 0)})()

    gpu_module = OnGpu()
    with cpu_distributed.in_plugin_run():
        wrapper(gpu_module, device_ids=[0], output_device=0)
    assert ddp.calls[-1] == ((gpu_module,), {"device_ids": [0], "output_device": 0})


def test_cpu_init_method_under_torchrun(monkeypatch):
    """The GPU-count default world size (1) must not hide torchrun's WORLD_SIZE."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    for name, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "WORLD_SIZE": "2", "RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    cfg = distributed_cfg(distributed_world_size=1)
    with cpu_distributed.in_plugin_run():
        cpu_distributed.cpu_infer_init_method(Recorder())(cfg)
    assert (cfg.distributed_init_method, cfg.distributed_world_size, cfg.distributed_rank,
            cfg.device_id, cfg.distributed_no_spawn) == ("env://", 2, 1, 0, True)


def test_cpu_init_method_for_fairseq_spawn(monkeypatch):
    launcher_free_machine(monkeypatch, gpus=0)
    cfg = distributed_cfg(distributed_world_size=3)
    with cpu_distributed.in_plugin_run():
        cpu_distributed.cpu_infer_init_method(Recorder())(cfg)
    assert cfg.distributed_init_method == f"tcp://localhost:{cfg.distributed_port}"
    assert 10000 <= cfg.distributed_port <= 60000 and cfg.distributed_num_procs == 3


CPU_LAUNCH = """
import os, sys
import torch
torch.cuda.device_count = lambda: 0  # a machine without CUDA
for name in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "SLURM_JOB_NODELIST", "SLURM_STEP_NODELIST"):
    os.environ.pop(name, None)
from fairseq import options
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.distributed import utils

spawned = []
torch.multiprocessing.spawn = lambda fn, args, nprocs, join: spawned.append(nprocs)

def started(task, criterion, arch):
    args = options.parse_args_and_arch(options.get_training_parser(), [
        sys.argv[1], "--user-dir", sys.argv[2], "--task", task, "--num-classes", "2",
        "--arch", arch, "--criterion", criterion, "--cpu", "--distributed-world-size", "2"])
    cfg = convert_namespace_to_omegaconf(args)
    try:
        utils.call_main(cfg, print)
    except AssertionError:  # fairseq: world size > GPU count
        return "fairseq refused"
    return f"{cfg.distributed_training.distributed_init_method} {spawned.pop()}"

print(started("sentence_prediction", "sentence_prediction", "roberta_base"))
print(started("sentence_prediction_hire", "sentence_prediction_hire", "roberta_hire_base"))
print(started("sentence_prediction", "sentence_prediction", "roberta_base"))
"""


def test_a_command_line_with_the_plugins_criterion_makes_fairseq_distribute_over_cpus(tmp_path):
    """fairseq-train --user-dir fairseq_hire (and torchrun -m fairseq_cli.train) needs no launcher:
    parsing a command line that names the plugin's criterion installs the patches, before fairseq
    infers the init method; importing the plugin (a command line without the criterion) does not,
    and a run of fairseq's own components started afterwards in the same process is stock
    fairseq's, which refuses more CPU workers than GPUs."""
    from fairseq_setup import write_task_dicts

    data = write_task_dicts(tmp_path / "RTE-bin")
    result = subprocess.run([sys.executable, "-c", CPU_LAUNCH, str(data), str(REPO / "fairseq_hire")],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    stock, plugin, stock_afterwards = result.stdout.splitlines()[-3:]
    assert stock == stock_afterwards == "fairseq refused"
    assert re.fullmatch(r"tcp://localhost:\d+ 2", plugin), plugin
