// replaypipe recorder: records the page with rrweb and sends batches to ingest.
//
// Embed (see docs/recorder.md):
//   <script src="/replaypipe-recorder.min.js" data-site-key="pk_..."
//           data-endpoint="https://ingest.example.com" async></script>
// or, to queue calls before the script has loaded:
//   <script>window.replaypipe=window.replaypipe||function(){(replaypipe.q=replaypipe.q||[]).push(arguments)};
//   replaypipe('init',{siteKey:'pk_...',endpoint:'https://ingest.example.com'});</script>
//
// Calls: replaypipe('init', options), replaypipe('consent', true|false),
// replaypipe('disable'), replaypipe('flush'), replaypipe('sessionId').
//
// The server masks everything private; the browser side only batches, compresses
// and delivers. Client masking beyond rrweb's defaults is opt-in (options below).

import { record } from "rrweb";

const VERSION = "__REPLAYPIPE_VERSION__";
const STORAGE_PREFIX = "replaypipe.";
const CONSENT_TAG = "replaypipe.consent";
// A visit ends after 30 minutes without activity (the usual analytics definition),
// or after 24 hours at most, so one session id never spans days.
const SESSION_IDLE_MS = 30 * 60 * 1000;
const SESSION_MAX_MS = 24 * 60 * 60 * 1000;
// sendBeacon and keepalive fetch share a 64 KiB budget per page; stay under it.
const BEACON_MAX_BYTES = 60 * 1024;

const DEFAULTS = {
  siteKey: "",
  endpoint: "",
  flushIntervalMs: 5000,
  maxBatchEvents: 500, // ingest refuses batches above its per-batch event limit
  maxBatchBytes: 512 * 1024, // estimated JSON size; ingest refuses bodies over 1 MB
  maxRetries: 6,
  retryBaseMs: 1000,
  retryMaxMs: 60000,
  compress: true, // gzip with CompressionStream where the browser has it
  // Consent: undefined = not asked (the site's consent mode on the server decides),
  // true/false = the visitor's answer. The last answer is remembered for the visit.
  consent: undefined,
  // When true, nothing is recorded until replaypipe('consent', true).
  waitForConsent: false,
  // rrweb masks password inputs in the browser by default; false turns that off so
  // only the server masks (the end-to-end test uses it to prove the server alone).
  clientMasking: true,
  debug: false,
  rrweb: {}, // extra rrweb record() options, for the rare site that needs them
};

// --- small helpers ------------------------------------------------------------

function log(state, ...args) {
  if (state.options.debug) console.debug("[replaypipe]", ...args);
}

function randomId() {
  if (typeof crypto !== "undefined" && crypto.randomUUID) return crypto.randomUUID();
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function storageGet(kind, name) {
  try {
    const raw = window[kind].getItem(STORAGE_PREFIX + name);
    return raw === null ? null : JSON.parse(raw);
  } catch (_) {
    return null; // storage blocked (privacy mode, sandboxed iframe): live without it
  }
}

function storageSet(kind, name, value) {
  try {
    window[kind].setItem(STORAGE_PREFIX + name, JSON.stringify(value));
  } catch (_) {
    /* see storageGet */
  }
}

/** The visit's session id: shared by the tabs of one visit, renewed after idling. */
function currentSession(now) {
  const stored = storageGet("localStorage", "session");
  if (
    stored &&
    typeof stored.id === "string" &&
    now - stored.last < SESSION_IDLE_MS &&
    now - stored.start < SESSION_MAX_MS
  ) {
    return stored;
  }
  return { id: randomId(), start: now, last: now };
}

function touchSession(state, now) {
  const session = currentSession(now);
  if (session.id !== state.sessionId) {
    // The visit timed out while this page was open: a new session starts with a
    // new full snapshot, so the replay of the new session is complete on its own.
    state.sessionId = session.id;
    state.windowId = randomId();
    state.seq = 0;
    if (state.stopRecording) record.takeFullSnapshot(true);
  }
  session.last = now;
  storageSet("localStorage", "session", session);
}

function visitorId() {
  let id = storageGet("localStorage", "visitor");
  if (typeof id !== "string") {
    id = randomId();
    storageSet("localStorage", "visitor", id);
  }
  return id;
}

function retryDelayMs(state, response, attempt) {
  const header = response && response.headers.get("Retry-After");
  if (header) {
    const seconds = Number(header);
    if (Number.isFinite(seconds)) return Math.min(seconds * 1000, state.options.retryMaxMs);
    const date = Date.parse(header);
    if (Number.isFinite(date)) return Math.min(Math.max(date - Date.now(), 0), state.options.retryMaxMs);
  }
  // Exponential backoff with full jitter, so many browsers do not retry in step.
  const cap = Math.min(state.options.retryBaseMs * 2 ** attempt, state.options.retryMaxMs);
  return Math.round(cap / 2 + Math.random() * (cap / 2));
}

async function gzip(text) {
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

// --- batching and delivery ----------------------------------------------------

function envelope(state, events) {
  const doc = {
    session_id: state.sessionId,
    window_id: state.windowId,
    visitor_id: state.visitorId,
    seq: state.seq++,
    page_url: location.href,
    events,
  };
  if (state.consent !== undefined) doc.consent = state.consent;
  return doc;
}

function ingestUrl(state, encoding) {
  const base = state.options.endpoint.replace(/\/+$/, "");
  const enc = encoding ? `&enc=${encoding}` : "";
  return `${base}/v1/recordings?key=${encodeURIComponent(state.options.siteKey)}${enc}`;
}

/** The server did not sample this session: stop recording it, on this page and the next. */
function stopSampledOut(state) {
  storageSet("localStorage", "sampled_out", state.sessionId);
  disable(state);
}

/** Cut the buffer into batches that respect the event and byte limits. */
function takeBatches(state, maxBytes) {
  const batches = [];
  let events = [];
  let bytes = 0;
  for (const item of state.buffer) {
    if (events.length && (events.length >= state.options.maxBatchEvents || bytes + item.bytes > maxBytes)) {
      batches.push(envelope(state, events));
      events = [];
      bytes = 0;
    }
    events.push(item.event);
    bytes += item.bytes;
  }
  if (events.length) batches.push(envelope(state, events));
  state.buffer = [];
  state.bufferBytes = 0;
  return batches;
}

async function sendOne(state, batch) {
  const json = JSON.stringify(batch);
  for (let attempt = 0; ; attempt++) {
    if (state.beaconed.has(batch)) return false; // the page hid: the beacon took it over
    let response = null;
    try {
      // text/plain and the encoding in ?enc= keep this a CORS "simple" request:
      // no preflight round trip per page, and the same form sendBeacon uses.
      const compress = state.options.compress && typeof CompressionStream === "function";
      response = await fetch(ingestUrl(state, compress ? "gzip" : ""), {
        method: "POST",
        headers: { "Content-Type": "text/plain;charset=UTF-8" },
        body: compress ? await gzip(json) : json,
        credentials: "omit",
        mode: "cors",
      });
      if (response.ok) {
        log(state, "sent batch", batch.seq, batch.events.length, "events");
        const answer = await response.json().catch(() => ({}));
        if (answer && answer.status === "sampled_out") stopSampledOut(state);
        return true;
      }
      if (response.status !== 429 && response.status !== 503) {
        // A refusal that a retry cannot fix (bad key, bad batch): drop it, say why.
        const body = await response.text().catch(() => "");
        console.warn("[replaypipe] ingest refused a batch:", response.status, body.slice(0, 300));
        return false;
      }
    } catch (error) {
      log(state, "network error", String(error)); // offline or blocked: retry below
    }
    if (attempt >= state.options.maxRetries) {
      console.warn("[replaypipe] giving up on a batch after", attempt + 1, "attempts");
      return false;
    }
    const delay = retryDelayMs(state, response, attempt);
    log(state, "retrying batch", batch.seq, "in", delay, "ms");
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

/** Send queued batches one at a time, in order (one batch in flight per page). */
async function pump(state) {
  if (state.sending) return;
  state.sending = true;
  try {
    while (state.queue.length) {
      const batch = state.queue[0];
      await sendOne(state, batch);
      // flushWithBeacon may have emptied the queue meanwhile.
      if (state.queue[0] === batch) state.queue.shift();
    }
  } finally {
    state.sending = false;
  }
}

function flush(state) {
  if (!state.buffer.length) return;
  state.queue.push(...takeBatches(state, state.options.maxBatchBytes));
  pump(state);
}

/**
 * The page is being hidden or unloaded: hand everything not yet delivered to
 * sendBeacon (uncompressed, text/plain so no CORS preflight is needed; gzip is
 * asynchronous and would not finish before the page is gone).
 */
function flushWithBeacon(state) {
  const batches = state.queue.splice(0).concat(takeBatches(state, BEACON_MAX_BYTES));
  for (const batch of batches) {
    state.beaconed.add(batch);
    const body = new Blob([JSON.stringify(batch)], { type: "text/plain;charset=UTF-8" });
    let sent = false;
    try {
      sent = navigator.sendBeacon && navigator.sendBeacon(ingestUrl(state), body);
    } catch (_) {
      sent = false;
    }
    if (!sent) {
      // Over the beacon budget: keep it for the next page load of this tab.
      const pending = storageGet("sessionStorage", "pending") || [];
      pending.push(batch);
      storageSet("sessionStorage", "pending", pending.slice(-20));
    }
  }
}

function onEvent(state, event) {
  if (state.disabled) return;
  const now = Date.now();
  touchSession(state, now);
  // The JSON size is what the limits are about; strings are mostly ASCII.
  const bytes = JSON.stringify(event).length;
  state.buffer.push({ event, bytes });
  state.bufferBytes += bytes;
  // A full snapshot goes out at once: the replay is useless without it.
  if (event.type === 2 || state.buffer.length >= state.options.maxBatchEvents || state.bufferBytes >= state.options.maxBatchBytes) {
    flush(state);
  }
}

// --- commands -----------------------------------------------------------------

function startRecording(state) {
  if (state.stopRecording || state.disabled) return;
  if (state.options.waitForConsent && state.consent !== true) {
    log(state, "waiting for consent before recording");
    return;
  }
  const rrwebOptions = {
    emit: (event) => onEvent(state, event),
    // Snapshot again every 10 minutes so a replay can start near any point.
    checkoutEveryNms: 10 * 60 * 1000,
    ...state.options.rrweb,
  };
  if (!state.options.clientMasking) rrwebOptions.maskInputOptions = {};
  // A consent answer known at start travels in the envelope's "consent" field
  // only: a custom event here would come after the full snapshot, and a site
  // that requires consent drops everything before the signal.
  state.stopRecording = record(rrwebOptions);
  state.timer = setInterval(() => flush(state), state.options.flushIntervalMs);
  log(state, "recording", state.sessionId);
}

function init(state, options) {
  if (state.initialised) return;
  state.options = { ...DEFAULTS, ...options };
  if (!state.options.siteKey || !state.options.endpoint) {
    console.warn("[replaypipe] not recording: set data-site-key and data-endpoint (or init options siteKey and endpoint)");
    return;
  }
  state.initialised = true;
  const now = Date.now();
  const session = currentSession(now);
  state.sessionId = session.id;
  storageSet("localStorage", "session", { ...session, last: now });
  state.windowId = randomId(); // one recording (page view) = one window: seq restarts at 0
  state.visitorId = visitorId();
  if (storageGet("localStorage", "sampled_out") === state.sessionId) state.disabled = true;
  const remembered = storageGet("localStorage", "consent");
  if (state.options.consent !== undefined) state.consent = Boolean(state.options.consent);
  else if (typeof remembered === "boolean") state.consent = remembered;

  // Batches a previous page of this tab could not beacon: send them first.
  const pending = storageGet("sessionStorage", "pending");
  if (Array.isArray(pending) && pending.length) {
    storageSet("sessionStorage", "pending", []);
    state.queue.push(...pending);
    pump(state);
  }

  const hide = () => flushWithBeacon(state);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") hide();
  });
  window.addEventListener("pagehide", hide);
  startRecording(state);
}

function setConsent(state, granted) {
  const value = Boolean(granted);
  state.consent = value;
  storageSet("localStorage", "consent", value);
  if (state.stopRecording) {
    // In the stream, so the masker applies it exactly from this point on; then a
    // fresh full snapshot, because what came before may have been dropped.
    record.addCustomEvent(CONSENT_TAG, { granted: value });
    if (value) record.takeFullSnapshot(true);
    flush(state);
  } else if (value && state.initialised) {
    startRecording(state);
  }
}

function disable(state) {
  // Stop recording this page and drop what was not sent yet: a page that turns
  // recording off must not leak its content through the buffer.
  state.disabled = true;
  if (state.stopRecording) state.stopRecording();
  state.stopRecording = null;
  clearInterval(state.timer);
  state.buffer = [];
  state.bufferBytes = 0;
  state.queue = [];
}

function scriptOptions(script) {
  if (!script || !script.dataset) return {};
  const options = {};
  if (script.dataset.siteKey) options.siteKey = script.dataset.siteKey;
  if (script.dataset.endpoint) options.endpoint = script.dataset.endpoint;
  if (script.dataset.waitForConsent === "true") options.waitForConsent = true;
  if (script.dataset.debug === "true") options.debug = true;
  return options;
}

function pageOptsOut() {
  const meta = document.querySelector('meta[name="replaypipe"]');
  return Boolean(meta && /\bdisable\b/.test(meta.getAttribute("content") || ""));
}

function main() {
  const queued = (window.replaypipe && window.replaypipe.q) || [];
  if (window.replaypipe && window.replaypipe.version) return; // loaded twice
  const state = {
    options: { ...DEFAULTS },
    initialised: false,
    disabled: pageOptsOut(),
    consent: undefined,
    buffer: [],
    bufferBytes: 0,
    queue: [],
    sending: false,
    beaconed: new WeakSet(), // batches handed to sendBeacon (an in-flight retry stops)
    seq: 0,
    stopRecording: null,
    timer: null,
  };
  const fromScript = scriptOptions(document.currentScript);

  function replaypipe(command, arg) {
    switch (command) {
      case "init":
        return init(state, { ...fromScript, ...(arg || {}) });
      case "consent":
        return setConsent(state, arg);
      case "disable":
        return disable(state);
      case "flush":
        return flush(state);
      case "sessionId":
        return state.sessionId || null;
      default:
        console.warn("[replaypipe] unknown command:", command);
        return undefined;
    }
  }
  replaypipe.version = VERSION;
  window.replaypipe = replaypipe;

  const hasInit = queued.some((args) => args[0] === "init");
  if (!hasInit && fromScript.siteKey) replaypipe("init", {});
  for (const args of queued) replaypipe(...args);
}

main();
