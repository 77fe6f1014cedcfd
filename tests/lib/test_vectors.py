"""The JSON test vectors in tests/vectors/: the library reproduces them, and so does the format's description.

Each check runs twice: once through the library, and once from the
description alone (RFC 5869 HKDF written out with ``hmac``, AES in counter
mode from single-block encryptions, Python integers mod 2^64), as another
implementation would. The generator's ``--check`` must pass on the committed
files and fail on a tampered one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mpcdp import ring
from mpcdp.prg import Prg
from mpcdp.protocol import QuerySpec, codec_for
from mpcdp.protocol.party import seed_purpose
from mpcdp.sharing import SeededShares, share_seeded
from mpcdp.survey import proved
from mpcdp.survey.definition import parse_survey
from mpcdp.survey.release import id_set_digest
from mpcdp.survey.respondent import SurveyClient
from tests.vectors import generate

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
MOD = 1 << 64


def _load(name: str) -> dict:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


# -- the description, implemented from scratch ----------------------------------------------------


def rfc5869_key(seed: bytes, session_id: bytes, purpose: str) -> bytes:
    """HKDF-SHA256 extract-then-expand, one block, truncated to the 16-byte AES key."""
    info = len(session_id).to_bytes(2, "big") + session_id + purpose.encode("utf-8")
    prk = hmac.new(b"mpcdp/v1/prg", seed, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:16]


def ctr_keystream(key: bytes, nbytes: int) -> bytes:
    """AES-128 of the counter blocks 0, 1, 2, ... (128-bit big-endian), concatenated."""
    blocks = b"".join(i.to_bytes(16, "big") for i in range(-(-nbytes // 16)))
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return (ecb.update(blocks) + ecb.finalize())[:nbytes]


def le_words(data: bytes) -> list[int]:
    return [int.from_bytes(data[i : i + 8], "little") for i in range(0, len(data), 8)]


def round_half_even(x: float) -> int:
    return round(x)  # Python rounds a float's exact value half to even


# -- the files as a whole -------------------------------------------------------------------------


def test_committed_vectors_match_the_library():
    stale = generate.stale()
    assert stale == [], f"regenerate with python tests/vectors/generate.py: {stale} differ from the library"


def test_check_mode_fails_on_a_changed_vector(tmp_path, capsys):
    gen = generate
    for name in gen.BUILDERS:
        shutil.copy(VECTORS / name, tmp_path / name)
    assert gen.main(["--check", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "sharing.json").read_text())
    doc["vectors"][0]["correction"][0] ^= 1
    (tmp_path / "sharing.json").write_text(json.dumps(doc))
    assert gen.main(["--check", "--out", str(tmp_path)]) == 1
    assert "sharing.json" in capsys.readouterr().err


def test_every_file_states_its_format():
    for name in generate.BUILDERS:
        doc = _load(name)
        assert doc["format"] and len(doc["description"]) > 200


# -- PRG ------------------------------------------------------------------------------------------

PRG = _load("prg.json")["vectors"]


@pytest.mark.parametrize("v", PRG, ids=[v["comment"] for v in PRG])
def test_prg_stream_from_the_library(v):
    seed, sid = bytes.fromhex(v["seed"]), bytes.fromhex(v["session_id"])
    assert Prg(seed, sid, v["purpose"]).bytes(64).hex() == v["stream_first_64_bytes"]
    p = Prg(seed, sid, v["purpose"])  # successive requests continue one stream
    assert [int(w) for w in np.concatenate([p.uint64(3), p.uint64(5)])] == v["uint64_first_8"]
    long_stream = Prg(seed, sid, v["purpose"]).uint64(v["long_stream_words"])
    assert hashlib.sha256(long_stream.astype("<u8").tobytes()).hexdigest() == v["long_stream_sha256"]


@pytest.mark.parametrize("v", PRG, ids=[v["comment"] for v in PRG])
def test_prg_stream_from_the_description(v):
    seed, sid = bytes.fromhex(v["seed"]), bytes.fromhex(v["session_id"])
    key = rfc5869_key(seed, sid, v["purpose"])
    assert key.hex() == v["aes128_key"]
    assert v["hkdf_info"].endswith(v["purpose"].encode("utf-8").hex())
    stream = ctr_keystream(key, 8 * v["long_stream_words"])
    assert stream[:64].hex() == v["stream_first_64_bytes"]
    assert le_words(stream[:64]) == v["uint64_first_8"]
    assert hashlib.sha256(stream).hexdigest() == v["long_stream_sha256"]


def test_prg_vectors_separate_domains():
    streams = [v["stream_first_64_bytes"] for v in PRG]
    assert len(set(streams)) == len(streams)
    from_int = next(v for v in PRG if v["comment"].startswith("Prg.from_int(7)"))
    assert Prg.from_int(7).bytes(64).hex() == from_int["stream_first_64_bytes"]


# -- seeded sharing -------------------------------------------------------------------------------

SHARING = _load("sharing.json")["vectors"]


@pytest.mark.parametrize("v", SHARING, ids=[v["comment"][:40] for v in SHARING])
def test_seeded_sharing_from_the_library(v):
    sid = bytes.fromhex(v["session_id"])
    secret = ring.as_ring(np.array(v["secret"], dtype=object))
    assert [int(w) for w in secret] == v["secret_ring"]
    rng = Prg.from_int(v["seed_source"]["from_int"], v["seed_source"]["purpose"])
    shares = share_seeded(secret, v["parties"], sid, v["purposes"], rng=rng)
    assert [s.hex() for s in shares.seeds] == v["seeds"]
    assert [int(w) for w in shares.correction] == v["correction"]
    assert np.asarray(shares.correction, dtype="<u8").tobytes().hex() == v["correction_le_hex"]
    received = SeededShares(
        tuple(bytes.fromhex(s) for s in v["seeds"]),
        tuple(v["purposes"]),
        ring.as_ring(np.array(v["correction"], dtype=object)),
    )
    assert [int(w) for w in received.reconstruct(sid)] == v["reconstruction"] == v["secret_ring"]


@pytest.mark.parametrize("v", SHARING, ids=[v["comment"][:40] for v in SHARING])
def test_seeded_sharing_from_the_description(v):
    sid, length = bytes.fromhex(v["session_id"]), len(v["secret"])
    assert len(v["seeds"]) == len(v["purposes"]) == len(v["expansions"]) == v["parties"] - 1
    for seed, purpose, expansion in zip(v["seeds"], v["purposes"], v["expansions"]):
        key = rfc5869_key(bytes.fromhex(seed), sid, purpose)
        assert le_words(ctr_keystream(key, 8 * length)) == expansion
    for i in range(length):
        total = v["correction"][i] + sum(e[i] for e in v["expansions"])
        assert total % MOD == v["secret"][i] % MOD == v["reconstruction"][i]
    assert le_words(bytes.fromhex(v["correction_le_hex"])) == v["correction"]


def test_peer_protocol_purposes_are_sender_then_recipient():
    peer = next(v for v in SHARING if v["parties"] == 4)
    assert peer["purposes"] == [seed_purpose("alice", p) for p in ("bob", "carol", "dave")]
    assert peer["purposes"][0] == "share/alice/bob"


# -- fixed point ----------------------------------------------------------------------------------

FIXED = _load("fixed_point.json")


@pytest.mark.parametrize("v", FIXED["encode"], ids=[v["comment"] for v in FIXED["encode"]])
def test_fixed_point_encode(v):
    x, f = float.fromhex(v["real"]["hex"]), v["frac_bits"]
    encoded = ring.FixedPoint(f).encode([x])
    assert int(encoded[0]) == v["ring"]
    assert encoded.astype("<u8").tobytes().hex() == v["le_hex"]
    assert round_half_even(x * 2**f) == v["signed"] and v["signed"] % MOD == v["ring"]
    assert float(ring.FixedPoint(f).decode(encoded)[0]) == float.fromhex(v["decoded"]["hex"])
    assert v["signed"] / 2**f == float.fromhex(v["decoded"]["hex"])


@pytest.mark.parametrize("v", FIXED["refused"], ids=[v["comment"] + v["real"]["repr"] for v in FIXED["refused"]])
def test_fixed_point_refusals(v):
    with pytest.raises(getattr(ring, v["error"], ValueError)):
        ring.FixedPoint(v["frac_bits"]).encode([float.fromhex(v["real"]["hex"])])


def test_fixed_point_decode_and_bounds():
    for v in FIXED["decode"]:
        signed = v["ring"] - MOD if v["ring"] >= 1 << 63 else v["ring"]
        assert signed == v["signed"]
        assert signed / 2 ** v["frac_bits"] == float.fromhex(v["decoded"]["hex"])
        decoded = ring.FixedPoint(v["frac_bits"]).decode(ring.as_ring(np.array([v["ring"]], dtype=object)))
        assert float(decoded[0]) == float.fromhex(v["decoded"]["hex"])
    for v in FIXED["encode_bound"]:
        bound = float.fromhex(v["bound"]["hex"])
        assert ring.FixedPoint(v["frac_bits"]).encode_bound(bound) == v["ring_units"]
        assert round_half_even(bound * 2 ** v["frac_bits"]) == v["ring_units"]


# -- survey digests -------------------------------------------------------------------------------

DIGESTS = _load("survey_digest.json")


@pytest.mark.parametrize("v", DIGESTS["surveys"], ids=[v["comment"][:40] for v in DIGESTS["surveys"]])
def test_survey_digest(v):
    survey = parse_survey(v["toml"], "vector.toml")
    assert survey.digest.hex() == v["digest"]
    assert survey.width == v["width"]
    assert hashlib.sha256(v["canonical_json"].encode("utf-8")).hexdigest() == v["digest"]


def test_survey_digest_ignores_addresses_but_not_meaning():
    tiny, proved, moved, poll = DIGESTS["surveys"]
    assert tiny["digest"] == moved["digest"] and tiny["toml"] != moved["toml"]
    assert proved["digest"] != tiny["digest"] and '"proofs": "prio3"' in proved["canonical_json"]
    assert '"proofs"' not in tiny["canonical_json"]
    changed = parse_survey(tiny["toml"].replace('kind = "yesno"', 'kind = "yesno"\ncentral = { epsilon = 1.0 }'))
    assert changed.digest.hex() != tiny["digest"]
    assert poll["digest"] != tiny["digest"]


@pytest.mark.parametrize("v", DIGESTS["id_sets"], ids=[v["comment"][:30] for v in DIGESTS["id_sets"]])
def test_id_set_digest(v):
    ids = [bytes.fromhex(i) for i in v["ids"]]
    assert id_set_digest(ids).hex() == v["digest"]
    assert id_set_digest(reversed(ids)).hex() == v["digest"]
    assert hashlib.sha256(b"".join(sorted(ids))).hexdigest() == v["digest"]


# -- statistics as vectors ------------------------------------------------------------------------

STATISTICS = _load("statistics.json")


def _query(spec: dict) -> QuerySpec:
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
    return QuerySpec(parties=("alice", "bob", "carol", "dave"), session_id=bytes(16), max_records=5, **kwargs)


def described_aggregate(spec: dict, records: list) -> list[int]:
    """The local aggregate from statistics.json's description, in Python integers."""
    if spec["statistic"] == "histogram":
        return [sum(r == c for r in records) for c in spec["categories"]]
    if spec["statistic"] == "count":
        return [len(records)]
    lo, hi = spec["bounds"]
    rows = [[min(max(float(x), lo), hi) for x in (r if isinstance(r, list) else [r])] for r in records]
    scale = 2 ** spec["frac_bits"]
    sums = [sum(round_half_even(row[j] * scale) for row in rows) for j in range(spec["dimension"])]
    squares = [sum(round_half_even(row[j] * row[j] * scale) for row in rows) for j in range(spec["dimension"])]
    blocks = {"sum": sums, "mean": sums + [len(rows)], "variance": sums + squares + [len(rows)]}
    return [v % MOD for v in blocks[spec["statistic"]]]


@pytest.mark.parametrize("v", STATISTICS["encode"], ids=[v["spec"]["statistic"] for v in STATISTICS["encode"]])
def test_statistic_encoding(v):
    stat = codec_for(_query(v["spec"]))
    vector = stat.encode(v["records"])
    assert [int(w) for w in vector] == v["local_aggregate"] == described_aggregate(v["spec"], v["records"])
    assert [[b.name, b.length, b.scale, b.sensitivity] for b in stat.blocks] == [
        [b["name"], b["length"], b["scale"], b["sensitivity"]] for b in v["blocks"]
    ]
    assert le_words(bytes.fromhex(v["local_aggregate_le_hex"])) == v["local_aggregate"]


@pytest.mark.parametrize("v", STATISTICS["decode"], ids=[v["spec"]["statistic"] for v in STATISTICS["decode"]])
def test_statistic_decoding(v):
    total = ring.as_ring(np.array(v["total"], dtype=object))
    assert codec_for(_query(v["spec"])).decode(total) == v["result"]
    signed = [t - MOD if t >= 1 << 63 else t for t in v["total"]]
    spec, result = v["spec"], v["result"]
    if spec["statistic"] == "histogram":
        assert result == {"histogram": {c: float(x) for c, x in zip(spec["categories"], signed)}}
        return
    scale = 2 ** spec["frac_bits"]
    s, n = signed[0] / scale, float(signed[-1])
    lo, hi = spec["bounds"]
    assert (result["sum"], result["count"], result["mean"]) == (s, n, min(max(s / n, lo), hi))
    if spec["statistic"] == "variance":
        ss = signed[1] / scale
        assert (result["sum_sq"], result["variance"]) == (ss, max((ss - s * s / n) / (n - 1), 0.0))


# -- survey answer sheets -------------------------------------------------------------------------

SHEETS = _load("survey_sheet.json")


def described_sheet(layout: list, answers: dict) -> list[int]:
    """An answer sheet's encoding from survey_sheet.json's description (answers on the numeric grid)."""
    out = []
    for q in layout:
        a = answers[q["question"]]
        if q["kind"] == "yesno":
            out.append(int(a))
        elif q["kind"] in ("choice", "multiselect"):
            chosen = {a} if q["kind"] == "choice" else set(a)
            out += [int(label in chosen) for label in q["labels"]]
        else:
            lo, hi = q["bounds"]
            out.append(int(min(max(a, lo), hi) / q["step"]))
    return out


@pytest.mark.parametrize("v", SHEETS["sheets"], ids=[v["comment"][:30] for v in SHEETS["sheets"]])
def test_survey_sheet_encoding(v):
    survey = parse_survey(SHEETS["survey_toml"], "sheet-vectors.toml")
    assert survey.width == SHEETS["width"] == sum(q["width"] for q in SHEETS["layout"])
    assert [[q.id, block.start, q.width] for q, block in survey.offsets()] == [
        [q["question"], q["offset"], q["width"]] for q in SHEETS["layout"]
    ]
    for seed in (1, 2):  # fresh shares each time; their sum is the encoding
        prepared = SurveyClient(survey, rng=Prg.from_int(seed, "sheet")).prepare(v["answers"])
        assert {name: len(blob) for name, blob in prepared.shares.items()} == v["share_bytes"]
        columns = zip(*(le_words(blob) for blob in prepared.shares.values()))
        assert [sum(c) % MOD for c in columns] == [e % MOD for e in v["encoded"]]
    assert described_sheet(SHEETS["layout"], v["answers"]) == v["encoded"]


# -- verified surveys: answers as Prio3 reports ----------------------------------------------------

PRIO3 = _load("survey_prio3.json")


def described_circuit(q, aggregators: int) -> dict:
    """The Prio3 instance survey_prio3.json's description gives for a parsed question."""
    k, chunk = len(q.options), max(1, round(len(q.options) ** 0.5))
    if q.kind == "yesno":
        return {"name": "Prio3Count", "shares": aggregators}
    if q.kind == "choice" and q.local.name != "unary":
        return {"name": "Prio3Histogram", "shares": aggregators, "length": k, "chunk_length": chunk}
    if q.kind in ("choice", "multiselect"):
        return {"name": "Prio3SumVec", "shares": aggregators, "length": k, "bits": 1, "chunk_length": chunk}
    lo, hi = q.unit_range
    return {"name": "Prio3Sum", "shares": aggregators, "bits": max(1, (hi - lo).bit_length())}


def test_prio3_survey_reports():
    survey = parse_survey(PRIO3["survey_toml"], "proved-vectors.toml")
    assert survey.proofs == "prio3" and survey.digest.hex() == PRIO3["digest"]
    sheet = SHEETS["sheets"][0]["encoded"]
    offsets = {q["question"]: (q["offset"], q["width"]) for q in SHEETS["layout"]}
    for i, (q, v) in enumerate(zip(survey.questions, PRIO3["questions"], strict=True)):
        vdaf = proved.circuit(survey, q)
        assert {k: v["circuit"][k] for k in ("name", "algorithm_id", "shares", "proofs")} == {
            "name": vdaf.name,
            "algorithm_id": vdaf.ID,
            "shares": vdaf.SHARES,
            "proofs": vdaf.PROOFS,
        }
        assert described_circuit(q, len(survey.aggregators)).items() <= v["circuit"].items()
        for sid, expected in v["nonces"].items():
            assert proved.nonce(survey, bytes.fromhex(sid), i).hex() == expected
            binding = b"mpcdp/prio3" + survey.digest + bytes.fromhex(sid) + i.to_bytes(2, "big")
            assert hashlib.sha256(binding).hexdigest()[:32] == expected
        if v["measurement_of_sheet"] is None:
            continue
        start, width = offsets[q.id]
        block = sheet[start : start + width]
        assert q.measurement(np.array(block)) == v["measurement_of_sheet"]
        if q.kind == "numeric":
            described = block[0] - q.unit_range[0]
        elif q.kind == "choice":
            described = block.index(1)
        else:
            described = block[0] if q.kind == "yesno" else block
        assert described == v["measurement_of_sheet"]
