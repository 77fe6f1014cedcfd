"""Differential privacy: exact samplers, local and central mechanisms, distributed noise, ledger.

Modules: ``samplers`` (exact integer samplers), ``approximate`` (the few
floating-point samplers, for distributed pieces only), ``rational`` (safe
rounding of parameters), ``guarantee`` (what a release promises),
``laplace`` (Mironov-safe real-valued Laplace on a 2^k grid), ``local``
(randomized response family and estimators), ``estimate`` (estimate with
variance and confidence interval), ``central`` (count, sum, histogram,
exponential mechanism), ``distributed`` (noise pieces under MPC) and
``ledger`` (persistent privacy budget).
"""
