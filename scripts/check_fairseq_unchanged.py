#!/usr/bin/env python
"""Does the plugin change fairseq? fairseq's own tests, with and without the plugin.

Runs test files of a facebookresearch/fairseq checkout against the installed fairseq in four
configurations: the plugin activated exactly as ``--user-dir fairseq_hire`` activates it
(``fairseq.utils.import_user_module``, before any test runs) or not, times
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (fairseq main's own loading since its weights_only fix)
set or not. Every test whose outcome differs between plugin off and on, in either loading mode,
is listed; the exit status is 1 if any differs.

    bash scripts/check_fairseq_unchanged.sh FAIRSEQ_CHECKOUT [--out result.json] [--tests ...] [-- PYTEST_ARGS]

The checkout's tests/ and examples/ (tests refer to examples/... by relative path) are copied
into a scratch folder, without the checkout's fairseq/ sources, so the tests import the
installed fairseq; the tests themselves are neither copied into this repository nor edited.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]
ACTIVATOR = "activate_fairseq_hire"  # the pytest plugin module beside this file
DEFAULT_TESTS = ["tests/test_train.py", "tests/test_checkpoint_utils.py",
                 "tests/test_checkpoint_utils_for_task_level_attributes.py", "tests/test_roberta.py",
                 "tests/test_binaries.py"]
CONFIGS = {  # name -> (plugin activated, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD set)
    "stock": (False, False), "plugin": (True, False),
    "stock-unsafe-load": (False, True), "plugin-unsafe-load": (True, True),
}
FORCE_UNSAFE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
PAIRS = [("stock", "plugin"), ("stock-unsafe-load", "plugin-unsafe-load")]


def outcomes(junit_xml: Path) -> Dict[str, str]:
    """test id -> passed / failed / error / skipped, from pytest's junit xml."""
    results = {}
    for case in ElementTree.parse(junit_xml).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        kinds = {child.tag for child in case}
        outcome = "passed"
        for kind in ("error", "failure", "skipped"):
            if kind in kinds:
                outcome = {"failure": "failed"}.get(kind, kind)
                break
        results[name] = outcome
    return results


def differences(off: Dict[str, str], on: Dict[str, str]) -> List[Dict[str, str]]:
    """Every test whose outcome differs (a test missing from one run counts as 'absent')."""
    return [{"test": test, "without": off.get(test, "absent"), "with": on.get(test, "absent")}
            for test in sorted(set(off) | set(on)) if off.get(test, "absent") != on.get(test, "absent")]


def totals(results: Dict[str, str]) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for outcome in results.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def scratch_copy(checkout: Path, into: Path) -> None:
    for folder in ("tests", "examples"):
        if not (checkout / folder).is_dir():
            raise SystemExit(f"{checkout}: no {folder}/ folder; expected a facebookresearch/fairseq checkout")
        shutil.copytree(checkout / folder, into / folder, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))


def run_config(name: str, workdir: Path, tests: List[str], pytest_args: List[str], log_dir: Path) -> Dict[str, str]:
    activated, unsafe_load = CONFIGS[name]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop(FORCE_UNSAFE, None)
    if unsafe_load:
        env[FORCE_UNSAFE] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent),
                                                      env.get("PYTHONPATH")]))
    env["FAIRSEQ_HIRE_ACTIVATE"] = str(REPO / "fairseq_hire") if activated else ""
    junit = log_dir / f"{name}.xml"
    command = [sys.executable, "-m", "pytest", "-p", ACTIVATOR, "-p", "no:cacheprovider", "-q",
               "--junitxml", str(junit), "-o", "junit_family=xunit1", *pytest_args, *tests]
    with open(log_dir / f"{name}.log", "w") as log:
        subprocess.run(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    if not junit.exists():
        raise SystemExit(f"{name}: pytest wrote no results; see {log_dir / (name + '.log')}")
    return outcomes(junit)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkout", type=Path, help="a facebookresearch/fairseq checkout (its tests/ and examples/)")
    parser.add_argument("--tests", nargs="+", default=DEFAULT_TESTS)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "fairseq_unchanged.json")
    argv = sys.argv[1:] if argv is None else list(argv)
    split = argv.index("--") if "--" in argv else len(argv)  # what follows -- goes to pytest as it is
    args, pytest_args = parser.parse_args(argv[:split]), argv[split + 1:]
    logs = args.out.with_suffix("")
    logs.mkdir(parents=True, exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="fairseq-tests-") as scratch:
        scratch_copy(args.checkout.resolve(), Path(scratch))
        for name in args.configs:
            results[name] = run_config(name, Path(scratch), args.tests, pytest_args, logs)
            print(f"{name}: {totals(results[name])}", flush=True)
    report = {"tests": args.tests, "totals": {name: totals(r) for name, r in results.items()}, "differences": {}}
    for off, on in PAIRS:
        if off in results and on in results:
            report["differences"][f"{off} -> {on}"] = differences(results[off], results[on])
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    differing = 0
    for pair, rows in report["differences"].items():
        print(f"\n{pair}: {len(rows)} test(s) differ")
        for row in rows:
            print(f"  {row['test']}: {row['without']} -> {row['with']}")
        differing += len(rows)
    print(f"\nresults: {args.out} (logs in {logs})")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
