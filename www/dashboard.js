// The dashboard: this deployment's messages, their timelines, the relay's health and the
// suppression list, from its public API with the key the visitor gives. The key lives in
// sessionStorage only; no key, address or message content is ever put in a URL (searches,
// list cursors and removals travel in POST bodies). `el` is dom.js's.
"use strict";

const KEY = "edge-mailer-api-key";
const PAGE_SIZE = 10;
const STATUSES = ["queued", "sending", "sent", "delivered", "bounced", "failed", "unknown"];
// Okabe–Ito colours: told apart with any of the common colour-vision deficiencies. Every
// number the chart draws is also written out in the tables beside it.
const COLOURS = {
  queued: "#E69F00", sending: "#F0E442", sent: "#56B4E9", delivered: "#009E73",
  bounced: "#D55E00", failed: "#CC79A7", unknown: "#5f5f5f",
};
const P50_COLOUR = "#0072B2";
const P95_COLOUR = "#D55E00";

let statusInfo = {}; // status → {final, meaning}, from /v1/errors
const listing = { status: "", q: "", cursors: [null], page: 0 };
let suppressionsNext = null;

class ApiFailure extends Error {
  constructor(status, error) {
    super(error ? error.message : `HTTP ${status}`);
    this.status = status;
    this.error = error || {};
  }
}

function key() {
  return sessionStorage.getItem(KEY);
}

// One call to this deployment's API with the key; the answer's JSON, or an ApiFailure.
async function api(method, path, body) {
  const headers = { authorization: `Bearer ${key()}`, accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (failure) {
    throw new ApiFailure(0, { code: "network", message: `the Worker could not be reached (${failure.message})` });
  }
  let answer = null;
  try {
    answer = await response.json();
  } catch {
    // an answer without JSON: its status says enough
  }
  if (!response.ok) throw new ApiFailure(response.status, answer && answer.error);
  return answer;
}

// What a failed call means to the visitor, said where the view shows its state. A refused key
// takes the visitor back to the key form.
function showFailure(failure, state) {
  const code = failure.error.code;
  let text;
  if (failure.status === 401) {
    sessionStorage.removeItem(KEY);
    askForKey("That key was refused (401 unauthorized): it is not one of this deployment's API_KEYS. Enter another.");
    return;
  } else if (code === "misconfigured" && /DELIVERY_LEDGER/.test(failure.error.message)) {
    text = "This deployment has no delivery ledger (no DELIVERY_LEDGER binding), so it keeps no record of its " +
      "messages to show. Its owner adds the binding to wrangler.toml (README, \"Queued delivery\").";
  } else if (code === "misconfigured" && /SUPPRESSION_LIST/.test(failure.error.message)) {
    text = "This deployment has no suppression list (no SUPPRESSION_LIST binding). Its owner adds the binding " +
      "to wrangler.toml (README, \"Suppressions\").";
  } else if (code === "misconfigured") {
    text = `This deployment is misconfigured: ${failure.error.message}.`;
  } else if (code === "storage_unavailable") {
    text = `The store could not be reached just now (${failure.error.message}). Try again in a few seconds.`;
  } else {
    text = `The request failed: ${failure.error.message || failure.message}` + (code ? ` (${code}).` : ".");
  }
  state.className = "state problem";
  state.dataset.problem = code || String(failure.status);
  state.textContent = text;
}

function setState(state, text) {
  state.className = text ? "state empty" : "state";
  delete state.dataset.problem;
  state.textContent = text || "";
}

const when = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const hourOf = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

function time(ms) {
  return el("time", { datetime: new Date(ms).toISOString() }, when.format(new Date(ms)));
}

function duration(ms) {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120000) return `${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)} s`;
  if (ms < 7200000) return `${Math.round(ms / 60000)} min`;
  return `${(ms / 3600000).toFixed(1)} h`;
}

function badge(status) {
  const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
  swatch.style.background = COLOURS[status] || "#999";
  return el("span", { class: `badge status-${status}`, "data-status": status }, swatch, status);
}

// ---- Views ----------------------------------------------------------------------------

function askForKey(problem) {
  for (const view of document.querySelectorAll(".view")) view.hidden = true;
  document.getElementById("views").hidden = true;
  document.getElementById("key").hidden = false;
  const notice = document.getElementById("notice");
  notice.hidden = !problem;
  notice.textContent = problem || "";
  const input = document.getElementById("key-input");
  input.value = "";
  input.focus();
}

async function route() {
  if (!key()) {
    askForKey();
    return;
  }
  document.getElementById("key").hidden = true;
  document.getElementById("notice").hidden = true;
  document.getElementById("views").hidden = false;
  const hash = location.hash.slice(1);
  const [view, id] = hash.startsWith("message/") ? ["message", hash.slice("message/".length)] : [hash || "glance"];
  const known = ["glance", "messages", "message", "suppressions"].includes(view) ? view : "glance";
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== known;
  for (const link of document.querySelectorAll("#views a[data-view]")) {
    const current = link.dataset.view === known || (known === "message" && link.dataset.view === "messages");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.body.dataset.view = known;
  delete document.body.dataset.ready;
  if (known === "glance") await showGlance();
  else if (known === "messages") await showMessages();
  else if (known === "message") await showMessage(decodeURIComponent(id));
  else await showSuppressions();
  document.body.dataset.ready = known;
}

// ---- At a glance ----------------------------------------------------------------------

async function showGlance() {
  const state = document.getElementById("glance-state");
  setState(state, "Loading…");
  let day, week;
  try {
    [day, week] = await Promise.all([api("GET", "/v1/stats?hours=24"), api("GET", "/v1/stats?hours=168")]);
  } catch (failure) {
    showFailure(failure, state);
    return;
  }
  const sum = (totals) => STATUSES.reduce((n, s) => n + (totals[s] || 0), 0);
  setState(state, sum(week.totals) === 0
    ? "Nothing yet: no message was accepted in the last 7 days. Send one (POST /v1/send) and it shows here." : "");
  const body = document.querySelector("#totals tbody");
  body.replaceChildren(...STATUSES.map((s) => el("tr", { "data-status": s },
    el("th", { scope: "row" }, badge(s)),
    el("td", { class: "number", "data-label": "Last 24 hours" }, day.totals[s] || 0),
    el("td", { class: "number", "data-label": "Last 7 days" }, week.totals[s] || 0))));
  body.append(el("tr", { "data-status": "all", class: "total" }, el("th", { scope: "row" }, "All"),
    el("td", { class: "number", "data-label": "Last 24 hours" }, sum(day.totals)),
    el("td", { class: "number", "data-label": "Last 7 days" }, sum(week.totals))));
  const answers = day.relay_answer_ms;
  document.getElementById("answer-summary").textContent = answers.attempts
    ? `In the last 24 hours the relay answered ${answers.attempts} ${answers.attempts === 1 ? "attempt" : "attempts"}: ` +
      `half within ${answers.p50} ms (median), 95 % within ${answers.p95} ms.`
    : "No attempt reached the relay in the last 24 hours.";
  drawLegend();
  drawChart(day.per_hour);
  drawAnswers(day.per_hour);
  hoursTable(day.per_hour);
}

function drawLegend() {
  const legend = document.getElementById("legend");
  legend.replaceChildren(...STATUSES.map((s) => el("li", {}, badge(s))));
}

// An SVG element, in the namespace of the page's own <svg> (no namespace URL to spell out).
function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(document.getElementById("chart").namespaceURI, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

// The charts' margins, in CSS pixels: each chart is drawn at its own width, so its text stays
// the page's size on a phone too.
const CHART = { left: 60, right: 12, top: 12 };

// Sizes `chart` to the width it is shown at; that width.
function size(chart, height) {
  const width = Math.max(300, Math.round(chart.getBoundingClientRect().width) || 720);
  chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
  return width;
}

function hourLabel(hour) {
  return hourOf.format(new Date(hour.hour));
}

// The x axis of both charts: the first hour's label, one every 6 hours, and the last one's.
function xAxis(chart, width, hours, bottom) {
  const step = (width - CHART.left - CHART.right) / hours.length;
  const every = width < 500 ? 8 : 6;
  hours.forEach((hour, i) => {
    const last = i === hours.length - 1;
    if ((i % every === 0 && i < hours.length - every) || last) {
      chart.append(svg("text", { x: last ? width - 2 : CHART.left + i * step, y: bottom + 18, class: "axis",
        "text-anchor": last ? "end" : "start" }, hourLabel(hour)));
    }
  });
  chart.append(svg("line", { x1: CHART.left, x2: width - CHART.right, y1: bottom, y2: bottom, class: "axis-line" }));
}

// Messages per hour, a bar per hour stacked by status.
function drawChart(hours) {
  const chart = document.getElementById("chart");
  chart.replaceChildren();
  const height = 200;
  const width = size(chart, height);
  const bottom = height - 26;
  const totals = hours.map((h) => STATUSES.reduce((n, s) => n + (h.statuses[s] || 0), 0));
  const max = Math.max(1, ...totals);
  const step = (width - CHART.left - CHART.right) / hours.length;
  const scale = (bottom - CHART.top) / max;
  chart.append(svg("text", { x: CHART.left - 6, y: CHART.top + 10, class: "axis", "text-anchor": "end" }, max));
  chart.append(svg("text", { x: CHART.left - 6, y: bottom, class: "axis", "text-anchor": "end" }, 0));
  hours.forEach((hour, i) => {
    let y = bottom;
    const group = svg("g", { "data-hour": hour.hour });
    const parts = [];
    for (const s of STATUSES) {
      const n = hour.statuses[s] || 0;
      if (!n) continue;
      parts.push(`${n} ${s}`);
      const h = n * scale;
      y -= h;
      group.append(svg("rect", { x: CHART.left + i * step + 2, y, width: Math.max(1, step - 4), height: h,
        fill: COLOURS[s], "data-status": s, "data-count": n }));
    }
    group.append(svg("title", {}, `${hourLabel(hour)}: ${parts.length ? parts.join(", ") : "no message"}`));
    chart.append(group);
  });
  xAxis(chart, width, hours, bottom);
  const busiest = totals.indexOf(Math.max(...totals));
  const all = totals.reduce((a, b) => a + b, 0);
  document.getElementById("chart-summary").textContent = all
    ? `${all} ${all === 1 ? "message" : "messages"} in the last 24 hours; the busiest hour, ${hourLabel(hours[busiest])}, had ${totals[busiest]}. Every hour's numbers are in the table below.`
    : "No message in the last 24 hours.";
}

// The relay's median and 95th-percentile answer time per hour: a line each, a gap where an
// hour had no attempt.
function drawAnswers(hours) {
  const chart = document.getElementById("answer-chart");
  chart.replaceChildren();
  const height = 140;
  const width = size(chart, height);
  const bottom = height - 26;
  const values = hours.flatMap((h) => [h.relay_answer_ms.p50, h.relay_answer_ms.p95]).filter((v) => v != null);
  const max = Math.max(1, ...values);
  const step = (width - CHART.left - CHART.right) / hours.length;
  const y = (v) => bottom - (v / max) * (bottom - CHART.top);
  chart.append(svg("text", { x: CHART.left - 6, y: CHART.top + 10, class: "axis", "text-anchor": "end" }, `${max} ms`));
  chart.append(svg("text", { x: CHART.left - 6, y: bottom, class: "axis", "text-anchor": "end" }, 0));
  for (const [name, colour, dash] of [["p95", P95_COLOUR, "6 4"], ["p50", P50_COLOUR, ""]]) {
    let path = "";
    let drawing = false;
    hours.forEach((hour, i) => {
      const v = hour.relay_answer_ms[name];
      if (v == null) {
        drawing = false;
        return;
      }
      const x = CHART.left + i * step + step / 2;
      path += `${drawing ? "L" : "M"}${x.toFixed(1)} ${y(v).toFixed(1)} `;
      drawing = true;
      chart.append(svg("circle", { cx: x, cy: y(v), r: 3.5, fill: colour, "data-series": name, "data-value": v },
        undefined));
    });
    if (path) {
      const line = svg("path", { d: path, stroke: colour, fill: "none", "stroke-width": 2, "data-series": name });
      if (dash) line.setAttribute("stroke-dasharray", dash);
      chart.prepend(line);
    }
  }
  xAxis(chart, width, hours, bottom);
  const answered = hours.filter((h) => h.relay_answer_ms.attempts);
  document.getElementById("answer-chart-summary").replaceChildren(
    el("span", { class: "key-line p50" }), " median (p50) ", el("span", { class: "key-line p95" }), " 95th percentile (p95). ",
    answered.length ? `${answered.length} of the last 24 hours had attempts.` : "No attempt in the last 24 hours.");
}

function hoursTable(hours) {
  const table = document.getElementById("hours");
  table.tHead.replaceChildren(el("tr", {}, el("th", { scope: "col" }, "Hour"),
    ...STATUSES.map((s) => el("th", { scope: "col" }, s)),
    el("th", { scope: "col" }, "Attempts"), el("th", { scope: "col" }, "p50 ms"), el("th", { scope: "col" }, "p95 ms")));
  table.tBodies[0].replaceChildren(...hours.map((hour) => el("tr", { "data-hour": hour.hour },
    el("th", { scope: "row" }, hourLabel(hour)),
    ...STATUSES.map((s) => el("td", { class: "number", "data-status": s }, hour.statuses[s] || 0)),
    el("td", { class: "number" }, hour.relay_answer_ms.attempts),
    el("td", { class: "number" }, hour.relay_answer_ms.p50 ?? "—"),
    el("td", { class: "number" }, hour.relay_answer_ms.p95 ?? "—"))));
}

// ---- Messages -------------------------------------------------------------------------

async function showMessages() {
  const state = document.getElementById("messages-state");
  const body = document.querySelector("#message-table tbody");
  setState(state, "Loading…");
  const query = { limit: PAGE_SIZE };
  if (listing.status) query.status = listing.status;
  if (listing.q) query.q = listing.q;
  const after = listing.cursors[listing.page];
  if (after) query.after = after;
  let page;
  try {
    page = await api("POST", "/v1/messages/search", query);
  } catch (failure) {
    body.replaceChildren();
    showFailure(failure, state);
    return;
  }
  listing.cursors[listing.page + 1] = page.next;
  const filtered = listing.status || listing.q;
  setState(state, page.messages.length ? ""
    : filtered ? "No message matches: try another status or search." : "Nothing yet: no message has been sent.");
  body.replaceChildren(...page.messages.map((m) => el("tr", { "data-id": m.id },
    el("td", { "data-label": "When" }, time(m.created_at)),
    el("td", { "data-label": "To", class: "to" }, m.to.join(", ") || "—"),
    el("td", { "data-label": "Subject" }, el("a", { href: `#message/${encodeURIComponent(m.id)}` }, m.subject || "(no subject)")),
    el("td", { "data-label": "Status" }, badge(m.status)),
    el("td", { "data-label": "Attempts", class: "number" }, m.attempts))));
  document.getElementById("newer").disabled = listing.page === 0;
  document.getElementById("older").disabled = !page.next;
  document.getElementById("page-label").textContent = page.messages.length || listing.page ? `Page ${listing.page + 1}` : "";
}

function setUpMessages() {
  const select = document.getElementById("status-filter");
  for (const s of STATUSES) select.append(el("option", { value: s }, s));
  document.getElementById("message-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    listing.status = select.value;
    listing.q = document.getElementById("search").value.trim();
    listing.cursors = [null];
    listing.page = 0;
    rerender(showMessages, "messages");
  });
  document.getElementById("older").addEventListener("click", () => {
    listing.page += 1;
    rerender(showMessages, "messages");
  });
  document.getElementById("newer").addEventListener("click", () => {
    listing.page = Math.max(0, listing.page - 1);
    rerender(showMessages, "messages");
  });
}

// Shows a view again in place, marking the page ready once it is drawn.
async function rerender(show, view) {
  delete document.body.dataset.ready;
  await show();
  document.body.dataset.ready = view;
}

// ---- One message ----------------------------------------------------------------------

const ATTEMPTS = new Set(["sent", "deferred", "failed", "unknown"]);

function eventTitle(event, attempt) {
  const who = event.recipient || "a recipient";
  switch (event.type) {
    case "accepted": return "Accepted by the Worker";
    case "suppressed": return `Left out: ${who} is on the suppression list`;
    case "sent": return `Attempt ${attempt}: the relay accepted it`;
    case "deferred": return `Attempt ${attempt}: not accepted this time; retried`;
    case "failed": return `Attempt ${attempt}: failed`;
    case "unknown": return `Attempt ${attempt}: the connection broke after the message went out; it may have arrived`;
    case "delivered": return `Report: delivered to ${who}`;
    case "delayed": return `Report: delivery to ${who} is delayed; the receiving server keeps trying`;
    case "bounced": return `Report: ${who}'s server refused it`;
    case "complained": return `Report: ${who} marked it as spam`;
    default: return event.type;
  }
}

function reply(event) {
  const parts = [event.code, event.status !== String(event.code) ? event.status : null, event.diagnostic]
    .filter((p) => p != null && p !== "");
  return parts.join(" ");
}

function webhookLine(hook) {
  const what = `Webhook ${hook.type || ""}`.trim();
  const tries = hook.attempts === 1 ? "1 try" : `${hook.attempts} tries`;
  let text;
  if (hook.status === "delivered") text = [`${what}: delivered `, time(hook.delivered_at), ` (${tries})`];
  else if (hook.status === "retrying") text = [`${what}: no 2xx yet after ${tries}; next try `, time(hook.next_at)];
  else text = [`${what}: failed, no 2xx after ${tries}`];
  return el("p", { class: `webhook webhook-${hook.status}`, "data-webhook": hook.status }, ...text);
}

async function showMessage(id) {
  const state = document.getElementById("message-state");
  const facts = document.getElementById("message-facts");
  const timeline = document.getElementById("timeline");
  setState(state, "Loading…");
  facts.replaceChildren();
  timeline.replaceChildren();
  document.getElementById("final-status").textContent = "";
  document.getElementById("copy-state").textContent = "";
  document.getElementById("message-id").textContent = id;
  let record;
  try {
    record = await api("GET", `/v1/messages/${encodeURIComponent(id)}`);
  } catch (failure) {
    if (failure.status === 404) {
      document.getElementById("message-title").textContent = "No such message";
      setState(state, "No message has that id: it may be older than the ledger keeps (RETENTION_DAYS).");
    } else showFailure(failure, state);
    return;
  }
  setState(state, "");
  document.getElementById("message-title").textContent = record.subject || "(no subject)";
  const fact = (name, ...value) => facts.append(el("dt", {}, name), el("dd", {}, ...value));
  fact("Status", badge(record.status));
  fact("From", record.from || "—");
  fact("To", record.to.join(", ") || "—");
  fact("Accepted", time(record.created_at));
  fact("Attempts", String(record.attempts));
  if (record.form) fact("Form", record.form);
  if (record.message_id) fact("Message-ID", el("code", {}, record.message_id));
  if (record.rejected.length) {
    fact("Not sent to", ...record.rejected.map((r) =>
      el("span", { class: "rejected" }, r.email, r.code ? ` (${r.code})` : "", r.smtp ? ` ${r.smtp.code} ${r.smtp.enhanced || ""} ${r.smtp.text}` : "")));
  }
  const hooks = record.webhooks || [];
  const events = record.events || [];
  let attempt = 0;
  events.forEach((event, i) => {
    const isAttempt = ATTEMPTS.has(event.type);
    if (isAttempt) attempt += 1;
    const item = el("li", { class: `event event-${event.type}`, "data-type": event.type },
      el("span", { class: "dot", "aria-hidden": "true" }), time(event.at), " ", el("strong", {}, eventTitle(event, attempt)));
    const said = reply(event);
    // An attempt the relay never answered (it could not be reached) carries our error code.
    const lead = !isAttempt ? "" : event.code != null ? "The relay: " : "No reply from the relay: ";
    if (said) item.append(el("p", { class: "reply" }, lead, el("code", {}, said)));
    if (event.took_ms != null) item.append(el("p", { class: "took" }, `The attempt took ${duration(event.took_ms)}.`));
    if (event.type === "deferred") {
      const next = events.slice(i + 1).find((e) => ATTEMPTS.has(e.type));
      if (next) item.append(el("p", { class: "retry" }, `Retried ${duration(next.at - event.at)} later.`));
      else if (record.next_attempt_at) item.append(el("p", { class: "retry" }, "Next attempt ", time(record.next_attempt_at), "."));
    }
    for (const hook of hooks.filter((h) => h.event === i)) item.append(webhookLine(hook));
    timeline.append(item);
  });
  if (!events.length) timeline.append(el("li", {}, "This record was written before timelines were kept."));
  const info = statusInfo[record.status];
  const final = document.getElementById("final-status");
  final.replaceChildren(info && info.final ? "Final status: " : "Status now: ", badge(record.status),
    info ? ` — ${info.meaning}` : "", record.dead_lettered ? " It went to the dead-letter queue." : "");
}

async function copyId() {
  const id = document.getElementById("message-id").textContent;
  const said = document.getElementById("copy-state");
  try {
    await navigator.clipboard.writeText(id);
    said.textContent = "Copied.";
  } catch {
    // No clipboard permission: select it, for the visitor's own copy.
    const range = document.createRange();
    range.selectNodeContents(document.getElementById("message-id"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    said.textContent = "Selected: copy it with Ctrl+C (⌘C).";
  }
}

// ---- Suppressions ---------------------------------------------------------------------

const REASONS = { bounce: "Hard bounce", complaint: "Complaint (marked as spam)", manual: "Added by hand" };

async function showSuppressions(more = false) {
  const state = document.getElementById("suppressions-state");
  const body = document.querySelector("#suppression-table tbody");
  if (!more) {
    suppressionsNext = null;
    body.replaceChildren();
  }
  const query = { limit: 50 };
  if (more && suppressionsNext) query.after = suppressionsNext;
  let page;
  try {
    page = await api("POST", "/v1/suppressions/list", query);
  } catch (failure) {
    showFailure(failure, state);
    return;
  }
  suppressionsNext = page.next;
  for (const entry of page.suppressions) {
    const remove = el("button", { type: "button", class: "secondary remove", "aria-label": `Remove ${entry.address}` }, "Remove");
    remove.addEventListener("click", () => confirmRemoval(entry.address, remove));
    body.append(el("tr", { "data-address": entry.address },
      el("td", { "data-label": "Address", class: "to" }, entry.address),
      el("td", { "data-label": "Why" }, REASONS[entry.reason] || entry.reason,
        entry.detail ? el("span", { class: "detail" }, entry.detail) : ""),
      el("td", { "data-label": "Since" }, time(entry.created_at)),
      el("td", { "data-label": "" }, remove)));
  }
  if (!more) setState(state, body.children.length ? "" : "No address is suppressed: every send goes to every recipient.");
  document.getElementById("more-suppressions").hidden = !page.next;
}

function confirmRemoval(address, button) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-address").textContent = address;
  dialog.returnValue = "";
  dialog.onclose = async () => {
    button.focus();
    if (dialog.returnValue !== "remove") return;
    const state = document.getElementById("suppressions-state");
    try {
      await api("POST", "/v1/suppressions/delete", { address });
    } catch (failure) {
      showFailure(failure, state);
      return;
    }
    await rerender(showSuppressions, "suppressions");
    setState(state, `Removed ${address}: sends go to it again.`);
    document.getElementById("suppressions-title").focus();
  };
  dialog.showModal();
}

// ---- Start ----------------------------------------------------------------------------

async function main() {
  document.getElementById("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = document.getElementById("key-input").value.trim();
    if (!value) return;
    sessionStorage.setItem(KEY, value);
    document.getElementById("key-input").value = "";
    route();
  });
  document.getElementById("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    askForKey("The key is forgotten in this tab.");
  });
  document.getElementById("copy-id").addEventListener("click", copyId);
  document.getElementById("more-suppressions").addEventListener("click", () => rerender(() => showSuppressions(true), "suppressions"));
  for (const heading of document.querySelectorAll(".view h2")) heading.tabIndex = -1;
  setUpMessages();
  try {
    const table = await (await fetch("/v1/errors")).json();
    for (const s of table.statuses) statusInfo[s.status] = s;
  } catch {
    // the meanings are a nicety; the dashboard works without them
  }
  window.addEventListener("hashchange", async () => {
    await route();
    const heading = document.querySelector(".view:not([hidden]) h2");
    if (heading) heading.focus();
  });
  await route();
}

main();
