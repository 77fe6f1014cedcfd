"""An honest-majority MPC engine for comparisons, and the nonlinear statistics built on it.

Scheme: replicated ("CNF") secret sharing among n >= 3 parties, tolerating
t = (n - 1) // 2 semi-honest colluders, over the ring Z_2^64 for arithmetic
and over bits (XOR, 64 to a word) for comparisons, with pseudo-random
resharing from per-share keys. Why this and not Shamir over a prime field
(MPyC's choice):

* the parties already hold additive shares over Z_2^64 (mpcdp.sharing), and
  an additive share *is* a party's part of a replicated sharing: entry is one
  resharing round, with no field conversion and no wrap-around correction;
* numpy computes mod 2^64 natively, and a bit-sliced word carries a whole
  64-bit number, so a comparison is a few dozen vectorised word operations
  instead of big-integer arithmetic in a field of more than 64 + kappa bits;
* comparison needs no masked opening, so there is no statistical security
  parameter at all: what any t parties receive is pseudo-random (AES-CTR
  from keys they do not hold), whatever the inputs.

The price is share count: C(n, t) shares (3, 10, 35 for n = 3, 5, 7), so the
work per operation grows quickly with n; n up to about 9 is practical.
Round counts of every operation are in :mod:`.engine` and :mod:`.compare`.

Modules: :mod:`.access` (who holds which share), :mod:`.engine` (one party:
resharing, multiplication, opening, random bits), :mod:`.compare` (bit
decomposition, <, =, select, max/argmax/min, bits to ring), :mod:`.messages`
(the wire message), :mod:`.session` (one party's run as a state machine for
a transport), :mod:`.memory` (all parties in one process, counting rounds and
bytes), :mod:`.statistics` (threshold, max/argmax/min, second price, noisy
argmax, DP quantile).
"""
