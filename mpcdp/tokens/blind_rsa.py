"""RSA blind signatures, RFC 9474 (RSABSSA), over ``cryptography``'s RSA keys.

A client prepares a message, **blinds** it with a uniformly random r (blinded = m * r^e mod n),
the signer signs the blinded value with RSASP1, and the client **finalizes** (unblinds with
r^-1) into an ordinary RSASSA-PSS signature (RFC 8017) that anyone verifies with the public key.

Guarantees (RFC 9474 section 7): *blindness* — the blinded message is uniform in Z_n^* whatever the
message, so the signer's view is independent of the message and of the final signature
(one-more-unforgeability needs the signer to sign only well-sized inputs, checked here);
*unforgeability* — RSA-PSS's, one signature per signing query. The four variants of section 5:
SHA-384, MGF1-SHA-384, salt length 48 (PSS) or 0 (PSSZERO), with a 32-byte random message prefix
(Randomized) or none (Deterministic: only for messages that are already unpredictable, such as
Privacy Pass token inputs, which carry a 32-byte nonce).

The private operation runs with GMP's constant-time ``powmod_sec`` under CRT and is checked with
the public exponent before release (RFC 9474 section 4.3 step 5: a faulty CRT result would leak a
factor of n). Randomness (salt, r, prefix) comes from an injected :class:`mpcdp.prg.RandomSource`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from math import gcd

import gmpy2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mpcdp.prg import RandomSource
from mpcdp.tokens.errors import BlindSignatureError

HASH_LEN = 48  # SHA-384
PREFIX_LEN = 32  # PrepareRandomize's message randomizer


@dataclass(frozen=True)
class Variant:
    """One of RFC 9474's RSABSSA variants (section 5)."""

    name: str
    salt_len: int
    randomized: bool


PSS_RANDOMIZED = Variant("RSABSSA-SHA384-PSS-Randomized", HASH_LEN, True)
PSSZERO_RANDOMIZED = Variant("RSABSSA-SHA384-PSSZERO-Randomized", 0, True)
PSS_DETERMINISTIC = Variant("RSABSSA-SHA384-PSS-Deterministic", HASH_LEN, False)
PSSZERO_DETERMINISTIC = Variant("RSABSSA-SHA384-PSSZERO-Deterministic", 0, False)
VARIANTS = {v.name: v for v in (PSS_RANDOMIZED, PSSZERO_RANDOMIZED, PSS_DETERMINISTIC, PSSZERO_DETERMINISTIC)}


def _i2osp(x: int, length: int) -> bytes:
    return int(x).to_bytes(length, "big")


def _os2ip(b: bytes) -> int:
    return int.from_bytes(b, "big")


def _mgf1_sha384(seed: bytes, length: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.sha384(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return bytes(out[:length])


def emsa_pss_encode(message: bytes, em_bits: int, salt: bytes) -> bytes:
    """EMSA-PSS-ENCODE (RFC 8017 section 9.1.1) with SHA-384 and MGF1-SHA-384."""
    em_len = (em_bits + 7) // 8
    if em_len < HASH_LEN + len(salt) + 2:
        raise BlindSignatureError("the RSA key is too small for this encoding")
    m_hash = hashlib.sha384(message).digest()
    h = hashlib.sha384(bytes(8) + m_hash + salt).digest()
    db = bytes(em_len - len(salt) - HASH_LEN - 2) + b"\x01" + salt
    masked = bytearray(a ^ b for a, b in zip(db, _mgf1_sha384(h, em_len - HASH_LEN - 1), strict=True))
    masked[0] &= 0xFF >> (8 * em_len - em_bits)
    return bytes(masked) + h + b"\xbc"


class PublicKey:
    """An RSA public key prepared for blinding, finalizing and verifying."""

    def __init__(self, key: rsa.RSAPublicKey):
        if not isinstance(key, rsa.RSAPublicKey):
            raise BlindSignatureError("a blind RSA public key must be an RSA key")
        numbers = key.public_numbers()
        self.key = key
        self.n = numbers.n
        self.e = numbers.e
        self.modulus_len = (self.n.bit_length() + 7) // 8
        self._n = gmpy2.mpz(self.n)

    def rsavp1(self, s: int) -> int:
        """RSAVP1: s^e mod n (RFC 8017 section 5.2.2)."""
        if not 0 <= s < self.n:
            raise BlindSignatureError("signature representative out of range")
        return int(gmpy2.powmod(s, self.e, self._n))

    @cached_property
    def _pss(self) -> dict[int, padding.PSS]:
        return {salt: padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=salt) for salt in (0, HASH_LEN)}

    def verify(self, prepared_msg: bytes, signature: bytes, variant: Variant) -> None:
        """RSASSA-PSS-VERIFY (RFC 8017 section 8.1.2) of a prepared message; raises if invalid."""
        if len(signature) != self.modulus_len:
            raise BlindSignatureError(f"a signature is {self.modulus_len} bytes, not {len(signature)}")
        try:
            self.key.verify(signature, prepared_msg, self._pss[variant.salt_len], hashes.SHA384())
        except InvalidSignature:
            raise BlindSignatureError("the signature does not verify under this public key") from None


class BlindSigner:
    """The signer's side: RSASP1 over CRT with constant-time exponentiation, fault-checked."""

    def __init__(self, key: rsa.RSAPrivateKey):
        if not isinstance(key, rsa.RSAPrivateKey):
            raise BlindSignatureError("a blind RSA signing key must be an RSA private key")
        numbers = key.private_numbers()
        self.key = key
        self.public = PublicKey(key.public_key())
        self._p, self._q = gmpy2.mpz(numbers.p), gmpy2.mpz(numbers.q)
        self._dp, self._dq = gmpy2.mpz(numbers.dmp1), gmpy2.mpz(numbers.dmq1)
        self._qinv = gmpy2.mpz(numbers.iqmp)

    def rsasp1(self, m: int) -> int:
        """RSASP1: m^d mod n (RFC 8017 section 5.2.1), by CRT, verified with RSAVP1 before release."""
        if not 0 <= m < self.public.n:
            raise BlindSignatureError("message representative out of range")
        m = gmpy2.mpz(m)
        s1 = gmpy2.powmod_sec(m % self._p, self._dp, self._p)
        s2 = gmpy2.powmod_sec(m % self._q, self._dq, self._q)
        s = int(s2 + (self._qinv * (s1 - s2) % self._p) * self._q)
        if self.public.rsavp1(s) != m:
            raise BlindSignatureError("signing failure (the signature did not verify)")
        return s

    def blind_sign(self, blinded_msg: bytes) -> bytes:
        """BlindSign (RFC 9474 section 4.3): the signature of a blinded message, as bytes."""
        k = self.public.modulus_len
        if len(blinded_msg) != k:
            raise BlindSignatureError(f"a blinded message is {k} bytes, not {len(blinded_msg)}")
        return _i2osp(self.rsasp1(_os2ip(blinded_msg)), k)


def prepare(message: bytes, variant: Variant, rng: RandomSource) -> bytes:
    """Prepare (RFC 9474 section 4.1): PrepareRandomize prefixes 32 random bytes,
    PrepareIdentity returns the message unchanged."""
    return rng.bytes(PREFIX_LEN) + message if variant.randomized else bytes(message)


def random_blind(n: int, rng: RandomSource) -> int:
    """A uniform r in [1, n) coprime to n, by rejection sampling (RFC 9474 random_integer_uniform)."""
    nbytes = (n.bit_length() + 7) // 8
    mask = (1 << n.bit_length()) - 1
    while True:
        r = _os2ip(rng.bytes(nbytes)) & mask
        if 1 <= r < n and gcd(r, n) == 1:
            return r


def blind_with(public: PublicKey, prepared_msg: bytes, variant: Variant, salt: bytes, r: int) -> tuple[bytes, bytes]:
    """Blind (RFC 9474 section 4.2) with a given PSS salt and blind r: (blinded_msg, inv)."""
    if len(salt) != variant.salt_len:
        raise BlindSignatureError(f"{variant.name} uses a {variant.salt_len}-byte salt")
    n = public.n
    encoded = emsa_pss_encode(prepared_msg, n.bit_length() - 1, salt)
    m = _os2ip(encoded)
    if gcd(m, n) != 1:
        raise BlindSignatureError("invalid input: the encoded message is not invertible mod n")
    if gcd(r, n) != 1:
        raise BlindSignatureError("invalid blind: not invertible mod n")
    inv = int(gmpy2.invert(r, n))
    z = m * public.rsavp1(r) % n
    return _i2osp(z, public.modulus_len), _i2osp(inv, public.modulus_len)


def blind(public: PublicKey, prepared_msg: bytes, variant: Variant, rng: RandomSource) -> tuple[bytes, bytes]:
    """Blind (RFC 9474 section 4.2): a fresh salt and a uniform blind from ``rng``."""
    salt = rng.bytes(variant.salt_len)
    return blind_with(public, prepared_msg, variant, salt, random_blind(public.n, rng))


def finalize(public: PublicKey, prepared_msg: bytes, blind_sig: bytes, inv: bytes, variant: Variant) -> bytes:
    """Finalize (RFC 9474 section 4.4): unblind and verify; the RSASSA-PSS signature."""
    k = public.modulus_len
    if len(blind_sig) != k or len(inv) != k:
        raise BlindSignatureError(f"a blind signature and its inverse are {k} bytes each")
    z, r_inv = _os2ip(blind_sig), _os2ip(inv)
    if not (z < public.n and r_inv < public.n):
        raise BlindSignatureError("blind signature or inverse out of range")
    sig = _i2osp(z * r_inv % public.n, k)
    public.verify(prepared_msg, sig, variant)
    return sig
