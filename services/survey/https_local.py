"""A survey on loopback whose aggregators admit by token and take reports over HTTPS as well (tests, benchmarks).

:class:`~services.survey.simulation.LocalSurvey` with, for every aggregator, ``--issuer-key`` and
``--https`` on a port of its own; ``wait_serving`` also waits for the HTTPS intake to answer.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import ssl
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from mpcdp.prg import RandomSource
from mpcdp.survey.definition import Survey
from mpcdp.survey.respondent import PreparedSubmission
from mpcdp.tokens import MemoryInvitations
from services.survey.admission import IssuerDir
from services.survey.simulation import LocalSurvey

START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpsLocalSurvey(LocalSurvey):
    """Aggregator processes of ``survey`` admitting by the issuer key in ``issuer_json`` (``survey invite``'s
    issuer.json), each with its HTTPS intake; ``extra_args`` go to every aggregator."""

    def __init__(self, survey: Survey, path: Path, workdir: Path, issuer_json: Path, extra_args=(), **kw):
        super().__init__(survey, path, workdir, **kw)
        self.https = {name: f"127.0.0.1:{free_port()}" for name in survey.aggregator_names}
        self.issuer_json = Path(issuer_json)
        self.extra_args = tuple(extra_args)

    def launch(self, name: str) -> None:
        self.aggregator_args = ("--issuer-key", str(self.issuer_json), "--https", self.https[name], *self.extra_args)
        super().launch(name)

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What an HTTPS client trusts: the survey CA (or nothing to check, in plaintext)."""
        if self.certs is None:
            return False
        return ssl.create_default_context(cafile=str(self.certs / "ca.pem"))

    def wait_serving(self, name: str) -> None:
        super().wait_serving(name)
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(verify=self.ssl_context()) as client:
            while True:
                try:
                    if client.get(f"{self.url(name)}/healthz", extensions={"sni_hostname": name}).status_code == 200:
                        return
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"aggregator {name} serves no HTTPS: {self.log(name)[-2000:]}") from None
                time.sleep(0.1)

    def url(self, name: str) -> str:
        return f"{'http' if self.insecure else 'https'}://{self.https[name]}"

    def urls(self) -> dict[str, str]:
        return {name: self.url(name) for name in self.survey.aggregator_names}

    def spent_tokens(self) -> dict[str, int] | None:
        """Each aggregator's count of spent tokens, read from its SQLite store (None for other stores)."""
        if self.store != "sqlite":
            return None
        counts = {}
        for name in self.survey.aggregator_names:
            with contextlib.closing(sqlite3.connect(self.workdir / f"{name}.db")) as conn:
                (counts[name],) = conn.execute("SELECT COUNT(*) FROM spent_tokens").fetchone()
        return counts


def redeem_invitations(
    issuer: IssuerDir, submissions: Sequence[PreparedSubmission], rng: RandomSource
) -> dict[bytes, bytes]:
    """One invitation per submission, each redeemed for a token bound to it: the respondent's blinded
    TokenRequest, the issuer's :meth:`~mpcdp.tokens.Invitations.redeem` (one code, one token) and the
    respondent's finalize. In process and in memory (a simulation's throwaway invitations need no fsync)."""
    invitations = MemoryInvitations()
    codes = invitations.create(len(submissions), rng)
    admission = issuer.admission
    tokens = {}
    for code, s in zip(codes, submissions, strict=True):
        request, pending = admission.request(s.submission_id, rng)
        tokens[s.submission_id] = pending.finalize(invitations.redeem(code, request, issuer.issuer))
    return tokens
