// Calls against the demo server: replies, errors, ids, tokens, queueing and close().

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";

import { RohrpostClient, RohrpostError } from "../src/rohrpost.js";
import { connect, next, openClient, within } from "./helpers.js";
import { startDemoServer } from "./server.js";

let server;
before(async () => {
  server = await startDemoServer();
});
after(() => server?.stop());

describe("call", () => {
  test("resolves with the reply's data", async (t) => {
    const client = await openClient(t, server);
    assert.deepEqual(await client.call("echo", { nested: [1, "two", null] }), { nested: [1, "two", null] });
    assert.equal(await client.call("add", [1, 2, 3]), 6);
    assert.equal(await client.call("ping"), undefined); // a pong without data
  });

  test("rejects with the server's error: code, message, data, request type and id", async (t) => {
    const client = await openClient(t, server);
    const error = await client.call("add", ["one"]).then(
      () => assert.fail("add with bad data was answered"),
      (error) => error,
    );
    assert.ok(error instanceof RohrpostError);
    assert.ok(error instanceof Error);
    assert.equal(error.code, "invalid");
    assert.match(error.message, /^Invalid data: 0: Input should be a valid number/);
    assert.deepEqual(error.data.errors.map((problem) => problem.path), [[0]]);
    assert.equal(error.type, "add");
    assert.equal(typeof error.id, "number");
    await assert.rejects(client.call("no.such.handler"), { code: "unknown_type", type: "no.such.handler" });
  });

  test("matches concurrent replies by id", async (t) => {
    const client = await openClient(t, server);
    const sent = Array.from({ length: 30 }, (_, index) => ({ index }));
    const replies = await within(Promise.all(sent.map((data) => client.call("echo", data))));
    assert.deepEqual(replies, sent);
  });

  test("gives every request its own id and emits every incoming frame as `message`", async (t) => {
    const client = await openClient(t, server);
    const frames = [];
    client.on("message", (frame) => frames.push(frame));
    await client.call("echo", 1);
    await client.call("echo", 2);
    await client.call("ping");
    assert.deepEqual(
      frames.map((frame) => frame.type),
      ["echo", "echo", "pong"],
    );
    assert.equal(new Set(frames.map((frame) => frame.id)).size, 3);
  });

  test("refuses data JSON cannot encode, without sending anything", async (t) => {
    const client = await openClient(t, server);
    await assert.rejects(client.call("echo", { big: 1n }), TypeError);
    assert.equal(await client.call("echo", "still fine"), "still fine");
  });
});

describe("queueing", () => {
  test("calls made while connecting are sent once the connection opens", async (t) => {
    const client = connect(server);
    t.after(() => client.close());
    assert.equal(client.state, "connecting");
    const replies = Promise.all([client.call("echo", "first"), client.call("add", [2, 3])]);
    assert.deepEqual(await within(replies), ["first", 5]);
  });

  test("a call past `maxQueue` is rejected with queue_full", async (t) => {
    const client = connect(server, { maxQueue: 2 });
    t.after(() => client.close());
    const first = client.call("echo", 1);
    const second = client.call("echo", 2);
    await assert.rejects(client.call("echo", 3), { code: "queue_full" });
    assert.deepEqual(await within(Promise.all([first, second])), [1, 2]);
  });
});

describe("tokens", () => {
  test("the `token` option goes out as auth_jwt and makes the connection that user", async (t) => {
    const anonymous = await openClient(t, server);
    assert.deepEqual(await anonymous.call("whoami"), { authenticated: false, username: null });
    const alice = await openClient(t, server, { token: await server.token("alice") });
    assert.deepEqual(await alice.call("whoami"), { authenticated: true, username: "alice" });
  });

  test("the token can be set later, by property or setToken()", async (t) => {
    const client = await openClient(t, server);
    client.token = await server.token("alice");
    assert.equal((await client.call("whoami")).username, "alice");
    assert.equal(client.setToken(await server.token("bob")), client);
    assert.equal((await client.call("whoami")).username, "bob");
  });

  test("clearing the token keeps the connection's user; reconnect() drops it", async (t) => {
    const client = await openClient(t, server, { token: await server.token("alice") });
    assert.equal((await client.call("whoami")).username, "alice");
    client.token = null;
    assert.equal((await client.call("whoami")).username, "alice");
    client.reconnect();
    assert.deepEqual(await client.call("whoami"), { authenticated: false, username: null });
  });

  test("an invalid token is answered unauthenticated", async (t) => {
    const client = await openClient(t, server, { token: "not-a-token" });
    await assert.rejects(client.call("whoami"), { code: "unauthenticated", type: "whoami" });
    client.token = null;
    assert.deepEqual(await client.call("whoami"), { authenticated: false, username: null });
  });
});

describe("close", () => {
  test("rejects unanswered calls with `closed`, and every call after it", async (t) => {
    const client = await openClient(t, server);
    const closed = next(client, "closed");
    const pending = client.call("echo", "never answered");
    client.close();
    await assert.rejects(pending, { code: "closed" });
    assert.deepEqual(await closed, { code: 1000, reason: "", wasClean: true, willReconnect: false });
    assert.equal(client.state, "closed");
    await assert.rejects(client.call("echo", 1), { code: "closed" });
    assert.throws(() => client.reconnect(), { code: "closed" });
    client.close(); // a second close is harmless
  });

  test("rejects calls still waiting in the queue", async (t) => {
    const client = connect(server);
    const queued = client.call("echo", 1);
    client.close();
    await assert.rejects(queued, { code: "closed" });
  });
});

test("a `WebSocket` option that is no class is refused with a hint", () => {
  assert.throws(() => new RohrpostClient("ws://127.0.0.1:9/", { WebSocket: 42 }), /WebSocket/);
});

test("the module exports exactly the names rohrpost.d.ts declares", async () => {
  const module = await import("../src/rohrpost.js");
  const declarations = readFileSync(new URL("../src/rohrpost.d.ts", import.meta.url), "utf8");
  const declared = [...declarations.matchAll(/^export (?:class|const|function) (\w+)/gm)].map(
    (match) => match[1],
  );
  if (/^export default /m.test(declarations)) declared.push("default");
  assert.deepEqual(Object.keys(module).sort(), declared.sort());
  assert.equal(module.default, RohrpostClient);
});
