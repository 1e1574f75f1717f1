// The dashboard (/dashboard) in a real browser, at 1280 x 900 and 390 x 844: the key, each
// view as the page shows it (numbers read off the tables and the chart's own data), the
// timeline of given messages, a suppression removed through the confirmation, a wrong key, a
// deployment without a ledger; axe-core and a keyboard walk on every view; screenshots.
// Usage: node dashboard.mjs <phase: empty|full> <Worker base URL> <screenshot dir> <args JSON>
// (args: key, wrongKey, ids {name: id}, remove (an address), filters [[name, status, q]],
// noLedger (base URL)). Prints JSON.
import { mkdirSync } from "node:fs";
import { audit, launch } from "./browser.mjs";

const [phase, base, shots, argsJson] = process.argv.slice(2);
const args = JSON.parse(argsJson);
const SIZES = { desktop: { width: 1280, height: 900 }, phone: { width: 390, height: 844 } };
mkdirSync(shots, { recursive: true });

// Every request the page makes, and every script error it meets (a CSP refusal included).
function watch(page, seen) {
  page.on("request", (r) => seen.urls.push(r.url()));
  page.on("console", (m) => m.type() === "error" && !m.text().startsWith("Failed to load resource") && seen.errors.push(m.text()));
  page.on("pageerror", (e) => seen.errors.push(String(e)));
}

async function newPage(browser, size, options = {}) {
  const context = await browser.newContext({ viewport: SIZES[size], isMobile: size === "phone",
    hasTouch: size === "phone", ...options });
  return [context, await context.newPage()];
}

async function ready(page, view) {
  await page.waitForSelector(`body[data-ready=${view}]`, { timeout: 30000 });
}

async function enterKey(page, key) {
  await page.waitForSelector("#key-input", { timeout: 20000 });
  await page.focus("#key-input");
  await page.keyboard.type(key);
  await page.keyboard.press("Enter");
}

async function go(page, hash, view) {
  await page.evaluate((h) => (location.hash = h), hash);
  await ready(page, view);
}


// Tab from the top of the page through every control; which visible controls were never
// reached (and whether focus was ever lost to the body in between).
async function keyboardWalk(page) {
  await page.evaluate(() => {
    window.scrollTo(0, 0);
    let n = 0;
    for (const node of document.querySelectorAll("a[href], button, input, select, summary, [tabindex='0']")) {
      node.dataset.walk = String(n++);
    }
  });
  // Start at the top of the page, as a visitor who just opened it: before its first control.
  await page.evaluate(() => {
    const start = document.createElement("span");
    start.id = "walk-start";
    start.tabIndex = -1;
    document.body.prepend(start);
    start.focus();
  });
  const reached = new Set();
  for (let i = 0; i < 200; i++) {
    await page.keyboard.press("Tab");
    const at = await page.evaluate(() => document.activeElement && document.activeElement.dataset.walk);
    if (at === undefined || at === null) {
      if (reached.size) break; // past the last control
      continue;
    }
    if (reached.has(at)) break;
    reached.add(at);
  }
  await page.evaluate(() => document.getElementById("walk-start").remove());
  return page.evaluate((seen) => [...document.querySelectorAll("[data-walk]")]
    .filter((node) => {
      const style = getComputedStyle(node);
      const visible = node.getClientRects().length > 0 && style.visibility !== "hidden";
      return visible && !node.disabled && !node.closest("[hidden], dialog:not([open]), details:not([open]) > :not(summary)");
    })
    .filter((node) => !seen.includes(node.dataset.walk))
    .map((node) => node.id || node.textContent.trim().slice(0, 40) || node.tagName), [...reached]);
}

async function overflow(page) {
  return page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
}

const readTotals = (page) => page.$$eval("#totals tbody tr", (rows) => Object.fromEntries(rows.map((tr) =>
  [tr.dataset.status, [...tr.querySelectorAll("td")].map((td) => Number(td.textContent))])));

const readChart = (page) => page.$$eval("#chart g[data-hour]", (groups) => groups.map((g) => ({
  hour: g.dataset.hour,
  statuses: Object.fromEntries([...g.querySelectorAll("rect")].map((r) => [r.dataset.status, Number(r.dataset.count)])),
  title: g.querySelector("title").textContent,
})));

const readAnswers = (page) => page.$$eval("#answer-chart circle", (dots) => dots.map((d) => [d.dataset.series, Number(d.dataset.value)]));

const readHours = (page) => page.$$eval("#hours tbody tr", (rows) => rows.map((tr) => ({
  hour: tr.dataset.hour,
  cells: [...tr.querySelectorAll("td")].map((td) => td.textContent),
})));

const readRows = (page) => page.$$eval("#message-table tbody tr", (rows) => rows.map((tr) => ({
  id: tr.dataset.id,
  to: tr.querySelector("td.to").textContent,
  subject: tr.querySelector("a").textContent,
  status: tr.querySelector(".badge").dataset.status,
  attempts: Number(tr.cells[4].textContent),
  when: tr.querySelector("time").getAttribute("datetime"),
})));

const readTimeline = (page) => page.evaluate(() => ({
  title: document.getElementById("message-title").textContent,
  id: document.getElementById("message-id").textContent,
  events: [...document.querySelectorAll("#timeline li")].map((li) => ({
    type: li.dataset.type,
    title: li.querySelector("strong") && li.querySelector("strong").textContent,
    at: li.querySelector("time") && li.querySelector("time").getAttribute("datetime"),
    reply: li.querySelector(".reply code") && li.querySelector(".reply code").textContent,
    retry: li.querySelector(".retry") && li.querySelector(".retry").textContent,
    webhooks: [...li.querySelectorAll(".webhook")].map((p) => [p.dataset.webhook, p.textContent]),
  })),
  final: document.getElementById("final-status").textContent,
  facts: Object.fromEntries([...document.querySelectorAll("#message-facts dt")].map((dt) =>
    [dt.textContent, dt.nextElementSibling.textContent])),
}));

const readSuppressions = (page) => page.$$eval("#suppression-table tbody tr", (rows) => rows.map((tr) => ({
  address: tr.dataset.address, why: tr.cells[1].textContent })));

const stateOf = (page, view) => page.evaluate((v) => {
  const state = document.getElementById(`${v}-state`);
  return { text: state.textContent, problem: state.dataset.problem || null };
}, view);

const storage = (page) => page.evaluate(() => ({
  local: localStorage.length, session: Object.keys(sessionStorage), href: location.href }));

const browser = await launch();
const result = { phase, sizes: {} };
try {
  for (const size of Object.keys(SIZES)) {
    const out = (result.sizes[size] = { axe: {}, unreached: {}, overflow: {} });
    const seen = { urls: [], errors: [] };
    const [context, page] = await newPage(browser, size);
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
    watch(page, seen);
    await page.goto(`${base}/dashboard`);
    // Audits run in a page of their own, opened with bypassCSP (axe is an injected script).
    const [auditContext, audited] = await newPage(browser, size, { bypassCSP: true });
    await audited.goto(`${base}/dashboard`);
    await audited.waitForSelector("#key-input:focus");
    out.axe.key = await audit(audited);
    out.unreached.key = await keyboardWalk(page);
    await page.screenshot({ path: `${shots}/dashboard-key-${size}.png`, fullPage: true });

    if (phase === "full") {
      // A wrong key: the 401 said in words, the key form again, nothing kept.
      await page.focus("#key-input");
      await page.keyboard.type(args.wrongKey);
      await page.keyboard.press("Enter");
      await page.waitForSelector("#notice:not([hidden])", { timeout: 30000 });
      await page.waitForSelector("#key-input:focus");
      out.unauthorized = { notice: await page.textContent("#notice"), keyVisible: await page.isVisible("#key"),
        storage: await storage(page) };
      await page.screenshot({ path: `${shots}/dashboard-unauthorized-${size}.png`, fullPage: true });
    }
    await enterKey(page, args.key);
    await ready(page, "glance");
    await audited.focus("#key-input");
    await audited.keyboard.type(args.key);
    await audited.keyboard.press("Enter");
    await ready(audited, "glance");

    out.glance = { state: await stateOf(page, "glance"), totals: await readTotals(page), chart: await readChart(page),
      answers: await readAnswers(page), hours: await readHours(page),
      answerSummary: await page.textContent("#answer-summary"), chartSummary: await page.textContent("#chart-summary"),
      legend: await page.$$eval("#legend .badge", (b) => b.map((x) => x.dataset.status)) };
    out.axe.glance = await audit(audited);
    out.unreached.glance = await keyboardWalk(page);
    out.overflow.glance = await overflow(page);
    await page.screenshot({ path: `${shots}/dashboard-glance-${size}.png`, fullPage: true });

    // Messages: keyboard to the nav link, as a visitor without a mouse would.
    await page.focus("#views a[data-view=messages]");
    await page.keyboard.press("Enter");
    await ready(page, "messages");
    out.messages = { state: await stateOf(page, "messages"), pages: [await readRows(page)],
      focused: await page.evaluate(() => document.activeElement.id) };
    await go(audited, "#messages", "messages");
    out.axe.messages = await audit(audited);
    out.unreached.messages = await keyboardWalk(page);
    out.overflow.messages = await overflow(page);
    await page.screenshot({ path: `${shots}/dashboard-messages-${size}.png`, fullPage: true });
    if (phase === "full") {
      while (!(await page.isDisabled("#older"))) {
        await page.click("#older");
        await ready(page, "messages");
        out.messages.pages.push(await readRows(page));
      }
      out.messages.lastPageLabel = await page.textContent("#page-label");
      await page.click("#newer");
      await ready(page, "messages");
      out.messages.backToNewer = await readRows(page);
      out.messages.filtered = {};
      for (const [name, status, q] of args.filters) {
        await page.selectOption("#status-filter", status);
        await page.fill("#search", q);
        await page.click("#search-submit");
        await ready(page, "messages");
        const rows = [];
        for (;;) {
          rows.push(...(await readRows(page)));
          if (await page.isDisabled("#older")) break;
          await page.click("#older");
          await ready(page, "messages");
        }
        out.messages.filtered[name] = { rows, state: await stateOf(page, "messages") };
      }
      await page.selectOption("#status-filter", "");
      await page.fill("#search", "");
      await page.click("#search-submit");
      await ready(page, "messages");

      // Timelines: the first reached from the list by keyboard, the others by their link.
      out.timelines = {};
      for (const [name, id] of Object.entries(args.ids)) {
        if (name === Object.keys(args.ids)[0]) {
          await page.selectOption("#status-filter", "");
          const link = page.locator(`#message-table tr[data-id="${id}"] a`);
          if (await link.count()) {
            await link.focus();
            await page.keyboard.press("Enter");
            await ready(page, "message");
          } else await go(page, `#message/${id}`, "message");
        } else await go(page, `#message/${id}`, "message");
        out.timelines[name] = await readTimeline(page);
        await page.screenshot({ path: `${shots}/dashboard-message-${name}-${size}.png`, fullPage: true });
      }
      await page.click("#copy-id");
      await page.waitForFunction(() => document.getElementById("copy-state").textContent !== "");
      out.copied = { said: await page.textContent("#copy-state"),
        clipboard: await page.evaluate(() => navigator.clipboard.readText()) };
      await go(audited, `#message/${Object.values(args.ids)[0]}`, "message");
      out.axe.message = await audit(audited);
      out.unreached.message = await keyboardWalk(page);
      out.overflow.message = await overflow(page);
    }

    await go(page, "#suppressions", "suppressions");
    out.suppressions = { state: await stateOf(page, "suppressions"), rows: await readSuppressions(page) };
    await go(audited, "#suppressions", "suppressions");
    out.axe.suppressions = await audit(audited);
    out.unreached.suppressions = await keyboardWalk(page);
    out.overflow.suppressions = await overflow(page);
    await page.screenshot({ path: `${shots}/dashboard-suppressions-${size}.png`, fullPage: true });
    if (phase === "full" && size === "desktop") {
      // Remove one: "Keep it" keeps it; "Remove", confirmed, takes it off.
      const row = `#suppression-table tr[data-address="${args.remove}"] button`;
      await page.focus(row);
      await page.keyboard.press("Enter");
      await page.waitForSelector("#confirm[open]");
      out.dialog = { text: await page.textContent("#confirm"), focused: await page.evaluate(() => document.activeElement.id) };
      out.axe.dialog = await (async () => {
        await audited.click(row);
        await audited.waitForSelector("#confirm[open]");
        const found = await audit(audited);
        await audited.click("#confirm-keep");
        return found;
      })();
      await page.screenshot({ path: `${shots}/dashboard-confirm-${size}.png` });
      await page.click("#confirm-keep");
      out.kept = (await readSuppressions(page)).map((r) => r.address);
      await page.click(row);
      await page.waitForSelector("#confirm[open]");
      await page.click("#confirm-remove");
      await page.waitForFunction(() => document.getElementById("suppressions-state").textContent.startsWith("Removed"),
        null, { timeout: 30000 });
      out.removed = { state: await page.textContent("#suppressions-state"),
        rows: (await readSuppressions(page)).map((r) => r.address) };
    }
    out.storage = await storage(page);
    out.errors = seen.errors;
    out.urls = seen.urls;
    await auditContext.close();
    await context.close();
  }

  if (phase === "full" && args.noLedger) {
    // A deployment without a ledger: told so, in words, on the views that read it.
    const [context, page] = await newPage(browser, "desktop");
    await page.goto(`${args.noLedger}/dashboard`);
    await enterKey(page, args.key);
    await ready(page, "glance");
    result.noLedger = { glance: await stateOf(page, "glance") };
    await page.screenshot({ path: `${shots}/dashboard-no-ledger-desktop.png`, fullPage: true });
    await go(page, "#messages", "messages");
    result.noLedger.messages = await stateOf(page, "messages");
    await go(page, "#suppressions", "suppressions");
    result.noLedger.suppressions = await stateOf(page, "suppressions");
    await context.close();
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
