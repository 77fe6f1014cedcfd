// The survey's questions as an accessible form: a fieldset per question (radio buttons for yes/no and
// a single choice, check boxes for a multi-select, a number field for a numeric question), every
// control labelled, errors announced next to the question they concern.
import { validAnswer } from "./mechanisms.js";

/** A DOM element: el("p", {class: "hint"}, "text", child, ...). Text is set as text, never as HTML. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === undefined || value === null) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

const control = (type, name, value, id, label) =>
  el("div", { class: "option" }, el("input", { type, name, value, id }), el("label", { for: id }, label));

const fmt = (x) => Number(x).toLocaleString("en");

// How each kind of question is drawn and read back.
const KINDS = {
  yesno: {
    controls: (q, n) => [control("radio", n, "yes", `${n}-yes`, "Yes"), control("radio", n, "no", `${n}-no`, "No")],
    read: (form, n) => {
      const v = form.querySelector(`input[name="${n}"]:checked`)?.value;
      return v === undefined ? undefined : v === "yes";
    },
  },
  choice: {
    controls: (q, n) => q.options.map((o, i) => control("radio", n, o, `${n}-${i}`, o)),
    read: (form, n) => form.querySelector(`input[name="${n}"]:checked`)?.value,
  },
  multiselect: {
    controls: (q, n) => [
      ...q.options.map((o, i) => control("checkbox", n, o, `${n}-${i}`, o)),
      el("p", { class: "hint" }, "Tick every option that applies (or none)."),
    ],
    read: (form, n) => Array.from(form.querySelectorAll(`input[name="${n}"]:checked`), (i) => i.value),
  },
  numeric: {
    controls: (q, n) => [
      el("label", { class: "visually-hidden", for: `${n}-value` }, q.text),
      el("input", {
        type: "number",
        id: `${n}-value`,
        name: n,
        inputmode: "decimal",
        min: q.bounds[0],
        max: q.bounds[1],
        step: "any",
        "aria-describedby": `${n}-hint`,
      }),
      el("p", { class: "hint", id: `${n}-hint` }, `A number from ${fmt(q.bounds[0])} to ${fmt(q.bounds[1])}.`),
    ],
    read: (form, n) => {
      const raw = form.querySelector(`input[name="${n}"]`).value.trim();
      return raw === "" ? undefined : Number(raw);
    },
  },
};

const fieldName = (q) => `q-${q.id}`;

/** The form's fieldsets for the survey's questions. */
export function questionFields(survey) {
  return survey.questions.map((q) =>
    el(
      "fieldset",
      { id: `${fieldName(q)}-set`, "aria-describedby": `${fieldName(q)}-error` },
      el("legend", {}, q.text),
      KINDS[q.kind].controls(q, fieldName(q)),
      el("p", { class: "error", id: `${fieldName(q)}-error`, role: "alert", hidden: true }),
    ),
  );
}

/** The answers as {question id: answer}, or null after marking every unanswered question. */
export function readAnswers(form, survey) {
  const answers = {};
  let first = null;
  for (const q of survey.questions) {
    const answer = KINDS[q.kind].read(form, fieldName(q));
    const error = form.querySelector(`#${CSS.escape(fieldName(q))}-error`);
    const set = form.querySelector(`#${CSS.escape(fieldName(q))}-set`);
    const ok = validAnswer(q, answer);
    error.hidden = ok;
    error.textContent = ok ? "" : q.kind === "numeric" ? "Please enter a number." : "Please answer this question.";
    set.setAttribute("aria-invalid", ok ? "false" : "true");
    if (ok) answers[q.id] = answer;
    else first ??= set;
  }
  if (first) {
    first.querySelector("input")?.focus();
    return null;
  }
  return answers;
}
