"""The safe loader checks a checkpoint before fairseq's code reads it; for a zip checkpoint (what
torch.save and fairseq-train write) that check maps the tensors instead of reading them, so the
weights are read from disk once, by fairseq. Measured as the bytes the process reads
(/proc/self/io's rchar counts read() calls; pages of a memory-mapped file are not in it)."""
from pathlib import Path

import pytest
import torch

from fairseq_hire.checkpoints import loading
from fairseq_hire.checkpoints.architecture import model_config
from fairseq_hire.checkpoints.errors import UnsafeConfigError

pytestmark = pytest.mark.unit

PROC_IO = Path("/proc/self/io")
PADDING_NUMBERS = 8_000_000  # 32 MB of float32 in extra_state: the file is mostly tensor bytes


def bytes_read() -> int:
    return int(next(line for line in PROC_IO.read_text().splitlines() if line.startswith("rchar:")).split()[1])


def read_while(action) -> int:
    before = bytes_read()
    action()
    return bytes_read() - before


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, request):
    """The tiny original-format model.pt, with 32 MB of tensors added, saved as a zip checkpoint
    and in torch's legacy format (the 2019 releases')."""
    tiny = request.getfixturevalue("tiny_pretrained")
    state = loading.load_state(tiny)
    state["extra_state"]["padding"] = torch.ones(PADDING_NUMBERS)
    folder = tmp_path_factory.mktemp("read-once")
    torch.save(state, folder / "zip.pt")
    torch.save(state, folder / "legacy.pt", _use_new_zipfile_serialization=False)
    return folder / "zip.pt", folder / "legacy.pt"


@pytest.mark.skipif(not PROC_IO.exists(), reason="needs Linux's /proc/self/io")
def test_a_zip_checkpoint_is_read_once_and_the_legacy_format_still_loads(checkpoints):
    zipped, legacy = checkpoints
    size = zipped.stat().st_size
    def fairseqs_own():  # fairseq's function alone, with the unpickling the safe loader gives it
        with loading.weights_only_unpickling():
            loading.fairseq_load_checkpoint_to_cpu()(str(zipped))

    loading.load_checkpoint_to_cpu(str(zipped))  # imports and caches warm
    baseline = read_while(fairseqs_own)
    checked = read_while(lambda: loading.load_checkpoint_to_cpu(str(zipped)))
    assert baseline >= size * 0.9  # the measurement sees fairseq's one read of the tensors
    assert checked < baseline + size * 0.1, (checked, baseline, size)  # before the change: about 2x
    # the other checks that look at the configuration only read no tensor either
    assert read_while(lambda: loading.load_state(zipped, lazy=True)) < size * 0.1
    assert read_while(lambda: model_config(zipped)) < size * 0.1
    # a lazy load is the same checkpoint: every tensor equal to a full read's
    lazy, full = loading.load_state(zipped, lazy=True), loading.load_state(zipped)
    assert torch.equal(lazy["extra_state"]["padding"], full["extra_state"]["padding"])
    assert all(torch.equal(lazy["model"][key], value) for key, value in full["model"].items())
    # torch cannot map the legacy format: read whole, and loaded the same
    state = loading.load_checkpoint_to_cpu(str(legacy))
    assert torch.equal(state["extra_state"]["padding"], full["extra_state"]["padding"])


def test_a_lazy_check_refuses_what_the_full_one_refuses(checkpoints, tmp_path):
    """The check is on the shapes and the configuration, which a mapped tensor has as a read one."""
    zipped, _ = checkpoints
    state = loading.load_state(zipped)
    key = next(k for k in state["model"] if k.endswith("embed_tokens.weight"))
    state["model"][key] = state["model"][key][:, :-1].clone()  # no longer the configuration's size
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    for load in (lambda: loading.load_state(bad, lazy=True), lambda: loading.load_checkpoint_to_cpu(str(bad))):
        with pytest.raises(UnsafeConfigError, match=r"refusing to load checkpoint .*bad\.pt.*embed_tokens"):
            load()


def test_where_the_file_cannot_be_mapped_it_is_read_whole_not_called_corrupt(checkpoints, monkeypatch):
    zipped, _ = checkpoints
    real_load = torch.load

    def no_mapping(*args, mmap=None, **kwargs):
        if mmap:
            raise RuntimeError("unable to mmap 45226199 bytes from file: Operation not supported (95)")
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", no_mapping)
    state = loading.load_state(zipped, lazy=True)
    assert state["extra_state"]["padding"].shape == (PADDING_NUMBERS,)


def test_a_tensor_record_shorter_than_its_tensor_is_refused_as_corrupt_in_one_line(checkpoints, tmp_path):
    """A mapped read takes a tensor's size from the pickle and never reads its record, so the
    check before fairseq's read passes such a file: fairseq's own read then meets it, and the
    loader calls it corrupt in one line (it was a RuntimeError traceback). The resume repair
    reads whole, and so still sets such a checkpoint_last aside."""
    import zipfile

    from fairseq_hire.checkpoints.errors import CorruptCheckpointError

    zipped, _ = checkpoints
    short = tmp_path / "short.pt"
    with zipfile.ZipFile(zipped) as source, zipfile.ZipFile(short, "w", zipfile.ZIP_STORED) as target:
        # the first tensor's record, which others follow: a mapped slice past it reads them, not past the file
        first = min((info for info in source.infolist() if "/data/" in info.filename and info.file_size > 64),
                    key=lambda info: info.header_offset)
        for info in source.infolist():
            data = source.read(info.filename)
            target.writestr(info.filename, data[:16] if info.filename == first.filename else data)
    for load in (lambda: loading.load_checkpoint_to_cpu(str(short)), lambda: loading.load_state(short)):
        with pytest.raises(CorruptCheckpointError, match=rf"^checkpoint {short} is truncated or corrupt"):
            load()
    from fairseq_hire.checkpoints.saving import repair_last_checkpoint

    last = tmp_path / "run" / "checkpoint_last.pt"
    last.parent.mkdir()
    short.rename(last)
    with pytest.raises(CorruptCheckpointError, match=r"^cannot resume: checkpoint .* is truncated or corrupt"):
        repair_last_checkpoint(last, "")
    assert list(last.parent.glob("checkpoint_last.pt.corrupt-*"))  # set aside, kept
