"""fairseq-hire: HIRE (Yang and Zhao, arXiv 1911.01940) as a fairseq plugin.

Install with `make install` (it orders torch, the requirements and fairseq-fixed
correctly, at the versions of constraints.txt); `pip install -e .` alone assumes torch and
fairseq are already present and installs only what is missing from the ranges below.
"""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def requirements(name):
    """The requirement lines of a requirements file: compatible ranges, never exact pins
    (those are in constraints.txt, for `make install` only)."""
    lines = (HERE / name).read_text().splitlines()
    return [line for line in lines if line and not line.startswith("#")]


setup(
    name="fairseq-hire",
    version="0.1.0",
    description="HIdden Representation Extractor (HIRE) for fairseq RoBERTa",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["fairseq_hire", "fairseq_hire.*", "glue_prep", "glue_prep.*"]),
    package_data={
        "fairseq_hire": ["assets/gpt2_bpe/*", "config/**/*.yaml"],
        "glue_prep": ["*.sh", "data/*/*.tsv", "data/*/*.csv", "data/*/*.json"],
    },
    # torch and fairseq-fixed are deliberately absent: a bare `torch` pulls a CUDA build of
    # several GB, and fairseq-fixed's metadata pulls torchaudio. The Makefile installs both.
    install_requires=requirements("requirements.txt"),
    extras_require={"dev": requirements("requirements-dev.txt"), "fairseq": requirements("requirements-fairseq.txt")},
)
