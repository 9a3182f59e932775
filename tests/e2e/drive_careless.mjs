// Records the careless pages in Debian's Chromium for tests/e2e/test_careless_pages.py.
//
//   node drive_careless.mjs '<json config>'
//
// config: { web_dir, chromium, pages: [{ name, url, type }] }. Each page records
// itself (rrweb + console plugin, the test's bundle); this script opens it, waits
// for its late changes, types `type` (if given) into its first password field or
// contenteditable, and collects the events, the final location.href and the
// texts of the page's class="keep" elements. Prints one JSON object on the last
// line of stdout: { versions, pages: [{ name, href, keep, events }] }.
import { createRequire } from "node:module";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const config = JSON.parse(process.argv[2]);
const require = createRequire(join(config.web_dir, "package.json"));
const { chromium } = require("playwright-core");
const rrwebVersion = JSON.parse(
  readFileSync(join(config.web_dir, "node_modules", "rrweb", "package.json"), "utf8"),
).version;

const profile = mkdtempSync(join(tmpdir(), "replaypipe-careless-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: config.chromium,
  headless: true,
  viewport: { width: 1280, height: 860 },
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
context.setDefaultTimeout(30000);
const result = { versions: { rrweb: rrwebVersion, chromium: context.browser()?.version() ?? "" }, pages: [] };
try {
  for (const spec of config.pages) {
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (error) => errors.push(error.message));
    await page.goto(spec.url);
    await page.waitForFunction(() => window.__carelessEvents && window.__carelessEvents.some((e) => e.type === 2));
    await page.waitForTimeout(600); // the pages change themselves after 150 ms
    if (spec.type) {
      const field = page.locator('input[type="password"], [contenteditable="true"]').first();
      await field.click();
      await field.pressSequentially(spec.type, { delay: 10 });
    }
    await page.waitForTimeout(300); // rrweb batches mutations and console events
    if (errors.length) throw new Error(`${spec.name}: ${errors.join("; ")}`);
    const collected = await page.evaluate(() => ({
      href: location.href,
      keep: Array.from(document.querySelectorAll(".keep"), (el) => el.textContent.trim()).filter(Boolean),
      events: window.__carelessEvents,
    }));
    result.pages.push({ name: spec.name, ...collected });
    await page.close();
  }
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
