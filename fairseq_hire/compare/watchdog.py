"""python -I watchdog.py GROUP: kill process group GROUP (one run's trainer) once the comparison
that started it is gone. (RUNNING: the comparison's own record of its runs' groups.)

The comparison holds the write end of this process's stdin. It writes ``done`` before closing
it when the trainer has ended; end of file without ``done`` means the comparison died (the
kernel closes a dead process's pipes whatever killed it, kill -9 included), so the trainer
it left is killed. SIGINT, SIGTERM and SIGHUP kill it too: the trainer runs in a process
group of its own, where Ctrl-C in the comparison's terminal no longer reaches it.

Run by path with only the standard library, so that it starts in milliseconds (importing the
package would import fairseq).
"""
import os
import signal
import sys
import threading


def kill_group(group: int) -> None:
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the trainer has already ended


class RunningGroups:
    """The process groups of the runs a comparison is running (one per run, in worker threads).
    Ctrl-C raises KeyboardInterrupt in the comparison's main thread, which kills them here rather
    than rely on the watchdogs alone: a watchdog that Ctrl-C reaches before it has set its
    handlers dies without killing its group, and the run's worker would then wait for the
    whole training."""

    def __init__(self):
        self.lock = threading.Lock()
        self.groups = set()
        self.stopping = False

    def add(self, group: int) -> None:
        with self.lock:
            self.groups.add(group)
            if self.stopping:  # started by a worker while the comparison was being stopped
                kill_group(group)

    def discard(self, group: int) -> None:
        with self.lock:
            self.groups.discard(group)

    def stop(self) -> None:
        """Kill every running group, and any started until `resume()`."""
        with self.lock:
            self.stopping = True
            for group in self.groups:
                kill_group(group)

    def resume(self) -> None:
        with self.lock:
            self.stopping = False


RUNNING = RunningGroups()


def main() -> int:
    group = int(sys.argv[1])

    def stop(signum, frame):
        kill_group(group)
        os._exit(128 + signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    if sys.stdin.buffer.read() != b"done":
        kill_group(group)
    return 0


if __name__ == "__main__":
    sys.exit(main())
