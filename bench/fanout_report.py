"""The fan-out benchmark's figures: medians, ratios and targets, and the printed report."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.fanout import Contender

__all__ = [
    "CHANNELS",
    "FLOOR",
    "ROHRPOST",
    "TARGET_FLOOR_RATIO",
    "TARGET_RATE_RATIO",
    "print_report",
    "ratios",
    "summary",
]

FLOOR, CHANNELS = "BareASGI", "ChannelsAsyncJson"
ROHRPOST = ("AsyncRohrpost", "SyncRohrpost")
#: Issue 10's targets: CPU per delivery at most 2x the floor, deliveries/s at least 5x Channels'.
TARGET_FLOOR_RATIO = 2.0
TARGET_RATE_RATIO = 5.0


def summary(contender: Contender) -> dict[str, Any]:
    samples = contender.samples
    medians = {
        key: statistics.median(sample[key] for sample in samples) if samples else None
        for key in (
            "server_us",
            "server_us_from_stat",
            "redis_us",
            "total_us",
            "sender_us",
            "deliveries_per_second",
        )
    }
    return {"samples": samples, "median": medians, "failure": contender.failure}


def paired(mine: Contender, theirs: Contender, key: str) -> list[float]:
    return [
        a[key] / b[key] for a, b in zip(mine.samples, theirs.samples, strict=True) if b[key] > 0
    ]


def ratios(contenders: list[Contender]) -> dict[str, Any]:
    """CPU per delivery against the floor and Channels; deliveries/s against Channels."""
    by_name = {c.name: c for c in contenders if c.samples and c.failure is None}
    found: dict[str, Any] = {}
    for name, contender in by_name.items():
        for baseline, key, target in (
            (FLOOR, "total_us", TARGET_FLOOR_RATIO if name in ROHRPOST else None),
            (CHANNELS, "total_us", None),
            (CHANNELS, "deliveries_per_second", TARGET_RATE_RATIO if name in ROHRPOST else None),
        ):
            if name == FLOOR or (name == CHANNELS and baseline == CHANNELS):
                continue
            if baseline not in by_name or baseline == name:
                continue
            mine = statistics.median(s[key] for s in contender.samples)
            theirs = statistics.median(s[key] for s in by_name[baseline].samples)
            pairs = paired(contender, by_name[baseline], key)
            ratio = mine / theirs if theirs > 0 else float("inf")
            higher_is_better = key == "deliveries_per_second"
            found[f"{name}/{baseline} {key}"] = {
                "ratio_of_medians": ratio,
                "median_of_paired_ratios": statistics.median(pairs) if pairs else None,
                "target": target,
                "met": None
                if target is None
                else (ratio >= target if higher_is_better else ratio <= target),
            }
    return found


COLUMNS = ("server_us", "redis_us", "total_us", "sender_us", "deliveries_per_second")


def _verdict(ratio: dict[str, Any]) -> str:
    if ratio["met"] is None:
        return ""
    return "met" if ratio["met"] else "MISSED"


def print_run(run: dict[str, Any]) -> None:
    on = "" if run.get("server_kind", "uvicorn") == "uvicorn" else f" on {run['server_kind']}"
    print(
        f"layer {run['layer']}{on}: {run['subscribers']} subscribers x {run['broadcasts']} "
        f"broadcasts = {run['subscribers'] * run['broadcasts']} deliveries per phase"
    )
    print(
        f"{'contender':<20}{'server µs':>11}{'redis µs':>10}{'total µs':>10}"
        f"{'deliveries/s':>14}{'sender µs':>11}   (medians per delivery)"
    )
    for name, result in run["contenders"].items():
        if result["failure"] is not None:
            print(f"{name:<20}  FAILED: {result['failure']}")
            continue
        median = result["median"]
        print(
            f"{name:<20}{median['server_us']:>11.1f}{median['redis_us']:>10.1f}"
            f"{median['total_us']:>10.1f}{median['deliveries_per_second']:>14.0f}"
            f"{median['sender_us']:>11.1f}"
        )
    measured = [
        (
            sample["server_us"] * sample["deliveries"],
            sample["server_us_from_stat"] * sample["deliveries"],
        )
        for result in run["contenders"].values()
        for sample in result["samples"]
    ]
    if measured:
        exact, ticks = (sum(column) / 1e6 for column in zip(*measured, strict=True))
        print(f"check: {exact:.2f} s server CPU in the phases, {ticks:.2f} s by /proc/<pid>/stat")
    for name, errors in run.get("server_errors", {}).items():
        for error, count in errors.items():
            print(f"{name} servers logged {count} x {error}")
    if run["ratios"]:
        print(f"{'ratio':<52}{'of medians':>11}{'paired':>9}{'target':>9}   verdict")
        for label, ratio in run["ratios"].items():
            name, key = label.split(" ")
            what = "deliveries/s" if key == "deliveries_per_second" else "CPU/delivery"
            pairs = ratio["median_of_paired_ratios"]
            target = ratio["target"]
            target_text = "" if target is None else (">=" if "per_second" in key else "<=")
            target_text = f"{target_text} {target:.0f}x" if target is not None else ""
            print(
                f"{name + ' ' + what:<52}{ratio['ratio_of_medians']:>10.2f}x"
                f"{'' if pairs is None else f'{pairs:.2f}x':>9}{target_text:>9}   {_verdict(ratio)}"
            )
    print()


def print_memory(idle: dict[str, Any]) -> None:
    for client, kind in idle.items():
        connections = next((r["connections"] for r in kind.values() if "connections" in r), 0)
        offer = "offering permessage-deflate" if client == "deflate" else "without extensions"
        print(
            f"idle memory, clients {offer}: {connections} connections on a fresh server each "
            "(RSS growth)"
        )
        print(
            f"{'contender':<20}{'kB/connection':>15}{'ratio to bare':>15}{'deflate':>9}"
            "   verdict (<= 1.05x)"
        )
        for name, result in kind.items():
            if result["failure"] is not None:
                print(f"{name:<20}  FAILED: {result['failure']}")
                continue
            ratio = result.get("ratio_to_bare")
            met = result.get("met")
            verdict = "" if met is None else ("met" if met else "MISSED")
            print(
                f"{name:<20}{result['bytes_per_connection'] / 1024:>15.1f}"
                f"{'' if ratio is None else f'{ratio:.2f}x':>15}"
                f"{result['deflated']:>9}   {verdict}"
            )
        print()


def print_report(data: dict[str, Any]) -> None:
    server = next((run["server"] for run in data["runs"] if run["server"]), {})
    print(
        f"fan-out: rohrpost codec {server.get('codec')}, uvicorn {server.get('uvicorn')}, "
        f"{server.get('loop')}, {server.get('ws')}, Python {data['python']}; "
        f"{data['config']['rounds']} interleaved phases per contender, "
        f"CPU from /proc, {data['elapsed_seconds']:.0f} s"
    )
    print()
    for run in data["runs"]:
        print_run(run)
    if data["idle_memory"]:
        print_memory(data["idle_memory"])
