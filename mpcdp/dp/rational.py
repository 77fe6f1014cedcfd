"""Privacy parameters as exact rationals, rounded in the safe direction.

The exact samplers work on rational parameters. A parameter is read as the
number its author wrote (:func:`exact`): decimal text exactly
(``Fraction("0.1")`` = 1/10), a float through its shortest decimal
representation (the float 0.1 is read as 1/10, not as its binary value
0.1000000000000000055...). The ledger charges that same value and noise is
calibrated on it, so a budget of 1.0 holds ten charges of 0.1 and each of
them gets exactly the noise of epsilon = 1/10. Noise scales computed from
epsilon are not always representable, and probabilities such as e^eps / (1 + e^eps) are
irrational. Every conversion here rounds *towards more privacy*: noise scales
and variances up, keep-probabilities of randomized response down, so the
mechanism actually run is at least as private as the one requested.
Numerators and denominators stay below 2^52 so that the vectorised samplers
can work in 64-bit integers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext
from fractions import Fraction

MAX_BITS = 52
PROB_BITS = 64
DECIMAL_DIGITS = 60
_FLOAT_DIGITS = 310


def exact(x: object, name: str) -> Fraction:
    """``x`` as the exact rational it denotes: int or Fraction as is, decimal text exactly,
    a float through its shortest decimal representation (``repr``). TypeError/ValueError name ``name``."""
    if isinstance(x, bool):
        raise TypeError(f"{name} must be a number, not a bool")
    if isinstance(x, (int, Fraction)):
        return Fraction(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ValueError(f"{name} must be finite, got {x!r}")
        return Fraction(repr(float(x)))
    if isinstance(x, str):
        try:
            return Fraction(x.strip())
        except ValueError:
            raise ValueError(f"{name} must be a finite decimal number, got {x!r}") from None
    raise TypeError(f"{name} must be a real number, got {type(x).__name__}")


EPSILON_MIN = Fraction(1, 10**9)
EPSILON_MAX = Fraction(10**6)


def epsilon_in_range(x: object, name: str = "epsilon") -> Fraction:
    """A DP epsilon as an exact Fraction, refused (ValueError naming ``name`` and the range) outside
    [1e-9, 1e6]: below, noise scales leave the ring; above, there is no privacy left to calibrate."""
    eps = exact(x, name)
    if not EPSILON_MIN <= eps <= EPSILON_MAX:
        raise ValueError(f"{name} must be between {float(EPSILON_MIN):g} and {float(EPSILON_MAX):g}, got {x!r}")
    return eps


def magnitude(x: Fraction | int | float) -> str:
    """A rational of any size, printed to 3 significant digits (no float overflow)."""
    with localcontext() as ctx:
        ctx.prec = 10
        return f"{decimal_of(Fraction(x)):.3g}"


def float_at_least(x: Fraction) -> float:
    """The smallest float not below the rational ``x``."""
    r = float(x)
    return r if Fraction(r) >= x else math.nextafter(r, math.inf)


def positive_rational(x: object, name: str) -> Fraction:
    """``x`` (int, float, decimal text, Fraction) as an exact positive Fraction (see :func:`exact`)."""
    value = exact(x, name)
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {x!r}")
    return value


def rational_at_least(x: Fraction, name: str = "parameter") -> Fraction:
    """The smallest-denominator-ish rational >= x with numerator and denominator < 2^52.

    x itself is returned when it already fits. Otherwise x is rounded up on a
    dyadic grid fine enough to keep about 40 significant bits.
    """
    x = Fraction(x)
    if x <= 0:
        raise ValueError(f"{name} must be positive")
    if x.numerator < 1 << MAX_BITS and x.denominator < 1 << MAX_BITS:
        return x
    # choose 2^e so that x * 2^e has about 40 bits, then round the numerator up
    e = 40 - (x.numerator.bit_length() - x.denominator.bit_length())
    e = max(min(e, MAX_BITS - 1), -(MAX_BITS - 1))
    if e >= 0:
        y = Fraction(math.ceil(x * (1 << e)), 1 << e)
    else:
        y = Fraction(math.ceil(x / (1 << -e)) * (1 << -e))
    if y.numerator >= 1 << MAX_BITS or y.denominator >= 1 << MAX_BITS:
        raise ValueError(f"{name} = {magnitude(x)} is outside the supported range")
    return y


def decimal_of(x: Fraction | int | float | str | Decimal) -> Decimal:
    """A Fraction (or int, float) as a Decimal in the current context."""
    return Decimal(x.numerator) / Decimal(x.denominator) if isinstance(x, Fraction) else Decimal(x)


def _dyadic_probability(compute: Callable[[], Decimal], name: str, up: bool) -> Fraction:
    with localcontext() as ctx:
        ctx.prec = DECIMAL_DIGITS
        margin = Decimal(10) ** -40
        p = compute() * (1 + margin if up else 1 - margin)
        t = int((p * (1 << PROB_BITS)).to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR))
    if not 0 < t < 1 << PROB_BITS:
        raise ValueError(f"{name} is too close to 0 or 1 to represent")
    return Fraction(t, 1 << PROB_BITS)


def probability_below(compute: Callable[[], Decimal], name: str) -> Fraction:
    """A dyadic probability T / 2^64 strictly below the real value computed by ``compute``.

    ``compute()`` returns the probability with
    :mod:`decimal` at 60 significant digits (``exp`` is correctly rounded
    there); the result is pulled down by a relative 10^-40 margin that covers
    the arithmetic error, then floored onto the 2^-64 grid.
    """
    return _dyadic_probability(compute, name, up=False)


def probability_above(compute: Callable[[], Decimal], name: str) -> Fraction:
    """Like :func:`probability_below`, rounding up instead (never below the real value)."""
    return _dyadic_probability(compute, name, up=True)


def exp_decimal(x: Fraction | int | float | str) -> Decimal:
    """e^x in the current decimal context (correctly rounded)."""
    return decimal_of(Fraction(x)).exp()


def float_at_most(value: Decimal) -> float:
    """A float never above the decimal ``value``, first pulled down by a relative 10^-40 margin that
    covers the error of the arithmetic that computed it."""
    value = value - abs(value) * (Decimal(10) ** -40)
    r = float(value)
    return r if Decimal(r) <= value else math.nextafter(r, -math.inf)


def _quantize(x: float, digits: int, rounding: str) -> float:
    """x rounded to ``digits`` decimals in the direction ``rounding``, for any finite float x."""
    with localcontext() as ctx:
        ctx.prec = _FLOAT_DIGITS + digits  # every finite float has at most 309 integer digits
        return float(Decimal(x).quantize(Decimal(1).scaleb(-digits), rounding=rounding))


def round_up(x: float | Fraction, digits: int = 6) -> float:
    """x rounded up to ``digits`` decimals; the float returned is never below x.

    A Fraction is rounded exactly, and the float returned, read as the decimal it prints as
    (:func:`exact`), is never below it.
    """
    if isinstance(x, Fraction):
        r = float(Fraction(math.ceil(x * 10**digits), 10**digits))
        return r if exact(r, "x") >= x else math.nextafter(r, math.inf)
    if not math.isfinite(x):
        return x
    r = _quantize(x, digits, ROUND_CEILING)
    return r if r >= x else math.nextafter(r, math.inf)


def round_down(x: float | Fraction, digits: int = 6) -> float:
    """x rounded down to ``digits`` decimals; the float returned is never above x (a Fraction: read as
    the decimal it prints as)."""
    if isinstance(x, Fraction):
        r = float(Fraction(math.floor(x * 10**digits), 10**digits))
        return r if exact(r, "x") <= x else math.nextafter(r, -math.inf)
    if not math.isfinite(x):
        return x
    r = _quantize(x, digits, ROUND_FLOOR)
    return r if r <= x else math.nextafter(r, -math.inf)


def log_up(x: Fraction, digits: int = 9) -> float:
    """ln(x) for a positive rational x, rounded up to ``digits`` decimals (never below the truth)."""
    x = Fraction(x)
    if x <= 0:
        raise ValueError("log of a non-positive number")
    with localcontext() as ctx:
        ctx.prec = DECIMAL_DIGITS
        value = (Decimal(x.numerator) / Decimal(x.denominator)).ln() + Decimal(10) ** -40
        r = float(value.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_CEILING))
    return r if Decimal(r) >= value else math.nextafter(r, math.inf)
