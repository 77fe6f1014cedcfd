"""One running node per name and state directory (services.state_lock): a second coordinator or party on the same
directory is refused at start, naming the directory and the running node's pid; a crashed one leaves no stale lock."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest

from services.launch import mpcdp_command
from services.state_lock import StateBusy, StateLock, UnsafeLockFile


def test_a_second_lock_of_one_name_on_one_folder_is_refused_and_released_with_the_first(tmp_path):
    first = StateLock(tmp_path / "state", "alice", "party")
    with pytest.raises(StateBusy) as busy:
        StateLock(tmp_path / "state", "alice", "party")  # flock is per open file: two nodes in one process conflict
    text = str(busy.value)
    assert f"another party 'alice' (pid {os.getpid()})" in text and str(tmp_path / "state") in text
    other = StateLock(tmp_path / "state", "bob", "party")  # nodes of other names share the directory
    first.release()
    again = StateLock(tmp_path / "state", "alice", "party")
    assert again.held and not first.held
    again.release()
    other.release()


FEDERATION = """
[federation]
name = "locks"
[policy]
allow_exact = true
epsilon_budget = 10.0
[[node]]
name = "coordinator"
address = "127.0.0.1:{coordinator}"
roles = ["coordinator"]
ledger = "state/coordinator.db"
[[node]]
name = "alice"
address = "127.0.0.1:{alice}"
roles = ["party"]
state = "state"
[[node]]
name = "analyst"
roles = ["client"]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serving(proc: subprocess.Popen, timeout: float = 60.0) -> str:
    """Wait for a node's banner ("... serving on port N"); its first line."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "serving on port" in line:
            return line
        if not line and proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
    raise AssertionError("no banner")


def _start(fed, *args: str) -> subprocess.Popen:
    argv = mpcdp_command(*args, "--federation", str(fed), "--insecure")
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _refused(fed, *args: str) -> str:
    """Start one more node that must be refused: its one-line error (exit 2, no traceback)."""
    argv = mpcdp_command(*args, "--federation", str(fed), "--insecure", "--listen", "127.0.0.1:0")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "Error" not in out.stderr
    return out.stderr


def test_a_second_coordinator_or_party_on_one_state_directory_is_refused_until_the_first_is_gone(tmp_path):
    fed = tmp_path / "federation.toml"
    fed.write_text(FEDERATION.format(coordinator=_free_port(), alice=_free_port()))
    state = tmp_path / "state"
    procs: list[subprocess.Popen] = []
    try:
        coordinator = _start(fed, "coordinator")
        party = _start(fed, "party", "--id", "alice", "--values", "1,2")
        procs += [coordinator, party]
        _serving(coordinator)
        _serving(party)  # a coordinator and a party share the directory: each locks its own name
        said = _refused(fed, "coordinator")
        assert f"another coordinator 'coordinator' (pid {coordinator.pid})" in said and str(state) in said
        said = _refused(fed, "party", "--id", "alice", "--values", "1,2")
        assert f"another party 'alice' (pid {party.pid})" in said and str(state) in said
        os.kill(coordinator.pid, signal.SIGKILL)  # a crash: the kernel drops its lock
        coordinator.wait()
        party.terminate()  # a clean stop releases it too
        party.wait(timeout=30)
        again = _start(fed, "coordinator", "--listen", "127.0.0.1:0")
        procs.append(again)
        _serving(again)
        link_port = _free_port()
        alice = _start(
            fed, "party", "--id", "alice", "--values", "1,2", "--listen", "127.0.0.1:0", "--link-port", str(link_port)
        )
        procs.append(alice)
        _serving(alice)
        with socket.create_connection(("127.0.0.1", link_port), timeout=10):  # its links listen on the port given
            pass
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_a_lock_file_linked_to_the_session_log_is_refused_and_the_log_left_whole(tmp_path, link):
    """review-tidy F5: the lock followed a symlink (and a hard link) and truncated its target: the session log, and
    with it the replay protection of its ids, emptied at start."""
    state = tmp_path / "state"
    state.mkdir()
    log = state / "alice.sessions"
    log.write_text("0101 1e12\n" * 3)
    (os.symlink if link == "symbolic" else os.link)(log, state / "alice.lock")
    with pytest.raises(UnsafeLockFile, match="is not a regular file of this user with one link"):
        StateLock(state, "alice", "party")
    assert log.read_text() == "0101 1e12\n" * 3


def test_release_leaves_the_lock_file_and_a_fifo_is_refused(tmp_path):
    state = tmp_path / "state"
    lock = StateLock(state, "alice", "party")
    lock.release()
    assert (state / "alice.lock").read_text() == f"{os.getpid()}\n"  # not truncated: only its pid, rewritten
    os.mkfifo(state / "bob.lock")
    with pytest.raises(UnsafeLockFile):
        StateLock(state, "bob", "party")
