// How long the JavaScript client takes to resume a subscription with history after
// missing pushes. Driven by bench/history_js.py, which starts the server
// (bench/history_js_app.py) and reads the JSON this prints; run by hand:
//
//   node bench/resume.js '{"port": 8000, "name": "x", "missed": 1000, "rounds": 5}'
//
// Each round: a client (the real src/rohrpost.js, on the `ws` package) subscribes to
// {type: "feed", name} (history on). The outage: the server drops its connection (the
// `drop` handler closes it with 1012, as a deploy does) and, until the outage ends, every
// connection the client tries is refused (its WebSocket class, the `ws` one behind a
// switch, dials a local listener that closes each connection at once). Meanwhile a second
// client publishes `missed` pushes to the group, and the outage lasts `outageMs` more.
// Then the switch lets the client through; it reconnects by itself, on its own backoff,
// and resubscribes `since` its last position. (No TCP proxy: one in this process would
// forward every replayed frame on the client's own event loop and slow it down.)
//
// Measured from the reconnected socket's "open" (the resubscribe is sent in it) until the
// resubscribe's reply, when the client has applied every missed push (the server sends
// the replay before the reply) and is live;
// then one push is published: the time until the client applies it is the second
// figure, and the open until then the third. A round fails unless the client applied exactly seq 0..missed, once each, in
// order, the reply said `resumed: missed`, the position is the last push's and no
// "reset" came: a run that delivers nothing cannot pass for a fast one.

import net from "node:net";
import { performance } from "node:perf_hooks";

import WebSocket from "ws";

import { RohrpostClient } from "../src/rohrpost.js";

const WAIT_MS = 30000;
// Reconnect soon after the outage ends: the figure starts at the open, not at the end of it.
const FAST = { reconnectDelay: 20, maxReconnectDelay: 100 };
// After the live push, how long to watch for anything more (a duplicate).
const SETTLE_MS = 50;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A listener on 127.0.0.1 that closes every connection at once: a server that is down. */
async function startRefuser() {
  const server = net.createServer((socket) => socket.destroy());
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  return {
    url: `ws://127.0.0.1:${server.address().port}/`,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/** The `ws` WebSocket class behind a switch: while `gate.down`, it dials `gate.refuser`. */
function gatedWebSocket(gate) {
  return class GatedWebSocket extends WebSocket {
    constructor(url, ...rest) {
      super(gate.down ? gate.refuser : url, ...rest);
    }
  };
}

async function until(condition, what, ms = WAIT_MS) {
  const deadline = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`Waited ${ms} ms for ${what} in vain.`);
    await sleep(1);
  }
}

function opened(client, accept = () => true) {
  return new Promise((resolve) => {
    const listener = (event) => {
      if (!accept(event)) return;
      client.off("open", listener);
      resolve(performance.now());
    };
    client.on("open", listener);
  });
}

async function oneRound(config, publisher, refuser, round) {
  const name = `${config.name}-${round}`;
  const group = `feed-${name}`;
  const { missed } = config;
  const gate = { down: false, refuser: refuser.url };
  const url = `ws://127.0.0.1:${config.port}/ws/async/`;
  // `ws` offers permessage-deflate by default, and uvicorn takes it; deflate: false turns it off.
  const socketOptions = config.deflate ? undefined : { perMessageDeflate: false };
  const client = new RohrpostClient(url, { WebSocket: gatedWebSocket(gate), socketOptions, ...FAST });
  try {
    await opened(client);
    const first = await client.subscribe({ type: "feed", name });
    const base = first.position.offset;

    const applied = []; // [seq, when] of each push the client's group listener got
    client.onGroup(group, (error, update) => {
      if (error) throw error;
      applied.push([update.object.seq, performance.now()]);
    });
    let frames = 0; // pushes that reached the client, duplicates (dropped) included
    let reply = null; // [data, when] of the resubscribe's answer
    client.on("message", (frame) => {
      if (frame.type === "subscription-update") frames += 1;
      else if (frame.type === "subscribe" && frame.data?.position !== undefined) {
        reply = [frame.data, performance.now()];
      }
    });
    const resets = [];
    client.on("reset", (event) => resets.push(event));

    let closed = null;
    client.once("closed", (event) => {
      closed = event;
    });
    gate.down = true;
    client.call("drop").catch(() => {}); // rejected with connection_lost, as it should
    await until(() => closed !== null, "the server to drop the connection");
    if (closed.code !== 1012) throw new Error(`The connection closed with ${closed.code}, not 1012.`);
    await publisher.call("feedburst", { name, first: 0, count: missed }, { timeout: WAIT_MS });
    if (config.outageMs > 0) await sleep(config.outageMs);
    if (applied.length !== 0) throw new Error(`${applied.length} pushes arrived during the outage`);

    let cpuAtOpen = null;
    const reopened = opened(client, (event) => {
      cpuAtOpen = process.cpuUsage();
      return event.reconnected;
    });
    gate.down = false;
    const openAt = await reopened;
    // The replay comes before the reply, on the same socket: at the reply it is applied.
    await until(() => reply !== null, "the resubscribe's reply");
    const liveAt = reply[1];
    if (applied.length !== missed) {
      const answer = JSON.stringify({ ...reply[0], snapshot: undefined });
      throw new Error(`round ${round}: ${applied.length} of ${missed} pushes applied at the reply ${answer}`);
    }
    const cpu = process.cpuUsage(cpuAtOpen); // this process, until `until` noticed: an upper bound

    const sentAt = performance.now();
    await publisher.call("feedburst", { name, first: missed, count: 1 }, { timeout: WAIT_MS });
    await until(() => applied.length > missed, "the live push");
    const livePushMs = applied[missed][1] - sentAt;
    await sleep(SETTLE_MS);

    const seqs = applied.map(([seq]) => seq);
    const expected = Array.from({ length: missed + 1 }, (_, index) => index);
    const wrong = [];
    if (seqs.length !== expected.length || seqs.some((seq, index) => seq !== expected[index])) {
      const duplicates = seqs.length - new Set(seqs).size;
      wrong.push(`applied ${seqs.length} pushes (${duplicates} duplicates), not seq 0..${missed} in order`);
    }
    if (reply[0].resumed !== missed) wrong.push(`the reply said resumed ${JSON.stringify(reply[0].resumed)}`);
    const position = client.positionOf(group);
    if (position?.offset !== base + missed + 1) {
      wrong.push(`the position is ${JSON.stringify(position)}, not offset ${base + missed + 1}`);
    }
    if (resets.length !== 0) wrong.push(`${resets.length} resets`);
    if (wrong.length !== 0) throw new Error(`round ${round}: ${wrong.join("; ")}`);
    return {
      resume_ms: liveAt - openAt,
      client_cpu_ms: (cpu.user + cpu.system) / 1000,
      live_push_ms: livePushMs,
      confirmed_ms: applied[missed][1] - openAt,
      frames,
      applied: seqs.length,
    };
  } finally {
    client.close();
  }
}

/** The extensions the server accepted for the measured client's connections. */
async function negotiated(config) {
  const options = config.deflate ? {} : { perMessageDeflate: false };
  const socket = new WebSocket(`ws://127.0.0.1:${config.port}/ws/async/`, options);
  await new Promise((resolve, reject) => {
    socket.once("open", resolve);
    socket.once("error", reject);
  });
  const { extensions } = socket;
  socket.close();
  return extensions;
}

async function main() {
  const config = { missed: 1000, rounds: 5, outageMs: 0, deflate: true, name: "js", ...JSON.parse(process.argv[2] ?? "{}") };
  if (!Number.isInteger(config.port)) throw new Error("Give the server's port: {\"port\": 8000}.");
  const refuser = await startRefuser();
  const publisher = new RohrpostClient(`ws://127.0.0.1:${config.port}/ws/async/`, { WebSocket });
  try {
    await opened(publisher);
    const rounds = [];
    for (let round = 0; round < config.rounds; round += 1) {
      rounds.push(await oneRound(config, publisher, refuser, round));
    }
    const extensions = await negotiated(config);
    process.stdout.write(`${JSON.stringify({ node: process.version, extensions, rounds })}\n`);
  } finally {
    publisher.close();
    await refuser.close();
  }
}

main().catch((error) => {
  process.stderr.write(`${error.stack ?? error}\n`);
  process.exitCode = 1;
});
