"""Prio3 reproduces the published draft-08 test vectors byte for byte.

The vectors (draft-irtf-cfrg-vdaf, tag draft-irtf-cfrg-vdaf-08, poc/test_vec/08/) are not copied
into the repository: this test reads them from ``../shared/vdaf-08-test-vectors`` beside the clone
when that folder exists and is skipped otherwise. The always-runnable oracle is the JavaScript
implementation (tests/lib/test_vdaf_interop.py).
"""

import json
from pathlib import Path

import pytest

from mpcdp import vdaf as mpcdp_vdaf

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "vdaf-08-test-vectors"
pytestmark = pytest.mark.skipif(not VECTORS.is_dir(), reason=f"draft-08 test vectors not found at {VECTORS}")

INSTANCES = {
    "Prio3Count": lambda v: mpcdp_vdaf.Prio3Count(v["shares"]),
    "Prio3Sum": lambda v: mpcdp_vdaf.Prio3Sum(v["shares"], v["bits"]),
    "Prio3SumVec": lambda v: mpcdp_vdaf.Prio3SumVec(v["shares"], v["length"], v["bits"], v["chunk_length"]),
    "Prio3Histogram": lambda v: mpcdp_vdaf.Prio3Histogram(v["shares"], v["length"], v["chunk_length"]),
    "Prio3MultiHotHistogram": lambda v: mpcdp_vdaf.Prio3MultiHotHistogram(
        v["shares"], v["length"], v["max_count"], v["chunk_length"]
    ),
}
CASES = [(name, k) for name in INSTANCES for k in (0, 1)]


def _measurement(name, raw):
    if name == "Prio3Histogram":
        return int(raw)
    return raw


def test_xof_turboshake128():
    v = json.loads((VECTORS / "XofTurboShake128.json").read_text())
    seed, dst, binder = (bytes.fromhex(v[k]) for k in ("seed", "dst", "binder"))
    assert mpcdp_vdaf.XofTurboShake128.derive_seed(seed, dst, binder).hex() == v["derived_seed"]
    vec = mpcdp_vdaf.XofTurboShake128.expand_into_vec(mpcdp_vdaf.Field128, seed, dst, binder, v["length"])
    assert mpcdp_vdaf.Field128.encode_vec(vec).hex() == v["expanded_vec_field128"]


@pytest.mark.parametrize("name,k", CASES, ids=[f"{n}_{k}" for n, k in CASES])
def test_prio3_vector(name, k):
    v = json.loads((VECTORS / f"{name}_{k}.json").read_text())
    vdaf = INSTANCES[name](v)
    verify_key = bytes.fromhex(v["verify_key"])
    agg_shares = [vdaf.aggregate_init() for _ in range(vdaf.SHARES)]
    for report in v["prep"]:
        nonce, rand = bytes.fromhex(report["nonce"]), bytes.fromhex(report["rand"])
        public_share, input_shares = vdaf.shard(_measurement(name, report["measurement"]), nonce, rand)
        assert vdaf.encode_public_share(public_share).hex() == report["public_share"]
        assert [vdaf.encode_input_share(s).hex() for s in input_shares] == report["input_shares"]

        # prepare from the vector's bytes, not from our own objects
        public_share = vdaf.decode_public_share(bytes.fromhex(report["public_share"]))
        states, prep_shares = [], []
        for j, encoded in enumerate(report["input_shares"]):
            share = vdaf.decode_input_share(j, bytes.fromhex(encoded))
            state, prep_share = vdaf.prep_init(verify_key, j, None, nonce, public_share, share)
            states.append(state)
            prep_shares.append(prep_share)
        assert [vdaf.encode_prep_share(s).hex() for s in prep_shares] == report["prep_shares"][0]
        decoded = [vdaf.decode_prep_share(bytes.fromhex(s)) for s in report["prep_shares"][0]]
        msg = vdaf.prep_shares_to_prep(None, decoded)
        assert vdaf.encode_prep_msg(msg).hex() == report["prep_messages"][0]
        msg = vdaf.decode_prep_msg(bytes.fromhex(report["prep_messages"][0]))
        for j, state in enumerate(states):
            out_share = vdaf.prep_next(state, msg)
            assert [x.to_bytes(vdaf.field.encoded_size, "little").hex() for x in out_share] == report["out_shares"][j]
            agg_shares[j] = vdaf.agg_update(None, agg_shares[j], out_share)
    assert [vdaf.encode_agg_share(s).hex() for s in agg_shares] == v["agg_shares"]
    decoded = [vdaf.decode_agg_share(bytes.fromhex(s)) for s in v["agg_shares"]]
    assert vdaf.unshard(None, decoded, len(v["prep"])) == v["agg_result"]
