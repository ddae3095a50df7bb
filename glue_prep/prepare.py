"""One GLUE task folder -> <out>/<TASK>-bin, built aside and renamed into place at the end."""
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from . import __version__
from .atomic import remove_stale, replace_folder, temporary_name
from .errors import GlueFormatError, OutputExistsError, UnknownTaskError, listed, shown
from .labels import borrowable, borrowed_label_dict, check_label_coverage
from .metadata import DictionaryRecord, GlueMetadata, OverLength, write_metadata
from .readers.reading import fairseq_dictionary
from .readers.rows import SplitData, format_lines
from .readers.splits import read_split
from .tasks import TASK_ORDER, TASKS, SplitSpec, TaskSpec, get_task
from .tokenizers import SPEC_NAME, Tokenizer

UNK_WARN_FRACTION = 0.01


@dataclass
class Options:
    tokenizer: Tokenizer
    dict_path: Path
    workers: int = 1
    max_rows: Optional[int] = None
    force: bool = False
    progress: bool = True
    max_positions: int = 512  # RoBERTa's; rows longer than this are reported
    truncate: bool = False  # ... and cut to fit, longest sentence first (lengths.longest_first)


def _log(msg: str) -> None:
    print(f"glue_prep: {msg}", file=sys.stderr, flush=True)


def task_dir(glue_dir: Path, task: TaskSpec) -> Optional[Path]:
    for name in task.folders:
        d = glue_dir / name
        if any((d / f).is_file() for s in task.splits for f in s.files):
            return d
    return None


def find_split_file(glue_dir: Path, task: TaskSpec, split: SplitSpec) -> Path:
    if task.file_format != "glue":
        from .tasks.task_files import split_file

        return split_file(glue_dir, task, split)
    candidates = [glue_dir / d / f for d in task.folders for f in split.files]
    for c in candidates:
        if c.is_file():
            return c
    if len(candidates) == 1:
        raise GlueFormatError(
            f"missing: the {task.name} {split.name} split needs this file", candidates[0]
        )
    raise GlueFormatError(
        f"missing: the {task.name} {split.name} split needs one of "
        + ", ".join(str(c) for c in candidates),
        glue_dir,
    )


def resolve_tasks(glue_dir: Path, which: str, quiet: bool = False) -> List[str]:
    """'ALL' -> every task with a folder in glue_dir; 'RTE' or 'RTE,MRPC' -> those tasks."""
    glue_dir = Path(glue_dir)
    if not glue_dir.is_dir():
        raise GlueFormatError("missing: expected a glue_data folder (one sub-folder per task)",
                              glue_dir)
    names = [t for t in which.replace(",", " ").split() if t]
    if not names:
        raise GlueFormatError("no task given; expected a GLUE task name or ALL")
    if len(names) == 1 and names[0].upper() == "ALL":
        found = [t for t in TASK_ORDER if task_dir(glue_dir, TASKS[t]) is not None]
        missing = [t for t in TASK_ORDER if t not in found]
        if not found:
            raise GlueFormatError(
                f"no GLUE task folder found; expected some of {', '.join(TASK_ORDER)}", glue_dir
            )
        if missing and not quiet:
            _log(f"ALL: {glue_dir} has no files for {', '.join(missing)}; skipping them")
        return found
    out = []
    for n in names:
        try:
            out.append(get_task(n).name)
        except UnknownTaskError:
            raise GlueFormatError(
                f"unknown task {n!r}; expected one of {', '.join(TASK_ORDER)} or ALL"
            ) from None
    # MNLI before AX (AX reuses MNLI's label dictionary)
    return sorted(dict.fromkeys(out), key=TASK_ORDER.index)


def check_outputs_free(out_dir: Path, tasks: Sequence) -> None:
    for name in tasks:
        _check_output_free(Path(out_dir) / f"{getattr(name, 'name', name)}-bin")


def _check_output_free(final: Path) -> None:
    if os.path.lexists(final):  # a link there, even a broken one, is an output too
        raise OutputExistsError(f"{final} exists; pass --force to overwrite it")


@dataclass
class TaskData:
    """A task's splits, read and checked (read_task): what write_task binarises."""
    task: TaskSpec
    data: Dict[str, SplitData]
    seconds: float  # reading them took


def read_task(glue_dir: Path, task_name, out_dir: Path, opts: Options, log: Callable[[str], None] = _log) -> TaskData:
    """Read and check every split of a task, writing nothing. `task_name` is a GLUE task's
    name, or a TaskSpec (a user's task)."""
    task = get_task(task_name)
    if not opts.force:
        _check_output_free(out_dir / f"{task.name}-bin")
    if not glue_dir.is_dir():
        raise GlueFormatError("missing: expected a glue_data folder", glue_dir)
    t0 = time.time()
    data: Dict[str, SplitData] = {}
    for split in task.splits:
        path = find_split_file(glue_dir, task, split)
        data[split.name] = read_split(task, split, path, max_rows=opts.max_rows)
        d = data[split.name]
        if d.dropped_lines:
            log(f"{task.name} {split.name}: dropped {len(d.dropped_lines)} rows without exactly "
                f"{split.ncols} fields, as fairseq's recipe does for QQP "
                f"({path}, lines {format_lines(d.dropped_lines)})")
        if d.empty_inputs:
            log(f"{task.name} {split.name}: {len(d.empty_inputs)} empty sentences kept as empty "
                f"inputs, as GLUE's loaders and the recipe (--keep-empty) do ({path}, lines "
                f"{format_lines([ln for ln, _ in d.empty_inputs])})")
    if not task.regression and "train" in data:
        check_label_coverage(task, data)
    return TaskData(task, data, time.time() - t0)


def load_vocabulary(opts: Options):
    """The source dictionary, and the tokenizer loaded, each refused in one line if unreadable."""
    src_dict = fairseq_dictionary(opts.dict_path)
    try:
        opts.tokenizer.load()
    except ValueError as e:
        raise GlueFormatError(str(e), next(iter(opts.tokenizer.files.values()))) from None
    return src_dict


def write_task(read: TaskData, glue_dir: Path, out_dir: Path, src_dict, opts: Options,
               log: Callable[[str], None] = _log) -> Path:
    """Build <out_dir>/<TASK>-bin aside and rename it into place: nothing named <TASK>-bin
    appears unless every step succeeded, and a failed build leaves no folder it created."""
    task, t0 = read.task, time.time()
    final = out_dir / f"{task.name}-bin"
    created = _missing_folders(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale(out_dir, prefix=f".{final.name}.")
    tmp = temporary_name(final)
    try:
        tmp.mkdir()
        meta = _build(task, read.data, tmp, src_dict, opts, glue_dir, out_dir, log)
        meta = replace(meta, seconds=round(read.seconds + time.time() - t0, 2))
        write_metadata(tmp, meta)
        if not opts.force:
            _check_output_free(final)
        replace_folder(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:  # the deepest first; one another process filled stays
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    log(f"{task.name}: wrote {final} ({', '.join(f'{k} {v}' for k, v in meta.splits.items())} "
        f"rows) in {meta.seconds:.1f}s")
    return final


def _missing_folders(folder: Path) -> List[Path]:
    """`folder` and its parents that do not exist yet, the deepest first."""
    missing = []
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def prepare_task(glue_dir, task_name, out_dir, opts: Options, log: Callable[[str], None] = _log) -> Path:
    """Build <out_dir>/<TASK>-bin (prepare, for one task)."""
    return prepare(glue_dir, [task_name], out_dir, opts, log)[0]


def _progress(opts: Options, total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=" rows", disable=not opts.progress,
                file=sys.stderr, mininterval=0.5, dynamic_ncols=True)


def _build(task: TaskSpec, data: Dict[str, SplitData], tmp: Path, src_dict, opts: Options,
           glue_dir: Path, out_dir: Path, log) -> GlueMetadata:
    from .binarize import (Encoder, build_label_dictionary, format_score, label_names,
                           write_encoded_split, write_labels)

    n_inputs = task.num_inputs
    for k in range(n_inputs):
        (tmp / f"input{k}").mkdir()
        src_dict.save(str(tmp / f"input{k}" / "dict.txt"))  # as fairseq-preprocess --srcdict does

    # 2. token ids: input0/, input1/
    over_length = {}
    with Encoder(opts.tokenizer, src_dict, opts.workers) as encoder:
        for split in task.splits:
            d = data[split.name]
            prefixes = [str(tmp / f"input{k}" / split.name) for k in range(n_inputs)]
            with _progress(opts, len(d), f"{task.name} {split.name}") as bar:
                rows = write_encoded_split(encoder, d.inputs, prefixes, len(src_dict), progress=bar,
                                           max_positions=opts.max_positions, truncate=opts.truncate)
            if rows:
                lines = [d.line_numbers[r] for r in rows]
                over_length[split.name] = OverLength(rows=len(rows), lines=lines[:100])
                done = (f"cut to {opts.max_positions} positions, longest sentence first" if opts.truncate
                        else "kept whole: fairseq skips such training rows and stops at such validation "
                             "rows; --truncate-to N cuts them")
                log(f"{task.name} {split.name}: {len(rows)} rows longer than {opts.max_positions} "
                    f"positions ({d.path}, lines {format_lines(lines)}); {done}")
    unk_rate = _unk_rate(tmp, task, src_dict)
    if unk_rate > UNK_WARN_FRACTION:
        log(f"{task.name}: {unk_rate:.1%} of the tokens are not in {opts.dict_path} and became "
            "<unk>: is this dictionary the checkpoint's own, made for this tokenizer?")

    # 3. labels
    meta_labels: List[str] = []
    label_source = None
    (tmp / "label").mkdir()
    if task.regression:
        for split in task.splits:
            if not split.is_test:
                with open(tmp / "label" / f"{split.name}.label", "w", encoding="utf-8") as f:
                    for score in data[split.name].labels:
                        f.write(format_score(score, task.target_scale) + "\n")
    elif "train" in data:
        listed = task.labels if task.label_order == "listed" else None
        label_dict = build_label_dictionary(data["train"].labels, str(tmp / "label" / ".train.label"), listed)
        label_dict.save(str(tmp / "label" / "dict.txt"))
        for split in task.splits:
            if not split.is_test:
                write_labels(label_dict, data[split.name].labels, str(tmp / "label" / split.name))
        meta_labels = label_names(label_dict)
        label_source = "train labels"
    else:  # AX: test only; the class order of the MNLI model that scores it
        meta_labels, label_source = borrowed_label_dict(task, tmp / "label" / "dict.txt", glue_dir, out_dir, log)

    # 4. test index files, tokenizer, metadata
    for split in task.splits:
        if split.is_test:
            with open(tmp / f"{split.name}.index", "w", encoding="utf-8") as f:
                for value in data[split.name].index:
                    f.write(value + "\n")
    opts.tokenizer.save(tmp / "tokenizer")
    return GlueMetadata(
        task=task.name,
        task_file=_save_task_file(task, tmp),
        num_classes=task.num_classes or len(meta_labels),
        regression=task.regression,
        label_names=meta_labels,
        metric=task.metric,
        positive_label=task.positive_label,
        target_scale=task.target_scale,
        score_range=task.score_range,
        label_counts={s.name: _counts(data[s.name].labels) for s in task.splits
                     if not s.is_test and not task.regression},
        splits={s.name: len(data[s.name]) for s in task.splits},
        test_splits=dict(task.test_names),
        tokenizer=f"tokenizer/{SPEC_NAME}",
        num_inputs=n_inputs,
        source={s.name: str(data[s.name].path.resolve()) for s in task.splits},
        dictionary=DictionaryRecord(source=str(Path(opts.dict_path).resolve()), size=len(src_dict)),
        label_dictionary_source=label_source,
        dropped_rows={s.name: len(data[s.name].dropped_lines) for s in task.splits
                     if data[s.name].dropped_lines},
        empty_inputs={s.name: len(data[s.name].empty_inputs) for s in task.splits
                     if data[s.name].empty_inputs},
        unk_fraction=round(unk_rate, 6),
        max_rows=opts.max_rows,
        max_positions=opts.max_positions,
        truncated=opts.truncate,
        over_length=over_length,
        in_fairseq_recipe=task.in_fairseq_recipe,
        glue_prep_version=__version__,
    )


def _unk_rate(tmp: Path, task: TaskSpec, src_dict) -> float:
    import numpy as np
    from fairseq.data.indexed_dataset import best_fitting_int_dtype

    dtype = best_fitting_int_dtype(len(src_dict))
    unk, total = 0, 0
    for k in range(task.num_inputs):
        for split in task.splits:
            arr = np.fromfile(tmp / f"input{k}" / f"{split.name}.bin", dtype=dtype)
            unk += int((arr == src_dict.unk()).sum())
            total += int(arr.size)
    return unk / total if total else 0.0


def _counts(labels) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _save_task_file(task: TaskSpec, folder: Path) -> Optional[str]:
    """A user task's description, beside its binaries, so that training, evaluation and
    prediction find it with the data (GLUE tasks are in the registry)."""
    if task.file_format == "glue":
        return None
    from .tasks.task_files import task_description

    # allow_nan=False: a number JSON cannot hold is never written (the task file refused it when read)
    description = json.dumps(task_description(task), indent=2, allow_nan=False)
    (folder / "task.json").write_text(description + "\n", encoding="utf-8")
    return "task.json"


def prepare(glue_dir, which, out_dir, opts: Options, log=_log) -> List[Path]:
    """which: GLUE task names ('RTE', 'RTE,MRPC', 'ALL'), or a list of task names or TaskSpecs
    (user tasks). Every task's files are read and checked, and the dictionary and tokenizer
    read, before any task is written."""
    glue_dir, out_dir = Path(glue_dir), Path(out_dir)
    tasks = which if isinstance(which, list) else resolve_tasks(glue_dir, which)
    read = []
    for task in tasks:
        log(f"{getattr(task, 'name', task)}: reading from {glue_dir}")
        read.append(read_task(glue_dir, task, out_dir, opts, log=log))
    rebuilt = {r.task.name for r in read}
    for r in read:  # AX borrows MNLI-bin's classes: one built before this run must be readable, and MNLI's
        if r.task.label_dict_from and r.task.label_dict_from not in rebuilt:
            borrowable(out_dir / f"{r.task.label_dict_from}-bin" / "label" / "dict.txt", r.task.label_dict_from)
    src_dict = load_vocabulary(opts)  # heavy import of fairseq: only once the data is known to be good
    return [write_task(r, glue_dir, out_dir, src_dict, opts, log) for r in read]
