"""The JavaScript client's resume after missed pushes: how long until it is live again.

Usage::

    python -m bench.history_js            # the full run (about half a minute)
    python -m bench.history_js --quick    # a smoke run

:mod:`bench.history` times a resume on the wire (a bare WebSocket client
sends ``subscribe`` with ``since`` and waits for the reply). This benchmark
times the real JavaScript client (``clients/js/src/rohrpost.js`` in Node, on
the ``ws`` package) doing it by itself: for each layer (the in-memory one and
``RedisChannelLayer``, history on), a uvicorn server of
:mod:`bench.history_js_app` and ``clients/js/bench/resume.js`` against it.
Each round the client subscribes to a group with history; the server drops
its connection (close code 1012, as in a deploy) and the client's reconnects
are refused while ``--missed`` pushes go to the group (and ``--outage``
seconds more, none by default: as in :mod:`bench.history`, the outage lasts
as long as the publishing); then the client reconnects on its own backoff,
resubscribes ``since`` its last position, and applies the replay.

Each layer is measured twice: with the client offering permessage-deflate,
as the ``ws`` package does by default (uvicorn accepts it: every frame is
compressed, and ``ws`` inflates each on libuv's thread pool), and without
(``--deflate on`` or ``off`` measures one). Browsers offer it too, but
inflate natively.

Figures per layer and setting, over ``--rounds`` rounds:

- **open -> live** (median, min, max): from the reconnected socket's open
  (the resubscribe goes out in it) to the resubscribe's reply, by which the
  client has applied every missed push (the server sends the replay first).
  Target: under 1 s for 1000.
- **client CPU**: the Node process's CPU time over that span.
- **live push**: a push published once the client is live, until applied.
- **open -> it**: from the open until that live push is applied.

A round fails (exit code 1) unless the client applied exactly the missed
pushes and then the live one, in order, once each, the reply said
``resumed`` with their number, the position is the live push's and no
``reset`` came: a run that delivers nothing cannot pass for a fast one.

The Redis layer runs on a ``redis-server`` of the benchmark's own, or on
``--redis-url`` (the groups' names are unique to the run; their history keys
are deleted afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.fanout_procs import RedisServer

REPO_ROOT = Path(__file__).resolve().parent.parent
JS_DIR = REPO_ROOT / "clients" / "js"
SCRIPT = JS_DIR / "bench" / "resume.js"
LAYERS = ("memory", "redis")
DEFLATE = ("on", "off")
#: Most seconds the client may take to be live again after 1000 missed pushes.
RESUME_TARGET_SECONDS = 1.0
SERVER_START_SECONDS = 20.0
NODE_TIMEOUT_SECONDS = 600.0


class BenchFailure(Exception):
    """The benchmark could not run, or the client resumed wrongly."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.history_js", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100 missed pushes, 2 rounds")
    parser.add_argument("--missed", type=int, help="pushes missed while away (default 1000)")
    parser.add_argument("--rounds", type=int, help="resumes measured per layer (default 5)")
    parser.add_argument(
        "--outage",
        type=float,
        default=0.0,
        help="seconds the client stays away after the pushes are published (default 0)",
    )
    parser.add_argument(
        "--layer", action="append", choices=LAYERS, help="measure only this layer (repeatable)"
    )
    parser.add_argument(
        "--redis-url", help="the Redis layer's Redis (default: a redis-server of the bench's own)"
    )
    parser.add_argument(
        "--deflate",
        action="append",
        choices=DEFLATE,
        help=(
            "on: the client offers permessage-deflate, as the ws package does by default; "
            "off: it does not (repeatable; default both)"
        ),
    )
    parser.add_argument(
        "--history-size",
        type=int,
        default=5000,
        help="the server's ROHRPOST['HISTORY']['SIZE'] (default 5000)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON")
    args = parser.parse_args(argv)
    args.missed = args.missed or (100 if args.quick else 1000)
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.layer = args.layer or list(LAYERS)
    args.deflate = args.deflate or list(DEFLATE)
    if args.missed < 1 or args.rounds < 1 or args.outage < 0:
        parser.error("--missed and --rounds must be at least 1, --outage at least 0")
    return args


def check_node() -> str:
    """The ``node`` executable, once the JavaScript client's dependencies are installed."""
    node = shutil.which("node")
    if node is None:
        raise BenchFailure("node is not installed")
    if not (JS_DIR / "node_modules" / "ws").is_dir():
        raise BenchFailure("clients/js has no node_modules: run `cd clients/js && npm ci`")
    return node


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(redis_url: str | None, history_size: int) -> tuple[subprocess.Popen[bytes], int]:
    """uvicorn serving :mod:`bench.history_js_app`; on ``redis_url``'s Redis layer if given."""
    port = _free_port()
    env = os.environ | {
        "DJANGO_SETTINGS_MODULE": "tests.e2e.settings",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)]),
        "E2E_HISTORY_SIZE": str(history_size),
    }
    env.pop("E2E_REDIS_URL", None)
    if redis_url is not None:
        env |= {"E2E_REDIS_URL": redis_url, "E2E_REDIS_LAYER": "core"}
    command = [sys.executable, "-m", "uvicorn", "bench.history_js_app:application"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    command += ["--lifespan", "off", "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env)
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchFailure(f"the server exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process, port
        except OSError:
            time.sleep(0.05)
    stop_server(process)
    raise BenchFailure("the server did not start")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_client(
    node: str, port: int, name: str, deflate: bool, args: argparse.Namespace
) -> dict[str, Any]:
    """Run ``resume.js`` against the server on ``port``; its rounds, or BenchFailure."""
    config = {
        "port": port,
        "name": name,
        "missed": args.missed,
        "rounds": args.rounds,
        "outageMs": round(args.outage * 1000),
        "deflate": deflate,
    }
    try:
        done = subprocess.run(
            [node, str(SCRIPT), json.dumps(config)],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchFailure(f"the client did not finish in {NODE_TIMEOUT_SECONDS:.0f} s") from None
    if done.returncode != 0:
        raise BenchFailure(f"the client failed:\n{done.stderr.strip()}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure_layer(
    node: str, layer: str, redis_url: str | None, args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """The client's results on one layer's server, for each ``--deflate`` setting."""
    name = f"js-{layer}-{os.getpid()}-{time.time_ns()}"
    process, port = start_server(redis_url if layer == "redis" else None, args.history_size)
    try:
        results = {}
        for deflate in args.deflate:
            result = run_client(node, port, f"{name}-{deflate}", deflate == "on", args)
            if ("permessage-deflate" in result["extensions"]) != (deflate == "on"):
                extensions = result["extensions"] or "no extension"
                raise BenchFailure(f"deflate {deflate}, but the server accepted {extensions}")
            results[deflate] = result
        return results
    finally:
        stop_server(process)
        if layer == "redis" and args.redis_url is not None:
            _delete_history(args.redis_url, name)


def _delete_history(redis_url: str, name: str) -> None:
    """Delete the history keys of this run's groups on a Redis the bench does not own."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"rohrpost:history:*:feed-{name}-*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def summary(rounds: list[dict[str, Any]], extensions: str) -> dict[str, Any]:
    def spread(key: str) -> dict[str, float]:
        values = [each[key] for each in rounds]
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    return {
        "extensions": extensions,
        "resume_ms": spread("resume_ms"),
        "client_cpu_ms": spread("client_cpu_ms"),
        "live_push_ms": spread("live_push_ms"),
        "confirmed_ms": spread("confirmed_ms"),
        "met": statistics.median(each["resume_ms"] for each in rounds)
        <= RESUME_TARGET_SECONDS * 1e3,
        "rounds": rounds,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    node = check_node()
    redis_server = None
    results: dict[str, Any] = {}
    try:
        redis_url = args.redis_url
        if "redis" in args.layer and redis_url is None:
            redis_server = RedisServer()
            redis_url = redis_server.url
        for layer in args.layer:
            for deflate, result in measure_layer(node, layer, redis_url, args).items():
                results["node"] = result["node"]
                results[f"{layer}, deflate {deflate}"] = summary(
                    result["rounds"], result["extensions"]
                )
    finally:
        if redis_server is not None:
            redis_server.stop()
    return results


def print_report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    outage = f", {args.outage:g} s outage" if args.outage else ""
    print(
        f"history, JS client (Node {results['node']}, ws): {args.missed} missed "
        f"pushes{outage}, {args.rounds} resumes each, uvicorn"
    )
    print(
        f"{'layer, ws deflate':<20}{'open -> live: median':>22}{'min':>7}{'max':>7}"
        f"{'client CPU':>12}{'live push':>11}{'open -> it':>12}   "
        f"target <= {RESUME_TARGET_SECONDS:.0f} s"
    )
    for key, figures in results.items():
        if key == "node":
            continue
        resume = figures["resume_ms"]
        print(
            f"{key:<20}{resume['median']:>19.0f} ms{resume['min']:>7.0f}{resume['max']:>7.0f}"
            f"{figures['client_cpu_ms']['median']:>9.0f} ms"
            f"{figures['live_push_ms']['median']:>8.1f} ms"
            f"{figures['confirmed_ms']['median']:>9.0f} ms   "
            f"{'met' if figures['met'] else 'MISSED'}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        results = run(args)
    except BenchFailure as failure:
        print(f"history, JS client: FAILED: {failure}")
        return 1
    print_report(args, results)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0  # a missed target is reported, not an error (as in the other benchmarks)


if __name__ == "__main__":
    raise SystemExit(main())
