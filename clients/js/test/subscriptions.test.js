// Subscriptions against the demo server: joining boards, pushes, refusals, leaving.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { nextUpdate, openClient } from "./helpers.js";
import { startDemoServer } from "./server.js";

// From example/demo/migrations/0002_demo_data.py: board 1 is public, 2 is alice's, 3 is bob's.
const PUBLIC = { type: "board", id: 1 };
const ALICES = { type: "board", id: 2 };
const BOBS = { type: "board", id: 3 };

let server;
before(async () => {
  server = await startDemoServer();
});
after(() => server?.stop());

test("subscribe resolves with the group and the group's listeners get every change", async (t) => {
  const watcher = await openClient(t, server);
  const editor = await openClient(t, server);
  const reply = await watcher.subscribe(PUBLIC);
  assert.equal(reply.group, "board-1");
  assert.deepEqual(Object.keys(reply).sort(), ["group", "position", "snapshot"]); // boards keep history
  assert.deepEqual(watcher.groups, ["board-1"]);

  const created = nextUpdate(watcher, "board-1");
  const task = await editor.call("task.add", { board: 1, title: "Water the plants" });
  assert.deepEqual(await created, [null, { type: "create", group: "board-1", object: task }]);

  const updated = nextUpdate(watcher, "board-1");
  await editor.call("task.rename", { id: task.id, title: "Water the cactus" });
  const [, update] = await updated;
  assert.equal(update.type, "update");
  // The change feed adds the saved fields to an update (save(update_fields=...)), as 4.x did.
  assert.deepEqual(update.object, { ...task, title: "Water the cactus", updated_fields: ["title"] });

  const deleted = nextUpdate(watcher, "board-1");
  await editor.call("task.delete", { id: task.id });
  assert.equal((await deleted)[1].type, "delete");
});

test("`on` with a group name listens to pushes with (err, data); `off` stops it", async (t) => {
  const watcher = await openClient(t, server);
  const editor = await openClient(t, server);
  await watcher.subscribe(PUBLIC);
  const seen = [];
  const listener = (error, update) => seen.push([error, update.object.title]);
  watcher.on("board-1", listener);
  const first = nextUpdate(watcher, "board-1");
  await editor.call("task.add", { board: 1, title: "one" });
  await first;
  watcher.off("board-1", listener);
  const second = nextUpdate(watcher, "board-1");
  await editor.call("task.add", { board: 1, title: "two" });
  await second;
  assert.deepEqual(seen, [[null, "one"]]);
});

test("a private board is refused with forbidden until the token is its owner's", async (t) => {
  const client = await openClient(t, server);
  await assert.rejects(client.subscribe(ALICES), { code: "forbidden", type: "subscribe" });
  client.token = await server.token("alice");
  assert.equal((await client.subscribe(ALICES)).group, "board-2");
  await assert.rejects(client.subscribe(BOBS), { code: "forbidden" });
  assert.deepEqual(client.groups, ["board-2"]);
});

test("a malformed group object is refused with invalid and not kept", async (t) => {
  const client = await openClient(t, server);
  await assert.rejects(client.subscribe({ type: "board", id: "one" }), { code: "invalid" });
  await assert.rejects(client.subscribe({ type: "board" }), { code: "invalid" });
  assert.deepEqual(client.groups, []);
});

test("after unsubscribe no push arrives and the group is no longer kept", async (t) => {
  const leaver = await openClient(t, server);
  const stayer = await openClient(t, server);
  await leaver.subscribe(PUBLIC);
  await stayer.subscribe(PUBLIC);
  const received = [];
  leaver.on("board-1", (error, update) => received.push(update));
  assert.deepEqual(await leaver.unsubscribe({ id: 1, type: "board" }), { group: "board-1" }); // key order is free
  assert.deepEqual(leaver.groups, []);

  const reached = nextUpdate(stayer, "board-1");
  await stayer.call("task.add", { board: 1, title: "after unsubscribe" });
  await reached;
  // The leaver's connection answers in order: once this echo is back, a push sent
  // before it would have arrived too.
  await leaver.call("echo", "sync");
  assert.deepEqual(received, []);
});
