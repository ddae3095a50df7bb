"""The instrument of issue 27: scripts/check_fairseq_unchanged.py reads pytest's junit files
and lists every test whose outcome differs with the plugin activated. Tested on small
synthetic junit files and a synthetic fairseq-like checkout, not on fairseq's own tests."""
import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "check_fairseq_unchanged.py"
spec = importlib.util.spec_from_file_location("check_fairseq_unchanged", SCRIPT)
checker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(checker)

pytestmark = pytest.mark.unit


def junit(path: Path, cases: str) -> Path:
    path.write_text(f'<?xml version="1.0"?><testsuites><testsuite name="pytest">{cases}</testsuite></testsuites>')
    return path


def test_outcomes_read_every_kind(tmp_path):
    results = checker.outcomes(junit(tmp_path / "a.xml", """
        <testcase classname="tests.test_a.T" name="test_pass"/>
        <testcase classname="tests.test_a.T" name="test_fail"><failure message="x"/></testcase>
        <testcase classname="tests.test_a.T" name="test_error"><error message="x"/></testcase>
        <testcase classname="tests.test_a.T" name="test_skip"><skipped message="x"/></testcase>
        <testcase classname="tests.test_a.T" name="test_out"><system-out>noise</system-out></testcase>"""))
    assert results == {"tests.test_a.T::test_pass": "passed", "tests.test_a.T::test_fail": "failed",
                       "tests.test_a.T::test_error": "error", "tests.test_a.T::test_skip": "skipped",
                       "tests.test_a.T::test_out": "passed"}


def test_differences_list_changed_and_missing_tests_only():
    off = {"a": "passed", "b": "failed", "c": "passed"}
    on = {"a": "passed", "b": "passed", "d": "skipped"}
    assert checker.differences(off, on) == [
        {"test": "b", "without": "failed", "with": "passed"},
        {"test": "c", "without": "passed", "with": "absent"},
        {"test": "d", "without": "absent", "with": "skipped"},
    ]
    assert checker.differences(off, dict(off)) == []


def fake_checkout(root: Path, body: str) -> Path:
    """A checkout with one test file and an examples/ folder, as the driver expects."""
    (root / "tests").mkdir(parents=True)
    (root / "examples").mkdir()
    (root / "tests" / "__init__.py").write_text("")
    (root / "tests" / "test_fake.py").write_text(textwrap.dedent(body))
    return root


def test_activation_is_what_the_tests_see_and_a_difference_fails_the_check(tmp_path):
    """A test that passes only when no plugin model is registered: the driver activates the
    plugin in the 'plugin' configuration, so the outcomes differ and it exits 1."""
    checkout = fake_checkout(tmp_path / "checkout", """
        def test_plugin_absent():
            from fairseq.models import MODEL_REGISTRY
            assert "roberta_hire" not in MODEL_REGISTRY

        def test_always():
            assert True
    """)
    out = tmp_path / "result.json"
    done = subprocess.run([sys.executable, str(SCRIPT), str(checkout), "--tests", "tests/test_fake.py",
                           "--configs", "stock", "plugin", "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert report["differences"]["stock -> plugin"] == [
        {"test": "tests.test_fake::test_plugin_absent", "without": "passed", "with": "failed"}]
    assert report["totals"]["stock"] == {"passed": 2}


def test_no_checkout_is_one_line_error(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "--out", str(tmp_path / "r.json")],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode != 0
    assert "expected a facebookresearch/fairseq checkout" in done.stderr
    assert "Traceback" not in done.stderr


def run_checker(checkout, out, *extra):
    return subprocess.run([sys.executable, str(SCRIPT), str(checkout), "--tests", "tests/test_fake.py",
                           "--configs", "stock", "plugin", "--out", str(out), *extra],
                          capture_output=True, text=True, cwd=REPO)


def test_both_configurations_draw_the_same_random_numbers(tmp_path):
    """fairseq's dummy data comes from Python's unseeded random: each test is seeded from its id,
    so the configurations compare the same data (unseeded, these two draws differ)."""
    draws = tmp_path / "draws"
    draws.mkdir()
    checkout = fake_checkout(tmp_path / "checkout", f"""
        import os, random

        def test_draw():
            name = "plugin" if os.environ.get("FAIRSEQ_HIRE_ACTIVATE") else "stock"
            with open(os.path.join({str(draws)!r}, name), "w") as f:
                f.write(repr(random.random()))
    """)
    done = run_checker(checkout, tmp_path / "result.json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (draws / "stock").read_text() == (draws / "plugin").read_text()


def test_arguments_after_a_double_dash_go_to_pytest(tmp_path):
    checkout = fake_checkout(tmp_path / "checkout", """
        def test_selected():
            assert True

        def test_left_out():
            assert True
    """)
    out = tmp_path / "result.json"
    done = run_checker(checkout, out, "--", "-k", "selected")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(out.read_text())["totals"] == {"stock": {"passed": 1}, "plugin": {"passed": 1}}
