// The demo page: a live task board on rohrpost's JavaScript client.
//
// The board's state comes from two places: a snapshot (the `tasks` call) and
// the change feed's pushes for the board's group (`subscription-update`). The
// page subscribes first and fetches second, holding back the pushes that
// arrive in between and replaying them on top of the snapshot, so no change
// is lost. After a reconnect the client resubscribes by itself, and the page
// fetches a fresh snapshot (changes made while it was away are in it).

const root = document.getElementById("demo");
const $ = (id) => document.getElementById(id);
const { RohrpostClient } = await import(root.dataset.clientUrl);

const PING_EVERY_MS = 1000;
const MAX_FRAMES = 15;
const ERROR_SHOWN_MS = 4000;

const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const url = `${scheme}//${location.host}${root.dataset.wsPath}`;
$("endpoint").textContent = url;

const client = new RohrpostClient(url, { pingInterval: 5000 });

// --- the board ------------------------------------------------------------------------

const board = {
  boards: [],
  id: null, // the board shown
  group: null, // its group, once subscribed
  tasks: new Map(), // id -> {id, board, title, done}
  held: null, // pushes that arrived while a snapshot was loading
};

function setStatus(state, text) {
  const status = $("status");
  status.dataset.state = state;
  status.textContent = text;
}

let errorTimer = null;
function showError(error) {
  const box = $("board-error");
  box.textContent = error.code ? `${error.message} (${error.code})` : String(error.message ?? error);
  box.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => { box.hidden = true; }, ERROR_SHOWN_MS);
}

function applyChange(change) {
  if (change.object?.board !== board.id) return;
  if (change.type === "delete") board.tasks.delete(change.object.id);
  else board.tasks.set(change.object.id, change.object);
}

function renderBoards() {
  const list = $("boards");
  list.replaceChildren(...board.boards.map((item) => {
    const entry = document.createElement("li");
    const link = document.createElement("a");
    link.href = `#board-${item.id}`;
    link.textContent = item.name;
    if (item.private) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = "private";
      link.append(" ", badge);
    }
    link.dataset.board = item.id;
    if (item.id === board.id) link.setAttribute("aria-current", "page");
    entry.append(link);
    return entry;
  }));
  const current = board.boards.find((item) => item.id === board.id);
  $("board-title").textContent = current ? current.name : "…";
}

function renderTasks() {
  // Rows that were not there before flash once (not on the first render of a board).
  const shown = new Set([...$("tasks").children].map((item) => item.dataset.id));
  const items = [...board.tasks.values()].sort((a, b) => a.id - b.id).map((task) => {
    const item = document.createElement("li");
    item.dataset.id = task.id;
    item.classList.toggle("done", task.done);
    item.classList.toggle("arrived", shown.size > 0 && !shown.has(String(task.id)));
    const toggle = document.createElement("input");
    toggle.type = "checkbox";
    toggle.className = "task-toggle";
    toggle.checked = task.done;
    toggle.setAttribute("aria-label", `Done: ${task.title}`);
    const title = document.createElement("span");
    title.className = "task-title";
    title.textContent = task.title;
    title.title = "Click to rename";
    title.tabIndex = 0;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "task-delete";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `Delete: ${task.title}`);
    item.append(toggle, title, remove);
    return item;
  });
  $("tasks").replaceChildren(...items);
  $("board-empty").hidden = items.length > 0;
}

async function loadSnapshot() {
  board.held = [];
  try {
    const tasks = await client.call("tasks", { board: board.id });
    board.tasks = new Map(tasks.map((task) => [task.id, task]));
    for (const change of board.held) applyChange(change);
  } finally {
    board.held = null;
  }
  renderTasks();
}

function onPush(error, change) {
  if (error) return; // the subscription ended: the `unsubscribed` event tells the user
  if (board.held) board.held.push(change);
  else {
    applyChange(change);
    renderTasks();
  }
}

async function showBoard(boardId) {
  if (board.group) {
    client.off(board.group, onPush);
    const old = board.id;
    board.group = null;
    client.unsubscribe({ type: "board", id: old }).catch(showError);
  }
  board.id = boardId;
  board.tasks = new Map();
  renderBoards();
  renderTasks();
  const { group } = await client.subscribe({ type: "board", id: boardId });
  board.group = group;
  client.on(group, onPush);
  await loadSnapshot();
}

function boardFromHash() {
  const match = /^#board-(\d+)$/.exec(location.hash);
  const wanted = match ? Number(match[1]) : null;
  return board.boards.some((item) => item.id === wanted) ? wanted : board.boards[0]?.id;
}

async function start() {
  board.boards = await client.call("boards");
  const wanted = boardFromHash();
  if (wanted === undefined) return;
  if (board.group && wanted === board.id) await loadSnapshot(); // reconnected: catch up
  else await showBoard(wanted);
}

window.addEventListener("hashchange", () => {
  const wanted = boardFromHash();
  if (wanted !== undefined && wanted !== board.id) showBoard(wanted).catch(showError);
});

$("task-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = event.target.elements.title;
  try {
    applyChange({ type: "create", object: await client.call("task.add", { board: board.id, title: input.value }) });
    input.value = "";
    renderTasks();
  } catch (error) {
    showError(error);
  }
});

async function edit(type, data) {
  try {
    const task = await client.call(type, data);
    applyChange(type === "task.delete"
      ? { type: "delete", object: { id: task.id, board: board.id } }
      : { type: "update", object: task });
  } catch (error) {
    showError(error);
  }
  renderTasks();
}

$("tasks").addEventListener("change", (event) => {
  if (!event.target.classList.contains("task-toggle")) return;
  const id = Number(event.target.closest("li").dataset.id);
  edit("task.toggle", { id, done: event.target.checked });
});

$("tasks").addEventListener("click", (event) => {
  const item = event.target.closest("li");
  if (!item) return;
  const id = Number(item.dataset.id);
  if (event.target.classList.contains("task-delete")) edit("task.delete", { id });
  else if (event.target.classList.contains("task-title")) startRename(item, id);
});

$("tasks").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && event.target.classList.contains("task-title")) {
    startRename(event.target.closest("li"), Number(event.target.closest("li").dataset.id));
  }
});

function startRename(item, id) {
  const title = item.querySelector(".task-title");
  const input = document.createElement("input");
  input.className = "task-rename";
  input.value = board.tasks.get(id)?.title ?? title.textContent;
  input.maxLength = 200;
  input.setAttribute("aria-label", "New title");
  let done = false;
  const finish = (save) => {
    if (done) return;
    done = true;
    if (save && input.value.trim() && input.value !== board.tasks.get(id)?.title) {
      edit("task.rename", { id, title: input.value });
    } else {
      renderTasks();
    }
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") finish(true);
    if (event.key === "Escape") finish(false);
  });
  input.addEventListener("blur", () => finish(true));
  title.replaceWith(input);
  input.focus();
  input.select();
}

// --- the connection -------------------------------------------------------------------

client.on("open", () => {
  setStatus("open", "live");
  start().catch(showError);
});
client.on("reconnecting", () => setStatus("connecting", "reconnecting…"));
client.on("closed", ({ code, willReconnect }) => {
  setStatus(willReconnect ? "connecting" : "closed", willReconnect ? "reconnecting…" : "disconnected");
  // 4003: the server ended this user's connections (a logout in another tab).
  // The session is gone, so a reload shows the page as the anonymous user.
  if (code === 4003) location.reload();
});
client.on("unsubscribed", ({ group, reason }) => {
  showError({ message: `Removed from ${group}: ${reason ?? "no reason given"}` });
});

// --- the playground: round trips, raw requests, frames ----------------------------------

const rtt = { count: 0, total: 0, min: Infinity };

function logFrame(direction, text) {
  if (!$("show-pings").checked && /"type"\s*:\s*"(ping|pong)"/.test(text)) return;
  const item = document.createElement("li");
  const when = document.createElement("span");
  when.className = "when";
  when.textContent = new Date().toLocaleTimeString([], { hour12: false });
  const arrow = document.createElement("span");
  arrow.className = direction;
  arrow.textContent = direction === "in" ? "←" : "→";
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  body.title = text;
  item.append(when, arrow, body);
  const frames = $("frames");
  frames.prepend(item);
  while (frames.children.length > MAX_FRAMES) frames.lastElementChild.remove();
}

client.on("message", (frame) => logFrame("in", typeof frame === "string" ? frame : JSON.stringify(frame)));

async function measure() {
  const started = performance.now();
  try {
    await client.call("ping", undefined, { timeout: 2000 });
  } catch {
    return;
  }
  const ms = performance.now() - started;
  rtt.count += 1;
  rtt.total += ms;
  rtt.min = Math.min(rtt.min, ms);
  $("rtt-last").textContent = `${ms.toFixed(1)} ms`;
  $("rtt-min").textContent = `${rtt.min.toFixed(1)} ms`;
  $("rtt-avg").textContent = `${(rtt.total / rtt.count).toFixed(1)} ms`;
  $("rtt-count").textContent = String(rtt.count);
}
setInterval(() => { if ($("demo").querySelector("details[open]")) measure(); }, PING_EVERY_MS);

$("request-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const reply = $("reply");
  let data;
  try {
    data = form.elements.data.value.trim() ? JSON.parse(form.elements.data.value) : undefined;
  } catch (error) {
    reply.dataset.kind = "error";
    reply.textContent = `The data is not JSON: ${error.message}`;
    return;
  }
  const type = form.elements.type.value.trim();
  logFrame("out", JSON.stringify(data === undefined ? { type } : { type, data }));
  try {
    const answer = await client.call(type, data);
    reply.dataset.kind = "ok";
    reply.textContent = JSON.stringify(answer, null, 2) ?? "(no data)";
  } catch (error) {
    reply.dataset.kind = "error";
    reply.textContent = error.code ? `${error.code}: ${error.message}` : String(error.message ?? error);
  }
});
