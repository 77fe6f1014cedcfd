"""Shared test helpers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mpcdp.prg import Prg
from mpcdp.survey.definition import Aggregator, parse_survey
from mpcdp.survey.respondent import SurveyClient
from mpcdp.survey.synthetic import synthetic_answers
from services.server import start
from services.survey.aggregator import AggregatorService
from services.survey.budget import SurveyLedger
from services.survey.store import open_store
from services.survey.transport import GrpcTransport
from services.tls import Identity, init_certs
from services.wire.mpcdp.v1 import survey_pb2, survey_pb2_grpc

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "election_poll.toml"


TEXT = EXAMPLE.read_text().replace("min_respondents = 1000", "min_respondents = 50").replace('proofs = "prio3"', "")


SERVICE = survey_pb2.DESCRIPTOR.services_by_name["SurveyAggregator"].full_name


class Federation:
    """Three aggregators as in-process gRPC servers on SQLite stores."""

    def __init__(self, tmp: Path, insecure: bool = True):
        self.base = parse_survey(TEXT)
        self.tmp = tmp
        self.insecure = insecure
        self.certs = None
        if not insecure:
            self.certs = tmp / "certs"
            init_certs([*self.base.aggregator_names, "coordinator", "respondents", "mallory"], self.certs)
        self.servers, self.stores = [], []

    def identity(self, name):
        return Identity(name, self.certs, self.insecure)

    async def start(self):
        addresses = []
        for name in self.base.aggregator_names:
            store = open_store(f"sqlite://{self.tmp / (name + '.db')}")
            service = AggregatorService(
                name,
                {self.base.id: self.base},
                store,
                lambda s, n=name: Prg.from_int(99, f"noise/{n}"),
                insecure=self.insecure,
                ledger=SurveyLedger(self.tmp / f"{name}.ledger.db"),
            )
            server, port = await start(
                self.identity(name),
                "127.0.0.1:0",
                [(survey_pb2_grpc.add_SurveyAggregatorServicer_to_server, service, SERVICE)],
            )
            self.servers.append(server)
            self.stores.append(store)
            addresses.append(Aggregator(name, f"127.0.0.1:{port}"))
        self.survey = dataclasses.replace(self.base, aggregators=tuple(addresses))
        return self

    async def stop(self):
        for server in self.servers:
            await server.stop(None)
        for store in self.stores:
            store.shutdown()


@pytest.fixture
async def fed(tmp_path):
    f = await Federation(tmp_path).start()
    yield f
    await f.stop()


def sheets(n, seed):
    return synthetic_answers(parse_survey(TEXT), n, Prg.from_int(seed, "truth"))


async def deliver(fed, prepared, **kw):
    transport = GrpcTransport(fed.identity("respondents"), fed.survey, timeout=10)
    try:
        await SurveyClient(fed.survey, transport).deliver(prepared, **kw)
    finally:
        await transport.close()
