"""A survey, parsed from TOML: its questions, their privacy mechanisms and its aggregators.

    [survey]
    id = "election-2026"
    min_respondents = 1000        # nothing is released below this many counted respondents
    max_respondents = 10_000_000  # sizes the ring headroom check
    colluders = 1                 # aggregators assumed to collude (central noise survives them)

    [[aggregator]]
    name = "org-a"
    address = "127.0.0.1:7301"

    [[question]]
    id = "vote"
    kind = "choice"               # yesno | choice | multiselect | numeric
    options = ["Left", "Centre", "Right"]
    local = { mechanism = "krr", epsilon = 2.0 }
    central = { mechanism = "discrete_laplace", epsilon = 0.5 }

Every invalid field raises :class:`SurveyError` naming the source line and the
field path (``question[1].local.epsilon``). A parsed survey has a ``digest``
over everything that changes the meaning of a share (not the aggregators'
addresses), so all nodes can check they run the same survey.

Central noise is per question and pure ε-DP (discrete Laplace) or zCDP
(Skellam) for *replace-one-respondent* neighbours: the number of counted
respondents is public in this protocol (every aggregator sees the submission
ids), so the sensitivity of a question block is the most one respondent's
report can move it, in ring units (:attr:`Question.sensitivity`).
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from .. import ring
from ..dp.loss import Measure, PrivacyLoss, Relation
from ..dp.mechanisms import CENTRAL_MECHANISMS
from ..dp.rational import epsilon_in_range
from ..names import RULE as NAME_RULE
from ..names import is_name
from .local import LOCAL_MECHANISMS, LocalMechanism
from .questions import MAX_OPTIONS, QUESTION_KINDS, CentralNoise, Question
from .toml_lines import KeyPath as Path
from .toml_lines import key_lines, line_of

MAX_AGGREGATORS = 16

# "none": shares of the ring, unverified; "prio3": Prio3 reports whose validity the aggregators verify
PROOFS = ("none", "prio3")


class SurveyError(ValueError):
    """An invalid survey file; ``line`` and ``field`` say where."""

    def __init__(self, message: str, field: str = "", line: int | None = None, source: str = "<survey>"):
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {field + ': ' if field else ''}{message}")
        self.field = field
        self.line = line


@dataclass(frozen=True)
class Aggregator:
    name: str
    address: str


@dataclass(frozen=True)
class Survey:
    id: str
    questions: tuple[Question, ...]
    aggregators: tuple[Aggregator, ...]
    title: str = ""
    min_respondents: int = 100
    max_respondents: int = 10_000_000
    colluders: int = 1
    digest: bytes = b""
    proofs: str = "none"  # "prio3": every answer carries a validity proof the aggregators check (mpcdp.survey.proved)

    @property
    def verified(self) -> bool:
        """Do reports carry Prio3 proofs the aggregators verify (``proofs = "prio3"``)?"""
        return self.proofs == "prio3"

    @property
    def width(self) -> int:
        """Length of an encoded answer sheet: the questions' blocks, in order."""
        return sum(q.width for q in self.questions)

    def offsets(self) -> list[tuple[Question, slice]]:
        out: list[tuple[Question, slice]] = []
        start = 0
        for q in self.questions:
            out.append((q, slice(start, start + q.width)))
            start += q.width
        return out

    def question(self, qid: str) -> Question:
        for q in self.questions:
            if q.id == qid:
                return q
        raise KeyError(f"no question {qid!r} in survey {self.id!r}")

    @property
    def aggregator_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.aggregators)


# -- parsing ------------------------------------------------------------------


class _Reader:
    """Field access with errors that carry the line and the dotted path."""

    def __init__(self, text: str, source: str):
        self.lines = key_lines(text)
        self.source = source

    def fail(self, path: Path, message: str) -> NoReturn:
        raise SurveyError(message, _dotted(path), line_of(self.lines, path), self.source)

    def table(self, doc: dict[str, Any], path: Path, key: str, required: bool = True) -> dict[str, Any]:
        value = doc.get(key)
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            self.fail(path + (key,), "missing table" if value is None else "must be a table")
        return value

    def get(
        self,
        doc: dict[str, Any],
        path: Path,
        key: str,
        kind: type | tuple[type, ...],
        default: Any = None,
        required: bool = False,
    ) -> Any:
        if key not in doc:
            if required:
                self.fail(path + (key,) if path else (key,), "required field is missing")
            return default
        value = doc[key]
        ok = isinstance(value, kind) and not (kind in (int, (int, float)) and isinstance(value, bool))
        if not ok:
            self.fail(path + (key,), f"must be {_kind_name(kind)}, got {type(value).__name__}")
        return value

    def unknown(self, doc: dict[str, Any], path: Path, allowed: tuple[str, ...]) -> None:
        for key in doc:
            if key not in allowed:
                self.fail(path + (key,), f"unknown field; expected one of {', '.join(allowed)}")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names: dict[type, str] = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "an array",
        dict: "a table",
    }
    if isinstance(kind, tuple):
        return "a number" if set(kind) == {int, float} else " or ".join(names[k] for k in kind)
    return names[kind]


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def read_survey(path: str) -> Survey:
    """Parse and validate the survey file at ``path`` (:class:`SurveyError` naming the file if it cannot be
    read)."""
    import pathlib

    try:
        text = pathlib.Path(path).read_text()
    except OSError as exc:
        raise SurveyError(f"cannot read: {exc.strerror}", source=path) from None
    return parse_survey(text, path)


def parse_survey(text: str, source: str = "<survey>") -> Survey:
    """Parse and validate a survey file's text; ``source`` names it in errors."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SurveyError(f"not valid TOML: {exc}", source=source) from None
    r = _Reader(text, source)
    r.unknown(doc, (), ("survey", "aggregator", "question"))
    head = r.table(doc, (), "survey")
    r.unknown(head, ("survey",), ("id", "title", "min_respondents", "max_respondents", "colluders", "proofs"))
    sid = r.get(head, ("survey",), "id", str, required=True)
    if not is_name(sid):
        r.fail(("survey", "id"), f"must be {NAME_RULE}")
    min_resp = r.get(head, ("survey",), "min_respondents", int, 100)
    if min_resp < 1:
        r.fail(("survey", "min_respondents"), f"must be at least 1, got {min_resp}")
    max_resp = r.get(head, ("survey",), "max_respondents", int, 10_000_000)
    if max_resp < min_resp:
        r.fail(("survey", "max_respondents"), f"must be at least min_respondents ({min_resp}), got {max_resp}")
    aggregators = _parse_aggregators(r, doc)
    colluders = r.get(head, ("survey",), "colluders", int, 1)
    if not 1 <= colluders < len(aggregators):
        r.fail(
            ("survey", "colluders"),
            f"must be in [1, {len(aggregators) - 1}] (at least one honest aggregator), got {colluders}",
        )
    proofs = r.get(head, ("survey",), "proofs", str, "none")
    if proofs not in PROOFS:
        r.fail(("survey", "proofs"), f"must be one of {', '.join(PROOFS)}, got {proofs!r}")
    raw_questions = r.get(doc, (), "question", list, required=True)
    if not raw_questions:
        r.fail(("question",), "a survey needs at least one question")
    questions = tuple(_parse_question(r, q, i) for i, q in enumerate(raw_questions))
    seen: set[str] = set()
    for i, q in enumerate(questions):
        if q.id in seen:
            r.fail(("question", i, "id"), f"duplicate question id {q.id!r}")
        seen.add(q.id)
        try:
            ring.check_fits(max_resp, q.magnitude, what=f"totals of question {q.id!r}")
        except ring.HeadroomError as exc:
            r.fail(("survey", "max_respondents"), str(exc))
    survey = Survey(
        sid,
        questions,
        aggregators,
        r.get(head, ("survey",), "title", str, ""),
        min_resp,
        max_resp,
        colluders,
        proofs=proofs,
    )
    return replace(survey, digest=_digest(survey))


def _parse_aggregators(r: _Reader, doc: dict[str, Any]) -> tuple[Aggregator, ...]:
    raw = r.get(doc, (), "aggregator", list, required=True)
    if not 2 <= len(raw) <= MAX_AGGREGATORS:
        r.fail(("aggregator",), f"a survey needs between 2 and {MAX_AGGREGATORS} aggregators, got {len(raw)}")
    out: list[Aggregator] = []
    for i, a in enumerate(raw):
        path: Path = ("aggregator", i)
        r.unknown(a, path, ("name", "address"))
        name = r.get(a, path, "name", str, required=True)
        if not is_name(name):
            r.fail(path + ("name",), f"must be {NAME_RULE}")
        address = r.get(a, path, "address", str, required=True)
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            r.fail(path + ("address",), f"must be host:port, got {address!r}")
        if name in {x.name for x in out}:
            r.fail(path + ("name",), f"duplicate aggregator name {name!r}")
        out.append(Aggregator(name, address))
    return tuple(out)


_SHARED_FIELDS = ("id", "text", "kind", "local", "central")


def _parse_question(r: _Reader, q: object, i: int) -> Question:
    path: Path = ("question", i)
    if not isinstance(q, dict):
        r.fail(path, "must be a table")
    kind_fields = {f: k for k in QUESTION_KINDS for f in k.fields}
    r.unknown(q, path, _SHARED_FIELDS + tuple(kind_fields))
    qid = r.get(q, path, "id", str, required=True)
    if not is_name(qid):
        r.fail(path + ("id",), f"must be {NAME_RULE}")
    name = r.get(q, path, "kind", str, required=True)
    if name not in QUESTION_KINDS:
        r.fail(path + ("kind",), f"unknown kind {name!r}; choose one of {', '.join(QUESTION_KINDS.names())}")
    kind = QUESTION_KINDS.get(name)
    for key, owner in kind_fields.items():
        if key in q and key not in kind.fields:
            r.fail(path + (key,), f"a {name} question takes no {key} (only a {owner.name} question does)")
    fields: dict[str, Any] = {key: _FIELD_READERS[key](r, q, path) for key in kind.fields}
    if "step" in fields:  # the default step is 1/1024 of the range; a step is rounded down to a power of two
        lo, hi = fields["bounds"]
        step = fields["step"] if fields["step"] is not None else (hi - lo) / 1024
        if not math.isfinite(step) or step <= 0 or step > hi - lo:
            r.fail(path + ("step",), "must be a number in (0, hi - lo]")
        fields["step"] = 2.0 ** (math.frexp(step)[1] - 1)  # a power of two: exact in binary floating point
    local = _parse_local(r, q, path, kind)
    central = _parse_central(r, q, path)
    return kind(id=qid, text=r.get(q, path, "text", str, ""), local=local, central=central, **fields)


def _read_options(r: _Reader, q: dict[str, Any], path: Path) -> tuple[str, ...]:
    raw = r.get(q, path, "options", list, required=True)
    if not 2 <= len(raw) <= MAX_OPTIONS or not all(isinstance(o, str) and o for o in raw):
        r.fail(path + ("options",), f"must be 2 to {MAX_OPTIONS} non-empty strings")
    if len(set(raw)) != len(raw):
        r.fail(path + ("options",), "options must be distinct")
    return tuple(raw)


def _read_bounds(r: _Reader, q: dict[str, Any], path: Path) -> tuple[float, float]:
    raw = r.get(q, path, "bounds", list, required=True)
    finite = all(isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) for b in raw)
    if len(raw) != 2 or not finite or raw[0] >= raw[1]:
        r.fail(path + ("bounds",), "must be [lo, hi], two finite numbers with lo < hi")
    return float(raw[0]), float(raw[1])


def _read_step(r: _Reader, q: dict[str, Any], path: Path) -> float | None:
    step = r.get(q, path, "step", (int, float))
    return None if step is None else float(step)


_FIELD_READERS: dict[str, Callable[[_Reader, dict[str, Any], Path], object]] = {
    "options": _read_options,
    "bounds": _read_bounds,
    "step": _read_step,
}


def _parse_local(r: _Reader, q: dict[str, Any], path: Path, kind: type[Question]) -> LocalMechanism:
    t = r.table(q, path, "local", required=False)
    path = path + ("local",)
    r.unknown(t, path, ("mechanism", "epsilon"))
    name = r.get(t, path, "mechanism", str, "none")
    allowed = [m.name for m in kind.mechanisms]
    if name not in allowed:
        r.fail(
            path + ("mechanism",),
            f"{name!r} does not apply to a {kind.name} question; choose one of {', '.join(allowed)}",
        )
    epsilon = r.get(t, path, "epsilon", (int, float))
    try:
        return LOCAL_MECHANISMS.get(name).configure(epsilon)
    except ValueError as exc:
        r.fail(path + ("epsilon",), str(exc))


def _epsilon(r: _Reader, table: dict[str, Any], path: Path) -> float:
    eps = r.get(table, path, "epsilon", (int, float), required=True)
    try:
        epsilon_in_range(eps)
    except ValueError as exc:
        r.fail(path + ("epsilon",), str(exc).removeprefix("epsilon "))
    return float(eps)


def _parse_central(r: _Reader, q: dict[str, Any], path: Path) -> CentralNoise:
    t = r.table(q, path, "central", required=False)
    path = path + ("central",)
    r.unknown(t, path, ("mechanism", "epsilon", "delta"))
    name = r.get(t, path, "mechanism", str, CENTRAL_MECHANISMS.names()[0] if t else "none")
    if name == "none":
        if set(t) - {"mechanism"}:
            r.fail(path, "no central mechanism, so no epsilon or delta")
        return CentralNoise()
    if name not in CENTRAL_MECHANISMS:
        choices = ", ".join(("none", *CENTRAL_MECHANISMS.names()))
        r.fail(path + ("mechanism",), f"unknown mechanism {name!r}; choose one of {choices}")
    mech = CENTRAL_MECHANISMS.get(name)
    delta = float(r.get(t, path, "delta", (int, float), 0.0))
    if not 0 <= delta < 1:
        r.fail(path + ("delta",), f"must be in [0, 1), got {delta!r}")
    if mech.measure is Measure.PURE and delta:
        r.fail(path + ("delta",), f"{name} noise is pure DP: leave delta at 0")
    epsilon = _epsilon(r, t, path)
    try:
        mech.check(PrivacyLoss.of(epsilon, delta, Relation.RESPONDENT))
    except ValueError as exc:
        r.fail(path + ("delta",), str(exc))
    return CentralNoise(name, epsilon, delta)


def _digest(survey: Survey) -> bytes:
    """SHA-256 over the canonical meaning of the survey (aggregator addresses excluded)."""
    canon: dict[str, object] = {
        "id": survey.id,
        "min": survey.min_respondents,
        "max": survey.max_respondents,
        "colluders": survey.colluders,
        "aggregators": list(survey.aggregator_names),
        "questions": [
            {
                "id": q.id,
                "kind": q.kind,
                "options": list(q.options),
                "bounds": q.bounds,
                "step": q.step,
                "local": [q.local.name, q.local.epsilon],
                "central": [q.central.mechanism, q.central.epsilon, q.central.delta],
            }
            for q in survey.questions
        ],
    }
    if survey.proofs != "none":  # surveys without proofs keep the digests they always had
        canon["proofs"] = survey.proofs
    return hashlib.sha256(json.dumps(canon, sort_keys=True).encode()).digest()
