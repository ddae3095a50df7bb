"""finetune.py's budget is counted in updates, and one fairseq update takes --batch-size x workers x
--update-freq examples. Reckoned from --batch-size alone, `--batch-size 8 --update-freq 2` (the
small-memory row of docs/DISTRIBUTED.md) planned twice the updates the epochs hold: --max-epoch
stopped the run half-way, its learning rate never decayed to 0, and --train-size's floor of
MIN_SUBSET_UPDATES updates was not met (140 of 260). --skip-remainder-batch drops batches from
every epoch: reckoned without it, --max-epoch again stopped the run before its last update. On the
CPU, --fp16 and --bf16 are refused before anything runs: fairseq would stop with a traceback after
loading the model."""
import json
import math
import re
import sys

import pytest
import torch

from conftest import REPO
from fairseq_hire.workflow.finetune import MIN_SUBSET_UPDATES, build_command, build_parser, main
from test_restart import run_to_end, updates_of


def planned(rte_bin, tiny_pretrained, save_dir, *flags):
    args, passthrough = build_parser().parse_known_args(
        ["RTE", str(rte_bin), str(tiny_pretrained), str(save_dir), "--device", "cpu", *flags])
    command = build_command(args, passthrough)
    return {name: int(command[command.index(name) + 1])
            for name in ("--max-update", "--total-num-update", "--warmup-updates", "--max-epoch")}


@pytest.mark.unit
def test_the_budget_counts_updates_of_the_global_batch(rte_bin, tiny_pretrained, tmp_path):
    one_batch = planned(rte_bin, tiny_pretrained, tmp_path, "--train-size", "100", "--batch-size", "16")
    for flags in (["--batch-size", "8", "--update-freq", "2"], ["--batch-size", "8", "--update-freq=2"],
                  ["--batch-size", "4", "--update-freq", "2", "--distributed-world-size", "2"]):
        # 16 examples an update, as --batch-size 16: the same updates and epochs
        assert planned(rte_bin, tiny_pretrained, tmp_path, "--train-size", "100", *flags) == one_batch, flags
    assert one_batch["--max-update"] == one_batch["--max-epoch"] * math.ceil(100 / 16) >= MIN_SUBSET_UPDATES
    # 32 examples an update: half the updates per epoch, the floor met with more epochs
    doubled = planned(rte_bin, tiny_pretrained, tmp_path, "--train-size", "100", "--update-freq", "2")
    assert doubled["--max-update"] == doubled["--max-epoch"] * math.ceil(100 / 32) >= MIN_SUBSET_UPDATES
    # GLUE's budget in updates (RTE: 2,036 at batch 16) follows the examples per update
    assert planned(rte_bin, tiny_pretrained, tmp_path, "--batch-size", "8", "--update-freq", "2")["--max-update"] == 2036
    assert planned(rte_bin, tiny_pretrained, tmp_path, "--distributed-world-size", "2")["--total-num-update"] == 1018


@pytest.mark.unit
@pytest.mark.parametrize("flags, message", [
    (["--update-freq", "2,4"], r"--update-freq 2,4: expected one positive integer"),
    (["--update-freq", "0"], r"--update-freq 0: expected one positive integer"),
    (["--update-freq", "x"], r"--update-freq x: expected one positive integer"),
    (["--distributed-world-size", "0"], r"--distributed-world-size 0: expected a positive integer"),
    (["--bogus-flag", "3"], r"fairseq-train refuses these flags: unrecognized arguments: --bogus-flag 3"),
    (["--train-subset", "foo"], r"fairseq cannot load or batch its training split 'foo': could not find dataset"),
    (["--max-tokens", "5"], r"every training row is longer than a batch may be \(--max-tokens 5, --max-positions"),
    (["--skip-remainder-batch", "--train-size", "10"], r"drops each worker's last batch, full or not: 10 training examples in batches of 16 over 1 worker\(s\) "
                                                      r"leave fewer than --update-freq 1 batches a worker, so no update"),
    (["--fp16"], r"--fp16: fairseq's fp16 optimizer needs CUDA, and this run trains on the CPU"),
    (["--bf16"], r"--bf16: fairseq trains in bfloat16 on CUDA or a TPU only"),
    (["--max-positions", "128"], r"--max-positions 128: \S+ holds an encoder built with --max-positions 512; expected "
                                 r"its own .* \(cut long rows with glue_prep --truncate-to instead\)"),
    (["--encoder-layers=3"], r"--encoder-layers 3: \S+ holds an encoder built with --encoder-layers 2"),
    (["--max-positions"], r"fairseq-train refuses these flags: argument --max-positions: expected one argument"),
    (["--save-dir=elsewhere"], r"--save-dir: finetune.py takes the save dir as its SAVE_DIR argument"),
    (["--encoder-normalize-before"], r"--encoder-normalize-before: \S+ holds an encoder built with no "
                                     r"--encoder-normalize-before"),
    (["--untie-weights-roberta"], r"--untie-weights-roberta: \S+ holds an encoder built with no --untie-weights-roberta"),
    (["--memory-efficient-bf16"], r"--memory-efficient-bf16: fairseq trains in bfloat16 on CUDA or a TPU only"),
])
def test_flags_the_budget_or_the_cpu_cannot_take_are_refused_in_one_line(rte_bin, tiny_pretrained, tmp_path,
                                                                         capsys, flags, message):
    with pytest.raises(ValueError, match=message):
        planned(rte_bin, tiny_pretrained, tmp_path, *flags)
    assert main(["RTE", str(rte_bin), str(tiny_pretrained), str(tmp_path / "save"), "--device", "cpu",
                 "--train-size", "100", *flags]) != 0
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("finetune: error: ") and re.search(message, last) and not (tmp_path / "save").exists()
    # the half-precision flags fairseq trains with on the CPU pass
    planned(rte_bin, tiny_pretrained, tmp_path, "--memory-efficient-fp16")
    planned(rte_bin, tiny_pretrained, tmp_path, "--fp16", "--memory-efficient-fp16")
    planned(rte_bin, tiny_pretrained, tmp_path, "--amp")
    planned(rte_bin, tiny_pretrained, tmp_path, "--max-positions", "512", "--encoder-layernorm-eps", "0.00001")
    # an epsilon the checkpoint does not record (the original releases; a checkpoint converted elsewhere) is the user's
    planned(rte_bin, tiny_pretrained, tmp_path, "--encoder-layernorm-eps", "1e-12")


@pytest.mark.parametrize("flags, updates_per_epoch", [
    ([], math.ceil(160 / 16)),
    # each epoch's last batch dropped, then the last short group: (20 - 1) // 2
    (["--skip-remainder-batch"], 9),
    # batches of at most 256 tokens (the longest row has about 205): fairseq splits batches of
    # long rows, so an epoch has more updates than 160 rows at 8 x 2 make
    (["--max-tokens", "256"], None),
])
def test_a_run_with_update_freq_trains_its_budget_to_a_learning_rate_of_0(rte_bin, tiny_pretrained, tmp_path,
                                                                         flags, updates_per_epoch):
    """160 rows, 2 epochs at 8 x 2 examples an update: 20 updates, the last at learning rate 0
    (before: --max-update 40, stopped by --max-epoch at 20 with the rate half-way); 18 with
    --skip-remainder-batch (before: 20 planned, stopped at 18); with batches split at --max-tokens,
    the updates fairseq makes of them (before: 20 planned, the run stopped in its second epoch)."""
    command = [sys.executable, str(REPO / "scripts" / "finetune.py"), "RTE", str(rte_bin), str(tiny_pretrained),
               str(tmp_path), "--epochs", "2", "--batch-size", "8", "--device", "cpu", "--seed", "1",
               "--update-freq", "2", "--log-format", "json", "--log-interval", "1", *flags]
    log = run_to_end(command)
    planned_updates = int(next(line for line in log.splitlines() if "fairseq_cli.train" in line)
                          .split("--max-update ")[1].split()[0])
    assert planned_updates == updates_of(tmp_path / "checkpoint_last.pt")
    assert planned_updates == 2 * updates_per_epoch if updates_per_epoch else planned_updates > 2 * math.ceil(160 / 16)
    last_epoch = [json.loads(line[line.index("{"):]) for line in log.splitlines()
                  if "| train |" in line and "{" in line][-1]
    assert int(last_epoch["train_num_updates"]) == planned_updates and float(last_epoch["train_lr"]) == 0
    assert int(last_epoch["epoch"]) == 2  # every epoch trained, none cut by --max-update


@pytest.mark.unit
def test_without_a_world_size_the_workers_are_fairseqs_default_the_visible_gpus_on_any_device(monkeypatch):
    """fairseq's --distributed-world-size defaults to the GPU count, also for a --cpu run (which
    then starts that many CPU workers): counting one worker on the CPU planned twice the updates."""
    from fairseq_hire.workflow.passthrough import update_shape

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert update_shape([]).batches == 2 and update_shape(["--update-freq", "3"]).batches == 6
    assert update_shape(["--distributed-world-size", "1"]).batches == 1


class Rows(torch.utils.data.Dataset):
    def __init__(self, count):
        self.count = count

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        return index

    def collater(self, samples):
        return samples


@pytest.mark.unit
def test_updates_per_epoch_is_what_fairseqs_own_iterators_yield():
    """UpdateShape's count against fairseq's EpochBatchIterator (sharded over the workers) and
    GroupedIterator (--update-freq), with and without --skip-remainder-batch, as train.py uses them."""
    import itertools

    from fairseq.data import iterators

    from fairseq_hire.workflow.passthrough import UpdateShape, update_shape

    for rows, batch, workers, freq, skip in itertools.product([1, 5, 16, 17, 100], [1, 4, 16], [1, 2, 3], [1, 2, 3],
                                                              [False, True]):
        batches = [list(range(i, min(i + batch, rows))) for i in range(0, rows, batch)]
        epoch = iterators.EpochBatchIterator(Rows(rows), Rows(rows).collater, batches, num_shards=workers,
                                             shard_id=0, skip_remainder_batch=skip)
        grouped = iterators.GroupedIterator(epoch.next_epoch_itr(shuffle=False), freq, skip_remainder_batch=skip)
        expected = sum(1 for _ in grouped)
        assert UpdateShape(workers, freq, skip).updates_per_epoch(rows, batch) == expected, (rows, batch, workers,
                                                                                           freq, skip)
    assert update_shape(["--skip-remainder-batch", "--distributed-world-size=3"]) == UpdateShape(3, 1, True)


@pytest.mark.unit
def test_a_dry_run_plans_the_budget_the_run_gets_and_writes_nothing(rte_bin, tiny_pretrained, tmp_path):
    """The batches are counted on the rows the run trains on: a dry run with --train-size draws its
    sample to count it and writes nothing (it counted the full set's rows before, so the
    budget it printed, which benchmarks/regime_costs.py plans from, was not the run's)."""
    flags = ("--train-size", "100", "--batch-size", "8", "--max-tokens", "256", "--epochs", "40")
    dry = planned(rte_bin, tiny_pretrained, tmp_path / "save", *flags, "--dry-run")
    assert not (tmp_path / "save").exists()
    assert dry == planned(rte_bin, tiny_pretrained, tmp_path / "save", *flags)
    assert dry["--max-epoch"] == 40 and dry["--max-update"] > 40 * math.ceil(100 / 8)  # batches split at 256 tokens


@pytest.mark.unit
@pytest.mark.parametrize("damage, message", [
    ("corrupt input1/train.idx", r"input1/train.idx: cannot read this fairseq indexed dataset: AssertionError"),
    ("truncate input0/train.idx", r"input0/train.idx: cannot read this fairseq indexed dataset"),
    ("remove input1/train.bin", r"input1/train.idx: not a fairseq indexed dataset \(or its .bin is missing\)"),
    ("remove label/train", r"label/train.bin: missing; expected the label of each of input0/train's 160 rows"),
    ("remove input1/train", r"the valid split has 2 input\(s\) and the train split 1"),
])
def test_binaries_fairseq_would_misread_are_refused_in_one_line(rte_bin, tiny_pretrained, tmp_path, capsys,
                                                                 damage, message):
    """A damaged index was a traceback; a split without its labels or its second sentence passed
    and trained without them (fairseq loads what it finds: the premise alone for RTE), or crashed
    mid-run on the missing targets."""
    import shutil

    data = tmp_path / "RTE-bin"
    shutil.copytree(rte_bin, data)
    action, name = damage.split(" ", 1)
    if action == "corrupt":
        with open(data / name, "r+b") as f:
            f.write(b"XXXXXXXXX")
    elif action == "truncate":
        with open(data / name, "r+b") as f:
            f.truncate(20)
    else:
        for path in data.glob(name + "*") if "." not in name else [data / name]:
            path.unlink()
    for dry_run in (["--dry-run"], []):
        assert main(["RTE", str(data), str(tiny_pretrained), str(tmp_path / "save"), "--device", "cpu",
                     "--epochs", "2", *dry_run]) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith("finetune: error: ") and re.search(message, last), last
        assert not (tmp_path / "save").exists()


@pytest.mark.unit
@pytest.mark.parametrize("lines", [59, 61])
def test_regression_targets_of_another_length_are_refused_in_one_line(tiny_pretrained, tmp_path, capsys, lines):
    """A regression split's targets are text lines (label/<split>.label): one line short or too
    many passed, and fairseq stopped at startup on its datasets' different lengths."""
    from conftest import real_glue_task_dir, run_glue_prep

    data = run_glue_prep(real_glue_task_dir("STS-B"), "STS-B", tmp_path / "glue", "--max-rows", "60", "--workers", "1")
    targets = data / "label" / "valid.label"
    rows = targets.read_text().splitlines()
    assert len(rows) == 60
    targets.write_text("\n".join((rows * 2)[:lines]) + "\n")
    assert main(["STS-B", str(data), str(tiny_pretrained), str(tmp_path / "save"), "--device", "cpu", "--dry-run"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == f"finetune: error: {targets}: {lines} lines; expected 60, one per row of input0/valid"


TRAINER_BATCHES = """
import json, sys
from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.trainer import Trainer

args = options.parse_args_and_arch(options.get_training_parser(), sys.argv[1:])
cfg = convert_namespace_to_omegaconf(args)
task = tasks.setup_task(cfg.task)
task.load_dataset(cfg.dataset.train_subset, combine=True, epoch=1)
model, criterion = task.build_model(cfg.model), task.build_criterion(cfg.criterion)
trainer = Trainer(cfg, task, model, criterion)
print(json.dumps([len(trainer.get_train_iterator(epoch, load_dataset=False).frozen_batches) for epoch in (1, 2, 3)]))
"""


@pytest.mark.parametrize("flags", [
    [],
    ["--update-ordered-indices-seed"],
    ["--batch-size", "8", "--max-tokens", "300", "--update-ordered-indices-seed"],
    ["--max-tokens", "500", "--required-batch-size-multiple", "8", "--seed", "3"],
])
def test_the_batches_counted_are_those_fairseqs_trainer_makes_in_every_epoch(rte_bin, tiny_pretrained, tmp_path, flags):
    """The budget counts one epoch's batches; fairseq's Trainer rebatches each epoch, with the seed
    plus the epoch under --update-ordered-indices-seed: the count must hold for every epoch."""
    import subprocess

    from fairseq_hire.workflow.epoch_batches import training_batches

    args, passthrough = build_parser().parse_known_args(
        ["RTE", str(rte_bin), str(tiny_pretrained), str(tmp_path / "save"), "--device", "cpu", *flags])
    train_arguments = build_command(args, passthrough)[3:]
    counted = training_batches(train_arguments)
    done = subprocess.run([sys.executable, "-c", TRAINER_BATCHES, *train_arguments], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [counted] * 3
