// Drives Debian's Chromium with playwright-core for tests/e2e/test_browser_replay.py.
//
//   node drive_browser.mjs record '<json config>'   type secrets into the test pages
//   node drive_browser.mjs replay '<json config>'   open the viewer, screenshot the replay
//
// Prints one JSON object (the result) on the last line of stdout.
import { createRequire } from "node:module";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [command, rawConfig] = process.argv.slice(2);
const config = JSON.parse(rawConfig);
// playwright-core is installed in web/ (from its lock file), not next to this script.
const require = createRequire(join(config.web_dir, "package.json"));
const { chromium } = require("playwright-core");

const STEP_TIMEOUT_MS = 30000;

async function launch() {
  const profile = mkdtempSync(join(tmpdir(), "replaypipe-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: config.chromium,
    headless: true,
    viewport: { width: 1280, height: 860 },
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

function watch(page, result) {
  page.on("console", (msg) => {
    if (msg.type() === "error" || msg.type() === "warning") result.console.push(`${msg.type()}: ${msg.text()}`);
  });
  page.on("pageerror", (error) => result.console.push(`pageerror: ${error.message}`));
  page.on("response", (response) => {
    if (response.url().includes("/v1/recordings")) {
      result.ingest.push({ method: response.request().method(), status: response.status() });
    }
  });
}

async function recorderReady(page) {
  await page.waitForFunction(() => window.replaypipe && window.replaypipe.version && window.replaypipe("sessionId"));
  return page.evaluate(() => window.replaypipe("sessionId"));
}

async function type(page, selector, text) {
  await page.locator(selector).click();
  // One key at a time, as a person types: every keystroke is an rrweb input event.
  await page.locator(selector).pressSequentially(text, { delay: 15 });
}

async function record() {
  const secrets = config.secrets;
  const result = { session_ids: [], ingest: [], console: [] };
  const browser = await launch();
  try {
    const page = await browser.context.newPage();
    watch(page, result);

    await page.goto(`${config.pages}/login.html`);
    result.session_ids.push(await recorderReady(page));
    await page.click("#accept-recording");
    await type(page, "#email", secrets.email);
    await type(page, "#password", secrets.password);
    await type(page, "#answer", secrets.security_word);
    result.answer_type = await page.evaluate(() => document.getElementById("answer").type);
    await Promise.all([page.waitForURL("**/checkout.html"), page.click("#continue")]);

    result.session_ids.push(await recorderReady(page));
    await type(page, "#cc-name", secrets.card_name);
    await type(page, "#cc-number", secrets.card_number);
    await type(page, "#cc-exp", secrets.card_expiry);
    await type(page, "#cc-csc", secrets.card_csc);
    await type(page, "#gift-note", secrets.gift_note);
    const stored = page.waitForResponse(
      (r) => r.url().includes("/v1/recordings") && r.request().method() === "POST",
    );
    await page.click("#pay");
    await stored;
    // Leaving the page sends what is left with sendBeacon (pagehide).
    await page.goto("about:blank");
    await page.close();
  } finally {
    await browser.close();
  }
  return result;
}

/** Wait for a viewer element; on timeout, fail with what the page's status line says. */
async function waitOrExplain(page, selector) {
  try {
    await page.waitForSelector(selector);
  } catch (error) {
    const status = await page.evaluate(() => document.getElementById("status")?.textContent);
    throw new Error(`${selector} did not appear; viewer status: ${status}; ${error.message}`);
  }
}

/** Pixel statistics of a PNG, computed by the browser itself (no image library needed). */
async function pixelStats(page, png) {
  return page.evaluate(async (b64) => {
    const image = new Image();
    image.src = `data:image/png;base64,${b64}`;
    await image.decode();
    const canvas = document.createElement("canvas");
    canvas.width = image.width;
    canvas.height = image.height;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(image, 0, 0);
    const { data } = ctx.getImageData(0, 0, image.width, image.height);
    const counts = new Map();
    for (let i = 0; i < data.length; i += 4) {
      const key = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
      counts.set(key, (counts.get(key) || 0) + 1);
    }
    const total = data.length / 4;
    const dominant = Math.max(...counts.values());
    return { width: image.width, height: image.height, colors: counts.size, dominant_fraction: dominant / total };
  }, png.toString("base64"));
}

async function replay() {
  const result = { ingest: [], console: [] };
  const browser = await launch();
  try {
    const page = await browser.context.newPage();
    watch(page, result);
    // The session list, with the token in the fragment (as a link from an admin tool would).
    await page.goto(`${config.list_url}#token=${encodeURIComponent(config.token)}`);
    await waitOrExplain(page, "a.session-link");
    result.location = await page.evaluate(() => location.href);
    result.listed = await page.$$eval("a.session-link", (links) => links.map((a) => a.textContent));
    // Then the replay page, as a person clicks it: the token stays in this tab's sessionStorage.
    await Promise.all([
      page.waitForURL(config.viewer_url),
      page.click(`a.session-link >> text=${config.session_id}`),
    ]);
    await waitOrExplain(page, 'body[data-state="ready"]');
    // Jump to the end of the recording: the checkout page, filled in.
    await page.evaluate(() => {
      const { player, meta } = window.replaypipeViewer;
      // +1: events at exactly the offset are not applied yet (rrweb applies ts < offset).
      player.goto(meta.totalTime + 1, false);
    });
    await page.waitForTimeout(1500); // let the replayer apply the last frames and paint
    result.replayed = await page.evaluate(() => {
      const frame = document.querySelector(".replayer-wrapper iframe");
      const doc = frame && frame.contentDocument;
      if (!doc) return null;
      const value = (id) => {
        const input = doc.getElementById(id);
        return input ? input.value : null;
      };
      const promo = doc.querySelector(".promo");
      const box = promo ? promo.getBoundingClientRect() : null;
      return {
        title: doc.title,
        body_text: doc.body ? doc.body.innerText : "",
        inputs: Object.fromEntries(
          ["cc-name", "cc-number", "cc-exp", "cc-csc", "gift-note"].map((id) => [id, value(id)]),
        ),
        blocked: promo ? { width: box.width, height: box.height, text: promo.textContent, children: promo.childElementCount } : null,
      };
    });
    const png = await page.screenshot({ path: config.screenshot, fullPage: false });
    result.pixels = await pixelStats(page, png);
  } finally {
    await browser.close();
  }
  return result;
}

/** Wait until the stub ingest of the retry test has accepted ``count`` batches. */
async function stubAccepted(count) {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const state = await (await fetch(`${config.pages}/stub-state`)).json();
    if (state.accepted >= count) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`the stub ingest did not get ${count} batches in time`);
}

/** Against a stub ingest that answers 503 first: the retry, then disable(). */
async function retry() {
  const result = { ingest: [], console: [] };
  const browser = await launch();
  try {
    const page = await browser.context.newPage();
    watch(page, result);
    await page.goto(`${config.pages}/plain.html`);
    result.session_ids = [await recorderReady(page)];
    await stubAccepted(1); // the full snapshot: refused once with 503, then retried
    await type(page, "#note", "before disable");
    await page.evaluate(() => window.replaypipe("flush"));
    await stubAccepted(2);
    await page.evaluate(() => window.replaypipe("disable"));
    await type(page, "#note", " AFTER-DISABLE");
    await page.evaluate(() => window.replaypipe("flush"));
    await page.goto("about:blank"); // pagehide: a disabled page sends no beacon either
    await page.close();
  } finally {
    await browser.close();
  }
  return result;
}

const commands = { record, replay, retry };
if (!commands[command]) {
  console.error(`unknown command ${command}; use record or replay`);
  process.exit(2);
}
try {
  const result = await commands[command]();
  console.log(JSON.stringify(result));
} catch (error) {
  console.error(error && error.stack ? error.stack : String(error));
  process.exit(1);
}
