// replaypipe viewer: the session list of a site and the replay of one session.
//
// Served by the sink (services/sink/viewer.py). The read token never goes into a
// URL that reaches a server: it is typed into the page or passed as the URL
// fragment (#token=...), kept in sessionStorage for this tab, and the fragment is
// removed from the address bar at once.

import rrwebPlayer from "rrweb-player";

const TOKEN_KEY = "replaypipe.viewer.token";

function tokenFromFragment() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  const token = params.get("token");
  if (token) {
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }
  return token;
}

function readToken() {
  const fromFragment = tokenFromFragment();
  if (fromFragment) sessionStorage.setItem(TOKEN_KEY, fromFragment);
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function setStatus(text, kind = "info") {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = `status ${kind}`;
}

/** A form to type the read token; the page reloads its data when it is submitted. */
function tokenForm(onToken) {
  const input = el("input", { type: "password", id: "token", autocomplete: "off", placeholder: "read token" });
  const form = el("form", { class: "token-form" }, el("label", { for: "token" }, "Read token "), input, el("button", { type: "submit" }, "Open"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    onToken();
  });
  return form;
}

async function apiGet(path) {
  const response = await fetch(path, {
    headers: { Authorization: `Bearer ${readToken()}` },
    credentials: "omit",
  });
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.detail) detail = `${body.detail} (${body.error}, HTTP ${response.status})`;
    } catch (_) {
      /* not JSON */
    }
    const error = new Error(detail);
    error.status = response.status;
    throw error;
  }
  return response;
}

function formatDuration(ms) {
  const seconds = Math.max(0, Math.round(ms / 1000));
  const m = Math.floor(seconds / 60);
  return m ? `${m} min ${seconds % 60} s` : `${seconds} s`;
}

async function showSessionList(root, site) {
  const base = root.dataset.base;
  if (!readToken()) {
    setStatus("Type a read token for this site to list its sessions.");
    return;
  }
  setStatus("Loading sessions …");
  let sessions;
  try {
    const response = await apiGet(`${base}/v1/sites/${encodeURIComponent(site)}/sessions?limit=200`);
    sessions = (await response.json()).sessions;
  } catch (error) {
    setStatus(`Could not list sessions: ${error.message}`, "error");
    return;
  }
  const list = document.getElementById("content");
  list.replaceChildren();
  if (!sessions.length) {
    setStatus("No stored sessions for this site yet.");
    return;
  }
  setStatus(`${sessions.length} session${sessions.length === 1 ? "" : "s"}, most recent first.`);
  const rows = sessions.map((s) => {
    const href = `${base}/viewer/${encodeURIComponent(site)}/sessions/${encodeURIComponent(s.session_id)}`;
    const start = s.start_time || "";
    const duration = Number.isFinite(s.duration_s)
      ? s.duration_s * 1000
      : Date.parse(s.end_time) - Date.parse(s.start_time);
    return el(
      "tr",
      {},
      el("td", {}, el("a", { href, class: "session-link" }, s.session_id)),
      el("td", {}, start.replace("T", " ").slice(0, 19)),
      el("td", { class: "num" }, Number.isFinite(duration) ? formatDuration(duration) : ""),
      el("td", { class: "num" }, String(s.page_views ?? "")),
      el("td", { class: "num" }, String(s.event_count ?? "")),
      el("td", { class: "url" }, s.first_url || ""),
      el("td", {}, s.consent || ""),
    );
  });
  const head = el(
    "tr",
    {},
    ...["session", "started (UTC)", "duration", "pages", "events", "first page", "consent"].map((h) => el("th", {}, h)),
  );
  list.append(el("table", { class: "sessions" }, el("thead", {}, head), el("tbody", {}, ...rows)));
}

function parseNdjson(text) {
  const events = [];
  for (const line of text.split("\n")) {
    if (line.trim()) events.push(JSON.parse(line));
  }
  return events;
}

async function showReplay(root, site, session) {
  const base = root.dataset.base;
  if (!readToken()) {
    setStatus("Type a read token for this site to play the session.");
    return;
  }
  setStatus("Loading events …");
  let events;
  try {
    const response = await apiGet(
      `${base}/v1/sites/${encodeURIComponent(site)}/sessions/${encodeURIComponent(session)}/events`,
    );
    events = parseNdjson(await response.text());
  } catch (error) {
    setStatus(`Could not load the session: ${error.message}`, "error");
    return;
  }
  if (events.filter((e) => e.type === 2).length === 0) {
    setStatus("This session has no full snapshot yet, so it cannot be replayed.", "error");
    return;
  }
  const target = document.getElementById("content");
  target.replaceChildren();
  const width = Math.min(1024, Math.max(480, target.clientWidth || 1024));
  const player = new rrwebPlayer({
    target,
    props: {
      events,
      width,
      height: Math.round(width * 0.6),
      autoPlay: false,
      showController: true,
      skipInactive: true,
    },
  });
  const meta = player.getMetaData();
  setStatus(`${events.length} events, ${formatDuration(meta.totalTime)}. Masked inputs show as *, blocked elements as empty boxes.`);
  // For tests and curious users: the player and its events.
  window.replaypipeViewer = { player, events, meta };
  document.body.dataset.state = "ready";
}

function main() {
  const root = document.getElementById("viewer");
  const { page, site, session } = root.dataset;
  const reload = () => (page === "replay" ? showReplay(root, site, session) : showSessionList(root, site));
  document.getElementById("auth").append(tokenForm(reload));
  reload();
}

main();
