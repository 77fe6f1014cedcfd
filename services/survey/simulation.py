"""A survey on loopback: one OS process per aggregator, fresh certificates, durable stores.

    with LocalSurvey(survey, workdir) as run:
        await client_for(run).deliver(...)
        results = await run.coordinator().close_and_release()

Ports are reserved before the aggregators start (SO_REUSEPORT, which gRPC
servers also set), so the survey's addresses are known from the outset and
an aggregator killed with SIGKILL can be restarted on the same port and the
same store. Every process is stopped on exit, on error and on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

from mpcdp.survey.definition import Aggregator, Survey
from services.server import reserve_loopback_port, wait_serving
from services.survey.collector import coordinator_for
from services.survey.transport import CoordinatorClient, GrpcTransport
from services.tls import Identity, init_certs

COORDINATOR = "coordinator"
RESPONDENTS = "respondents"
START_TIMEOUT = 60.0


class LocalSurvey:
    """Aggregator processes for ``survey`` (parsed from ``survey_path``) under ``workdir``.

    ``store`` is "sqlite" (one file per aggregator in workdir), "memory" or a
    postgresql:// DSN (one schema per aggregator in that database). ``noise_seed`` makes the
    aggregators' noise reproducible (simulations and tests only).
    """

    def __init__(
        self,
        survey: Survey,
        survey_path: Path,
        workdir: Path,
        store: str = "sqlite",
        insecure: bool = False,
        noise_seed: int | None = None,
        aggregator_args: tuple[str, ...] = (),
    ):
        self.workdir = Path(workdir)
        self.survey_path = Path(survey_path)
        self.store = store
        self.insecure = insecure
        self.noise_seed = noise_seed
        self.aggregator_args = tuple(aggregator_args)  # extra `mpcdp survey aggregator` options
        self._socks = {a.name: reserve_loopback_port() for a in survey.aggregators}
        ports = {n: s.getsockname()[1] for n, s in self._socks.items()}
        self.survey = dataclasses.replace(
            survey, aggregators=tuple(Aggregator(a.name, f"127.0.0.1:{ports[a.name]}") for a in survey.aggregators)
        )
        self.certs = None if insecure else self.workdir / "certs"
        self.procs: dict[str, subprocess.Popen] = {}

    def identity(self, name: str) -> Identity:
        return Identity(name, self.certs, self.insecure)

    def _store_url(self, name: str) -> str:
        if self.store == "sqlite":
            return f"sqlite://{self.workdir / (name + '.db')}"
        return self.store

    def start(self) -> LocalSurvey:
        if self.certs is not None:
            init_certs([*self.survey.aggregator_names, COORDINATOR, RESPONDENTS], self.certs)
        for name in self.survey.aggregator_names:
            self.launch(name)
        for name in self.survey.aggregator_names:
            self.wait_serving(name)
        return self

    def launch(self, name: str) -> None:
        """Start (or restart) aggregator ``name`` on its reserved port and its store."""
        address = {a.name: a.address for a in self.survey.aggregators}[name]
        cmd = [
            sys.executable,
            "-m",
            "services.cli",
            "survey",
            "aggregator",
            "--survey",
            str(self.survey_path),
            "--name",
            name,
            "--listen",
            address,
            "--store",
            self._store_url(name),
        ]
        cmd += ["--pg-schema", "mpcdp_" + name.replace("-", "_").replace(".", "_")]
        cmd += ["--insecure"] if self.insecure else ["--certs", str(self.certs)]
        if self.noise_seed is not None:
            cmd += ["--noise-seed", str(self.noise_seed)]
        if self.survey.verified:  # the leader calls the helpers on their loopback ports
            cmd += [arg for a in self.survey.aggregators for arg in ("--peer", f"{a.name}={a.address}")]
        cmd += list(self.aggregator_args)
        log = open(self.workdir / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()

    def wait_serving(self, name: str) -> None:
        address = {a.name: a.address for a in self.survey.aggregators}[name]
        try:
            asyncio.run(wait_serving(self.identity(COORDINATOR), address, name, START_TIMEOUT))
        except Exception as exc:
            raise RuntimeError(f"aggregator {name} did not start: {self.log(name)[-2000:]}") from exc

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, name: str) -> None:
        """SIGKILL: no clean-up, no flush (what a crash looks like)."""
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def transport(self) -> GrpcTransport:
        return GrpcTransport(self.identity(RESPONDENTS), self.survey)

    def coordinator(self) -> CoordinatorClient:
        """The survey's coordinator: :class:`VerifiedCoordinator` for ``proofs = "prio3"``."""
        return coordinator_for(self.identity(COORDINATOR), self.survey)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        for sock in self._socks.values():
            sock.close()

    def __enter__(self) -> LocalSurvey:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
