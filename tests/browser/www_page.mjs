// The www/ page in a real browser: the flow, the error table, a demo send with its
// transcript, a refused send with its explanation; screenshots at desktop and phone widths.
// Usage: node www_page.mjs <worker base URL> <screenshot dir> <name>. Prints JSON.
import { mkdirSync } from "node:fs";
import { audit, launch } from "./browser.mjs";

// Where the demo sits in the first screen, before any scrolling: the bottom of each of its
// buttons and the viewport's height, in CSS pixels.
async function firstScreen(page) {
  return page.evaluate(() => ({
    height: window.innerHeight, scrollY: window.scrollY,
    title: document.getElementById("demo-title").getBoundingClientRect().top,
    buttons: ["demo-send", "demo-refuse"].map((id) => Math.ceil(document.getElementById(id).getBoundingClientRect().bottom)),
  }));
}

const [base, shots, name, withoutDemo] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });
const browser = await launch();
const result = {};
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const consoleErrors = [];
  // Network answers the demo expects (404 while polling for the message, the refusal's 422)
  // show up as console errors too; only script errors count.
  page.on("console", (m) => m.type() === "error" && !m.text().startsWith("Failed to load resource") && consoleErrors.push(m.text()));
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  await page.goto(`${base}/`);
  await page.waitForSelector("body[data-demo-ready=true]", { timeout: 20000 });
  result.steps = await page.$$eval("#steps li", (items) => items.map((li) => ({
    id: li.dataset.step, text: li.querySelector(".title").textContent,
    risks: [...li.querySelectorAll(".risks code")].map((c) => c.textContent) })));
  result.statuses = await page.$$eval("#statuses li", (items) => items.map((li) => li.dataset.status));
  result.table = await page.$$eval("#error-table tbody tr", (rows) => rows.map((tr) => {
    const cells = [...tr.querySelectorAll("td")].map((td) => td.textContent.trim());
    return { code: cells[0], status: Number(cells[1]), retryable: cells[2] === "yes", smtp: cells[3],
             meaning: cells[4], remedy: cells[5] };
  }));
  // Every form control has a label; the page can be used from the keyboard.
  // The flow's error codes are on demand: every step's list starts closed.
  result.openCodeLists = await page.$$eval("#steps details[open]", (open) => open.length);
  result.codeLists = await page.$$eval("#steps details", (all) => all.length);
  result.unlabelled = await page.$$eval("input, textarea", (inputs) =>
    inputs.filter((i) => !(i.labels && i.labels.length)).map((i) => i.id || i.name));
  result.firstScreen = { desktop: await firstScreen(page) };
  await page.screenshot({ path: `${shots}/www-desktop-first-screen.png` });
  await page.screenshot({ path: `${shots}/www-desktop.png`, fullPage: true });

  await page.focus("#demo-name");
  await page.keyboard.type(name);
  await page.keyboard.press("Tab");
  await page.keyboard.type("visitor@example.net");
  await page.keyboard.press("Tab");
  await page.keyboard.type("Hello from the page's live demo.");
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter"); // the Send button, reached by keyboard
  await page.waitForSelector("#transcript tbody tr", { timeout: 30000 });
  await page.waitForSelector("#received:not([hidden])", { timeout: 20000 });
  result.status = await page.textContent("#demo-status");
  result.transcript = await page.$$eval("#transcript tbody tr", (rows) => rows.map((tr) =>
    [...tr.querySelectorAll("td")].map((td) => td.textContent)));
  result.received = await page.textContent("#received");
  // Shown whole (no height cap, nothing scrolled out of its box), and no word split anywhere
  // on the page, at any letter, to fit (word-break: break-all).
  result.receivedBox = await page.$eval("#received", (pre) => {
    const style = getComputedStyle(pre);
    return { maxHeight: style.maxHeight, clipped: pre.scrollHeight > pre.clientHeight + 1 };
  });
  result.wordBreaks = await page.$$eval("body, body *", (all) => [...new Set(all.map((e) => getComputedStyle(e).wordBreak))]);
  await page.screenshot({ path: `${shots}/www-demo-sent.png`, fullPage: true });

  // Send again: the session the first send used (or warmed) is still open.
  await page.click("#demo-send");
  await page.waitForFunction(() => {
    const text = document.getElementById("demo-status").textContent;
    return text.startsWith("Sent") && text.includes("warm session");
  }, null, { timeout: 30000 }).catch(() => {});
  result.secondStatus = await page.textContent("#demo-status");
  await page.screenshot({ path: `${shots}/www-demo-warm.png`, fullPage: true });

  await page.click("#demo-refuse");
  await page.waitForSelector("#demo-error:not([hidden])", { timeout: 30000 });
  result.refusal = { code: await page.textContent("#demo-error-code"), text: await page.textContent("#demo-error") };
  await page.screenshot({ path: `${shots}/www-demo-refused.png`, fullPage: true });
  result.consoleErrors = consoleErrors;
  result.order = await page.$$eval("main > section", (sections) => sections.map((s) => s.id));
  result.refusalHeading = await page.textContent("#demo-error h3");

  // The relay check of the local relay: each step, then its summary.
  await page.click("#relay-check-run");
  await page.waitForFunction(() => document.getElementById("relay-check-status").textContent.startsWith("The relay"),
    null, { timeout: 30000 });
  result.relaySteps = await page.$$eval("#relay-steps li", (items) => items.map((li) => [li.dataset.step, li.className]));
  result.relayStatus = await page.textContent("#relay-check-status");
  result.openapiLink = await page.$$eval("a[href='/v1/openapi.json']", (links) => links.length);
  await page.screenshot({ path: `${shots}/www-relay-check.png`, fullPage: true });

  // The error table filters as one types.
  await page.fill("#error-filter", "550");
  result.filtered = await page.$$eval("#error-table tbody tr", (rows) => rows.filter((r) => !r.hidden).map((r) => r.dataset.code));
  result.filterCount = await page.textContent("#error-count");
  await page.fill("#error-filter", "");

  // Accessibility, at both widths, with the demo's answer on the page.
  for (const [width, height, mobile] of [[1280, 900, false], [390, 844, true]]) {
    const audited = await browser.newPage({ viewport: { width, height }, isMobile: mobile, hasTouch: mobile, bypassCSP: true });
    await audited.goto(`${base}/`);
    await audited.waitForSelector("body[data-demo-ready=true]", { timeout: 20000 });
    await audited.fill("#demo-name", "Audit");
    await audited.fill("#demo-message", "An accessibility audit.");
    await audited.click("#demo-refuse");
    await audited.waitForSelector("#demo-error:not([hidden])", { timeout: 30000 });
    await audited.click("#relay-check-run");
    await audited.waitForSelector("#relay-steps li", { timeout: 30000 });
    result[`axe${width}`] = await audit(audited);
    await audited.close();
  }

  const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  await phone.goto(`${base}/`);
  await phone.waitForSelector("body[data-demo-ready=true]", { timeout: 20000 });
  result.phoneOverflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  // On a phone the error table is cards: each value with its column's name, nothing to scroll.
  result.phoneCards = await phone.$$eval("#error-table tbody tr", (rows) => rows.length > 0 && rows.every((tr) =>
    getComputedStyle(tr).display === "block" && getComputedStyle(tr.cells[4], "::before").content.includes("What happened")));
  result.phoneTableOverflow = await phone.$eval("#error-table", (t) => t.scrollWidth - t.parentElement.clientWidth);
  result.firstScreen.phone = await firstScreen(phone);
  await phone.screenshot({ path: `${shots}/www-phone-first-screen.png` });
  await phone.screenshot({ path: `${shots}/www-phone.png`, fullPage: true });
  if (withoutDemo) {
    // A deployment without a demo form: the flow and the table, and no form at all.
    const other = await browser.newPage();
    await other.goto(`${withoutDemo}/`);
    await other.waitForSelector("body[data-demo-ready=true]", { timeout: 20000 });
    result.withoutDemo = {
      demoVisible: await other.isVisible("#demo"),
      forms: await other.$$eval("form", (forms) => forms.filter((f) => f.offsetParent !== null).length),
      rows: await other.$$eval("#error-table tbody tr", (rows) => rows.length),
    };
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
