// Small helpers the test files share: clients that pass the server's Origin check, and
// bounded waits for events and pushes.

import WebSocket from "ws";

import { RohrpostClient } from "../src/rohrpost.js";

/** Default bound for any single wait in the tests. */
export const WAIT_MS = 5000;

/**
 * A client for the demo server (or a proxy in front of it, at `port`).
 *
 * `cookie` sends a session cookie with the handshake; the other options go to the client.
 */
export function connect(server, { port = server.port, cookie, ...options } = {}) {
  const headers = cookie ? { Cookie: cookie } : undefined;
  const client = new RohrpostClient(`ws://127.0.0.1:${port}/ws/rohrpost/`, {
    WebSocket,
    socketOptions: { origin: server.origin, headers },
    ...options,
  });
  return client;
}

/** Resolve with `promise`, or reject once `ms` have passed. */
export function within(promise, ms = WAIT_MS, what = "the promise") {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Waited ${ms} ms for ${what} in vain.`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The next payload of `event` that `accept` takes (bounded). */
export function next(client, event, { accept = () => true, ms = WAIT_MS } = {}) {
  let listener;
  const seen = new Promise((resolve) => {
    listener = (payload) => {
      if (accept(payload)) resolve(payload);
    };
    client.on(event, listener);
  });
  return within(seen, ms, `the event ${event}`).finally(() => client.off(event, listener));
}

/** The next push to `group` that `accept` takes, as [error, update] (bounded). */
export function nextUpdate(client, group, { accept = () => true, ms = WAIT_MS } = {}) {
  let listener;
  const seen = new Promise((resolve) => {
    listener = (error, update) => {
      if (accept(error, update)) resolve([error, update]);
    };
    client.onGroup(group, listener);
  });
  return within(seen, ms, `a push to ${group}`).finally(() => client.offGroup(group, listener));
}

/** An open client, closed when the test `t` ends. */
export async function openClient(t, server, options) {
  const client = connect(server, options);
  t.after(() => client.close());
  if (client.state !== "open") await next(client, "open");
  return client;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
