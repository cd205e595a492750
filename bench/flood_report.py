"""The flood benchmark's report: the results of :func:`bench.flood.measure` as tables."""

from __future__ import annotations

from typing import Any

from bench.flood_targets import PHASES, TARGET_BOMB_MS, TARGET_P99_RATIO, TARGET_RSS_GROWTH_MB
from rohrpost.limits import CLOSE_FLOODING

__all__ = ["print_path_report", "print_report"]


def print_report(data: dict[str, Any]) -> None:
    server, config = data["server"], data["config"]
    setting = f"ROHRPOST = {config['rohrpost']}" if config["rohrpost"] else "no ROHRPOST setting"
    print(
        f"server: uvicorn {server['uvicorn']} ({server['ws']}), {server['loop']} loop, "
        f"{server['codec']} codec, Python {server['python']}, {server['cpu_count']} CPUs; "
        f"{setting}: {rate_limits(server['rate_limits'])}"
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


def rate_limits(limits: dict[str, Any]) -> str:
    """The server's frame and byte rate limits in words."""
    frames, size = limits.get("RATE_LIMIT"), limits.get("BYTE_RATE_LIMIT")
    return (
        (
            "no frame rate limit"
            if frames is None
            else f"{frames['RATE']:g} frames/s (burst {frames['BURST']:g})"
        )
        + ", "
        + (
            "no byte budget"
            if size is None
            else f"{size['RATE'] / 1024:g} KiB/s (burst {size['BURST'] / 1024:g} KiB)"
        )
    )


def cpu_share(row: dict[str, Any]) -> str:
    """The server's CPU in a phase as a percentage of one core, or ``-`` if unknown."""
    share = row.get("server_cpu_share")
    return "-" if share is None else f"{share * 100:.0f}%"


def print_path_report(name: str, result: dict[str, Any]) -> None:
    print(
        f"{name + ' pingers':<24}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'samples':>8}"
        f"{'server CPU':>11}{'p99 / baseline':>16}   verdict (<= {TARGET_P99_RATIO:.1f}x)"
    )
    for phase in PHASES:
        row = result[phase]
        ratio = "" if phase == "baseline" else f"{row['p99_ratio']:.2f}x"
        verdict = "" if phase == "baseline" else "met" if row["met"] else "MISSED"
        line = (
            f"{phase.replace('_', ' '):<24}{row['p50_ms']:>8.2f}{row['p99_ms']:>8.2f}"
            f"{row['max_ms']:>8.2f}{row['samples']:>8}{cpu_share(row):>11}{ratio:>16}   {verdict}"
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
    print_dense_report(result["dense"], result["dense_frames"])
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


def print_dense_report(dense: dict[str, Any], phase: dict[str, Any]) -> None:
    frames = dense["frames_sent"]
    answers = ", ".join(f"{count} {answer}" for answer, count in sorted(dense["answers"].items()))
    closes = ", ".join(f"{code} {n}x" for code, n in dense["server_closes"].items()) or "never"
    timing = (
        ""
        if dense["answer_median_ms"] is None
        else f"; pong/too_deep answered in {dense['answer_median_ms']:.1f} ms median, "
        f"{dense['answer_max_ms']:.1f} max"
    )
    print(
        f"dense client: {frames} frames of ~{dense['bytes_sent'] / max(frames, 1) / 1024:.0f} KiB "
        f"in {dense['seconds']:.1f} s ({dense['rate']:.1f}/s) over {dense['connections']} "
        f"connections, closed {closes}; answered {answers}{timing}"
    )
    used = phase.get("server_cpu_seconds")
    if used is not None:
        print(
            f"server CPU during the dense frames: {used:.2f} s in {phase['seconds']:.1f} s "
            f"({phase['server_cpu_share'] * 100:.0f}% of one core)"
        )
