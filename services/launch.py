"""The one local-process launcher: every simulation's nodes as OS processes on loopback, stopped together.

:class:`Processes` starts ``mpcdp`` commands (:func:`mpcdp_command`) as child processes, each writing its
output to its own log file, waits until a node answers its health check (noticing a node that exits
instead, and quoting its log), kills one on purpose (a crash, for failure experiments) and stops them all:
SIGTERM first, SIGKILL after a grace period. :func:`reserve_ports` holds loopback ports (SO_REUSEPORT,
which gRPC servers also set) until the children have bound them, so a simulation's addresses are known
before any node starts and a killed node can be restarted on its own port.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from services.server import wait_serving
from services.tls import Identity

START_TIMEOUT = 60.0
STOP_GRACE = 5.0  # seconds a process has to exit after SIGTERM before it is killed


def mpcdp_command(*args: str) -> list[str]:
    """The command line running ``mpcdp ARGS`` with this interpreter."""
    return [sys.executable, "-m", "services.cli", *args]


def reserve_ports(names: Iterable[str]) -> dict[str, socket.socket]:
    """A free loopback port per name, held (SO_REUSEPORT) until the returned sockets are closed."""
    held = {}
    for name in names:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", 0))
        held[name] = sock
    return held


class Processes:
    """Named child processes, each logging to ``logs/<name>.log``."""

    def __init__(self, logs: Path) -> None:
        self.logs = Path(logs)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], cwd: Path | None = None) -> None:
        """Start (or restart) process ``name``; its output is appended to its log."""
        with open(self.logs / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def log(self, name: str, tail: int = 2000) -> str:
        """The last ``tail`` characters of ``name``'s log."""
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def running(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    async def wait_serving(self, name: str, identity: Identity, address: str, timeout: float = START_TIMEOUT) -> None:
        """Until ``name`` at ``address`` answers its health check as SERVING; RuntimeError quoting its log if
        it exits first or does not serve within ``timeout`` seconds."""
        waiter = asyncio.ensure_future(wait_serving(identity, address, name, timeout))
        while not waiter.done():
            await asyncio.wait({waiter}, timeout=0.2)
            if not waiter.done() and not self.running(name):
                waiter.cancel()
                raise RuntimeError(f"{name} exited during start-up:\n{self.log(name)}")
        try:
            waiter.result()
        except Exception as exc:
            raise RuntimeError(f"{name} did not start serving at {address}: {exc}\n{self.log(name)}") from None

    def kill(self, name: str) -> None:
        """SIGKILL ``name`` and wait for it: no clean-up, no flush (what a crash looks like)."""
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait()

    def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM every process, then SIGKILL those still running after ``grace`` seconds."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
