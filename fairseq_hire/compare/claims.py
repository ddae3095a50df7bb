"""A run's claim: an exclusive ``flock`` on ``OUT/runs/<head>-seed<seed>.lock``, shared with the
run's processes through the locked file (the rules it keeps: ``runs.py``'s docstring). The lock
file is opened without following links: a link there would have been truncated through, to hold
the claimant's name, whatever file it points to."""
import fcntl
import os
import socket
from pathlib import Path
from typing import Optional, TextIO


class Claim:
    """An exclusive claim on a run: an flock on its lock file (see the module's docstring).
    `file`, the locked file, is what the run's processes share the lock through."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.file: Optional[TextIO] = None
        self.owner = ""

    @property
    def held(self) -> bool:
        return self.file is not None

    def __enter__(self) -> "Claim":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = locked_file(self.path)
        if self.file is None:
            try:
                self.owner = self.path.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                self.owner = ""  # released and removed since
            return self
        self.owner = f"{socket.gethostname()} {os.getpid()}"
        self.file.truncate(0)
        self.file.write(self.owner + "\n")
        self.file.flush()
        return self

    def __exit__(self, *exc) -> None:
        if self.file is None:
            return
        self.file.close()  # the lock ends here, unless a process of the run still holds it
        self.file = None
        again = locked_file(self.path)
        if again is not None:  # nobody holds it: the file may go
            with again:
                self.path.unlink()


def locked_file(path: Path) -> Optional[TextIO]:
    """The file at `path` (created if missing), open and flock-ed by this process; None while
    another process holds its lock."""
    while True:
        file = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666), "r+", encoding="utf-8")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            return None
        try:
            if os.path.samestat(os.fstat(file.fileno()), os.lstat(path)):
                return file
        except FileNotFoundError:
            pass
        file.close()  # its holder removed it after we opened it: lock the file now at `path`
