"""Privacy Pass publicly verifiable tokens: RFC 9578 token type 2 (Blind RSA, 2048-bit).

Flow (RFC 9578 section 6): the client picks a 32-byte nonce and builds
``token_input = 0x0002 || nonce || SHA-256(TokenChallenge) || token_key_id``; it blinds
``token_input`` (RSABSSA-SHA384-PSS-Deterministic: PrepareIdentity, 48-byte salt) and sends a
TokenRequest; the issuer blind-signs it into a TokenResponse; the client finalizes the signature into
a Token, which any origin holding the issuer public key verifies with RSASSA-PSS (SHA-384, MGF1,
48-byte salt). The issuer never sees the nonce or the challenge, so a token is unlinkable to its
issuance (RFC 9474 blindness); only the issuer key can mint one (RSA-PSS unforgeability).

The issuer public key is a DER SubjectPublicKeyInfo with the RSASSA-PSS OID (RFC 5756) carrying
SHA-384, MGF1-SHA-384 and salt length 48; ``token_key_id`` is its SHA-256.
Messages are the TLS-presentation structs of RFC 9577 section 2.1-2.2 and RFC 9578 section 6.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mpcdp.prg import RandomSource
from mpcdp.tokens import blind_rsa
from mpcdp.tokens.errors import BlindSignatureError, InvalidToken, TokenError

TOKEN_TYPE = 0x0002
NK = 256  # authenticator / blinded message size for 2048-bit keys
NONCE_LEN = 32
KEY_BITS = 2048
VARIANT = blind_rsa.PSS_DETERMINISTIC
TOKEN_LEN = 2 + NONCE_LEN + 32 + 32 + NK
REQUEST_LEN = 2 + 1 + NK

# AlgorithmIdentifier { id-RSASSA-PSS, RSASSA-PSS-params { sha384, mgf1(sha384), saltLength 48 } }
_PSS_ALGORITHM = bytes.fromhex(
    "303d06092a864886f70d01010a3030a00d300b0609608648016503040202a11a301806092a864886f70d010108"
    "300b0609608648016503040202a2030201"
    "30"
)
_RSA_ENCRYPTION = bytes.fromhex("300d06092a864886f70d0101010500")


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der_read(data: bytes, at: int, tag: int) -> tuple[bytes, int]:
    """The contents of the DER element with ``tag`` at ``at``, and the offset after it."""
    if at + 2 > len(data) or data[at] != tag:
        raise InvalidToken("the issuer public key is not DER of the expected form")
    length, at = data[at + 1], at + 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[at : at + count], "big")
        at += count
    if at + length > len(data):
        raise InvalidToken("the issuer public key is truncated")
    return data[at : at + length], at + length


class IssuerPublicKey:
    """The issuer public key as RFC 9578 encodes it, with its token_key_id."""

    def __init__(self, key: rsa.RSAPublicKey):
        if not isinstance(key, rsa.RSAPublicKey) or key.key_size != KEY_BITS:
            raise InvalidToken(f"a token type 2 issuer key is a {KEY_BITS}-bit RSA key")
        self.blind = blind_rsa.PublicKey(key)
        pkcs1 = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
        bit_string = b"\x03" + _der_length(len(pkcs1) + 1) + b"\x00" + pkcs1
        body = _PSS_ALGORITHM + bit_string
        self.spki = b"\x30" + _der_length(len(body)) + body
        self.token_key_id = hashlib.sha256(self.spki).digest()
        self.truncated_key_id = self.token_key_id[-1]

    @classmethod
    def from_spki(cls, spki: bytes) -> IssuerPublicKey:
        """Decode the RSASSA-PSS SubjectPublicKeyInfo (exactly SHA-384 / MGF1-SHA-384 / salt 48)."""
        body, end = _der_read(bytes(spki), 0, 0x30)
        if end != len(spki) or not body.startswith(_PSS_ALGORITHM):
            raise InvalidToken("the issuer public key is not an RSASSA-PSS (SHA-384, salt 48) SPKI")
        bits, end = _der_read(body, len(_PSS_ALGORITHM), 0x03)
        if end != len(body) or not bits.startswith(b"\x00"):
            raise InvalidToken("the issuer public key is not an RSASSA-PSS (SHA-384, salt 48) SPKI")
        plain = _RSA_ENCRYPTION + b"\x03" + _der_length(len(bits)) + bits
        try:
            key = serialization.load_der_public_key(b"\x30" + _der_length(len(plain)) + plain)
        except ValueError:
            raise InvalidToken("the issuer public key does not hold a valid RSA key") from None
        if not isinstance(key, rsa.RSAPublicKey):
            raise InvalidToken("the issuer public key is not an RSA key")
        decoded = cls(key)
        if decoded.spki != bytes(spki):
            raise InvalidToken("the issuer public key is not in canonical DER")
        return decoded


def generate_issuer_key() -> rsa.RSAPrivateKey:
    """A fresh 2048-bit RSA issuer key (e = 65537), from the OS CSPRNG via OpenSSL."""
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


@dataclass(frozen=True)
class TokenChallenge:
    """RFC 9577 section 2.1: what a token is bound to (issuer, redemption context, origins)."""

    issuer_name: bytes
    redemption_context: bytes = b""
    origin_info: bytes = b""
    token_type: int = TOKEN_TYPE

    def __post_init__(self) -> None:
        if not 1 <= len(self.issuer_name) < 1 << 16:
            raise TokenError("a token challenge needs an issuer name of 1 to 65535 bytes")
        if len(self.redemption_context) not in (0, 32):
            raise TokenError("a redemption context is empty or exactly 32 bytes")
        if len(self.origin_info) >= 1 << 16:
            raise TokenError("origin info is at most 65535 bytes")

    @classmethod
    def bound(cls, issuer_name: bytes, origin_info: bytes, binding: bytes) -> TokenChallenge:
        """A challenge whose redemption context is SHA-256(binding): a token issued for it is
        spendable only with that binding (for example one report id)."""
        return cls(issuer_name, hashlib.sha256(binding).digest(), origin_info)

    def encode(self) -> bytes:
        return (
            struct.pack(">HH", self.token_type, len(self.issuer_name))
            + self.issuer_name
            + bytes([len(self.redemption_context)])
            + self.redemption_context
            + struct.pack(">H", len(self.origin_info))
            + self.origin_info
        )

    @classmethod
    def decode(cls, data: bytes) -> TokenChallenge:
        try:
            token_type, n = struct.unpack_from(">HH", data, 0)
            at = 4 + n
            issuer = data[4:at]
            ctx_len = data[at]
            ctx = data[at + 1 : at + 1 + ctx_len]
            at += 1 + ctx_len
            (o_len,) = struct.unpack_from(">H", data, at)
            origin = data[at + 2 : at + 2 + o_len]
            end = at + 2 + o_len
        except (struct.error, IndexError):
            raise TokenError("the token challenge is truncated") from None
        if end != len(data) or len(issuer) != n or len(ctx) != ctx_len or len(origin) != o_len:
            raise TokenError("the token challenge is truncated or has trailing bytes")
        return cls(bytes(issuer), bytes(ctx), bytes(origin), token_type)


@dataclass(frozen=True)
class Token:
    """RFC 9577 section 2.2 for token type 2."""

    nonce: bytes
    challenge_digest: bytes
    token_key_id: bytes
    authenticator: bytes
    token_type: int = TOKEN_TYPE

    @property
    def token_input(self) -> bytes:
        """What the authenticator signs: token_type || nonce || challenge_digest || token_key_id."""
        return struct.pack(">H", self.token_type) + self.nonce + self.challenge_digest + self.token_key_id

    def encode(self) -> bytes:
        return self.token_input + self.authenticator

    @classmethod
    def decode(cls, data: bytes) -> Token:
        data = bytes(data)
        if len(data) < 2:
            raise InvalidToken("the token is empty or truncated")
        (token_type,) = struct.unpack_from(">H", data, 0)
        if token_type != TOKEN_TYPE:
            raise InvalidToken(f"token type {token_type:#06x} is not supported (expected 0x0002)")
        if len(data) != TOKEN_LEN:
            raise InvalidToken(f"a type 2 token is {TOKEN_LEN} bytes, this one is {len(data)}")
        return cls(data[2:34], data[34:66], data[66:98], data[98:])


@dataclass(frozen=True)
class PendingToken:
    """What the client keeps between its TokenRequest and the issuer's TokenResponse (secret:
    the issuer seeing ``inv`` or ``token_input`` could link the token to the request; hidden from repr)."""

    issuer: IssuerPublicKey = field(repr=False)
    token_input: bytes = field(repr=False)
    inv: bytes = field(repr=False)

    def finalize(self, response: bytes) -> bytes:
        """Unblind the TokenResponse into an encoded Token (raises if the issuer's answer is bad)."""
        if len(response) != NK:
            raise InvalidToken(f"a token response is {NK} bytes, this one is {len(response)}")
        try:
            sig = blind_rsa.finalize(self.issuer.blind, self.token_input, bytes(response), self.inv, VARIANT)
        except BlindSignatureError:
            raise InvalidToken("the issuer's response does not finalize into a valid token") from None
        return self.token_input + sig


def request_token_with(
    issuer: IssuerPublicKey, challenge: bytes, nonce: bytes, salt: bytes, r: int
) -> tuple[bytes, PendingToken]:
    """The client's TokenRequest with a given nonce, PSS salt and blind (test vectors)."""
    if len(nonce) != NONCE_LEN:
        raise TokenError("a token nonce is 32 bytes")
    token_input = struct.pack(">H", TOKEN_TYPE) + nonce + hashlib.sha256(challenge).digest() + issuer.token_key_id
    blinded, inv = blind_rsa.blind_with(issuer.blind, token_input, VARIANT, salt, r)
    request = struct.pack(">HB", TOKEN_TYPE, issuer.truncated_key_id) + blinded
    return request, PendingToken(issuer, token_input, inv)


def request_token(issuer: IssuerPublicKey, challenge: bytes, rng: RandomSource) -> tuple[bytes, PendingToken]:
    """The client's TokenRequest for an encoded TokenChallenge, with fresh nonce, salt and blind."""
    nonce = rng.bytes(NONCE_LEN)
    salt = rng.bytes(VARIANT.salt_len)
    return request_token_with(issuer, challenge, nonce, salt, blind_rsa.random_blind(issuer.blind.n, rng))


class Issuer:
    """The issuer's side: validates a TokenRequest (RFC 9578 section 6.2) and blind-signs it."""

    def __init__(self, private_key: rsa.RSAPrivateKey):
        self.signer = blind_rsa.BlindSigner(private_key)
        self.public_key = IssuerPublicKey(private_key.public_key())

    def check_request(self, request: bytes) -> bytes:
        """The blinded message of a well-formed request for this key, or raise."""
        request = bytes(request)
        if len(request) < 3:
            raise InvalidToken("the token request is truncated")
        token_type, truncated = struct.unpack_from(">HB", request, 0)
        if token_type != TOKEN_TYPE:
            raise InvalidToken(f"token type {token_type:#06x} is not supported (expected 0x0002)")
        if truncated != self.public_key.truncated_key_id:
            raise InvalidToken("the token request names another issuer key")
        if len(request) != REQUEST_LEN:
            raise InvalidToken(f"a type 2 token request is {REQUEST_LEN} bytes, this one is {len(request)}")
        blinded = request[3:]
        if int.from_bytes(blinded, "big") >= self.public_key.blind.n:
            raise InvalidToken("the blinded message is out of range for this key")
        return blinded

    def issue(self, request: bytes) -> bytes:
        """The TokenResponse (the blind signature) for a TokenRequest."""
        return self.signer.blind_sign(self.check_request(request))


def verify_token(issuer: IssuerPublicKey, token: bytes, challenge: bytes | None = None) -> Token:
    """Origin-side verification (RFC 9578 section 6.4): type, key id, the expected challenge
    (if given) and the RSASSA-PSS signature. Returns the decoded token or raises InvalidToken."""
    decoded = Token.decode(token)
    if decoded.token_key_id != issuer.token_key_id:
        raise InvalidToken("the token was issued under another issuer key")
    if challenge is not None and decoded.challenge_digest != hashlib.sha256(challenge).digest():
        raise InvalidToken("the token was issued for another challenge")
    try:
        issuer.blind.verify(decoded.token_input, decoded.authenticator, VARIANT)
    except BlindSignatureError:
        raise InvalidToken("the token's signature does not verify (forged or corrupted)") from None
    return decoded
