// The edge-mailer page: the flow and the error table come from the Worker's own definitions
// (GET /v1/errors); the demo posts to this deployment's demo form and plays back the SMTP
// transcript. No external scripts, styles or fonts; `el` is dom.js's.
"use strict";

const LANES = ["client", "worker", "relay"];
let table = { errors: [], steps: [] };

function codeList(codes) {
  const span = el("span");
  codes.forEach((code, i) => {
    if (i) span.append(", ");
    span.append(el("code", {}, code));
  });
  return span;
}

// One step: an arrow from the centre of one lane to the centre of another (or a loop within
// the Worker). Six half-lane columns: the centre of lane i is grid line 2i + 2.
function arrow(step) {
  const row = el("div", { class: "arrow", "aria-hidden": "true" });
  const from = LANES.indexOf(step.from);
  const to = LANES.indexOf(step.to);
  const line = el("span");
  if (from === to) {
    line.className = "self";
    line.style.gridColumn = `${2 * from + 1} / ${2 * from + 3}`;
  } else {
    line.className = from < to ? "to-right" : "to-left";
    line.style.gridColumn = `${2 * Math.min(from, to) + 2} / ${2 * Math.max(from, to) + 2}`;
  }
  row.append(line);
  return row;
}

// The flow as one compact sequence: an arrow and a title per step; what can fail at a step is
// one click away (a disclosure), not a wall of codes under every arrow.
function renderFlow() {
  const list = document.getElementById("steps");
  list.replaceChildren();
  for (const step of table.steps) {
    const risks = table.errors.filter((e) => e.steps.includes(step.id)).map((e) => e.code);
    const item = el("li", { id: `step-${step.id}`, "data-step": step.id },
      arrow(step),
      el("div", { class: "title" }, `${step.from} → ${step.to}: ${step.title}`));
    if (risks.length) {
      const details = el("details", {},
        el("summary", {}, risks.length === 1 ? "1 error code" : `${risks.length} error codes`));
      const p = el("p", { class: "risks" });
      p.append(codeList(risks));
      details.append(p);
      item.append(details);
    }
    list.append(item);
  }
}

const COLUMNS = ["Code", "HTTP", "Retry?", "SMTP replies", "What happened", "What to do"];

function renderTable() {
  const body = document.querySelector("#error-table tbody");
  body.replaceChildren();
  for (const e of table.errors) {
    const cells = [el("code", {}, e.code), e.status, e.retryable ? "yes" : "no",
      e.smtp.length ? codeList(e.smtp) : "—", e.meaning, e.remedy];
    // data-label: the column's name, shown beside each value when a row is a card (phones).
    body.append(el("tr", { id: `error-${e.code}`, "data-code": e.code },
      ...cells.map((cell, i) => el("td", { "data-label": COLUMNS[i], class: i === 0 ? "code" : "" }, cell))));
  }
  filterTable();
}

function filterTable() {
  const words = document.getElementById("error-filter").value.trim().toLowerCase().split(/\s+/).filter(Boolean);
  let shown = 0;
  for (const row of document.querySelectorAll("#error-table tbody tr")) {
    const text = row.textContent.toLowerCase();
    row.hidden = !words.every((w) => text.includes(w));
    if (!row.hidden) shown++;
  }
  const total = table.errors.length;
  document.getElementById("error-count").textContent = words.length ? `${shown} of ${total} codes` : `${total} codes`;
}

function showTranscript(entries) {
  const wrap = document.getElementById("transcript-wrap");
  const body = document.querySelector("#transcript tbody");
  body.replaceChildren();
  for (const entry of entries || []) {
    body.append(el("tr", {},
      el("td", {}, entry.at_ms),
      el("td", { class: `from-${entry.from}` }, entry.from),
      el("td", { class: "line" }, entry.line)));
  }
  const any = (entries || []).length > 0;
  wrap.hidden = !any;
  document.getElementById("transcript-title").hidden = !any;
}

async function showReceived(messageId) {
  const pre = document.getElementById("received");
  const title = document.getElementById("received-title");
  for (let attempt = 0; attempt < 20; attempt++) {
    const response = await fetch(`/v1/demo/message?id=${encodeURIComponent(messageId)}`);
    if (response.ok) {
      pre.textContent = await response.text();
      pre.hidden = title.hidden = false;
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

// "the relay refused every recipient; nothing was delivered" → a heading in words.
function headline(message) {
  return message ? message.charAt(0).toUpperCase() + message.slice(1) : "Not sent";
}

function explain(error, status) {
  const box = document.getElementById("demo-error");
  const row = table.errors.find((e) => e.code === error.code);
  box.replaceChildren(
    el("h3", { id: "demo-error-title" }, headline(error.message)),
    el("p", {}, "Not sent. Error code ", el("code", { id: "demo-error-code" }, error.code), `, HTTP ${status}.`));
  if (error.smtp) {
    box.append(el("p", {}, `The relay said ${error.smtp.code}${error.smtp.enhanced ? " " + error.smtp.enhanced : ""} at ${error.smtp.phase}: ${error.smtp.text}`));
  }
  if (row) {
    box.append(el("p", {}, el("strong", {}, "What happened: "), row.meaning));
    box.append(el("p", {}, el("strong", {}, "What to do: "), row.remedy));
  }
  box.hidden = false;
}

async function send(form, name) {
  const status = document.getElementById("demo-status");
  const buttons = form.querySelectorAll("button");
  document.getElementById("demo-error").hidden = true;
  document.getElementById("received").hidden = true;
  document.getElementById("received-title").hidden = true;
  showTranscript([]);
  const fields = Object.fromEntries(new FormData(form).entries());
  if (!fields.name || !fields.message) {
    status.className = "";
    status.textContent = "Please fill in your name and a message.";
    return;
  }
  buttons.forEach((b) => (b.disabled = true));
  status.className = "";
  status.textContent = "Sending…";
  try {
    const response = await fetch(`/v1/forms/${name}?debug=1`, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify(fields),
    });
    const answer = await response.json();
    showTranscript(answer.transcript);
    if (response.ok && !answer.smtp) {
      // Debug answers (the relay's reply, the transcript) are the local demo's and API keys' only.
      status.className = "ok";
      status.textContent = "Sent.";
    } else if (response.ok) {
      status.className = "ok";
      const trips = answer.round_trips === 1 ? "1 round trip" : `${answer.round_trips} round trips`;
      const session = answer.session === "warm"
        ? " on a warm session, already open and authenticated"
        : answer.session === "new" ? " on a new session (send again: the next send reuses it)" : "";
      status.textContent = `Sent: the relay answered ${answer.smtp.code} ${answer.smtp.enhanced || ""} ${answer.smtp.text} ` +
        `in ${trips}${session}.`;
      if (window.demoHasInbox && answer.message_id) await showReceived(answer.message_id);
    } else {
      status.textContent = `Not sent: ${answer.error.message}`;
      explain(answer.error, response.status);
    }
  } catch (failure) {
    status.textContent = `The request failed: ${failure}`;
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

async function checkRelay() {
  const button = document.getElementById("relay-check-run");
  const status = document.getElementById("relay-check-status");
  const list = document.getElementById("relay-steps");
  button.disabled = true;
  status.textContent = "Checking…";
  list.replaceChildren();
  try {
    const response = await fetch("/v1/demo/relay-check", { method: "POST" });
    const answer = await response.json();
    if (!response.ok) {
      status.textContent = `The check could not run: ${answer.error.message}`;
      return;
    }
    for (const step of answer.steps) {
      const item = el("li", { class: step.ok ? "ok" : "failed", "data-step": step.step },
        el("strong", {}, step.step), ` ${step.ok ? "ok" : "failed"}, ${step.ms} ms`);
      if (step.reply) item.append(el("code", {}, step.reply.split("\n")[0]));
      if (!step.ok) item.append(el("span", {}, ` — ${step.code}: ${step.message}`));
      list.append(item);
    }
    status.textContent = answer.ok
      ? `The relay is ready: every step passed. It offers ${answer.capabilities.join(", ")}.`
      : `The relay check failed at ${answer.steps[answer.steps.length - 1].step}.`;
  } catch (failure) {
    status.textContent = `The request failed: ${failure}`;
  } finally {
    button.disabled = false;
  }
}

async function setUpDemo() {
  const response = await fetch("/v1/demo");
  if (!response.ok) return; // no demo form here: no form that could be abused
  const demo = await response.json();
  window.demoHasInbox = demo.inbox;
  document.getElementById("demo").hidden = false;
  document.getElementById("demo-link").hidden = false;
  document.getElementById("demo-refuse").hidden = !demo.refusal_form;
  const form = document.getElementById("demo-form");
  let chosen = demo.form;
  for (const button of form.querySelectorAll("button")) {
    button.addEventListener("click", () => (chosen = button.dataset.form));
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send(form, chosen);
  });
  if (demo.relay_check) {
    document.getElementById("relay-check").hidden = false;
    document.getElementById("relay-check-run").addEventListener("click", checkRelay);
  }
}

function renderStatuses() {
  const list = document.getElementById("statuses");
  list.replaceChildren(...table.statuses.map((s) =>
    el("li", { "data-status": s.status }, el("code", {}, s.status), ` ${s.meaning}`)));
}

async function main() {
  try {
    const response = await fetch("/v1/errors");
    table = await response.json();
    renderFlow();
    renderStatuses();
    renderTable();
    document.getElementById("error-filter").addEventListener("input", filterTable);
    document.body.dataset.ready = "true";
  } catch (failure) {
    document.getElementById("steps").replaceChildren(el("li", {}, `Could not load /v1/errors: ${failure}`));
  }
  await setUpDemo();
  document.body.dataset.demoReady = "true";
}

main();
