"""Write (or check) the JSON test vectors of mpcdp's byte formats.

    python tests/vectors/generate.py            # rewrite tests/vectors/*.json from the library
    python tests/vectors/generate.py --check    # exit 1 if any file differs from what the library gives now

The vectors pin what another implementation must reproduce bit for bit to
interoperate with mpcdp nodes:

    prg.json            the PRG stream for (seed, session id, purpose), with the HKDF intermediates
    sharing.json        seeded additive sharing: seeds, their expansions, the correction, reconstruction
    fixed_point.json    reals to ring elements and back (rounding, sign, refusals)
    survey_digest.json  a survey definition's digest (canonical JSON), and the digest of a set of submission ids
    statistics.json     a party's local aggregate vector for each statistic, and the decoding of a total
    survey_sheet.json   a respondent's encoded answer sheet (no local randomisation), before sharing
    survey_prio3.json   a verified survey's Prio3 circuit per question, each answer's measurement, report nonces

Every output is computed here by calling the library (``mpcdp``), never
written by hand; the intermediate values a reader needs (the HKDF key, the
canonical survey JSON) are computed from the format's description, so a
library change that breaks the description shows up as a mismatch.
Integers are JSON numbers (ring elements exceed 2^53: parse them as big
integers); bytes are lowercase hex; floats are given as ``float.hex()``
(exact) beside their decimal ``repr``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mpcdp import ring
from mpcdp.prg import SEED_BYTES, Prg
from mpcdp.protocol import QuerySpec, codec_for
from mpcdp.protocol.party import seed_purpose
from mpcdp.sharing import share_seeded
from mpcdp.survey import proved
from mpcdp.survey.definition import parse_survey
from mpcdp.survey.release import id_set_digest
from mpcdp.survey.respondent import SurveyClient

HERE = Path(__file__).resolve().parent
PRG_SALT = b"mpcdp/v1/prg"
LONG_STREAM_WORDS = (1 << 15) + 3  # crosses the library's 2^15-word cipher chunk


def hkdf_info(session_id: bytes, purpose: str) -> bytes:
    """The HKDF ``info`` of a PRG: 2-byte big-endian session id length, session id, UTF-8 purpose."""
    return struct.pack(">H", len(session_id)) + session_id + purpose.encode("utf-8")


def hkdf_key(seed: bytes, session_id: bytes, purpose: str) -> bytes:
    """The AES-128 key of a PRG: HKDF-SHA256(salt, seed, info) truncated to 16 bytes."""
    return HKDF(algorithm=hashes.SHA256(), length=16, salt=PRG_SALT, info=hkdf_info(session_id, purpose)).derive(seed)


def words(array) -> list[int]:
    return [int(v) for v in np.asarray(array, dtype=np.uint64).reshape(-1)]


def le_bytes(array) -> bytes:
    """Ring elements packed as on the wire: little-endian uint64."""
    return np.asarray(array, dtype="<u8").tobytes()


def le_hex(array) -> str:
    return le_bytes(array).hex()


def real(x: float) -> dict:
    return {"repr": repr(float(x)), "hex": float(x).hex()}


# -- the PRG --------------------------------------------------------------------------------------

PRG_CASES = [
    # (seed, session id, purpose, why)
    (bytes(SEED_BYTES), b"", "default", "all-zero seed, empty session, the default purpose"),
    ((7).to_bytes(SEED_BYTES, "big"), b"", "test", "Prg.from_int(7): the stream the tests use"),
    (
        bytes(range(SEED_BYTES)),
        bytes(range(16)),
        "share/alice/bob",
        "a seeded share from alice to bob in a session with a 16-byte id",
    ),
    (bytes(range(SEED_BYTES)), bytes(range(16)), "share/bob/alice", "the reverse direction: another stream"),
    (b"\xff" * SEED_BYTES, b"\x00" * 16, "noise", "all-ones seed, a noise stream"),
    (bytes(range(SEED_BYTES)), bytes(range(16)), "partie/é", "a non-ASCII purpose: encoded as UTF-8 (2 bytes for é)"),
]


def prg_vectors() -> dict:
    vectors = []
    for seed, sid, purpose, why in PRG_CASES:
        first = Prg(seed, sid, purpose).bytes(64)
        long_stream = Prg(seed, sid, purpose).uint64(LONG_STREAM_WORDS)
        vectors.append(
            {
                "comment": why,
                "seed": seed.hex(),
                "session_id": sid.hex(),
                "purpose": purpose,
                "hkdf_info": hkdf_info(sid, purpose).hex(),
                "aes128_key": hkdf_key(seed, sid, purpose).hex(),
                "stream_first_64_bytes": first.hex(),
                "uint64_first_8": words(Prg(seed, sid, purpose).uint64(8)),
                "long_stream_words": LONG_STREAM_WORDS,
                "long_stream_sha256": hashlib.sha256(le_bytes(long_stream)).hexdigest(),
            }
        )
    return {
        "format": "mpcdp PRG (mpcdp/prg.py)",
        "description": (
            "key = HKDF-SHA256(ikm=seed (32 bytes), salt='mpcdp/v1/prg', info=hkdf_info, length=16); "
            "hkdf_info = uint16_be(len(session_id)) || session_id || utf8(purpose). "
            "The stream is AES-128-CTR under key with an all-zero 16-byte initial counter block "
            "(incremented as a 128-bit big-endian integer), encrypting zero bytes. Ring elements "
            "(uint64) are consecutive 8-byte little-endian words of the stream; successive requests "
            "continue one stream. long_stream_sha256 is SHA-256 over the first long_stream_words "
            "words (8 bytes each)."
        ),
        "vectors": vectors,
    }


# -- seeded sharing -------------------------------------------------------------------------------

SHARING_CASES = [
    # (secret as Python ints (signed allowed, taken mod 2^64), parties n, session id, purposes or None,
    #  seed of the generator that draws the share seeds, why)
    ([5], 2, bytes(16), None, 1, "one element, two parties, default purposes share/<i>"),
    ([0, 1, -1, (1 << 63) - 1, -(1 << 63)], 3, bytes(range(16)), None, 2, "ring edge values (signed), three parties"),
    (
        [3800 << 16, 1],
        4,
        bytes(range(16, 32)),
        [seed_purpose("alice", p) for p in ("bob", "carol", "dave")],
        3,
        "alice's local aggregate for a mean of raises (sum at frac_bits 16, count 1), shared with bob, carol and "
        "dave under the peer protocol's purposes share/<sender>/<recipient>; alice keeps the correction",
    ),
]


def sharing_vectors() -> dict:
    vectors = []
    for secret, n, sid, purposes, rng_seed, why in SHARING_CASES:
        x = ring.as_ring(np.array(secret, dtype=object))
        seeded = share_seeded(x, n, sid, purposes, rng=Prg.from_int(rng_seed, "vectors"))
        vectors.append(
            {
                "comment": why,
                "secret": secret,
                "secret_ring": words(x),
                "parties": n,
                "session_id": sid.hex(),
                "purposes": list(seeded.purposes),
                "seed_source": {"from_int": rng_seed, "purpose": "vectors"},
                "seeds": [s.hex() for s in seeded.seeds],
                "expansions": [words(e) for e in seeded.expand(sid)[:-1]],
                "correction": words(seeded.correction),
                "correction_le_hex": le_hex(seeded.correction),
                "reconstruction": words(seeded.reconstruct(sid)),
            }
        )
    return {
        "format": "mpcdp seeded additive sharing over Z_2^64 (mpcdp/sharing.py)",
        "description": (
            "A secret vector x of L ring elements is split into n - 1 seeds and one correction vector. "
            "Seed i (32 bytes) expands to PRG(seed_i, session_id, purposes[i]).uint64(L) (see prg.json); "
            "correction = x - sum of the expansions mod 2^64; reconstruction = correction + sum of the "
            "expansions mod 2^64 = x. On the wire a seed is its 32 bytes and a vector is packed "
            "little-endian uint64 (correction_le_hex). Seeds are fresh CSPRNG output in production; "
            "here they are the successive 32-byte blocks of Prg.from_int(seed_source.from_int, "
            "seed_source.purpose), which another implementation can simply take as inputs."
        ),
        "vectors": vectors,
    }


# -- fixed point ----------------------------------------------------------------------------------

FIXED_POINT_ENCODE = [
    # (frac_bits, real, why)
    (0, 2.0, "integers at frac_bits 0"),
    (0, 0.5, "ties round half to even: 0.5 -> 0"),
    (0, 1.5, "ties round half to even: 1.5 -> 2"),
    (0, 2.5, "ties round half to even: 2.5 -> 2"),
    (0, -1.5, "negative tie: -1.5 -> -2 (two's complement in the ring)"),
    (16, 3800.0, "a raise at the default 16 fractional bits"),
    (16, 12.5, "exact binary fraction"),
    (16, -3171.5, "negative value"),
    (16, 1 / 3, "not representable: rounded to the nearest 2^-16"),
    (16, 2.0**-17, "half a unit: tie to even -> 0"),
    (16, 3 * 2.0**-17, "one and a half units: tie to even -> 2"),
    (16, 2.0**46, "large but fits: 2^62 ring units"),
    (16, -(2.0**47), "the most negative value at 16 bits: -2^63"),
    (52, 1.0, "frac_bits 52, the maximum"),
    (52, -2047.0, "near the limit at 52 bits"),
]
FIXED_POINT_REFUSED = [
    (16, "nan", "NaN is refused"),
    (16, "inf", "infinity is refused"),
    (16, "-inf", "infinity is refused"),
    (16, 2.0**47, "2^63 ring units: outside the signed range"),
    (52, 2048.0, "2^63 ring units at 52 bits"),
]
FIXED_POINT_DECODE = [0, 1, 65536, (1 << 63) - 1, 1 << 63, (1 << 64) - 1, (1 << 64) - 65536]
ENCODE_BOUNDS = [(16, 10_000.0), (16, 1.0), (0, 7.5), (20, 0.1)]


def fixed_point_vectors() -> dict:
    encode = []
    for frac_bits, x, why in FIXED_POINT_ENCODE:
        fx = ring.FixedPoint(frac_bits)
        enc = fx.encode([x])
        encode.append(
            {
                "comment": why,
                "frac_bits": frac_bits,
                "real": real(x),
                "ring": words(enc)[0],
                "signed": int(ring.to_signed(enc)[0]),
                "le_hex": le_hex(enc),
                "decoded": real(fx.decode(enc)[0]),
            }
        )
    refused = []
    for frac_bits, x, why in FIXED_POINT_REFUSED:
        try:
            ring.FixedPoint(frac_bits).encode([float(x)])
        except ValueError as exc:
            refused.append(
                {"comment": why, "frac_bits": frac_bits, "real": real(float(x)), "error": type(exc).__name__}
            )
        else:
            raise AssertionError(f"the library encoded {x!r} at frac_bits {frac_bits}; the vector says refuse")
    decode = [
        {
            "frac_bits": 16,
            "ring": r,
            "signed": int(ring.to_signed(ring.as_ring([r]))[0]),
            "decoded": real(ring.FixedPoint(16).decode(ring.as_ring([r]))[0]),
        }
        for r in FIXED_POINT_DECODE
    ]
    bounds = [
        {"frac_bits": f, "bound": real(b), "ring_units": ring.FixedPoint(f).encode_bound(b)} for f, b in ENCODE_BOUNDS
    ]
    return {
        "format": "mpcdp fixed-point encoding into Z_2^64 (mpcdp/ring.py)",
        "description": (
            "encode(x) = round_half_even(x * 2^frac_bits) as a signed 64-bit integer, stored in two's "
            "complement as a ring element (uint64); frac_bits in [0, 52]. NaN, infinities and values whose "
            "scaled magnitude reaches 2^63 (scaled >= 2^63 or < -2^63) are refused (error: ValueError, or its "
            "subclass HeadroomError for size). decode(r) = signed(r) / 2^frac_bits, signed(r) = r - 2^64 if "
            "r >= 2^63. encode_bound(b) = round_half_even(b * 2^frac_bits): the ring units of the largest "
            "|x| <= b, used by the overflow (headroom) check."
        ),
        "encode": encode,
        "refused": refused,
        "decode": decode,
        "encode_bound": bounds,
    }


# -- survey digests -------------------------------------------------------------------------------


def aggregator_tables(*addresses: str, names: str = "abc") -> str:
    """The [[aggregator]] tables of a survey file: one per address, named a, b, c, ..."""
    return "".join(f'\n[[aggregator]]\nname = "{n}"\naddress = "{a}"\n' for n, a in zip(names, addresses))


SURVEY_TEXTS = [
    (
        "a yes/no question without noise",
        """
[survey]
id = "tiny"
"""
        + aggregator_tables("127.0.0.1:7001", "127.0.0.1:7002")
        + """
[[question]]
id = "ok"
kind = "yesno"
""",
    ),
    (
        'the same survey with validity proofs (proofs = "prio3"): the key proofs enters the digest',
        """
[survey]
id = "tiny"
proofs = "prio3"
"""
        + aggregator_tables("127.0.0.1:7001", "127.0.0.1:7002")
        + """
[[question]]
id = "ok"
kind = "yesno"
""",
    ),
    (
        "the same survey at other addresses: the digest does not change",
        """
[survey]
id = "tiny"
"""
        + aggregator_tables("a.example.org:443", "b.example.org:443")
        + """
[[question]]
id = "ok"
kind = "yesno"
""",
    ),
    (
        "every question kind, local and central mechanisms, a step rounded down to a power of two",
        """
[survey]
id = "poll-2026"
title = "Titles do not enter the digest"
min_respondents = 1000
max_respondents = 1_000_000
colluders = 1

[[aggregator]]
name = "pollster-a"
address = "127.0.0.1:7311"

[[aggregator]]
name = "pollster-b"
address = "127.0.0.1:7312"

[[aggregator]]
name = "university-c"
address = "127.0.0.1:7313"

[[question]]
id = "will_vote"
text = "Question texts do not enter the digest"
kind = "yesno"
local = { mechanism = "two_coin" }
central = { epsilon = 0.5 }

[[question]]
id = "vote"
kind = "choice"
options = ["Greens", "Labour", "Liberal", "Conservative", "Other"]
local = { mechanism = "krr", epsilon = 2.0 }
central = { mechanism = "discrete_laplace", epsilon = 0.5 }

[[question]]
id = "issues"
kind = "multiselect"
options = ["economy", "health", "climate", "housing"]
local = { mechanism = "rr", epsilon = 4.0 }
central = { mechanism = "skellam", epsilon = 1.0, delta = 1e-9 }

[[question]]
id = "salary"
kind = "numeric"
bounds = [0, 200000]
step = 100
local = { mechanism = "laplace", epsilon = 1.0 }
""",
    ),
]

ID_SETS = [
    ("the empty set: SHA-256 of nothing", []),
    ("one id", [bytes(range(16))]),
    (
        "order does not matter: ids are sorted (bytewise) before hashing",
        [b"\xff" * 16, bytes(16), bytes(range(16)), b"\x80" + bytes(15)],
    ),
]


def canonical_survey_json(survey) -> str:
    """The text the survey digest hashes, built from the format's description (see the file's description)."""
    questions = [
        {
            "id": q.id,
            "kind": q.kind,
            "options": list(q.options),
            "bounds": list(q.bounds) if q.bounds else None,
            "step": q.step,
            "local": [q.local.name, q.local.epsilon],
            "central": [q.central.mechanism, q.central.epsilon, q.central.delta],
        }
        for q in survey.questions
    ]
    canon = {
        "id": survey.id,
        "min": survey.min_respondents,
        "max": survey.max_respondents,
        "colluders": survey.colluders,
        "aggregators": list(survey.aggregator_names),
        "questions": questions,
    }
    if survey.proofs != "none":
        canon["proofs"] = survey.proofs
    return json.dumps(canon, sort_keys=True)


def survey_digest_vectors() -> dict:
    surveys = []
    for why, text in SURVEY_TEXTS:
        survey = parse_survey(text.lstrip(), "vector.toml")
        canonical = canonical_survey_json(survey)
        if hashlib.sha256(canonical.encode()).digest() != survey.digest:
            raise AssertionError(
                f"survey {survey.id!r}: the library's digest is not SHA-256 of the described "
                "canonical JSON; update canonical_survey_json and the description"
            )
        surveys.append(
            {
                "comment": why,
                "toml": text.lstrip(),
                "canonical_json": canonical,
                "digest": survey.digest.hex(),
                "width": survey.width,
            }
        )
    id_sets = [
        {"comment": why, "ids": [i.hex() for i in ids], "digest": id_set_digest(ids).hex()} for why, ids in ID_SETS
    ]
    return {
        "format": "mpcdp survey digests (mpcdp/survey/definition.py, mpcdp/survey/release.py)",
        "description": (
            "digest = SHA-256(UTF-8 canonical_json). canonical_json is Python's json.dumps(obj, "
            "sort_keys=True) with its default separators (', ' and ': '), non-ASCII escaped as \\uXXXX, floats "
            "in repr form (shortest round-trip, e.g. 0.5, 1e-09, 200000.0), None as null; obj = {id, min "
            "(min_respondents), max (max_respondents), colluders, aggregators (names in file order), "
            "questions: [{id, kind, options, bounds ([lo, hi] as floats, or null), step (float, a power of two, "
            "or null), local: [mechanism, epsilon or null], central: [mechanism, epsilon or null, delta]}], "
            "and proofs (the validity-proof system, e.g. 'prio3') only when the survey sets one} "
            "after parsing with defaults (min 100, max 10000000, colluders 1, mechanisms 'none', a central "
            "table without a mechanism is 'discrete_laplace', two_coin epsilon = ln 3). Addresses, titles "
            "and question texts are excluded. Nodes compare digests so that all run the same survey "
            "(SurveyRef.digest on the wire). The id-set digest (ReleaseRequest.set_digest) is SHA-256 over "
            "the 16-byte submission ids sorted bytewise and concatenated."
        ),
        "surveys": surveys,
        "id_sets": id_sets,
    }


# -- statistics as vectors ------------------------------------------------------------------------

PARTIES = ("alice", "bob", "carol", "dave")
STATISTIC_CASES = [
    # (spec keyword arguments, one party's records, why)
    (
        dict(statistic="sum", bounds=(0, 10_000), max_records=3),
        [3800, 2514.25, 12_000],
        "sum at frac_bits 16: each record clipped to the bounds, encoded, then summed (12000 -> 10000)",
    ),
    (dict(statistic="count", max_records=5), [1, 2, 3], "count: the number of records"),
    (dict(statistic="mean", bounds=(0, 10_000)), [3800], "mean: [sum, count], alice's raise in the README's example"),
    (
        dict(statistic="variance", dimension=2, bounds=(-5, 5), frac_bits=8, max_records=3),
        [[1.5, -2.0], [7.0, 0.25], [-0.1, 4.0]],
        "variance over 2 coordinates at frac_bits 8: [sum x (2), sum x^2 (2), n]; 7 is clipped to 5, -0.1 rounds",
    ),
    (
        dict(statistic="histogram", categories=("red", "green", "blue"), max_records=4),
        ["red", "blue", "red", "purple"],
        "histogram: one count per declared category; undeclared ones are dropped",
    ),
]
DECODE_CASES = [
    (
        dict(statistic="mean", bounds=(0, 10_000)),
        [(3800 + 2514 + 2982 + 3390) << 16, 4],
        "the four engineers' total: mean 3171.5",
    ),
    (
        dict(statistic="variance", bounds=(-10, 10), frac_bits=4, max_records=2),
        [-(3 << 4), 50 << 4, 3],
        "variance from a total with a negative sum (two's complement): sum -3, sum_sq 50, n 3",
    ),
    (
        dict(statistic="histogram", categories=("yes", "no")),
        [7, (1 << 64) - 2],
        "a histogram total read as signed: a noisy cell may be negative",
    ),
]


def _spec(kwargs: dict) -> QuerySpec:
    return QuerySpec(parties=PARTIES, session_id=bytes(16), **kwargs)


def _spec_json(kwargs: dict) -> dict:
    spec = _spec(kwargs)
    out = {"statistic": spec.statistic, "dimension": spec.dimension, "frac_bits": spec.frac_bits}
    if spec.statistic == "histogram":
        out["categories"] = list(spec.categories)
    elif spec.statistic != "count":
        out["bounds"] = [float(b) for b in spec.bounds]
    return out


def statistics_vectors() -> dict:
    encode = []
    for kwargs, records, why in STATISTIC_CASES:
        stat = codec_for(_spec(kwargs))
        vector = stat.encode(records)
        encode.append(
            {
                "comment": why,
                "spec": _spec_json(kwargs),
                "records": records,
                "blocks": [
                    {"name": b.name, "length": b.length, "scale": b.scale, "sensitivity": b.sensitivity}
                    for b in stat.blocks
                ],
                "local_aggregate": words(vector),
                "local_aggregate_le_hex": le_hex(vector),
            }
        )
    decode = []
    for kwargs, total, why in DECODE_CASES:
        result = codec_for(_spec(kwargs)).decode(ring.as_ring(np.array(total, dtype=object)))
        decode.append(
            {"comment": why, "spec": _spec_json(kwargs), "total": [t % (1 << 64) for t in total], "result": result}
        )
    return {
        "format": "mpcdp statistics as vectors (mpcdp/protocol/statistics.py)",
        "description": (
            "A party encodes its records into one ring vector, its local aggregate, made of blocks: sum [sum of "
            "x per coordinate], count [n], mean [sum, count], variance [sum, sum_sq, count], histogram [count "
            "per declared category, in order; undeclared labels dropped]. Real coordinates are clipped to "
            "bounds, each record encoded in fixed point (fixed_point.json) and then summed mod 2^64; sum_sq "
            "encodes x*x of the clipped record (the float product, then fixed point). The secure sum adds the "
            "parties' vectors; the total is read as signed and each block divided by its scale. Decoding: sum "
            "(a number when dimension is 1, else a list), count, mean = sum / count clipped to the bounds (null "
            "when count <= 0), variance = max((sum_sq - sum^2 / n) / (n - 1), 0) (null when n <= 1), "
            "histogram = {category: count}. Block sensitivity: ring units one record can move a coordinate "
            "(encode_bound of max(|lo|, |hi|), of its square for sum_sq, 1 for counts)."
        ),
        "encode": encode,
        "decode": decode,
    }


# -- survey answer sheets -------------------------------------------------------------------------

SHEET_SURVEY = (
    """
[survey]
id = "sheet-vectors"
min_respondents = 1
"""
    + aggregator_tables("127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003")
    + """
[[question]]
id = "agree"
kind = "yesno"
central = { epsilon = 1.0 }

[[question]]
id = "colour"
kind = "choice"
options = ["red", "green", "blue"]

[[question]]
id = "pets"
kind = "multiselect"
options = ["cat", "dog", "fish", "bird"]

[[question]]
id = "hours"
kind = "numeric"
bounds = [0, 100]
step = 0.5
"""
)
SHEETS = [
    ({"agree": True, "colour": "blue", "pets": ["dog", "bird"], "hours": 37.5}, "answers on the grid"),
    ({"agree": False, "colour": "red", "pets": [], "hours": -3}, "a numeric answer below the range is clamped to lo"),
    (
        {"agree": True, "colour": "green", "pets": ["fish", "cat", "dog", "bird"], "hours": 250},
        "every option; a numeric answer above the range is clamped to hi",
    ),
]


def survey_sheet_vectors() -> dict:
    survey = parse_survey(SHEET_SURVEY.lstrip(), "sheet-vectors.toml")
    client = SurveyClient(survey, rng=Prg.from_int(11, "vectors"))
    sheets = []
    for answers, why in SHEETS:
        prepared = client.prepare(answers)
        vector = ring.total(np.frombuffer(blob, dtype="<u8").astype(np.uint64) for blob in prepared.shares.values())
        sheets.append(
            {
                "comment": why,
                "answers": answers,
                "encoded": [int(v) for v in ring.to_signed(vector)],
                "share_bytes": {name: len(blob) for name, blob in prepared.shares.items()},
            }
        )
    layout = [
        {
            "question": q.id,
            "kind": q.kind,
            "offset": block.start,
            "width": q.width,
            "labels": list(q.labels),
            "bounds": list(q.bounds) if q.bounds else None,
            "step": q.step,
        }
        for q, block in survey.offsets()
    ]
    return {
        "format": "mpcdp survey answer sheet encoding (mpcdp/survey/sheet.py, questions.py, local.py, respondent.py)",
        "description": (
            "An answer sheet is one integer block per question, in survey order (layout): yesno [1 or 0]; "
            "choice one-hot over the options; multiselect one 0/1 per option; numeric the answer clamped to "
            "[lo, hi] divided by step (a power of two), in steps, rounded up with probability equal to the "
            "fractional part (unbiased; deterministic on the grid, as here). These vectors use no local "
            "mechanism, so the encoding is deterministic; a local mechanism randomises each block first. The "
            "sheet is split into one additive share per aggregator (a full share: width * 8 bytes, packed "
            "little-endian uint64), all under one 16-byte submission id; the shares sum to the encoding mod "
            "2^64. encoded lists the sheet as signed integers."
        ),
        "survey_toml": SHEET_SURVEY.lstrip(),
        "width": survey.width,
        "layout": layout,
        "sheets": sheets,
    }


# -- verified surveys: answers as Prio3 reports ----------------------------------------------------

PROVED_SURVEY = (
    SHEET_SURVEY.replace("min_respondents = 1\n", 'min_respondents = 1\nproofs = "prio3"\n')
    + """
[[question]]
id = "flavour"
kind = "choice"
options = ["vanilla", "chocolate", "strawberry", "mint", "lemon"]
local = { mechanism = "unary", epsilon = 2.0 }
"""
)
PROVED_IDS = [bytes(16), bytes(range(16))]


def _circuit_json(vdaf) -> dict:
    circuit = vdaf.flp.circuit
    params = {k: getattr(circuit, k) for k in ("length", "bits", "chunk_length") if hasattr(circuit, k)}
    return {"name": vdaf.name, "algorithm_id": vdaf.ID, "shares": vdaf.SHARES, "proofs": vdaf.PROOFS, **params}


def survey_prio3_vectors() -> dict:
    survey = parse_survey(PROVED_SURVEY.lstrip(), "proved-vectors.toml")
    sheet = {**SHEETS[0][0], "flavour": "mint"}
    questions = []
    for i, q in enumerate(survey.questions):
        row = q.randomize([sheet[q.id]], Prg.from_int(5, "vectors"))[0] if not q.local.enabled else None
        questions.append(
            {
                "question": q.id,
                "kind": q.kind,
                "local": q.local.name,
                "circuit": _circuit_json(proved.circuit(survey, q)),
                "measurement_of_sheet": q.measurement(row) if row is not None else None,
                "nonces": {sid.hex(): proved.nonce(survey, sid, i).hex() for sid in PROVED_IDS},
            }
        )
    return {
        "format": "mpcdp verified surveys: answers as Prio3 reports (mpcdp/survey/proved.py)",
        "description": (
            "In a survey with proofs = 'prio3' each question's (locally randomised) block is one Prio3 "
            "measurement (draft-irtf-cfrg-vdaf-08) with one share per aggregator: yesno -> Prio3Count (0 or 1); "
            "choice -> Prio3Histogram(length k, chunk_length round(sqrt(k))) measuring the chosen option's "
            "index, except under the unary local mechanism -> Prio3SumVec(k, bits 1, chunk_length "
            "round(sqrt(k))) measuring the 0/1 vector; multiselect -> Prio3SumVec(k, 1, round(sqrt(k))); "
            "numeric -> Prio3Sum(bits) measuring report - lo in steps, [lo, hi] the question's report range "
            "(unit_range), bits = max(1, bit length of hi - lo). The nonce of question i (0-based, in survey "
            "order) of submission sid is SHA-256('mpcdp/prio3' || survey digest || sid || uint16_be(i))[:16], "
            "recomputed by the aggregators; the survey digest is survey_digest.json's. measurement_of_sheet is "
            "the measurement of the sheet in survey_sheet.json's first vector (questions without a local "
            "mechanism; null for the randomised one)."
        ),
        "survey_toml": PROVED_SURVEY.lstrip(),
        "digest": survey.digest.hex(),
        "questions": questions,
    }


# -- files ----------------------------------------------------------------------------------------

BUILDERS = {
    "prg.json": prg_vectors,
    "sharing.json": sharing_vectors,
    "fixed_point.json": fixed_point_vectors,
    "survey_digest.json": survey_digest_vectors,
    "statistics.json": statistics_vectors,
    "survey_sheet.json": survey_sheet_vectors,
    "survey_prio3.json": survey_prio3_vectors,
}


def render(doc: dict) -> str:
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def stale(directory: Path = HERE) -> list[str]:
    """Names of the vector files that differ from what the library gives now (or are missing)."""
    out = []
    for name, build in BUILDERS.items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != render(build()):
            out.append(name)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write mpcdp's JSON test vectors (PRG, seeded sharing, fixed point, survey digests, "
        "statistics, survey answer sheets, Prio3 survey reports) "
        "into tests/vectors/, or check that the files still match the library."
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 and name the files that differ from the library's output",
    )
    parser.add_argument("--out", type=Path, default=HERE, help="directory of the vector files (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.check:
        bad = stale(args.out)
        if bad:
            print(
                f"out of date: {', '.join(bad)}; if the format change is intended, run "
                f"python tests/vectors/generate.py and commit the files",
                file=sys.stderr,
            )
            return 1
        print(f"all {len(BUILDERS)} vector files match the library")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, build in BUILDERS.items():
        (args.out / name).write_text(render(build()), encoding="utf-8")
    print(f"wrote {len(BUILDERS)} vector files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
