"""Anonymous single-use tokens: every refusal is tested with the attack, plus blindness.

Attacks: a token from another issuer key, forged / truncated / retyped tokens, a token for another
challenge (another report), a reused token (also concurrently), an invitation used twice (also by
racing threads on one SQLite file), malformed requests. Blindness: the signer's view (the blinded
message) has the same distribution whatever the message (chi-square at fixed seeds), and one message
blinds differently every time.
"""

import os
import stat
import threading

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from scipy import stats

from mpcdp.prg import Prg
from mpcdp.sqlite_files import open_private
from mpcdp.tokens import (
    BlindSignatureError,
    InvalidToken,
    InvitationRefused,
    Issuer,
    IssuerPublicKey,
    MemoryInvitations,
    SQLiteInvitations,
    TokenChallenge,
    TokenError,
    TokenReused,
    blind_rsa,
    generate_issuer_key,
    request_token,
    verify_token,
)
from mpcdp.tokens.invitations import normalize_code
from mpcdp.tokens.spent import create_table, record_in, spent_among, token_hash
from tests.support.tokens import SpentTokens

CHALLENGE = TokenChallenge(b"survey-1", origin_info=b"agg-a,agg-b").encode()


@pytest.fixture(scope="module")
def issuer():
    return Issuer(generate_issuer_key())


@pytest.fixture(scope="module")
def other_issuer():
    return Issuer(generate_issuer_key())


def make_token(issuer, rng, challenge=CHALLENGE):
    request, pending = request_token(issuer.public_key, challenge, rng)
    return pending.finalize(issuer.issue(request))


def test_issue_verify_and_spend_once(issuer, tmp_path):
    rng = Prg.from_int(1)
    token = make_token(issuer, rng)
    spent = SpentTokens(tmp_path / "spent.sqlite", issuer.public_key)
    spent.spend(token, CHALLENGE, b"report-1")
    with pytest.raises(TokenReused, match="already used"):
        spent.spend(token, CHALLENGE, b"report-2")
    assert len(spent) == 1


def test_token_from_another_issuer_is_refused(issuer, other_issuer):
    foreign = make_token(other_issuer, Prg.from_int(2))
    with pytest.raises(InvalidToken, match="another issuer key"):
        verify_token(issuer.public_key, foreign, CHALLENGE)
    # relabelled with our key id, its signature still betrays it
    relabelled = foreign[:66] + issuer.public_key.token_key_id + foreign[98:]
    with pytest.raises(InvalidToken, match="does not verify"):
        verify_token(issuer.public_key, relabelled, CHALLENGE)
    # and the issuer refuses to sign a request addressed to another key
    request, _ = request_token(other_issuer.public_key, CHALLENGE, Prg.from_int(3))
    if request[2] != issuer.public_key.truncated_key_id:
        with pytest.raises(InvalidToken, match="another issuer key"):
            issuer.issue(request)


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda t: t[:-1] + bytes([t[-1] ^ 1]), "does not verify"),  # forged authenticator
        (lambda t: t[:5] + bytes([t[5] ^ 1]) + t[6:], "does not verify"),  # altered nonce
        (lambda t: t[:200], "354 bytes"),  # truncated
        (lambda t: t + b"\x00", "354 bytes"),  # padded
        (lambda t: b"\x00\x01" + t[2:], "not supported"),  # another token type
        (lambda t: b"", "empty or truncated"),
        (lambda t: t[:34] + bytes(32) + t[66:], "another challenge"),  # swapped challenge digest
    ],
)
def test_forged_and_truncated_tokens_are_refused(issuer, tamper, message):
    token = make_token(issuer, Prg.from_int(4))
    with pytest.raises(InvalidToken, match=message):
        verify_token(issuer.public_key, tamper(token), CHALLENGE)


def test_token_bound_to_one_report(issuer, tmp_path):
    """A token issued for report A's challenge cannot be attached to report B."""
    challenge_a = TokenChallenge.bound(b"survey-1", b"agg-a,agg-b", b"report-A").encode()
    challenge_b = TokenChallenge.bound(b"survey-1", b"agg-a,agg-b", b"report-B").encode()
    token = make_token(issuer, Prg.from_int(5), challenge_a)
    spent = SpentTokens(tmp_path / "spent.sqlite", issuer.public_key)
    with pytest.raises(InvalidToken, match="another challenge"):
        spent.spend(token, challenge_b, b"report-B")
    spent.spend(token, challenge_a, b"report-A")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r[:100], "truncated|259 bytes"),
        (lambda r: r + b"\x00", "259 bytes"),
        (lambda r: b"\x00\x01" + r[2:], "not supported"),
        (lambda r: r[:2] + bytes([r[2] ^ 0xFF]) + r[3:], "another issuer key"),
        (lambda r: r[:3] + b"\xff" * 256, "out of range"),
    ],
)
def test_issuer_refuses_malformed_requests(issuer, mutate, message):
    request, _ = request_token(issuer.public_key, CHALLENGE, Prg.from_int(6))
    with pytest.raises(InvalidToken, match=message):
        issuer.issue(mutate(request))


def test_client_refuses_a_bad_response(issuer):
    request, pending = request_token(issuer.public_key, CHALLENGE, Prg.from_int(7))
    response = bytearray(issuer.issue(request))
    response[10] ^= 1
    with pytest.raises(InvalidToken, match="does not finalize"):
        pending.finalize(bytes(response))
    with pytest.raises(InvalidToken, match="256 bytes"):
        pending.finalize(bytes(response[:-1]))


def test_signing_fault_is_caught_before_release():
    """A CRT fault (wrong half-exponent) must not release a signature (it would factor n)."""
    signer = blind_rsa.BlindSigner(generate_issuer_key())
    signer._dp += 1
    with pytest.raises(BlindSignatureError, match="signing failure"):
        signer.blind_sign(bytes(255) + b"\x07")


def test_blind_rsa_refuses_bad_sizes(issuer):
    public = issuer.public_key.blind
    with pytest.raises(BlindSignatureError, match="256 bytes"):
        issuer.signer.blind_sign(b"\x01" * 255)
    with pytest.raises(BlindSignatureError, match="out of range"):
        issuer.signer.blind_sign(b"\xff" * 256)
    with pytest.raises(BlindSignatureError, match="48-byte salt"):
        blind_rsa.blind_with(public, b"m", blind_rsa.PSS_DETERMINISTIC, b"", 3)
    with pytest.raises(BlindSignatureError, match="does not verify"):
        public.verify(b"m", bytes(256), blind_rsa.PSS_DETERMINISTIC)


def test_randomized_variants_round_trip(issuer):
    rng = Prg.from_int(8)
    for variant in blind_rsa.VARIANTS.values():
        prepared = blind_rsa.prepare(b"a vote", variant, rng)
        assert len(prepared) == len(b"a vote") + (32 if variant.randomized else 0)
        blinded, inv = blind_rsa.blind(issuer.public_key.blind, prepared, variant, rng)
        sig = blind_rsa.finalize(issuer.public_key.blind, prepared, issuer.signer.blind_sign(blinded), inv, variant)
        issuer.public_key.blind.verify(prepared, sig, variant)


def test_issuer_key_spki_round_trip_and_refusals(issuer):
    spki = issuer.public_key.spki
    assert IssuerPublicKey.from_spki(spki).token_key_id == issuer.public_key.token_key_id
    plain = issuer.signer.key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(InvalidToken, match="RSASSA-PSS"):
        IssuerPublicKey.from_spki(plain)  # rsaEncryption OID: not RFC 9578's encoding
    with pytest.raises(InvalidToken):
        IssuerPublicKey.from_spki(spki + b"\x00")
    with pytest.raises(InvalidToken):
        IssuerPublicKey.from_spki(spki[:-5])


def test_token_challenge_encoding():
    c = TokenChallenge(b"issuer", bytes(32), b"origin")
    assert TokenChallenge.decode(c.encode()) == c
    with pytest.raises(TokenError, match="32 bytes"):
        TokenChallenge(b"issuer", b"short")
    with pytest.raises(TokenError, match="issuer name"):
        TokenChallenge(b"")
    with pytest.raises(TokenError, match="truncated"):
        TokenChallenge.decode(c.encode()[:-1])


# --- blindness --------------------------------------------------------------------------------


def test_same_message_blinds_differently(issuer):
    rng = Prg.from_int(9)
    token_input = b"\x00\x02" + bytes(96)
    blinded = {
        blind_rsa.blind(issuer.public_key.blind, token_input, blind_rsa.PSS_DETERMINISTIC, rng)[0] for _ in range(20)
    }
    assert len(blinded) == 20


def test_signer_view_is_independent_of_the_message(issuer):
    """z = m * r^e mod n with r uniform in Z_n^*: since x -> x^e permutes Z_n^*, z is uniform and
    independent of m. Checked statistically: the low 4 bits and the top 4 bits of the blinded
    message for two very different messages have the same distribution, and it is uniform."""
    public = issuer.public_key.blind
    samples = {}
    for label, message, seed in (("zeros", bytes(98), 10), ("ones", b"\xff" * 98, 11)):
        rng = Prg.from_int(seed)
        values = [
            int.from_bytes(blind_rsa.blind(public, message, blind_rsa.PSS_DETERMINISTIC, rng)[0], "big")
            for _ in range(400)
        ]
        samples[label] = values
    for extract in (lambda z: z & 0xF, lambda z: z >> (public.n.bit_length() - 4)):
        counts = [np.bincount([extract(z) for z in samples[k]], minlength=16) for k in ("zeros", "ones")]
        table = np.array(counts)
        table = table[:, table.sum(axis=0) > 0]
        assert stats.chi2_contingency(table).pvalue > 1e-3
    low = np.bincount([z & 0xF for z in samples["zeros"] + samples["ones"]], minlength=16)
    assert stats.chisquare(low).pvalue > 1e-3


# --- invitations ------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def invitations(request, tmp_path):
    return MemoryInvitations() if request.param == "memory" else SQLiteInvitations(tmp_path / "inv.sqlite")


def test_invitation_redeems_once_for_one_token(invitations, issuer):
    rng = Prg.from_int(12)
    codes = invitations.create(3, rng)
    assert len(set(codes)) == 3 and invitations.unused() == 3
    request, pending = request_token(issuer.public_key, CHALLENGE, rng)
    response = invitations.redeem(codes[0], request, issuer)
    verify_token(issuer.public_key, pending.finalize(response), CHALLENGE)
    # a retry of the very same request gets the very same response (one token, not two)
    assert invitations.redeem(codes[0].upper().replace("-", " "), request, issuer) == response
    other_request, _ = request_token(issuer.public_key, CHALLENGE, rng)
    with pytest.raises(InvitationRefused, match="already used"):
        invitations.redeem(codes[0], other_request, issuer)
    assert invitations.unused() == 2


def test_invitation_refusals(invitations, issuer):
    rng = Prg.from_int(13)
    (code,) = invitations.create(1, rng)
    request, _ = request_token(issuer.public_key, CHALLENGE, rng)
    with pytest.raises(InvitationRefused, match="unknown"):
        invitations.redeem("aaaaa-aaaaa-aaaaa-aaaaa-aaaaa-a", request, issuer)
    with pytest.raises(InvitationRefused, match="not an invitation code"):
        invitations.redeem("hello!", request, issuer)
    # a malformed request is refused before the code is spent
    with pytest.raises(InvalidToken):
        invitations.redeem(code, request[:-1], issuer)
    assert invitations.unused() == 1
    invitations.redeem(code, request, issuer)
    assert invitations.unused() == 0
    with pytest.raises(TokenError, match="between 1 and"):
        invitations.create(0, rng)


def test_invitation_raced_by_threads_yields_one_token(tmp_path, issuer):
    store = SQLiteInvitations(tmp_path / "race.sqlite")
    rng = Prg.from_int(14)
    (code,) = store.create(1, rng)
    requests = [request_token(issuer.public_key, CHALLENGE, rng)[0] for _ in range(8)]
    outcomes = []
    barrier = threading.Barrier(len(requests))

    def attempt(req):
        barrier.wait()
        try:
            store.redeem(code, req, issuer)
            outcomes.append("ok")
        except InvitationRefused:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt, args=(r,)) for r in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok"] + ["refused"] * 7


def test_sqlite_stores_are_private_and_hold_no_codes(tmp_path, issuer):
    path = tmp_path / "inv.sqlite"
    store = SQLiteInvitations(path)
    codes = store.create(5, Prg.from_int(15))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    spent_path = tmp_path / "spent.sqlite"
    SpentTokens(spent_path, issuer.public_key)
    assert stat.S_IMODE(os.stat(spent_path).st_mode) == 0o600
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("inv.sqlite"))
    for code in codes:
        assert normalize_code(code) not in blob and code.encode() not in blob


# --- spent-token set --------------------------------------------------------------------------


def test_sqlite_spent_set_refuses_reuse_even_concurrently(tmp_path, issuer):
    spent = SpentTokens(tmp_path / "spent.sqlite", issuer.public_key)
    token = make_token(issuer, Prg.from_int(16))
    outcomes = []
    barrier = threading.Barrier(6)

    def attempt(i):
        barrier.wait()
        try:
            spent.spend(token, CHALLENGE, f"report-{i}".encode())
            outcomes.append("ok")
        except TokenReused:
            outcomes.append("reused")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok"] + ["reused"] * 5
    assert len(spent) == 1
    with pytest.raises(InvalidToken):
        spent.spend(make_token(issuer, Prg.from_int(17))[:-3], CHALLENGE, b"r")
    assert len(spent) == 1


def test_spend_shares_the_callers_transaction(tmp_path, issuer):
    """The aggregator's use: store the report and spend its token in one transaction."""
    conn = open_private(tmp_path / "agg.sqlite")
    conn.execute("CREATE TABLE reports (id BLOB PRIMARY KEY)")
    create_table(conn)
    token = make_token(issuer, Prg.from_int(18))

    def store(report_id, commit):
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("INSERT INTO reports VALUES (?)", (report_id,))
            record_in(conn, [(token_hash(verify_token(issuer.public_key, token, CHALLENGE)), report_id)])
        except TokenError:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT" if commit else "ROLLBACK")  # ROLLBACK stands for a crash before commit

    key = token_hash(verify_token(issuer.public_key, token, CHALLENGE))
    store(b"r1", commit=False)
    assert conn.execute("SELECT COUNT(*) FROM reports").fetchone()[0] == 0
    assert not spent_among(conn, [key])
    store(b"r1", commit=True)
    assert spent_among(conn, [key, bytes(32)]) == {key}
    with pytest.raises(TokenReused):
        store(b"r2", commit=True)
    assert [r[0] for r in conn.execute("SELECT id FROM reports")] == [b"r1"]
    assert conn.execute("SELECT report_id FROM spent_tokens").fetchone()[0] == b"r1"


def test_private_sqlite_files_are_made_and_kept_owner_only(tmp_path, monkeypatch):
    """The one opener of every SQLite file (token state, the survey stores) creates it 0600 and tightens a
    file an earlier version left readable by others, its side files included."""
    fresh = tmp_path / "fresh.sqlite"
    open_private(fresh).close()
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    old = tmp_path / "old.sqlite"
    for path in (old, tmp_path / "old.sqlite-wal"):
        path.touch()
        os.chmod(path, 0o644)
    open_private(old).close()
    assert {stat.S_IMODE(p.stat().st_mode) for p in tmp_path.glob("old.sqlite*")} == {0o600}
    monkeypatch.chdir(tmp_path)
    memory = open_private(":memory:")
    assert memory.execute("SELECT 1").fetchone() == (1,) and not (tmp_path / ":memory:").exists()


def test_client_state_never_shows_its_secrets(issuer):
    _, pending = request_token(issuer.public_key, CHALLENGE, Prg.from_int(19))
    text = repr(pending)
    assert pending.inv.hex() not in text and pending.token_input.hex() not in text
    assert str(list(pending.inv[:4])) not in text and "inv" not in text
