"""fairseq-hire: HIRE (Yang and Zhao, arXiv 1911.01940) as a fairseq plugin.

Install with `make install` (it orders torch, the requirements and fairseq-fixed
correctly); `pip install -e .` alone assumes torch and fairseq are already present.
"""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def pinned(name):
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
        "glue_prep": ["*.sh", "data/*/*.tsv"],
    },
    # torch and fairseq-fixed are deliberately absent: a bare `torch` pulls a CUDA build of
    # several GB, and fairseq-fixed's metadata pulls torchaudio. The Makefile installs both.
    install_requires=pinned("requirements.txt"),
    extras_require={"dev": pinned("requirements-dev.txt")},
)
