// The survey's HTTP API (notes: the HTTP API contract; services/survey/http.py): the issuer redeems an
// invitation for a blind signature, each aggregator stores one report. A refusal (4xx other than 429)
// is final and carries the server's plain-words message; a network error, a 5xx or a 429 is worth
// retrying (after Retry-After when given).

export class Refusal extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

export class Unavailable extends Error {
  constructor(message, retryAfter = 0) {
    super(message);
    this.retryAfter = retryAfter;
  }
}

async function call(url, body) {
  let response;
  try {
    response = await fetch(url, {
      method: body === undefined ? "GET" : "POST",
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    });
  } catch {
    throw new Unavailable(`${new URL(url).host} cannot be reached`);
  }
  const answer = await response.json().catch(() => ({}));
  if (response.ok) return answer;
  if (response.status === 429 || response.status >= 500) {
    throw new Unavailable(answer.message ?? `${new URL(url).host} is busy`, Number(response.headers.get("retry-after")) || 0);
  }
  throw new Refusal(answer.error ?? `http_${response.status}`, answer.message ?? `refused (HTTP ${response.status})`);
}

const surveyPath = (base, id) => `${base}/v1/surveys/${encodeURIComponent(id)}`;

/** The published survey document (with its issuer key) from the issuer or an aggregator. */
export const fetchSurvey = (base, id) => call(surveyPath(base, id));

/** The issuer's blind signature (base64url) for a token request, paid for with an invitation. */
export const redeem = (base, id, invitation, tokenRequest) =>
  call(`${surveyPath(base, id)}/tokens`, { invitation, token_request: tokenRequest });

/** One aggregator's report: resolves to "accepted" or "duplicate" (already stored: a retry). */
export const submit = async (base, id, body) => (await call(`${surveyPath(base, id)}/reports`, body)).outcome;
