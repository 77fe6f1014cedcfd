"""A spent-token set for tests: the library's verification and spent table, each spend its own transaction.

The aggregator's report store spends tokens inside its own transactions (:mod:`services.survey.reports`);
tests of the token library alone spend through this thin wrapper over the same functions.
"""

from __future__ import annotations

import os

from mpcdp.sqlite_files import PrivateDB
from mpcdp.tokens import IssuerPublicKey, Token, verify_token
from mpcdp.tokens.spent import create_table, record_in, token_hash


class SpentTokens:
    """An owner-only SQLite spent set at ``path`` (one connection per thread)."""

    def __init__(self, path: str | os.PathLike[str], issuer: IssuerPublicKey):
        self.db, self.issuer = PrivateDB(path), issuer
        self.db.transaction(create_table)

    def spend(self, token: bytes, challenge: bytes, report_id: bytes) -> Token:
        decoded = verify_token(self.issuer, token, challenge)
        self.db.transaction(lambda conn: record_in(conn, [(token_hash(decoded), report_id)]))
        return decoded

    def __len__(self) -> int:
        return int(self.db.conn().execute("SELECT COUNT(*) FROM spent_tokens").fetchone()[0])
