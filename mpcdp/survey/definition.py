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
from dataclasses import dataclass, replace
from functools import lru_cache

from .. import ring
from ..dp.laplace import GridLaplace
from ..dp.rational import epsilon_in_range
from .toml_lines import key_lines, line_of

KINDS = ("yesno", "choice", "multiselect", "numeric")
LOCAL_MECHANISMS = {
    "yesno": ("none", "two_coin", "rr"),
    "choice": ("none", "krr", "unary"),
    "multiselect": ("none", "rr"),
    "numeric": ("none", "laplace"),
}
CENTRAL_MECHANISMS = ("none", "discrete_laplace", "skellam")
TWO_COIN_EPSILON = math.log(3.0)
MAX_OPTIONS = 256
MAX_AGGREGATORS = 16
# A locally noised numeric report is clamped T = b * LAPLACE_TAIL steps beyond the answer
# range (b the noise scale in steps): P(|noise| > T) <= 1e-9, so the clamp's bias is below 1e-9 * b.
LAPLACE_TAIL = math.log(1e9)


@lru_cache(maxsize=64)
def _grid_laplace(epsilon: float, sensitivity: float, grid_exponent: int) -> GridLaplace:
    return GridLaplace(epsilon, sensitivity, grid_exponent, rounding="unbiased")


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
class LocalMechanism:
    """Randomisation on the respondent's device (local DP with parameter ``epsilon``)."""

    name: str = "none"
    epsilon: float | None = None

    @property
    def enabled(self) -> bool:
        return self.name != "none"


@dataclass(frozen=True)
class CentralNoise:
    """Distributed noise the aggregators add to a question's totals at release."""

    mechanism: str = "none"
    epsilon: float | None = None
    delta: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.mechanism != "none"


@dataclass(frozen=True)
class Question:
    id: str
    kind: str
    text: str = ""
    options: tuple[str, ...] = ()
    bounds: tuple[float, float] | None = None
    step: float | None = None  # numeric: the report grid, a power of two (a declared step is rounded down)
    local: LocalMechanism = LocalMechanism()
    central: CentralNoise = CentralNoise()

    @property
    def width(self) -> int:
        """Ring coordinates this question takes in an encoded answer sheet."""
        return len(self.options) if self.kind in ("choice", "multiselect") else 1

    @property
    def labels(self) -> tuple[str, ...]:
        """What each coordinate estimates."""
        if self.kind in ("choice", "multiselect"):
            return self.options
        return ("yes",) if self.kind == "yesno" else ("mean",)

    @property
    def grid_exponent(self) -> int:
        """Numeric questions: reports are integer multiples of ``step`` = 2^grid_exponent."""
        return math.frexp(self.step)[1] - 1

    def laplace(self) -> GridLaplace:
        """Numeric questions under local Laplace: the grid mechanism on the answer range."""
        return _grid_laplace(self.local.epsilon, self.bounds[1] - self.bounds[0], self.grid_exponent)

    @property
    def unit_range(self) -> tuple[int, int]:
        """Numeric questions: the smallest and largest report, in steps.

        Under local Laplace a report is clamped T = ceil(scale * LAPLACE_TAIL)
        steps beyond the rounded answer range.
        """
        lo, hi = math.floor(self.bounds[0] / self.step), math.ceil(self.bounds[1] / self.step)
        if self.local.name == "laplace":
            tail = math.ceil(float(self.laplace().scale_steps) * LAPLACE_TAIL)
            return lo - tail, hi + tail
        return lo, hi

    @property
    def magnitude(self) -> int:
        """Largest |coordinate| one report can contribute, in ring units."""
        if self.kind == "numeric":
            return max(abs(u) for u in self.unit_range)
        return 1

    @property
    def sensitivity(self) -> int:
        """L1 change of this block when one respondent's report is replaced (ring units)."""
        if self.kind == "yesno":
            return 1
        if self.kind == "choice":
            return len(self.options) if self.local.name == "unary" else 2
        if self.kind == "multiselect":
            return len(self.options)
        lo, hi = self.unit_range
        return hi - lo


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
    def width(self) -> int:
        """Length of an encoded answer sheet: the questions' blocks, in order."""
        return sum(q.width for q in self.questions)

    def offsets(self) -> list[tuple[Question, slice]]:
        out, start = [], 0
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

    def fail(self, path: tuple, message: str):
        raise SurveyError(message, _dotted(path), line_of(self.lines, path), self.source)

    def table(self, doc: dict, path: tuple, key: str, required: bool = True) -> dict:
        value = doc.get(key)
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            self.fail(path + (key,), "missing table" if value is None else "must be a table")
        return value

    def get(self, doc: dict, path: tuple, key: str, kind, default=None, required: bool = False):
        if key not in doc:
            if required:
                self.fail(path + (key,) if path else (key,), "required field is missing")
            return default
        value = doc[key]
        ok = isinstance(value, kind) and not (kind in (int, (int, float)) and isinstance(value, bool))
        if not ok:
            self.fail(path + (key,), f"must be {_kind_name(kind)}, got {type(value).__name__}")
        return value

    def unknown(self, doc: dict, path: tuple, allowed: tuple[str, ...]) -> None:
        for key in doc:
            if key not in allowed:
                self.fail(path + (key,), f"unknown field; expected one of {', '.join(allowed)}")


def _kind_name(kind) -> str:
    names = {
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


def _dotted(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _is_name(s: str) -> bool:
    return bool(s) and len(s) <= 64 and s.replace("-", "").replace("_", "").replace(".", "").isalnum()


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
    if not _is_name(sid):
        r.fail(("survey", "id"), "must be 1-64 characters of [A-Za-z0-9._-]")
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


def _parse_aggregators(r: _Reader, doc: dict) -> tuple[Aggregator, ...]:
    raw = r.get(doc, (), "aggregator", list, required=True)
    if not 2 <= len(raw) <= MAX_AGGREGATORS:
        r.fail(("aggregator",), f"a survey needs between 2 and {MAX_AGGREGATORS} aggregators, got {len(raw)}")
    out = []
    for i, a in enumerate(raw):
        path = ("aggregator", i)
        r.unknown(a, path, ("name", "address"))
        name = r.get(a, path, "name", str, required=True)
        if not _is_name(name):
            r.fail(path + ("name",), "must be 1-64 characters of [A-Za-z0-9._-]")
        address = r.get(a, path, "address", str, required=True)
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            r.fail(path + ("address",), f"must be host:port, got {address!r}")
        if name in {x.name for x in out}:
            r.fail(path + ("name",), f"duplicate aggregator name {name!r}")
        out.append(Aggregator(name, address))
    return tuple(out)


def _parse_question(r: _Reader, q, i: int) -> Question:
    path = ("question", i)
    if not isinstance(q, dict):
        r.fail(path, "must be a table")
    r.unknown(q, path, ("id", "text", "kind", "options", "bounds", "step", "local", "central"))
    qid = r.get(q, path, "id", str, required=True)
    if not _is_name(qid):
        r.fail(path + ("id",), "must be 1-64 characters of [A-Za-z0-9._-]")
    kind = r.get(q, path, "kind", str, required=True)
    if kind not in KINDS:
        r.fail(path + ("kind",), f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    options: tuple[str, ...] = ()
    bounds = step = None
    if kind in ("choice", "multiselect"):
        raw = r.get(q, path, "options", list, required=True)
        if not 2 <= len(raw) <= MAX_OPTIONS or not all(isinstance(o, str) and o for o in raw):
            r.fail(path + ("options",), f"must be 2 to {MAX_OPTIONS} non-empty strings")
        if len(set(raw)) != len(raw):
            r.fail(path + ("options",), "options must be distinct")
        options = tuple(raw)
    elif "options" in q:
        r.fail(path + ("options",), f"a {kind} question takes no options")
    if kind == "numeric":
        raw = r.get(q, path, "bounds", list, required=True)
        if (
            len(raw) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) for b in raw)
            or raw[0] >= raw[1]
        ):
            r.fail(path + ("bounds",), "must be [lo, hi], two finite numbers with lo < hi")
        bounds = (float(raw[0]), float(raw[1]))
        step = float(r.get(q, path, "step", (int, float), (bounds[1] - bounds[0]) / 1024))
        if not math.isfinite(step) or step <= 0 or step > bounds[1] - bounds[0]:
            r.fail(path + ("step",), "must be a number in (0, hi - lo]")
        step = 2.0 ** (math.frexp(step)[1] - 1)  # a power of two: exact in binary floating point
    else:
        for key in ("bounds", "step"):
            if key in q:
                r.fail(path + (key,), f"only a numeric question takes {key}")
    local = _parse_local(r, q, path, kind, len(options))
    central = _parse_central(r, q, path)
    return Question(qid, kind, r.get(q, path, "text", str, ""), options, bounds, step, local, central)


def _epsilon(r: _Reader, table: dict, path: tuple) -> float:
    eps = r.get(table, path, "epsilon", (int, float), required=True)
    try:
        epsilon_in_range(eps)
    except ValueError as exc:
        r.fail(path + ("epsilon",), str(exc).removeprefix("epsilon "))
    return float(eps)


def _parse_local(r: _Reader, q: dict, path: tuple, kind: str, k: int) -> LocalMechanism:
    t = r.table(q, path, "local", required=False)
    path = path + ("local",)
    r.unknown(t, path, ("mechanism", "epsilon"))
    name = r.get(t, path, "mechanism", str, "none")
    if name not in LOCAL_MECHANISMS[kind]:
        r.fail(
            path + ("mechanism",),
            f"{name!r} does not apply to a {kind} question; choose one of {', '.join(LOCAL_MECHANISMS[kind])}",
        )
    if name == "none":
        if "epsilon" in t:
            r.fail(path + ("epsilon",), "no local mechanism, so no epsilon")
        return LocalMechanism()
    if name == "two_coin":
        if "epsilon" in t and abs(t["epsilon"] - TWO_COIN_EPSILON) > 1e-9:
            r.fail(path + ("epsilon",), f"the two-coin mechanism has epsilon = ln 3 = {TWO_COIN_EPSILON:.6f}")
        return LocalMechanism(name, TWO_COIN_EPSILON)
    return LocalMechanism(name, _epsilon(r, t, path))


def _parse_central(r: _Reader, q: dict, path: tuple) -> CentralNoise:
    t = r.table(q, path, "central", required=False)
    path = path + ("central",)
    r.unknown(t, path, ("mechanism", "epsilon", "delta"))
    name = r.get(t, path, "mechanism", str, "discrete_laplace" if t else "none")
    if name not in CENTRAL_MECHANISMS:
        r.fail(path + ("mechanism",), f"unknown mechanism {name!r}; choose one of {', '.join(CENTRAL_MECHANISMS)}")
    if name == "none":
        if set(t) - {"mechanism"}:
            r.fail(path, "no central mechanism, so no epsilon or delta")
        return CentralNoise()
    delta = float(r.get(t, path, "delta", (int, float), 0.0))
    if not 0 <= delta < 1:
        r.fail(path + ("delta",), f"must be in [0, 1), got {delta!r}")
    if name == "skellam" and delta <= 0:
        r.fail(path + ("delta",), "Skellam noise gives approximate DP: set delta > 0")
    if name == "discrete_laplace" and delta:
        r.fail(path + ("delta",), "discrete Laplace noise is pure DP: leave delta at 0")
    return CentralNoise(name, _epsilon(r, t, path), delta)


def _digest(survey: Survey) -> bytes:
    """SHA-256 over the canonical meaning of the survey (aggregator addresses excluded)."""
    canon = {
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
