"""mpcdp: secure multiparty computation and differential privacy for aggregate statistics.

The library is pure and transport-free: ``ring`` (Z_2^64 and fixed point), ``prg`` (CSPRNG and seed
expansion), ``sharing`` (additive secret sharing), ``registry`` (named classes: statistics, mechanisms,
question kinds), ``names`` (the one rule for names), ``protocol`` (query specs, the statistics registry,
session state machines, distributed noise per query), ``dp`` (privacy loss, mechanisms, samplers,
estimators, distributed noise pieces, budget ledger), ``mpc`` (comparisons under an honest-majority
engine), ``survey`` (secure surveys: question kinds, local randomization, the respondent's client,
verified reports, release), ``vdaf`` (Prio3), ``tokens`` (anonymous tokens) and ``text`` (word-level
metric-DP text sanitization). Network nodes live in ``services``.
"""

__version__ = "0.1.0"
