"""The flood benchmark's report: the results of :func:`bench.flood.measure` as tables."""

from __future__ import annotations

from typing import Any

from bench.flood_targets import PHASES, TARGET_BOMB_MS, TARGET_P99_RATIO, TARGET_RSS_GROWTH_MB
from rohrpost.limits import CLOSE_FLOODING

__all__ = ["print_path_report", "print_report"]


def print_report(data: dict[str, Any]) -> None:
    server, config = data["server"], data["config"]
    print(
        f"server: uvicorn {server['uvicorn']} ({server['ws']}), {server['loop']} loop, "
        f"{server['codec']} codec, Python {server['python']}, {server['cpu_count']} CPUs; "
        "rohrpost's default limits"
    )
    print(
        f"{config['pingers']} pingers, one ping each every {config['interval'] * 1000:.0f} ms, "
        f"{config['rounds']} round trips each per phase; every bomb {config['bomb_repeats']}x; "
        f"flooder at nice {config['flooder_nice']}; "
        f"{'gc.freeze() in the server; ' if config['gc_freeze'] else ''}"
        f"{data['elapsed_seconds']:.0f} s"
    )
    for name, result in data["paths"].items():
        print()
        if result["failure"] is not None:
            print(f"{name}: FAILED: {result['failure']}")
            continue
        print_path_report(name, result)


def print_path_report(name: str, result: dict[str, Any]) -> None:
    print(
        f"{name + ' pingers':<24}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'samples':>8}"
        f"{'p99 / baseline':>16}   verdict (<= {TARGET_P99_RATIO:.1f}x)"
    )
    for phase in PHASES:
        row = result[phase]
        ratio = "" if phase == "baseline" else f"{row['p99_ratio']:.2f}x"
        verdict = "" if phase == "baseline" else "met" if row["met"] else "MISSED"
        line = (
            f"{phase.replace('_', ' '):<24}{row['p50_ms']:>8.2f}{row['p99_ms']:>8.2f}"
            f"{row['max_ms']:>8.2f}{row['samples']:>8}{ratio:>16}   {verdict}"
        )
        print(line.rstrip())
    flood, memory = result["flood"], result["memory"]
    print(
        f"flooder: {flood['frames_sent']} frames in {flood['seconds']:.1f} s over "
        f"{flood['connections']} connections, closed 4029 "
        f"{flood['server_closes'].get(str(CLOSE_FLOODING), 0)}x; answered "
        f"{flood['pongs']} pongs, {flood['refusals']} rate_limited; "
        f"{flood['connect_failures']} reconnects refused (FLOOD_COOLDOWN)"
    )
    print(
        f"server RSS: {memory['rss_before_bytes'] / 2**20:.1f} MB before the flood, "
        f"{memory['rss_peak_sampled_bytes'] / 2**20:.1f} MB peak, "
        f"{memory['rss_after_bytes'] / 2**20:.1f} MB after: {memory['growth_mb']:+.1f} MB, "
        f"{'met' if memory['met'] else 'MISSED'} (< {TARGET_RSS_GROWTH_MB:.0f} MB)"
    )
    print(
        f"server RSS after the bombs: {memory['rss_after_during_bombs_bytes'] / 2**20:.1f} MB, "
        f"after the heavy frames: {memory['rss_after_during_heavy_frames_bytes'] / 2**20:.1f} MB"
    )
    print(
        f"{'bomb':<34}{'answer':>13}{'max ms':>8}{'pingers worst ms':>18}"
        f"   verdict (<= {TARGET_BOMB_MS:.0f} ms)"
    )
    for bomb_name, bomb in result["bombs"].items():
        others = bomb["others_worst_ms"]
        print(
            f"{bomb_name:<34}{'/'.join(bomb['answers']):>13}{bomb['max_ms']:>8.1f}"
            f"{'-' if others is None else f'{others:.1f}':>18}   "
            f"{'met' if bomb['met'] else 'MISSED'}"
        )
