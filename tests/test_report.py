"""The results report: README tables come from the result files, the noise rule, and the
atomic writer everything is saved through."""
import math
import stat
import sys
from pathlib import Path

import pytest

from fairseq_hire.evaluation import write_atomically

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import report  # noqa: E402


def test_readme_tables_match_the_result_files():
    """Every generated README section equals what report.py makes of benchmarks/results now:
    no table is typed by hand or left stale after new results."""
    sections = report.readme_sections(report.summarize(report.load_runs()), report.cost_ratios())
    readme = (REPO / "README.md").read_text()
    for name, body in sections.items():
        assert report.replace_section(readme, name, body) == readme, (
            f"README section {name!r} is stale: run python benchmarks/report.py --update-readme")


def stats(values):
    return report.describe(values)


def test_noise_rule():
    # difference 1.0, standard error sqrt(0.5^2/3 + 0.5^2/3) = 0.41: beyond 2 SE
    beyond = report.compare(stats([2.5, 3.0, 3.5]), stats([1.5, 2.0, 2.5]))
    assert beyond["mean_difference"] == pytest.approx(1.0)
    assert beyond["standard_error"] == pytest.approx(math.sqrt(0.25 / 3 * 2))
    assert beyond["within_noise"] is False
    assert report.compare(stats([2.0, 3.0, 4.0]), stats([1.5, 2.0, 2.5]))["within_noise"] is True
    one_seed = report.compare(stats([9.0]), stats([1.0, 2.0]))
    assert one_seed["within_noise"] is None and one_seed["standard_error"] is None


def test_one_seed_is_never_called_within_noise():
    run = {"task": "CoLA", "best_metric": "mcc", "dev_size": 1043, "epochs": 3, "lr": 3e-5}
    runs = [{**run, "model": "baseline", "seed": 1, "best": {"mcc": 27.2}},
            {**run, "model": "hire", "seed": 1, "best": {"mcc": 27.9, "alpha_1": 0.5, "alpha_2": 0.5}}]
    table = report.quality_table(report.summarize(runs))
    assert "+0.7 mcc (one seed: noise unknown)" in table
    assert "within seed noise" not in table
    assert "In short: CoLA lacks a second seed for some model, so its noise is unknown." in table


def test_write_atomically_replaces_whole_files_and_keeps_permissions(tmp_path):
    path = tmp_path / "deep" / "result.json"
    write_atomically(path, "first\n")
    assert path.read_text() == "first\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    path.chmod(0o664)
    write_atomically(path, "second\n")
    assert path.read_text() == "second\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o664
    assert sorted(p.name for p in path.parent.iterdir()) == ["result.json"]  # no temporary left
