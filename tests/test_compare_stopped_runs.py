"""A comparison folder holding a stopped run (a checkpoint, no run file yet) of another recipe:
the runs of a new --train-size or --freeze-encoder were started anyway, the stopped run's
finetune.py refused to resume it as another run, and the refusal was filed as a failed run of
the head under the new recipe. The comparison now refuses before any run, writing nothing."""
import pytest

from fairseq_hire.compare.__main__ import main as compare_main
from fairseq_hire.compare.runs import Comparison, check_recipe
from fairseq_hire.workflow.finetune import parse_arguments
from fairseq_hire.workflow.same_run import record_request


def stop_a_run(comparison: Comparison, head: str, seed: int) -> None:
    """What a run killed after its first checkpoint leaves: its request and a checkpoint_last.pt."""
    save_dir = comparison.work_dir / f"{head}-seed{seed}"
    record_request(*parse_arguments(comparison.finetune_arguments(head, seed, save_dir)))
    (save_dir / "checkpoint_last.pt").write_bytes(b"")


def test_a_stopped_run_of_another_recipe_is_refused_before_any_run(rte_bin, tiny_pretrained, tmp_path, capsys):
    out = tmp_path / "out"
    started = Comparison("RTE", rte_bin, tiny_pretrained, out, ("--train-size", "10"), device="cpu")
    stop_a_run(started, "hire-no-fusion", 2)
    check_recipe(Comparison("RTE", rte_bin, tiny_pretrained, out, ("--train-size=10",), device="cpu"))  # resumes it
    for flags, change in ((("--train-size", "20"), "train_size 10, now 20"),
                          (("--train-size", "10", "--freeze-encoder"), "freeze_encoder False, now True")):
        with pytest.raises(ValueError, match=f"hire-no-fusion-seed2 holds a stopped run started with another recipe "
                                             f"\\(.*{change}.*\\); every head must share one recipe"):
            check_recipe(Comparison("RTE", rte_bin, tiny_pretrained, out, flags, device="cpu"))

    written = sorted(out.rglob("*"))
    assert compare_main(["RTE", str(rte_bin), str(tiny_pretrained), str(out), "--heads", "stock", "--seeds", "1",
                         "--device", "cpu", "--train-size", "20"]) == 2
    assert "holds a stopped run started with another recipe" in capsys.readouterr().err
    assert sorted(out.rglob("*")) == written  # no run started, no failure recorded


def test_folders_of_no_run_of_the_comparison_are_left_alone(rte_bin, tiny_pretrained, tmp_path):
    comparison = Comparison("RTE", rte_bin, tiny_pretrained, tmp_path / "out", ("--train-size", "10"), device="cpu")
    (comparison.work_dir / "notes-seed1").mkdir(parents=True)
    (comparison.work_dir / "stock-seedling").mkdir()
    check_recipe(comparison)
