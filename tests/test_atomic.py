"""Durability of the atomic writes (glue_prep/atomic.py): a rename is on disk only once its
folder is synced, so every rename into place is followed by an fsync of the folder, and a
folder's content is synced before the folder takes its name. The checkpoints fairseq-train
saves with the plugin go through the same writes."""
import os
from pathlib import Path

import pytest

from glue_prep.atomic import copy_atomically, replace_folder, write_atomically


@pytest.fixture
def disk_log(monkeypatch):
    """What was made durable, in order: ("sync", identity) for every fsync and ("rename",
    source, destination) for every os.replace."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor):
        events.append(("sync", identity(descriptor)))
        real_fsync(descriptor)

    def replace(source, destination, **kwargs):
        real_replace(source, destination, **kwargs)
        events.append(("rename", Path(source), Path(destination)))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def identity(file):
    """(device, inode) of a path or an open descriptor: a file keeps it through a rename."""
    status = os.fstat(file) if isinstance(file, int) else os.stat(file)
    return status.st_dev, status.st_ino


def rename_to(events, destination):
    """The index of the last rename onto `destination`."""
    return max(i for i, event in enumerate(events) if event[0] == "rename" and event[2] == Path(destination))


def assert_durable_rename(events, destination):
    """`destination`'s content was synced before it was renamed into place, and its folder after."""
    renamed = rename_to(events, destination)
    assert ("sync", identity(destination)) in events[:renamed], "content not synced before the rename"
    assert ("sync", identity(Path(destination).parent)) in events[renamed + 1:], \
        "the folder was not synced after the rename: a power loss could undo it"


@pytest.mark.unit
def test_a_written_or_copied_file_is_synced_with_its_folder(tmp_path, disk_log):
    written, copied = tmp_path / "sub" / "result.json", tmp_path / "copy.json"
    write_atomically(written, "{}\n")
    assert_durable_rename(disk_log, written)
    copy_atomically(written, copied)
    assert_durable_rename(disk_log, copied)
    write_atomically(written, "{\"again\": 1}\n")  # over an existing file
    assert_durable_rename(disk_log, written)


@pytest.mark.unit
@pytest.mark.parametrize("existing", [False, True], ids=["new", "replacing"])
@pytest.mark.parametrize("built_elsewhere", [False, True], ids=["built-beside", "built-elsewhere"])
def test_a_folder_is_synced_whole_before_it_takes_its_name_and_its_parent_after(tmp_path, disk_log, existing,
                                                                               built_elsewhere):
    destination = tmp_path / "out" / "RTE-bin"
    destination.parent.mkdir()
    if existing:
        destination.mkdir()
        (destination / "old.txt").write_text("old")
    built = (tmp_path / "staging" if built_elsewhere else destination.parent) / ".RTE-bin.tmp-1"
    (built / "input0").mkdir(parents=True)
    (built / "input0" / "train.bin").write_bytes(b"\0" * 64)
    (built / "glue_prep.json").write_text("{}")
    replace_folder(built, destination)
    renamed = rename_to(disk_log, destination)
    before = disk_log[:renamed]
    for path in [destination, *destination.rglob("*")]:
        assert ("sync", identity(path)) in before, f"{path} was not synced before the folder was renamed"
    after = disk_log[renamed + 1:]
    assert ("sync", identity(destination.parent)) in after
    if built_elsewhere:
        assert ("sync", identity(built.parent)) in after  # the name it left
    assert sorted(p.name for p in destination.parent.iterdir()) == ["RTE-bin"]  # the old one is gone


@pytest.mark.unit
def test_checkpoints_fairseq_saves_and_copies_are_durable(tmp_path, disk_log):
    """fairseq-train's checkpoint writes in a run of the plugin's task: the save
    (torch_persistent_save) and its copies to checkpoint_best.pt / checkpoint_last.pt
    (PathManager.copy), as fairseq's save_checkpoint makes them within the run's hooks."""
    import torch
    from fairseq import checkpoint_utils

    from fairseq_hire.checkpoints import saving
    from fairseq_hire.tasks.sentence_prediction_hire import SentencePredictionHireTask

    saving.install(SentencePredictionHireTask)  # what the plugin's task does when a run sets it up
    saved, last = tmp_path / "checkpoint1.pt", tmp_path / "checkpoint_last.pt"
    with saving.plugin_checkpoints():
        checkpoint_utils.torch_persistent_save({"model": {"w": torch.zeros(3)}}, str(saved))
        assert_durable_rename(disk_log, saved)
        checkpoint_utils.PathManager.copy(str(saved), str(last), overwrite=True)
        assert_durable_rename(disk_log, last)
