"""Anonymous tokens: issuance (blind signing) and verification per second per core, 2048-bit RSA.

Writes benchmarks/results/survey_tokens.json. RFC 9578 token type 2 (RSABSSA-SHA384-PSS-
Deterministic, 2048-bit keys, RFC 9578's size). All randomness and inputs are made before the clock
starts; each figure is the best of ``--repeats`` runs, in process CPU seconds of this one thread
(so it is per core, whatever else the shared machine runs), wall seconds recorded beside:

- issuance: ``Issuer.issue`` of a TokenRequest (checks + constant-time CRT RSASP1 + the e-check);
- redemption: ``SQLiteInvitations.redeem`` (keyed hash, one durable IMMEDIATE transaction, sign);
  its CPU rate excludes the disk's fsync wait, which the wall figure includes;
- verification: ``verify_token`` (decode, key id, challenge digest, RSASSA-PSS verify), next to
  OpenSSL's RSASSA-PSS verify alone on the same tokens (the floor any Python verifier pays);
- client: ``request_token`` + ``finalize`` (blind, unblind, verify) per token;
- the JavaScript library (@cloudflare/blindrsa-ts 0.4.4 in Node, WebCrypto keys) in the same run:
  blind signing and verification per second on the same key.

- admission: what an aggregator does per report, ``check_batch`` of one token (verification plus the
  binding to the survey and submission id);
- durable ingestion with and without tokens, same run (``ingest`` in the JSON):
  * store: ``ReportStore.put`` of the example poll's leader reports (2,048 bytes) into SQLite (WAL,
    synchronous=FULL) in batches of 1 (one HTTPS request) and of 100 (one gRPC batch), with token
    admission (verify + bind + spend in the report's transaction) and without;
  * end to end: the example poll's aggregator processes on loopback (TLS); the respondents' reports and
    tokens are made before the clock starts; timed: every report into the leader, acknowledged after
    commit, over HTTPS/HTTP/2 with a token each (one POST per report, ``--concurrency`` in flight) and
    over gRPC without tokens (batches of 100, the path of surveys without admission). Per second = reports
    / wall seconds; per leader CPU second = reports / the leader process's CPU seconds (from /proc).

Targets (issue 12): issuance >= 500/s and verification >= 20,000/s per core.

    python benchmarks/survey_tokens.py [--n 300] [--verify-n 20000] [--repeats 3] [--ingest-n 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

from benchlib.files import load_module
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from mpcdp.prg import Prg
from mpcdp.survey.definition import parse_survey
from mpcdp.survey.respondent import SurveyClient
from mpcdp.survey.synthetic import synthetic_answers
from mpcdp.tokens import (
    Issuer,
    SQLiteInvitations,
    TokenChallenge,
    generate_issuer_key,
    request_token,
    verify_token,
)
from mpcdp.tokens.admission import SurveyAdmission, check_batch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "election_poll.toml"
OUT = Path(__file__).parent / "results" / "survey_tokens.json"
TARGET_ISSUANCE = 500
TARGET_VERIFICATION = 20_000
CHALLENGE = TokenChallenge.bound(b"survey-bench", b"agg-a,agg-b", b"report").encode()

blindrsa_node = load_module("blindrsa_node", ROOT / "interop" / "blindrsa_node.py")


def timed(fn, items, repeats: int) -> dict:
    """Best-of-repeats rate of ``fn`` over ``items`` in CPU seconds (one thread), wall beside."""
    best = None
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        for item in items:
            fn(item)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        if best is None or cpu < best["cpu_seconds"]:
            best = {"wall_seconds": wall, "cpu_seconds": cpu}
    best["operations"] = len(items)
    best["per_second_per_core"] = round(len(items) / best["cpu_seconds"])
    best["per_second_wall"] = round(len(items) / best["wall_seconds"])
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300, help="token requests issued per run")
    ap.add_argument("--verify-n", type=int, default=20_000, help="token verifications per run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--js-seconds", type=float, default=1.0, help="seconds per JavaScript figure (0: skip)")
    ap.add_argument("--ingest-n", type=int, default=2000, help="reports per durable ingestion run (0: skip)")
    ap.add_argument("--concurrency", type=int, default=32, help="HTTPS requests in flight end to end")
    args = ap.parse_args()

    key = generate_issuer_key()
    issuer = Issuer(key)
    rng = Prg.from_int(2026, "bench")
    pairs = [request_token(issuer.public_key, CHALLENGE, rng) for _ in range(args.n)]
    requests = [r for r, _ in pairs]
    tokens = [p.finalize(issuer.issue(r)) for r, p in pairs]
    verify_items = [tokens[i % len(tokens)] for i in range(args.verify_n)]

    results = {"issuance": timed(issuer.issue, requests, args.repeats)}
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteInvitations(Path(tmp) / "invitations.sqlite")
        codes = store.create(args.n, rng)
        work = list(zip(codes, requests))
        results["redemption_sqlite"] = timed(lambda cr: store.redeem(cr[0], cr[1], issuer), work, 1)
    results["verification"] = timed(lambda t: verify_token(issuer.public_key, t, CHALLENGE), verify_items, args.repeats)
    # the floor: OpenSSL's RSASSA-PSS verify alone (through cryptography), same tokens, same run
    public = issuer.public_key.blind
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
    results["openssl_pss_verify_only"] = timed(
        lambda t: public.key.verify(t[98:], t[:98], pss, hashes.SHA384()), verify_items, args.repeats
    )
    survey = parse_survey(EXAMPLE.read_text())
    admission = SurveyAdmission(issuer.public_key, survey.id, survey.digest, survey.aggregator_names)
    sids = [rng.bytes(16) for _ in range(args.n)]
    bound = [pending.finalize(issuer.issue(req)) for req, pending in (admission.request(sid, rng) for sid in sids)]
    pairs_bound = [(sids[i % args.n], bound[i % args.n]) for i in range(args.verify_n)]
    results["admission_check"] = timed(lambda ts: check_batch(admission, [ts]), pairs_bound, args.repeats)

    # the client's requests are replayed from one seed: answer them all before the clock starts
    responses = {}
    replay = Prg.from_int(7, "bench-client")
    for _ in range(args.n * args.repeats):
        req, _ = request_token(issuer.public_key, CHALLENGE, replay)
        responses[req] = issuer.issue(req)
    client_rng = Prg.from_int(7, "bench-client")

    def client(_):
        req, pending = request_token(issuer.public_key, CHALLENGE, client_rng)
        pending.finalize(responses[req])

    results["client_request_and_finalize"] = timed(client, range(args.n), args.repeats)

    javascript = None
    if args.js_seconds > 0 and blindrsa_node.missing() is None:
        (bench,) = blindrsa_node.run(
            [
                {
                    "op": "bench",
                    "variant": "RSABSSA-SHA384-PSS-Deterministic",
                    "spki": blindrsa_node.spki_hex(key.public_key()),
                    "pkcs8": blindrsa_node.pkcs8_hex(key),
                    "seconds": args.js_seconds,
                }
            ]
        )
        javascript = {
            "blind_sign_per_second": round(bench["sign_per_s"], 1),
            "verify_per_second": round(bench["verify_per_s"]),
        }

    ingest = measure_ingest(issuer, args.ingest_n, args.concurrency) if args.ingest_n else None

    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip() or None
    issuance = results["issuance"]["per_second_per_core"]
    verification = results["verification"]["per_second_per_core"]
    doc = {
        "benchmark": "Privacy Pass token type 2 (RFC 9578) over RFC 9474 blind RSA, 2048-bit key, one core",
        "seconds": "best of repeats, process CPU seconds of one thread (per core); wall beside",
        "targets": {"issuance_per_second": TARGET_ISSUANCE, "verification_per_second": TARGET_VERIFICATION},
        "meets_targets": {"issuance": issuance >= TARGET_ISSUANCE, "verification": verification >= TARGET_VERIFICATION},
        "repeats": args.repeats,
        "results": results,
        "ingest": ingest,
        "javascript": javascript,
        "javascript_library": f"@cloudflare/blindrsa-ts 0.4.4 on Node {node}, WebCrypto keys, wall clock",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average": list(os.getloadavg()),
        },
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2) + "\n")
    print(
        f"issuance {issuance}/s per core (target {TARGET_ISSUANCE}), "
        f"verification {verification}/s per core (target {TARGET_VERIFICATION})"
    )
    print(json.dumps({k: v["per_second_per_core"] for k, v in results.items()}), "javascript:", javascript)
    if ingest:
        print(json.dumps(ingest["summary"]))


def poll_reports(issuer: Issuer, n: int):
    """The example poll's submissions of ``n`` synthetic respondents and a token for each (made untimed)."""
    survey = parse_survey(EXAMPLE.read_text())
    sheets, _ = synthetic_answers(survey, n, Prg.from_int(1, "truth"))
    submissions = SurveyClient(survey, rng=Prg.from_int(2)).prepare_many(sheets)
    admission = SurveyAdmission(issuer.public_key, survey.id, survey.digest, survey.aggregator_names)
    rng = Prg.from_int(3, "tokens")
    tokens = {}
    for s in submissions:
        request, pending = admission.request(s.submission_id, rng)
        tokens[s.submission_id] = pending.finalize(issuer.issue(request))
    return survey, admission, submissions, tokens


def store_ingest(survey, admission, items, tokens, batch: int, with_tokens: bool, folder: Path) -> dict:
    """ReportStore.put of every (id, report) in batches into a fresh SQLite file: reports per second."""
    from services.survey.reports import ReportStore

    store = ReportStore(str(folder / f"store-{batch}-{with_tokens}.db"))
    store.register(survey, survey.aggregator_names[0])
    if with_tokens:
        store.admit_by_token(admission)
    w0, c0 = time.perf_counter(), time.process_time()
    for start in range(0, len(items), batch):
        part = items[start : start + batch]
        store.put(survey.id, part, [tokens[sid] for sid, _ in part] if with_tokens else None)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    assert store.state(survey.id).count == len(items)
    store.shutdown()
    return {
        "reports": len(items),
        "batch": batch,
        "tokens": with_tokens,
        "per_second_wall": round(len(items) / wall),
        "per_cpu_second": round(len(items) / cpu),
    }


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def e2e_https(
    survey, submissions, tokens, issuer: Issuer, folder: Path, concurrency: int, http2: bool, batch: int = 1
) -> dict:
    """Every report into the leader over HTTPS (TLS; HTTP/2 on one connection, or HTTP/1.1 on ``concurrency``
    connections), one POST with its token each, or ``batch`` reports per POST (/reports/batch)."""
    import httpx

    from services.survey.admission import b64url, public_key_document
    from services.survey.https_local import HttpsLocalSurvey

    path = folder / "poll.toml"
    path.write_text(EXAMPLE.read_text())
    issuer_json = folder / "issuer.json"
    issuer_json.write_text(json.dumps(public_key_document(survey.id, issuer.public_key)))
    leader = survey.aggregator_names[0]
    limits = ("--rate", "1000000", "--burst", "1000000")
    workdir = folder / f"https{2 if http2 else 1}-{batch}"
    with HttpsLocalSurvey(survey, path, workdir, issuer_json, limits) as run:
        url = f"{run.url(leader)}/v1/surveys/{survey.id}/reports"
        docs = [
            {
                "digest": survey.digest.hex(),
                "submission_id": s.submission_id.hex(),
                "report": b64url(s.shares[leader]),
                "token": b64url(tokens[s.submission_id]),
            }
            for s in submissions
        ]

        async def go():
            gate = asyncio.Semaphore(concurrency)
            pool = httpx.Limits(max_connections=1 if http2 else concurrency)
            async with httpx.AsyncClient(http2=http2, verify=run.ssl_context(), timeout=120, limits=pool) as client:
                await client.get(f"{run.url(leader)}/healthz", extensions={"sni_hostname": leader})

                async def post(doc):
                    async with gate:
                        r = await client.post(url, json=doc, extensions={"sni_hostname": leader})
                        assert r.status_code == 201, r.text

                async def post_batch(part):
                    async with gate:
                        for d in part:
                            d.pop("digest", None)
                        doc = {"digest": survey.digest.hex(), "reports": part}
                        r = await client.post(f"{url}/batch", json=doc, extensions={"sni_hostname": leader})
                        assert r.status_code == 200 and set(r.json()["outcomes"]) == {"accepted"}, r.text

                c0 = _cpu_seconds(run.procs[leader].pid)
                w0 = time.perf_counter()
                if batch == 1:
                    await asyncio.gather(*(post(d) for d in docs))
                else:
                    await asyncio.gather(*(post_batch(docs[i : i + batch]) for i in range(0, len(docs), batch)))
                return time.perf_counter() - w0, _cpu_seconds(run.procs[leader].pid) - c0

        wall, cpu = asyncio.run(go())
    return {
        "path": f"HTTPS ({'HTTP/2, one connection' if http2 else 'HTTP/1.1'}, TLS), a token per report, "
        + ("one POST each" if batch == 1 else f"batches of {batch} (/reports/batch)"),
        "reports": len(docs),
        "concurrency": concurrency,
        "per_second_wall": round(len(docs) / wall),
        "per_leader_cpu_second": round(len(docs) / cpu),
    }


def e2e_grpc(survey, submissions, folder: Path) -> dict:
    """Every report into the leader over gRPC (mutual TLS), batches of 100, no token (no admission)."""
    from services.survey.simulation import RESPONDENTS, LocalSurvey
    from services.survey.transport import GrpcTransport

    path = folder / "poll.toml"
    leader = survey.aggregator_names[0]
    with LocalSurvey(survey, path, folder / "grpc") as run:
        transport = GrpcTransport(run.identity(RESPONDENTS), run.survey)
        batches = [
            [(s.submission_id, s.shares[leader]) for s in submissions[i : i + 100]]
            for i in range(0, len(submissions), 100)
        ]

        async def go():
            try:
                c0 = _cpu_seconds(run.procs[leader].pid)
                w0 = time.perf_counter()
                await transport.send(leader, run.survey, batches, lambda _i, _o: None)
                return time.perf_counter() - w0, _cpu_seconds(run.procs[leader].pid) - c0
            finally:
                await transport.close()

        wall, cpu = asyncio.run(go())
    return {
        "path": "gRPC (mutual TLS), batches of 100, no token",
        "reports": len(submissions),
        "per_second_wall": round(len(submissions) / wall),
        "per_leader_cpu_second": round(len(submissions) / cpu),
    }


def measure_ingest(issuer: Issuer, n: int, concurrency: int) -> dict:
    survey, admission, submissions, tokens = poll_reports(issuer, n)
    leader = survey.aggregator_names[0]
    items = [(s.submission_id, s.shares[leader]) for s in submissions]
    out: dict = {"store": [], "end_to_end": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for batch in (1, 100):
            for with_tokens in (False, True):
                out["store"].append(store_ingest(survey, admission, items, tokens, batch, with_tokens, folder))
        for http2, batch in ((True, 1), (False, 1), (True, 100)):
            out["end_to_end"].append(e2e_https(survey, submissions, tokens, issuer, folder, concurrency, http2, batch))
        out["end_to_end"].append(e2e_grpc(survey, submissions, folder))
    by = {(r["batch"], r["tokens"]): r for r in out["store"]}
    out["summary"] = {
        "store_batch_1_tokens_over_without_wall": round(
            by[1, True]["per_second_wall"] / by[1, False]["per_second_wall"], 3
        ),
        "store_batch_100_tokens_over_without_wall": round(
            by[100, True]["per_second_wall"] / by[100, False]["per_second_wall"], 3
        ),
        "store_batch_100_tokens_over_without_cpu": round(
            by[100, True]["per_cpu_second"] / by[100, False]["per_cpu_second"], 3
        ),
        "https2_with_tokens_per_second": out["end_to_end"][0]["per_second_wall"],
        "https1_with_tokens_per_second": out["end_to_end"][1]["per_second_wall"],
        "https2_batches_of_100_with_tokens_per_second": out["end_to_end"][2]["per_second_wall"],
        "grpc_batches_of_100_without_tokens_per_second": out["end_to_end"][3]["per_second_wall"],
    }
    return out


if __name__ == "__main__":
    main()
