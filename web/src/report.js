// An answer sheet as Prio3 reports (VDAF draft 08, @divviup/prio3 0.8.0), one per aggregator, exactly
// as mpcdp/survey/proved.py's shard_sheet makes them: for each question, in survey order, the public
// share followed by aggregator j's input share; question i's nonce is
// SHA-256("mpcdp/prio3" || survey digest || submission id || uint16_be(i))[:16], which the aggregators
// recompute, so a report cannot be moved to another survey, question or submission.
import { Prio3Count, Prio3Histogram, Prio3Sum, Prio3SumVec } from "@divviup/prio3";

// Circuit -> its Prio3 instance and the measurement of a randomized block (tests/vectors/survey_prio3.json).
const CIRCUITS = {
  Count: {
    make: (c, shares) => new Prio3Count({ shares }),
    measurement: (block) => block[0] === 1,
  },
  Histogram: {
    make: (c, shares) => new Prio3Histogram({ shares, length: c.length, chunkLength: c.chunk_length }),
    measurement: (block) => block.indexOf(1),
  },
  SumVec: {
    make: (c, shares) =>
      new Prio3SumVec({ shares, length: c.length, bits: c.bits, chunkLength: c.chunk_length }),
    measurement: (block) => block.map(Number),
  },
  Sum: {
    make: (c, shares) => new Prio3Sum({ shares, bits: c.bits }),
    measurement: (block, q) => BigInt(block[0]) - BigInt(q.unit_range[0]),
  },
};

const instances = new Map();

function circuit(q, shares) {
  const kind = CIRCUITS[q.circuit.type];
  if (!kind) throw new Error(`the page does not know the circuit ${q.circuit.type}`);
  const key = `${q.id}/${shares}`;
  if (!instances.has(key)) instances.set(key, kind.make(q.circuit, shares));
  return { vdaf: instances.get(key), measurement: kind.measurement };
}

const encoder = new TextEncoder();

export const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
export const unhex = (s) => new Uint8Array(s.match(/../g)?.map((h) => parseInt(h, 16)) ?? []);

export function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Question `index`'s nonce for submission `sid` (16 bytes). */
export async function nonce(digest, sid, index) {
  const data = concat([encoder.encode("mpcdp/prio3"), digest, sid, Uint8Array.of(index >> 8, index & 255)]);
  return new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", data)).slice(0, 16);
}

/**
 * One respondent's reports: a Uint8Array per aggregator, in the survey's order.
 * `blocks[i]` is question i's randomized block (mechanisms.randomize); `randomBytes(n)` gives fresh bytes.
 */
export async function shardSheet(survey, sid, blocks, randomBytes) {
  const shares = survey.aggregators.length;
  const digest = unhex(survey.digest);
  const parts = survey.aggregators.map(() => []);
  for (const [i, q] of survey.questions.entries()) {
    const { vdaf, measurement } = circuit(q, shares);
    const rand = randomBytes(vdaf.randSize);
    const { publicShare, inputShares } = await vdaf.shardEncoded(
      measurement(blocks[i], q),
      await nonce(digest, sid, i),
      rand,
    );
    inputShares.forEach((share, j) => parts[j].push(new Uint8Array(publicShare), new Uint8Array(share)));
  }
  return parts.map(concat);
}
