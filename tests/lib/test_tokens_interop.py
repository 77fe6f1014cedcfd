"""Interop with ``@cloudflare/blindrsa-ts`` 0.4.4 (RFC 9474 in JavaScript), in Node, both directions,
all four RSABSSA-SHA384 variants, on a 2048-bit key (RFC 9578's size) made by Python:

- JS -> Python -> JS: JS prepares and blinds, Python blind-signs, JS finalizes (JS's finalize
  verifies the signature), and Python verifies the finalized signature too;
- Python -> JS -> Python: Python prepares and blinds, JS blind-signs, Python finalizes and verifies,
  and JS verifies Python's signature;
- for token type 2: JS blinds a Privacy Pass token input built by Python, Python's Issuer signs it,
  JS finalizes, and the assembled token passes mpcdp's origin verification.

Two Node starts for the whole module. The package comes from interop/package-lock.json via
``make interop`` (``make test`` runs it); missing Node or package fails, it is not skipped.
"""

import hashlib
import struct

import pytest

from interop import blindrsa_node
from mpcdp.prg import Prg
from mpcdp.tokens import Issuer, TokenChallenge, blind_rsa, generate_issuer_key, verify_token

VARIANTS = list(blind_rsa.VARIANTS.values())
CHALLENGE = TokenChallenge(b"survey-interop", origin_info=b"agg-a").encode()


@pytest.fixture(scope="module")
def exchange():
    reason = blindrsa_node.missing()
    if reason:
        pytest.fail(reason)
    issuer = Issuer(generate_issuer_key())
    spki = blindrsa_node.spki_hex(issuer.signer.key.public_key())
    pkcs8 = blindrsa_node.pkcs8_hex(issuer.signer.key)
    rng = Prg.from_int(77)
    public = issuer.public_key.blind
    token_input = (
        struct.pack(">H", 2) + rng.bytes(32) + hashlib.sha256(CHALLENGE).digest() + issuer.public_key.token_key_id
    )

    # Python's side of direction 2: prepare and blind
    ours = {}
    for v in VARIANTS:
        prepared = blind_rsa.prepare(b"python message " + v.name.encode(), v, rng)
        blinded, inv = blind_rsa.blind(public, prepared, v, rng)
        ours[v.name] = (prepared, blinded, inv)

    first = blindrsa_node.run(
        [
            {"op": "blind", "variant": v.name, "spki": spki, "messages": [b"js message".hex(), token_input.hex()]}
            for v in VARIANTS
        ]
        + [{"op": "sign", "variant": v.name, "pkcs8": pkcs8, "blinded": [ours[v.name][1].hex()]} for v in VARIANTS]
    )
    js_blinded = dict(zip((v.name for v in VARIANTS), first[: len(VARIANTS)]))
    js_signed = dict(zip((v.name for v in VARIANTS), first[len(VARIANTS) :]))

    # Python signs what JS blinded; Python finalizes what JS signed
    py_sigs_of_js = {
        name: [issuer.signer.blind_sign(bytes.fromhex(item["blinded"])).hex() for item in items]
        for name, items in js_blinded.items()
    }
    py_final = {
        v.name: blind_rsa.finalize(public, ours[v.name][0], bytes.fromhex(js_signed[v.name][0]), ours[v.name][2], v)
        for v in VARIANTS
    }

    second = blindrsa_node.run(
        [
            {
                "op": "finalize",
                "variant": v.name,
                "spki": spki,
                "items": [
                    {"prepared": it["prepared"], "blind_sig": sig, "inv": it["inv"]}
                    for it, sig in zip(js_blinded[v.name], py_sigs_of_js[v.name])
                ],
            }
            for v in VARIANTS
        ]
        + [
            {
                "op": "verify",
                "variant": v.name,
                "spki": spki,
                "items": [
                    {"prepared": ours[v.name][0].hex(), "sig": py_final[v.name].hex()},
                    {"prepared": ours[v.name][0].hex(), "sig": py_final[v.name][:-1].hex() + "00"},
                ],
            }
            for v in VARIANTS
        ]
    )
    return dict(
        issuer=issuer,
        token_input=token_input,
        ours=ours,
        js_blinded=js_blinded,
        js_signed=js_signed,
        py_sigs_of_js=py_sigs_of_js,
        py_final=py_final,
        js_final=dict(zip((v.name for v in VARIANTS), second[: len(VARIANTS)])),
        js_verify=dict(zip((v.name for v in VARIANTS), second[len(VARIANTS) :])),
    )


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_js_blinds_python_signs_js_finalizes(exchange, variant):
    public = exchange["issuer"].public_key.blind
    messages = [b"js message", exchange["token_input"]]
    for message, item, final in zip(messages, exchange["js_blinded"][variant.name], exchange["js_final"][variant.name]):
        assert final["ok"], final.get("error")
        prepared = bytes.fromhex(item["prepared"])
        # JS prepares as RFC 9474 says: a 32-byte random prefix for Randomized, the message itself otherwise
        assert prepared.endswith(message) and len(prepared) == len(message) + (32 if variant.randomized else 0)
        public.verify(prepared, bytes.fromhex(final["sig"]), variant)


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_python_blinds_js_signs_python_finalizes(exchange, variant):
    prepared, blinded, _ = exchange["ours"][variant.name]
    # RSA blind signing is deterministic: JS and Python sign the same blinded message identically
    assert exchange["js_signed"][variant.name][0] == exchange["issuer"].signer.blind_sign(blinded).hex()
    exchange["issuer"].public_key.blind.verify(prepared, exchange["py_final"][variant.name], variant)
    assert exchange["js_verify"][variant.name] == [True, False]


def test_token_type2_with_a_js_client(exchange):
    """JS as the Privacy Pass client (PSS-Deterministic over the token input), mpcdp as issuer and origin."""
    name = blind_rsa.PSS_DETERMINISTIC.name
    item, final = exchange["js_blinded"][name][1], exchange["js_final"][name][1]
    assert bytes.fromhex(item["prepared"]) == exchange["token_input"]
    assert final["ok"], final.get("error")
    token = exchange["token_input"] + bytes.fromhex(final["sig"])
    decoded = verify_token(exchange["issuer"].public_key, token, CHALLENGE)
    assert decoded.token_input == exchange["token_input"]
