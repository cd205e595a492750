// The demo server for the JavaScript tests, started the way `make demo` starts it.
//
// startDemoServer() migrates a fresh SQLite database in a temporary directory and runs
// the example project under uvicorn on a free loopback port, with the in-memory channel
// layer. Every wait is bounded; stop() kills the server and removes the directory, and
// a process "exit" hook kills it too if a test file dies before its `after` hook.
// ROHRPOST_DEMO_SERVER=granian runs it on granian instead (as tests/demo_server.py does).

import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const JS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const EXAMPLE_DIR = path.resolve(JS_DIR, "../../example");
const WS_PATH = "/ws/rohrpost/";
const START_TIMEOUT_MS = 30000;
const COMMAND_TIMEOUT_MS = 60000;
const STOP_TIMEOUT_MS = 5000;

/** ROHRPOST_PYTHON, or the project's venv; a relative path is taken from clients/js. */
export function pythonPath() {
  const python = process.env.ROHRPOST_PYTHON || "../../.venv/bin/python";
  return python.includes("/") ? path.resolve(JS_DIR, python) : python; // bare names go through PATH
}

/** A free TCP port on 127.0.0.1 (free when asked; the server binds it right after). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

function run(python, args, env) {
  return new Promise((resolve, reject) => {
    execFile(
      python,
      args,
      { cwd: EXAMPLE_DIR, env, timeout: COMMAND_TIMEOUT_MS },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`${args.join(" ")} failed: ${error.message}\n${stderr}`));
        else resolve(stdout);
      },
    );
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.setTimeout(500);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
    socket.once("timeout", () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** The command line (after the interpreter) that serves the demo on `port`. */
function serverArgs(port) {
  const server = process.env.ROHRPOST_DEMO_SERVER || "uvicorn";
  if (server === "granian") {
    // granian has no WebSocket limit options (docs/deployment.md).
    return [
      "-m",
      "granian",
      "--interface",
      "asginl",
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      "--workers",
      "1",
      "demo.asgi:application",
    ];
  }
  if (server !== "uvicorn") throw new Error(`unknown ROHRPOST_DEMO_SERVER ${server}`);
  return [
    "-m",
    "uvicorn",
    "demo.asgi:application",
    "--host",
    "127.0.0.1",
    "--port",
    String(port),
    "--lifespan",
    "off",
    // The WebSocket limits of `make demo` (the Makefile's UVICORN_WS).
    "--ws-max-size",
    "262144",
    "--ws-ping-interval",
    "20",
    "--ws-ping-timeout",
    "20",
  ];
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Start the demo server; resolves once it accepts TCP connections. */
export async function startDemoServer() {
  const python = pythonPath();
  const directory = mkdtempSync(path.join(tmpdir(), "rohrpost-js-"));
  const env = {
    ...process.env,
    DJANGO_SETTINGS_MODULE: "demo.settings",
    DEMO_DB_PATH: path.join(directory, "demo.sqlite3"),
    PYTHONUNBUFFERED: "1",
  };
  delete env.REDIS_URL; // the zero-setup path: the in-memory channel layer
  try {
    await run(python, ["manage.py", "migrate", "--noinput", "--verbosity", "0"], env);
  } catch (error) {
    rmSync(directory, { recursive: true, force: true });
    throw error;
  }
  const port = await freePort();
  const log = [];
  let child;
  let exited;
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  const spawnServer = () => {
    child = spawn(python, serverArgs(port), { cwd: EXAMPLE_DIR, env, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.on("data", (chunk) => log.push(chunk));
    child.stderr.on("data", (chunk) => log.push(chunk));
    exited = new Promise((resolve) => child.once("exit", resolve));
  };
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(killer);
    }
  };
  const waitUntilUp = async () => {
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!(await canConnect(port))) {
      if (child.exitCode !== null || Date.now() > deadline) {
        await server.stop();
        throw new Error(`The demo server did not start on port ${port}:\n${server.log()}`);
      }
      await sleep(100);
    }
  };

  const server = {
    port,
    url: `ws://127.0.0.1:${port}${WS_PATH}`,
    httpUrl: `http://127.0.0.1:${port}`,
    origin: `http://127.0.0.1:${port}`,
    log: () => Buffer.concat(log).toString(),
    /** A token for `username` from `manage.py demo_token`. */
    token: async (username) => (await run(python, ["manage.py", "demo_token", username], env)).trim(),
    /** Stop the server and start it again on the same port and database (memory is lost). */
    async restart() {
      await kill();
      spawnServer();
      await waitUntilUp();
    },
    async stop() {
      process.removeListener("exit", killOnExit);
      await kill();
      rmSync(directory, { recursive: true, force: true });
    },
  };

  spawnServer();
  await waitUntilUp();
  return server;
}

function cookieJar() {
  const cookies = new Map();
  return {
    take(response) {
      for (const line of response.headers.getSetCookie()) {
        const [pair] = line.split(";");
        const index = pair.indexOf("=");
        cookies.set(pair.slice(0, index).trim(), pair.slice(index + 1).trim());
      }
    },
    get: (name) => cookies.get(name),
    header: () => [...cookies].map(([name, value]) => `${name}=${value}`).join("; "),
  };
}

/**
 * Log `username` in through the demo's login form (password "rohrpost").
 *
 * Returns the session cookie header (for a WebSocket handshake) and logout(), which
 * posts to /logout/ and so makes the server close the user's connections with 4003.
 */
export async function logIn(server, username) {
  const jar = cookieJar();
  const form = await fetch(`${server.httpUrl}/login/`, { signal: AbortSignal.timeout(COMMAND_TIMEOUT_MS) });
  jar.take(form);
  const csrf = /name="csrfmiddlewaretoken" value="([^"]+)"/.exec(await form.text())?.[1];
  if (!csrf) throw new Error("The login page has no CSRF token.");
  const post = (urlPath, fields) =>
    fetch(`${server.httpUrl}${urlPath}`, {
      method: "POST",
      redirect: "manual",
      headers: {
        "Content-Type": "application/x-www-form-urlencoded",
        Cookie: jar.header(),
        Origin: server.origin,
        Referer: `${server.httpUrl}${urlPath}`,
      },
      body: new URLSearchParams(fields),
      signal: AbortSignal.timeout(COMMAND_TIMEOUT_MS),
    });
  const login = await post("/login/", { csrfmiddlewaretoken: csrf, username, password: "rohrpost" });
  jar.take(login);
  if (login.status !== 302 || !jar.get("sessionid"))
    throw new Error(`Logging in as ${username} failed (${login.status}).`);
  return {
    cookie: jar.header(),
    async logout() {
      const logout = await post("/logout/", { csrfmiddlewaretoken: jar.get("csrftoken") });
      if (logout.status !== 302) throw new Error(`Logging out failed (${logout.status}).`);
    },
  };
}
