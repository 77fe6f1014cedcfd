"""The verified surveys' report store: bad input refused with a reason and a counter, batches counted once,
release once per accepted set, the state rules of the library's lifecycle, kept across a reopen; on SQLite
and on PostgreSQL (when MPCDP_TEST_POSTGRES is set)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from mpcdp.prg import Prg
from mpcdp.survey import proved
from mpcdp.survey.definition import parse_survey
from mpcdp.survey.lifecycle import Refusal
from mpcdp.survey.release import id_set_digest
from services.survey.reports import ReportStore, batch_id
from services.survey.store import PutStatus, StoreError
from tests.support.survey_proved import TEXT, respondents

SURVEY = parse_survey(TEXT)
LEADER = SURVEY.aggregator_names[0]


def reports(n, seed=1):
    sids, rows, _, _ = respondents(SURVEY, n, seed)
    rng = Prg.from_int(seed + 1)
    return sids, [proved.shard_sheet(SURVEY, sid, row, rng) for sid, row in zip(sids, rows)]


PG = os.environ.get("MPCDP_TEST_POSTGRES")


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    """Where a store lives: (url, schema)."""
    if request.param == "sqlite":
        yield str(tmp_path / "a.db"), "public"
        return
    if not PG:
        pytest.skip("MPCDP_TEST_POSTGRES is not set (a postgresql:// DSN; .ci/run starts a server)")
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield PG, schema
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def open_leader(db) -> ReportStore:
    store = ReportStore(*db)
    store.register(SURVEY, LEADER)
    return store


def test_bad_input_is_refused_with_its_reason_and_counted(db):
    store = open_leader(db)
    sids, reps = reports(3)
    items = [(sid, r[0]) for sid, r in zip(sids, reps)]
    assert store.put(SURVEY.id, items[:2]) == [PutStatus.ACCEPTED] * 2
    # the same id again: a duplicate if the same report, a conflict (refused, counted) if another
    assert store.put(SURVEY.id, [items[0], (sids[1], items[2][1])]) == [PutStatus.DUPLICATE, PutStatus.CONFLICT]
    with pytest.raises(ValueError, match=r"1 of these reports are malformed.*2048 bytes"):
        store.put(SURVEY.id, [(sids[2], items[2][1][:-1])])  # a share of the wrong length
    with pytest.raises(ValueError, match="malformed"):
        store.put(SURVEY.id, [(sids[2][:15], items[2][1])])  # a malformed id
    assert store.refusals(SURVEY.id) == {"conflict": 1, "malformed": 2}
    assert store.state(SURVEY.id).count == 2
    store.close(SURVEY.id)
    with pytest.raises(Refusal, match="no more submissions"):  # a replay after close changes nothing
        store.put(SURVEY.id, [items[2]])
    assert store.state(SURVEY.id).state == "preparing"


def test_a_batch_is_counted_once_and_the_release_is_bound_to_the_accepted_set(db):
    store = open_leader(db)
    sids, reps = reports(20)
    store.put(SURVEY.id, [(sid, r[0]) for sid, r in zip(sids, reps)])
    with pytest.raises(Refusal, match="close it first"):
        store.verify_key(SURVEY.id, draw=True)  # no key while respondents can still submit
    store.close(SURVEY.id)
    key = store.verify_key(SURVEY.id, draw=True)
    assert store.verify_key(SURVEY.id) == key
    with pytest.raises(Refusal):
        store.verify_key(SURVEY.id, bytes(16))  # a leader's other key is refused
    ids = sorted(sids)
    verdicts = bytes([proved.ACCEPTED] * 19 + [proved.REJECTED])
    aggregate = proved.encode_aggregate(SURVEY, [proved.circuit(SURVEY, q).aggregate_init() for q in SURVEY.questions])
    store.decide(SURVEY.id, ids, verdicts, [b"m"] * 20)
    store.shutdown()

    store = open_leader(db)  # a restart: the decision and the key are kept
    assert store.decided(SURVEY.id, batch_id(ids)) == (verdicts, [b"m"] * 20)
    assert store.verify_key(SURVEY.id) == key
    store.finish(SURVEY.id, ids, verdicts, aggregate)
    store.finish(SURVEY.id, ids, verdicts, aggregate)  # delivered twice: counted once
    with pytest.raises(StoreError, match="other verdicts"):
        store.finish(SURVEY.id, ids, bytes(20), aggregate)
    accepted = ids[:19]
    with pytest.raises(StoreError, match="counted 19 verified reports"):
        store.release(SURVEY, 20, id_set_digest(ids), Prg.from_int(1))
    first = store.release(SURVEY, 19, id_set_digest(accepted), Prg.from_int(1))
    assert store.release(SURVEY, 19, id_set_digest(accepted), Prg.from_int(2)) == first  # replayed, not redrawn
    with pytest.raises(Refusal, match="another set"):
        store.release(SURVEY, 18, id_set_digest(accepted[:18]), Prg.from_int(1))
    assert store.state(SURVEY.id).state == "released"


def test_reports_of_a_survey_stored_under_another_definition_are_refused(db):
    open_leader(db).shutdown()
    other = parse_survey(TEXT.replace("epsilon = 2.0", "epsilon = 3.0"))
    store = ReportStore(*db)
    with pytest.raises(StoreError, match="another definition"):
        store.register(other, LEADER)


def test_the_store_and_its_side_files_are_owner_only(tmp_path):
    store = open_leader((str(tmp_path / "a.db"), "public"))
    sids, reps = reports(1)
    store.put(SURVEY.id, [(sids[0], reps[0][0])])
    for f in Path(tmp_path).glob("a.db*"):
        assert f.stat().st_mode & 0o077 == 0, f
