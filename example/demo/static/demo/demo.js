// The demo page: a live task board on rohrpost's JavaScript client.
//
// The board's state comes from two places: the snapshot that `subscribe`
// answers with (the board's tasks, as of a position in the board's history) and
// the change feed's pushes for the board's group (`subscription-update`), which
// come after it. After a reconnect the client resubscribes by itself, from the
// last position the page applied, and the server replays the pushes it missed:
// the page does nothing. When they are gone (the server restarted, the history
// expired), the client emits `reset` with a fresh snapshot, and the page starts
// again from it.
//
// Rows are kept per task id and updated in place, never rebuilt: a push must
// not take the focus, the selection or a half-typed title from the person
// using the page (see startRename for what a push does to a title being edited).

import { startPlayground } from "./playground.js";

const root = document.getElementById("demo");
const $ = (id) => document.getElementById(id);
const { RohrpostClient } = await import(root.dataset.clientUrl);

const ERROR_SHOWN_MS = 4000;
// A task added while offline waits this long for the connection to come back.
const ADD_TIMEOUT_MS = 60000;
// Failures after which the server may have added the task all the same.
const OUTCOME_UNKNOWN = new Set(["connection_lost", "timeout"]);

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
  rows: new Map(), // task id, or a new task's key -> its <li>, reused by every render
  adding: new Map(), // "new-<n>" -> {board, title, after, error}: tasks not (yet) added
  editing: null, // {id, input, before, finish} while a title is being renamed
};
let addCount = 0;

function setStatus(state, text) {
  const status = $("status");
  status.dataset.state = state;
  status.textContent = text;
  renderTasks(); // the tasks waiting to be added say whether they are queued or on their way
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
    const name = document.createElement("span");
    name.className = "board-name";
    name.textContent = item.name;
    link.append(name);
    if (item.private) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = "private";
      link.append(badge);
    }
    link.dataset.board = item.id;
    if (item.id === board.id) link.setAttribute("aria-current", "page");
    entry.append(link);
    return entry;
  }));
  const current = board.boards.find((item) => item.id === board.id);
  $("board-title").textContent = current ? current.name : "…";
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function taskRow(id) {
  const item = document.createElement("li");
  item.dataset.id = id;
  const toggle = element("input", "task-toggle");
  toggle.type = "checkbox";
  const title = element("span", "task-title");
  title.title = "Click to rename";
  title.tabIndex = 0;
  const remove = element("button", "task-delete", "×");
  remove.type = "button";
  item.append(toggle, title, remove);
  return item;
}

function updateTaskRow(item, task) {
  item.classList.toggle("done", task.done);
  const toggle = item.querySelector(".task-toggle");
  toggle.checked = task.done;
  toggle.setAttribute("aria-label", `Done: ${task.title}`);
  item.querySelector(".task-delete").setAttribute("aria-label", `Delete: ${task.title}`);
  // While a title is renamed its text stays hidden behind the input, but current.
  item.querySelector(".task-title").textContent = task.title;
  if (board.editing?.id === task.id) {
    const note = item.querySelector(".task-note");
    const renamed = task.title !== board.editing.before;
    note.hidden = !renamed;
    note.textContent = renamed ? `Renamed elsewhere to “${task.title}”: Enter keeps yours, Esc takes theirs.` : "";
  }
}

function addingRow(key, entry) {
  const item = board.rows.get(key) ?? document.createElement("li");
  item.className = "adding";
  item.dataset.adding = key;
  const state = entry.error ? "failed" : client.state === "open" ? "sending" : "queued";
  item.dataset.state = state;
  let text = { sending: "saving…", queued: "offline: sent when the connection is back" }[state];
  if (state === "failed") {
    text = OUTCOME_UNKNOWN.has(entry.error.code)
      ? "no answer came: it may have been saved"
      : `not saved: ${entry.error.message}`;
  }
  const parts = [element("span", "adding-title", entry.title), element("span", "adding-state", text)];
  if (state === "failed") {
    const retry = element("button", "adding-retry", "retry");
    retry.type = "button";
    const dismiss = element("button", "task-delete adding-dismiss", "×");
    dismiss.type = "button";
    dismiss.setAttribute("aria-label", `Dismiss: ${entry.title}`);
    parts.push(retry, dismiss);
  }
  item.replaceChildren(...parts);
  return item;
}

// Whether a task the page added without hearing back is on the board now: a task
// newer than those known when it was sent, with its title.
function arrived(entry) {
  return [...board.tasks.values()].some((task) => task.id > entry.after && task.title === entry.title);
}

function renderTasks() {
  const list = $("tasks");
  // Rows that were not there before flash once (not on the first render of a board).
  const flash = board.rows.size > 0;
  const wanted = [];
  for (const task of [...board.tasks.values()].sort((a, b) => a.id - b.id)) {
    let item = board.rows.get(task.id);
    if (!item) {
      item = taskRow(task.id);
      item.classList.toggle("arrived", flash);
      board.rows.set(task.id, item);
    }
    updateTaskRow(item, task);
    wanted.push(item);
  }
  if (board.editing && !board.tasks.has(board.editing.id)) board.editing.finish("deleted");
  for (const [key, entry] of board.adding) {
    if (entry.board !== board.id) continue;
    if (entry.error && OUTCOME_UNKNOWN.has(entry.error.code) && arrived(entry)) {
      board.adding.delete(key); // it was saved after all: the board shows it
      continue;
    }
    const item = addingRow(key, entry);
    board.rows.set(key, item);
    wanted.push(item);
  }
  // Drop the rows that went, then insert the new ones in order. A row that stays
  // is never moved: moving an element out of the document and back takes the
  // focus from an input in it, and that blur would end a rename.
  const keep = new Set(wanted);
  for (const [key, item] of board.rows) {
    if (!keep.has(item)) {
      item.remove();
      board.rows.delete(key);
    }
  }
  let next = list.firstElementChild;
  for (const item of wanted) {
    if (item === next) next = next.nextElementSibling;
    else list.insertBefore(item, next);
  }
  $("board-empty").hidden = wanted.length > 0;
}

function clearTasks() {
  board.editing?.finish("cancel");
  board.tasks = new Map();
  board.rows = new Map();
  $("tasks").replaceChildren();
}

function loadSnapshot(snapshot) {
  board.tasks = new Map(snapshot.tasks.map((task) => [task.id, task]));
  renderTasks();
}

function onPush(error, change) {
  if (error) return; // the subscription ended: the `unsubscribed` event tells the user
  applyChange(change);
  renderTasks();
}

async function showBoard(boardId) {
  if (board.group) {
    client.off(board.group, onPush);
    const old = board.id;
    board.group = null;
    client.unsubscribe({ type: "board", id: old }).catch(showError);
  }
  board.id = boardId;
  clearTasks();
  renderBoards();
  renderTasks();
  // The pushes that follow the reply are those after its snapshot.
  const { group, snapshot } = await client.subscribe({ type: "board", id: boardId });
  if (board.id !== boardId) {
    // Another board was chosen meanwhile.
    client.unsubscribe({ type: "board", id: boardId }).catch(showError);
    return;
  }
  board.group = group;
  client.on(group, onPush);
  loadSnapshot(snapshot);
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
  // Reconnected to the same board: the client resumed it; nothing was missed.
  if (!(board.group && wanted === board.id)) await showBoard(wanted);
}

window.addEventListener("hashchange", () => {
  const wanted = boardFromHash();
  if (wanted !== undefined && wanted !== board.id) showBoard(wanted).catch(showError);
});

// --- adding: a row at once, which says when the task waits for the connection ---------

async function addTask(boardId, title) {
  addCount += 1;
  const key = `new-${addCount}`;
  const after = Math.max(0, ...board.tasks.keys());
  const entry = { board: boardId, title: title.trim(), after, error: null };
  board.adding.set(key, entry);
  renderTasks();
  try {
    // Made while offline, the call waits in the client's queue until it reconnects.
    const task = await client.call("task.add", { board: boardId, title }, { timeout: ADD_TIMEOUT_MS });
    board.adding.delete(key);
    applyChange({ type: "create", object: task });
  } catch (error) {
    entry.error = error;
  }
  renderTasks();
}

$("task-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = event.target.elements.title;
  if (!input.value.trim()) return;
  addTask(board.id, input.value.trim());
  input.value = "";
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
  if (item.dataset.adding) {
    const key = item.dataset.adding;
    const entry = board.adding.get(key);
    if (!entry || !entry.error) return;
    if (event.target.classList.contains("adding-retry")) {
      board.adding.delete(key);
      addTask(entry.board, entry.title);
    } else if (event.target.classList.contains("adding-dismiss")) {
      board.adding.delete(key);
      renderTasks();
    }
    return;
  }
  const id = Number(item.dataset.id);
  if (event.target.classList.contains("task-delete")) edit("task.delete", { id });
  else if (event.target.classList.contains("task-title")) startRename(item, id);
});

$("tasks").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && event.target.classList.contains("task-title")) {
    startRename(event.target.closest("li"), Number(event.target.closest("li").dataset.id));
  }
});

// --- renaming: what the user types is theirs until they leave the field ---------------
//
// While a title is edited, pushes keep updating the row (its checkbox, the title
// hidden behind the input) but never the input, its focus or its selection. Only the user
// ends an edit: Enter or leaving the field saves what they typed (their title wins
// over a rename made elsewhere meanwhile: the last save wins, as on the server);
// Escape drops it and shows the current title, a rename made elsewhere included.
// A rename made elsewhere meanwhile is shown under the input, so it is a choice.
// A blur that is not the user leaving the field (the window losing the focus to
// another tab or program) keeps the edit open. When the task is deleted elsewhere,
// the edit ends and the page says so, with the title that was not saved.

function startRename(item, id) {
  if (board.editing?.id === id) return;
  board.editing?.finish("save");
  const title = item.querySelector(".task-title");
  const before = board.tasks.get(id)?.title ?? title.textContent;
  const input = element("input", "task-rename");
  input.value = before;
  input.maxLength = 200;
  input.setAttribute("aria-label", "New title");
  const note = element("span", "task-note");
  note.hidden = true;
  const finish = (how) => {
    if (board.editing?.input !== input) return;
    board.editing = null;
    const typed = input.value;
    input.remove();
    note.remove();
    title.hidden = false;
    item.classList.remove("editing");
    const current = board.tasks.get(id)?.title;
    if (how === "deleted") {
      showError({ message: `The task was deleted elsewhere; “${typed}” was not saved.` });
    } else if (how === "save" && typed.trim() && typed.trim() !== current) {
      edit("task.rename", { id, title: typed });
    }
  };
  board.editing = { id, input, before, finish };
  input.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" && event.key !== "Escape") return;
    finish(event.key === "Enter" ? "save" : "escape");
    title.focus(); // a keyboard user goes on from the task they renamed
  });
  input.addEventListener("blur", () => {
    // The input keeps being the document's active element when the window loses the
    // focus: the user went elsewhere, not out of the field.
    if (document.activeElement === input || !input.isConnected) return;
    finish("save");
  });
  title.hidden = true;
  item.classList.add("editing");
  title.after(input, note);
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
client.on("reset", ({ group, snapshot }) => {
  // The pushes since the page's last position are gone: start again from the snapshot.
  if (group === board.group && snapshot) loadSnapshot(snapshot);
});
client.on("unsubscribed", ({ group, reason }) => {
  showError({ message: `Removed from ${group}: ${reason ?? "no reason given"}` });
});

startPlayground(client, $);
