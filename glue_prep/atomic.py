"""Writing files and folders so that a reader, or a rerun after a kill, never sees half of one.

A file is written under a temporary name beside its destination, flushed to disk and
renamed over it (``os.replace`` is atomic on POSIX); a folder is built under a temporary
name, flushed to disk and renamed into place. After every rename the folders it changed
are synced too: a rename lives in its directory, and until that is on disk a power loss can
undo a rename the caller already treats as done. Temporary names end in ``.tmp-<pid>``, so
that what a killed writer left behind can be told from a live writer's work and removed
(``remove_stale``).
"""
import contextlib
import errno
import os
import shutil
import stat
import uuid
from pathlib import Path
from typing import Iterator, Union

TEMPORARY_MARK = ".tmp-"


def temporary_name(path: Path) -> Path:
    """A hidden sibling of `path` that names this process: .<name>.<random>.tmp-<pid>."""
    path = Path(path)
    return path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}{TEMPORARY_MARK}{os.getpid()}"


def sync_directory(folder: Path) -> None:
    """fsync a folder, which makes the renames, creations and removals in it durable."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    except OSError as error:
        if error.errno != errno.EINVAL:  # EINVAL: a file system that cannot sync folders
            raise
    finally:
        os.close(descriptor)


def sync_tree(folder: Path) -> None:
    """fsync every file and folder under `folder`, and `folder` itself (a link is an entry
    of its folder; what it points to is not the tree's)."""
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                with open(path, "rb") as f:
                    os.fsync(f.fileno())
        sync_directory(Path(root))


def rename(source: Path, destination: Path) -> None:
    """os.replace, made durable: the folders of both names are synced after it."""
    os.replace(source, destination)
    for folder in {Path(source).parent, Path(destination).parent}:
        sync_directory(folder)


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "wb", **open_kwargs) -> Iterator:
    """Open a temporary file that becomes `path` when the block ends without an error; an
    error (or a kill) leaves `path` as it was. The file keeps the permissions of the regular file
    it replaces; a new one (or one replacing a link, whose target is not looked at) gets what
    the umask gives, as any file the user creates."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        replaced = path.lstat()
        permissions = stat.S_IMODE(replaced.st_mode) if stat.S_ISREG(replaced.st_mode) else None
    except FileNotFoundError:
        permissions = None
    temporary = temporary_name(path)
    try:
        with open(temporary, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if permissions is not None:
            os.chmod(temporary, permissions)
        rename(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomically(path: Path, data: Union[str, bytes]) -> None:
    """Write text (UTF-8) or bytes to `path` through ``atomic_file``."""
    binary = isinstance(data, bytes)
    with atomic_file(path, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
        f.write(data)


def copy_atomically(source: Path, destination: Path) -> None:
    """Copy a file so that `destination` is always either its old or its new content, whole."""
    with atomic_file(destination) as out, open(source, "rb") as f:
        shutil.copyfileobj(f, out, length=16 * 1024 * 1024)


def replace_folder(built: Path, destination: Path) -> None:
    """Put the finished folder `built` at `destination`, replacing an old one: the old one is
    renamed aside first and removed only once the new one is in place. `built`'s content is
    flushed to disk before it takes the name."""
    built, destination = Path(built), Path(destination)
    sync_tree(built)
    if not os.path.lexists(destination):
        rename(built, destination)
        return
    old = temporary_name(destination)
    rename(destination, old)  # a link is replaced as the entry it is; what it points to is left alone
    try:
        rename(built, destination)
    except BaseException:
        rename(old, destination)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(folder: Path, prefix: str = "") -> int:
    """Remove the temporary files and folders in `folder` (whose names start with `prefix`)
    left by writers of this machine that no longer run. Returns how many were removed."""
    removed = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for entry in folder.iterdir():
        name = entry.name
        if not name.startswith(prefix) or TEMPORARY_MARK not in name:
            continue
        try:
            pid = int(name.rsplit(TEMPORARY_MARK, 1)[1])
        except ValueError:
            continue
        if pid == os.getpid() or pid_alive(pid):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed += 1
    return removed
