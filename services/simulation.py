"""A whole federation on loopback: a coordinator and one OS process per party, with fresh certificates.

    with LocalFederation({"alice": [3800], "bob": [2514], ...}, column="raise") as fed:
        fed.query("mean", column="raise", bounds=(0, 10_000)).value

Each party holds its own values in a data file created owner-only (0600:
a CSV, or a .npy file for vectors), never on its command line where ``ps``
would show them, and a ledger in a temporary folder. Queries go over one
mutually authenticated channel to the coordinator, opened at the first query
and kept for the federation's lifetime, as the coordinator and the parties
keep theirs to each other. Ports are reserved
before the nodes start (SO_REUSEPORT, which gRPC servers also set), so the
federation file is complete from the outset. Every process is stopped on
exit, on error and on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import csv
import os
import tempfile
from pathlib import Path

import numpy as np

from services import federation as fed
from services.analyst import Analyst, QueryResult
from services.launch import Processes, mpcdp_command, reserve_ports
from services.tls import Identity, init_certs

CLIENT = "analyst"
COORDINATOR = "coordinator"
START_TIMEOUT = 60.0  # seconds each node has to start serving


def _private_file(path: Path, binary: bool = False):
    """Open ``path`` for writing, created owner-only (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", newline="")


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class LocalFederation:
    """Start a coordinator and parties as separate processes; stop them all on exit."""

    def __init__(
        self,
        data: dict,
        column: str = "value",
        *,
        epsilon_budget: float = 100.0,
        allow_exact: bool = True,
        insecure: bool = False,
        timeout: float = 30.0,
        workdir=None,
        max_length: int | None = None,
        allow_exact_nonlinear: bool = False,
        coalesce: int | None = None,
    ):
        if len(data) < 2:
            raise ValueError(f"a federation needs at least 2 parties, got {len(data)}")
        self.data = data
        self.column = column
        self.epsilon_budget = epsilon_budget
        self.allow_exact = allow_exact
        self.allow_exact_nonlinear = allow_exact_nonlinear  # exact max/min/threshold under MPC (opt-in)
        self.insecure = insecure
        self.timeout = timeout
        self.max_length = max_length  # the parties' policy max_length (None: the default)
        self.max_timeout = max(float(timeout), 300.0)
        self.coalesce = coalesce  # the coordinator's --coalesce (None: its default)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="mpcdp-sim-")
            workdir = self._tmp.name
        self.dir = Path(workdir)
        self.processes = Processes(self.dir / "logs")
        self.federation: fed.Federation | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Analyst | None = None

    # -- set-up -----------------------------------------------------------------

    def _write_federation(self, ports: dict[str, int]) -> Path:
        max_records = max(int(np.shape(v)[0]) if np.ndim(v) else 1 for v in self.data.values())
        lines = [
            "[federation]",
            'name = "simulation"',
            'certs = "certs"',
            "",
            "[policy]",
            f"allow_exact = {'true' if self.allow_exact else 'false'}",
            *(["allow_exact_nonlinear = true"] if self.allow_exact_nonlinear else []),
            f"max_records = {max(max_records, 1)}",
            f"epsilon_budget = {float(self.epsilon_budget)!r}",
            f"max_epsilon = {float(self.epsilon_budget)!r}",
            f"max_timeout = {self.max_timeout!r}",
            *([f"max_length = {int(self.max_length)}"] if self.max_length else []),
            "",
            "[[node]]",
            f'name = "{COORDINATOR}"',
            f'address = "127.0.0.1:{ports[COORDINATOR]}"',
            'roles = ["coordinator"]',
            f'ledger = "state/{COORDINATOR}.db"',
            "",
            "[[node]]",
            f'name = "{CLIENT}"',
            'roles = ["client"]',
            "",
        ]
        for name, values in self.data.items():
            lines += [
                "[[node]]",
                f"name = {_toml_str(name)}",
                f'address = "127.0.0.1:{ports[name]}"',
                'roles = ["party"]',
                f'ledger = "state/{name}.db"',
            ]
            if isinstance(values, np.ndarray) and values.ndim == 2:
                with _private_file(self.dir / f"{name}.npy", binary=True) as f:
                    np.save(f, values)
                lines.append(f'data = "{name}.npy"')
            else:
                with _private_file(self.dir / f"{name}.csv") as f:
                    rows = csv.writer(f)
                    rows.writerow([self.column])
                    rows.writerows([v] for v in np.asarray(values).reshape(-1).tolist())
                lines.append(f'data = "{name}.csv"')
            lines.append("")
        path = self.dir / "federation.toml"
        path.write_text("\n".join(lines))
        return path

    def _command(self, role: str, name: str) -> list[str]:
        cmd = mpcdp_command(role, "--federation", str(self.path))
        if role == "party":
            cmd += ["--id", name]
        else:
            cmd += ["--timeout", str(self.timeout), "--max-timeout", str(self.max_timeout)]
            if self.coalesce is not None:
                cmd += ["--coalesce", str(self.coalesce)]
        if self.insecure:
            cmd.append("--insecure")
        return cmd

    def start(self) -> LocalFederation:
        names = [COORDINATOR, *self.data]
        reserved = reserve_ports(names)
        try:
            self.path = self._write_federation({n: s.getsockname()[1] for n, s in reserved.items()})
            self.federation = fed.load(self.path)
            if not self.insecure:
                init_certs(self.federation.names(), self.federation.certs, ca_name="simulation CA")
            for name in names:
                self.launch(name)
            asyncio.run(self._wait_all_serving(names))
        except BaseException:
            self.stop()
            raise
        finally:
            for sock in reserved.values():
                sock.close()
        return self

    def launch(self, name: str) -> None:
        """Start (or restart) the process of node ``name``."""
        self.processes.start(name, self._command("coordinator" if name == COORDINATOR else "party", name), self.dir)

    def _started(self) -> fed.Federation:
        if self.federation is None:
            raise RuntimeError("the federation is not started: use `with LocalFederation(...)` or start()")
        return self.federation

    async def _wait_all_serving(self, names) -> None:
        federation = self._started()
        ident = Identity(CLIENT, federation.certs, self.insecure)
        await asyncio.gather(
            *(self.processes.wait_serving(n, ident, federation.address(n), START_TIMEOUT) for n in names)
        )

    def wait_serving(self, name: str) -> None:
        asyncio.run(self._wait_all_serving([name]))

    def log(self, name: str) -> str:
        return self.processes.log(name)

    @property
    def procs(self) -> dict:
        """The running node processes by name."""
        return self.processes.procs

    # -- use ---------------------------------------------------------------------

    def query(self, statistic: str, **kw) -> QueryResult:
        """Ask the coordinator, as the analyst, over one channel kept open across queries."""
        kw.setdefault("column", self.column)
        kw.setdefault("timeout", self.timeout)
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(self._query(statistic, kw))

    async def _query(self, statistic: str, kw: dict) -> QueryResult:
        if self._client is None:
            self._client = Analyst(self._started(), CLIENT, self.insecure)
        return await self._client.query(statistic, **kw)

    def kill(self, name: str) -> None:
        """SIGKILL one node (a crash, for failure experiments)."""
        self.processes.kill(name)

    # -- tear-down -----------------------------------------------------------------

    def stop(self) -> None:
        if self._loop is not None:
            if self._client is not None:
                self._loop.run_until_complete(self._client.close())
            self._loop.close()
            self._client = self._loop = None
        self.processes.stop()

    def __enter__(self) -> LocalFederation:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
