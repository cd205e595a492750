// What the demo server cannot be made to do on demand, played by a scripted WebSocket
// server (the `ws` package, real sockets): close code 4001, the `unsubscribed` push,
// malformed frames, pushes whose ids collide with requests, groups named like events.

import assert from "node:assert/strict";
import { once } from "node:events";
import { afterEach, test } from "node:test";

import WebSocket, { WebSocketServer } from "ws";

import { MAX_AHEAD, RohrpostClient } from "../src/rohrpost.js";
import { next, nextUpdate, sleep, within } from "./helpers.js";

const FAST = { reconnectDelay: 20, maxReconnectDelay: 100 };

let scripted;
afterEach(() => scripted?.close());

/**
 * A WebSocket server on a free loopback port; `script(socket, request)` answers each
 * request frame. It also records the frames and counts the connections.
 */
async function serve(script = () => {}, onConnection = () => {}) {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await once(wss, "listening");
  const server = {
    url: `ws://127.0.0.1:${wss.address().port}/ws/rohrpost/`,
    requests: [],
    connections: 0,
    sockets: new Set(),
    close() {
      for (const socket of server.sockets) socket.terminate();
      return new Promise((resolve) => wss.close(resolve));
    },
  };
  wss.on("connection", (socket) => {
    server.connections += 1;
    server.sockets.add(socket);
    socket.on("close", () => server.sockets.delete(socket));
    socket.on("message", (text) => {
      const request = JSON.parse(text);
      server.requests.push(request);
      script(socket, request);
    });
    onConnection(socket);
  });
  scripted = server;
  return server;
}

const send = (socket, frame) => socket.send(JSON.stringify(frame));

function open(t, url, options) {
  const client = new RohrpostClient(url, { WebSocket, ...FAST, ...options });
  t.after(() => client.close());
  return client;
}

/** Answers `subscribe {type, id}` with group `<type>-<id>`, and everything else with its data. */
function answerAll(socket, request) {
  if (request.type === "subscribe" || request.type === "unsubscribe") {
    send(socket, {
      id: request.id,
      type: request.type,
      data: { group: `${request.data.type}-${request.data.id}` },
    });
  } else {
    send(socket, { id: request.id, type: request.type, data: request.data });
  }
}

test("close code 4001: the client stops, refuses calls and does not reconnect", async (t) => {
  const server = await serve(answerAll, (socket) => socket.close(4001, "log in first"));
  const client = open(t, server.url);
  const closed = await next(client, "closed");
  assert.deepEqual(closed, { code: 4001, reason: "log in first", wasClean: true, willReconnect: false });
  assert.equal(client.state, "stopped");
  await assert.rejects(client.call("echo", 1), { code: "closed" });
  await sleep(150);
  assert.equal(server.connections, 1);
});

test("with `reconnect: false` any close stops the client", async (t) => {
  const server = await serve(answerAll);
  const client = open(t, server.url, { reconnect: false });
  await next(client, "open");
  const closed = next(client, "closed");
  for (const socket of server.sockets) socket.close(1001, "going away");
  assert.deepEqual(await closed, { code: 1001, reason: "going away", wasClean: true, willReconnect: false });
  assert.equal(client.state, "stopped");
});

test("reconnect() replaces an open connection at once and rejects its unanswered calls", async (t) => {
  const server = await serve((socket, request) => request.type !== "never" && answerAll(socket, request));
  const client = open(t, server.url);
  await next(client, "open");
  const unanswered = client.call("never");
  const closed = next(client, "closed");
  const reopened = next(client, "open");
  assert.equal(client.reconnect(), client);
  await assert.rejects(unanswered, { code: "connection_lost" });
  assert.deepEqual(await closed, { code: 1000, reason: "reconnect", wasClean: true, willReconnect: true });
  assert.deepEqual(await reopened, { reconnected: true });
  assert.equal(server.connections, 2);
});

test("the `stopCodes` option decides which close codes stop the client", async (t) => {
  const server = await serve(answerAll, (socket) => {
    if (server.connections === 1) socket.close(4001);
  });
  const client = open(t, server.url, { stopCodes: [] });
  assert.equal((await next(client, "closed")).willReconnect, true);
  await next(client, "open");
  assert.equal(await client.call("echo", "back"), "back");
});

test("an `unsubscribed` push drops the group, emits `unsubscribed` and tells its listeners", async (t) => {
  const server = await serve(answerAll);
  const client = open(t, server.url);
  await client.subscribe({ type: "board", id: 5 });
  await client.subscribe({ type: "board", id: 6 });
  const event = next(client, "unsubscribed");
  const listened = nextUpdate(client, "board-5");
  const [socket] = server.sockets;
  send(socket, {
    id: 77,
    type: "unsubscribed",
    data: { group: "board-5", reason: "removed from the board" },
  });

  const { group, reason, error } = await event;
  assert.deepEqual([group, reason], ["board-5", "removed from the board"]);
  assert.equal(error.code, "unsubscribed");
  assert.deepEqual(error.data, { group: "board-5", reason: "removed from the board" });
  const [listenerError, update] = await listened;
  assert.equal(listenerError, error);
  assert.equal(update, undefined);
  assert.deepEqual(client.groups, ["board-6"]);

  // After a reconnect only the remaining group is subscribed again.
  server.requests.length = 0;
  socket.terminate();
  await next(client, "open");
  await client.call("echo", "sync");
  assert.deepEqual(
    server.requests.filter((request) => request.type === "subscribe").map((request) => request.data),
    [{ type: "board", id: 6 }],
  );
});

test("resubscribes go out first on a new connection, then the queue, each with the current token", async (t) => {
  const server = await serve(answerAll);
  const client = open(t, server.url, { token: "first" });
  await client.subscribe({ type: "board", id: 1 });
  const [socket] = server.sockets;
  server.requests.length = 0;
  const closed = next(client, "closed");
  socket.terminate();
  await closed;
  client.token = "second";
  const queued = client.call("echo", "queued");
  assert.equal(await within(queued), "queued");
  assert.deepEqual(
    server.requests.map(({ type, auth_jwt }) => [type, auth_jwt]),
    [
      ["subscribe", "second"],
      ["echo", "second"],
    ],
  );
});

test("pings carry no token; calls, subscribe and unsubscribe do", async (t) => {
  const server = await serve(answerAll);
  const client = open(t, server.url, { token: "secret", pingInterval: 20 });
  await client.call("echo", 1);
  await client.subscribe({ type: "board", id: 1 });
  await client.unsubscribe({ type: "board", id: 1 });
  await next(client, "message", { accept: (frame) => frame.type === "ping" });
  const tokens = Object.fromEntries(server.requests.map((request) => [request.type, request.auth_jwt]));
  assert.deepEqual(tokens, { echo: "secret", subscribe: "secret", unsubscribe: "secret", ping: undefined });
});

test("a push never settles a request, even when its id equals the request's", async (t) => {
  const server = await serve((socket, request) => {
    if (request.type !== "slow") return answerAll(socket, request);
    send(socket, {
      id: request.id,
      type: "subscription-update",
      data: { type: "create", group: "g", object: 1 },
    });
    send(socket, { id: request.id, type: "slow", data: "the real answer" });
  });
  const client = open(t, server.url);
  const pushed = nextUpdate(client, "g");
  assert.equal(await client.call("slow"), "the real answer");
  assert.deepEqual(await pushed, [null, { type: "create", group: "g", object: 1 }]);
});

test("onGroup reaches a group named like an event; on() keeps meaning the event", async (t) => {
  const server = await serve((socket, request) => {
    send(socket, {
      id: 1000 + request.id,
      type: "subscription-update",
      data: { type: "update", group: "error", object: 2 },
    });
    answerAll(socket, request);
  });
  const client = open(t, server.url);
  const errors = [];
  client.on("error", (error) => errors.push(error));
  const pushed = nextUpdate(client, "error");
  await client.call("echo", 1);
  assert.deepEqual(await pushed, [null, { type: "update", group: "error", object: 2 }]);
  assert.deepEqual(errors, []);
});

test("frames that are no JSON object and errors that answer nothing are `error` events", async (t) => {
  const server = await serve((socket, request) => {
    if (request.type === "late") {
      // Answered after the call timed out: dropped without an event.
      setTimeout(() => send(socket, { id: request.id, type: "late", error: "too late", code: "x" }), 60);
      return;
    }
    socket.send("not json");
    socket.send("[1, 2]");
    send(socket, { type: "flood", error: "Slow down.", code: "rate_limited" });
    answerAll(socket, request);
  });
  const client = open(t, server.url);
  const errors = [];
  client.on("error", (error) => errors.push(error));
  await client.call("echo", 1);
  assert.deepEqual(
    errors.map((error) => [error.code, error.data ?? error.message]),
    [
      ["invalid_frame", "not json"],
      ["invalid_frame", "[1, 2]"],
      ["rate_limited", "Slow down."],
    ],
  );
  await assert.rejects(client.call("late", null, { timeout: 20 }), { code: "timeout" });
  await sleep(100);
  await client.call("echo", 2);
  assert.equal(errors.length, 6); // the second echo's three, not the late answer
});

test("once() listens a single time, and off() can remove a once listener", async (t) => {
  const server = await serve(answerAll);
  const client = open(t, server.url);
  const seen = [];
  const removed = () => seen.push("removed");
  client.once("message", (frame) => seen.push(frame.data));
  client.once("message", removed);
  client.off("message", removed);
  await client.call("echo", "a");
  await client.call("echo", "b");
  assert.deepEqual(seen, ["a"]);
});

test("a throwing listener does not break the client; its error is rethrown outside", async (t) => {
  const server = await serve(answerAll);
  const client = open(t, server.url);
  const thrown = new Promise((resolve) => {
    const original = process.listeners("uncaughtException");
    process.removeAllListeners("uncaughtException");
    process.once("uncaughtException", (error) => {
      for (const listener of original) process.on("uncaughtException", listener);
      resolve(error);
    });
  });
  client.once("message", () => {
    throw new Error("a listener's bug");
  });
  assert.equal(await client.call("echo", "still answered"), "still answered");
  assert.equal((await within(thrown)).message, "a listener's bug");
});

test("pushes of a group with history that cross are both applied; the position waits for the gap", async (t) => {
  const position = (offset) => ({ group: "feed-1", epoch: "e", offset });
  const update = (n, offset) => ({
    id: 1000 + n,
    type: "subscription-update",
    data: { type: "update", group: "feed-1", object: { n } },
    position: position(offset),
  });
  let socket;
  const server = await serve(
    (s, request) => {
      if (request.type === "subscribe") {
        send(s, { id: request.id, type: "subscribe", data: { group: "feed-1", position: { epoch: "e", offset: 0 } } });
      }
    },
    (s) => {
      socket = s;
    },
  );
  const client = open(t, server.url);
  const seen = [];
  client.on("feed-1", (error, data) => seen.push(data.object.n));
  await client.subscribe({ type: "feed", id: 1 });
  // Two publishers: offset 2 arrives before offset 1, then a repeat of 2.
  send(socket, update(2, 2));
  send(socket, update(1, 1));
  send(socket, update(2, 2));
  send(socket, update(3, 3));
  await within(
    (async () => {
      while (seen.length < 3) await sleep(5);
    })(),
  );
  await sleep(50);
  assert.deepEqual(seen, [2, 1, 3]);
  assert.deepEqual(client.positionOf("feed-1"), { epoch: "e", offset: 3 });
});

// --- gaps in a group's offsets: pushes lost on their way ------------------------------------

/** A push to the group "feed" at `offset`. */
const feedUpdate = (offset, epoch = "e") => ({
  id: offset,
  type: "subscription-update",
  data: { type: "update", group: "feed", object: { n: offset } },
  position: { group: "feed", epoch, offset },
});

/** Answers the first subscribe at offset 0, and hands every later request to `fill`. */
function feedScript(fill) {
  let subscribed = false;
  return (socket, request) => {
    if (request.type !== "subscribe") return;
    if (subscribed) return fill(socket, request);
    subscribed = true;
    send(socket, { id: request.id, type: "subscribe", data: { group: "feed", position: { epoch: "e", offset: 0 } } });
  };
}

test("a gap the server cannot fill is asked for once, then the client resets", async (t) => {
  const server = await serve(
    feedScript((socket, request) => {
      const data = { group: "feed", position: { epoch: "e", offset: 9 }, reset: true, snapshot: { n: 9 } };
      send(socket, { id: request.id, type: "subscribe", data });
    }),
  );
  const client = open(t, server.url, { gapFillDelay: 50 });
  await client.subscribe({ type: "feed" });
  const seen = [];
  client.on("feed", (error, update) => seen.push(update.object.n));
  const reset = next(client, "reset");
  const [socket] = server.sockets;
  for (const offset of [1, 3, 4, 5]) send(socket, feedUpdate(offset)); // 2 was lost
  const event = await reset;
  assert.deepEqual(event, { group: "feed", snapshot: { n: 9 }, position: { epoch: "e", offset: 9 } });
  assert.deepEqual(seen, [1, 3, 4, 5]);
  const fills = server.requests.filter((request) => request.since !== undefined);
  assert.deepEqual(fills.map((request) => request.since), [{ epoch: "e", offset: 1 }]);
  assert.deepEqual(fills[0].data, { type: "feed" });
  assert.deepEqual(client.positionOf("feed"), { epoch: "e", offset: 9 });
  await sleep(150);
  assert.equal(server.requests.length, 2); // nothing more asked: the gap is gone
});

test("one request per gap is on its way; MAX_AHEAD pushes past it ask at once", async (t) => {
  const last = MAX_AHEAD + 10;
  const server = await serve(
    feedScript((socket, request) => {
      for (let offset = 1; offset <= last; offset += 1) send(socket, feedUpdate(offset)); // the replay
      const data = { group: "feed", position: { epoch: "e", offset: last }, resumed: last };
      send(socket, { id: request.id, type: "subscribe", data });
    }),
  );
  const client = open(t, server.url, { gapFillDelay: 60000 }); // only the count can trigger it
  await client.subscribe({ type: "feed" });
  const seen = [];
  client.on("feed", (error, update) => seen.push(update.object.n));
  const [socket] = server.sockets;
  // Past MAX_AHEAD, every push asks at once, but not while a request is on its way.
  for (let offset = 2; offset <= last; offset += 1) send(socket, feedUpdate(offset));
  await within(
    (async () => {
      while (seen.length < last) await sleep(10);
    })(),
    5000,
    "the lost push",
  );
  assert.deepEqual(seen.at(-1), 1);
  assert.deepEqual(client.positionOf("feed"), { epoch: "e", offset: last });
  await sleep(50);
  const fills = server.requests.filter((request) => request.since !== undefined);
  assert.deepEqual(fills.map((request) => request.since), [{ epoch: "e", offset: 0 }]);
});

test("a gap-fill the server refuses takes the client out of the group", async (t) => {
  const server = await serve(
    feedScript((socket, request) => {
      send(socket, { id: request.id, type: "subscribe", error: "You may not subscribe.", code: "forbidden" });
    }),
  );
  const client = open(t, server.url, { gapFillDelay: 20 });
  await client.subscribe({ type: "feed" });
  const unsubscribed = next(client, "unsubscribed");
  const [socket] = server.sockets;
  send(socket, feedUpdate(2));
  const event = await unsubscribed;
  assert.equal(event.group, "feed");
  assert.equal(event.error.code, "forbidden");
  assert.deepEqual(client.groups, []);
  assert.equal(client.positionOf("feed"), null);
});

test("a gap-fill that times out is asked again", async (t) => {
  let asked = 0;
  const server = await serve(
    feedScript((socket, request) => {
      asked += 1;
      if (asked === 1) return; // no answer: the call times out
      send(socket, feedUpdate(1));
      send(socket, { id: request.id, type: "subscribe", data: { group: "feed", position: { epoch: "e", offset: 2 }, resumed: 2 } });
    }),
  );
  const client = open(t, server.url, { gapFillDelay: 20, callTimeout: 100 });
  await client.subscribe({ type: "feed" });
  const seen = [];
  client.on("feed", (error, update) => seen.push(update.object.n));
  const [socket] = server.sockets;
  send(socket, feedUpdate(2));
  await within(
    (async () => {
      while (seen.length < 2) await sleep(10);
    })(),
    5000,
    "the lost push",
  );
  assert.deepEqual(seen, [2, 1]);
  assert.equal(asked, 2);
  assert.deepEqual(client.positionOf("feed"), { epoch: "e", offset: 2 });
});

test("pushes that cross close their gap by themselves: nothing is asked", async (t) => {
  const server = await serve(feedScript(() => {}));
  const client = open(t, server.url, { gapFillDelay: 200 });
  await client.subscribe({ type: "feed" });
  const seen = [];
  client.on("feed", (error, update) => seen.push(update.object.n));
  const [socket] = server.sockets;
  send(socket, feedUpdate(2));
  await sleep(30); // the other publisher's push, a little later
  send(socket, feedUpdate(1));
  await sleep(400);
  assert.deepEqual(seen, [2, 1]);
  assert.deepEqual(client.positionOf("feed"), { epoch: "e", offset: 2 });
  assert.equal(server.requests.length, 1); // the subscribe only
  assert.equal(client._gaps.size, 0);
});
