"""Writing files and folders so that a reader, or a rerun after a kill, never sees half of one.

A file is written to a temporary name beside its destination and renamed over it
(``os.replace`` is atomic on POSIX); a folder is built under a temporary name and renamed
into place. Temporary names carry the writer's pid, so that leftovers of a killed writer
can be told from a live writer's work and removed (``remove_stale``).
"""
import os
import shutil
import tempfile
from pathlib import Path
from typing import Union


def write_atomically(path: Path, data: Union[str, bytes]) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file.
    The file keeps its permissions (a new one gets rw-r--r--, not the temporary's rw-------)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    binary = isinstance(data, bytes)
    with tempfile.NamedTemporaryFile("wb" if binary else "w", dir=path.parent, delete=False,
                                     prefix=f".{path.name}.", suffix=f".tmp-{os.getpid()}",
                                     **({} if binary else {"encoding": "utf-8"})) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.chmod(f.name, mode)
        os.replace(f.name, path)
    except BaseException:
        Path(f.name).unlink(missing_ok=True)
        raise

