"""The generic fully linear proof (FLP) of VDAF draft 08, section 7.3 (BBCGGI19, Theorem 4.3).

A validity circuit ``C`` maps an encoded measurement (and joint randomness) to
a field element that is zero exactly when the measurement is valid; its only
non-affine operations are calls to *gadgets* (small polynomials: Mul,
PolyEval, ParallelSum). The prover interpolates, for each gadget, one *wire
polynomial* per gadget input through a random seed and the inputs of every
call, and sends the wire seeds and the *gadget polynomial* ``G(wire polys)``.
A verifier holding only an additive share of measurement and proof can run
the circuit linearly (each gadget call answered from the gadget polynomial),
and evaluate wire and gadget polynomials at a random point ``t``; the shares
of these values, summed across aggregators, let anyone check that the gadget
polynomial is consistent (``G(wires(t)) == gadget_poly(t)``) and the circuit
output is zero. Soundness: a false claim passes with probability at most
``degree * calls / (|F| - calls)`` per gadget plus the circuit's own error;
zero knowledge: the verifier shares reveal nothing beyond validity while
``t`` is not a node (``t^P != 1``, refused otherwise).

``query`` and ``decide_columns`` are written once for two representations:
field elements as ints (one report), or as numpy object arrays holding one
element per report (many reports at once: the arithmetic loops run in numpy,
not in the interpreter).

Polynomials are handled through values at roots of unity: wire polynomials are
interpolated on the ``P``-th roots (``P = next_power_of_two(1 + calls)``), and
the gadget polynomial is obtained by evaluating the wires on ``N``-th roots of
unity (``N >= degree * (P - 1) + 1``), applying the gadget pointwise and
interpolating back; this gives exactly the draft's ``gadget.eval_poly``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .errors import VerifyError
from .field import Elem, Field, next_power_of_two


class Gadget(Protocol):
    """A polynomial map of ``arity`` field elements, of total degree ``degree``."""

    @property
    def arity(self) -> int: ...

    @property
    def degree(self) -> int: ...

    def eval(self, p: int, inputs: list[Elem]) -> Elem: ...


@dataclass(frozen=True)
class Mul:
    """``x * y`` (draft 08, section 7.3.1.1)."""

    arity: int = 2
    degree: int = 2

    def eval(self, p: int, inputs: list[Elem]) -> Elem:
        return inputs[0] * inputs[1] % p


@dataclass(frozen=True)
class PolyEval:
    """A fixed univariate polynomial ``sum(coeffs[i] * x**i)`` (draft 08, section 7.3.1.2)."""

    coeffs: tuple[int, ...]
    arity: int = 1

    @property
    def degree(self) -> int:
        nonzero = [i for i, c in enumerate(self.coeffs) if c]
        return nonzero[-1] if nonzero else 0

    def eval(self, p: int, inputs: list[Elem]) -> Elem:
        x, acc = inputs[0], 0
        for c in reversed(self.coeffs):
            acc = (acc * x + c) % p
        return acc


@dataclass(frozen=True)
class ParallelSum:
    """``sum(sub(inputs[i*a:(i+1)*a]) for i < count)`` (draft 08, section 7.3.1.3)."""

    sub: Gadget
    count: int

    @property
    def arity(self) -> int:
        return self.sub.arity * self.count

    @property
    def degree(self) -> int:
        return self.sub.degree

    def eval(self, p: int, inputs: list[Elem]) -> Elem:
        if isinstance(self.sub, Mul):  # the common case, inlined: sum of pairwise products
            return sum(x * y for x, y in zip(inputs[0::2], inputs[1::2], strict=True)) % p
        a = self.sub.arity
        return sum(self.sub.eval(p, inputs[i * a : (i + 1) * a]) for i in range(self.count)) % p


GadgetCall = Callable[[int, list[Elem]], Elem]
"""How a circuit calls its gadgets: ``call(gadget_index, inputs) -> output``."""


class Circuit(Protocol):
    """A validity circuit (draft 08, section 7.3.2) and its measurement encoding."""

    field: Field
    gadgets: list[Gadget]
    gadget_calls: list[int]
    MEAS_LEN: int
    OUTPUT_LEN: int
    JOINT_RAND_LEN: int

    def eval(self, meas: list[Elem], joint_rand: list[Elem], num_shares: int, call: GadgetCall) -> Elem: ...
    def encode(self, measurement: Any) -> list[int]: ...
    def truncate(self, meas: list[Elem]) -> list[Elem]: ...
    def decode(self, output: list[int], num_measurements: int) -> Any: ...


class FlpGeneric:
    """Prove, query and decide for one circuit (draft 08, section 7.3.3)."""

    def __init__(self, circuit: Circuit):
        self.circuit = circuit
        self.field = circuit.field
        self.MEAS_LEN = circuit.MEAS_LEN
        self.OUTPUT_LEN = circuit.OUTPUT_LEN
        self.JOINT_RAND_LEN = circuit.JOINT_RAND_LEN
        self.PROVE_RAND_LEN = sum(g.arity for g in circuit.gadgets)
        self.QUERY_RAND_LEN = len(circuit.gadgets)
        # per gadget: (arity, degree, calls, P = wire polynomial length, gadget polynomial length)
        self._shapes: list[tuple[int, int, int, int, int]] = []
        for g, calls in zip(circuit.gadgets, circuit.gadget_calls, strict=True):
            wire_len = next_power_of_two(1 + calls)
            self._shapes.append((g.arity, g.degree, calls, wire_len, g.degree * (wire_len - 1) + 1))
        self.PROOF_LEN = sum(arity + poly_len for arity, _, _, _, poly_len in self._shapes)
        self.VERIFIER_LEN = 1 + sum(arity + 1 for arity, *_ in self._shapes)

    # --- prover -----------------------------------------------------------------------------------
    def prove(self, meas: list[int], prove_rand: list[int], joint_rand: list[int]) -> list[int]:
        field, p, gadgets = self.field, self.field.modulus, self.circuit.gadgets
        wires: list[list[list[int]]] = []
        offset = 0
        for arity, *_ in self._shapes:
            wires.append([[seed] for seed in prove_rand[offset : offset + arity]])
            offset += arity

        def call(index: int, inputs: list[Elem]) -> Elem:
            for wire, x in zip(wires[index], inputs, strict=True):
                wire.append(x)
            return gadgets[index].eval(p, inputs)

        self.circuit.eval(meas, joint_rand, 1, call)
        proof: list[int] = []
        for gadget, (_, _, _, wire_len, poly_len), gadget_wires in zip(gadgets, self._shapes, wires, strict=True):
            n = next_power_of_two(poly_len)
            on_n_roots = []
            for wire in gadget_wires:
                coeffs = field.ntt(wire + [0] * (wire_len - len(wire)), inverse=True)
                on_n_roots.append(field.ntt(coeffs + [0] * (n - wire_len)))
            outputs = [gadget.eval(p, [w[k] for w in on_n_roots]) for k in range(n)]
            proof += [wire[0] for wire in gadget_wires]
            proof += field.ntt(outputs, inverse=True)[:poly_len]
        return proof

    # --- verifier ----------------------------------------------------------------------------------
    def query(
        self, meas: list[int], proof: list[int], query_rand: list[int], joint_rand: list[int], num_shares: int
    ) -> list[int]:
        field, p = self.field, self.field.modulus
        seeds: list[list[Elem]] = []
        polys: list[list[Elem]] = []
        outputs: list[list[Elem]] = []
        wires: list[list[list[Elem]]] = []
        offset = 0
        for arity, _, _, wire_len, poly_len in self._shapes:
            seeds.append(proof[offset : offset + arity])
            poly = proof[offset + arity : offset + arity + poly_len]
            offset += arity + poly_len
            polys.append(poly)
            # the gadget's output at call k is gadget_poly(alpha^k): reduce mod x^P - 1, then an NTT
            folded: list[Elem] = [0] * wire_len
            for i, c in enumerate(poly):
                folded[i % wire_len] += c
            outputs.append(field.ntt(folded))
            wires.append([[seed] for seed in seeds[-1]])
        counters = [0] * len(self._shapes)

        def call(index: int, inputs: list[Elem]) -> Elem:
            for wire, x in zip(wires[index], inputs, strict=True):
                wire.append(x)
            counters[index] += 1
            return outputs[index][counters[index]]

        verifier = [self.circuit.eval(meas, joint_rand, num_shares, call)]
        for (_, _, calls, wire_len, _), t, gadget_wires, poly in zip(
            self._shapes, query_rand, wires, polys, strict=True
        ):
            degenerate = field.power(t, wire_len) == 1
            if degenerate is True or (isinstance(degenerate, np.ndarray) and degenerate.any()):
                raise VerifyError("the query point is a root of unity: it would leak gadget outputs")
            basis = field.lagrange_at(wire_len, t, 1 + calls)  # wire values past the calls are 0
            for wire in gadget_wires:
                verifier.append(sum(x * y for x, y in zip(wire, basis, strict=False)) % p)
            verifier.append(field.poly_eval(poly, t))
        return verifier

    def decide(self, verifier: list[int]) -> bool:
        """True iff the (summed) verifier shows a valid measurement."""
        return bool(self.decide_columns(verifier))

    def decide_columns(self, verifier: list[Elem]) -> Any:
        """:meth:`decide` of many reports at once: entries are object arrays, one element per
        report; returns a boolean array (or a bool for plain ints)."""
        if len(verifier) != self.VERIFIER_LEN:
            raise VerifyError(f"a verifier has {self.VERIFIER_LEN} elements, got {len(verifier)}")
        p, offset = self.field.modulus, 1
        ok = verifier[0] == 0
        for gadget, (arity, *_) in zip(self.circuit.gadgets, self._shapes, strict=True):
            x, y = verifier[offset : offset + arity], verifier[offset + arity]
            offset += arity + 1
            ok = ok & (gadget.eval(p, x) == y)
        return ok

    # --- the circuit's encoding ------------------------------------------------------------------
    def encode(self, measurement: Any) -> list[int]:
        return self.circuit.encode(measurement)

    def truncate(self, meas: list[int]) -> list[int]:
        return self.circuit.truncate(meas)

    def decode(self, output: list[int], num_measurements: int) -> Any:
        return self.circuit.decode(output, num_measurements)
