"""Admission by token in the verified surveys' store: a report is stored only with a valid, unspent token bound
to its submission, and the token is spent in the same transaction; every refusal is counted, nothing stored."""

from __future__ import annotations

import pytest

from mpcdp.prg import Prg
from mpcdp.survey import proved
from mpcdp.survey.definition import parse_survey
from mpcdp.tokens import InvalidToken, Issuer, TokenRequired, TokenReused, generate_issuer_key
from mpcdp.tokens.admission import SurveyAdmission
from services.survey.reports import ReportStore, RoutedStore
from services.survey.store import PutStatus
from tests.support.survey_proved import TEXT, respondents

SURVEY = parse_survey(TEXT)
OTHER = parse_survey(TEXT.replace('id = "election-poll-2026"', 'id = "another-poll"'))
LEADER = SURVEY.aggregator_names[0]
ISSUER = Issuer(generate_issuer_key())
ADMISSION = SurveyAdmission(ISSUER.public_key, SURVEY.id, SURVEY.digest, SURVEY.aggregator_names)


def token_for(admission: SurveyAdmission, sid: bytes, issuer: Issuer = ISSUER, seed: int = 7) -> bytes:
    request, pending = admission.request(sid, Prg.from_int(seed, sid.hex()))
    return pending.finalize(issuer.issue(request))


def submissions(n: int, seed: int = 1):
    sids, rows, _, _ = respondents(SURVEY, n, seed)
    rng = Prg.from_int(seed + 1)
    return [(sid, proved.shard_sheet(SURVEY, sid, row, rng)[0]) for sid, row in zip(sids, rows, strict=True)]


def open_store(path) -> ReportStore:
    store = ReportStore(str(path))
    store.register(SURVEY, LEADER)
    store.admit_by_token(ADMISSION)
    return store


def test_a_report_is_stored_with_its_token_and_retries_are_duplicates(tmp_path):
    store = open_store(tmp_path / "a.db")
    items = submissions(3)
    tokens = [token_for(ADMISSION, sid) for sid, _ in items]
    assert store.put(SURVEY.id, items, tokens) == [PutStatus.ACCEPTED] * 3
    assert store.put(SURVEY.id, items[:1], tokens[:1]) == [PutStatus.DUPLICATE]  # a retry: same id, report, token
    assert store.state(SURVEY.id).count == 3
    assert store.refusals(SURVEY.id) == {}
    assert store.put(SURVEY.id, [(items[0][0], items[1][1])], tokens[:1]) == [PutStatus.CONFLICT]  # another report
    reopened = open_store(tmp_path / "a.db")  # spent tokens are durable
    (sid, report) = submissions(1, seed=9)[0]
    with pytest.raises(TokenReused):
        reopened.put(SURVEY.id, [(sid, report)], tokens[:1])
    assert reopened.refusals(SURVEY.id) == {"conflict": 1, "token-reused": 1}
    assert reopened.state(SURVEY.id).count == 3


def test_every_bad_token_is_refused_counted_and_nothing_is_stored(tmp_path):
    store = open_store(tmp_path / "a.db")
    (sid, report), (sid2, report2), (sid3, report3) = submissions(3)
    token = token_for(ADMISSION, sid)
    assert store.put(SURVEY.id, [(sid, report)], [token]) == [PutStatus.ACCEPTED]
    with pytest.raises(TokenRequired, match="by token only"):
        store.put(SURVEY.id, [(sid2, report2)])  # no token at all (a certificate alone admits nothing)
    with pytest.raises(TokenReused, match="already used"):
        store.put(SURVEY.id, [(sid2, report2)], [token])  # a spent token with another submission
    with pytest.raises(InvalidToken, match="does not verify"):
        forged = bytearray(token_for(ADMISSION, sid2))
        forged[-1] ^= 1
        store.put(SURVEY.id, [(sid2, report2)], [bytes(forged)])
    with pytest.raises(InvalidToken, match="354 bytes"):
        store.put(SURVEY.id, [(sid2, report2)], [token_for(ADMISSION, sid2)[:-10]])  # truncated
    other_issuer = Issuer(generate_issuer_key())
    other = SurveyAdmission(other_issuer.public_key, OTHER.id, OTHER.digest, OTHER.aggregator_names)
    with pytest.raises(InvalidToken, match="another issuer key"):
        store.put(SURVEY.id, [(sid2, report2)], [token_for(other, sid2, other_issuer)])  # another survey's issuer
    with pytest.raises(InvalidToken, match="another submission or survey"):
        store.put(SURVEY.id, [(sid3, report3)], [token_for(ADMISSION, sid2)])  # bound to another submission
    # one bad token refuses the whole batch: the good one beside it is not stored either
    with pytest.raises(TokenReused):
        store.put(SURVEY.id, [(sid2, report2), (sid3, report3)], [token_for(ADMISSION, sid2), token])
    assert store.state(SURVEY.id).count == 1
    assert store.refusals(SURVEY.id) == {"token-missing": 1, "token-reused": 2, "token-invalid": 4}
    # the refused batch spent nothing: its good token still admits its report
    assert store.put(SURVEY.id, [(sid2, report2)], [token_for(ADMISSION, sid2)]) == [PutStatus.ACCEPTED]


def test_a_batch_of_many_reports_spends_one_token_each(tmp_path):
    store = open_store(tmp_path / "a.db")
    items = submissions(40, seed=3)
    tokens = [token_for(ADMISSION, sid) for sid, _ in items]
    assert store.put(SURVEY.id, items, tokens) == [PutStatus.ACCEPTED] * 40
    (n,) = store._db.execute("SELECT COUNT(*) FROM spent_tokens").fetchone()
    assert n == 40


def test_the_routed_store_refuses_tokens_for_an_unverified_survey(tmp_path):
    plain = parse_survey(TEXT.replace('proofs = "prio3"', ""))
    reports = ReportStore(":memory:")
    routed = RoutedStore(object(), reports, {plain.id: plain}, LEADER)
    with pytest.raises(ValueError, match="verified surveys only"):
        routed.put(plain.id, [], [b"x"])
