// Drives Debian's Chromium with playwright-core for tests/e2e/test_console_browser.py.
//
//   node drive_console.mjs <step> '<json config>'
//     first-login      log in with the one-time password, choose a password
//     set-inputs       log in, switch "record form inputs" to config.record_inputs, save
//                      (screenshot of the settings page when config.screenshot is set)
//     record           type config.typed into the plain test page (the recorder sends it)
//     replay-and-audit log in, open config.session from the session list, find it in the
//                      audit log (screenshot), log out, try the sessions page again
//
// Prints one JSON object (the result) on the last line of stdout.
import { createRequire } from "node:module";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [step, rawConfig] = process.argv.slice(2);
const config = JSON.parse(rawConfig);
const require = createRequire(join(config.web_dir, "package.json"));
const { chromium } = require("playwright-core");

async function withPage(fn) {
  const profile = mkdtempSync(join(tmpdir(), "replaypipe-console-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: config.chromium,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"],
  });
  context.setDefaultTimeout(30000);
  const result = { console: [] };
  try {
    const page = await context.newPage();
    page.on("pageerror", (error) => result.console.push(`pageerror: ${error.message}`));
    await fn(page, result);
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
  return result;
}

async function login(page, password) {
  await page.goto(`${config.console}/login`);
  await page.fill("#email", config.email);
  await page.fill("#password", password);
  await Promise.all([page.waitForNavigation(), page.click("#login")]);
}

const steps = {
  async "first-login"(page, result) {
    await login(page, config.one_time_password);
    result.after_login = new URL(page.url()).pathname;
    await page.fill("#current_password", config.one_time_password);
    await page.fill("#new_password", config.password);
    await page.fill("#confirm_password", config.password);
    await Promise.all([page.waitForNavigation(), page.click("#change-password")]);
    result.after_change = new URL(page.url()).pathname;
  },

  async "set-inputs"(page, result) {
    await login(page, config.password);
    await page.goto(`${config.console}/sites/${config.site}/settings`);
    await page.setChecked("#record_inputs", config.record_inputs);
    await Promise.all([page.waitForNavigation(), page.click("#save-settings")]);
    await page.waitForSelector("#saved");
    result.saved_at_ms = Date.now();
    result.checked = await page.isChecked("#record_inputs");
    if (config.screenshot) await page.screenshot({ path: config.screenshot, fullPage: true });
  },

  async record(page, result) {
    await page.goto(`${config.pages}/plain.html`);
    await page.waitForFunction(() => window.replaypipe && window.replaypipe.version && window.replaypipe("sessionId"));
    result.session_id = await page.evaluate(() => window.replaypipe("sessionId"));
    await page.locator("#note").click();
    await page.locator("#note").pressSequentially(config.typed, { delay: 15 });
    // Leaving the page sends what is left with sendBeacon (pagehide).
    await page.goto("about:blank");
    await page.waitForTimeout(500);
  },

  async "replay-and-audit"(page, result) {
    await login(page, config.password);
    await page.goto(`${config.console}/sites/${config.site}/sessions`);
    await Promise.all([
      page.waitForURL(`**/replay/${config.session}`),
      page.click(`a.session-link:text-is("${config.session}")`),
    ]);
    await page.waitForFunction(() => window.replaypipeViewer && window.replaypipeViewer.events.length > 0);
    result.replayed_events = await page.evaluate(() => window.replaypipeViewer.events.length);
    const deadline = Date.now() + 30000;
    for (;;) {
      await page.goto(`${config.console}/sites/${config.site}/audit`);
      const rows = await page.locator("#audit tbody tr").allInnerTexts();
      if (rows.some((r) => r.includes("replay_opened") && r.includes(config.session)) || Date.now() > deadline) {
        result.audit_rows = rows;
        break;
      }
      await page.waitForTimeout(500);
    }
    if (config.screenshot) await page.screenshot({ path: config.screenshot, fullPage: true });
    await Promise.all([page.waitForNavigation(), page.click("#logout")]);
    const after = await page.goto(`${config.console}/sites/${config.site}/sessions`);
    result.after_logout = new URL(page.url()).pathname;
    result.after_logout_status = after ? after.status() : 0;
  },

  async "create-token"(page, result) {
    await login(page, config.password);
    await page.goto(`${config.console}/sites/${config.site}/tokens`);
    await page.fill('input[name="name"]', config.token_name);
    await Promise.all([page.waitForNavigation(), page.click('button:text-is("Create token")')]);
    result.token = await page.textContent("#new-token");
  },

  async "run-sql"(page, result) {
    await login(page, config.password);
    await page.goto(`${config.console}/sites/${config.site}/sql`);
    await page.fill("#sql", config.sql);
    await Promise.all([page.waitForNavigation(), page.click("#run-sql")]);
    result.rows = await page.locator("#sql-result tbody tr").allInnerTexts();
  },

  async erase(page, result) {
    await login(page, config.password);
    await page.goto(`${config.console}/sites/${config.site}/sessions`);
    await page.fill('#erase-form input[name="id"]', config.session);
    await page.fill('#erase-form input[name="confirm"]', config.session);
    await Promise.all([page.waitForNavigation(), page.click("#erase-form button")]);
    result.message = await page.textContent("main");
  },
};

const result = await withPage(steps[step]);
console.log(JSON.stringify(result));
