"""fairseq-train that kills itself (SIGKILL, no cleanup) half-way through writing a checkpoint
file, for tests/test_restart.py.

    python tests/kill_during_save.py WHEN -- <fairseq-train arguments>

WHEN is "save:N" (the N-th checkpoint written by torch.save), "copy:N" (the N-th copy of a
checkpoint to its other names, as the plugin makes it) or "fairseq-copy:N" (the same copy
made the way fairseq itself makes it, shutil.copyfile in place, which a kill leaves
truncated). Counting starts at 1 in this process; the file gets half its bytes, then the
process dies.
"""
import os
import shutil
import signal
import sys

import torch


def die_half_way(write_half):
    write_half()
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def main():
    when, separator, *train_args = sys.argv[1:]
    assert separator == "--", __doc__
    phase, number = when.split(":")
    number = int(number)
    calls = {"n": 0}

    import fairseq_hire  # noqa: F401  (the plugin's checkpoint saving, patched below, is installed by its task)

    def counted():
        calls["n"] += 1
        return calls["n"] == number

    if phase == "save":
        real_save = torch.save

        def save(obj, f, *args, **kwargs):
            if counted():
                import io

                buffer = io.BytesIO()
                real_save(obj, buffer, *args, **kwargs)
                die_half_way(lambda: (f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2]), f.flush()))
            return real_save(obj, f, *args, **kwargs)

        torch.save = save
    elif phase == "copy":
        real_copyfileobj = shutil.copyfileobj

        def copyfileobj(source, destination, length=0):
            if counted():
                data = source.read()
                die_half_way(lambda: (destination.write(data[: len(data) // 2]), destination.flush()))
            return real_copyfileobj(source, destination, length)

        shutil.copyfileobj = copyfileobj
    elif phase == "fairseq-copy":
        from fairseq_hire.checkpoints import saving

        # the plugin run's copies made as fairseq's own PathManager.copy makes them: in place
        saving.copy_atomically = lambda source, destination: shutil.copyfile(source, destination)
        real_copyfile = shutil.copyfile

        def copyfile(source, destination, *args, **kwargs):
            if counted():
                data = open(source, "rb").read()

                def write_half():
                    with open(destination, "wb") as out:
                        out.write(data[: len(data) // 2])

                die_half_way(write_half)
            return real_copyfile(source, destination, *args, **kwargs)

        shutil.copyfile = copyfile
    else:
        raise SystemExit(f"unknown phase {phase!r}")

    from fairseq_cli.train import cli_main

    sys.argv = ["fairseq-train", *train_args]
    cli_main()


if __name__ == "__main__":
    main()
