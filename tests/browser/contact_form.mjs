// A person fills the plain HTML contact form on the site (another origin), attaches a file
// and submits it. Prints JSON: where the browser landed and what the page says.
// Usage: node contact_form.mjs <site origin> <file to attach> <name>
import { launch } from "./browser.mjs";

const [site, file, name] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.newPage();
  await page.goto(`${site}/contact.html`);
  await page.fill("#name", name);
  await page.fill("#email", "visitor@example.net");
  await page.check("#topic-sales");
  await page.check("#topic-support");
  await page.fill("#message", "Hello from a real browser.\nSecond line: äöü ✓");
  await page.setInputFiles("#upload", file);
  await page.click("#send");
  try {
    await page.waitForURL(/thanks\.html|oops\.html/, { timeout: 30000 });
    console.log(JSON.stringify({ url: page.url(), heading: await page.textContent("#result") }));
  } catch (error) {
    // Landed somewhere else (an error page of the Worker): say where and what it shows.
    console.log(JSON.stringify({ url: page.url(), heading: null, text: await page.textContent("body") }));
  }
} finally {
  await browser.close();
}
