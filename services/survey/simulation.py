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
from pathlib import Path

from mpcdp.survey.definition import Aggregator, Survey
from services.launch import Processes, mpcdp_command, reserve_ports
from services.survey.collector import coordinator_for
from services.survey.transport import CoordinatorClient, GrpcTransport
from services.tls import Identity, init_certs

COORDINATOR = "coordinator"
RESPONDENTS = "respondents"
START_TIMEOUT = 60.0


def loopback_survey_text(
    questions: str, survey_id: str, head: str = "min_respondents = 1", aggregators: tuple[str, ...] = ("agg-a", "agg-b")
) -> str:
    """The text of a survey file for :class:`LocalSurvey`: ``head`` adds lines to ``[survey]``, ``questions`` is
    the ``[[question]]`` tables; the aggregators get placeholder loopback addresses (LocalSurvey reserves the
    real ports)."""
    tables = "".join(f'[[aggregator]]\nname = "{n}"\naddress = "127.0.0.1:{i}"\n' for i, n in enumerate(aggregators, 1))
    return f'[survey]\nid = "{survey_id}"\n{head}\n{tables}{questions}'


class LocalSurvey:
    """Aggregator processes for ``survey`` (parsed from ``survey_path``) under ``workdir``.

    ``store`` is "sqlite" (one file per aggregator in workdir), "memory" or a
    postgresql:// DSN (one schema per aggregator in that database). ``noise_seed`` makes the
    aggregators' noise reproducible (simulations and tests only). The processes run under
    :class:`services.launch.Processes` (logs in ``workdir/<name>.log``).
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
        self._socks = reserve_ports(survey.aggregator_names)
        ports = {n: s.getsockname()[1] for n, s in self._socks.items()}
        self.survey = dataclasses.replace(
            survey, aggregators=tuple(Aggregator(a.name, f"127.0.0.1:{ports[a.name]}") for a in survey.aggregators)
        )
        self.certs = None if insecure else self.workdir / "certs"
        self.processes = Processes(self.workdir)

    @property
    def procs(self) -> dict:
        """The running aggregator processes by name."""
        return self.processes.procs

    def identity(self, name: str) -> Identity:
        return Identity(name, self.certs, self.insecure)

    def _store_url(self, name: str) -> str:
        if self.store == "sqlite":
            return f"sqlite://{self.workdir / (name + '.db')}"
        return self.store

    def _address(self, name: str) -> str:
        return {a.name: a.address for a in self.survey.aggregators}[name]

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
        args = ["survey", "aggregator", "--survey", str(self.survey_path), "--name", name]
        args += ["--listen", self._address(name), "--store", self._store_url(name)]
        args += ["--pg-schema", "mpcdp_" + name.replace("-", "_").replace(".", "_")]
        args += ["--ledger", str(self.workdir / f"{name}.ledger.db")]
        args += ["--insecure"] if self.insecure else ["--certs", str(self.certs)]
        if self.noise_seed is not None:
            args += ["--noise-seed", str(self.noise_seed)]
        if self.survey.verified:  # the leader calls the helpers on their loopback ports
            args += [arg for a in self.survey.aggregators for arg in ("--peer", f"{a.name}={a.address}")]
        self.processes.start(name, mpcdp_command(*args, *self.aggregator_args))

    def wait_serving(self, name: str) -> None:
        """Until aggregator ``name`` serves (RuntimeError quoting its log if it exits or stays silent)."""
        asyncio.run(self.processes.wait_serving(name, self.identity(COORDINATOR), self._address(name), START_TIMEOUT))

    def log(self, name: str) -> str:
        return self.processes.log(name, tail=1 << 20)

    def kill(self, name: str) -> None:
        """SIGKILL: no clean-up, no flush (what a crash looks like)."""
        self.processes.kill(name)

    def transport(self) -> GrpcTransport:
        return GrpcTransport(self.identity(RESPONDENTS), self.survey)

    def coordinator(self) -> CoordinatorClient:
        """The survey's coordinator: :class:`VerifiedCoordinator` for verified surveys."""
        return coordinator_for(self.identity(COORDINATOR), self.survey)

    async def close_and_verify(self):
        """Close the survey and release it; the coordinator's count of verified reports (None for a survey
        without proofs)."""
        coordinator = self.coordinator()
        try:
            await coordinator.close_and_release()
            return getattr(coordinator, "verification", None)
        finally:
            await coordinator.close()

    def stop(self) -> None:
        self.processes.stop(grace=10)
        for sock in self._socks.values():
            sock.close()

    def __enter__(self) -> LocalSurvey:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
