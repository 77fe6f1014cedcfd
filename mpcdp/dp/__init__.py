"""Differential privacy: privacy loss, exact samplers, local and central mechanisms, distributed noise, ledger.

Modules: ``loss`` (a privacy loss as a value: measure and neighboring relation), ``samplers`` (exact
integer samplers), ``approximate`` (the few floating-point samplers, for distributed pieces and text),
``rational`` (safe rounding of parameters), ``laplace`` (Mironov-safe real-valued Laplace on a 2^k grid),
``local`` (randomized response family and estimators), ``estimate`` (estimate with variance and
confidence interval), ``central`` (count, sum, histogram, exponential mechanism), ``distributed`` (noise
pieces under MPC), ``mechanisms`` (the registry of central mechanisms that calibrate those pieces) and
``ledger`` (persistent privacy budget with reservations).
"""
