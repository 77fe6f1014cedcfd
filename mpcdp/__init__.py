"""mpcdp: secure multiparty computation and differential privacy for aggregate statistics.

The library is pure and transport-free: ``ring`` (Z_2^64 and fixed point),
``prg`` (CSPRNG and seed expansion), ``sharing`` (additive secret sharing),
``protocol`` (query specs, statistics as vectors, session state machines,
distributed noise per query), ``dp`` (mechanisms, samplers, estimators,
distributed noise pieces, budget ledger), ``survey`` and ``client`` (secure
surveys: local randomisation, intersection, debiasing; the respondent's
client) and ``text`` (word-level metric-DP text sanitisation). Network nodes
live in ``services``.
"""

__version__ = "0.1.0"
