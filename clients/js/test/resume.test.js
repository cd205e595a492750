// Resuming subscriptions against the demo server, whose boards keep history: the pushes
// missed while the connection was down come on reconnect, once each; duplicates are
// dropped; a server restart (the in-memory history is gone) ends in a "reset" event.

import assert from "node:assert/strict";
import { after, afterEach, before, test } from "node:test";

import { EVENTS } from "../src/rohrpost.js";
import { next, nextUpdate, openClient, sleep, within } from "./helpers.js";
import { startProxy } from "./proxy.js";
import { startDemoServer } from "./server.js";

const PUBLIC = { type: "board", id: 1 };
// Reconnect at once: the tests wait for pushes, not for the backoff.
const FAST = { reconnectDelay: 20, maxReconnectDelay: 100 };

let server;
let proxy;
before(async () => {
  server = await startDemoServer();
});
after(() => server?.stop());
afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
});

/** Every push to `group` the client's listeners get, in order. */
function record(client, group) {
  const seen = [];
  client.on(group, (error, update) => seen.push(error ?? update));
  return seen;
}

async function until(condition, what) {
  await within(
    (async () => {
      while (!condition()) await sleep(10);
    })(),
    5000,
    what,
  );
}

test("subscribe answers the board's snapshot and position; pushes carry positions", async (t) => {
  const watcher = await openClient(t, server);
  const editor = await openClient(t, server);
  const reply = await watcher.subscribe(PUBLIC);
  assert.equal(reply.group, "board-1");
  assert.equal(typeof reply.position.epoch, "string");
  assert.ok(Number.isInteger(reply.position.offset));
  assert.ok(Array.isArray(reply.snapshot.tasks));
  assert.deepEqual(watcher.positionOf("board-1"), reply.position);

  const frames = [];
  watcher.on("message", (frame) => frame.type === "subscription-update" && frames.push(frame));
  const pushed = nextUpdate(watcher, "board-1");
  await editor.call("task.add", { board: 1, title: "positioned" });
  await pushed;
  assert.deepEqual(frames[0].position, {
    group: "board-1",
    epoch: reply.position.epoch,
    offset: reply.position.offset + 1,
  });
  assert.deepEqual(watcher.positionOf("board-1"), { epoch: reply.position.epoch, offset: reply.position.offset + 1 });
});

test("after a dropped connection the client gets exactly the pushes it missed, then live ones", async (t) => {
  proxy = await startProxy(server.port);
  const watcher = await openClient(t, server, { port: proxy.port, ...FAST });
  const editor = await openClient(t, server);
  await watcher.subscribe(PUBLIC);
  const seen = record(watcher, "board-1");
  const resets = [];
  watcher.on("reset", (event) => resets.push(event));

  proxy.refuse(); // cut, and keep it down while the editor works
  await next(watcher, "closed");
  const titles = [];
  for (let i = 0; i < 20; i += 1) {
    titles.push(`missed ${i}`);
    await editor.call("task.add", { board: 1, title: `missed ${i}` });
  }
  proxy.heal();
  await next(watcher, "open", { accept: ({ reconnected }) => reconnected });
  await until(() => seen.length >= 20, "the missed pushes");
  await editor.call("task.add", { board: 1, title: "live" });
  await until(() => seen.length >= 21, "the live push");
  await sleep(100); // nothing more may come
  assert.deepEqual(
    seen.map((update) => update.object.title),
    [...titles, "live"],
  );
  assert.deepEqual(resets, []);
});

test("a push at or below the last position applied is dropped as a duplicate", async (t) => {
  const watcher = await openClient(t, server);
  const editor = await openClient(t, server);
  await watcher.subscribe(PUBLIC);
  const seen = record(watcher, "board-1");
  const frames = [];
  watcher.on("message", (frame) => frame.type === "subscription-update" && frames.push(frame));
  await editor.call("task.add", { board: 1, title: "once" });
  await until(() => seen.length === 1, "the push");

  // The server sent it once; hand the same frame to the client again, as a replay
  // overlapping a live push would.
  const socket = watcher._socket;
  socket.onmessage({ data: JSON.stringify(frames[0]) });
  const older = { ...frames[0], position: { ...frames[0].position, offset: frames[0].position.offset - 1 } };
  socket.onmessage({ data: JSON.stringify(older) });
  const newer = { ...frames[0], position: { ...frames[0].position, offset: frames[0].position.offset + 5 } };
  socket.onmessage({ data: JSON.stringify(newer) });
  assert.equal(seen.length, 2);
  // Applied, but four offsets are missing before it: the position waits for them.
  assert.deepEqual(watcher.positionOf("board-1").offset, frames[0].position.offset);
});

test("after a server restart (history lost) the client emits reset with a fresh snapshot", async (t) => {
  const watcher = await openClient(t, server, FAST);
  const reply = await watcher.subscribe(PUBLIC);
  const seen = record(watcher, "board-1");
  const reset = next(watcher, "reset", { ms: 30000 });
  await server.restart();
  const event = await reset;
  assert.equal(event.group, "board-1");
  assert.notEqual(event.position.epoch, reply.position.epoch);
  assert.ok(Array.isArray(event.snapshot.tasks));
  assert.deepEqual(watcher.positionOf("board-1"), event.position);
  assert.deepEqual(watcher.groups, ["board-1"]);

  // Live again, in the new epoch.
  const editor = await openClient(t, server);
  await editor.call("task.add", { board: 1, title: "after the restart" });
  await until(() => seen.length === 1, "a push after the reset");
  assert.equal(seen[0].object.title, "after the restart");
});

test("a push of a new epoch on a live group resets it through a fresh subscribe", async (t) => {
  const watcher = await openClient(t, server);
  await watcher.subscribe(PUBLIC);
  const seen = record(watcher, "board-1");
  const reset = next(watcher, "reset");
  // Redis restarting empty under a live connection looks like this to the client.
  const stranger = {
    id: 1,
    type: "subscription-update",
    data: { type: "update", group: "board-1", object: { id: 1, board: 1, title: "x", done: false } },
    position: { group: "board-1", epoch: "another-epoch", offset: 1 },
  };
  watcher._socket.onmessage({ data: JSON.stringify(stranger) });
  const event = await reset;
  assert.equal(event.group, "board-1");
  assert.ok(Array.isArray(event.snapshot.tasks));
  assert.notEqual(event.position.epoch, "another-epoch");
  assert.equal(seen.length, 1);
});

test("reset is a lifecycle event, not a group name", () => {
  assert.ok(EVENTS.includes("reset"));
});

test("a push without a position in a group with history resets it (the server did not record it)", async (t) => {
  const watcher = await openClient(t, server);
  await watcher.subscribe(PUBLIC);
  const seen = record(watcher, "board-1");
  const resets = [];
  watcher.on("reset", (event) => resets.push(event));
  // What a server sends after Redis restarted empty: the group is no longer tracked.
  const unrecorded = {
    id: 1,
    type: "subscription-update",
    data: { type: "update", group: "board-1", object: { id: 1, board: 1, title: "x", done: false } },
  };
  watcher._socket.onmessage({ data: JSON.stringify(unrecorded) });
  watcher._socket.onmessage({ data: JSON.stringify({ ...unrecorded, id: 2 }) });
  await until(() => resets.length === 1, "the reset");
  await sleep(100);
  assert.equal(resets.length, 1); // one fresh subscribe for both
  assert.equal(seen.length, 2);
  assert.ok(Array.isArray(resets[0].snapshot.tasks));
  assert.deepEqual(watcher.positionOf("board-1"), resets[0].position);
});

test("a push lost on a live connection is asked for and comes late, without a reset", async (t) => {
  const watcher = await openClient(t, server);
  const editor = await openClient(t, server);
  const reply = await watcher.subscribe(PUBLIC);
  const seen = record(watcher, "board-1");
  const resets = [];
  watcher.on("reset", (event) => resets.push(event));
  const offsets = [];
  watcher.on("message", (frame) => frame.type === "subscription-update" && offsets.push(frame.position.offset));
  // The server's channel layer dropping one push on its way to this client.
  const socket = watcher._socket;
  const deliver = socket.onmessage;
  let lost = null;
  socket.onmessage = (event) => {
    const frame = JSON.parse(event.data);
    if (lost === null && frame.data?.object?.title === "lost") lost = frame;
    else deliver(event);
  };
  await editor.call("task.add", { board: 1, title: "lost" });
  await until(() => lost !== null, "the lost push");
  await editor.call("task.add", { board: 1, title: "after" }); // the gap shows
  await until(() => seen.length >= 2, "the push that was lost");
  const start = reply.position.offset;
  assert.deepEqual(
    seen.map((update) => update.object.title),
    ["after", "lost"],
  );
  // The replay repeats "after" too; it is dropped as a duplicate.
  assert.deepEqual(offsets, [start + 2, start + 1, start + 2]);
  assert.deepEqual(watcher.positionOf("board-1"), { epoch: reply.position.epoch, offset: start + 2 });
  await editor.call("task.add", { board: 1, title: "live" });
  await until(() => seen.length >= 3, "the live push");
  await sleep(100);
  assert.deepEqual(
    seen.map((update) => update.object.title),
    ["after", "lost", "live"],
  );
  assert.deepEqual(resets, []);
});
