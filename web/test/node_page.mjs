// Drives the survey page's own modules (web/src) in Node for mpcdp's tests: the same code the browser
// bundle runs, with a seeded random source so a test is reproducible.
//
// Reads one JSON request on stdin, writes one JSON answer on stdout:
//   {"op": "randomize", "survey", "answers": {qid: answer}, "n", "seed"}
//       -> {qid: [block, ...]}  (n randomized blocks per question; numeric steps as strings)
//   {"op": "shard", "survey", "answers", "sid": hex, "seed"}
//       -> {"reports": [hex per aggregator]}  (one sheet, randomized then sharded and proved)
//   {"op": "issuer", "presented": {...}, "pinned": {...}}
//       -> {"ok": true, "key_id": hex} or {"ok": false, "error"}  (the page's key-consistency check)
import { createCipheriv, createHash } from "node:crypto";
import { Buffer } from "node:buffer";
import { randomize } from "../src/mechanisms.js";
import { hex, shardSheet, unhex } from "../src/report.js";
import { pinnedIssuer } from "../src/token.js";

// AES-128-CTR keyed by SHA-256(seed): a reproducible stream of uniform words (tests only).
function seeded(seed) {
  const key = createHash("sha256").update(`mpcdp-web-test/${seed}`).digest().subarray(0, 16);
  const cipher = createCipheriv("aes-128-ctr", key, Buffer.alloc(16));
  const bytes = (n) => new Uint8Array(cipher.update(Buffer.alloc(n)));
  return { u64: () => Buffer.from(bytes(8)).readBigUInt64LE(0), bytes };
}

const json = (value) => JSON.stringify(value, (_, v) => (typeof v === "bigint" ? v.toString() : v));

async function handle(request) {
  const { survey, answers } = request;
  const rng = seeded(request.seed ?? 0);
  if (request.op === "randomize") {
    const out = {};
    for (const q of survey.questions) {
      out[q.id] = [];
      for (let i = 0; i < request.n; i++) out[q.id].push(randomize(rng, q, answers[q.id]));
    }
    return out;
  }
  if (request.op === "shard") {
    const blocks = survey.questions.map((q) => randomize(rng, q, answers[q.id]));
    const reports = await shardSheet(survey, unhex(request.sid), blocks, rng.bytes);
    return { blocks, reports: reports.map(hex) };
  }
  if (request.op === "issuer") {
    try {
      const issuer = await pinnedIssuer(request.presented, request.pinned);
      return { ok: true, key_id: hex(issuer.keyId) };
    } catch (error) {
      return { ok: false, error: error.code ?? String(error.message || error) };
    }
  }
  throw new Error(`unknown op ${request.op}`);
}

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
process.stdout.write(json(await handle(JSON.parse(Buffer.concat(chunks).toString("utf8")))));
