"""A coordinator's two link listeners (the parties' links, the clients' query links) each audit a failed TLS
handshake under their own name."""

from __future__ import annotations

import contextlib
import logging
import ssl

from tests.support.federation import certs, make_cluster, until  # noqa: F401  (certs: a fixture)
from tests.support.links import RawLink


async def test_each_listener_of_a_coordinator_audits_a_failed_handshake_under_its_own_name(certs, caplog):  # noqa: F811
    caplog.set_level(logging.INFO, logger="mpcdp.audit")
    cluster = await make_cluster(certs)
    try:
        coordinator = cluster.nodes["coordinator"]
        anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no certificate: refused by either listener
        anonymous.check_hostname, anonymous.verify_mode = False, ssl.CERT_NONE
        for hub in (coordinator.link, coordinator.queries.hub):
            with contextlib.suppress(ssl.SSLError, ConnectionError):
                raw = await RawLink.open(hub, anonymous)
                try:
                    raw.send(b"hello")
                    await raw.ended(5)
                finally:
                    await raw.close()

        def audited() -> dict[str, dict]:
            events = [getattr(r, "audit", {}) for r in caplog.records]
            return {e["listener"]: e for e in events if e.get("event") == "handshake_failed"}

        await until(lambda: len(audited()) == 2)
        by_name = audited()
        assert by_name["link listener"]["port"] == coordinator.link.port
        assert by_name["clients' query link listener"]["port"] == coordinator.queries.hub.port
        assert all(e["reason"] == "it presented no certificate" for e in by_name.values())
    finally:
        await cluster.close()
