"""The JSON audit line's time text is what ``datetime.isoformat(timespec="milliseconds")`` wrote before the
formatter cached the second's text, also at half-millisecond stamps (review-hotpath finding 9: the product
``created * 1e6`` was rounded, putting e.g. 1777009214.2209995 at .221 instead of .220)."""

import datetime as dt
import json
import logging
import random

from services import audit


def test_the_json_time_text_is_datetimes_at_half_millisecond_stamps():
    formatter = audit._JsonLines()
    rng = random.Random(9)
    stamps = [1777009214.2209995, 1777009214.9999995, 1777009214.0004995]
    stamps += [round(rng.uniform(1.7e9, 1.9e9), 3) - 0.0005 + rng.choice([0, 1e-7, -1e-7]) for _ in range(5_000)]
    differing = []
    for t in stamps:
        record = logging.LogRecord("mpcdp", logging.INFO, "x", 0, "m", (), None)
        record.created = t
        expected = dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds")
        if json.loads(formatter.format(record))["time"] != expected:
            differing.append(t)
    assert differing == []
