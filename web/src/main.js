// The survey page: renders the survey's questions, randomizes the answers on this device, proves and
// splits them (one Prio3 report per aggregator), redeems the invitation for an anonymous token, uploads
// each report to its aggregator with the token, and shows a receipt. The outbox (localStorage) holds the
// submission from before anything leaves the device until every aggregator has acknowledged it.
import { Refusal, Unavailable, fetchSurvey, redeem, submit } from "./api.js";
import { el, questionFields, readAnswers } from "./form.js";
import { randomize } from "./mechanisms.js";
import { Outbox } from "./outbox.js";
import { hex, shardSheet, unhex } from "./report.js";
import { cryptoSource, randomBytes } from "./sampling.js";
import { KeyMismatch, b64url, finalizeToken, pinnedIssuer, requestToken, unb64url } from "./token.js";

const RETRIES = 6; // about 30 s of backoff before the page asks the respondent to retry later
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const MECHANISM_WORDS = {
  none: "sent as given (no randomization)",
  two_coin: "randomized response: a coin decides whether your true answer or a random one is sent",
  rr: "randomized response: each box is flipped with a set probability",
  krr: "randomized response: with a set probability another option is sent instead",
  unary: "randomized response over the options (optimized unary encoding)",
  laplace: "random noise is added to your number",
};

const list = (names) =>
  names.length < 2 ? names.join("") : `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;

// The headline promise, in plain words; it names what is *not* randomized when a question has no local mechanism.
function headline(survey) {
  const plain = survey.questions.filter((q) => q.local.mechanism === "none");
  if (plain.length === 0) {
    return "Your answer is randomized on this device before it leaves; no single organisation can see even the randomized answer.";
  }
  if (plain.length === survey.questions.length) {
    return "Your answers are split on this device before they leave; no single organisation can see them. (This survey does not randomize them.)";
  }
  return (
    "Your answers are randomized on this device before they leave (except: " +
    `${plain.map((q) => q.text).join("; ")}); no single organisation can see even the randomized answers.`
  );
}

function protectionNotice(survey) {
  const names = survey.aggregators.map((a) => a.name);
  return el(
    "section",
    { class: "protected", "aria-labelledby": "protected-title" },
    el("h2", { id: "protected-title", class: "visually-hidden" }, "How your answers are protected"),
    el("p", {}, el("strong", { id: "promise" }, headline(survey))),
    el(
      "p",
      {},
      `It is split into ${names.length} pieces, one for each of ${list(names)}. A piece alone looks like random ` +
        "noise; only all of them together give totals over everyone who answered.",
    ),
    el(
      "p",
      {},
      "Your invitation code is exchanged for an anonymous token: the organisations can check that you were " +
        "invited and answer once, but not which invitation you used.",
    ),
    el(
      "details",
      {},
      el("summary", {}, "What happens to each answer"),
      el(
        "ul",
        {},
        survey.questions.map((q) =>
          el(
            "li",
            {},
            `${q.text}: ${MECHANISM_WORDS[q.local.mechanism] ?? q.local.mechanism}` +
              (q.local.epsilon ? ` (local privacy ε = ${q.local.epsilon.toFixed(2)}).` : "."),
          ),
        ),
      ),
      el("p", {}, "A proof travels with each answer showing it is a valid answer, without revealing it."),
    ),
  );
}

function invitationFromAddress() {
  const params = new URLSearchParams(location.hash.slice(1) || location.search);
  const code = params.get("invitation") ?? "";
  if (code) history.replaceState(null, "", location.pathname); // keep the code out of history and screenshots
  return code;
}

class SurveyPage {
  constructor(survey, root) {
    this.survey = survey;
    this.root = root;
    this.outbox = new Outbox(survey.id);
    this.endpoints = survey.endpoints ?? {};
    this.issuerPromise = null;
  }

  issuer() {
    this.issuerPromise ??= (async () => {
      const doc = await this.retry(() => fetchSurvey(this.endpoints.issuer, this.survey.id));
      if (doc.digest !== this.survey.digest) {
        throw new Refusal("digest_mismatch", "This page's survey differs from the organisations' one: reload the page.");
      }
      if (!doc.issuer) throw new Refusal("no_issuer", "This survey does not admit respondents by invitation.");
      try {
        return await pinnedIssuer(doc.issuer, this.survey.issuer_key);
      } catch (error) {
        throw error instanceof KeyMismatch ? new Refusal(error.code, error.message) : error;
      }
    })();
    this.issuerPromise.catch(() => (this.issuerPromise = null));
    return this.issuerPromise;
  }

  render() {
    const survey = this.survey;
    document.title = survey.title;
    this.root.replaceChildren(
      el("h1", { id: "title" }, survey.title),
      protectionNotice(survey),
    );
    const receipt = this.outbox.receipt();
    if (receipt) {
      this.showReceipt(receipt, true);
      return;
    }
    this.status = el("p", { class: "status", role: "status", "aria-live": "polite" });
    this.button = el("button", { type: "submit" }, "Send my answers");
    this.invitation = el("input", {
      type: "text",
      id: "invitation",
      name: "invitation",
      autocomplete: "off",
      autocapitalize: "none",
      spellcheck: "false",
      required: true,
      value: invitationFromAddress(),
    });
    this.form = el(
      "form",
      { novalidate: true, "aria-describedby": "protected-title" },
      questionFields(survey),
      el(
        "fieldset",
        {},
        el("legend", {}, "Your invitation"),
        el("label", { class: "field", for: "invitation" }, "Invitation code"),
        this.invitation,
        el("p", { class: "error", id: "invitation-error", role: "alert", hidden: true }),
      ),
      this.button,
      this.status,
    );
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      // a submission already saved on this device is resent as it is, never replaced by a new one
      if (this.outbox.pending()) this.deliver("Sending the answers saved on this device…");
      else this.send();
    });
    window.addEventListener("online", () => {
      if (this.outbox.pending() && !this.button.disabled) this.deliver("Back online: sending your saved answers…");
    });
    this.root.append(this.form);
    this.root.removeAttribute("aria-busy");
    this.prepareToken();
    if (this.outbox.pending()) this.deliver("Sending the answers saved on this device…");
  }

  // While the respondent reads the questions: fetch the issuer key, pick the submission id and blind its
  // token request (blinding a 2048-bit RSA message costs a few hundred ms in JavaScript), so the click does
  // not wait for it. data-issuer="ready" tells tests and benchmarks. Used once; a refusal prepares anew.
  prepareToken() {
    const prepared = (async () => {
      const issuer = await this.issuer();
      const sid = randomBytes(16);
      return { sid, ...(await requestToken(issuer, unhex(this.survey.digest), sid, randomBytes)) };
    })();
    this.prepared = prepared;
    prepared.then(
      () => this.form && (this.form.dataset.issuer = "ready"),
      () => this.prepared === prepared && (this.prepared = null),
    );
  }

  say(text, error = false) {
    this.status.textContent = text;
    this.status.classList.toggle("error", error);
  }

  async retry(fn) {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (error) {
        if (!(error instanceof Unavailable) || attempt >= RETRIES) throw error;
        const backoff = Math.min(500 * 2 ** attempt, 8000) * (0.5 + Math.random());
        await sleep(Math.max(backoff, error.retryAfter * 1000));
      }
    }
  }

  async send() {
    const started = performance.now();
    const answers = readAnswers(this.form, this.survey);
    const invitation = this.invitation.value.trim();
    const invitationError = this.form.querySelector("#invitation-error");
    invitationError.hidden = invitation !== "";
    invitationError.textContent = invitation ? "" : "Please enter the invitation code you received.";
    if (!answers) return this.say("Some questions are not answered yet.", true);
    if (!invitation) return this.invitation.focus();
    this.button.disabled = true;
    try {
      this.say("Randomizing and protecting your answers on this device…");
      const survey = this.survey;
      if (!this.prepared) this.prepareToken();
      const { sid, request, tokenInput, inv } = await this.prepared;
      this.prepared = null; // one submission id, one token request: never reused
      this.stages = { blinded: performance.now() - started };
      const rng = cryptoSource();
      const blocks = survey.questions.map((q) => randomize(rng, q, answers[q.id]));
      const reports = await shardSheet(survey, sid, blocks, randomBytes);
      this.stages.proved = performance.now() - started;
      this.outbox.save({
        sid: hex(sid),
        reports: reports.map(b64url),
        bytes: reports.reduce((n, r) => n + r.length, 0),
        invitation,
        request: b64url(request),
        tokenInput: hex(tokenInput),
        inv: hex(inv),
        delivered: {},
      });
      this.started = started;
    } catch (error) {
      this.button.disabled = false;
      return this.say(error.message || String(error), true);
    }
    await this.deliver("Sending your protected answers…");
  }

  async deliver(message) {
    const survey = this.survey;
    this.button.disabled = true;
    this.say(message);
    try {
      let entry = this.outbox.pending();
      if (!entry.token) {
        const issuer = await this.issuer();
        const answer = await this.retry(() => redeem(this.endpoints.issuer, survey.id, entry.invitation, entry.request));
        const token = await finalizeToken(issuer, unhex(entry.tokenInput), unhex(entry.inv), unb64url(answer.token_response));
        entry = this.outbox.update({ token: b64url(token), invitation: null, tokenInput: null, inv: null, request: null });
        if (this.stages) this.stages.token = performance.now() - this.started;
      }
      await Promise.all(
        survey.aggregators.map(async (aggregator, j) => {
          if (entry.delivered?.[aggregator.name]) return;
          const body = { digest: survey.digest, submission_id: entry.sid, report: entry.reports[j], token: entry.token };
          const outcome = await this.retry(() => submit(this.endpoints.aggregators[aggregator.name], survey.id, body));
          this.outbox.acknowledge(aggregator.name, outcome);
        }),
      );
      const done = this.outbox.pending();
      const receipt = this.outbox.finish({
        survey: survey.id,
        submission: done.sid,
        stored_by: Object.fromEntries(survey.aggregators.map((a) => [a.name, done.delivered[a.name]])),
        bytes: done.bytes,
        at: new Date().toISOString(),
        elapsed_ms: this.started === undefined ? null : Math.round(performance.now() - this.started),
      });
      this.showReceipt(receipt, false);
    } catch (error) {
      this.button.disabled = false;
      if (error instanceof Refusal) {
        this.outbox.discard(); // never admissible: the respondent may try again with another invitation
        this.prepareToken();
        this.say(`Not accepted: ${error.message}`, true);
        this.status.dataset.refusal = error.code;
      } else {
        this.say(
          `${error.message || error}. Your protected answers are saved on this device; press the button ` +
            "again or come back later and they will be sent (they will not be counted twice).",
          true,
        );
      }
    }
  }

  showReceipt(receipt, earlier) {
    const code = receipt.submission.match(/.{4}/g).join(" ");
    const box = el(
      "section",
      { class: "receipt", id: "receipt", tabindex: "-1", "aria-labelledby": "receipt-title" },
      el("h2", { id: "receipt-title" }, earlier ? "You have already answered this survey" : "Thank you: your answers were received"),
      el("p", {}, "Receipt code: ", el("code", { id: "receipt-code" }, code)),
      el(
        "ul",
        {},
        Object.entries(receipt.stored_by).map(([name, outcome]) =>
          el("li", {}, `${name}: stored${outcome === "duplicate" ? " (confirmed again)" : ""}`),
        ),
      ),
      el(
        "p",
        {},
        `${receipt.bytes.toLocaleString("en")} bytes of randomized, split and proved answers left this device on ` +
          `${new Date(receipt.at).toLocaleString()}. Your answers as you typed them never did.`,
      ),
    );
    if (receipt.elapsed_ms !== null && !earlier) {
      box.dataset.elapsedMs = String(receipt.elapsed_ms);
      box.dataset.stages = JSON.stringify(this.stages ?? {}); // milliseconds since the click, per step
    }
    this.form?.remove();
    this.root.append(box);
    this.root.removeAttribute("aria-busy");
    box.focus();
  }
}

async function main() {
  const root = document.getElementById("page");
  try {
    const response = await fetch("survey.json", { cache: "no-store" });
    if (!response.ok) throw new Error("the survey description (survey.json) is missing");
    new SurveyPage(await response.json(), root).render();
  } catch (error) {
    root.replaceChildren(el("h1", {}, "This survey cannot be shown"), el("p", { class: "error" }, String(error.message || error)));
  }
}

main();
