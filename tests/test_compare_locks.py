"""A comparison's run is claimed by one process, and trained by one trainer, whatever is killed:
claimants racing for the lock of a killed holder, and comparisons killed with kill -9 (not
their process group) while their trainer runs. The trainer is tests/fake_run.py's stand-in
(finetune.py starting fairseq-train), so these tests start no fairseq-train."""
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO
from fairseq_hire.compare.claims import Claim
from fairseq_hire.compare.runs import Runner, RunOutcome
from fake_run import alive, fake_comparison

FAKE_RUN = Path(__file__).with_name("fake_run.py")
CONTENDERS, TRIALS = 4, 100


def contend(lock, trials, start, stop, attempted, released, held):
    """Claim the run over and over until one of the contenders holds it; the holder holds it
    until every contender has stopped trying."""
    for trial in range(trials):
        start.wait()
        while not stop.is_set():
            with Claim(lock) as claim:
                if claim.held:
                    with held.get_lock():
                        held[trial] += 1
                    attempted.wait()
                    break
            time.sleep(0.001)  # each contender tries at its own moments after the kill
        else:
            attempted.wait()
        released.wait()


def hold_in_a_child(lock: Path) -> int:
    """A child of this process holding the claim, for the caller to kill."""
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_read)
        with Claim(lock) as claim:
            os.write(ready_write, b"1" if claim.held else b"0")
            if claim.held:
                time.sleep(60)
        os._exit(0)
    os.close(ready_write)
    assert os.read(ready_read, 1) == b"1"
    os.close(ready_read)
    return pid


@pytest.mark.unit
def test_claimants_racing_for_a_killed_holders_lock_get_one_holder_each_time(tmp_path):
    """Each trial: while four processes keep trying to claim a run, its holder is killed with
    kill -9; exactly one of them may then hold the run."""
    lock = tmp_path / "stock-seed1.lock"
    context = multiprocessing.get_context("fork")
    start, attempted, released = (context.Barrier(CONTENDERS + 1) for _ in range(3))
    stop, held = context.Event(), context.Array("i", TRIALS)
    contenders = [context.Process(target=contend, args=(lock, TRIALS, start, stop, attempted, released, held))
                  for _ in range(CONTENDERS)]
    for process in contenders:
        process.start()
    try:
        for trial in range(TRIALS):
            holder = hold_in_a_child(lock)
            start.wait(timeout=30)
            os.kill(holder, signal.SIGKILL)
            os.waitpid(holder, 0)
            assert wait_until(lambda: held[trial] > 0, 30)
            time.sleep(0.005)  # room for a second holder
            stop.set()
            attempted.wait(timeout=30)
            released.wait(timeout=30)
            stop.clear()
    finally:
        for process in contenders:
            process.kill()
            process.join()
    assert list(held) == [1] * TRIALS
    assert not lock.exists()  # the last holder removed it


def events(trainers: Path):
    path = trainers / "events"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def started(trainers: Path):
    return [int(event[1]) for event in events(trainers) if event[0] == "start"]


def start_comparison(out: Path, trainers: Path, seconds: float, **environment) -> subprocess.Popen:
    """A comparison in a process of its own, to be killed; in a session of its own, as one
    started from a terminal is."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FAKE_TRAINERS": str(trainers), "FAKE_TRAIN_SECONDS": str(seconds),
           **environment}
    # SIGINT as a terminal leaves it: a test run started in the background (`make test &`)
    # inherits it ignored, and the comparison would then never see Ctrl-C
    return subprocess.Popen([sys.executable, str(FAKE_RUN), "compare", str(out), "1"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def compare(out: Path, monkeypatch, seconds: float) -> RunOutcome:
    """A comparison in this process, to its end."""
    monkeypatch.setenv("FAKE_TRAIN_SECONDS", str(seconds))
    return Runner(fake_comparison(out), log=lambda text: None).run("stock", 1)


def wait_until(condition, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def live_processes():
    """(pid, fields of /proc/pid/stat after the command name, command line) of each live process."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text, cmdline = stat.read_text(), (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        pid = int(stat.parent.name)
        if alive(pid):
            yield pid, text[text.rindex(")") + 2:].split(), cmdline.replace(b"\0", b" ").decode()


def children(pid: int):
    """pid -> command line of each live child of `pid`."""
    return {child: command for child, fields, command in live_processes() if int(fields[1]) == pid}


def group_members(group: int):
    """The live processes of process group `group`."""
    return [pid for pid, fields, command in live_processes() if int(fields[2]) == group]


@pytest.fixture
def comparison_folder(tmp_path, monkeypatch):
    """OUT and the trainers' folder; every trainer still alive at the end is killed."""
    trainers = tmp_path / "trainers"
    trainers.mkdir()
    monkeypatch.setenv("FAKE_TRAINERS", str(trainers))
    yield tmp_path / "out", trainers
    for pid in started(trainers):
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def comparison_with_a_running_trainer(out: Path, trainers: Path, **environment):
    first = start_comparison(out, trainers, seconds=120, **environment)
    assert wait_until(lambda: started(trainers) or first.poll() is not None, 90), "no trainer started"
    assert first.poll() is None, first.communicate()[1][-3000:]
    return first, started(trainers)[0]


@pytest.mark.unit
def test_a_comparison_killed_with_kill_9_takes_its_trainer_with_it(comparison_folder, monkeypatch):
    """The first comparison's trainer dies with it; the second comparison never trains while
    it lives, and the run is then trained to its end exactly once."""
    out, trainers = comparison_folder
    first, trainer = comparison_with_a_running_trainer(out, trainers)
    run_group = os.getpgid(trainer)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    second = compare(out, monkeypatch, seconds=0.5)
    assert not [event for event in events(trainers) if event[0] == "overlap"], events(trainers)
    assert wait_until(lambda: not alive(trainer), 10), "the trainer outlived its comparison"
    # the run's other processes (finetune.py above the trainer) share its claim until they
    # have exited too, which the kernel may finish after the trainer's exit
    assert wait_until(lambda: not group_members(run_group), 10), "the run's processes outlived its comparison"
    if second.status == "claimed-elsewhere":  # the second came before the run's processes had died
        second = compare(out, monkeypatch, seconds=0.5)
    assert second.status == "done", second
    assert [event[0] for event in events(trainers)] == ["start", "start", "end"]
    assert (out / "runs" / "stock-seed1.json").exists() and not (out / "runs" / "stock-seed1.lock").exists()


@pytest.mark.unit
def test_a_trainer_orphaned_by_kill_9_keeps_the_run_claimed_until_it_dies(comparison_folder, monkeypatch):
    """kill -9 on the comparison, its watchdog and the trainer's finetune.py leaves the
    fairseq-train below them running: it still holds the run's lock, so a second comparison
    skips the run without starting a trainer; once it is killed, a third trains the run."""
    out, trainers = comparison_folder
    first, trainer = comparison_with_a_running_trainer(out, trainers)
    below = children(first.pid)
    for pid, command in below.items():  # the watchdog first: it would kill the trainer
        if "watchdog" in command:
            os.kill(pid, signal.SIGKILL)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    for pid, command in below.items():
        if " finetune " in command:
            os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not any(alive(pid) for pid in below), 10)
    assert alive(trainer)  # the orphan

    second = compare(out, monkeypatch, seconds=0.5)
    assert second.status == "claimed-elsewhere", second
    assert started(trainers) == [trainer] and alive(trainer)

    os.kill(trainer, signal.SIGKILL)
    assert wait_until(lambda: not alive(trainer), 10)
    third = compare(out, monkeypatch, seconds=0.5)
    assert third.status == "done", third
    assert [event[0] for event in events(trainers)] == ["start", "start", "end"]
    assert (out / "runs" / "stock-seed1.json").exists() and not (out / "runs" / "stock-seed1.lock").exists()


@pytest.mark.unit
@pytest.mark.parametrize("watchdog", ["watchdog", "watchdog-killed-before-its-handlers"])
def test_ctrl_c_stops_the_comparison_and_its_trainer(comparison_folder, watchdog):
    """The trainer runs outside the terminal's process group (so that it can be killed as
    one): Ctrl-C, which signals that group, still ends the trainer with the comparison, also
    when the run's watchdog died of the Ctrl-C before it could act (a watchdog starting up on a
    loaded machine: the comparison then waited for the whole training)."""
    out, trainers = comparison_folder
    deaf = {"FAKE_DEAF_WATCHDOG": "1"} if watchdog != "watchdog" else {}
    first, trainer = comparison_with_a_running_trainer(out, trainers, **deaf)
    os.killpg(first.pid, signal.SIGINT)
    first.communicate(timeout=60)
    assert first.returncode != 0
    assert wait_until(lambda: not alive(trainer), 10), "the trainer outlived Ctrl-C"
    assert started(trainers) == [trainer]


def test_a_lock_or_log_that_is_a_symbolic_link_is_refused_and_its_target_left_alone(tmp_path):
    """The lock was opened through links and truncated to hold its owner: a link in OUT/runs to any
    file the user may write (a shared results folder) emptied that file; the run log appended to its target."""
    import errno

    from fairseq_hire.compare.claims import locked_file
    from fairseq_hire.compare.runs import run_sharing_lock

    victim = tmp_path / "victim.txt"
    victim.write_text("IMPORTANT DATA\n")
    (tmp_path / "runs").mkdir()
    lock, log = tmp_path / "runs" / "stock-seed2.lock", tmp_path / "runs" / "stock-seed2.log"
    for link in (lock, log):
        link.symlink_to(victim)
    with pytest.raises(OSError) as refused:
        with Claim(lock):
            pass
    assert refused.value.errno == errno.ELOOP and str(lock) in str(refused.value)
    with locked_file(tmp_path / "own.lock") as held, pytest.raises(OSError) as refused:
        run_sharing_lock([sys.executable, "-c", "print('run output')"], held, log, dict(os.environ))
    assert refused.value.errno == errno.ELOOP
    assert victim.read_text() == "IMPORTANT DATA\n" and lock.is_symlink() and log.is_symlink()
