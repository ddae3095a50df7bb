"""python -I watchdog.py GROUP: kill process group GROUP (one run's trainer) once the comparison
that started it is gone.

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


def kill_group(group: int) -> None:
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the trainer has already ended


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
