// Local differential privacy on the respondent's device: each question's answer randomized by its
// mechanism, with the exact parameters the survey page's JSON carries (computed by mpcdp in Python,
// `mpcdp survey serve-page`), so the page and mpcdp.survey.local draw from the same distributions.
//
// Each mechanism is epsilon-LDP for any two answers of one respondent:
//   none      the answer as is (numeric: clamped, then randomly rounded onto the step grid, unbiased);
//   two_coin  Warner's randomized response (epsilon = ln 3): truth on tails, else a second fair coin;
//   rr        each bit kept with probability T / 2^64, else flipped;
//   krr       k-ary randomized response: keep the option with probability T / 2^64, else one of the
//             k - 1 others uniformly (Kairouz, Oh and Viswanath 2014);
//   unary     optimized unary encoding: a one-hot vector, the true bit 1 with probability 1/2, each
//             other bit 1 with probability T / 2^64 (Wang et al., USENIX Security 2017);
//   laplace   grid Laplace: unbiased rounding onto the step grid plus exact discrete Laplace noise of
//             scale t / s steps, clamped to the question's report range.
import { bernoulliThreshold, discreteLaplace, uniformBelow, unbiasedRound } from "./sampling.js";

const HALF = 1n << 63n;

const bits = (row) => row.map((b) => (b ? 1 : 0));

// The true answer as a 0/1 row (frequency questions) or a number (numeric), per question kind.
const KINDS = {
  yesno: { truth: (q, answer) => [answer ? 1 : 0] },
  choice: { truth: (q, answer) => q.options.map((o) => (o === answer ? 1 : 0)) },
  multiselect: { truth: (q, answer) => q.options.map((o) => (answer.includes(o) ? 1 : 0)) },
  numeric: { truth: (q, answer) => Math.min(Math.max(Number(answer), q.bounds[0]), q.bounds[1]) },
};

const clampSteps = (q, steps) => {
  const lo = BigInt(q.unit_range[0]);
  const hi = BigInt(q.unit_range[1]);
  return steps < lo ? lo : steps > hi ? hi : steps;
};

// The grid index of a numeric answer (x / step is exact: the step is a power of two).
const onGrid = (rng, q, x) => unbiasedRound(rng, x / q.step);

export const MECHANISMS = {
  none: (rng, q, truth) => (q.kind === "numeric" ? [onGrid(rng, q, truth)] : truth),
  two_coin: (rng, q, truth) =>
    truth.map((t) => {
      const first = rng.u64() >> 63n === 1n;
      const second = rng.u64() >> 63n === 1n;
      return first ? (second ? 1 : 0) : t;
    }),
  rr: (rng, q, truth) => {
    const keep = BigInt(q.local.keep_threshold);
    return truth.map((t) => (bernoulliThreshold(rng, keep) ? t : 1 - t));
  },
  krr: (rng, q, truth) => {
    const k = truth.length;
    const chosen = truth.indexOf(1);
    let reported = chosen;
    if (!bernoulliThreshold(rng, BigInt(q.local.keep_threshold))) {
      reported = Number(uniformBelow(rng, BigInt(k - 1)));
      if (reported >= chosen) reported += 1;
    }
    return truth.map((_, i) => (i === reported ? 1 : 0));
  },
  unary: (rng, q, truth) => {
    const flipOn = BigInt(q.local.flip_on_threshold);
    return bits(truth.map((t) => bernoulliThreshold(rng, t ? HALF : flipOn)));
  },
  laplace: (rng, q, truth) => {
    const noise = discreteLaplace(rng, BigInt(q.local.scale_num), BigInt(q.local.scale_den));
    return [clampSteps(q, onGrid(rng, q, truth) + noise)];
  },
};

/** Is `answer` a valid answer to question `q`? (An unanswered question is not.) */
export function validAnswer(q, answer) {
  if (answer === undefined || answer === null) return false;
  if (q.kind === "yesno") return typeof answer === "boolean";
  if (q.kind === "choice") return q.options.includes(answer);
  if (q.kind === "multiselect") return Array.isArray(answer) && answer.every((a) => q.options.includes(a));
  return typeof answer === "number" && Number.isFinite(answer);
}

/** The question's randomized block: 0/1 numbers, or one BigInt (grid steps) for a numeric question. */
export function randomize(rng, q, answer) {
  const kind = KINDS[q.kind];
  const mechanism = MECHANISMS[q.local.mechanism];
  if (!kind || !mechanism) throw new Error(`the page does not know question ${q.id}'s kind or mechanism`);
  return mechanism(rng, q, kind.truth(q, answer));
}
