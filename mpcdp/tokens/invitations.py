"""One-time invitation codes, each redeemable for exactly one blind signature (one token).

A pollster creates N codes (128 bits each from the CSPRNG) and hands one to each respondent. The
store keeps only HMAC-SHA-256(store key, code), never the code, so a leaked store cannot be
replayed; the key is random per store (a per-store salt: with 128-bit codes nothing can be guessed
from the hashes, and hashes from two stores cannot be matched).

Redeeming a code for a TokenRequest validates the request, then marks the code used *by that
request* in one atomic step, then blind-signs. A second redemption with a different request is
refused, so a code yields one token however it is raced. The same request sent again (a retry after
a lost answer) is signed again: RSA blind signing is deterministic, so the retry returns the very
same TokenResponse and still yields one token. The issuer sees only the blinded message, so the
token it helps make is unlinkable to the code (RFC 9474 blindness).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import sqlite3
import threading
from abc import ABC, abstractmethod

from mpcdp.prg import RandomSource
from mpcdp.sqlite_files import PrivateDB
from mpcdp.tokens.errors import InvitationRefused, TokenError
from mpcdp.tokens.privacy_pass import Issuer

CODE_BYTES = 16
KEY_BYTES = 32
_ALPHABET_NOTE = "letters a-z and digits 2-7"


def new_code(rng: RandomSource) -> str:
    """A fresh invitation code: 128 random bits in base32, grouped for reading (xxxxx-xxxxx-...)."""
    text = base64.b32encode(rng.bytes(CODE_BYTES)).decode().rstrip("=").lower()
    return "-".join(text[i : i + 5] for i in range(0, len(text), 5))


def normalize_code(code: str) -> bytes:
    """The code's 16 bytes, ignoring case, dashes and spaces; raises if it cannot be a code."""
    text = "".join(str(code).split()).replace("-", "").upper()
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except ValueError:  # binascii.Error is a ValueError
        raise InvitationRefused(f"that is not an invitation code (codes use {_ALPHABET_NOTE})") from None
    if len(raw) != CODE_BYTES:
        raise InvitationRefused("that is not an invitation code (wrong length)")
    return raw


class Invitations(ABC):
    """Create and redeem invitation codes; subclasses store the keyed hashes."""

    @property
    @abstractmethod
    def key(self) -> bytes: ...

    @abstractmethod
    def _insert(self, digests: list[bytes]) -> None: ...

    @abstractmethod
    def _consume(self, digest: bytes, request_digest: bytes) -> None:
        """Atomically mark ``digest`` used by ``request_digest``; allow the same request again;
        raise InvitationRefused if the code is unknown or used by another request."""

    @abstractmethod
    def unused(self) -> int: ...

    def digest(self, code: str) -> bytes:
        return hmac.new(self.key, normalize_code(code), hashlib.sha256).digest()

    def create(self, count: int, rng: RandomSource) -> list[str]:
        """``count`` new codes; only their keyed hashes are stored."""
        if not 1 <= int(count) <= 10_000_000:
            raise TokenError("create between 1 and 10,000,000 invitations at a time")
        codes = [new_code(rng) for _ in range(int(count))]
        self._insert([self.digest(c) for c in codes])
        return codes

    def redeem(self, code: str, request: bytes, issuer: Issuer) -> bytes:
        """The TokenResponse for ``request``, spending ``code``; raises InvitationRefused or InvalidToken."""
        issuer.check_request(request)  # a malformed request never spends a code
        self._consume(self.digest(code), hashlib.sha256(bytes(request)).digest())
        return issuer.issue(request)


class MemoryInvitations(Invitations):
    """In-process store (tests, single-process tools), thread-safe."""

    def __init__(self, key: bytes | None = None):
        self._key = key or os.urandom(KEY_BYTES)
        self._used: dict[bytes, bytes | None] = {}
        self._lock = threading.Lock()

    @property
    def key(self) -> bytes:
        return self._key

    def _insert(self, digests: list[bytes]) -> None:
        with self._lock:
            for d in digests:
                self._used.setdefault(d, None)

    def _consume(self, digest: bytes, request_digest: bytes) -> None:
        with self._lock:
            if digest not in self._used:
                raise InvitationRefused("unknown invitation code")
            used_by = self._used[digest]
            if used_by is not None and used_by != request_digest:
                raise InvitationRefused("this invitation was already used")
            self._used[digest] = request_digest

    def unused(self) -> int:
        with self._lock:
            return sum(v is None for v in self._used.values())


class SQLiteInvitations(Invitations):
    """Durable store in an owner-only SQLite file; redemption is one IMMEDIATE transaction, so
    two processes racing on one code cannot both succeed."""

    def __init__(self, path: str | os.PathLike[str]):
        self.db = PrivateDB(path)

        def setup(conn: sqlite3.Connection) -> bytes:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)")
            conn.execute("CREATE TABLE IF NOT EXISTS invitations (digest BLOB PRIMARY KEY, used_by BLOB, used_at REAL)")
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('hmac_key', ?)", (os.urandom(KEY_BYTES),))
            return bytes(conn.execute("SELECT value FROM meta WHERE name = 'hmac_key'").fetchone()[0])

        self._key = self.db.transaction(setup)

    @property
    def key(self) -> bytes:
        return self._key

    def _insert(self, digests: list[bytes]) -> None:
        self.db.transaction(
            lambda conn: conn.executemany(
                "INSERT OR IGNORE INTO invitations (digest) VALUES (?)", [(d,) for d in digests]
            )
        )

    def _consume(self, digest: bytes, request_digest: bytes) -> None:
        def consume(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT used_by FROM invitations WHERE digest = ?", (digest,)).fetchone()
            if row is None:
                raise InvitationRefused("unknown invitation code")
            if row[0] is not None and row[0] != request_digest:
                raise InvitationRefused("this invitation was already used")
            conn.execute(
                "UPDATE invitations SET used_by = ?, used_at = COALESCE(used_at, julianday('now')) WHERE digest = ?",
                (request_digest, digest),
            )

        self.db.transaction(consume)

    def unused(self) -> int:
        return int(self.db.conn().execute("SELECT COUNT(*) FROM invitations WHERE used_by IS NULL").fetchone()[0])
