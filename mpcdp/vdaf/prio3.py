"""Prio3, the VDAF of draft-irtf-cfrg-vdaf-08 section 7, for 2 to 255 aggregators.

A client *shards* a measurement into one input share per aggregator and
proves, with a fully linear proof (:mod:`.flp`) secret-shared alongside it,
that the measurement is valid (a 0/1 count, an integer in range, a one-hot
vector...). Each aggregator runs *prep_init* on its share and sends a small
*prep share* (its share of the verifier, plus a joint-randomness part when
the circuit needs one); anyone combines the prep shares
(*prep_shares_to_prep*) into a *prep message*, which fails if the proof does
not verify; each aggregator finishes with *prep_next* and obtains its *output
share*. Output shares are summed locally (*aggregate*) and the aggregate
shares summed and decoded by the collector (*unshard*).

Guarantees (draft 08, section 9 and BBCGGI19): privacy against any set of
aggregators missing at least one honest one (shares are uniform; the verifier
reveals only validity); robustness: if all aggregators are honest, an invalid
measurement is accepted with probability at most the FLP's soundness error
(about ``(calls * degree + length) / |F|``: below 2^-62 for Count over Field64,
2^-100 for the Field128 circuits at survey sizes) — so one client moves an
aggregate by at most one valid measurement. Robustness needs the verify key to
be secret from clients (it seeds the verifier's query randomness).

Every message has an explicit ``encode_*`` / ``decode_*`` pair producing the
draft's byte encodings; nothing here does I/O. Per-report randomness ``rand``
and nonces are explicit (``RAND_SIZE`` / ``NONCE_SIZE`` bytes), as in the draft;
:meth:`Prio3.shard_random` draws both from an injected random source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..prg import RandomSource
from .circuits import Count, Histogram, MultiHotHistogram, Sum, SumVec
from .errors import DecodeError, VerifyError
from .flp import Circuit, FlpGeneric
from .xof import SEED_SIZE, XofTurboShake128

VERSION = 8
NONCE_SIZE = 16
VERIFY_KEY_SIZE = SEED_SIZE

USAGE_MEAS_SHARE = 1
USAGE_PROOF_SHARE = 2
USAGE_JOINT_RANDOMNESS = 3
USAGE_PROVE_RANDOMNESS = 4
USAGE_QUERY_RANDOMNESS = 5
USAGE_JOINT_RAND_SEED = 6
USAGE_JOINT_RAND_PART = 7

REJECTED = "the report's proof does not verify: its measurement is not valid"


# --- messages ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PublicShare:
    """The clients' joint-randomness parts, one per aggregator (empty without joint randomness)."""

    joint_rand_parts: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class LeaderShare:
    """Aggregator 0's input share: its measurement and proof shares in full."""

    meas_share: list[int]
    proofs_share: list[int]
    blind: bytes = b""

    def __repr__(self) -> str:  # shares stay out of logs
        return f"LeaderShare(<{len(self.meas_share)} + {len(self.proofs_share)} elements>)"


@dataclass(frozen=True)
class HelperShare:
    """Aggregator j >= 1's input share: seeds its shares are expanded from."""

    meas_seed: bytes
    proofs_seed: bytes
    blind: bytes = b""

    def __repr__(self) -> str:
        return "HelperShare(<seeds>)"


InputShare = LeaderShare | HelperShare


@dataclass(frozen=True)
class PrepState:
    """What an aggregator keeps between prep_init and prep_next."""

    out_share: list[int]
    corrected_joint_rand_seed: bytes = b""

    def __repr__(self) -> str:
        return f"PrepState(<{len(self.out_share)} elements>)"


@dataclass(frozen=True)
class PrepShare:
    """An aggregator's verifier share (and joint-randomness part), sent for prep_shares_to_prep."""

    verifiers_share: list[int]
    joint_rand_part: bytes = b""


@dataclass(frozen=True)
class PrepMessage:
    """The combined outcome of verification: the joint-randomness seed every aggregator must agree on."""

    joint_rand_seed: bytes = b""


_EMPTY_PUBLIC_SHARE = PublicShare()
_EMPTY_PREP_MESSAGE = PrepMessage()


def format_dst(algo_class: int, algo: int, usage: int) -> bytes:
    """The draft's domain separation tag: version, class, algorithm id, usage."""
    return bytes([VERSION, algo_class]) + algo.to_bytes(4, "big") + usage.to_bytes(2, "big")


class Prio3:
    """One Prio3 instance: a circuit, a number of aggregators (``shares``) and of proofs."""

    Xof = XofTurboShake128
    ROUNDS = 1
    NONCE_SIZE = NONCE_SIZE
    VERIFY_KEY_SIZE = VERIFY_KEY_SIZE

    def __init__(self, name: str, algo_id: int, circuit: Circuit, shares: int, proofs: int = 1):
        if isinstance(shares, bool) or not isinstance(shares, int) or not 2 <= shares <= 255:
            raise ValueError(f"Prio3 needs 2 to 255 aggregators (shares), got {shares!r}")
        if isinstance(proofs, bool) or not isinstance(proofs, int) or not 1 <= proofs <= 255:
            raise ValueError(f"Prio3 runs 1 to 255 proofs, got {proofs!r}")
        self.name, self.ID, self.SHARES, self.PROOFS = name, algo_id, shares, proofs
        self.flp = FlpGeneric(circuit)
        self.field = circuit.field
        self.uses_joint_rand = self.flp.JOINT_RAND_LEN > 0
        self.RAND_SIZE = SEED_SIZE * (1 + 2 * (shares - 1) + (shares if self.uses_joint_rand else 0))
        self._dst = {u: format_dst(0, algo_id, u) for u in range(1, 8)}

    def __repr__(self) -> str:
        return f"{self.name}(shares={self.SHARES})"

    # --- derived randomness ---------------------------------------------------------------------------
    def _helper_meas_share(self, agg_id: int, seed: bytes) -> list[int]:
        return self.Xof.expand_into_vec(
            self.field, seed, self._dst[USAGE_MEAS_SHARE], bytes([agg_id]), self.flp.MEAS_LEN
        )

    def _helper_proofs_share(self, agg_id: int, seed: bytes) -> list[int]:
        return self.Xof.expand_into_vec(
            self.field,
            seed,
            self._dst[USAGE_PROOF_SHARE],
            bytes([self.PROOFS, agg_id]),
            self.flp.PROOF_LEN * self.PROOFS,
        )

    def _joint_rand_part(self, agg_id: int, blind: bytes, encoded_meas_share: bytes, nonce: bytes) -> bytes:
        binder = bytes([agg_id]) + nonce + encoded_meas_share
        return self.Xof.derive_seed(blind, self._dst[USAGE_JOINT_RAND_PART], binder)

    def _joint_rand_seed(self, parts: Sequence[bytes]) -> bytes:
        return self.Xof.derive_seed(bytes(SEED_SIZE), self._dst[USAGE_JOINT_RAND_SEED], b"".join(parts))

    def _joint_rands(self, seed: bytes) -> list[int]:
        return self.Xof.expand_into_vec(
            self.field,
            seed,
            self._dst[USAGE_JOINT_RANDOMNESS],
            bytes([self.PROOFS]),
            self.flp.JOINT_RAND_LEN * self.PROOFS,
        )

    def _query_rands(self, verify_key: bytes, nonce: bytes) -> list[int]:
        return self.Xof.expand_into_vec(
            self.field,
            verify_key,
            self._dst[USAGE_QUERY_RANDOMNESS],
            bytes([self.PROOFS]) + nonce,
            self.flp.QUERY_RAND_LEN * self.PROOFS,
        )

    # --- client ---------------------------------------------------------------------------------------
    def shard(self, measurement: Any, nonce: bytes, rand: bytes) -> tuple[PublicShare, list[InputShare]]:
        """Split ``measurement`` into ``SHARES`` input shares carrying a proof of its validity."""
        return self.shard_encoded(self.flp.encode(measurement), nonce, rand)

    def shard_encoded(self, meas: list[int], nonce: bytes, rand: bytes) -> tuple[PublicShare, list[InputShare]]:
        """:meth:`shard` of an already encoded measurement, valid or not.

        An honest client never needs this; it is how tests and simulations mount the attack
        Prio3 defends against: a malicious client encoding an out-of-range vector and proving
        it as honestly as it can (the aggregators must reject it).
        """
        _check_len("nonce", nonce, NONCE_SIZE)
        _check_len("rand", rand, self.RAND_SIZE)
        flp, field, shares = self.flp, self.field, self.SHARES
        if len(meas) != flp.MEAS_LEN:
            raise ValueError(f"an encoded measurement has {flp.MEAS_LEN} elements, got {len(meas)}")
        meas = [x % field.modulus for x in meas]
        seeds = [rand[i : i + SEED_SIZE] for i in range(0, self.RAND_SIZE, SEED_SIZE)]
        per_helper = 3 if self.uses_joint_rand else 2

        helpers = []
        leader_meas = meas
        for j in range(shares - 1):
            meas_seed, proofs_seed = seeds[per_helper * j], seeds[per_helper * j + 1]
            blind = seeds[per_helper * j + 2] if self.uses_joint_rand else b""
            helpers.append(HelperShare(meas_seed, proofs_seed, blind))
            leader_meas = field.vec_sub(leader_meas, self._helper_meas_share(j + 1, meas_seed))
        rest = seeds[per_helper * (shares - 1) :]

        joint_rands: list[int] = []
        public_share = PublicShare()
        leader_blind = b""
        if self.uses_joint_rand:
            leader_blind, prove_seed = rest
            encode = field.encode_vec
            parts = [self._joint_rand_part(0, leader_blind, encode(leader_meas), nonce)]
            for j, helper in enumerate(helpers):
                helper_meas = self._helper_meas_share(j + 1, helper.meas_seed)
                parts.append(self._joint_rand_part(j + 1, helper.blind, encode(helper_meas), nonce))
            public_share = PublicShare(tuple(parts))
            joint_rands = self._joint_rands(self._joint_rand_seed(parts))
        else:
            (prove_seed,) = rest

        prove_rands = self.Xof.expand_into_vec(
            field, prove_seed, self._dst[USAGE_PROVE_RANDOMNESS], bytes([self.PROOFS]), flp.PROVE_RAND_LEN * self.PROOFS
        )
        proofs: list[int] = []
        for k in range(self.PROOFS):
            proofs += flp.prove(
                meas, _chunk(prove_rands, flp.PROVE_RAND_LEN, k), _chunk(joint_rands, flp.JOINT_RAND_LEN, k)
            )
        for j, helper in enumerate(helpers):
            proofs = field.vec_sub(proofs, self._helper_proofs_share(j + 1, helper.proofs_seed))
        return public_share, [LeaderShare(leader_meas, proofs, leader_blind), *helpers]

    def shard_random(self, measurement: Any, rng: RandomSource) -> tuple[bytes, PublicShare, list[InputShare]]:
        """Shard with a fresh nonce and randomness from ``rng`` (``mpcdp.prg.system_random()``)."""
        nonce = rng.bytes(NONCE_SIZE)
        return (nonce, *self.shard(measurement, nonce, rng.bytes(self.RAND_SIZE)))

    # --- aggregators ----------------------------------------------------------------------------------
    def prep_init(
        self,
        verify_key: bytes,
        agg_id: int,
        agg_param: None,
        nonce: bytes,
        public_share: PublicShare,
        input_share: InputShare,
    ) -> tuple[PrepState, PrepShare]:
        """Aggregator ``agg_id``'s first (only) preparation step on one report."""
        meas_share, proofs_share, query_rands, joint_rands, state, part = self._prep_inputs(
            verify_key, agg_id, nonce, public_share, input_share
        )
        flp = self.flp
        verifiers: list[int] = []
        for k in range(self.PROOFS):
            verifiers += flp.query(
                meas_share,
                _chunk(proofs_share, flp.PROOF_LEN, k),
                _chunk(query_rands, flp.QUERY_RAND_LEN, k),
                _chunk(joint_rands, flp.JOINT_RAND_LEN, k),
                self.SHARES,
            )
        return state, PrepShare(verifiers, part)

    def prep_init_encoded_batch(
        self, verify_key: bytes, agg_id: int, agg_param: None, reports: Sequence[tuple[bytes, bytes, bytes]]
    ) -> list[tuple[PrepState, PrepShare] | DecodeError]:
        """:meth:`prep_init` of many reports straight from the wire: ``(nonce, encoded public share, encoded
        input share)`` per report, all decoded together (numpy, not element by element). Same results as one
        call per report; the FLP queries of all reports run together on numpy arrays (one row per report)
        instead of one interpreted loop each.

        A malformed report (wrong length, an element not below the modulus, a bad nonce) comes
        back as its :class:`DecodeError`, in place; the others are prepared.
        """
        self._check_batch(verify_key, agg_id)
        results: list[Any] = [None] * len(reports)
        good: list[int] = []
        nonces: list[bytes] = []
        public_shares: list[PublicShare] = []
        blobs: list[bytes] = []
        expected = self.input_share_size(agg_id)
        for i, (nonce, public, share) in enumerate(reports):
            try:
                _check_len("nonce", nonce, NONCE_SIZE, DecodeError)
                public_share = self.decode_public_share(public)
                what = "leader input share" if agg_id == 0 else "helper input share"
                _check_len(what, share, expected, DecodeError)
            except DecodeError as error:
                results[i] = error
                continue
            good.append(i)
            nonces.append(nonce)
            public_shares.append(public_share)
            blobs.append(share)
        if not good:
            return results
        field, flp, seed = self.field, self.flp, SEED_SIZE
        if agg_id == 0:
            width = field.encoded_size * (flp.MEAS_LEN + flp.PROOF_LEN * self.PROOFS)
            meas_bytes = field.encoded_size * flp.MEAS_LEN
            matrix, bad = field.decode_matrix(b"".join(b[:width] for b in blobs), len(blobs))
            if bad.any():
                for k in np.flatnonzero(bad).tolist():
                    results[good[k]] = DecodeError(
                        f"leader input share: an element is not below the {field.name} modulus"
                    )
                keep = np.flatnonzero(~bad).tolist()
                good = [good[k] for k in keep]
                nonces = [nonces[k] for k in keep]
                public_shares = [public_shares[k] for k in keep]
                blobs = [blobs[k] for k in keep]
                matrix = matrix[~bad]
                if not good:
                    return results
            meas, proofs = matrix[:, : flp.MEAS_LEN], matrix[:, flp.MEAS_LEN :]
            encoded = [b[:meas_bytes] for b in blobs]
            blinds = [b[width:] for b in blobs]
        else:
            meas, proofs, encoded = self._expand_helper_shares(
                agg_id, [b[:seed] for b in blobs], [b[seed : 2 * seed] for b in blobs]
            )
            blinds = [b[2 * seed :] for b in blobs]
        for i, result in zip(
            good,
            self._prep_batch(verify_key, agg_id, nonces, public_shares, blinds, meas, proofs, encoded),
            strict=True,
        ):
            results[i] = result
        return results

    def _check_batch(self, verify_key: bytes, agg_id: int) -> None:
        _check_len("verify key", verify_key, VERIFY_KEY_SIZE)
        self._check_agg_id(agg_id)

    def _expand_helper_shares(
        self, agg_id: int, meas_seeds: Sequence[bytes], proofs_seeds: Sequence[bytes]
    ) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
        """Helper measurement and proof shares of many reports as two matrices (one row per report),
        and each measurement share's encoding."""
        for seed in (*meas_seeds, *proofs_seeds):
            _check_len("helper seed", seed, SEED_SIZE, DecodeError)
        n, xof, field = len(meas_seeds), self.Xof, self.field
        meas, encoded = xof.expand_into_matrix(
            field, meas_seeds, self._dst[USAGE_MEAS_SHARE], [bytes([agg_id])] * n, self.flp.MEAS_LEN
        )
        proofs, _ = xof.expand_into_matrix(
            field,
            proofs_seeds,
            self._dst[USAGE_PROOF_SHARE],
            [bytes([self.PROOFS, agg_id])] * n,
            self.flp.PROOF_LEN * self.PROOFS,
        )
        return meas, proofs, encoded

    def _prep_batch(
        self,
        verify_key: bytes,
        agg_id: int,
        nonces: Sequence[bytes],
        public_shares: Sequence[PublicShare],
        blinds: Sequence[bytes],
        meas: np.ndarray,
        proofs: np.ndarray,
        encoded: Sequence[bytes],
    ) -> list[tuple[PrepState, PrepShare]]:
        """The vectorised part of prep_init for reports whose shares are matrices (one row each)."""
        flp, field, xof, n = self.flp, self.field, self.Xof, len(nonces)
        query_matrix, _ = xof.expand_into_matrix(
            field,
            [verify_key] * n,
            self._dst[USAGE_QUERY_RANDOMNESS],
            [bytes([self.PROOFS]) + nonce for nonce in nonces],
            flp.QUERY_RAND_LEN * self.PROOFS,
        )
        query_rands = list(query_matrix.T)
        joint_rands: list[Any] = []
        parts = corrected = [b""] * n
        if self.uses_joint_rand:
            parts, corrected = [], []
            for nonce, public_share, blind, encoded_meas in zip(nonces, public_shares, blinds, encoded, strict=True):
                part, seed = self._joint_rand_seeds(agg_id, nonce, public_share, blind, encoded_meas)
                parts.append(part)
                corrected.append(seed)
            joint_matrix, _ = xof.expand_into_matrix(
                field,
                corrected,
                self._dst[USAGE_JOINT_RANDOMNESS],
                [bytes([self.PROOFS])] * n,
                flp.JOINT_RAND_LEN * self.PROOFS,
            )
            joint_rands = list(joint_matrix.T)
        meas_columns, proofs_columns = list(meas.T), list(proofs.T)
        degenerate = np.zeros(n, dtype=bool)
        for k in range(self.PROOFS):
            for t, (_, _, _, wire_len, _) in zip(_chunk(query_rands, flp.QUERY_RAND_LEN, k), flp._shapes, strict=True):
                degenerate |= field.power(t, wire_len) == 1
        if degenerate.any():  # probability about 2^-60 per report: the draft refuses such a report
            raise VerifyError(
                f"report {int(np.flatnonzero(degenerate)[0])} of the batch has a query point on the "
                "interpolation nodes and is refused; prepare the others without it"
            )
        columns: list[Any] = []
        for k in range(self.PROOFS):
            columns += flp.query(
                meas_columns,
                _chunk(proofs_columns, flp.PROOF_LEN, k),
                _chunk(query_rands, flp.QUERY_RAND_LEN, k),
                _chunk(joint_rands, flp.JOINT_RAND_LEN, k),
                self.SHARES,
            )
        verifiers = _rows(columns, n)
        out_shares = _rows(flp.truncate(meas_columns), n)
        return [
            (PrepState(out, seed), PrepShare(v, part))
            for out, seed, v, part in zip(out_shares, corrected, verifiers, parts, strict=True)
        ]

    def _joint_rand_seeds(
        self, agg_id: int, nonce: bytes, public_share: PublicShare, blind: bytes, encoded_meas_share: bytes
    ) -> tuple[bytes, bytes]:
        """This aggregator's joint randomness part and the joint randomness seed it implies."""
        if len(public_share.joint_rand_parts) != self.SHARES:
            raise DecodeError(
                f"the public share holds {len(public_share.joint_rand_parts)} joint randomness "
                f"parts, expected {self.SHARES}"
            )
        part = self._joint_rand_part(agg_id, blind, encoded_meas_share, nonce)
        parts = list(public_share.joint_rand_parts)
        parts[agg_id] = part
        return part, self._joint_rand_seed(parts)

    def _prep_inputs(
        self, verify_key: bytes, agg_id: int, nonce: bytes, public_share: PublicShare, input_share: InputShare
    ) -> tuple[list[int], list[int], list[int], list[int], PrepState, bytes]:
        """Everything prep_init derives before the FLP query: shares, randomness, state, part."""
        _check_len("verify key", verify_key, VERIFY_KEY_SIZE)
        _check_len("nonce", nonce, NONCE_SIZE)
        self._check_agg_id(agg_id)
        if agg_id == 0:
            if not isinstance(input_share, LeaderShare):
                raise DecodeError("aggregator 0 needs a leader input share")
            meas_share, proofs_share = input_share.meas_share, input_share.proofs_share
        else:
            if not isinstance(input_share, HelperShare):
                raise DecodeError(f"aggregator {agg_id} needs a helper input share")
            meas_share = self._helper_meas_share(agg_id, input_share.meas_seed)
            proofs_share = self._helper_proofs_share(agg_id, input_share.proofs_seed)
        joint_rands: list[int] = []
        part = corrected = b""
        if self.uses_joint_rand:
            part, corrected = self._joint_rand_seeds(
                agg_id, nonce, public_share, input_share.blind, self.field.encode_vec(meas_share)
            )
            joint_rands = self._joint_rands(corrected)
        state = PrepState(self.flp.truncate(meas_share), corrected)
        return meas_share, proofs_share, self._query_rands(verify_key, nonce), joint_rands, state, part

    def prep_shares_to_prep(self, agg_param: None, prep_shares: Sequence[PrepShare]) -> PrepMessage:
        """Combine all aggregators' prep shares; raises :class:`VerifyError` if the proof fails."""
        verifiers = self._sum_verifiers(prep_shares)
        flp = self.flp
        for k in range(self.PROOFS):
            if not flp.decide(_chunk(verifiers, flp.VERIFIER_LEN, k)):
                raise VerifyError(REJECTED)
        return self._prep_message(prep_shares)

    def prep_shares_to_prep_batch(
        self, agg_param: None, prep_shares: Sequence[Sequence[PrepShare]]
    ) -> list[PrepMessage | VerifyError]:
        """:meth:`prep_shares_to_prep` of many reports (one sequence of prep shares each) at once:
        per report, its prep message, or the :class:`VerifyError` that rejects it."""
        if not prep_shares:
            return []
        flp, length = self.flp, self.flp.VERIFIER_LEN * self.PROOFS
        for shares in prep_shares:
            if len(shares) != self.SHARES:
                raise DecodeError(f"expected {self.SHARES} prep shares, got {len(shares)}")
            for share in shares:
                if len(share.verifiers_share) != length:
                    raise DecodeError(f"a verifier share has {length} elements, got {len(share.verifiers_share)}")
        stacked = np.array([[share.verifiers_share for share in shares] for shares in prep_shares], dtype=object)
        columns = list((stacked.sum(axis=1) % self.field.modulus).T)
        ok = np.ones(len(prep_shares), dtype=bool)
        for k in range(self.PROOFS):
            ok &= np.asarray(flp.decide_columns(_chunk(columns, flp.VERIFIER_LEN, k)), dtype=bool)
        return [
            self._prep_message(shares) if good else VerifyError(REJECTED)
            for shares, good in zip(prep_shares, ok.tolist(), strict=True)
        ]

    def prep_shares_to_prep_encoded_batch(
        self, agg_param: None, prep_shares: Sequence[Sequence[bytes]]
    ) -> list[PrepMessage | VerifyError | DecodeError]:
        """:meth:`prep_shares_to_prep_batch` straight from the wire: ``prep_shares[r][j]`` is aggregator
        j's encoded prep share of report r. Every aggregator's verifier shares are decoded together
        (:meth:`Field.decode_matrix`, numpy), summed and decided column by column. Per report: its prep
        message, the :class:`VerifyError` that rejects it, or the :class:`DecodeError` of a malformed share.
        """
        field, flp = self.field, self.flp
        size = field.encoded_size * flp.VERIFIER_LEN * self.PROOFS
        part = SEED_SIZE if self.uses_joint_rand else 0
        out: list[PrepMessage | VerifyError | DecodeError] = [DecodeError("malformed")] * len(prep_shares)
        good = []
        for r, shares in enumerate(prep_shares):
            if len(shares) != self.SHARES:
                out[r] = DecodeError(f"expected {self.SHARES} prep shares, got {len(shares)}")
            elif any(len(share) != size + part for share in shares):
                out[r] = DecodeError(f"a prep share is {size + part} bytes")
            else:
                good.append(r)
        if not good:
            return out
        total: Any = 0
        in_range = np.ones(len(good), dtype=bool)
        for j in range(self.SHARES):
            matrix, bad = field.decode_matrix(b"".join(prep_shares[r][j][:size] for r in good), len(good))
            total = total + matrix
            in_range &= ~bad
        columns = list((total % field.modulus).T)
        ok = in_range.copy()
        for k in range(self.PROOFS):
            ok &= np.asarray(flp.decide_columns(_chunk(columns, flp.VERIFIER_LEN, k)), dtype=bool)
        for r, fine, decodable in zip(good, ok.tolist(), in_range.tolist(), strict=True):
            if not decodable:
                out[r] = DecodeError(f"verifier share: an element is not below the {field.name} modulus")
            elif not fine:
                out[r] = VerifyError(REJECTED)
            elif part:
                out[r] = PrepMessage(self._joint_rand_seed([share[size:] for share in prep_shares[r]]))
            else:
                out[r] = _EMPTY_PREP_MESSAGE
        return out

    def _sum_verifiers(self, prep_shares: Sequence[PrepShare]) -> list[int]:
        if len(prep_shares) != self.SHARES:
            raise DecodeError(f"expected {self.SHARES} prep shares, got {len(prep_shares)}")
        p = self.field.modulus
        length = self.flp.VERIFIER_LEN * self.PROOFS
        verifiers = [0] * length
        for share in prep_shares:
            if len(share.verifiers_share) != length:
                raise DecodeError(f"a verifier share has {length} elements, got {len(share.verifiers_share)}")
            verifiers = [x + y for x, y in zip(verifiers, share.verifiers_share, strict=True)]
        return [x % p for x in verifiers]

    def _prep_message(self, prep_shares: Sequence[PrepShare]) -> PrepMessage:
        if not self.uses_joint_rand:
            return _EMPTY_PREP_MESSAGE
        return PrepMessage(self._joint_rand_seed([share.joint_rand_part for share in prep_shares]))

    def prep_next(self, prep_state: PrepState, prep_msg: PrepMessage) -> list[int]:
        """Finish preparation: the output share, if the joint randomness agrees."""
        if prep_msg.joint_rand_seed != prep_state.corrected_joint_rand_seed:
            raise VerifyError("the report's joint randomness is inconsistent between aggregators")
        return prep_state.out_share

    # --- aggregation ----------------------------------------------------------------------------------
    def aggregate_init(self, agg_param: None = None) -> list[int]:
        return [0] * self.flp.OUTPUT_LEN

    def agg_update(self, agg_param: None, agg_share: list[int], out_share: list[int]) -> list[int]:
        return self.field.vec_add(agg_share, out_share)

    def merge(self, agg_param: None, agg_shares: Sequence[list[int]]) -> list[int]:
        total = self.aggregate_init(agg_param)
        for share in agg_shares:
            total = self.field.vec_add(total, share)
        return total

    def aggregate(self, agg_param: None, out_shares: Sequence[list[int]]) -> list[int]:
        """Sum of output shares (one aggregator's aggregate share)."""
        p = self.field.modulus
        total = [0] * self.flp.OUTPUT_LEN
        for share in out_shares:
            total = [x + y for x, y in zip(total, share, strict=True)]
        return [x % p for x in total]

    def unshard(self, agg_param: None, agg_shares: Sequence[list[int]], num_measurements: int) -> Any:
        """The aggregate result from all aggregators' aggregate shares."""
        if len(agg_shares) != self.SHARES:
            raise DecodeError(f"expected {self.SHARES} aggregate shares, got {len(agg_shares)}")
        return self.flp.decode(self.merge(agg_param, agg_shares), num_measurements)

    # --- encodings (draft 08, section 7.2.6) ----------------------------------------------------------
    def encode_public_share(self, public_share: PublicShare) -> bytes:
        return b"".join(public_share.joint_rand_parts)

    def decode_public_share(self, data: bytes) -> PublicShare:
        expected = SEED_SIZE * self.SHARES if self.uses_joint_rand else 0
        _check_len("public share", data, expected, DecodeError)
        if not expected:
            return _EMPTY_PUBLIC_SHARE
        return PublicShare(tuple(data[i : i + SEED_SIZE] for i in range(0, expected, SEED_SIZE)))

    def encode_input_share(self, share: InputShare) -> bytes:
        if isinstance(share, LeaderShare):
            return self.field.encode_vec(share.meas_share) + self.field.encode_vec(share.proofs_share) + share.blind
        return share.meas_seed + share.proofs_seed + share.blind

    def decode_input_share(self, agg_id: int, data: bytes) -> InputShare:
        self._check_agg_id(agg_id)
        blind_len = SEED_SIZE if self.uses_joint_rand else 0
        if agg_id == 0:
            size = self.field.encoded_size
            meas_len, proofs_len = size * self.flp.MEAS_LEN, size * self.flp.PROOF_LEN * self.PROOFS
            _check_len("leader input share", data, meas_len + proofs_len + blind_len, DecodeError)
            return LeaderShare(
                self.field.decode_vec(data[:meas_len], "measurement share"),
                self.field.decode_vec(data[meas_len : meas_len + proofs_len], "proof share"),
                data[meas_len + proofs_len :],
            )
        _check_len("helper input share", data, 2 * SEED_SIZE + blind_len, DecodeError)
        return HelperShare(data[:SEED_SIZE], data[SEED_SIZE : 2 * SEED_SIZE], data[2 * SEED_SIZE :])

    def encode_prep_share(self, share: PrepShare) -> bytes:
        return self.field.encode_vec(share.verifiers_share) + share.joint_rand_part

    def decode_prep_share(self, data: bytes) -> PrepShare:
        size = self.field.encoded_size * self.flp.VERIFIER_LEN * self.PROOFS
        _check_len("prep share", data, size + (SEED_SIZE if self.uses_joint_rand else 0), DecodeError)
        return PrepShare(self.field.decode_vec(data[:size], "verifier share"), data[size:])

    def encode_prep_msg(self, msg: PrepMessage) -> bytes:
        return msg.joint_rand_seed

    def decode_prep_msg(self, data: bytes) -> PrepMessage:
        _check_len("prep message", data, SEED_SIZE if self.uses_joint_rand else 0, DecodeError)
        return PrepMessage(data)

    def encode_agg_share(self, agg_share: list[int]) -> bytes:
        return self.field.encode_vec(agg_share)

    def decode_agg_share(self, data: bytes) -> list[int]:
        _check_len("aggregate share", data, self.field.encoded_size * self.flp.OUTPUT_LEN, DecodeError)
        return self.field.decode_vec(data, "aggregate share")

    encode_out_share = encode_agg_share
    decode_out_share = decode_agg_share

    def input_share_size(self, agg_id: int) -> int:
        """Bytes of aggregator ``agg_id``'s encoded input share."""
        blind = SEED_SIZE if self.uses_joint_rand else 0
        if agg_id:
            return 2 * SEED_SIZE + blind
        return self.field.encoded_size * (self.flp.MEAS_LEN + self.flp.PROOF_LEN * self.PROOFS) + blind

    def _check_agg_id(self, agg_id: int) -> None:
        if not isinstance(agg_id, int) or not 0 <= agg_id < self.SHARES:
            raise ValueError(f"aggregator id must be in [0, {self.SHARES}), got {agg_id!r}")


def _chunk(vec: list[Any], length: int, k: int) -> list[Any]:
    return vec[k * length : (k + 1) * length]


def _rows(columns: list[Any], n: int) -> list[list[int]]:
    """Per-position columns (object arrays, one element per report; scalars broadcast) as
    per-report lists."""
    stacked = np.empty((len(columns), n), dtype=object)
    for i, column in enumerate(columns):
        stacked[i, :] = column
    rows: list[list[int]] = stacked.T.tolist()
    return rows


def _check_len(what: str, data: bytes, length: int, error: type[Exception] = ValueError) -> None:
    if not isinstance(data, (bytes, bytearray)) or len(data) != length:
        got = f"{len(data)} bytes" if isinstance(data, (bytes, bytearray)) else type(data).__name__
        raise error(f"{what}: expected {length} bytes, got {got}")


# --- the draft's instantiations (section 7.4) ------------------------------------------------------------
def Prio3Count(shares: int) -> Prio3:  # noqa: N802 (the draft's names)
    return Prio3("Prio3Count", 0x00000000, Count(), shares)


def Prio3Sum(shares: int, bits: int) -> Prio3:  # noqa: N802 (the draft's names)
    return Prio3("Prio3Sum", 0x00000001, Sum(bits), shares)


def Prio3SumVec(shares: int, length: int, bits: int, chunk_length: int) -> Prio3:  # noqa: N802 (the draft's names)
    return Prio3("Prio3SumVec", 0x00000002, SumVec(length, bits, chunk_length), shares)


def Prio3Histogram(shares: int, length: int, chunk_length: int) -> Prio3:  # noqa: N802 (the draft's names)
    return Prio3("Prio3Histogram", 0x00000003, Histogram(length, chunk_length), shares)


def Prio3MultiHotHistogram(  # noqa: N802 (the draft's names)
    shares: int, length: int, max_count: int, chunk_length: int, algo_id: int = 0xFFFFFFFF
) -> Prio3:
    """Draft 08 assigns MultiHotHistogram no codepoint; its test vectors use 0xFFFFFFFF (the default)."""
    return Prio3("Prio3MultiHotHistogram", algo_id, MultiHotHistogram(length, max_count, chunk_length), shares)
