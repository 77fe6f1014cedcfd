// Drives @divviup/prio3 0.8.0 (VDAF draft 08, JavaScript) for mpcdp's interop tests and benchmark.
//
// Reads one JSON request on stdin, writes one JSON answer on stdout:
//   {"op": "shard", "vdaf": {...}, "measurements": [...], "nonces"?: [hex], "rands"?: [hex]}
//       -> {"reports": [{"nonce", "public_share", "input_shares": [hex]}]}
//   {"op": "prepare", "vdaf": {...}, "verify_key": hex, "reports": [...]}
//       -> {"results": [{"ok", "prep_shares"?, "prep_message"?, "error"?}], "agg_shares": [hex],
//           "agg_result", "accepted"}
//   {"op": "bench", "vdaf": {...}, "verify_key": hex, "reports": [...], "warmup_seconds": w, "min_seconds": s}
//       -> {"seconds", "cpu_seconds", "reports"}  (decode + every aggregator's preparation, untimed for
//          warmup_seconds (the JIT warms up), then timed, repeated until min_seconds have passed)
// An array of requests gets an array of answers (one Node start for many checks).
// "vdaf" is {"type": "Count"|"Sum"|"Histogram"|"SumVec", "shares", "bits"?, "length"?, "chunk_length"?}.
//
// The package encodes messages but does not decode them, so this script decodes the draft's input
// share encoding with the package's own field and XOF: the leader's share is two field vectors (and
// a blind); a helper's is two seeds (and a blind), expanded as the draft says.
import { Prio3Count, Prio3Histogram, Prio3Sum, Prio3SumVec } from "@divviup/prio3";
import { Buffer } from "node:buffer";

function makeVdaf(spec) {
  const { type, shares } = spec;
  switch (type) {
    case "Count":
      return new Prio3Count({ shares });
    case "Sum":
      return new Prio3Sum({ shares, bits: spec.bits });
    case "Histogram":
      return new Prio3Histogram({ shares, length: spec.length, chunkLength: spec.chunk_length });
    case "SumVec":
      return new Prio3SumVec({ shares, length: spec.length, bits: spec.bits, chunkLength: spec.chunk_length });
    default:
      throw new Error(`unknown Prio3 type ${type}`);
  }
}

function toJs(type, measurement) {
  if (type === "Count") return Boolean(measurement);
  if (type === "Sum") return BigInt(measurement);
  return measurement;
}

function fromJs(result) {
  if (typeof result === "bigint") return Number(result);
  if (Array.isArray(result)) return result.map(fromJs);
  return result;
}

const hex = (b) => Buffer.from(b).toString("hex");
const unhex = (s) => Buffer.from(s, "hex");

function decodePublicShare(vdaf, bytes) {
  const size = vdaf.xof.seedSize;
  const parts = [];
  if (vdaf.flp.jointRandLen > 0) {
    if (bytes.length !== size * vdaf.shares) throw new Error("public share has the wrong length");
    for (let i = 0; i < vdaf.shares; i++) parts.push(bytes.subarray(i * size, (i + 1) * size));
  } else if (bytes.length !== 0) {
    throw new Error("public share must be empty");
  }
  return { jointRandParts: parts };
}

async function decodeInputShare(vdaf, aggId, bytes) {
  const { flp, xof, proofs } = vdaf;
  const field = flp.field;
  const seed = xof.seedSize;
  const blindLen = flp.jointRandLen > 0 ? seed : 0;
  if (aggId === 0) {
    const measLen = field.encodedSize * flp.measurementLen;
    const proofLen = field.encodedSize * flp.proofLen * proofs;
    if (bytes.length !== measLen + proofLen + blindLen) throw new Error("leader share has the wrong length");
    return {
      measurementShare: field.decode(bytes.subarray(0, measLen)),
      proofsShare: field.decode(bytes.subarray(measLen, measLen + proofLen)),
      blind: bytes.subarray(measLen + proofLen),
    };
  }
  if (bytes.length !== 2 * seed + blindLen) throw new Error("helper share has the wrong length");
  const measurementShare = await xof.expandIntoVec(
    field, bytes.subarray(0, seed), vdaf.domainSeparationTag(1), Buffer.of(aggId), flp.measurementLen);
  const proofsShare = await xof.expandIntoVec(
    field, bytes.subarray(seed, 2 * seed), vdaf.domainSeparationTag(2), Buffer.of(proofs, aggId),
    flp.proofLen * proofs);
  return { measurementShare, proofsShare, blind: bytes.subarray(2 * seed) };
}

// One report through every aggregator's preparation; returns the output shares and messages.
async function prepareReport(vdaf, verifyKey, report) {
  const nonce = unhex(report.nonce);
  const states = [];
  const prepShares = [];
  for (let j = 0; j < vdaf.shares; j++) {
    const publicShare = decodePublicShare(vdaf, unhex(report.public_share));
    const inputShare = await decodeInputShare(vdaf, j, unhex(report.input_shares[j]));
    const { preparationState, preparationShare } = await vdaf.prepareInit(
      verifyKey, j, null, nonce, publicShare, inputShare);
    states.push(preparationState);
    prepShares.push(preparationShare);
  }
  const message = await vdaf.unshardPreparationShares(null, prepShares);
  const outShares = states.map((state) => vdaf.prepareNext(state, message).outputShare);
  return { outShares, prepShares, message };
}

async function handle(request) {
  const vdaf = makeVdaf(request.vdaf);
  let answer;

  if (request.op === "shard") {
    const reports = [];
    for (let i = 0; i < request.measurements.length; i++) {
      const nonce = request.nonces ? unhex(request.nonces[i]) : Buffer.from(crypto.getRandomValues(new Uint8Array(16)));
      const rand = request.rands
        ? unhex(request.rands[i])
        : Buffer.from(crypto.getRandomValues(new Uint8Array(vdaf.randSize)));
      const { publicShare, inputShares } = await vdaf.shardEncoded(
        toJs(request.vdaf.type, request.measurements[i]), nonce, rand);
      reports.push({ nonce: hex(nonce), public_share: hex(publicShare), input_shares: inputShares.map(hex) });
    }
    answer = { reports };
  } else if (request.op === "prepare") {
    const verifyKey = unhex(request.verify_key);
    const results = [];
    const accepted = [];
    for (const report of request.reports) {
      try {
        const { outShares, prepShares, message } = await prepareReport(vdaf, verifyKey, report);
        results.push({
          ok: true,
          prep_shares: prepShares.map((s) => hex(vdaf.encodePreparationShare(s))),
          prep_message: hex(vdaf.encodePreparationMessage(message)),
        });
        accepted.push(outShares);
      } catch (error) {
        results.push({ ok: false, error: String(error.message || error) });
      }
    }
    const aggShares = [];
    for (let j = 0; j < vdaf.shares; j++) aggShares.push(vdaf.aggregate(null, accepted.map((o) => o[j])));
    answer = {
      results,
      accepted: accepted.length,
      agg_shares: aggShares.map((s) => hex(vdaf.encodeAggregatorShare(s))),
      agg_result: accepted.length ? fromJs(vdaf.unshard(null, aggShares, accepted.length)) : null,
    };
  } else if (request.op === "bench") {
    const verifyKey = unhex(request.verify_key);
    const warmStart = process.hrtime.bigint();
    while (Number(process.hrtime.bigint() - warmStart) / 1e9 < (request.warmup_seconds ?? 0)) {
      for (const report of request.reports) await prepareReport(vdaf, verifyKey, report);
    }
    let done = 0;
    const start = process.hrtime.bigint();
    const cpuStart = process.cpuUsage();
    let seconds = 0;
    do {
      for (const report of request.reports) await prepareReport(vdaf, verifyKey, report);
      done += request.reports.length;
      seconds = Number(process.hrtime.bigint() - start) / 1e9;
    } while (seconds < (request.min_seconds ?? 0));
    const cpu = process.cpuUsage(cpuStart);
    answer = { seconds, cpu_seconds: (cpu.user + cpu.system) / 1e6, reports: done };
  } else {
    throw new Error(`unknown op ${request.op}`);
  }
  return answer;
}

async function main() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const request = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  let answer;
  if (Array.isArray(request)) {
    answer = [];
    for (const one of request) answer.push(await handle(one));
  } else {
    answer = await handle(request);
  }
  process.stdout.write(JSON.stringify(answer));
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
