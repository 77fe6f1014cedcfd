// The respondent's anonymous admission token: Privacy Pass token type 2 (RFC 9578) over blind RSA
// (RFC 9474, RSABSSA-SHA384-PSS-Deterministic, @cloudflare/blindrsa-ts), bound to one submission.
//
// The page blinds token_input before it leaves the device, so the issuer that signs it (after checking
// the invitation) never sees the nonce or the submission it is bound to, and cannot link the token the
// aggregators later see to the invitation (blindness). The binding is the HTTP API contract's:
//   redemption_context = SHA-256("mpcdp/token/v1" || survey digest || submission id)
//   TokenChallenge     = 0x0002 || u16 len || issuer name || 32 || context || u16 len || origin info
//   token_input        = 0x0002 || nonce (32) || SHA-256(TokenChallenge) || token_key_id
//   TokenRequest       = 0x0002 || last byte of token_key_id || blinded message
import { RSABSSA } from "@cloudflare/blindrsa-ts";
import { concat, hex, unhex } from "./report.js";

const TOKEN_TYPE = Uint8Array.of(0x00, 0x02);
const encoder = new TextEncoder();
const suite = RSABSSA.SHA384.PSS.Deterministic();

const sha256 = async (data) => new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", data));
const u16 = (n) => Uint8Array.of(n >> 8, n & 255);

export function b64url(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
export const unb64url = (text) =>
  Uint8Array.from(atob(text.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));

// DER: the RSASSA-PSS SubjectPublicKeyInfo's key as an rsaEncryption one (what WebCrypto imports).
const RSA_ENCRYPTION = unhex("300d06092a864886f70d0101010500");

function derLength(n) {
  if (n < 0x80) return Uint8Array.of(n);
  const body = [];
  for (let m = n; m > 0; m >>= 8) body.unshift(m & 255);
  return Uint8Array.of(0x80 | body.length, ...body);
}

function derElement(bytes, at) {
  let length = bytes[at + 1];
  let start = at + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + bytes[start + i];
    start += count;
  }
  return { tag: bytes[at], start, end: start + length };
}

function rsaEncryptionSpki(pssSpki) {
  const outer = derElement(pssSpki, 0);
  const algorithm = derElement(pssSpki, outer.start);
  const bits = pssSpki.subarray(algorithm.end, outer.end);
  if (outer.tag !== 0x30 || algorithm.tag !== 0x30 || bits[0] !== 0x03) throw new Error("bad issuer key");
  const body = concat([RSA_ENCRYPTION, bits]);
  return concat([Uint8Array.of(0x30), derLength(body.length), body]);
}

/** The issuer key of the survey document (`issuer` of GET /v1/surveys/{id}), checked and imported. */
export async function issuerKey(issuer) {
  const spki = unb64url(issuer.public_key);
  const keyId = await sha256(spki);
  if (hex(keyId) !== issuer.token_key_id) throw new Error("the issuer key does not match its key id");
  const key = await globalThis.crypto.subtle.importKey(
    "spki",
    rsaEncryptionSpki(spki),
    { name: "RSA-PSS", hash: "SHA-384" },
    true,
    ["verify"],
  );
  return { key, keyId, name: issuer.name, originInfo: issuer.origin_info };
}

/**
 * The issuer key the issuer presents (`issuer` of GET /v1/surveys/{id}), accepted only if it is the key the
 * page was published with (`pinned`, from survey.json): key consistency, so an issuer cannot hand one
 * respondent a key of their own and recognize that respondent's token later.
 */
export async function pinnedIssuer(presented, pinned) {
  if (!pinned || presented.public_key !== pinned.public_key || presented.token_key_id !== pinned.token_key_id) {
    throw new KeyMismatch();
  }
  return issuerKey(presented);
}

export class KeyMismatch extends Error {
  constructor() {
    super("The token issuer shows a different key from the one this page was published with; nothing was sent.");
    this.code = "issuer_key_mismatch";
  }
}

/** The TokenChallenge binding a token to submission `sid` of the survey with `digest`. */
export async function challenge(issuer, digest, sid) {
  const name = encoder.encode(issuer.name);
  const origins = encoder.encode(issuer.originInfo);
  const context = await sha256(concat([encoder.encode("mpcdp/token/v1"), digest, sid]));
  return concat([TOKEN_TYPE, u16(name.length), name, Uint8Array.of(32), context, u16(origins.length), origins]);
}

/** A blinded TokenRequest and what finalizing needs (secret: keep it on the device). */
export async function requestToken(issuer, digest, sid, randomBytes) {
  const tokenChallenge = await challenge(issuer, digest, sid);
  const tokenInput = concat([TOKEN_TYPE, randomBytes(32), await sha256(tokenChallenge), issuer.keyId]);
  const { blindedMsg, inv } = await suite.blind(issuer.key, tokenInput);
  const request = concat([TOKEN_TYPE, Uint8Array.of(issuer.keyId[31]), blindedMsg]);
  return { request, tokenInput, inv };
}

/** The Token from the issuer's blind signature (raises if it does not verify under the issuer key). */
export async function finalizeToken(issuer, tokenInput, inv, response) {
  const authenticator = await suite.finalize(issuer.key, tokenInput, response, inv);
  return concat([tokenInput, authenticator]);
}
