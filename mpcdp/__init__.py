"""mpcdp: secure multiparty computation and differential privacy for aggregate statistics.

The library is pure and transport-free: ``ring`` (Z_2^64 and fixed point),
``prg`` (CSPRNG and seed expansion), ``sharing`` (additive secret sharing),
``protocol`` (query specs and session state machines), ``dp`` (mechanisms,
samplers, estimators, distributed noise, budget ledger) and ``text``
(word-level metric-DP text sanitisation). Network nodes live in ``services``.
"""

__version__ = "0.1.0"
