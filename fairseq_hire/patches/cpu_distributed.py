"""fairseq's own distributed training on CPU processes over gloo: the plugin's one patch of fairseq.

On GPUs, scaling out is fairseq's standard path (DDP over NCCL, started by fairseq's
launcher, torchrun or SLURM; see docs/DISTRIBUTED.md) and nothing here changes it. For CPU
workers that same code path fails in a few places that assume one process per GPU. This
module patches exactly those places, so that the multi-process code (process groups,
sharded batches, DDP gradient averaging, the checkpoint broadcast, the all-gather of
validation predictions) runs, and can be tested, with ``--cpu --distributed-backend gloo``.

When: never at import. ``install()`` is called when fairseq's argument parser adds the options
of the plugin's criterion, ``sentence_prediction_hire``: in fairseq-train (and each process of
``torchrun -m fairseq_cli.train``) running the plugin's recipe, before fairseq works out the
distributed setup; workers fairseq's launcher spawns on CPU install the patches themselves
(patch 2). The patches act only inside a plugin run (``in_plugin_run``: fairseq's
``call_main`` for a configuration whose task or criterion is ``sentence_prediction_hire``, and
the workers it spawns), and there only where the run is distributed over CPU workers, which
fairseq would fail: a single-process run, a run on GPUs (no ``--cpu``, CUDA visible), and any
run of other components, also in a process where a plugin run was set up, go through
fairseq's code unchanged. ``fairseq-hydra-train`` parses no command line (and imports the user
dir only inside each worker): on CPU, distribute with fairseq-train.

Each patch is a wrapper around one name fairseq calls, marked so that installing twice is a
no-op. Line numbers are fairseq main (fairseq-fixed 0.12.3.1).

1. ``fairseq.distributed.utils.infer_init_method`` (utils.py:46), when no CUDA device is
   visible:

   - under torchrun (``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK`` set) fairseq
     computes ``device_id = rank % torch.cuda.device_count()`` (utils.py:91), a
     ZeroDivisionError. Worse, the default ``--distributed-world-size`` is the GPU count,
     1 on CPU, and fairseq returns before reading torchrun's variables (utils.py:54): each
     process then trains alone on all the data and they all write the same checkpoints.
     The wrapper takes world size and rank from torchrun, ``init_method=env://``, and
     ``device_id=0`` (a CPU process has no device to pick).
   - with ``--distributed-world-size N`` and no init method (fairseq starts the processes)
     ``_infer_single_node_init`` asserts ``N <= torch.cuda.device_count()`` (utils.py:160)
     and sets the number of processes to start to ``min(device_count, N) = 0``
     (utils.py:74). The wrapper picks the port and ``tcp://localhost:PORT`` as fairseq
     does and sets ``distributed_num_procs = N``.

   Everything else (an explicit ``--distributed-init-method``, world size 1, SLURM, TPU,
   pipeline parallelism) goes to fairseq unchanged.

2. ``fairseq.distributed.utils.call_main`` (utils.py:368), for CPU workers (``--cpu``, or
   no CUDA device visible). It infers the init method as patch 1 does, also for a ``--cpu``
   run on a machine with fewer GPUs than workers, where fairseq's assertion would fail.
   When fairseq starts the workers itself it spawns
   ``min(torch.cuda.device_count(), world_size)`` processes (utils.py:382), none without a
   GPU; the wrapper spawns ``--distributed-num-procs`` (set by the inference; left at its
   CPU default of 1 with an explicit init method, it means the whole world size on this
   machine), with ranks ``--distributed-rank + i`` as fairseq assigns them. Each spawned
   process installs these patches before it runs fairseq's ``distributed_main``, so it does
   not depend on how the plugin was imported, and, as torchrun does, uses one thread unless
   ``OMP_NUM_THREADS`` says otherwise (two processes each using both cores of a 2-core
   machine ran about 10x slower than with one thread each).

3. ``torch.nn.parallel.DistributedDataParallel`` as called by
   ``fairseq.models.distributed_fairseq_model.DistributedFairseqModel``
   (distributed_fairseq_model.py:60) for ``--ddp-backend pytorch_ddp`` (the default, alias
   ``c10d``): fairseq passes ``device_ids=[args.device_id]`` and ``output_device``, which
   DDP rejects for a module on CPU (it requires ``device_ids=None`` there). The name
   ``DistributedDataParallel`` in that module is replaced by a function that drops those two
   arguments when every parameter of the module is on CPU and otherwise builds DDP exactly
   as fairseq asked. ``--ddp-backend legacy_ddp`` (alias ``no_c10d``) runs on CPU as is.

4. ``fairseq.distributed.utils.all_gather_list`` (utils.py:595), which the trainer uses to
   gather the logging outputs of criteria whose outputs cannot be summed
   (trainer.py:1430) -- ours, since validation gathers every prediction to compute
   MCC / F1 over the whole dev set. fairseq allocates its buffer with
   ``torch.cuda.ByteTensor`` and pins host memory (utils.py:620), both unavailable without
   CUDA. When no CUDA device is visible the wrapper gathers the same list of picklable
   objects with ``torch.distributed.all_gather_object`` (one entry per rank, in rank
   order, as fairseq returns them).

(fairseq's checkpoint broadcast to ranks > 0 also needed a fix, not CPU-specific: its
``_TensorPlaceholder`` is allowlisted with the other checkpoint contents while a plugin run
loads its checkpoint, ``fairseq_hire.checkpoints.saving``.)
"""
import contextlib
import functools
import os
import random

import torch
import torch.distributed as dist

from ..checkpoints.loading import HOOK_MARK as MARK
from ..tasks.sentence_prediction_hire import TASK_NAME

TORCHRUN_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK")
PLUGIN_COMPONENT = TASK_NAME  # the registered name of the plugin's task, and of its criterion
plugin_run_depth = 0  # > 0 while a plugin run's call_main (or a worker it spawned) runs in this process


def names_plugin_component(cfg) -> bool:
    """Whether a run's configuration trains with the plugin's task or criterion."""
    return any(getattr(getattr(cfg, section, None), "_name", None) == PLUGIN_COMPONENT
               for section in ("task", "criterion"))


@contextlib.contextmanager
def in_plugin_run():
    """Inside, the patches act (on CPU workers); outside, every call goes to fairseq as it is."""
    global plugin_run_depth
    plugin_run_depth += 1
    try:
        yield
    finally:
        plugin_run_depth -= 1


def cuda_visible() -> bool:
    """Whether fairseq's GPU code paths can run (patches 1 and 4 defer to fairseq if so)."""
    return torch.cuda.device_count() > 0


def marked(wrapper, original):
    functools.update_wrapper(wrapper, original)
    setattr(wrapper, MARK, True)
    return wrapper


# 1. infer_init_method ------------------------------------------------------------------


def infer_cpu_init_method(cfg, force_distributed=False) -> bool:
    """fairseq's infer_init_method for CPU workers; False where it is left to fairseq."""
    if cfg.distributed_init_method is not None or cfg.tpu or cfg.pipeline_model_parallel:
        return False
    torchrun = all(name in os.environ for name in TORCHRUN_VARIABLES)
    if torchrun and max(int(os.environ["WORLD_SIZE"]), cfg.distributed_world_size) > 1:
        # torchrun: its variables define the world, whatever the GPU-count default says
        cfg.distributed_init_method = "env://"
        cfg.distributed_world_size = int(os.environ["WORLD_SIZE"])
        cfg.distributed_rank = int(os.environ["RANK"])
        cfg.device_id = 0
        cfg.distributed_no_spawn = True
        return True
    slurm = "SLURM_STEP_NODELIST" in os.environ or "SLURM_JOB_NODELIST" in os.environ
    if cfg.distributed_world_size == 1 or slurm or (cfg.distributed_port > 0 and not force_distributed):
        return False
    # fairseq starts the workers on this machine: _infer_single_node_init without the GPU count
    if cfg.distributed_port <= 0:
        cfg.distributed_port = random.randint(10000, 60000)
    cfg.distributed_init_method = f"tcp://localhost:{cfg.distributed_port}"
    if not cfg.distributed_no_spawn:
        cfg.distributed_num_procs = cfg.distributed_world_size
    return True


def cpu_infer_init_method(infer_init_method):
    def wrapper(cfg, force_distributed=False):
        # no CUDA here: fairseq's own inference divides by / asserts on the GPU count
        if plugin_run_depth and not cuda_visible() and infer_cpu_init_method(cfg, force_distributed):
            return None
        return infer_init_method(cfg, force_distributed)

    return marked(wrapper, infer_init_method)


# 2. call_main ----------------------------------------------------------------------------


def spawned_worker(index, main, cfg, kwargs):
    """What a process spawned on CPU runs: the patches, then fairseq's distributed_main."""
    install()
    if "OMP_NUM_THREADS" not in os.environ:
        # as torchrun does: N processes each using every core slow each other down badly
        torch.set_num_threads(1)
    from fairseq.distributed import utils as distributed_utils

    with in_plugin_run():
        distributed_utils.distributed_main(index, main, cfg, kwargs)


def cpu_call_main(call_main):
    def wrapper(cfg, main, **kwargs):
        if not names_plugin_component(cfg) or cfg.common.tpu or (cuda_visible() and not cfg.common.cpu):
            return call_main(cfg, main, **kwargs)
        with in_plugin_run():
            return cpu_workers_main(call_main, cfg, main, kwargs)

    return marked(wrapper, call_main)


def cpu_workers_main(call_main, cfg, main, kwargs):
    """A plugin run on CPU workers (--cpu, or no CUDA at all): the init method inferred as for
    CPU, whatever GPUs are present, and the workers spawned on this machine."""
    training = cfg.distributed_training
    if training.distributed_init_method is None:
        infer_cpu_init_method(training)
    if training.distributed_init_method is None or training.distributed_no_spawn:
        return call_main(cfg, main, **kwargs)
    # fairseq would spawn min(torch.cuda.device_count(), world_size) processes: 0 on CPU
    nprocs = training.distributed_num_procs
    if not nprocs or nprocs <= 1:
        nprocs = training.distributed_world_size
    kwargs["start_rank"] = training.distributed_rank
    training.distributed_rank = None  # assigned as start_rank + index in distributed_main
    torch.multiprocessing.spawn(fn=spawned_worker, args=(main, cfg, kwargs), nprocs=nprocs, join=True)
    return None


# 3. DDP for modules on CPU ---------------------------------------------------------------


def cpu_module_ddp(ddp_class):
    def wrapper(module, *args, **kwargs):
        if plugin_run_depth and all(p.device.type == "cpu" for p in module.parameters()):
            # DDP accepts no device_ids / output_device for a CPU module
            kwargs.pop("device_ids", None)
            kwargs.pop("output_device", None)
        return ddp_class(module, *args, **kwargs)

    functools.update_wrapper(wrapper, ddp_class, updated=())
    setattr(wrapper, MARK, True)
    return wrapper


# 4. all_gather_list ----------------------------------------------------------------------


def cpu_all_gather_list(all_gather_list):
    def wrapper(data, group=None, max_size=16384):
        if not plugin_run_depth or cuda_visible():
            return all_gather_list(data, group=group, max_size=max_size)
        from fairseq import utils
        from fairseq.distributed import utils as distributed_utils

        if group is None:
            group = distributed_utils.get_global_group()
        gathered = [None] * distributed_utils.get_world_size(group=group)
        dist.all_gather_object(gathered, utils.move_to_cpu(data), group=group)
        return gathered

    return marked(wrapper, all_gather_list)


# install ---------------------------------------------------------------------------------


def install() -> None:
    """Install patches 1-4 (each once); GPU runs go through them to fairseq unchanged."""
    from fairseq.distributed import utils as distributed_utils
    from fairseq.models import distributed_fairseq_model

    patches = (
        (distributed_utils, "infer_init_method", cpu_infer_init_method),
        (distributed_utils, "call_main", cpu_call_main),
        (distributed_utils, "all_gather_list", cpu_all_gather_list),
        (distributed_fairseq_model, "DistributedDataParallel", cpu_module_ddp),
    )
    for module, name, patch in patches:
        original = getattr(module, name)
        if not getattr(original, MARK, False):
            setattr(module, name, patch(original))
