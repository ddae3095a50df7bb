"""Fetch GLUE as download_glue_data.py (nyu-mll/GLUE-baselines, W4ngatang's gist) lays it out.

    python -m glue_prep.download DIR [--tasks all|CoLA,SST-2,...] [--path-to-mrpc DIR]

Needs a network (this project's machines have none: only --help, argument checks and the
MRPC formatting from local files are tested here). Sources are the standard ones:
https://dl.fbaipublicfiles.com/glue/data/{CoLA,SST-2,QQP-clean,STS-B,MNLI,QNLIv2,RTE,WNLI}.zip,
AX.tsv (saved as diagnostic/diagnostic.tsv, as download_glue_data.py does), and MRPC built from
Microsoft's msr_paraphrase_{train,test}.txt (SentEval mirror) and GLUE's mrpc_dev_ids.tsv,
splitting train/dev and numbering test exactly as download_glue_data.py's format_mrpc does.
"""
import argparse
import io
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from .atomic import atomic_file, copy_atomically, replace_folder
from .tasks.glue import GLUE_ZIPS, TASK_ORDER, TASKS

# where each task comes from is the registry's (TaskSpec.download): a zip, or built here
ZIPS = {name: task.download for name, task in TASKS.items() if task.download.startswith("https://")}
AX_URL = GLUE_ZIPS + "AX.tsv"
MRPC_TRAIN = "https://dl.fbaipublicfiles.com/senteval/senteval_data/msr_paraphrase_train.txt"
MRPC_TEST = "https://dl.fbaipublicfiles.com/senteval/senteval_data/msr_paraphrase_test.txt"
MRPC_DEV_IDS = GLUE_ZIPS + "mrpc_dev_ids.tsv"
ALL = list(TASK_ORDER)
ALIASES = {"SST": "SST-2", "STS": "STS-B", "diagnostic": "AX"}  # download_glue_data.py's names


def _log(msg):
    print(f"download_glue: {msg}", file=sys.stderr, flush=True)


def fetch(url: str, dest: Path) -> None:
    """Download to dest atomically (a partial file is never left under dest's name)."""
    with atomic_file(dest) as out, urllib.request.urlopen(url, timeout=60) as r:
        shutil.copyfileobj(r, out)


def download_zip(task: str, data_dir: Path) -> None:
    _log(f"{task}: {ZIPS[task]}")
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=f".{task}-") as tmp:
        zpath = Path(tmp) / f"{task}.zip"
        fetch(ZIPS[task], zpath)
        with zipfile.ZipFile(zpath) as z:
            z.extractall(tmp)
        src = Path(tmp) / task
        if not src.is_dir():
            raise RuntimeError(f"{ZIPS[task]} did not contain a {task}/ folder")
        replace_folder(src, data_dir / task)


def download_diagnostic(data_dir: Path) -> None:
    _log(f"AX: {AX_URL}")
    fetch(AX_URL, data_dir / "diagnostic" / "diagnostic.tsv")


def format_mrpc(data_dir: Path, path_to_mrpc=None) -> None:
    """MRPC/{train,dev,test}.tsv from msr_paraphrase_{train,test}.txt and dev_ids.tsv, as
    download_glue_data.py builds them. Files already present (in --path-to-mrpc, or in
    DIR/MRPC) are used instead of being downloaded."""
    mrpc_dir = data_dir / "MRPC"
    mrpc_dir.mkdir(parents=True, exist_ok=True)
    src_dir = Path(path_to_mrpc) if path_to_mrpc else mrpc_dir
    train_src = src_dir / "msr_paraphrase_train.txt"
    test_src = src_dir / "msr_paraphrase_test.txt"
    for url, path in ((MRPC_TRAIN, train_src), (MRPC_TEST, test_src)):
        if not path.is_file():
            if path_to_mrpc:
                raise FileNotFoundError(f"{path} not found (--path-to-mrpc)")
            _log(f"MRPC: {url}")
            fetch(url, path)
    dev_ids_path = mrpc_dir / "dev_ids.tsv"
    if not dev_ids_path.is_file() and (src_dir / "dev_ids.tsv").is_file():
        copy_atomically(src_dir / "dev_ids.tsv", dev_ids_path)
    if not dev_ids_path.is_file():
        _log(f"MRPC: {MRPC_DEV_IDS}")
        fetch(MRPC_DEV_IDS, dev_ids_path)

    with io.open(test_src, encoding="utf-8") as data_fh, \
            atomic_file(mrpc_dir / "test.tsv", "w", encoding="utf-8") as test_fh:
        data_fh.readline()
        test_fh.write("index\t#1 ID\t#2 ID\t#1 String\t#2 String\n")
        for idx, row in enumerate(data_fh):
            label, id1, id2, s1, s2 = row.strip().split("\t")
            test_fh.write("%d\t%s\t%s\t%s\t%s\n" % (idx, id1, id2, s1, s2))

    dev_ids = set()
    with io.open(dev_ids_path, encoding="utf-8") as ids_fh:
        for row in ids_fh:
            dev_ids.add(tuple(row.strip().split("\t")))

    with io.open(train_src, encoding="utf-8") as data_fh, \
            atomic_file(mrpc_dir / "train.tsv", "w", encoding="utf-8") as train_fh, \
            atomic_file(mrpc_dir / "dev.tsv", "w", encoding="utf-8") as dev_fh:
        header = data_fh.readline()
        train_fh.write(header)
        dev_fh.write(header)
        for row in data_fh:
            label, id1, id2, s1, s2 = row.strip().split("\t")
            out = dev_fh if (id1, id2) in dev_ids else train_fh
            out.write("%s\t%s\t%s\t%s\t%s\n" % (label, id1, id2, s1, s2))
    _log(f"MRPC: wrote {mrpc_dir}/train.tsv, dev.tsv, test.tsv")


def parse_tasks(text: str):
    names = [t for t in text.replace(",", " ").split() if t]
    if any(n.lower() == "all" for n in names):
        return list(ALL)
    out = []
    for n in names:
        n = ALIASES.get(n, n)
        match = [t for t in ALL if t.lower() == n.lower()]
        if not match:
            raise ValueError(f"unknown task {n!r}; expected some of {', '.join(ALL)} or all")
        out.append(match[0])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="download_glue.sh", description="Download GLUE into DIR (needs a network).",
        epilog="Layout: DIR/<TASK>/{train,dev,test}.tsv (MNLI: dev_matched, ...), "
               "DIR/diagnostic/diagnostic.tsv (AX). Then: bash glue_prep/prepare_glue.sh DIR ALL OUT")
    p.add_argument("data_dir", metavar="DIR")
    p.add_argument("--tasks", default="all", help="comma-separated, or all (default)")
    p.add_argument("--path-to-mrpc", default=None, metavar="DIR",
                   help="folder holding msr_paraphrase_train.txt and msr_paraphrase_test.txt "
                        "(and optionally dev_ids.tsv) instead of downloading them")
    args = p.parse_args(argv)
    try:
        tasks = parse_tasks(args.tasks)
    except ValueError as e:
        p.error(str(e))
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    failed = []
    for task in tasks:
        try:
            if TASKS[task].download == "mrpc":
                format_mrpc(data_dir, args.path_to_mrpc)
            elif TASKS[task].download == "ax":
                download_diagnostic(data_dir)
            else:
                download_zip(task, data_dir)
        except KeyboardInterrupt:
            _log("interrupted")
            return 130
        except Exception as e:  # network errors, bad archives
            _log(f"{task}: failed: {e}")
            failed.append(task)
    if failed:
        _log(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
