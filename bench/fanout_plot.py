"""The fan-out benchmark's plot: CPU per delivery over subscriber counts, in-memory layer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["draw"]


def draw(data: dict[str, Any], path: Path) -> None:
    """Draw every contender's median CPU per delivery (in memory) over subscribers to ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file only
    import matplotlib.pyplot as plt

    runs = sorted(
        (
            run
            for run in data["runs"]
            if run["layer"] == "memory" and run.get("server_kind", "uvicorn") == "uvicorn"
        ),
        key=lambda run: run["subscribers"],
    )
    figure, axes = plt.subplots(figsize=(8, 5), dpi=100)
    names = {name for run in runs for name in run["contenders"]}
    for name in sorted(names, key=lambda n: -_last(runs, n)):
        points = [
            (run["subscribers"], run["contenders"][name]["median"]["total_us"])
            for run in runs
            if name in run["contenders"] and run["contenders"][name]["failure"] is None
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            axes.plot(xs, ys, marker="o", label=name)
    axes.set_xscale("log")
    axes.set_yscale("log")
    counts = sorted({run["subscribers"] for run in runs})
    axes.set_xticks(counts, [str(count) for count in counts])
    axes.minorticks_off()
    axes.set_xlabel("subscribers in the group (one uvicorn process, in-memory layer)")
    axes.set_ylabel("server CPU per delivered push (µs)")
    axes.set_title("Group fan-out: server CPU per delivery (lower is better)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def _last(runs: list[dict[str, Any]], name: str) -> float:
    for run in reversed(runs):
        result = run["contenders"].get(name)
        if result and result["failure"] is None:
            return float(result["median"]["total_us"])
    return 0.0
