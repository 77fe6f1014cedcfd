"""An aggregator's durable store of a verified (Prio3) survey: reports, verdicts, aggregate shares (SQLite).

Persistence only: which step is allowed when is :class:`mpcdp.survey.lifecycle.Lifecycle`'s
rule; this module loads the survey's lifecycle, asks it, and stores the outcome in the same
transaction as the data. Every write commits before it is acknowledged (WAL, synchronous=FULL).

* ``put``: a batch of (id, report) in one transaction; an id re-sent with the same report is a
  duplicate, with another a conflict (counted, changes nothing); a report of the wrong length
  refuses the batch with its reason (counted as ``malformed``).
* tokens (surveys admitted by token, :meth:`ReportStore.admit_by_token`): every new report's token is
  verified against the survey's issuer key and its submission id, then recorded spent **in the
  transaction that stores the report** (a crash keeps both or neither); a batch with a missing, invalid
  or already spent token is refused whole, counted (``token-missing``, ``token-invalid``,
  ``token-reused``), nothing stored.
* ``decide`` (leader only): a batch's verdicts and prep messages, stored before any helper
  hears them, so a leader restarted mid-batch tells everyone the same verdicts again.
* ``finish``: a batch's verdicts and its aggregate share over the accepted reports, in one
  transaction, keyed by the batch id (a digest of its ids): a batch delivered twice counts once.
* ``release``: the noisy aggregate share over every finished batch, bound to the digest of
  the accepted ids, once (replayed for the same digest).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence

import numpy as np

from mpcdp.prg import RandomSource, system_random
from mpcdp.survey import proved
from mpcdp.survey.definition import Survey
from mpcdp.survey.lifecycle import Lifecycle, Refusal
from mpcdp.survey.release import id_set_digest
from mpcdp.tokens.admission import CheckedToken, SurveyAdmission, check_batch
from mpcdp.tokens.errors import InvalidToken, TokenError, TokenRequired, TokenReused
from mpcdp.tokens.spent import create_table, record_in, spent_among
from services.survey.sql import connect
from services.survey.store import ID_BYTES, PutStatus, StoreError, SurveyState, _first, _statuses


def batch_id(ids: Sequence[bytes]) -> bytes:
    return hashlib.sha256(b"".join(ids)).digest()


class ReportStore:
    """Store of verified surveys: an SQLite file (``:memory:`` too) or ``postgresql://...`` (tables in
    ``schema``), through :mod:`services.survey.sql`."""

    def __init__(self, url: str, schema: str = "public"):
        self._db = connect(url, schema)
        self._lock = threading.Lock()
        self._db.executescript("""
            CREATE TABLE IF NOT EXISTS proved_surveys (
                id TEXT PRIMARY KEY, digest BLOB NOT NULL, state TEXT NOT NULL, verify_key BLOB,
                released_digest BLOB, released BLOB);
            CREATE TABLE IF NOT EXISTS proved_reports (
                survey TEXT NOT NULL, sid BLOB NOT NULL, report BLOB NOT NULL,
                PRIMARY KEY (survey, sid)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS proved_batches (
                survey TEXT NOT NULL, batch BLOB NOT NULL, ids BLOB NOT NULL, verdicts BLOB NOT NULL,
                messages BLOB, aggregate BLOB, PRIMARY KEY (survey, batch));
            CREATE TABLE IF NOT EXISTS proved_refusals (
                survey TEXT NOT NULL, reason TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (survey, reason));
        """)
        create_table(self._db)
        self.admission: dict[str, SurveyAdmission] = {}
        self.surveys: dict[str, Survey] = {}
        self.index: dict[str, int] = {}

    # -- transactions ------------------------------------------------------------------------------
    def _tx(self, fn):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                out = fn()
                self._db.execute("COMMIT")
                return out
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _life(self, survey: str) -> Lifecycle:
        row = self._db.execute(
            "SELECT state, verify_key, released_digest FROM proved_surveys WHERE id = ?", (survey,)
        ).fetchone()
        if row is None:
            raise StoreError(StoreError.UNKNOWN_SURVEY, f"unknown survey {survey!r}")
        return Lifecycle(survey, row[0], row[1] and bytes(row[1]), row[2] and bytes(row[2]))

    def _save(self, life: Lifecycle) -> None:
        self._db.execute(
            "UPDATE proved_surveys SET state = ?, verify_key = ?, released_digest = ? WHERE id = ?",
            (life.state, life.verify_key, life.released_digest, life.survey),
        )

    def _count(self, survey: str, reason: str, n: int) -> None:
        self._db.execute(
            "INSERT INTO proved_refusals VALUES (?, ?, ?) ON CONFLICT (survey, reason) "
            "DO UPDATE SET count = proved_refusals.count + excluded.count",
            (survey, reason, n),
        )

    # -- intake ------------------------------------------------------------------------------------
    def register(self, survey: Survey, aggregator: str) -> None:
        self.surveys[survey.id] = survey
        self.index[survey.id] = survey.aggregator_names.index(aggregator)
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO proved_surveys (id, digest, state) VALUES (?, ?, 'open')",
                (survey.id, survey.digest),
            )
            (digest,) = self._db.execute("SELECT digest FROM proved_surveys WHERE id = ?", (survey.id,)).fetchone()
        if bytes(digest) != survey.digest:
            raise StoreError(StoreError.MISMATCH, f"survey {survey.id!r} is stored with another definition")

    def admit_by_token(self, admission: SurveyAdmission) -> None:
        """From now on, survey ``admission.survey_id`` stores a report only with a valid, unspent token."""
        self.admission[admission.survey_id] = admission

    def _check_tokens(self, survey: str, items, tokens: Sequence[bytes] | None) -> list[CheckedToken]:
        """Verify every token of a batch (outside the lock: CPU only); count and raise a refusal."""
        if tokens is None or len(tokens) != len(items) or not all(tokens):
            self._tx(lambda: self._count(survey, "token-missing", 1))
            raise TokenRequired(f"survey {survey!r} admits respondents by token only: send each report with its token")
        try:
            return check_batch(self.admission[survey], [(sid, t) for (sid, _), t in zip(items, tokens, strict=True)])
        except InvalidToken:
            self._tx(lambda: self._count(survey, "token-invalid", 1))
            raise

    def _spend(
        self, survey: str, items, checked: Sequence[CheckedToken], existing, count: bool = True
    ) -> TokenError | None:
        """Inside the transaction: record the tokens of the new reports spent, or say why not."""
        token_of: dict[bytes, CheckedToken] = {}
        for (sid, _), c in zip(items, checked, strict=True):
            token_of.setdefault(sid, c)
        fresh = [(token_of[sid], sid) for sid in token_of if sid not in existing]
        keys = [c.key for c, _ in fresh]
        reused = len(spent_among(self._db, keys)) + len(keys) - len(set(keys))
        if reused:
            if count:
                self._count(survey, "token-reused", reused)
            return TokenReused(f"{reused} of these tokens were already used: a token admits one report")
        unbound = sum(not c.bound for c, _ in fresh)
        if unbound:
            if count:
                self._count(survey, "token-invalid", unbound)
            return InvalidToken(f"{unbound} of these tokens were issued for another submission or survey")
        record_in(self._db, [(c.key, sid) for c, sid in fresh])
        return None

    def count_refusal(self, survey: str, reason: str) -> None:
        """Count one refusal decided before the store (an HTTPS request's bad token or report), durably."""
        self._tx(lambda: self._count(survey, reason, 1))

    def spent(self, token_key: bytes) -> bool:
        """Whether a token (by its spent-set key) was already spent here."""
        with self._lock:
            return bool(spent_among(self._db, [token_key]))

    def report_size(self, survey: str) -> int:
        return proved.report_size(self.surveys[survey], self.index[survey])

    def put(
        self,
        survey: str,
        items: Sequence[tuple[bytes, bytes]],
        tokens: Sequence[bytes] | None = None,
        checked: Sequence[CheckedToken] | None = None,
        *,
        count: bool = True,
    ) -> list[PutStatus]:
        """Store a batch; a survey admitted by token needs ``tokens`` (verified here) or ``checked`` (their
        verification already done by the caller, :func:`mpcdp.tokens.admission.check_batch`). ``count=False``:
        a token refusal is not counted (the caller retries report by report, which counts it once)."""
        size = proved.report_size(self.surveys[survey], self.index[survey])
        bad = sum(len(sid) != ID_BYTES or len(report) != size for sid, report in items)
        if bad:
            self._tx(lambda: self._count(survey, "malformed", bad))
            raise ValueError(
                f"{bad} of these reports are malformed: ids are {ID_BYTES} bytes and this "
                f"aggregator's reports of survey {survey!r} {size} bytes"
            )

        if survey not in self.admission:
            if tokens is not None or checked is not None:  # never store a report whose token is not spent
                raise ValueError(f"survey {survey!r} is not admitted by token here: its tokens cannot be spent")
        elif checked is None:
            checked = self._check_tokens(survey, items, tokens)

        def put():
            life = self._life(survey).submit(len(items))
            first = _first(items)
            existing = self._existing(survey, list(first))
            if checked is not None:
                refusal = self._spend(survey, items, checked, existing, count)
                if refusal is not None:
                    return refusal  # committed: the refusal's count, nothing else
            self._save(life)
            self._db.executemany(
                "INSERT INTO proved_reports VALUES (?, ?, ?)",
                [(survey, sid, rep) for sid, rep in first.items() if sid not in existing],
            )
            statuses = _statuses(items, existing, first)
            conflicts = statuses.count(PutStatus.CONFLICT)
            if conflicts:
                self._count(survey, "conflict", conflicts)
            return statuses

        out = self._tx(put)
        if isinstance(out, TokenError):
            raise out
        return out

    def _existing(self, survey: str, sids: list[bytes]) -> dict[bytes, bytes]:
        found: dict[bytes, bytes] = {}
        for start in range(0, len(sids), 500):
            part = sids[start : start + 500]
            for sid, rep in self._db.execute(
                f"SELECT sid, report FROM proved_reports WHERE survey = ? AND sid IN ({','.join('?' * len(part))})",
                (survey, *part),
            ):
                found[bytes(sid)] = bytes(rep)
        return found

    def state(self, survey: str) -> SurveyState:
        with self._lock:
            life = self._life(survey)
            (count,) = self._db.execute("SELECT COUNT(*) FROM proved_reports WHERE survey = ?", (survey,)).fetchone()
        return SurveyState(life.state, count, self.surveys[survey].width)

    def refusals(self, survey: str) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT reason, count FROM proved_refusals WHERE survey = ?", (survey,)))

    def close(self, survey: str) -> SurveyState:
        self._tx(lambda: self._save(self._life(survey).close()))
        return self.state(survey)

    def ids(self, survey: str):
        with self._lock:
            self._life(survey).final_ids()
            rows = self._db.execute(
                "SELECT sid FROM proved_reports WHERE survey = ? ORDER BY sid", (survey,)
            ).fetchall()
        return (bytes(r[0]) for r in rows)

    # -- preparation -------------------------------------------------------------------------------
    def verify_key(self, survey: str, offered: bytes | None = None, draw: bool = False) -> bytes:
        """The survey's verify key: the stored one, else ``offered`` (helpers: the leader's), else with
        ``draw`` a new one from the CSPRNG (the leader, after intake stopped). Stored before it is used."""

        def key():
            life = self._life(survey)
            chosen = life.verify_key or offered or (system_random("verify-key").bytes(16) if draw else None)
            if chosen is None:
                raise Refusal(Refusal.KEY, f"survey {survey!r} has no verify key yet: the leader sends it first")
            self._save(life.prepare(offered or chosen))
            return chosen

        return self._tx(key)

    def reports(self, survey: str, ids: Sequence[bytes]) -> list[bytes]:
        """The stored reports of ``ids``, in order (b"" for an id this aggregator does not hold)."""
        with self._lock:
            found = self._existing(survey, list(ids))
        return [found.get(sid, b"") for sid in ids]

    def decided(self, survey: str, batch: bytes) -> tuple[bytes, list[bytes]] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT verdicts, messages FROM proved_batches WHERE survey = ? AND batch = ?", (survey, batch)
            ).fetchone()
        if row is None or row[1] is None:
            return None
        return bytes(row[0]), _split(bytes(row[1]))

    def decide(self, survey: str, ids: Sequence[bytes], verdicts: bytes, messages: Sequence[bytes]) -> None:
        self._tx(
            lambda: self._db.execute(
                "INSERT OR IGNORE INTO proved_batches (survey, batch, ids, verdicts, messages) VALUES (?, ?, ?, ?, ?)",
                (survey, batch_id(ids), b"".join(ids), verdicts, _join(messages)),
            )
        )

    def finished(self, survey: str, batch: bytes) -> bytes | None:
        with self._lock:
            row = self._db.execute(
                "SELECT verdicts FROM proved_batches WHERE survey = ? AND batch = ? AND aggregate IS NOT NULL",
                (survey, batch),
            ).fetchone()
        return bytes(row[0]) if row else None

    def finish(self, survey: str, ids: Sequence[bytes], verdicts: bytes, aggregate: bytes) -> None:
        """Count a batch: its verdicts and aggregate share in one transaction (a second delivery: no-op)."""
        batch = batch_id(ids)

        def finish():
            life = self._life(survey)
            if life.verify_key is None:
                raise Refusal(Refusal.KEY, f"survey {survey!r} has no verify key yet: nothing was prepared")
            self._save(life.prepare(life.verify_key))
            row = self._db.execute(
                "SELECT verdicts, aggregate FROM proved_batches WHERE survey = ? AND batch = ?", (survey, batch)
            ).fetchone()
            if row is not None and row[1] is not None:
                if bytes(row[0]) != verdicts:
                    raise StoreError(StoreError.MISMATCH, "this batch was already counted with other verdicts")
                return
            if row is None:
                self._db.execute(
                    "INSERT INTO proved_batches (survey, batch, ids, verdicts, aggregate) VALUES (?, ?, ?, ?, ?)",
                    (survey, batch, b"".join(ids), verdicts, aggregate),
                )
            else:
                if bytes(row[0]) != verdicts:
                    raise StoreError(StoreError.MISMATCH, "this batch was decided with other verdicts")
                self._db.execute(
                    "UPDATE proved_batches SET aggregate = ? WHERE survey = ? AND batch = ?", (aggregate, survey, batch)
                )

        self._tx(finish)

    # -- release -----------------------------------------------------------------------------------
    def release(self, survey: Survey, expected: int, expected_digest: bytes, rng: RandomSource | None = None) -> bytes:
        """The noisy aggregate share over every counted batch, bound to the accepted ids' digest, once."""

        def release():
            life = self._life(survey.id)
            if life.state == "released":
                life.release(expected_digest)  # refuses another digest
                (done,) = self._db.execute("SELECT released FROM proved_surveys WHERE id = ?", (survey.id,)).fetchone()
                return bytes(done)
            accepted: list[bytes] = []
            shares = []
            for ids, verdicts, aggregate in self._db.execute(
                "SELECT ids, verdicts, aggregate FROM proved_batches WHERE survey = ? AND aggregate IS NOT NULL",
                (survey.id,),
            ):
                ids = bytes(ids)
                accepted += [
                    ids[r * ID_BYTES : (r + 1) * ID_BYTES]
                    for r, v in enumerate(bytes(verdicts))
                    if v == proved.ACCEPTED
                ]
                shares.append(proved.decode_aggregate(survey, bytes(aggregate)))
            if len(accepted) != expected or id_set_digest(accepted) != expected_digest:
                raise StoreError(
                    StoreError.MISMATCH,
                    f"survey {survey.id!r}: this aggregator counted "
                    f"{len(accepted)} verified reports, not the {expected} "
                    "asked for, or a different set",
                )
            life = life.verified().release(expected_digest)
            total = (
                proved.add_aggregates(survey, shares)
                if shares
                else [circ.aggregate_init() for circ in (proved.circuit(survey, q) for q in survey.questions)]
            )
            out = proved.encode_aggregate(
                survey, proved.noisy_aggregate(survey, total, rng or system_random("survey-noise"))
            )
            self._save(life)
            self._db.execute("UPDATE proved_surveys SET released = ? WHERE id = ?", (out, survey.id))
            return out

        return self._tx(release)

    def shutdown(self) -> None:
        with self._lock:
            self._db.close()


def _join(parts: Sequence[bytes]) -> bytes:
    return b"".join(len(p).to_bytes(4, "little") + p for p in parts)


def _split(blob: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(blob):
        n = int.from_bytes(blob[i : i + 4], "little")
        out.append(blob[i + 4 : i + 4 + n])
        i += 4 + n
    return out


class RoutedStore:
    """The :class:`services.survey.store.ShareStore` an aggregator serves: verified surveys go to the
    :class:`ReportStore`, the others (shares of the ring, unverified) to the share store."""

    def __init__(self, shares, reports: ReportStore, surveys: dict[str, Survey], aggregator: str):
        self.shares, self.reports, self.aggregator = shares, reports, aggregator
        self.proved = {k for k, s in surveys.items() if s.verified}
        self.surveys = surveys

    def _call(self, survey: str, fn: str, *args):
        if survey not in self.proved:
            return getattr(self.shares, fn)(survey, *args)
        try:
            return getattr(self.reports, fn)(survey, *args)
        except Refusal as exc:
            raise StoreError(exc.reason if exc.reason != Refusal.KEY else StoreError.MISMATCH, str(exc)) from None

    def register(self, survey, digest, width):
        if survey in self.proved:
            return self.reports.register(self.surveys[survey], self.aggregator)
        return self.shares.register(survey, digest, width)

    def put(self, survey, items, tokens=None):
        if tokens is not None and survey not in self.proved:
            raise ValueError(f"survey {survey!r} has no proofs: tokens admit reports of verified surveys only")
        return self._call(survey, "put", items, *(() if tokens is None else (tokens,)))

    def state(self, survey):
        return self._call(survey, "state")

    def close(self, survey):
        return self._call(survey, "close")

    def ids(self, survey):
        return self._call(survey, "ids")

    def release(self, survey, exclude, expected, expected_digest, rng=None):
        if survey.id not in self.proved:
            return self.shares.release(survey, exclude, expected, expected_digest, rng)
        if list(exclude):
            raise ValueError(f"survey {survey.id!r} counts verified batches only: nothing is excluded by id")
        try:
            out = self.reports.release(survey, expected, expected_digest, rng)
        except Refusal as exc:
            raise StoreError(exc.reason, str(exc)) from None
        return np.frombuffer(out, dtype="<u8").astype(np.uint64)  # field elements are 8 or 16 bytes

    def shutdown(self):
        self.shares.shutdown()
        self.reports.shutdown()


def open_report_store(url: str, pg_schema: str = "public") -> ReportStore:
    """The verified surveys' store beside the share store: the same SQLite file or PostgreSQL schema
    (its own tables), or memory."""
    return ReportStore(":memory:" if url == "memory" else url, pg_schema)
