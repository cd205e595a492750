// The connection's life against the demo server, with a TCP proxy in between that the
// tests cut and blackhole: reconnects, resubscription, keepalive, backoff, close codes.

import assert from "node:assert/strict";
import { after, before, beforeEach, test } from "node:test";

import { connect, next, nextUpdate, openClient, sleep, within } from "./helpers.js";
import { startProxy } from "./proxy.js";
import { logIn, startDemoServer } from "./server.js";

const PUBLIC = { type: "board", id: 1 };
const ALICES = { type: "board", id: 2 };
// Short delays keep the suite fast; the backoff test checks their growth.
const FAST = { reconnectDelay: 20, maxReconnectDelay: 100 };

let server;
let proxy;
before(async () => {
  server = await startDemoServer();
});
after(async () => {
  await proxy?.close();
  await server?.stop();
});
beforeEach(async () => {
  await proxy?.close();
  proxy = await startProxy(server.port);
});

test("a cut connection rejects its unanswered calls, then reconnects and resubscribes", async (t) => {
  const client = await openClient(t, server, { port: proxy.port, ...FAST });
  const editor = await openClient(t, server);
  await client.subscribe(PUBLIC);
  const titles = [];
  client.on("board-1", (error, update) => titles.push(update.object.title));

  proxy.blackhole();
  const unanswered = client.call("echo", "lost in the cut");
  const closed = next(client, "closed");
  const reopened = next(client, "open");
  proxy.heal();
  proxy.cut();

  await assert.rejects(unanswered, { code: "connection_lost", type: "echo" });
  const { code, willReconnect } = await closed;
  assert.equal(code, 1006);
  assert.equal(willReconnect, true);
  assert.deepEqual(await reopened, { reconnected: true });
  assert.deepEqual(client.groups, ["board-1"]);

  // The resubscribe went out before anything else on the new connection, so once a
  // call is answered the group is joined again.
  await client.call("ping");
  const pushed = nextUpdate(client, "board-1");
  await editor.call("task.add", { board: 1, title: "after the cut" });
  await pushed;
  assert.deepEqual(titles, ["after the cut"]);
});

test("calls made while reconnecting wait in the queue and go out on the new connection", async (t) => {
  const client = await openClient(t, server, { port: proxy.port, ...FAST });
  proxy.refuse();
  await next(client, "reconnecting");
  const queued = client.call("echo", "queued");
  assert.notEqual(client.state, "open");
  proxy.heal();
  assert.equal(await within(queued), "queued");
});

test("keepalive: pings keep a healthy connection open", async (t) => {
  const client = await openClient(t, server, { port: proxy.port, pingInterval: 40, pingTimeout: 200 });
  const types = [];
  const closes = [];
  client.on("message", (frame) => types.push(frame.type));
  client.on("closed", (closed) => closes.push(closed));
  await sleep(300);
  assert.ok(types.filter((type) => type === "pong").length >= 3, `pongs: ${types}`);
  assert.deepEqual(closes, []);
  assert.equal(client.state, "open");
});

test("keepalive: a connection whose pings go unanswered is given up and replaced", async (t) => {
  const client = await openClient(t, server, {
    port: proxy.port,
    pingInterval: 50,
    pingTimeout: 150,
    ...FAST,
  });
  const closed = next(client, "closed");
  const reopened = next(client, "open");
  const started = Date.now();
  proxy.blackhole();
  const { code, reason, willReconnect } = await closed;
  proxy.heal();
  assert.equal(code, 1006);
  assert.match(reason, /ping/);
  assert.equal(willReconnect, true);
  assert.ok(Date.now() - started < 2000, "the dead connection was noticed late");
  await reopened;
  assert.equal(await client.call("echo", "alive again"), "alive again");
});

test("a call whose answer does not come in time is rejected with timeout", async (t) => {
  const client = await openClient(t, server, { port: proxy.port });
  proxy.blackhole();
  await assert.rejects(client.call("echo", "slow", { timeout: 100 }), { code: "timeout", type: "echo" });
});

test("a handshake that never completes is given up after connectTimeout and retried", async (t) => {
  proxy.blackhole();
  const client = connect(server, { port: proxy.port, connectTimeout: 150, ...FAST });
  t.after(() => client.close());
  const closed = await next(client, "closed");
  assert.equal(closed.code, 1006);
  assert.match(closed.reason, /did not open/);
  proxy.heal();
  await next(client, "open");
});

test("reconnect delays grow exponentially with jitter, up to maxReconnectDelay", async (t) => {
  proxy.refuse();
  const client = connect(server, { port: proxy.port, reconnectDelay: 20, maxReconnectDelay: 100 });
  t.after(() => client.close());
  const attempts = [];
  client.on("reconnecting", (attempt) => attempts.push(attempt));
  await within(
    (async () => {
      while (attempts.length < 5) await next(client, "reconnecting");
    })(),
  );
  for (const { attempt, delay } of attempts) {
    const ceiling = Math.min(100, 20 * 2 ** (attempt - 1));
    assert.ok(delay >= ceiling / 2 && delay <= ceiling, `attempt ${attempt} waits ${delay} ms`);
  }
  assert.deepEqual(
    attempts.map(({ attempt }) => attempt),
    [1, 2, 3, 4, 5].slice(0, attempts.length),
  );
  proxy.heal();
  await next(client, "open");
});

test("close() while reconnecting stops for good", async (t) => {
  proxy.refuse();
  const client = connect(server, { port: proxy.port, ...FAST });
  await next(client, "reconnecting");
  let attempts = 0;
  client.on("reconnecting", () => attempts++);
  client.close();
  proxy.heal();
  await sleep(300);
  assert.equal(attempts, 0);
  assert.equal(client.state, "closed");
  assert.equal(proxy.connections, 0);
});

test("close code 4029 (flooding): the client reconnects after the longest delay", async (t) => {
  // From an address of its own: the server refuses a flood-closed address for
  // ROHRPOST["FLOOD_COOLDOWN"] (10 s), which must not hit the other tests' clients.
  const flooderProxy = await startProxy(server.port, { localAddress: "127.0.0.9" });
  t.after(() => flooderProxy.close());
  const client = await openClient(t, server, {
    port: flooderProxy.port,
    reconnectDelay: 10,
    maxReconnectDelay: 300,
  });
  const closed = next(client, "closed");
  const reconnecting = next(client, "reconnecting");
  const flood = Array.from({ length: 450 }, (_, index) => client.call("echo", index));
  await Promise.allSettled(flood);
  assert.deepEqual(await closed, { code: 4029, reason: "", wasClean: true, willReconnect: true });
  const { delay, code } = await reconnecting;
  assert.equal(code, 4029);
  assert.ok(delay >= 150 && delay <= 300, `waits ${delay} ms`);
  // The attempt meets the server's cooldown (the handshake is refused): the client
  // goes on trying, with its backoff, instead of giving up.
  const retry = await next(client, "reconnecting", { accept: ({ attempt }) => attempt >= 2 });
  assert.ok(retry.delay > 0);
  assert.notEqual(client.state, "open");
});

test("close code 4003 (logout): the client stops until reconnect() is called", async (t) => {
  const session = await logIn(server, "alice");
  const client = await openClient(t, server, { cookie: session.cookie, ...FAST });
  assert.equal((await client.call("whoami")).username, "alice");
  // A connection authenticated by token is closed with the session's ones.
  const byToken = await openClient(t, server, { token: await server.token("alice"), ...FAST });
  await byToken.subscribe(ALICES);

  let reconnects = 0;
  client.on("reconnecting", () => reconnects++);
  const closed = next(client, "closed");
  const tokenClosed = next(byToken, "closed");
  await session.logout();
  assert.deepEqual(await closed, { code: 4003, reason: "", wasClean: true, willReconnect: false });
  assert.equal((await tokenClosed).code, 4003);
  assert.equal(client.state, "stopped");
  await assert.rejects(client.call("whoami"), { code: "closed" });
  await sleep(150);
  assert.equal(reconnects, 0);

  // The app decides: here it connects again, now without the logged-out session.
  client.reconnect();
  await next(client, "open");
  assert.deepEqual(await client.call("whoami"), { authenticated: false, username: null });
});

test("a resubscribe the server refuses ends the subscription and tells the listeners", async (t) => {
  const client = await openClient(t, server, {
    port: proxy.port,
    token: await server.token("alice"),
    ...FAST,
  });
  await client.subscribe(ALICES);
  const listened = nextUpdate(client, "board-2");
  const unsubscribed = next(client, "unsubscribed");
  client.token = "expired-or-forged";
  proxy.cut();

  const { group, reason, error } = await unsubscribed;
  assert.equal(group, "board-2");
  assert.equal(error.code, "unauthenticated");
  assert.equal(reason, error.message);
  const [listenerError, update] = await listened;
  assert.equal(listenerError, error);
  assert.equal(update, undefined);
  assert.deepEqual(client.groups, []);
});

test("a handshake refused for its Origin says so in the error event", async (t) => {
  const client = connect(server, { reconnect: false, socketOptions: { origin: "http://evil.example" } });
  t.after(() => client.close());
  const error = await next(client, "error");
  assert.equal(error.code, "socket_error");
  assert.match(error.message, /^WebSocket error\. Unexpected server response: 403 \(is the Origin allowed\?/);
});
