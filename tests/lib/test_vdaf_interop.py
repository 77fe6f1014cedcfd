"""Interop with the JavaScript implementation of VDAF draft 08, ``@divviup/prio3`` 0.8.0, in Node.

Both directions, every circuit the package has (Count, Sum, Histogram, SumVec), 2, 3 and 5
aggregators, in one Node run:
- oracle: given the same nonce and randomness, both shard a measurement into the same bytes;
- JS -> mpcdp: reports JS shards with its own randomness are prepared, aggregated and unsharded
  by mpcdp into the true sums;
- mpcdp -> JS: JS prepares mpcdp's reports into the same prep shares and aggregate shares (byte
  for byte) and the same result;
- both reject the same forged reports (out-of-range measurements with honestly built proofs).
The package is installed from interop/package-lock.json by ``make interop`` (``make test`` runs it).
"""

import pytest

from interop import prio3_node
from mpcdp.prg import Prg
from mpcdp.vdaf import Prio3Count, Prio3Histogram, Prio3Sum, Prio3SumVec, VerifyError

VERIFY_KEY = bytes(range(16))

# (factory, honest measurements, forged encoded measurements, their true sum)
CIRCUITS = {
    "Count": (lambda s: Prio3Count(s), [1, 0, 1, 1], [[2]], 3),
    "Sum": (lambda s: Prio3Sum(s, 8), [0, 255, 17, 100], [[2] + [0] * 7, [1, 1, 1, 1, 1, 1, 1, -1]], 372),
    "Histogram": (
        lambda s: Prio3Histogram(s, 10, 3),
        [0, 9, 4, 4],
        [[1, 1] + [0] * 8, [0] * 10, [10**6] + [0] * 9, [-1, 2] + [0] * 8],
        [1, 0, 0, 0, 2, 0, 0, 0, 0, 1],
    ),
    "SumVec": (
        lambda s: Prio3SumVec(s, 4, 3, 5),
        [[7, 0, 1, 2], [0, 0, 0, 0], [3, 3, 3, 3], [1, 2, 4, 7]],
        [[2] + [0] * 11, [1] * 11 + [3]],
        [11, 5, 8, 12],
    ),
}
INSTANCES = [(kind, shares) for kind in CIRCUITS for shares in (2, 3, 5)]
IDS = [f"{kind}-{shares}" for kind, shares in INSTANCES]


def _rng(kind, shares, purpose):
    return Prg.from_int(1000 + 10 * list(CIRCUITS).index(kind) + shares, purpose=purpose)


def _mpcdp_reports(vdaf, kind, shares):
    """Honest reports followed by forged ones, from a fixed seed."""
    _, honest, forged, _ = CIRCUITS[kind]
    rng = _rng(kind, shares, "mpcdp-reports")
    reports = [vdaf.shard_random(m, rng) for m in honest]
    for meas in forged:
        nonce = rng.bytes(16)
        reports.append((nonce, *vdaf.shard_encoded(meas, nonce, rng.bytes(vdaf.RAND_SIZE))))
    return reports


def _oracle_inputs(vdaf, kind, shares):
    rng = _rng(kind, shares, "oracle")
    honest = CIRCUITS[kind][1]
    return honest, [rng.bytes(16) for _ in honest], [rng.bytes(vdaf.RAND_SIZE) for _ in honest]


@pytest.fixture(scope="module")
def node():
    """One Node run answering every request of this module, keyed by (kind, shares)."""
    reason = prio3_node.missing()
    if reason:
        pytest.fail(reason)
    requests = []
    for kind, shares in INSTANCES:
        vdaf = CIRCUITS[kind][0](shares)
        spec = prio3_node.spec(vdaf)
        measurements, nonces, rands = _oracle_inputs(vdaf, kind, shares)
        requests.append(
            {
                "op": "shard",
                "vdaf": spec,
                "measurements": measurements,
                "nonces": [n.hex() for n in nonces],
                "rands": [r.hex() for r in rands],
            }
        )
        requests.append({"op": "shard", "vdaf": spec, "measurements": measurements})
        requests.append(
            {
                "op": "prepare",
                "vdaf": spec,
                "verify_key": VERIFY_KEY.hex(),
                "reports": prio3_node.encode_reports(vdaf, _mpcdp_reports(vdaf, kind, shares)),
            }
        )
    answers = prio3_node.run(requests)
    return {key: answers[3 * i : 3 * i + 3] for i, key in enumerate(INSTANCES)}


def _prepare(vdaf, report):
    """Every aggregator's preparation of one report: (prep shares, prep message, output shares)."""
    nonce, public_share, input_shares = report
    states, prep_shares = [], []
    for j, share in enumerate(input_shares):
        state, prep_share = vdaf.prep_init(VERIFY_KEY, j, None, nonce, public_share, share)
        states.append(state)
        prep_shares.append(prep_share)
    msg = vdaf.prep_shares_to_prep(None, prep_shares)
    return prep_shares, msg, [vdaf.prep_next(st, msg) for st in states]


def _decode_report(vdaf, report):
    return (
        bytes.fromhex(report["nonce"]),
        vdaf.decode_public_share(bytes.fromhex(report["public_share"])),
        [vdaf.decode_input_share(j, bytes.fromhex(s)) for j, s in enumerate(report["input_shares"])],
    )


@pytest.mark.parametrize("kind,shares", INSTANCES, ids=IDS)
def test_same_randomness_same_bytes(node, kind, shares):
    vdaf = CIRCUITS[kind][0](shares)
    measurements, nonces, rands = _oracle_inputs(vdaf, kind, shares)
    js_reports = node[(kind, shares)][0]["reports"]
    for m, nonce, rand, js in zip(measurements, nonces, rands, js_reports, strict=True):
        public_share, input_shares = vdaf.shard(m, nonce, rand)
        assert vdaf.encode_public_share(public_share).hex() == js["public_share"]
        assert [vdaf.encode_input_share(s).hex() for s in input_shares] == js["input_shares"]


@pytest.mark.parametrize("kind,shares", INSTANCES, ids=IDS)
def test_mpcdp_prepares_reports_sharded_by_js(node, kind, shares):
    vdaf = CIRCUITS[kind][0](shares)
    js_reports = node[(kind, shares)][1]["reports"]
    assert len(js_reports) == len(CIRCUITS[kind][1])
    out_shares = [_prepare(vdaf, _decode_report(vdaf, r))[2] for r in js_reports]
    agg_shares = [vdaf.aggregate(None, [o[j] for o in out_shares]) for j in range(shares)]
    encoded = [vdaf.encode_agg_share(a) for a in agg_shares]
    assert vdaf.unshard(None, [vdaf.decode_agg_share(e) for e in encoded], len(js_reports)) == CIRCUITS[kind][3]


@pytest.mark.parametrize("kind,shares", INSTANCES, ids=IDS)
def test_js_accepts_mpcdp_reports_and_rejects_the_forged(node, kind, shares):
    vdaf = CIRCUITS[kind][0](shares)
    _, honest, _forged, expected = CIRCUITS[kind]
    answer = node[(kind, shares)][2]
    reports = _mpcdp_reports(vdaf, kind, shares)
    accepted = []
    for i, (report, js) in enumerate(zip(reports, answer["results"], strict=True)):
        if i < len(honest):
            assert js["ok"], js.get("error")
            prep_shares, msg, out = _prepare(vdaf, report)
            assert [vdaf.encode_prep_share(s).hex() for s in prep_shares] == js["prep_shares"]
            assert vdaf.encode_prep_msg(msg).hex() == js["prep_message"]
            accepted.append(out)
        else:  # forged: both implementations refuse it
            assert not js["ok"] and "Verify error" in js["error"]
            with pytest.raises(VerifyError, match="does not verify"):
                _prepare(vdaf, report)
    assert answer["accepted"] == len(honest)
    agg_shares = [vdaf.aggregate(None, [o[j] for o in accepted]) for j in range(shares)]
    assert [vdaf.encode_agg_share(a).hex() for a in agg_shares] == answer["agg_shares"]
    assert answer["agg_result"] == expected == vdaf.unshard(None, agg_shares, len(honest))
