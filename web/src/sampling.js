// Exact samplers over uniform 64-bit words: the same distributions as mpcdp/dp/samplers.py.
//
// A random source is an object with `u64()` returning a uniform BigInt in [0, 2^64). In the browser it
// is `cryptoSource()` (crypto.getRandomValues); tests inject a seeded one. No floating-point number takes
// part in a sampling decision, except `bernoulliFloat`, whose probability is itself a float compared
// exactly, 32 bits at a time, as mpcdp.dp.samplers.bernoulli_float_each does.

const TWO64 = 1n << 64n;

/** Uniform 64-bit words from the browser's (or Node's) CSPRNG, fetched 64 at a time. */
export function cryptoSource(crypto = globalThis.crypto) {
  const buffer = new BigUint64Array(64);
  let next = buffer.length;
  return {
    u64() {
      if (next === buffer.length) {
        crypto.getRandomValues(buffer);
        next = 0;
      }
      return buffer[next++];
    },
  };
}

/** Uniform bytes from the same source (for Prio3 randomness, nonces and submission ids). */
export function randomBytes(n, crypto = globalThis.crypto) {
  return crypto.getRandomValues(new Uint8Array(n));
}

/** Bernoulli(T / 2^64): u < T for one uniform word (T a BigInt in [0, 2^64]). */
export function bernoulliThreshold(rng, threshold) {
  return rng.u64() < threshold;
}

/** Exactly uniform integer in [0, bound) for a BigInt bound >= 1 (masked rejection). */
export function uniformBelow(rng, bound) {
  if (bound <= 1n) return 0n;
  const bits = (bound - 1n).toString(2).length;
  const shift = BigInt(64 - bits);
  for (;;) {
    const u = rng.u64() >> shift;
    if (u < bound) return u;
  }
}

/** Exact Bernoulli(num / den) for BigInts 0 <= num <= den: a uniform binary expansion against p's. */
export function bernoulliRational(rng, num, den) {
  if (num >= den) return true;
  let rem = num;
  while (rem !== 0n) {
    const shifted = rem * TWO64;
    const digit = shifted / den;
    rem = shifted % den;
    const u = rng.u64();
    if (u < digit) return true;
    if (u > digit) return false;
  }
  return false;
}

/** Exact Bernoulli(p) for a float p in [0, 1), 32 bits at a time (every step exact in doubles). */
export function bernoulliFloat(rng, p) {
  if (!(p >= 0 && p < 1)) throw new Error("probability must be in [0, 1)");
  let rem = p;
  while (rem > 0) {
    const scaled = rem * 2 ** 32;
    const digit = Math.floor(scaled);
    const u = Number(rng.u64() >> 32n);
    if (u < digit) return true;
    if (u > digit) return false;
    rem = scaled - digit;
  }
  return false;
}

// Bernoulli(exp(-gamma)) for gamma in [0, 1] by the alternating series (Canonne, Kamath and Steinke
// 2020, Algorithm 1): draw A_k ~ Bernoulli(gamma / k) until the first failure; succeed iff that k is odd.
function bernoulliExpNegUnit(rng, num, den) {
  for (let k = 1n; ; k += 1n) {
    if (!bernoulliRational(rng, num, den * k)) return k % 2n === 1n;
  }
}

/** V with P(V = v) = (1 - e^-1) e^-v: Bernoulli(e^-1) successes before the first failure. */
function geometricExpNegOne(rng) {
  let v = 0n;
  while (bernoulliExpNegUnit(rng, 1n, 1n)) v += 1n;
  return v;
}

/**
 * Exact discrete Laplace of scale t / s: P(X = x) proportional to exp(-|x| s / t) (CKS 2020,
 * Algorithm 2), the sampler of mpcdp.dp.samplers.discrete_laplace. Returns a BigInt.
 */
export function discreteLaplace(rng, t, s) {
  for (;;) {
    const u = uniformBelow(rng, t);
    if (!bernoulliExpNegUnit(rng, u, t)) continue;
    const v = geometricExpNegOne(rng);
    const y = (u + t * v) / s;
    const negative = rng.u64() >> 63n === 1n;
    if (negative && y === 0n) continue;
    return negative ? -y : y;
  }
}

/** x to floor or ceil, ceil with probability equal to its fractional part (so E = x): a BigInt. */
export function unbiasedRound(rng, x) {
  const magnitude = Math.abs(x);
  const low = Math.floor(magnitude);
  const rounded = BigInt(low) + (bernoulliFloat(rng, magnitude - low) ? 1n : 0n);
  return x < 0 ? -rounded : rounded;
}
