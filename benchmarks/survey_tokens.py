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
- verification + spend: the same plus recording in the in-memory spent set;
- client: ``request_token`` + ``finalize`` (blind, unblind, verify) per token;
- the JavaScript library (@cloudflare/blindrsa-ts 0.4.4 in Node, WebCrypto keys) in the same run:
  blind signing and verification per second on the same key.

Targets (issue 12): issuance >= 500/s and verification >= 20,000/s per core.

    python benchmarks/survey_tokens.py [--n 300] [--verify-n 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from mpcdp.prg import Prg
from mpcdp.tokens import (
    Issuer,
    MemorySpentTokens,
    SQLiteInvitations,
    TokenChallenge,
    generate_issuer_key,
    request_token,
    verify_token,
)

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results" / "survey_tokens.json"
TARGET_ISSUANCE = 500
TARGET_VERIFICATION = 20_000
CHALLENGE = TokenChallenge.bound(b"survey-bench", b"agg-a,agg-b", b"report").encode()

_spec = importlib.util.spec_from_file_location("blindrsa_node", ROOT / "interop" / "blindrsa_node.py")
blindrsa_node = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(blindrsa_node)


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
    spent_sets = iter([MemorySpentTokens(issuer.public_key) for _ in range(args.repeats)])

    def spend_all(_):
        spent = next(spent_sets)
        for i, t in enumerate(tokens):
            spent.spend(t, CHALLENGE, i.to_bytes(4, "big"))

    spend = timed(spend_all, [None], args.repeats)
    spend.update(
        operations=len(tokens),
        per_second_per_core=round(len(tokens) / spend["cpu_seconds"]),
        per_second_wall=round(len(tokens) / spend["wall_seconds"]),
    )
    results["verification_and_spend_memory"] = spend

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


if __name__ == "__main__":
    main()
