// Drives @cloudflare/blindrsa-ts 0.4.4 (RFC 9474 blind RSA, JavaScript) for mpcdp's token interop tests
// and benchmark.
//
// Reads a JSON list of requests on stdin, writes the list of answers on stdout. Keys come from Python
// as hex DER: "spki" (rsaEncryption SubjectPublicKeyInfo) and "pkcs8"; "variant" is an RFC 9474 name.
//   {"op": "blind", "variant", "spki", "messages": [hex]}      -> [{"prepared", "blinded", "inv"}]
//   {"op": "sign", "variant", "pkcs8", "blinded": [hex]}       -> [hex blind signature]
//   {"op": "finalize", "variant", "spki", "items": [{"prepared", "blind_sig", "inv"}]}
//                                                              -> [{"ok", "sig"?, "error"?}]
//   {"op": "verify", "variant", "spki", "items": [{"prepared", "sig"}]} -> [bool]
//   {"op": "bench", "variant", "spki", "pkcs8", "seconds"}     -> {"sign_per_s", "verify_per_s"}
//       (one thread, each measured for `seconds` after a short warm-up)
import { RSABSSA } from "@cloudflare/blindrsa-ts";
import { Buffer } from "node:buffer";
import { webcrypto } from "node:crypto";

const subtle = webcrypto.subtle;
const hex = (b) => Buffer.from(b).toString("hex");
const unhex = (s) => new Uint8Array(Buffer.from(s, "hex"));
const ALG = { name: "RSA-PSS", hash: "SHA-384" };

const SUITES = {
  "RSABSSA-SHA384-PSS-Randomized": RSABSSA.SHA384.PSS.Randomized,
  "RSABSSA-SHA384-PSSZERO-Randomized": RSABSSA.SHA384.PSSZero.Randomized,
  "RSABSSA-SHA384-PSS-Deterministic": RSABSSA.SHA384.PSS.Deterministic,
  "RSABSSA-SHA384-PSSZERO-Deterministic": RSABSSA.SHA384.PSSZero.Deterministic,
};

function suite(name) {
  const make = SUITES[name];
  if (!make) throw new Error(`unknown variant ${name}`);
  return make();
}

const publicKey = (spki) => subtle.importKey("spki", unhex(spki), ALG, true, ["verify"]);
const privateKey = (pkcs8) => subtle.importKey("pkcs8", unhex(pkcs8), ALG, true, ["sign"]);

async function rate(fn, seconds) {
  const warm = Date.now() + 300;
  while (Date.now() < warm) await fn();
  let count = 0;
  const start = process.hrtime.bigint();
  const stop = start + BigInt(Math.round(seconds * 1e9));
  while (process.hrtime.bigint() < stop) {
    await fn();
    count += 1;
  }
  return count / (Number(process.hrtime.bigint() - start) / 1e9);
}

async function answer(req) {
  const s = suite(req.variant);
  switch (req.op) {
    case "blind": {
      const pk = await publicKey(req.spki);
      const out = [];
      for (const m of req.messages) {
        const prepared = s.prepare(unhex(m));
        const { blindedMsg, inv } = await s.blind(pk, prepared);
        out.push({ prepared: hex(prepared), blinded: hex(blindedMsg), inv: hex(inv) });
      }
      return out;
    }
    case "sign": {
      const sk = await privateKey(req.pkcs8);
      const out = [];
      for (const b of req.blinded) out.push(hex(await s.blindSign(sk, unhex(b))));
      return out;
    }
    case "finalize": {
      const pk = await publicKey(req.spki);
      const out = [];
      for (const it of req.items) {
        try {
          const sig = await s.finalize(pk, unhex(it.prepared), unhex(it.blind_sig), unhex(it.inv));
          out.push({ ok: true, sig: hex(sig) });
        } catch (e) {
          out.push({ ok: false, error: String(e.message || e) });
        }
      }
      return out;
    }
    case "verify": {
      const pk = await publicKey(req.spki);
      const out = [];
      for (const it of req.items) out.push(await s.verify(pk, unhex(it.sig), unhex(it.prepared)));
      return out;
    }
    case "bench": {
      const pk = await publicKey(req.spki);
      const sk = await privateKey(req.pkcs8);
      const prepared = s.prepare(webcrypto.getRandomValues(new Uint8Array(98)));
      const { blindedMsg, inv } = await s.blind(pk, prepared);
      const blindSig = await s.blindSign(sk, blindedMsg);
      const sig = await s.finalize(pk, prepared, blindSig, inv);
      const sign_per_s = await rate(() => s.blindSign(sk, blindedMsg), req.seconds);
      const verify_per_s = await rate(() => s.verify(pk, sig, prepared), req.seconds);
      return { sign_per_s, verify_per_s };
    }
    default:
      throw new Error(`unknown op ${req.op}`);
  }
}

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const requests = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const answers = [];
for (const r of requests) answers.push(await answer(r));
process.stdout.write(JSON.stringify(answers));
