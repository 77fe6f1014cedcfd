"""Published test vectors: RFC 9474 appendix A (all four RSABSSA-SHA384 variants) and RFC 9578
appendix A.2 (Privacy Pass token type 2, five vectors), byte for byte at every step.

The vectors are published test data stored in tests/vectors/ with their source named in each file.
"""

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mpcdp.tokens import blind_rsa
from mpcdp.tokens import privacy_pass as pp

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
RFC9474 = json.loads((VECTORS / "rfc9474_blind_rsa.json").read_text())
RFC9578 = json.loads((VECTORS / "rfc9578_token_type2.json").read_text())
h = bytes.fromhex


class Replay:
    """A RandomSource that returns given byte strings in order (to replay a vector's randomness)."""

    def __init__(self, *chunks: bytes):
        self.chunks = list(chunks)

    def bytes(self, n):
        chunk = self.chunks.pop(0)
        assert len(chunk) == n
        return chunk


@pytest.fixture(scope="module")
def rfc9474_signer():
    k = {name: int(value, 16) for name, value in RFC9474["key"].items()}
    p, q, e = k["p"], k["q"], k["e"]
    assert p * q == k["n"]
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q), rsa.RSAPublicNumbers(e, k["n"])
    )
    return blind_rsa.BlindSigner(numbers.private_key())


@pytest.mark.parametrize("vector", RFC9474["vectors"], ids=[v["name"] for v in RFC9474["vectors"]])
def test_rfc9474_vector(vector, rfc9474_signer):
    variant = blind_rsa.VARIANTS[vector["name"]]
    public = rfc9474_signer.public
    prepared = blind_rsa.prepare(h(vector["msg"]), variant, Replay(h(vector["msg_prefix"])))
    assert prepared.hex() == vector["prepared_msg"]
    r = pow(int(vector["inv"], 16), -1, public.n)  # the RFC lists the blind's inverse
    blinded, inv = blind_rsa.blind_with(public, prepared, variant, h(vector["salt"]), r)
    assert blinded.hex() == vector["blinded_msg"]
    assert inv.hex() == vector["inv"]
    blind_sig = rfc9474_signer.blind_sign(blinded)
    assert blind_sig.hex() == vector["blind_sig"]
    sig = blind_rsa.finalize(public, prepared, blind_sig, inv, variant)
    assert sig.hex() == vector["sig"]
    public.verify(prepared, sig, variant)


def test_rfc9474_blind_draws_salt_then_blind(rfc9474_signer):
    """blind() with an injected RandomSource: the salt first, then the blind r (rejection-sampled)."""
    vector = RFC9474["vectors"][2]
    public = rfc9474_signer.public
    r = pow(int(vector["inv"], 16), -1, public.n)
    rng = Replay(h(vector["salt"]), r.to_bytes(public.modulus_len, "big"))
    blinded, _ = blind_rsa.blind(public, h(vector["prepared_msg"]), blind_rsa.PSS_DETERMINISTIC, rng)
    assert blinded.hex() == vector["blinded_msg"]


@pytest.fixture(scope="module")
def rfc9578_issuer():
    key = serialization.load_pem_private_key(RFC9578["skS_pem"].encode(), password=None)
    return pp.Issuer(key)


def test_rfc9578_issuer_key_encoding(rfc9578_issuer):
    assert rfc9578_issuer.public_key.spki.hex() == RFC9578["pkS"]
    decoded = pp.IssuerPublicKey.from_spki(h(RFC9578["pkS"]))
    assert decoded.token_key_id == rfc9578_issuer.public_key.token_key_id
    # every vector's token carries this key id, and its last byte is the request's truncated id
    for v in RFC9578["vectors"]:
        assert h(v["token"])[66:98] == decoded.token_key_id
        assert h(v["token_request"])[2] == decoded.truncated_key_id


@pytest.mark.parametrize("index", range(len(RFC9578["vectors"])))
def test_rfc9578_vector(index, rfc9578_issuer):
    v = RFC9578["vectors"][index]
    challenge = h(v["token_challenge"])
    assert pp.TokenChallenge.decode(challenge).encode() == challenge
    public = pp.IssuerPublicKey.from_spki(h(RFC9578["pkS"]))
    request, pending = pp.request_token_with(public, challenge, h(v["nonce"]), h(v["salt"]), int(v["blind"], 16))
    assert request.hex() == v["token_request"]
    response = rfc9578_issuer.issue(request)
    assert response.hex() == v["token_response"]
    token = pending.finalize(response)
    assert token.hex() == v["token"]
    decoded = pp.verify_token(public, token, challenge)
    assert decoded.nonce.hex() == v["nonce"]
    assert pp.Token.decode(token).encode() == token
