// The original rohrpost.js 0.6 client's wire, against the demo server with its token hook
// (ROHRPOST["AUTHENTICATE"]) on, as an application that upgrades its server to rohrpost 5
// and keeps its 0.6 client with default options would run it.
//
// What 0.6 sends, written here from its documented behaviour (not from its source): its
// `token` option defaults to the empty string, and every subscribe, unsubscribe and call
// carries it as `auth_jwt`; it keeps the connection alive with `ping` requests whose id is
// the time in milliseconds; it matches answers to requests by `id` and hands
// `subscription-update` pushes to the listeners of `data.group`. The frames are sent raw
// over a `ws` socket so that nothing of our own client shapes them.

import assert from "node:assert/strict";
import { once } from "node:events";
import { after, before, test } from "node:test";

import WebSocket from "ws";

import { WAIT_MS, within } from "./helpers.js";
import { startDemoServer } from "./server.js";

// From example/demo/migrations/0002_demo_data.py: board 1 is public.
const PUBLIC_BOARD = { type: "board", id: 1 };

let server;
before(async () => {
  server = await startDemoServer();
});
after(() => server?.stop());

/** A raw socket speaking 0.6's wire: requests with `auth_jwt: ""`, answers matched by id. */
async function connect06(t) {
  const socket = new WebSocket(server.url, { origin: server.origin });
  const frames = [];
  const waiting = [];
  socket.on("message", (text) => {
    const frame = JSON.parse(text.toString());
    frames.push(frame);
    for (const waiter of [...waiting]) {
      if (waiter.accept(frame)) {
        waiting.splice(waiting.indexOf(waiter), 1);
        waiter.resolve(frame);
      }
    }
  });
  t.after(() => socket.close());
  await within(once(socket, "open"), WAIT_MS, "the connection");
  let lastId = 0;
  const client = {
    frames,
    /** The next frame `accept` takes (bounded). */
    next(accept) {
      const seen = frames.find(accept);
      if (seen) return Promise.resolve(seen);
      const arrived = new Promise((resolve) => waiting.push({ accept, resolve }));
      return within(arrived, WAIT_MS, "a frame");
    },
    /** Send a frame as 0.6 does and wait for the answer with its id. */
    request(frame) {
      socket.send(JSON.stringify(frame));
      const isAnswer = (answer) => answer.id === frame.id && answer.type !== "subscription-update";
      return client.next(isAnswer);
    },
    /** 0.6's call / subscribe / unsubscribe: a fresh id, `data`, and the empty token. */
    send(type, data) {
      lastId += 1;
      return client.request({ type, id: lastId, data, auth_jwt: "" });
    },
  };
  return client;
}

test("keepalive pings with millisecond ids are answered with pong and the same id", async (t) => {
  const client = await connect06(t);
  const id = Date.now();
  assert.deepEqual(await client.request({ type: "ping", id }), { id, type: "pong" });
  const withToken = Date.now() + 1;
  assert.deepEqual(await client.request({ type: "ping", id: withToken, auth_jwt: "" }), {
    id: withToken,
    type: "pong",
  });
});

test("a call with auth_jwt \"\" is answered, not refused as unauthenticated", async (t) => {
  const client = await connect06(t);
  const echo = await client.send("echo", { text: "hello" });
  assert.deepEqual(echo, { id: echo.id, type: "echo", data: { text: "hello" } });
  const whoami = await client.send("whoami", null);
  assert.deepEqual(whoami.data, { authenticated: false, username: null });
  const refused = await client.send("add", ["one"]);
  assert.equal(refused.code, "invalid"); // the handler's own error, not `unauthenticated`
});

test("subscribe, pushes to the group, and unsubscribe, all with auth_jwt \"\"", async (t) => {
  const watcher = await connect06(t);
  const editor = await connect06(t);

  await editor.send("subscribe", PUBLIC_BOARD);
  const subscribed = await watcher.send("subscribe", PUBLIC_BOARD);
  assert.equal(subscribed.error, undefined);
  // The demo's boards keep history: the reply has new fields (position, snapshot),
  // which rohrpost.js 0.6 ignores; `group` is as it was.
  assert.deepEqual(
    { ...subscribed, data: { group: subscribed.data.group } },
    { id: subscribed.id, type: "subscribe", data: { group: "board-1" } },
  );
  assert.deepEqual(Object.keys(subscribed.data).sort(), ["group", "position", "snapshot"]);

  const added = await editor.send("task.add", { board: 1, title: "from rohrpost.js 0.6" });
  assert.equal(added.error, undefined);
  const task = added.data;
  const push = await watcher.next(
    (frame) => frame.type === "subscription-update" && frame.data.object.id === task.id,
  );
  assert.equal(typeof push.id, "number");
  assert.deepEqual(push.data, { type: "create", group: "board-1", object: task });

  const unsubscribed = await watcher.send("unsubscribe", PUBLIC_BOARD);
  assert.deepEqual(unsubscribed, {
    id: unsubscribed.id,
    type: "unsubscribe",
    data: { group: "board-1" },
  });
  const removed = await editor.send("task.delete", { id: task.id });
  assert.equal(removed.error, undefined);
  // The editor, still subscribed, gets the delete push; the watcher, gone, gets none.
  const deleted = (frame) =>
    frame.type === "subscription-update" &&
    frame.data.type === "delete" &&
    frame.data.object.id === task.id;
  await editor.next(deleted);
  await watcher.request({ type: "ping", id: Date.now() });
  const later = watcher.frames.filter(deleted);
  assert.deepEqual(later, []);
});

test("no request of the 0.6 wire is refused as unauthenticated", async (t) => {
  const client = await connect06(t);
  await client.send("subscribe", PUBLIC_BOARD);
  await client.send("echo", [1, 2, 3]);
  await client.send("unsubscribe", PUBLIC_BOARD);
  await client.request({ type: "ping", id: Date.now() });
  assert.deepEqual(
    client.frames.filter((frame) => frame.code === "unauthenticated"),
    [],
  );
});
