"""Prio3 (VDAF draft-irtf-cfrg-vdaf-08): secret-shared measurements that carry a proof of validity.

    vdaf = Prio3Histogram(shares=2, length=10, chunk_length=3)
    nonce, public_share, input_shares = vdaf.shard_random(4, system_random())
    states, shares = zip(*(vdaf.prep_init(verify_key, j, None, nonce, public_share, s)
                           for j, s in enumerate(input_shares)))
    msg = vdaf.prep_shares_to_prep(None, shares)        # VerifyError if the proof fails
    out_shares = [vdaf.prep_next(st, msg) for st in states]

Aggregators preparing many reports use ``prep_init_encoded_batch`` (straight from the
wire; malformed reports come back as their DecodeError) and ``prep_shares_to_prep_batch``
(rejected reports come back as their VerifyError): same results, checked together.

Modules: ``field`` (Field64, Field128, NTT), ``xof`` (XofTurboShake128), ``flp``
(gadgets and the generic FLP), ``circuits`` (Count, Sum, SumVec, Histogram,
MultiHotHistogram), ``prio3`` (the VDAF, its messages and their encodings).
Byte-compatible with draft 08's test vectors and with ``@divviup/prio3`` 0.8.0.
"""

from .errors import DecodeError, VdafError, VerifyError
from .field import Field, Field64, Field128
from .prio3 import (
    NONCE_SIZE,
    VERIFY_KEY_SIZE,
    HelperShare,
    InputShare,
    LeaderShare,
    PrepMessage,
    PrepShare,
    PrepState,
    Prio3,
    Prio3Count,
    Prio3Histogram,
    Prio3MultiHotHistogram,
    Prio3Sum,
    Prio3SumVec,
    PublicShare,
)
from .xof import XofTurboShake128

__all__ = [
    "NONCE_SIZE",
    "VERIFY_KEY_SIZE",
    "DecodeError",
    "Field",
    "Field64",
    "Field128",
    "HelperShare",
    "InputShare",
    "LeaderShare",
    "PrepMessage",
    "PrepShare",
    "PrepState",
    "Prio3",
    "Prio3Count",
    "Prio3Histogram",
    "Prio3MultiHotHistogram",
    "Prio3Sum",
    "Prio3SumVec",
    "PublicShare",
    "VdafError",
    "VerifyError",
    "XofTurboShake128",
]
