"""The committed results are what their run files give: each comparison report (report.json and
report.md under benchmarks/results/compare*/) is recomputed from its runs and must match byte for
byte, so that a run added or removed without regenerating the reports (and the pages made from
them, which tests/test_report.py holds against the reports) fails here."""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import report  # noqa: E402


def test_every_comparison_report_is_what_its_run_files_give():
    stale = report.stale_reports(report.STUDY) + report.stale_reports(report.GPU_STUDY)
    assert stale == [], f"{stale}: run python benchmarks/report.py --refresh --update-readme"


def test_the_regimes_reports_and_sections_are_what_the_run_files_give(capsys):
    import regime_report

    assert regime_report.main(["--check-readme"]) == 0, capsys.readouterr().out
