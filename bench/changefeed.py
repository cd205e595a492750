"""Measure what the change feed adds to a model save, on SQLite, with two channel layers.

Usage::

    python -m bench.changefeed                  # the full run (about a minute)
    python -m bench.changefeed --quick          # a smoke run (a few seconds)
    python -m bench.changefeed --json out.json  # also write the results as JSON
    python -m bench.changefeed --layer redis    # one channel layer only

Two models with one integer field (:mod:`bench.feedmodels.models`):
``Counter(NotifyOnChange, models.Model)`` and its twin ``PlainCounter`` without
the mixin. Two workloads compare them, each in interleaved rounds:

- **save**: ``obj.value += 1; obj.save()`` on one existing row, ``--saves``
  times per batch, in autocommit (each save is its own transaction, so each
  one publishes). Every push reaches one subscribed channel.
- **bulk_create**: ``bulk_create`` of ``--bulk-size`` new rows; the
  subscribed channel is in the group of every row created.

Each batch is timed with ``time.process_time()``, the CPU of every thread of
the process: the pushes are sent by rohrpost's background publisher thread.
A notifying batch ends with ``rohrpost.publisher.flush()`` inside the timed
region, so every push has been handed to the channel layer when the clock
stops. The subscribed channel is read after the clock stops (what a consumer
would do, in another process); every push is checked, so a change feed that
publishes nothing, too little or the wrong thing fails instead of looking
fast. Each channel layer (``memory``: ``InMemoryChannelLayer``, ``redis``:
``channels_redis`` on 127.0.0.1:6379) is measured in its own process
(``--worker``), with a fresh SQLite file in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

LAYERS = ("memory", "redis")
#: Most CPU a notifying save may cost, relative to a plain save.
SAVE_TARGET = 1.3
#: Most CPU a notifying bulk_create (publishing included) may cost, relative to a plain one.
BULK_TARGET = 2.0

REPO_ROOT = Path(__file__).resolve().parent.parent
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
#: The one channel subscribed to the benchmark's groups.
READER = "rohrpost-bench-reader"
#: Seconds a layer may take to deliver a batch (flush) or to let it be read.
DELIVERY_TIMEOUT = 60.0
WORKER_TIMEOUT = 600.0


class WrongDelivery(Exception):
    """The subscribed channel did not receive exactly the expected pushes."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.changefeed",
        description="CPU per save and per bulk_create: NotifyOnChange against a plain model.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 4 rounds of 50 saves, 2 of 200 rows"
    )
    parser.add_argument(
        "--layer", action="append", choices=LAYERS, help="measure only this layer (repeatable)"
    )
    parser.add_argument("--rounds", type=int, help="timed save rounds (default 10; --quick 4)")
    parser.add_argument("--saves", type=int, help="saves per batch (default 200; --quick 50)")
    parser.add_argument(
        "--bulk-rounds", type=int, help="timed bulk_create rounds (default 10; --quick 2)"
    )
    parser.add_argument(
        "--bulk-size", type=int, help="rows per bulk_create (default 1000; --quick 200)"
    )
    parser.add_argument(
        "--history",
        action="store_true",
        help="with ROHRPOST['HISTORY'] on, the measured groups tracked (rohrpost.history)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON")
    # Internal: measure one layer in this process and write its results to --output.
    parser.add_argument("--worker", choices=LAYERS, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = {
        "rounds": (10, 4),
        "saves": (200, 50),
        "bulk_rounds": (10, 2),
        "bulk_size": (1000, 200),
    }
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if min(args.rounds, args.saves, args.bulk_rounds, args.bulk_size) < 1:
        parser.error("--rounds, --saves, --bulk-rounds and --bulk-size must be at least 1")
    return args


# --- one layer, in a worker process ----------------------------------------------


class Reader:
    """The one channel subscribed to the benchmark's groups, read between timed batches.

    It has its own event loop in the main thread; it only runs while the
    publisher's thread is idle (after ``flush()``), so the in-memory layer's
    queues are never touched by two threads at once.
    """

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.loop = asyncio.new_event_loop()

    def subscribe(self, groups: Iterable[str]) -> None:
        self._each(self.layer.group_add, groups)

    def unsubscribe(self, groups: Iterable[str]) -> None:
        self._each(self.layer.group_discard, groups)

    def _each(self, method: Callable[[str, str], Awaitable[None]], groups: Iterable[str]) -> None:
        async def all_groups() -> None:
            names = list(groups)
            # In slices: channels_redis has a bounded connection pool.
            for start in range(0, len(names), 50):
                await asyncio.gather(*(method(name, READER) for name in names[start : start + 50]))

        self.loop.run_until_complete(all_groups())

    def read(self, count: int) -> list[dict[str, Any]]:
        """Return the next ``count`` pushes, decoded (several may share one event)."""

        async def receive() -> list[dict[str, Any]]:
            frames: list[str] = []
            while len(frames) < count:
                event = await self.layer.receive(READER)
                frames.extend(event["messages"] if "messages" in event else [event["message"]])
            return [json.loads(frame) for frame in frames]

        try:
            return self.loop.run_until_complete(asyncio.wait_for(receive(), DELIVERY_TIMEOUT))
        except asyncio.TimeoutError:  # not TimeoutError before Python 3.11
            raise WrongDelivery(f"fewer than {count} pushes arrived") from None

    def expect(self, kind: str, groups: list[str]) -> None:
        """Read one push per group in ``groups`` (in order), each of ``kind``."""
        pushes = self.read(len(groups))
        got = [(push["type"], push["data"]["type"], push["data"]["group"]) for push in pushes]
        wanted = [("subscription-update", kind, group) for group in groups]
        if got != wanted:
            raise WrongDelivery(f"expected {wanted[:3]}... ({len(wanted)}), got {got[:3]}...")

    def close(self) -> None:
        self.loop.close()


def delete_redis_keys(prefix: str) -> None:
    """Delete this run's keys (``layer.flush()`` would also close the publisher's pools)."""
    import redis

    from bench.feed_settings import REDIS_URL

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def timed(work: Callable[[], object], *, notify: bool) -> float:
    """Return the process CPU seconds of ``work`` (and of publishing what it recorded)."""
    from rohrpost import publisher

    gc.collect()
    start = time.process_time()
    work()
    # Inside the timed region: the publisher thread's work is part of the cost.
    if notify and not publisher.flush(DELIVERY_TIMEOUT):
        raise WrongDelivery(f"pushes still unsent after {DELIVERY_TIMEOUT} s")
    return time.process_time() - start


def interleaved(batch: Callable[[str], float], rounds: int) -> dict[str, list[float]]:
    """Run ``batch("plain")`` and ``batch("notify")`` once unmeasured, then ``rounds`` times."""
    samples: dict[str, list[float]] = {"plain": [], "notify": []}
    for name in samples:  # warm-up: code paths, the publisher thread, layer connections
        batch(name)
    for round_number in range(rounds):
        # Alternate who goes first, so that drift falls on both alike.
        for name in ("plain", "notify") if round_number % 2 == 0 else ("notify", "plain"):
            samples[name].append(batch(name))
    return samples


def measure_saves(reader: Reader, rounds: int, saves: int) -> dict[str, list[float]]:
    """µs of CPU per save, per batch: ``{"plain": [...], "notify": [...]}``."""
    from bench.feedmodels.models import Counter, PlainCounter
    from rohrpost import publisher

    plain, counter = PlainCounter.objects.create(), Counter.objects.create()
    publisher.flush()  # the create push goes out before anyone subscribes
    (group,) = counter.rohrpost_group_names("update")
    track([group])
    reader.subscribe([group])
    rows: dict[str, Any] = {"plain": plain, "notify": counter}

    def batch(name: str) -> float:
        row = rows[name]

        def save_many() -> None:
            for _ in range(saves):
                row.value += 1
                row.save()

        seconds = timed(save_many, notify=name == "notify")
        if name == "notify":
            reader.expect("update", [group] * saves)
        return seconds / saves * 1e6

    samples = interleaved(batch, rounds)
    reader.unsubscribe([group])
    return samples


def measure_listed_bulk_creates(reader: Reader, rounds: int, size: int) -> dict[str, list[float]]:
    """ms of CPU per ``bulk_create`` of ``size`` rows whose pushes share one list group."""
    from bench.feedmodels.models import ListedCounter, PlainCounter

    track(["counters"])
    reader.subscribe(["counters"])

    def batch(name: str) -> float:
        model = PlainCounter if name == "plain" else ListedCounter
        rows = [model() for _ in range(size)]
        seconds = timed(lambda: model.objects.bulk_create(rows), notify=name == "notify")
        if name == "notify":
            reader.expect("create", ["counters"] * size)
        return seconds * 1e3

    samples = interleaved(batch, rounds)
    reader.unsubscribe(["counters"])
    return samples


def measure_bulk_creates(reader: Reader, rounds: int, size: int) -> dict[str, list[float]]:
    """ms of CPU per ``bulk_create`` of ``size`` rows: ``{"plain": [...], "notify": [...]}``."""
    from django.db.models import Max

    from bench.feedmodels.models import Counter, PlainCounter

    models = {"plain": PlainCounter, "notify": Counter}

    def batch(name: str) -> float:
        model = models[name]
        rows = [model() for _ in range(size)]
        if name == "plain":
            return timed(lambda: model.objects.bulk_create(rows), notify=False) * 1e3
        # AUTOINCREMENT and no deletes: the new rows' keys follow the largest one.
        first = (Counter.objects.aggregate(last=Max("pk"))["last"] or 0) + 1
        keys = range(first, first + size)
        groups = [Counter(pk=pk).rohrpost_group_names("create")[0] for pk in keys]
        reader.subscribe(groups)
        seconds = timed(lambda: Counter.objects.bulk_create(rows), notify=True)
        if [row.pk for row in rows] != list(keys):
            raise WrongDelivery("bulk_create did not return the expected primary keys")
        reader.expect("create", groups)
        reader.unsubscribe(groups)  # each round starts with one group, as the first did
        return seconds * 1e3

    return interleaved(batch, rounds)


def track(groups: list[str]) -> None:
    """With history on, have ``groups`` recorded, as a subscription with history would."""
    from rohrpost import history

    if not history.enabled():
        return

    async def open_all() -> None:
        store = history.store()
        for group in groups:
            await store.aopen(group)
        if isinstance(store, history.RedisHistory):
            await store.aclose()

    asyncio.run(open_all())


def run_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Measure the layer ``args.worker`` in this process (Django is set up here)."""
    with tempfile.TemporaryDirectory(prefix="rohrpost-bench-") as directory:
        os.environ["ROHRPOST_BENCH_LAYER"] = args.worker
        os.environ["ROHRPOST_BENCH_DB"] = str(Path(directory) / "bench.sqlite3")
        os.environ["DJANGO_SETTINGS_MODULE"] = "bench.feed_settings"
        os.environ["ROHRPOST_BENCH_HISTORY"] = "1" if args.history else ""
        import django

        django.setup()
        from channels.layers import get_channel_layer
        from django.db import connection

        from bench.feedmodels.models import Counter, ListedCounter, PlainCounter

        with connection.schema_editor() as editor:
            editor.create_model(Counter)
            editor.create_model(ListedCounter)
            editor.create_model(PlainCounter)
        reader = Reader(get_channel_layer())
        try:
            saves = measure_saves(reader, args.rounds, args.saves)
            listed = measure_listed_bulk_creates(reader, args.bulk_rounds, args.bulk_size)
            bulk = measure_bulk_creates(reader, args.bulk_rounds, args.bulk_size)
        finally:
            reader.close()
            connection.close()
            if args.worker == "redis":
                delete_redis_keys(os.environ["ROHRPOST_BENCH_REDIS_PREFIX"])
    return {
        "save_us": saves,
        "listed_bulk_create_ms": listed,
        "bulk_create_ms": bulk,
        "facts": worker_facts(),
    }


def worker_facts() -> dict[str, Any]:
    import sqlite3
    from importlib.metadata import version

    from rohrpost import encoding

    return {
        "codec": encoding.DEFAULT.name,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "django": version("django"),
        "channels": version("channels"),
        "channels_redis": version("channels_redis"),
        "cpu_count": os.cpu_count(),
    }


# --- the parent: one worker per layer, then the report ----------------------------


def redis_answers() -> bool:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=1.0):
            return True
    except OSError:
        return False


def run_layer(layer: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one worker process for ``layer``; return its samples, or why there are none."""
    if layer == "redis" and not redis_answers():
        return {"skipped": f"no Redis on {REDIS_HOST}:{REDIS_PORT}"}
    with tempfile.TemporaryDirectory(prefix="rohrpost-bench-") as directory:
        output = Path(directory) / "result.json"
        command = [sys.executable, "-m", "bench.changefeed", "--worker", layer]
        command += ["--output", str(output), "--rounds", str(args.rounds)]
        command += ["--saves", str(args.saves), "--bulk-rounds", str(args.bulk_rounds)]
        command += ["--bulk-size", str(args.bulk_size)]
        if args.history:
            command += ["--history"]
        # A prefix of its own: the run never touches (nor flushes) anyone else's keys.
        env = os.environ | {
            "ROHRPOST_BENCH_REDIS_PREFIX": f"rohrpost-bench-{uuid.uuid4().hex[:12]}"
        }
        try:
            done = subprocess.run(
                command, cwd=REPO_ROOT, env=env, timeout=WORKER_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired:
            return {"failure": f"the worker took more than {WORKER_TIMEOUT:.0f} s"}
        if done.returncode != 0:
            return {"failure": f"the worker exited with code {done.returncode} (see above)"}
        result: dict[str, Any] = json.loads(output.read_text())
        return result


def compare(samples: dict[str, list[float]], target: float) -> dict[str, Any]:
    plain, notify = samples["plain"], samples["notify"]
    # The two batches of a round ran back to back: their ratio cancels most drift.
    paired = [n / p for n, p in zip(notify, plain, strict=True)]
    quartiles = statistics.quantiles(paired, n=4) if len(paired) > 1 else paired * 3
    ratio = statistics.median(notify) / statistics.median(plain)
    return {
        "plain": plain,
        "notify": notify,
        "plain_median": statistics.median(plain),
        "notify_median": statistics.median(notify),
        "ratio_of_medians": ratio,
        "median_of_paired_ratios": statistics.median(paired),
        "paired_ratio_quartiles": [quartiles[0], quartiles[2]],
        "target": target,
        "met": ratio <= target,
    }


def report_data(
    args: argparse.Namespace, results: dict[str, Any], elapsed: float
) -> dict[str, Any]:
    layers: dict[str, Any] = {}
    for layer, result in results.items():
        if "save_us" not in result:
            layers[layer] = result
            continue
        layers[layer] = {
            "facts": result["facts"],
            "save_us_per_save": compare(result["save_us"], SAVE_TARGET),
            "listed_bulk_create_ms": compare(result["listed_bulk_create_ms"], BULK_TARGET),
            "bulk_create_ms": compare(result["bulk_create_ms"], BULK_TARGET),
        }
    return {
        "config": {
            "rounds": args.rounds,
            "saves_per_batch": args.saves,
            "bulk_rounds": args.bulk_rounds,
            "bulk_size": args.bulk_size,
            "history": args.history,
            "clock": "time.process_time() (all threads)",
            "database": "SQLite file, autocommit",
        },
        "elapsed_seconds": elapsed,
        "layers": layers,
    }


def print_report(data: dict[str, Any]) -> None:
    config = data["config"]
    measured = [layer for layer in data["layers"].values() if "facts" in layer]
    if measured:
        facts = measured[0]["facts"]
        print(
            f"rohrpost change feed   codec {facts['codec']}, Python {facts['python']}, "
            f"SQLite {facts['sqlite']}, Django {facts['django']}, channels {facts['channels']}, "
            f"channels_redis {facts['channels_redis']}, {facts['cpu_count']} CPUs"
        )
    print(
        f"process CPU (all threads), SQLite file in autocommit; save: {config['rounds']} rounds "
        f"x {config['saves_per_batch']} saves, bulk_create: {config['bulk_rounds']} rounds x "
        f"{config['bulk_size']} rows; interleaved, in {data['elapsed_seconds']:.1f} s"
        + ("; HISTORY on, the groups tracked" if config.get("history") else "")
    )
    print()
    print(
        f"{'layer':<8}{'workload':<26}{'plain':>10}{'notify':>10}{'added':>10}"
        f"{'ratio':>9}{'paired':>9}{'paired IQR':>15}{'target':>9}   verdict"
    )
    for layer, result in data["layers"].items():
        if "facts" not in result:
            reason = (
                f"skipped: {result['skipped']}"
                if "skipped" in result
                else f"FAILED: {result['failure']}"
            )
            print(f"{layer:<8}{reason}")
            continue
        rows = [
            ("save, µs/save", result["save_us_per_save"], 1),
            (f"bulk({config['bulk_size']}) list grp, ms", result["listed_bulk_create_ms"], 2),
            (f"bulk({config['bulk_size']}) own grps, ms", result["bulk_create_ms"], 2),
        ]
        for label, row, digits in rows:
            low, high = row["paired_ratio_quartiles"]
            added = row["notify_median"] - row["plain_median"]
            target = f"<= {row['target']:.1f}x"
            print(
                f"{layer:<8}{label:<26}{row['plain_median']:>10.{digits}f}"
                f"{row['notify_median']:>10.{digits}f}{added:>+10.{digits}f}"
                f"{row['ratio_of_medians']:>8.2f}x{row['median_of_paired_ratios']:>8.2f}x"
                f"{f'{low:.2f}-{high:.2f}x':>15}{target:>9}   "
                f"{'met' if row['met'] else 'MISSED'}"
            )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        if args.output is None:
            raise SystemExit("--worker needs --output")
        args.output.write_text(json.dumps(run_worker(args)))
        return 0
    started = time.perf_counter()
    results = {layer: run_layer(layer, args) for layer in LAYERS if layer in (args.layer or LAYERS)}
    data = report_data(args, results, time.perf_counter() - started)
    print_report(data)
    if args.json is not None:
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return 1 if any("failure" in result for result in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
