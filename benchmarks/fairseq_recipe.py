"""Run fairseq's own GLUE recipe (examples/roberta/preprocess_GLUE_tasks.sh), offline.

The recipe must run from a fairseq source checkout (``python -m examples.roberta...``),
downloads encoder.json/vocab.bpe/dict.txt with wget on every run, uses 60 workers and writes
``processed/`` into the GLUE task folder. This module runs the copy of that script which the
installed fairseq package ships, with exactly those four things changed and nothing else:

* the three ``wget -N URL/<file>`` lines copy <file> from a local folder instead;
* ``python -m examples.roberta.multiprocessing_bpe_encoder`` runs the installed
  ``fairseq/examples/roberta/multiprocessing_bpe_encoder.py`` with this Python;
* ``--workers 60`` becomes ``--workers N``;
* the GLUE task folder is a scratch copy (the recipe writes into it).

It is the reference glue_prep is tested and benchmarked against:
``python benchmarks/fairseq_recipe.py GLUE_DIR TASK OUT_DIR [--workers N] [--bpe-dir DIR]``.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

RECIPE_TASKS = ("QQP", "MNLI", "QNLI", "MRPC", "RTE", "STS-B", "SST-2", "CoLA")


def fairseq_examples_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("fairseq")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("fairseq is not installed")
    for loc in spec.submodule_search_locations:
        d = Path(loc) / "examples" / "roberta"
        if (d / "preprocess_GLUE_tasks.sh").is_file():
            return d
    raise RuntimeError("fairseq's examples/roberta/preprocess_GLUE_tasks.sh not found")


def _sub(pattern: str, repl, text: str, count_expected: Optional[int] = None) -> str:
    new, n = re.subn(pattern, repl, text)
    if n == 0 or (count_expected is not None and n != count_expected):
        raise RuntimeError(f"fairseq's recipe changed: pattern {pattern!r} matched {n} times")
    return new


def patched_recipe(bpe_dir: Path, workers: int, python: str, preprocess_cmd: str) -> str:
    d = fairseq_examples_dir()
    text = (d / "preprocess_GLUE_tasks.sh").read_text()
    text = _sub(r"wget -N 'https://dl\.fbaipublicfiles\.com/fairseq/gpt2_bpe/([\w.]+)'",
                lambda m: f'cp "{bpe_dir}/{m.group(1)}" .', text, 3)
    text = _sub(r"python -m examples\.roberta\.multiprocessing_bpe_encoder",
                f'"{python}" "{d / "multiprocessing_bpe_encoder.py"}"', text, 1)
    text = _sub(r"--workers 60", f"--workers {int(workers)}", text)
    text = _sub(r"(?m)^(\s*)fairseq-preprocess\b", lambda m: f'{m.group(1)}"{preprocess_cmd}"',
                text, 2)
    return text


def default_preprocess_cmd() -> str:
    here = Path(sys.executable).parent / "fairseq-preprocess"
    return str(here) if here.exists() else (shutil.which("fairseq-preprocess") or "fairseq-preprocess")


def run_recipe(glue_dir, task: str, out_dir, bpe_dir, workers: int = 1,
               python: Optional[str] = None, preprocess_cmd: Optional[str] = None,
               scratch: Optional[Path] = None, quiet: bool = True) -> Path:
    """Run the recipe for `task` on glue_dir/task; returns out_dir/<task>-bin."""
    if task not in RECIPE_TASKS:
        raise ValueError(f"fairseq's recipe has no {task}")
    glue_dir, out_dir, bpe_dir = Path(glue_dir), Path(out_dir), Path(bpe_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    script = patched_recipe(bpe_dir, workers, python or sys.executable,
                            preprocess_cmd or default_preprocess_cmd())
    own_scratch = scratch is None
    scratch = Path(tempfile.mkdtemp(prefix="glue_recipe_")) if own_scratch else Path(scratch)
    try:
        data = scratch / "glue_data"
        shutil.copytree(glue_dir / task, data / task, dirs_exist_ok=True)
        script_path = scratch / "preprocess_GLUE_tasks.sh"
        script_path.write_text(script)
        env = dict(os.environ, LOGLEVEL="WARNING")
        proc = subprocess.run(
            ["bash", str(script_path), str(data), task], cwd=out_dir, env=env,
            stdout=subprocess.PIPE if quiet else None, stderr=subprocess.STDOUT if quiet else None,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"fairseq's recipe failed ({proc.returncode}):\n{proc.stdout}")
        for name in ("encoder.json", "vocab.bpe", "dict.txt"):
            (out_dir / name).unlink(missing_ok=True)
        return out_dir / f"{task}-bin"
    finally:
        if own_scratch:
            shutil.rmtree(scratch, ignore_errors=True)


DEFER_FUNCTION = """
# fairseq_recipe: record the Python steps; they are replayed in-process, in this order.
glue_prep_defer() { printf '%s\\0' "$@" >> "$GLUE_PREP_DEFER"; printf '\\n' >> "$GLUE_PREP_DEFER"; }
"""


def deferred_recipe(bpe_dir: Path, workers: int) -> str:
    """The recipe with its two Python programs recorded instead of started."""
    d = fairseq_examples_dir()
    text = (d / "preprocess_GLUE_tasks.sh").read_text()
    text = _sub(r"wget -N 'https://dl\.fbaipublicfiles\.com/fairseq/gpt2_bpe/([\w.]+)'",
                lambda m: f'cp "{bpe_dir}/{m.group(1)}" .', text, 3)
    text = _sub(r"python -m examples\.roberta\.multiprocessing_bpe_encoder",
                "glue_prep_defer encoder", text, 1)
    text = _sub(r"--workers 60", f"--workers {int(workers)}", text)
    text = _sub(r"(?m)^(\s*)fairseq-preprocess\b", lambda m: f"{m.group(1)}glue_prep_defer preprocess",
                text, 2)
    lines = text.split("\n", 1)
    return lines[0] + "\n" + DEFER_FUNCTION + lines[1]


def _load_encoder_script():
    import importlib.util

    name = "_fairseq_examples_roberta_multiprocessing_bpe_encoder"
    if name in sys.modules:
        return sys.modules[name]
    path = fairseq_examples_dir() / "multiprocessing_bpe_encoder.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its Pool pickles MultiprocessingEncoder by module name
    spec.loader.exec_module(module)
    module.Pool = TrackedPool  # this copy's name only: its main() never closes its pool
    return module


class TrackedPool:
    """multiprocessing.Pool, remembered so that run_recipe_inprocess ends it: the encoder script
    leaves its pool running, and a test process that exits joined those idle workers forever."""
    made: list = []

    def __new__(cls, *args, **kwargs):
        import multiprocessing

        pool = multiprocessing.Pool(*args, **kwargs)
        cls.made.append(pool)
        return pool

    @classmethod
    def end_all(cls) -> None:
        while cls.made:
            pool = cls.made.pop()
            pool.terminate()
            pool.join()


def run_recipe_inprocess(glue_dir, task: str, out_dir, bpe_dir, workers: int = 1,
                         scratch: Optional[Path] = None) -> Path:
    """The same recipe, the same programs with the same arguments, in the same order, but
    multiprocessing_bpe_encoder.py's main() and fairseq-preprocess's cli_main() run inside this
    Python process (saving ~3 s of fairseq import per call). The shell steps (tail, awk, cut)
    run in bash as in run_recipe(). For tests; run_recipe() is the literal recipe."""
    import contextlib
    import logging

    import fairseq_cli.preprocess as preprocess

    if task not in RECIPE_TASKS:
        raise ValueError(f"fairseq's recipe has no {task}")
    glue_dir, out_dir, bpe_dir = Path(glue_dir), Path(out_dir), Path(bpe_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    own_scratch = scratch is None
    scratch = Path(tempfile.mkdtemp(prefix="glue_recipe_")) if own_scratch else Path(scratch)
    encoder_script = _load_encoder_script()
    cwd = os.getcwd()
    try:
        data = scratch / "glue_data"
        shutil.copytree(glue_dir / task, data / task, dirs_exist_ok=True)
        script_path = scratch / "preprocess_GLUE_tasks.sh"
        script_path.write_text(deferred_recipe(bpe_dir, workers))
        calls_file = scratch / "calls"
        env = dict(os.environ, GLUE_PREP_DEFER=str(calls_file))
        proc = subprocess.run(["bash", str(script_path), str(data), task], cwd=out_dir, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"fairseq's recipe failed ({proc.returncode}):\n{proc.stdout}")
        calls = [line.split("\0")[:-1] for line in calls_file.read_text().splitlines() if line]
        os.chdir(out_dir)
        saved_argv = sys.argv
        logger = logging.getLogger("fairseq_cli.preprocess")
        level = logger.level
        logger.setLevel(logging.WARNING)
        try:
            for kind, *argv in calls:
                sys.argv = [kind] + argv
                handlers = list(logger.handlers)
                with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
                    if kind == "encoder":
                        try:
                            encoder_script.main()
                        finally:
                            TrackedPool.end_all()
                    else:
                        preprocess.cli_main()
                for h in logger.handlers[len(handlers):]:  # preprocess adds a FileHandler per call
                    logger.removeHandler(h)
                    h.close()
        finally:
            sys.argv = saved_argv
            logger.setLevel(level)
            os.chdir(cwd)
        for name in ("encoder.json", "vocab.bpe", "dict.txt"):
            (out_dir / name).unlink(missing_ok=True)
        return out_dir / f"{task}-bin"
    finally:
        if own_scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/fairseq_recipe.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("glue_dir")
    p.add_argument("task", choices=RECIPE_TASKS)
    p.add_argument("out_dir")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--bpe-dir", default=None,
                   help="folder with encoder.json, vocab.bpe, dict.txt (default: the packaged ones)")
    args = p.parse_args(argv)
    from glue_prep.tokenizers import default_gpt2_dir

    bpe_dir = args.bpe_dir or default_gpt2_dir()
    if bpe_dir is None:
        p.error("no packaged GPT-2 files; pass --bpe-dir")
    out = run_recipe(args.glue_dir, args.task, args.out_dir, bpe_dir, args.workers, quiet=False)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
