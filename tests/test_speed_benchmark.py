"""benchmarks/speed.py on a tiny encoder: the train-step and padding sections run on real RTE
batches and report what the README tables read (ratios, FLOP ratios, the GRU path)."""
import sys

import pytest
import torch

from conftest import REPO, real_glue_task_dir

sys.path.insert(0, str(REPO / "benchmarks"))
import speed  # noqa: E402
import speed_setup  # noqa: E402

TINY = dict(layers=2, embed_dim=32, ffn_dim=64, heads=2)


@pytest.fixture(scope="module")
def speed_work(tmp_path_factory):
    """One work folder for the module: RTE is binarised once."""
    return tmp_path_factory.mktemp("speed")


@pytest.fixture
def tiny_speed(speed_work, monkeypatch):
    monkeypatch.setitem(speed_setup.SIZES, "tiny", TINY)
    monkeypatch.setattr(speed_setup, "WORK", speed_work)
    monkeypatch.setattr(speed_setup, "GLUE", real_glue_task_dir("RTE").parent)
    return speed


def test_train_step_section(tiny_speed):
    results = tiny_speed.bench_train("tiny", torch.device("cpu"), ["stock", "hire", "hire-scalar-mix", "scalar-mix"],
                                     repeats=3, quick=True, half=False)
    assert {"B8xT128", "RTE batches"} <= set(results)
    rte = results["RTE batches"]
    assert rte["batches"] == 2 and 0 < rte["padding_fraction"] < 1
    rows = rte["configs"]
    assert rows["stock"]["ratio"] == 1.0 and rows["stock"]["flop_ratio"] == 1.0
    assert rows["hire"]["flop_ratio"] > rows["hire-scalar-mix"]["flop_ratio"] > rows["scalar-mix"]["flop_ratio"] >= 1.0
    for row in rows.values():
        # the ratio is the run's own medians, and the median of the paired ratios lies in their range
        assert row["ratio"] == pytest.approx(row["median_seconds"] / rows["stock"]["median_seconds"], rel=0.02, abs=2e-3)
        low, high = row["paired_ratio_range"]
        assert low <= row["paired_ratio_median"] <= high


def test_padding_section(tiny_speed):
    results = tiny_speed.bench_padding("tiny", torch.device("cpu"), repeats=1, half=False)
    rte = results["RTE"]
    assert rte["model_gru_path"] == "packed sequences"
    assert set(rte["seconds"]) == {"model", "same_path_over_padding", "naive_over_padding"}  # cuDNN packed: GPUs only
    assert rte["model_over_naive"] == pytest.approx(rte["seconds"]["model"] / rte["seconds"]["naive_over_padding"],
                                                    rel=0.01)
    assert rte["model_over_same_path_over_padding"] == pytest.approx(
        rte["seconds"]["model"] / rte["seconds"]["same_path_over_padding"], rel=0.01)


def test_flop_ratio_counts_hire_on_real_tokens_only():
    tokens = torch.full((2, 10), 1)  # pad everywhere but the first 4 and 10 positions
    tokens[0, :4] = 5
    tokens[1, :] = 5
    size = speed.SIZES["minilm"]
    real_macs = speed_setup.hire_macs(size, size["embed_dim"] // 2, speed_setup.HireOptions(), [4, 10])
    padded_macs = speed_setup.encoder_macs(size, [10, 10])
    assert speed.flop_ratio("hire", size, [tokens]) == pytest.approx(1 + real_macs / padded_macs)
    assert speed.flop_ratio("stock", size, [tokens]) == 1.0


def test_cpu_memory_probe_reports_its_own_peak():
    """Each probe is a fresh process and must report its own peak resident memory. Linux carries
    ru_maxrss over exec from the forked parent, which made every probe report the benchmark
    process's size: here the parent holds 2 GiB more than a MiniLM training step needs."""
    ballast = torch.ones(2**29)  # 2 GiB, touched
    stock = speed.peak_memory_cpu("stock", "minilm", "B8xT128")
    hire = speed.peak_memory_cpu("hire", "minilm", "B8xT128")
    assert ballast.sum() == 2**29
    assert stock < 2048, "the probe reported the parent's memory, not its own"
    assert hire > stock


class StubModel:
    def __init__(self, config):
        self.config = config


def steps_of_bench_train(speed_module, monkeypatch, batches, configs, repeats):
    """Every train_step bench_train takes, as (configuration, batch shapes), with stub models on
    one workload of these batches."""
    steps = []
    monkeypatch.setattr(speed_module, "build_model", lambda config, *args: StubModel(config))
    monkeypatch.setattr(speed_module, "workloads", lambda *args: {"RTE batches": batches})
    monkeypatch.setattr(speed_module, "train_step", lambda model, batches, device: steps.append(
        (model.config, [tuple(b.shape) for b in batches])))
    monkeypatch.setattr(speed_module, "flop_ratio", lambda *args: 1.0)
    speed_module.bench_train("tiny", torch.device("cpu"), configs, repeats=repeats, quick=True, half=False)
    return steps


def test_each_repeat_times_the_configurations_starting_one_later(tiny_speed, monkeypatch):
    """With a fixed order the stock model always ran first, and every light head timed below it."""
    configs = ["stock", "hire", "scalar-mix"]
    steps = steps_of_bench_train(tiny_speed, monkeypatch, [torch.ones(2, 4, dtype=torch.long)], configs, repeats=3)
    timed = [config for config, _ in steps[len(configs):]]  # after one warm-up step each
    assert timed[:9] == ["stock", "hire", "scalar-mix", "hire", "scalar-mix", "stock", "scalar-mix", "stock", "hire"]


def test_the_warm_up_runs_every_batch_shape_of_the_workload(tiny_speed, monkeypatch):
    """Warming up on the first batch alone left the other shapes' first pass inside a timed repeat."""
    shapes = [(2, 4), (3, 7), (1, 9)]
    configs = ["stock", "hire"]
    batches = [torch.ones(shape, dtype=torch.long) for shape in shapes]
    steps = steps_of_bench_train(tiny_speed, monkeypatch, batches, configs, repeats=2)
    assert steps[:len(configs)] == [(config, shapes) for config in configs]
