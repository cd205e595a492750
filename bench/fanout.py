"""What one group push costs per delivered frame: rohrpost against Channels and a bare-ASGI floor.

Usage::

    python -m bench.fanout                  # the full run (several minutes on 2 cores)
    python -m bench.fanout --quick          # a smoke run (well under a minute)
    python -m bench.fanout --json out.json  # also write every sample as JSON

For every layer (in memory; channels_redis on a Redis of the benchmark's
own) and every subscriber count, each contender (:data:`CONTENDERS`) gets
fresh server processes (one in memory, two on Redis) and a subscriber process
(:mod:`bench.fanout_client`) whose connections all join one group. A
**phase** is B broadcasts of the same payload to that group; the servers'
CPU (``/proc/<pid>/task/*/schedstat``, and Redis's on Redis) is read right before the
broadcasts are triggered and right after the last subscriber got the last
one, and divided by the deliveries (subscribers x B). Phases are interleaved
(one per contender per round, the order rotated), so machine noise falls on
all alike. Then the idle memory per connection (:mod:`bench.fanout_memory`)
and, with ``--plot``, the CPU per delivery over subscriber counts
(:mod:`bench.fanout_plot`). The exit code is 1 when a contender failed (a
push missing or wrong, a process died), else 0; a missed target is reported.
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bench.fanout_procs import (
    LinePipe,
    RedisServer,
    cpu_seconds,
    descendants,
    fanout_server,
    http_get,
    logged_errors,
    proc_cpu_seconds,
    stop_servers,
    subscribers,
    tree_cpu_seconds,
    wait_until_ready,
)
from bench.fanout_report import (
    ROHRPOST,
    TARGET_FLOOR_RATIO,
    TARGET_RATE_RATIO,
    ratios,
    summary,
)

__all__ = [
    "CONTENDERS",
    "ROHRPOST",
    "TARGET_FLOOR_RATIO",
    "TARGET_RATE_RATIO",
    "Contender",
    "main",
    "measure",
    "measure_layer",
    "parse_args",
]

#: Report name -> (URL path and group name in :mod:`bench.fanout_app`, the join frame).
CONTENDERS: dict[str, tuple[str, dict[str, Any]]] = {
    "BareASGI": ("bare", {"id": 1, "type": "join"}),
    "ChannelsAsyncJson": ("channels", {"id": 1, "type": "join"}),
    "AsyncRohrpost": ("rohrpost-async", {"id": 1, "type": "fanout_join"}),
    "SyncRohrpost": ("rohrpost-sync", {"id": 1, "type": "fanout_join"}),
}
SERVER_KINDS = ("uvicorn", "granian")
#: Servers per contender on each layer: on Redis the subscribers are spread over two.
SERVERS = {"memory": 1, "redis": 2}
WARM_UP_BROADCASTS = 3
PLOT = Path(__file__).resolve().parent.parent / "docs" / "fanout.png"


@dataclass
class Contender:
    """One contender on one layer at one subscriber count: its processes and samples."""

    name: str
    subscribers: int
    #: ``uvicorn`` or ``granian`` (see :func:`bench.fanout_procs.fanout_server`).
    server: str = "uvicorn"
    servers: list[tuple[Any, int]] = field(default_factory=list)
    client: LinePipe | None = None
    samples: list[dict[str, float]] = field(default_factory=list)
    failure: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    #: Servers that did not exit within 10 s of SIGINT (reported: a shutdown that hangs).
    killed: int = 0
    #: The servers' stderr: exceptions they log are counted into the report.
    log: IO[bytes] = field(default_factory=tempfile.TemporaryFile)

    @property
    def key(self) -> str:
        return CONTENDERS[self.name][0]

    def launch(self, redis_url: str | None) -> None:
        """Start the servers (all contenders' start at once: Django takes seconds to load)."""
        for _ in range(SERVERS["redis" if redis_url else "memory"]):
            self.servers.append(fanout_server(self.key, redis_url, self.log, self.server))

    def connect(self, count: int, timeout: float) -> None:
        """Wait for the servers, then open and join the subscribers."""
        for server, port in self.servers:
            self.info = wait_until_ready(server, port)
        urls = [f"ws://127.0.0.1:{port}/{self.key}" for _, port in self.servers]
        self.client = subscribers(urls, count, CONTENDERS[self.name][1], timeout)

    def stop(self) -> None:
        """Close the subscribers and stop the servers (see :meth:`stop_all`)."""
        self.killed += stop_all([self])

    def server_cpu(self) -> float:
        """CPU of the server processes and their children (granian's workers)."""
        return sum(tree_cpu_seconds(server.pid) for server, _ in self.servers)

    def server_ticks(self) -> float:
        """The same from ``/proc/<pid>/stat`` (10 ms ticks, exited threads included)."""
        pids = [pid for server, _ in self.servers for pid in [server.pid, *descendants(server.pid)]]
        return sum(proc_cpu_seconds(pid) or 0.0 for pid in pids)


def stop_all(contenders: list[Contender]) -> int:
    """Close every subscriber, then stop every server at once; how many had to be killed."""
    for contender in contenders:
        if contender.client is not None:
            contender.client.close()
            contender.client = None
    servers = [server for contender in contenders for server, _ in contender.servers]
    for contender in contenders:
        contender.servers = []
    return stop_servers(servers)


def broadcasts_for(subscribers: int, args: argparse.Namespace) -> int:
    """B for one phase: ``--broadcasts``, fewer when that would pass ``--max-deliveries``."""
    return max(args.min_broadcasts, min(args.broadcasts, args.max_deliveries // subscribers))


def phase(
    contender: Contender,
    count: int,
    sender: LinePipe | None,
    redis: RedisServer | None,
    timeout: float,
) -> dict[str, float]:
    """One measured phase: ``count`` broadcasts until every subscriber got every one."""
    assert contender.client is not None
    contender.client.send({"expect": count})
    contender.client.read(timeout)  # armed
    redis_before = cpu_seconds(redis.pid) if redis else 0.0
    ticks_before, cpu_before = contender.server_ticks(), contender.server_cpu()
    started = time.monotonic()
    if sender is None:
        port = contender.servers[0][1]
        http_get(port, f"/broadcast?contender={contender.key}&count={count}", timeout)
        sender_cpu = 0.0
    else:
        sender.send({"contender": contender.key, "count": count})
    done = contender.client.read(timeout)
    cpu = contender.server_cpu() - cpu_before
    ticks = contender.server_ticks() - ticks_before
    redis_cpu = cpu_seconds(redis.pid) - redis_before if redis else 0.0
    if sender is not None:
        sender_cpu = sender.read(timeout)["cpu"]
    deliveries = count * contender.subscribers
    return {
        "broadcasts": count,
        "deliveries": deliveries,
        "server_us": cpu / deliveries * 1e6,
        "server_us_from_stat": ticks / deliveries * 1e6,
        "redis_us": redis_cpu / deliveries * 1e6,
        "total_us": (cpu + redis_cpu) / deliveries * 1e6,
        "sender_us": sender_cpu / deliveries * 1e6,
        "deliveries_per_second": deliveries / max(done["done"] - started, 1e-9),
    }


def guarded(contender: Contender, step: Any) -> None:
    """Run ``step()``; an error marks the contender failed instead of ending the run."""
    if contender.failure is not None:
        return
    try:
        step()
    except Exception as exc:  # a failing contender is a result, not a crash
        contender.failure = f"{type(exc).__name__}: {exc}"
        contender.stop()


def measure_layer(
    layer: str, subscribers: int, args: argparse.Namespace, server: str = "uvicorn"
) -> dict[str, Any]:
    """Every contender on ``layer`` with ``subscribers`` subscribers, ``--rounds`` phases each."""
    names = [name for name in CONTENDERS if name in (args.only or CONTENDERS)]
    contenders = [Contender(name, subscribers, server) for name in names]
    count = broadcasts_for(subscribers, args)
    redis = RedisServer() if layer == "redis" else None
    sender: LinePipe | None = None
    try:
        if redis is not None:
            sender = LinePipe("bench.fanout_broadcast", env={"BENCH_FANOUT_REDIS": redis.url})
            sender.read(args.timeout)
        url = redis.url if redis else None
        for contender in contenders:
            guarded(contender, lambda c=contender: c.launch(url))
        for contender in contenders:
            guarded(contender, lambda c=contender: c.connect(subscribers, args.timeout))
        for contender in contenders:  # warm-up: code paths, caches, pools; not measured
            guarded(
                contender,
                lambda c=contender: phase(c, WARM_UP_BROADCASTS, sender, redis, args.timeout),
            )
        for round_number in range(args.rounds):
            shift = round_number % len(contenders)
            for contender in contenders[shift:] + contenders[:shift]:
                guarded(
                    contender,
                    lambda c=contender: c.samples.append(
                        phase(c, count, sender, redis, args.timeout)
                    ),
                )
    finally:
        killed = stop_all(contenders)
        if sender is not None:
            sender.close()
        if redis is not None:
            redis.stop()
    server_errors = {}
    for contender in contenders:
        errors = logged_errors(contender.log)
        contender.log.close()
        if errors:
            server_errors[contender.name] = errors
    return {
        "server_kind": server,
        "layer": layer,
        "subscribers": subscribers,
        "broadcasts": count,
        "server": next((c.info for c in contenders if c.info), {}),
        "servers_killed_at_shutdown": killed + sum(c.killed for c in contenders),
        "contenders": {c.name: summary(c) for c in contenders},
        "server_errors": server_errors,
        "ratios": ratios(contenders),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fanout",
        description="Server CPU per delivered group push: rohrpost, Channels, a bare-ASGI floor.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: few subscribers, 2 rounds"
    )
    parser.add_argument(
        "--subscribers",
        type=int,
        action="append",
        help="subscriber counts (repeatable; default 200 and 2000)",
    )
    parser.add_argument("--broadcasts", type=int, help="broadcasts per phase (default 50)")
    parser.add_argument(
        "--max-deliveries",
        type=int,
        default=20_000,
        help="fewer broadcasts when subscribers x broadcasts would pass this (default 20000)",
    )
    parser.add_argument(
        "--min-broadcasts", type=int, default=10, help="but never fewer than this (default 10)"
    )
    parser.add_argument("--rounds", type=int, help="measured phases per contender (default 3)")
    parser.add_argument(
        "--layer", action="append", choices=list(SERVERS), help="one layer only (repeatable)"
    )
    parser.add_argument(
        "--server",
        action="append",
        choices=SERVER_KINDS,
        help="ASGI server (repeatable; default uvicorn and granian, --quick: uvicorn)",
    )
    parser.add_argument(
        "--only", action="append", choices=list(CONTENDERS), help="one contender only (repeatable)"
    )
    parser.add_argument(
        "--idle-connections",
        type=int,
        help="connections of the idle memory measurement (default 1000; 0 skips it)",
    )
    parser.add_argument(
        "--sweep",
        type=int,
        action="append",
        help="in-memory subscriber counts for the plot (default 10 50 200 500 1000 2000)",
    )
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="PNG",
        help="plot CPU per delivery over --sweep here (default docs/fanout.png; --quick: none)",
    )
    parser.add_argument(
        "--no-plot", action="store_true", help="draw no plot (and skip the --sweep counts)"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds any one step may take (default 120)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON")
    args = parser.parse_args(argv)
    quick = args.quick
    args.subscribers = args.subscribers or ([50] if quick else [200, 2000])
    args.broadcasts = args.broadcasts or (20 if quick else 50)
    args.rounds = args.rounds or (2 if quick else 3)
    args.layer = args.layer or list(SERVERS)
    args.server = args.server or (["uvicorn"] if quick else list(SERVER_KINDS))
    if args.idle_connections is None:
        args.idle_connections = 100 if quick else 1000
    args.sweep = sorted(set(args.sweep or ([10, 50] if quick else [10, 50, 200, 500, 1000, 2000])))
    if args.no_plot:
        args.plot = None
    elif args.plot is None and not quick:
        args.plot = PLOT
    if quick:
        args.timeout = min(args.timeout, 60.0)
    if min(args.subscribers + args.sweep + [args.broadcasts, args.rounds, args.min_broadcasts]) < 1:
        parser.error("--subscribers, --sweep, --broadcasts, --rounds must be at least 1")
    return args


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run everything ``args`` asks for; the results as one JSON-able dict."""
    from bench import fanout_memory

    started = time.monotonic()
    runs = []
    for server in args.server:
        for layer in args.layer:
            counts = args.subscribers
            if server == "uvicorn" and layer == "memory" and args.plot is not None:
                counts = sorted(set(counts) | set(args.sweep))
            for count in counts:
                runs.append(measure_layer(layer, count, args, server))
    idle = (
        fanout_memory.measure(args.idle_connections, args.timeout)
        if args.idle_connections
        else None
    )
    data = {
        "python": platform.python_version(),
        "config": {
            key: str(value) if isinstance(value, Path) else value
            for key, value in vars(args).items()
        },
        "runs": runs,
        "idle_memory": idle,
        "elapsed_seconds": time.monotonic() - started,
    }
    if args.plot is not None:
        from bench import fanout_plot

        fanout_plot.draw(data, args.plot)
    return data


def main(argv: Sequence[str] | None = None) -> int:
    from bench import fanout_report

    args = parse_args(argv)
    # A SIGTERM (a timeout, a CI cancel) unwinds like Ctrl-C: every server is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    data = measure(args)
    fanout_report.print_report(data)
    if args.json is not None:
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    failed = [
        name
        for run in data["runs"]
        for name, result in run["contenders"].items()
        if result["failure"] is not None
    ]
    failed += [
        name
        for kind in (data["idle_memory"] or {}).values()
        for name, result in kind.items()
        if result["failure"]
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
