// The demo page: one rohrpost connection, a ping every second, a request form.
// Plain ES module, no dependencies: every frame is {"id", "type", "data"} JSON.

const PING_INTERVAL_MS = 1000;
const REQUEST_TIMEOUT_MS = 10000;
const MAX_FRAMES = 15;
const CONNECT_TIMEOUT_MS = 5000;
const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 10000;

const root = document.getElementById("demo");
const $ = (id) => document.getElementById(id);

const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const url = `${scheme}//${location.host}${root.dataset.wsPath}`;
$("endpoint").textContent = url;

let socket = null;
let pingTimer = null;
let retryMs = FIRST_RETRY_MS;
let nextId = 1;
// id -> {type, sentAt, resolve, reject, timer}: requests waiting for their reply.
const pending = new Map();
const rtt = { count: 0, total: 0, min: Infinity };

function setStatus(state, text) {
  const status = $("status");
  status.dataset.state = state;
  status.textContent = text;
}

function logFrame(direction, text) {
  if (!$("show-pings").checked && /"type"\s*:\s*"(ping|pong)"/.test(text)) return;
  const item = document.createElement("li");
  const when = document.createElement("span");
  when.className = "when";
  when.textContent = new Date().toLocaleTimeString([], { hour12: false }) +
    "." + String(Date.now() % 1000).padStart(3, "0");
  const arrow = document.createElement("span");
  arrow.className = { in: "in", out: "out" }[direction] ?? "";
  arrow.textContent = { in: "←", out: "→" }[direction] ?? "·";
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  body.title = text;
  item.append(when, arrow, body);
  const frames = $("frames");
  frames.prepend(item);
  while (frames.children.length > MAX_FRAMES) frames.lastElementChild.remove();
}

// Send {"id", "type"[, "data"]} and resolve with the reply frame (error replies included).
function request(type, data) {
  return new Promise((resolve, reject) => {
    if (socket?.readyState !== WebSocket.OPEN) {
      reject(new Error("not connected"));
      return;
    }
    const id = nextId++;
    const frame = data === undefined ? { id, type } : { id, type, data };
    const timer = setTimeout(() => {
      pending.delete(id);
      reject(new Error(`no reply within ${REQUEST_TIMEOUT_MS / 1000} s`));
    }, REQUEST_TIMEOUT_MS);
    pending.set(id, { sentAt: performance.now(), resolve, reject, timer });
    const text = JSON.stringify(frame);
    socket.send(text);
    logFrame("out", text);
  });
}

function onFrame(text) {
  logFrame("in", text);
  let frame;
  try {
    frame = JSON.parse(text);
  } catch {
    return;
  }
  const waiting = pending.get(frame.id);
  if (!waiting) return; // a push, or a reply that came after its timeout
  pending.delete(frame.id);
  clearTimeout(waiting.timer);
  waiting.resolve({ frame, ms: performance.now() - waiting.sentAt });
}

function failPending(reason) {
  for (const { reject, timer } of pending.values()) {
    clearTimeout(timer);
    reject(new Error(reason));
  }
  pending.clear();
}

const formatMs = (ms) => `${ms.toFixed(1)} ms`;

async function ping() {
  try {
    const { frame, ms } = await request("ping");
    if (frame.type !== "pong") return;
    rtt.count += 1;
    rtt.total += ms;
    rtt.min = Math.min(rtt.min, ms);
    $("rtt-last").textContent = formatMs(ms);
    $("rtt-min").textContent = formatMs(rtt.min);
    $("rtt-avg").textContent = formatMs(rtt.total / rtt.count);
    $("rtt-count").textContent = String(rtt.count);
  } catch {
    // The connection closed or the pong is late: the status line says so.
  }
}

function connect() {
  setStatus("connecting", "connecting…");
  const ws = new WebSocket(url);
  socket = ws;
  const openTimer = setTimeout(() => lost(ws, "no answer"), CONNECT_TIMEOUT_MS);
  ws.addEventListener("open", () => {
    clearTimeout(openTimer);
    retryMs = FIRST_RETRY_MS;
    setStatus("open", "connected");
    logFrame("info", `connected to ${url}`);
    ping();
    pingTimer = setInterval(ping, PING_INTERVAL_MS);
  });
  ws.addEventListener("message", (event) => onFrame(event.data));
  ws.addEventListener("close", (event) => {
    clearTimeout(openTimer);
    lost(ws, `code ${event.code}${event.reason ? `: ${event.reason}` : ""}`);
  });
  // Browsers follow "error" with "close" (which carries the code); some runtimes
  // (Node 20) fire only "error" for a refused connection, so it counts too.
  ws.addEventListener("error", () => {
    clearTimeout(openTimer);
    setTimeout(() => lost(ws, "connection failed"), 100);
  });
}

// Forget a dead connection and schedule the next attempt, once per connection.
function lost(ws, why) {
  if (ws !== socket) return;
  socket = null;
  clearInterval(pingTimer);
  if (ws.readyState !== WebSocket.CLOSED) ws.close();
  failPending("the connection was lost");
  const seconds = (retryMs / 1000).toFixed(1);
  setStatus("closed", `disconnected (${why}), retrying in ${seconds} s`);
  logFrame("info", `disconnected (${why})`);
  setTimeout(connect, retryMs);
  retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
}

function showReply(kind, text) {
  const reply = $("reply");
  reply.dataset.kind = kind;
  reply.textContent = text;
}

$("request-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const type = form.elements.type.value.trim();
  const dataText = form.elements.data.value.trim();
  let data;
  if (dataText) {
    try {
      data = JSON.parse(dataText);
    } catch (error) {
      showReply("error", `data is not valid JSON: ${error.message}`);
      return;
    }
  }
  showReply("pending", `waiting for the reply to "${type}"…`);
  try {
    const { frame, ms } = await request(type, data);
    const pretty = JSON.stringify(frame, null, 2);
    if ("error" in frame) {
      showReply("error", `error ${frame.code ?? "(no code)"}: ${frame.error}\n\n${pretty}`);
    } else {
      showReply("ok", `reply in ${formatMs(ms)}\n\n${pretty}`);
    }
  } catch (error) {
    showReply("error", `no reply: ${error.message}`);
  }
});

connect();
