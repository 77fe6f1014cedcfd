// The outbox: what the page must not lose between a click and the receipt, in the browser's
// localStorage under the survey's id. A submission is written here *before* anything leaves the device
// (its reports, its token request and unblinding secret, later its token), and each aggregator's
// acknowledgement is recorded as it arrives. After a reload or a network error the page resends the
// *same* submission: an aggregator that already stored it acknowledges a duplicate, so nothing is
// counted twice, and a lost redemption answer is asked again with the same request (the issuer answers
// a repeated request identically).
//
// What is stored is the randomized answer's shares and proofs (never the answers as typed); it is
// deleted when every aggregator has acknowledged, leaving only the receipt.

const key = (surveyId, what) => `mpcdp/${what}/${surveyId}`;

export class Outbox {
  constructor(surveyId, storage = globalThis.localStorage) {
    this.surveyId = surveyId;
    this.storage = storage;
  }

  pending() {
    const raw = this.storage.getItem(key(this.surveyId, "outbox"));
    return raw ? JSON.parse(raw) : null;
  }

  save(entry) {
    this.storage.setItem(key(this.surveyId, "outbox"), JSON.stringify(entry));
    return entry;
  }

  update(changes) {
    return this.save({ ...this.pending(), ...changes });
  }

  acknowledge(aggregator, outcome) {
    const entry = this.pending();
    entry.delivered = { ...entry.delivered, [aggregator]: outcome };
    return this.save(entry);
  }

  /** A submission that can never be admitted (refused): forget it. */
  discard() {
    this.storage.removeItem(key(this.surveyId, "outbox"));
  }

  receipt() {
    const raw = this.storage.getItem(key(this.surveyId, "receipt"));
    return raw ? JSON.parse(raw) : null;
  }

  /** Every aggregator acknowledged: keep the receipt, drop the shares. */
  finish(receipt) {
    this.storage.setItem(key(this.surveyId, "receipt"), JSON.stringify(receipt));
    this.storage.removeItem(key(this.surveyId, "outbox"));
    return receipt;
  }
}
