"""Answer sheets as Prio3 reports: each question's circuit, the respondent's reports, verified aggregation.

Every question of a sheet is one Prio3 measurement (draft-irtf-cfrg-vdaf-08,
:mod:`mpcdp.vdaf`) carrying a zero-knowledge proof that it is a valid answer;
the aggregators check the proof together on secret-shared data and count a
report only if it verifies, so one respondent moves a total by at most one
valid answer (robustness; Corrigan-Gibbs and Boneh, NSDI 2017).

Each question kind owns its circuit and measurement
(:meth:`mpcdp.survey.questions.Question.make_circuit`, ``measurement``): the
*randomized* answer is the measurement (local DP runs first,
:meth:`~mpcdp.survey.questions.Question.randomize`, and every mechanism's
output is itself a valid answer): yes/no -> Count; choice -> Histogram(k), or
SumVec(k, bits 1) under unary encoding; multi-select -> SumVec(k, bits 1);
numeric -> Sum(bits) of ``report - lo`` in grid steps.

Binding: the nonce of question i of submission ``sid`` is
SHA-256("mpcdp/prio3" || survey digest || sid || i)[:16], recomputed by the
aggregators, never taken from the wire. A report made for another survey,
question or id is prepared under another nonce, so its joint randomness no
longer matches and it is rejected (for Count, which has no joint randomness,
it can only be one valid 0/1 answer).

Verdicts: a respondent's report counts only if *every* question's proof
verifies and every aggregator derived the same joint randomness seed (each
sends the seed it derived with its prep share; a client that gave aggregators
different public shares is rejected, identically by all, since the leader
decides and the others follow).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..prg import RandomSource
from ..vdaf import DecodeError, Prio3, VerifyError
from ..vdaf.prio3 import PrepMessage, PrepShare, PrepState
from ..vdaf.xof import SEED_SIZE
from .definition import Survey
from .noise import mechanism
from .questions import Question

ACCEPTED, REJECTED, MALFORMED = 0, 1, 2  # per-report verdicts
VERDICT_NAMES = {ACCEPTED: "accepted", REJECTED: "rejected", MALFORMED: "malformed"}


def circuit(survey: Survey, q: Question) -> Prio3:
    """The Prio3 instance proving question ``q``'s answers, one share per aggregator."""
    return q.circuit(len(survey.aggregators))


def nonce(survey: Survey, sid: bytes, index: int) -> bytes:
    """The nonce binding question ``index`` of submission ``sid`` to this survey's definition."""
    return hashlib.sha256(b"mpcdp/prio3" + survey.digest + sid + index.to_bytes(2, "big")).digest()[:16]


def _public_size(vdaf: Prio3) -> int:
    return SEED_SIZE * vdaf.SHARES if vdaf.uses_joint_rand else 0


def report_size(survey: Survey, agg_index: int) -> int:
    """Bytes of aggregator ``agg_index``'s report of one sheet (public share + input share per question)."""
    return sum(_public_size(v) + v.input_share_size(agg_index) for v in (circuit(survey, q) for q in survey.questions))


def shard_sheet(
    survey: Survey,
    sid: bytes,
    rows: Sequence[np.ndarray],
    rng: RandomSource,
    encoded: dict[int, list[int]] | None = None,
) -> list[bytes]:
    """One respondent's reports, one per aggregator (in the survey's order), from its randomized rows.

    ``encoded`` (tests and ``--forged`` simulations only) replaces question i's encoded
    measurement with any vector, proved as honestly as possible: the aggregators must reject it.
    """
    parts: list[list[bytes]] = [[] for _ in survey.aggregators]
    for i, (q, row) in enumerate(zip(survey.questions, rows, strict=True)):
        vdaf = circuit(survey, q)
        n = nonce(survey, sid, i)
        rand = rng.bytes(vdaf.RAND_SIZE)
        if encoded and i in encoded:
            public, shares = vdaf.shard_encoded(encoded[i], n, rand)
        else:
            public, shares = vdaf.shard(q.measurement(row), n, rand)
        public_bytes = vdaf.encode_public_share(public)
        for j, share in enumerate(shares):
            parts[j].append(public_bytes + vdaf.encode_input_share(share))
    return [b"".join(p) for p in parts]


@dataclass(frozen=True)
class PrepInit:
    """One aggregator's first preparation step over a batch: kept states, and what it sends the leader.

    ``shares[r]`` is report r's prep message to the leader (per question: prep share || the joint
    randomness seed this aggregator derived), or b"" if the report is malformed here.
    """

    states: list[list[PrepState] | None]  # per report: its PrepState per question, or None when malformed
    shares: list[bytes]


def _prep_share_size(vdaf: Prio3) -> int:
    seed = SEED_SIZE if vdaf.uses_joint_rand else 0
    return vdaf.field.encoded_size * vdaf.flp.VERIFIER_LEN * vdaf.PROOFS + 2 * seed


def prep_init(
    survey: Survey, agg_index: int, verify_key: bytes, sids: Sequence[bytes], reports: Sequence[bytes]
) -> PrepInit:
    """Aggregator ``agg_index``'s prep_init of a batch of stored reports (pure: recomputable after a crash)."""
    n = len(sids)
    states: list[list[PrepState]] = [[] for _ in range(n)]
    shares: list[list[bytes]] = [[] for _ in range(n)]
    bad = np.zeros(n, dtype=bool)
    expected = report_size(survey, agg_index)
    for r, report in enumerate(reports):
        bad[r] = len(report) != expected
    offset = 0
    for i, q in enumerate(survey.questions):
        vdaf = circuit(survey, q)
        pub, size = _public_size(vdaf), vdaf.input_share_size(agg_index)
        batch = [
            (nonce(survey, sid, i), rep[offset : offset + pub], rep[offset + pub : offset + pub + size])
            if not bad[r]
            else (nonce(survey, sid, i), b"", b"")
            for r, (sid, rep) in enumerate(zip(sids, reports, strict=True))
        ]
        offset += pub + size
        for r, result in enumerate(_prep_init_batch(vdaf, verify_key, agg_index, batch)):
            if isinstance(result, DecodeError) or bad[r]:
                bad[r] = True
                continue
            state, share = result
            states[r].append(state)
            shares[r].append(vdaf.encode_prep_share(share) + state.corrected_joint_rand_seed)
    return PrepInit(
        [None if bad[r] else states[r] for r in range(n)], [b"" if bad[r] else b"".join(shares[r]) for r in range(n)]
    )


def _prep_init_batch(
    vdaf: Prio3, verify_key: bytes, agg_index: int, batch: list[tuple[bytes, bytes, bytes]]
) -> list[tuple[PrepState, PrepShare] | DecodeError]:
    try:
        return vdaf.prep_init_encoded_batch(verify_key, agg_index, None, batch)
    except VerifyError:  # a query point on the interpolation nodes (about 2^-60 per report): one by one
        out: list[tuple[PrepState, PrepShare] | DecodeError] = []
        for report in batch:
            try:
                out.extend(vdaf.prep_init_encoded_batch(verify_key, agg_index, None, [report]))
            except VerifyError as error:
                out.append(DecodeError(str(error)))
        return out


def decide(survey: Survey, shares: Sequence[Sequence[bytes]]) -> tuple[list[int], list[bytes]]:
    """The leader's step: ``shares[j][r]`` is aggregator j's prep message for report r.

    Returns per report its verdict (ACCEPTED, REJECTED: a proof failed or the aggregators'
    joint randomness disagrees, MALFORMED: some aggregator could not decode its report)
    and the prep messages (per question, concatenated; b"" unless accepted).
    """
    m, n = len(shares), len(shares[0]) if shares else 0
    verdicts = [ACCEPTED] * n
    for r in range(n):
        if any(len(shares[j][r]) != prep_message_size(survey) for j in range(m)):
            verdicts[r] = MALFORMED
    messages: list[list[bytes]] = [[] for _ in range(n)]
    offset = 0
    for q in survey.questions:
        vdaf = circuit(survey, q)
        size, seed = _prep_share_size(vdaf), SEED_SIZE if vdaf.uses_joint_rand else 0
        live = [r for r in range(n) if verdicts[r] == ACCEPTED]
        encoded = [[shares[j][r][offset : offset + size - seed] for j in range(m)] for r in live]
        for r, result in zip(live, vdaf.prep_shares_to_prep_encoded_batch(None, encoded), strict=True):
            derived = {shares[j][r][offset + size - seed : offset + size] for j in range(m)}
            if not isinstance(result, PrepMessage) or derived != {vdaf.encode_prep_msg(result)}:
                verdicts[r] = REJECTED
            else:
                messages[r].append(vdaf.encode_prep_msg(result))
        offset += size
    return verdicts, [b"".join(messages[r]) if verdicts[r] == ACCEPTED else b"" for r in range(n)]


def prep_message_size(survey: Survey) -> int:
    """Bytes of one report's message from an aggregator to the leader."""
    return sum(_prep_share_size(circuit(survey, q)) for q in survey.questions)


def finish(survey: Survey, init: PrepInit, verdicts: Sequence[int], messages: Sequence[bytes]) -> list[list[int]]:
    """Every aggregator's last step: the batch's aggregate share per question over the accepted reports.

    Raises VerifyError if the leader's message disagrees with this aggregator's state (a
    leader that lies, or a bug): such a batch is never counted.
    """
    totals = []
    for i, q in enumerate(survey.questions):
        vdaf = circuit(survey, q)
        seed = SEED_SIZE if vdaf.uses_joint_rand else 0
        offset = seed * sum(circuit(survey, p).uses_joint_rand for p in survey.questions[:i])
        total = vdaf.aggregate_init()
        for r, verdict in enumerate(verdicts):
            if verdict != ACCEPTED:
                continue
            states = init.states[r]
            if states is None:
                raise VerifyError("the leader accepted a report this aggregator could not decode")
            msg = vdaf.decode_prep_msg(messages[r][offset : offset + seed])
            total = vdaf.agg_update(None, total, vdaf.prep_next(states[i], msg))
        totals.append(total)
    return totals


def encode_aggregate(survey: Survey, totals: Sequence[Sequence[int]]) -> bytes:
    return b"".join(circuit(survey, q).encode_agg_share(list(t)) for q, t in zip(survey.questions, totals, strict=True))


def decode_aggregate(survey: Survey, data: bytes) -> list[list[int]]:
    out, offset = [], 0
    for q in survey.questions:
        vdaf = circuit(survey, q)
        size = vdaf.field.encoded_size * vdaf.flp.OUTPUT_LEN
        out.append(vdaf.decode_agg_share(data[offset : offset + size]))
        offset += size
    if offset != len(data):
        raise DecodeError(f"an aggregate share of this survey is {offset} bytes, got {len(data)}")
    return out


def add_aggregates(survey: Survey, shares: Sequence[Sequence[Sequence[int]]]) -> list[list[int]]:
    """Sum of aggregate shares (per question, in the field)."""
    return [circuit(survey, q).merge(None, [list(s[i]) for s in shares]) for i, q in enumerate(survey.questions)]


def noisy_aggregate(survey: Survey, totals: Sequence[Sequence[int]], rng: RandomSource) -> list[list[int]]:
    """An aggregator's aggregate share plus its central noise piece, added in the field.

    Fail closed: the piece is always drawn, here, for every question with central noise.
    """
    out = []
    for q, total in zip(survey.questions, totals, strict=True):
        mech, p = mechanism(survey, q), circuit(survey, q).field.modulus
        if mech is None:
            out.append(list(total))
            continue
        piece = mech.piece(len(total), rng)
        out.append([(int(t) + int(x)) % p for t, x in zip(total, piece, strict=True)])
    return out


def totals_vector(survey: Survey, merged: Sequence[Sequence[int]], count: int) -> np.ndarray:
    """The summed sheet (signed, in report units) from the merged field aggregates over ``count`` reports.

    Field elements above p/2 are negative (noise); numeric totals get ``lo`` back per report.
    """
    out = []
    for q, total in zip(survey.questions, merged, strict=True):
        p = circuit(survey, q).field.modulus
        out.extend(q.unshift([t - p if t > p // 2 else t for t in total], count))
    return np.array(out, dtype=np.int64)
