"""Packaging fit for an existing environment: the package metadata asks for compatible
ranges, exact pins live only in constraints.txt (what `make install` applies), and
installing the plugin into an environment that already has torch, fairseq and its own
versions of numpy and scipy changes none of them."""
import json
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import REPO

REQUIREMENT_FILES = ("requirements.txt", "requirements-fairseq.txt", "requirements-dev.txt")


def requirement_lines(name):
    return [line for line in (REPO / name).read_text().splitlines() if line and not line.startswith("#")]


def project(line):
    return re.split(r"[<>=!~ ;\[]", line, 1)[0].lower().replace("_", "-")


@pytest.mark.unit
def test_requirements_are_ranges_and_constraints_pin_them_all():
    pins = {project(line): line for line in requirement_lines("constraints.txt")}
    for name in REQUIREMENT_FILES:
        for line in requirement_lines(name):
            assert "==" not in line, f"{name}: {line!r} pins a version; ranges only (pins: constraints.txt)"
            assert re.search(r"[<>]=?", line), f"{name}: {line!r} has no version range"
            assert project(line) in pins and "==" in pins[project(line)], f"constraints.txt does not pin {line!r}"


@pytest.mark.unit
def test_setup_declares_the_ranges():
    metadata = subprocess.run([sys.executable, "-c", "import runpy, setuptools, unittest.mock as m\n"
                               "with m.patch.object(setuptools, 'setup') as s:\n"
                               "    runpy.run_path('setup.py')\n"
                               "import json; k = s.call_args.kwargs\n"
                               "print(json.dumps([k['install_requires'], k['extras_require']]))"],
                              capture_output=True, text=True, cwd=REPO, check=True)
    install_requires, extras = json.loads(metadata.stdout)
    assert install_requires == requirement_lines("requirements.txt")
    assert extras["dev"] == requirement_lines("requirements-dev.txt")


def pip_dry_run(python, tmp_path):
    """What `pip install -e .` would install into `python`'s environment."""
    report = tmp_path / "report.json"
    result = subprocess.run([str(python), "-m", "pip", "install", "--dry-run", "--no-build-isolation", "-e", str(REPO),
                             "--report", str(report), "-q"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return [item["metadata"]["name"] for item in json.loads(report.read_text())["install"]]


def test_installing_into_this_environment_changes_nothing_but_the_plugin(tmp_path):
    assert pip_dry_run(sys.executable, tmp_path) == ["fairseq-hire"]


@pytest.mark.slow
def test_other_patch_versions_of_numpy_and_scipy_are_kept(tmp_path):
    """A researcher's environment: torch and fairseq (this one's, seen through a .pth file),
    and numpy / scipy at other patch versions within the ranges."""
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    python = env / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "existing_fairseq_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", "numpy==2.3.4", "scipy==1.17.0"],
                               capture_output=True, text=True)
    if installed.returncode != 0:
        pytest.skip(f"cannot install other numpy / scipy versions here: {installed.stderr[-500:]}")
    assert pip_dry_run(python, tmp_path) == ["fairseq-hire"]
    versions = subprocess.run([str(python), "-c", "import numpy, scipy; print(numpy.__version__, scipy.__version__)"],
                              capture_output=True, text=True, check=True).stdout.split()
    assert versions == ["2.3.4", "1.17.0"]
