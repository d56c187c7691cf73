// The krill dashboard. It reads this peer's REST API, follows /events to stay current without
// reloading, and edits nodes through POST /node/{id}. Everything it shows comes from the peer
// that served the page: no other origin, no library, no build step.

// Node states, in the order the edit form offers them.
const STATES = ["none", "info", "warn", "severe", "error", "paused", "pairing", "processing"];

// Types whose chain a person may start by hand: the triggers and the executors.
const RUNNABLE = new Set([
  "HighThreshold", "LowThreshold", "CronTimer", "Timer", "Button", "IncomingWebHook",
  "LogicGate", "Calculation", "Compute", "OutgoingWebHook",
]);

// Changes arriving within this many milliseconds are fetched together: a burst of writes
// (a catch-up sync, a chain run) costs one round of requests instead of one per event.
const COALESCE_MS = 50;
// The peer list in /health changes only as peers come and go; a slow poll is enough.
const HEALTH_PERIOD_MS = 10_000;
// A data point written many times a second must not re-read its history on every write.
const SERIES_MIN_INTERVAL_MS = 2_000;
// After the browser gives up on /events (the peer answered with an error), try again after this.
const RECONNECT_MS = 2_000;

const SVG_NS = "http://www.w3.org/2000/svg";

const view = {
  health: null,
  nodes: new Map(),        // node id -> node as the API returned it
  loaded: false,           // the first node list has arrived
  selected: null,          // id of the node in the detail panel
  baseline: null,          // the node as last loaded into the edit form
  formDirty: false,        // the user typed into the form since it was loaded
  seq: 0,                  // numbers every read, so an older answer never replaces a newer one
  listSeq: 0,
  nodeSeq: new Map(),      // node id -> seq of the newest read applied or in flight
  pendingIds: new Set(),
  pendingList: false,
  flushTimer: null,
  seriesTimer: null,
  seriesReadAt: 0,
};

const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------------------ the API

// A peer with http.token_file wants a token on every request. It can be handed to the page
// once in its address (#token=...), which is then cleared from the address bar, or typed in
// when the peer answers 401; it is kept in this browser's storage for this peer's origin.
const TOKEN_KEY = "krill-token";
let tokenAsked = false;

function takeTokenFromAddress() {
  const match = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
  if (match) {
    localStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    const rest = window.location.hash.replace(/(^#|&)token=[^&]*/, "$1").replace(/^#&/, "#");
    const { pathname, search } = window.location;
    history.replaceState(null, "", pathname + search + (rest === "#" ? "" : rest));
  }
}

const currentToken = () => localStorage.getItem(TOKEN_KEY) || "";

function askForToken() {
  if (tokenAsked) return;
  tokenAsked = true;
  const given = window.prompt("This peer needs an access token (see http.token_file):");
  if (given) {
    localStorage.setItem(TOKEN_KEY, given.trim());
    window.location.reload();
  }
}

async function api(path, options = {}) {
  let response;
  const token = currentToken();
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (token) headers.Authorization = `Bearer ${token}`;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (err) {
    return { ok: false, status: 0, error: `cannot reach the peer: ${err.message}` };
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (response.status === 401) askForToken();
  if (!response.ok) {
    const error = data && typeof data.error === "string"
      ? data.error
      : `${response.status} ${response.statusText}`.trim();
    return { ok: false, status: response.status, error, data };
  }
  return { ok: true, status: response.status, data };
}

const nodePath = (id) => `/node/${encodeURIComponent(id)}`;

// ------------------------------------------------------------------------- DOM helpers

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  node.append(...children);
  return node;
}

function badge(state) {
  const known = STATES.includes(state) ? state : "unknown";
  return el("span", { className: `badge state-${known}`, title: `state: ${state}` }, state);
}

function label(node) {
  return node.name || node.id;
}

function when(seconds) {
  if (typeof seconds !== "number") return "—";
  return new Date(seconds * 1000).toLocaleString();
}

// Canonical JSON (sorted keys) so two equal metas compare equal whatever their key order.
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

// --------------------------------------------------------------------------- this peer

async function loadHealth() {
  const answer = await api("/health");
  if (!answer.ok) return;
  const before = view.health && canonical([view.health.name, view.health.follows]);
  view.health = answer.data;
  renderHealth();
  // The tree marks this peer's own host doc and lists followed host docs without nodes;
  // redraw it only when those change, so a periodic poll does not steal keyboard focus.
  if (view.loaded && before !== canonical([view.health.name, view.health.follows])) renderTree();
}

function renderHealth() {
  const health = view.health;
  if (!health) return;
  $("peer-name").textContent = health.name;
  $("peer-id").textContent = health.peer.slice(0, 8);
  $("peer-id").title = `peer id ${health.peer}`;
  $("peer-version").textContent = `v${health.version}`;
  document.title = `${health.name} · krill`;

  const peers = health.peers || [];
  const chips = peers.map((id) => el("code", { className: "chip", title: id }, id.slice(0, 8)));
  $("peers").replaceChildren(
    el("span", { className: "peers-label" }, peers.length ? "peers seen" : "no peers seen yet"),
    ...chips,
  );
}

function setLive(status, text = status) {
  const live = $("live");
  live.dataset.status = status;
  live.textContent = text;
}

// -------------------------------------------------------------------------- the stream

function connect() {
  const token = currentToken();
  const source = new EventSource(token ? `/events?token=${encodeURIComponent(token)}` : "/events");
  setLive("connecting");

  // "open" fires once the peer has subscribed this stream (it subscribes before answering),
  // so a list read now misses nothing. It fires again after every reconnect, which also
  // re-reads whatever changed while the stream was down.
  source.addEventListener("open", () => {
    setLive("live");
    reloadAll();
  });
  source.addEventListener("change", (event) => {
    let change;
    try {
      change = JSON.parse(event.data);
    } catch {
      return;
    }
    onChange(change);
  });
  source.addEventListener("overflow", () => {
    // This page fell too far behind; the peer ends the stream. Start over from a fresh list.
    source.close();
    setLive("catching-up", "catching up");
    setTimeout(connect, 0);
  });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      setLive("offline");
      // An event stream cannot tell why it was refused; a plain read can (401: a token).
      api("/nodes?type=Server");
      setTimeout(connect, RECONNECT_MS);
    } else {
      setLive("reconnecting");
    }
  });
}

function onChange(change) {
  if (change.kind === "created" || change.kind === "deleted") view.pendingList = true;
  else if (typeof change.id === "string") view.pendingIds.add(change.id);
  if (view.flushTimer === null) view.flushTimer = setTimeout(flushChanges, COALESCE_MS);
}

function flushChanges() {
  view.flushTimer = null;
  if (view.pendingList) {
    view.pendingList = false;
    view.pendingIds.clear();
    reloadNodes();
    return;
  }
  const ids = [...view.pendingIds];
  view.pendingIds.clear();
  for (const id of ids) refreshNode(id);
}

function reloadAll() {
  loadHealth();
  reloadNodes();
}

async function reloadNodes() {
  const seq = ++view.seq;
  view.listSeq = seq;
  const answer = await api("/nodes");
  if (view.listSeq !== seq) return; // a newer list read is on its way
  if (!answer.ok) {
    $("hosts").replaceChildren(el("p", { className: "error" }, answer.error));
    return;
  }
  const nodes = new Map();
  for (const node of answer.data) {
    // A single node read that started after this list keeps its newer value.
    const newer = (view.nodeSeq.get(node.id) || 0) > seq && view.nodes.get(node.id);
    nodes.set(node.id, newer || node);
  }
  view.nodes = nodes;
  view.loaded = true;
  renderTree();
  if (view.selected !== null) showDetail(view.selected, { remote: true });
}

async function refreshNode(id) {
  const seq = ++view.seq;
  view.nodeSeq.set(id, seq);
  const answer = await api(nodePath(id));
  if (view.nodeSeq.get(id) !== seq) return;
  if (answer.ok) view.nodes.set(id, answer.data);
  else if (answer.status === 404) view.nodes.delete(id);
  else return;
  renderTree();
  if (view.selected === id) showDetail(id, { remote: true });
}

// ---------------------------------------------------------------------------- the tree

function renderTree() {
  const byHost = new Map();
  for (const host of view.health?.follows || []) byHost.set(host, []);
  for (const node of view.nodes.values()) {
    if (!byHost.has(node.host)) byHost.set(node.host, []);
    byHost.get(node.host).push(node);
  }
  const hosts = [...byHost.keys()].sort();
  if (!hosts.length) {
    $("hosts").replaceChildren(el("p", { className: "empty" }, "No host docs yet."));
    return;
  }
  $("hosts").replaceChildren(...hosts.map((host) => renderHost(host, byHost.get(host))));
}

function renderHost(host, nodes) {
  const ids = new Set(nodes.map((n) => n.id));
  const children = new Map();
  const roots = [];
  for (const node of nodes) {
    // A node whose parent this peer does not hold (yet) is shown at the top, not hidden.
    if (node.parent === null || !ids.has(node.parent)) roots.push(node);
    else {
      if (!children.has(node.parent)) children.set(node.parent, []);
      children.get(node.parent).push(node);
    }
  }
  const own = view.health && host === view.health.name;
  const title = el("h2", { className: "host-title" },
    el("span", {}, host),
    own ? el("span", { className: "tag" }, "this peer") : null,
    el("span", { className: "count" }, `${nodes.length} node${nodes.length === 1 ? "" : "s"}`));
  const list = nodes.length
    ? renderBranch(roots, children, new Set())
    : el("p", { className: "empty" }, "No nodes yet.");
  return el("section", { className: "host", dataset: { host } }, title, list);
}

function byLabel(a, b) {
  return label(a).localeCompare(label(b)) || a.id.localeCompare(b.id);
}

function renderBranch(nodes, children, seen) {
  const list = el("ul", { className: "tree" });
  for (const node of [...nodes].sort(byLabel)) {
    if (seen.has(node.id)) continue; // the model forbids cycles; never loop on one anyway
    seen.add(node.id);
    const row = el("div", {
      className: `node-row${node.id === view.selected ? " selected" : ""}`,
      role: "button",
      tabIndex: 0,
      dataset: { nodeId: node.id },
      title: node.id,
    },
    el("span", { className: "node-name" }, label(node)),
    el("span", { className: "node-type" }, node.type),
    badge(node.state));
    const kids = children.get(node.id);
    list.append(el("li", {}, row, kids ? renderBranch(kids, children, seen) : null));
  }
  return list;
}

function onTreeActivate(event) {
  if (event.type === "keydown" && event.key !== "Enter" && event.key !== " ") return;
  const row = event.target.closest(".node-row");
  if (!row) return;
  event.preventDefault();
  select(row.dataset.nodeId);
}

// ------------------------------------------------------------------------ the detail panel

function select(id) {
  view.selected = id;
  view.formDirty = false;
  history.replaceState(null, "", `#node=${encodeURIComponent(id)}`);
  for (const row of document.querySelectorAll(".node-row")) {
    row.classList.toggle("selected", row.dataset.nodeId === id);
  }
  clearFormMessages();
  $("invoke-result").hidden = true;
  showDetail(id, { remote: false });
}

function showDetail(id, { remote }) {
  const node = view.nodes.get(id);
  if (!node) {
    $("detail-body").hidden = true;
    $("detail-empty").hidden = false;
    $("detail-empty").textContent = remote
      ? `Node ${id} was deleted.`
      : "Select a node to see and edit it.";
    return;
  }
  $("detail-empty").hidden = true;
  $("detail-body").hidden = false;
  $("detail-name").textContent = label(node);
  $("detail-state").replaceWith(Object.assign(badge(node.state), { id: "detail-state" }));
  $("detail-id").textContent = node.id;
  $("detail-type").textContent = node.type;
  $("detail-host").textContent = node.host;
  $("detail-parent").textContent = node.parent === null ? "— (a root)" : node.parent;
  $("detail-updated").textContent = when(node.updated);

  // Someone else's write must not wipe what the user is typing; offer it instead.
  if (remote && view.formDirty) {
    $("detail-stale").hidden = canonical(node) === canonical(view.baseline);
  } else {
    fillForm(node);
  }

  $("invoke").hidden = !RUNNABLE.has(node.type);
  const isPoint = node.type === "DataPoint";
  $("series").hidden = !isPoint;
  if (isPoint) scheduleSeries(id, remote);
}

function fillForm(node) {
  view.baseline = node;
  view.formDirty = false;
  $("detail-stale").hidden = true;
  $("edit-name").value = node.name;
  $("edit-state").value = STATES.includes(node.state) ? node.state : "none";
  $("edit-meta").value = JSON.stringify(node.meta ?? {}, null, 2);
}

function clearFormMessages() {
  $("edit-error").hidden = true;
  $("edit-error").textContent = "";
  $("edit-result").textContent = "";
}

function showFormError(message) {
  $("edit-result").textContent = "";
  $("edit-error").textContent = message;
  $("edit-error").hidden = false;
}

async function onSave(event) {
  event.preventDefault();
  const id = view.selected;
  const base = view.baseline;
  if (id === null || !base) return;
  clearFormMessages();

  let meta;
  try {
    meta = JSON.parse($("edit-meta").value);
  } catch (err) {
    showFormError(`meta: not valid JSON: ${err.message}`);
    return;
  }
  if (meta === null || typeof meta !== "object" || Array.isArray(meta)) {
    showFormError("meta: must be a JSON object");
    return;
  }

  // Send only what the user changed: fields they left alone keep whatever other peers
  // write to them meanwhile (the API updates only the fields in the body).
  const changes = {};
  if ($("edit-name").value !== base.name) changes.name = $("edit-name").value;
  if ($("edit-state").value !== base.state) changes.state = $("edit-state").value;
  if (canonical(meta) !== canonical(base.meta)) changes.meta = meta;
  if (!Object.keys(changes).length) {
    $("edit-result").textContent = "Nothing to save.";
    return;
  }

  $("edit-save").disabled = true;
  const answer = await api(nodePath(id), {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(changes),
  });
  $("edit-save").disabled = false;
  if (view.selected !== id) return;
  if (!answer.ok) {
    showFormError(answer.error);
    return;
  }
  view.nodeSeq.set(id, ++view.seq);
  view.nodes.set(id, answer.data);
  view.formDirty = false;
  renderTree();
  showDetail(id, { remote: false });
  $("edit-result").textContent = "Saved.";
}

function onReset() {
  clearFormMessages();
  const node = view.nodes.get(view.selected);
  if (node) fillForm(node);
}

async function onInvoke() {
  const id = view.selected;
  if (id === null) return;
  const out = $("invoke-result");
  $("invoke-run").disabled = true;
  const answer = await api(`${nodePath(id)}/invoke`, { method: "POST" });
  $("invoke-run").disabled = false;
  if (view.selected !== id) return;
  out.classList.toggle("error", !answer.ok);
  out.textContent = answer.ok ? JSON.stringify(answer.data, null, 2) : answer.error;
  out.hidden = false;
}

// ------------------------------------------------------------------------------ history

function scheduleSeries(id, remote) {
  clearTimeout(view.seriesTimer);
  const wait = remote ? Math.max(0, view.seriesReadAt + SERIES_MIN_INTERVAL_MS - Date.now()) : 0;
  view.seriesTimer = setTimeout(() => loadSeries(id), wait);
}

async function loadSeries(id) {
  view.seriesReadAt = Date.now();
  const span = Number($("series-window").value);
  const since = Date.now() / 1000 - span;
  const answer = await api(`${nodePath(id)}/series?since=${since.toFixed(3)}`);
  const node = view.nodes.get(id);
  if (view.selected !== id || !node) return;
  const note = $("series-note");
  if (!answer.ok) {
    $("series-plot").replaceChildren();
    note.textContent = answer.error;
    return;
  }
  const samples = answer.data;
  const remoteHost = view.health && node.host !== view.health.name;
  note.textContent = remoteHost
    ? `History is kept by the node's host, ${node.host}; this peer holds ${samples.length} sample(s).`
    : `${samples.length} sample(s).`;
  $("series-plot").replaceChildren(plot(samples, node.meta || {}));
}

function plot(samples, meta) {
  const points = [];
  for (const [t, v] of samples) {
    if (typeof v === "number" && Number.isFinite(v)) points.push([t, v]);
    else if (typeof v === "boolean") points.push([t, v ? 1 : 0]);
  }
  if (!points.length) {
    const latest = samples.length ? String(samples[samples.length - 1][1]) : null;
    return el("p", { className: "empty" },
      latest === null ? "No samples in this window." : `Text values are not plotted; latest: ${latest}`);
  }

  const width = 640, height = 220;
  const left = 56, right = 14, top = 14, bottom = 30;
  let [t0, t1] = [points[0][0], points[points.length - 1][0]];
  if (t1 === t0) [t0, t1] = [t0 - 1, t1 + 1];
  let lo = Math.min(...points.map((p) => p[1]));
  let hi = Math.max(...points.map((p) => p[1]));
  if (hi === lo) [lo, hi] = [lo - 1, hi + 1];
  const pad = (hi - lo) * 0.05;
  [lo, hi] = [lo - pad, hi + pad];

  const x = (t) => left + ((t - t0) / (t1 - t0)) * (width - left - right);
  const y = (v) => top + (1 - (v - lo) / (hi - lo)) * (height - top - bottom);
  const digits = Number.isInteger(meta.precision) ? Math.min(meta.precision, 6) : 2;
  const unit = meta.unit ? ` ${meta.unit}` : "";

  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "chart",
    role: "img",
    "aria-label": `history of ${points.length} samples`,
  });
  for (const v of [lo + pad, (lo + hi) / 2, hi - pad]) {
    chart.append(
      svg("line", { x1: left, x2: width - right, y1: y(v), y2: y(v), class: "grid" }),
      svg("text", { x: left - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" },
        v.toFixed(digits)),
    );
  }
  const long = t1 - t0 > 86_400;
  const stamp = (t) => {
    const d = new Date(t * 1000);
    return long ? d.toLocaleDateString() : d.toLocaleTimeString();
  };
  chart.append(
    svg("text", { x: left, y: height - 8, class: "axis" }, stamp(t0)),
    svg("text", { x: width - right, y: height - 8, class: "axis", "text-anchor": "end" },
      stamp(t1)),
    svg("polyline", {
      class: "line",
      points: points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" "),
    }),
  );
  const [lt, lv] = points[points.length - 1];
  chart.append(svg("circle", { cx: x(lt), cy: y(lv), r: 3.5, class: "last" },
    svg("title", {}, `${lv.toFixed(digits)}${unit} at ${new Date(lt * 1000).toLocaleString()}`)));
  return chart;
}

// -------------------------------------------------------------------------------- start

function start() {
  $("edit-state").replaceChildren(...STATES.map((s) => el("option", { value: s }, s)));
  $("hosts").addEventListener("click", onTreeActivate);
  $("hosts").addEventListener("keydown", onTreeActivate);
  $("edit").addEventListener("submit", onSave);
  $("edit").addEventListener("input", () => { view.formDirty = true; });
  $("edit-reset").addEventListener("click", onReset);
  $("detail-reload").addEventListener("click", onReset);
  $("invoke-run").addEventListener("click", onInvoke);
  $("series-window").addEventListener("change", () => {
    if (view.selected !== null) loadSeries(view.selected);
  });

  takeTokenFromAddress();
  const wanted = /^#node=(.+)$/.exec(location.hash);
  if (wanted) {
    view.selected = decodeURIComponent(wanted[1]);
  }
  connect();
  setInterval(loadHealth, HEALTH_PERIOD_MS);
}

start();
