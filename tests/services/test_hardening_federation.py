"""Issue 9 (hardening) for the federation services: each test mounts the attack or reproduces the bug."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from pathlib import Path

import grpc
import pytest

from services.ledgers import SessionLog
from services.server import Limits
from services.tls import Identity
from services.wire.mpcdp.v1 import federation_pb2 as pb
from services.wire.mpcdp.v1 import federation_pb2_grpc as pb_grpc
from tests.support.federation import RAISES, Speaker, make_cluster
from tests.support.links import RawLink

GARBAGE = b"\x0a\xff\xff\xff\xff\x0f"  # a length-delimited field running past the end: no message decodes


@pytest.fixture
async def cluster(certs):
    c = await make_cluster(certs)
    yield c
    await c.close()


async def raw_call(cluster, node, method, payload, streaming_in=False, streaming_out=False, as_name="coordinator"):
    address = cluster.federation.node(node).address
    async with Identity(as_name, cluster.federation.certs).channel(address, node) as ch:
        kind = {
            (False, False): ch.unary_unary,
            (False, True): ch.unary_stream,
            (True, False): ch.stream_unary,
            (True, True): ch.stream_stream,
        }[(streaming_in, streaming_out)]
        call = kind(method)
        request = iter([payload]) if streaming_in else payload
        try:
            if streaming_out:
                return [m async for m in call(request, timeout=5)]
            return await call(request, timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc


@pytest.mark.parametrize(
    "node, method, streaming_in, streaming_out",
    [
        ("bob", "/mpcdp.v1.Link/Port", False, False),
        ("bob", "/mpcdp.v1.Party/Compare", False, False),
        ("coordinator", "/mpcdp.v1.Coordinator/Query", False, True),
        ("bob", "/grpc.health.v1.Health/Check", False, False),
    ],
)
async def test_undecodable_request_bytes_are_invalid_argument(cluster, node, method, streaming_in, streaming_out):
    as_name = "analyst" if node == "coordinator" else "coordinator"
    err = await raw_call(cluster, node, method, GARBAGE, streaming_in, streaming_out, as_name)
    assert isinstance(err, grpc.aio.AioRpcError), err
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    assert "class" not in err.details() and "Error" not in err.details()
    assert (await cluster.query()).value == pytest.approx(3171.5, abs=1e-3)  # the node still serves


async def test_an_idle_authenticated_link_is_closed(certs):
    """A link connection that never says who it is (an authenticated peer holding it open) is closed."""
    c = await make_cluster(certs)
    try:
        bob = c.nodes["bob"].link
        bob.handshake_seconds = 1.5  # the handshake's bound, then the hello's (long enough on a loaded machine)
        raw = await RawLink.as_node(bob, Identity("alice", certs))
        began = time.monotonic()
        try:
            await raw.ended(10)  # never writes
        finally:
            await raw.close()
        assert time.monotonic() - began < 6
        assert (await c.query()).value == pytest.approx(3171.5, abs=1e-3)
    finally:
        await c.close()


async def test_an_undecodable_proposal_on_the_link_is_refused_as_invalid_argument(cluster):
    coordinator = Speaker(cluster)
    try:
        answer = await coordinator.propose_raw("bob", b"g" * 16, GARBAGE)
    finally:
        await coordinator.close()
    assert not answer.accepted and answer.status == pb.REFUSAL_STATUS_INVALID_ARGUMENT
    assert "does not decode" in answer.reason and "Error" not in answer.reason
    assert (await cluster.query()).value == pytest.approx(3171.5, abs=1e-3)


def test_limits_become_keepalive_and_stream_options():
    options = dict(Limits(keepalive_time=30, keepalive_timeout=5, max_concurrent_streams=7).options())
    assert options["grpc.keepalive_time_ms"] == 30_000 and options["grpc.keepalive_timeout_ms"] == 5_000
    assert options["grpc.max_concurrent_streams"] == 7
    with pytest.raises(ValueError):
        Limits(idle_timeout=0)


def test_simulated_parties_get_their_values_from_private_files_not_their_command_line():
    import json
    import subprocess
    import sys

    from services.simulation import LocalFederation

    values = {"alice": [3817.25], "bob": [2514.75]}
    with LocalFederation(values, column="raise", timeout=10.0) as f:
        for name, proc in f.procs.items():
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode()
            assert "3817.25" not in cmdline and "2514.75" not in cmdline, (name, cmdline)
        for name in values:
            assert (f.dir / f"{name}.csv").stat().st_mode & 0o777 == 0o600
        r = f.query("sum", bounds=(0, 10_000), epsilon=1.0)
        fetched = subprocess.run(
            [
                sys.executable,
                "-m",
                "services.cli",
                "query",
                "--federation",
                str(f.path),
                "--fetch",
                r.session_id,
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert fetched.returncode == 0, fetched.stderr
        assert json.loads(fetched.stdout)["result"] == r.result  # the kept release, fetched by the command
        from services.releases import ReleaseStore

        kept = ReleaseStore(f.federation.node("coordinator").state_dir / "coordinator.releases").get(r.session_id)
        assert kept is not None and kept[0]["client"] == "analyst"  # on disk: a restarted coordinator finds it


# -- 3. clear errors: the analyst gets INVALID_ARGUMENT naming the field, from coordinator and party ----------


async def expect(cluster, code, *fragments, **kw):
    from services.analyst import QueryError

    with pytest.raises(QueryError) as info:
        await cluster.query(**kw)
    assert info.value.code == code, info.value
    for fragment in fragments:
        assert fragment in info.value.details, info.value.details
    assert "<class" not in info.value.details and "Error" not in info.value.details
    return info.value


@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(bounds=(0, 1e308), epsilon=1.0), "bounds"),
        (dict(bounds=(-1e308, 1e308)), "bounds"),
        (dict(epsilon=1e-300), "epsilon"),
    ],
)
async def test_extreme_bounds_and_epsilon_are_invalid_argument_naming_the_field(cluster, kw, field):
    await expect(cluster, grpc.StatusCode.INVALID_ARGUMENT, field, **kw)


async def test_a_party_refuses_extreme_specs_itself_with_invalid_argument(cluster):
    """A coordinator that forwards whatever it is given: the party's own check names the field."""
    coordinator = Speaker(cluster)
    try:
        for i, (lower, upper, epsilon, field) in enumerate(((0, 1e308, 1.0, "bounds"), (0, 1, 1e-300, "epsilon"))):
            sid = bytes([i]) * 16
            spec = pb.QuerySpec(
                statistic=pb.STATISTIC_SUM,
                sharing=pb.SHARING_SEEDED,
                mechanism=pb.MECHANISM_DISCRETE_LAPLACE,
                parties=list(RAISES),
                session_id=sid,
                column="raise",
                lower=lower,
                upper=upper,
                epsilon=epsilon,
                max_records=1,
                deadline=time.time() + 30,
            )
            answer = await coordinator.propose_raw("bob", sid, pb.Propose(spec=spec).SerializeToString())
            assert not answer.accepted and answer.status == pb.REFUSAL_STATUS_INVALID_ARGUMENT, answer
            assert field in answer.reason and "<class" not in answer.reason
    finally:
        await coordinator.close()


async def test_deadline_zero_and_too_far_are_refused_by_the_party(cluster):
    def propose(deadline, sid):
        spec = pb.QuerySpec(
            statistic=pb.STATISTIC_MEAN,
            sharing=pb.SHARING_SEEDED,
            parties=list(RAISES),
            session_id=sid,
            column="raise",
            upper=10_000,
            max_records=1,
            deadline=deadline,
        )
        return pb.Propose(spec=spec).SerializeToString()

    coordinator = Speaker(cluster)
    try:
        zero = await coordinator.propose_raw("bob", b"z" * 16, propose(0.0, b"z" * 16))
        far = await coordinator.propose_raw("bob", b"y" * 16, propose(time.time() + 10**6, b"y" * 16))
    finally:
        await coordinator.close()
    assert not zero.accepted and zero.status == pb.REFUSAL_STATUS_INVALID_ARGUMENT and "deadline" in zero.reason
    assert not far.accepted and far.status == pb.REFUSAL_STATUS_INVALID_ARGUMENT and "deadline" in far.reason
    assert "at most 305 s" in far.reason  # max_timeout 300 s plus 5 s for clock differences


async def test_timeout_seconds_is_capped_by_the_coordinator(cluster):
    await expect(cluster, grpc.StatusCode.INVALID_ARGUMENT, "timeout_seconds", "300", timeout=10**6)


# -- 2. budget is never spent without a release reaching the analyst ----------------------------------------


@pytest.fixture
async def dp_cluster(certs, tmp_path):
    from mpcdp.dp.ledger import PrivacyLedger
    from services.releases import ReleaseStore

    ledgers = {name: PrivacyLedger(tmp_path / f"{name}.db", "raises", 10.0) for name in ["coordinator", *RAISES]}
    c = await make_cluster(certs, ledgers=ledgers, data={p: {"raise": [v], "team": [p]} for p, v in RAISES.items()})
    c.ledgers = ledgers
    c.nodes["coordinator"].store = ReleaseStore(tmp_path / "coordinator.releases")
    yield c
    await c.close()


def spent(cluster):
    return {name: float(ledger.spent().epsilon) for name, ledger in cluster.ledgers.items()}


async def test_a_bad_confidence_level_is_refused_before_any_ledger_is_charged(dp_cluster):
    from services.analyst import QueryError

    async with dp_cluster.client() as client:  # the analyst's side refuses it before sending
        with pytest.raises(QueryError) as info:
            await client.query("count", column="raise", epsilon=1.0, confidence=1e-20)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and "confidence" in info.value.details
    coordinator = dp_cluster.federation.coordinator()
    request = pb.QueryRequest(
        spec=pb.QuerySpec(
            statistic=pb.STATISTIC_COUNT,
            sharing=pb.SHARING_SEEDED,
            mechanism=pb.MECHANISM_DISCRETE_LAPLACE,
            column="raise",
            epsilon=1.0,
            upper=1,
        ),
        confidence=1e-20,
    )
    async with Identity("analyst", dp_cluster.federation.certs).channel(coordinator.address, "coordinator") as ch:
        with pytest.raises(grpc.aio.AioRpcError) as raw:  # and so does the coordinator, for any client
            [p async for p in pb_grpc.CoordinatorStub(ch).Query(request)]
    assert raw.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "confidence" in raw.value.details()
    assert spent(dp_cluster) == {name: 0.0 for name in dp_cluster.ledgers}


async def test_a_histogram_of_120000_categories_reaches_the_analyst(dp_cluster):
    categories = [f"team-{i:06d}" for i in range(120_000)] + list(RAISES)
    r = await dp_cluster.query("histogram", column="team", categories=categories, epsilon=1.0, timeout=60)
    assert len(r.value) == len(categories) and list(r.value)[:2] == categories[:2]
    assert set(r.intervals["histogram"]) == set(categories)
    truth = {**{c: 0 for c in categories[:100]}, **{p: 1 for p in RAISES}}  # each cell misses w.p. < 0.05/120004
    assert all(r.intervals["histogram"][c][0] <= t <= r.intervals["histogram"][c][1] for c, t in truth.items())
    assert spent(dp_cluster) == {name: 1.0 for name in dp_cluster.ledgers}


class SlowPartial:
    """A party that takes a while to send its partial sum: time for the analyst to vanish."""

    async def _run(self, live):
        from services.party_node import PartyNode

        await asyncio.sleep(0.5)
        return await PartyNode._run(self, live)


async def test_an_analyst_who_vanishes_after_the_charge_fetches_the_release_at_no_cost(dp_cluster):
    from services.party_node import PartyNode

    slow = type("Slow", (SlowPartial, PartyNode), {})
    dp_cluster.nodes["alice"].__class__ = slow
    coordinator = dp_cluster.federation.coordinator()
    request = pb.QueryRequest(
        spec=pb.QuerySpec(
            statistic=pb.STATISTIC_SUM,
            sharing=pb.SHARING_SEEDED,
            mechanism=pb.MECHANISM_DISCRETE_LAPLACE,
            column="raise",
            epsilon=1.0,
            upper=10_000,
        ),
        timeout_seconds=20,
    )
    async with Identity("analyst", dp_cluster.federation.certs).channel(coordinator.address, "coordinator") as ch:
        call = pb_grpc.CoordinatorStub(ch).Query(request)
        sid = dict(await call.initial_metadata())["mpcdp-session-id"]
        call.cancel()  # the analyst goes away while the session runs
    for _ in range(100):
        if spent(dp_cluster)["coordinator"]:
            break
        await asyncio.sleep(0.05)
    assert spent(dp_cluster) == {name: 1.0 for name in dp_cluster.ledgers}
    async with dp_cluster.client() as client:
        first = await client.fetch(sid)
        again = await client.fetch(sid)
    assert first.session_id == again.session_id == sid and first.value == again.value
    lo, hi = first.intervals["sum"]
    assert first.epsilon == 1.0 and lo <= sum(RAISES.values()) <= hi
    assert spent(dp_cluster) == {name: 1.0 for name in dp_cluster.ledgers}  # fetching cost nothing
    from services.analyst import QueryError

    async with dp_cluster.client("mallory") as other, dp_cluster.client() as client:
        with pytest.raises(QueryError) as info:
            await other.fetch(sid)  # only a client of the federation ...
        assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(QueryError) as info:
            await client.fetch("00" * 16)  # ... and only a session released here
        assert info.value.code == grpc.StatusCode.NOT_FOUND


async def test_a_fetch_refuses_a_dp_release_kept_but_never_charged(dp_cluster):
    """Review-3 finding 2: Fetch checks the charge with one indexed lookup (PrivacyLedger.has_charge), not a scan
    of the history, and still refuses a release whose charge is missing (a crash between keeping and charging)."""
    from services.analyst import QueryError

    node = dp_cluster.nodes["coordinator"]
    unpaid, paid = "ab" * 16, "cd" * 16
    node.store.put(unpaid, "analyst", False, [b"\x0a\x03abc"])
    dp_cluster.ledgers["coordinator"].charge(0.5, label=paid)  # another session's charge
    async with dp_cluster.client() as client:
        with pytest.raises(QueryError) as info:
            await client.fetch(unpaid)
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    assert await node._charged(paid, {"exact": False}) and not await node._charged(unpaid, {"exact": False})


# -- 4. a stalled party delays only the queries that include it (real processes, SIGSTOP) --------------------


def test_a_stopped_party_delays_only_the_queries_that_include_it():
    import os
    import signal
    import threading

    from services.analyst import Analyst, QueryError
    from services.simulation import LocalFederation

    with LocalFederation({"alice": [3800], "bob": [2514], "carol": [2982]}, column="raise", timeout=10.0) as f:
        os.kill(f.procs["carol"].pid, signal.SIGSTOP)
        try:
            stalled = {}

            def ask_everyone():
                async def go():
                    async with Analyst(f.federation, "analyst") as c:
                        return await c.query("sum", column="raise", bounds=(0, 10_000), timeout=4.0)

                try:
                    stalled["result"] = asyncio.run(go())
                except QueryError as exc:
                    stalled["error"] = exc

            waiting = threading.Thread(target=ask_everyone)
            waiting.start()
            time.sleep(0.5)  # the query over carol is now waiting for her answer
            began = time.monotonic()
            r = f.query("sum", bounds=(0, 10_000), parties=["alice", "bob"])
            took = time.monotonic() - began
            assert r.value == pytest.approx(3800 + 2514, abs=1e-3) and took < 3.0, took
            assert waiting.is_alive()  # carol's query is still pending while the other one completed
        finally:
            os.kill(f.procs["carol"].pid, signal.SIGCONT)
        waiting.join(30)
        assert "carol" in str(stalled.get("error", "")) or "result" in stalled


# -- 5. used session ids survive a restart -----------------------------------------------------------------


@pytest.mark.parametrize("threads_busy", [False, True], ids=["threads-free", "threads-busy"])
async def test_a_finished_session_id_is_refused_after_the_party_restarts(certs, tmp_path, monkeypatch, threads_busy):
    """threads-busy: the whole-suite flake (load ~10) made certain. Bob accepted a session, its id went to the session
    log's writing task, every worker thread was busy, and bob closed before the write began: the id never reached
    the disk and the replay was accepted after the restart. The log's writes now wait for a worker until bob closed."""
    from tests.support.federation import open_session, parties_with_session_logs

    loop, gate = asyncio.get_running_loop(), threading.Event()
    real = loop.run_in_executor

    def held(executor, func, *args):  # the session logs' writes wait for a worker until the gate opens
        call = func.args[0] if isinstance(func, functools.partial) and func.args else None  # to_thread: ctx.run(call)
        if isinstance(getattr(call, "__self__", None), SessionLog):
            return real(executor, lambda: (gate.wait(5), func(*args))[1])
        return real(executor, func, *args)

    durable = parties_with_session_logs(tmp_path)
    c = await make_cluster(certs, party_cls=durable)
    if threads_busy:
        monkeypatch.setattr(loop, "run_in_executor", held)
    try:
        coordinator, spec = await open_session(c, party="bob", session_id=b"r" * 16)
        assert (await coordinator.abort("bob", spec.session_id)).sender == "bob"
        await coordinator.close()
    finally:
        await c.close()
        gate.set()
    monkeypatch.undo()
    restarted = await make_cluster(certs, party_cls=durable)  # new processes' worth of nodes, same state folder
    try:
        coordinator = Speaker(restarted)
        replay = await coordinator.propose("bob", spec)
        await coordinator.close()
        assert not replay.accepted and replay.status == pb.REFUSAL_STATUS_ALREADY_EXISTS
        assert (await restarted.query()).value == pytest.approx(3171.5, abs=1e-3)
    finally:
        await restarted.close()
    assert (tmp_path / "bob.sessions").stat().st_mode & 0o777 == 0o600


# -- 6. what nodes reveal and log ----------------------------------------------------------------------------


async def test_refusals_name_no_local_file_dataset_or_column(certs, tmp_path):
    """The ledger's dataset is the party's data file path: a budget refusal used to carry it to the analyst."""
    import numpy as np

    from mpcdp.dp.ledger import PrivacyLedger
    from services.analyst import QueryError
    from services.data import Table

    secret = tmp_path / "hr-confidential" / "salaries-2026.csv"
    secret.parent.mkdir()
    secret.write_text("raise,ssn,vec\n3800,123-45-6789,1\n")
    table = Table.load(secret)
    ledgers = {p: PrivacyLedger(tmp_path / f"{p}.db", table.source, 1.0) for p in RAISES}
    data = {p: {"raise": [v], "ssn": ["x"]} for p, v in RAISES.items()}
    data["dave"] = {"raise": [3390], "ssn": ["987-65-4321"], "vec": np.ones((1, 3))}
    c = await make_cluster(certs, data=data, ledgers=ledgers)
    try:
        await c.query(epsilon=1.0)
        details = []
        for kw in (dict(epsilon=1.0), dict(column="ssn"), dict(column="vec", dimension=2), dict(column="nope")):
            with pytest.raises(QueryError) as info:
                await c.query(**kw)
            details.append(info.value.details)
        assert "budget exceeded" in details[0] and "not numeric" in details[1]
        for text in details:
            assert "hr-confidential" not in text and "salaries" not in text and str(tmp_path) not in text, text
            assert "987-65" not in text and "holds vectors of length 3" not in text, text
    finally:
        await c.close()


async def test_the_audit_log_records_refusals_releases_and_denials_without_values(certs, tmp_path, capsys):
    import json

    from services import audit
    from services.analyst import QueryError

    log = tmp_path / "audit.log"
    handlers = list(logging.getLogger().handlers)
    audit.configure("test", "json", log)
    try:
        c = await make_cluster(certs, data={p: {"raise": [v + 0.123]} for p, v in RAISES.items()})
        try:
            await c.query(sharing="full")
            with pytest.raises(QueryError):
                await c.query(column="missing")
            async with c.client("mallory") as m:
                with pytest.raises(QueryError):
                    await m.query("mean", column="raise", bounds=(0, 10_000))
        finally:
            await c.close()
    finally:
        audit.reset()
    assert logging.getLogger().handlers == handlers  # pytest's own log handlers left alone, the audit one gone
    text = log.read_text()
    events = [json.loads(line) for line in text.splitlines()]
    kinds = {e["event"] for e in events}
    assert {"released", "refused", "denied"} <= kinds, kinds
    assert any(e["event"] == "denied" and e.get("caller") == "mallory" for e in events)
    assert all("time" in e and "node" in e for e in events)
    # random session ids and timestamps may contain any digits: look for the values everywhere else
    rest = json.dumps([{k: x for k, x in e.items() if k not in ("session", "time")} for e in events])
    for v in RAISES.values():
        assert f"{v + 0.123}" not in rest and str(v) not in rest
    assert log.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ValueError):
        audit.record("released", seed=b"k" * 32)


class Accuser:
    """alice aborts every session, blaming bob."""

    async def _run(self, live):
        from services.party_node import PartyNode

        if self.me == "alice":
            return self._abort(live, "bob cheated", "bob")
        return await PartyNode._run(self, live)


async def test_an_abort_naming_a_culprit_is_shown_as_the_claim_of_the_party_that_made_it(certs):
    from services.analyst import QueryError
    from services.party_node import PartyNode

    c = await make_cluster(certs, party_cls=type("Accusing", (Accuser, PartyNode), {}))
    try:
        with pytest.raises(QueryError) as info:
            await c.query(timeout=5.0)
        text = info.value.details
        assert "alice aborted the session, reporting: bob cheated" in text
        assert "alice blames bob" in text and "cannot verify" in text
        assert not text.startswith("bob")
    finally:
        await c.close()


async def test_concurrent_queries_cannot_together_overspend_the_coordinators_budget(certs, tmp_path):
    """Without the single lock, the coordinator's ledger reserves what running sessions will spend."""
    from mpcdp.dp.ledger import PrivacyLedger
    from services.analyst import QueryError
    from services.party_node import PartyNode

    ledger = PrivacyLedger(tmp_path / "coordinator.db", "raises", 1.5)
    c = await make_cluster(certs, ledgers={"coordinator": ledger}, party_cls=type("Slow", (SlowPartial, PartyNode), {}))
    try:
        outcomes = await asyncio.gather(c.query(epsilon=1.0), c.query(epsilon=1.0), return_exceptions=True)
        refused = [o for o in outcomes if isinstance(o, QueryError)]
        assert len(refused) == 1 and refused[0].code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "held for 1 session" in refused[0].details and "raises" not in refused[0].details
        assert float(ledger.spent().epsilon) == 1.0
    finally:
        await c.close()


class Broken:
    """A party whose share handling (or, keyed, masking) fails with an unexpected exception carrying local detail."""

    async def _receive_share(self, session, peer):
        raise RuntimeError("/srv/alice/private.csv row 17")

    async def _keyed(self, live):
        raise RuntimeError("/srv/alice/private.csv row 17")


@pytest.mark.parametrize("sharing", ["seeded", "keyed"])
async def test_an_unexpected_failure_is_reported_with_no_class_name_or_detail(certs, sharing):
    from services.analyst import QueryError
    from services.party_node import PartyNode

    c = await make_cluster(certs, party_cls=type("Broken", (Broken, PartyNode), {}))
    try:
        with pytest.raises(QueryError) as info:
            await c.query(timeout=5.0, sharing=sharing)
        text = info.value.details
        assert info.value.code == grpc.StatusCode.ABORTED and "internal error" in text
        assert "RuntimeError" not in text and "private.csv" not in text and "<class" not in text
    finally:
        await c.close()


async def test_an_analyst_who_stops_reading_does_not_hold_the_release_call_forever(dp_cluster, caplog):
    """A client that never reads a large release (and sets no deadline) used to block its Query call for good."""
    caplog.set_level(logging.INFO, logger="mpcdp.audit")
    coordinator = dp_cluster.nodes["coordinator"]
    coordinator.send_timeout = 0.5
    categories = [f"c{i:07d}" for i in range(200_000)]  # ~6 MiB of parts: more than the transport buffers
    request = pb.QueryRequest(
        spec=pb.QuerySpec(
            statistic=pb.STATISTIC_HISTOGRAM,
            sharing=pb.SHARING_SEEDED,
            mechanism=pb.MECHANISM_DISCRETE_LAPLACE,
            column="team",
            epsilon=1.0,
            categories=categories,
        ),
        timeout_seconds=60,
    )
    node = dp_cluster.federation.coordinator()
    async with Identity("analyst", dp_cluster.federation.certs).channel(node.address, "coordinator") as ch:
        call = pb_grpc.CoordinatorStub(ch).Query(request)  # no deadline, and never read
        sid = dict(await call.initial_metadata())["mpcdp-session-id"]
        for _ in range(1200):  # until the coordinator gives up sending (fixed sleeps were too short at load 20)
            aborts = [r for r in caplog.records if getattr(r, "audit", {}).get("event") == "aborted"]
            if any(r.audit.get("session") == sid and "not read" in r.audit["reason"] for r in aborts):
                break
            await asyncio.sleep(0.05)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in call:
                pass
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and sid in info.value.details()
    async with dp_cluster.client() as client:  # the release is kept, and costs nothing to fetch
        assert len((await client.fetch(sid)).value) == len(categories)
    assert spent(dp_cluster) == {name: 1.0 for name in dp_cluster.ledgers}
