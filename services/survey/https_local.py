"""A survey on loopback whose aggregators admit by token and take reports over HTTPS as well (tests, benchmarks).

:class:`~services.survey.simulation.LocalSurvey` with, for every aggregator, ``--issuer-key`` and
``--https`` on a port of its own; ``wait_serving`` also waits for the HTTPS intake to answer.
"""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import httpx

from mpcdp.survey.definition import Survey
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
