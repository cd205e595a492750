"""What the flood benchmark (:mod:`bench.flood`) must meet, from issue 4, and its phases.

A missed target is reported as MISSED; it does not change the exit code.
"""

from __future__ import annotations

__all__ = ["PHASES", "TARGET_BOMB_MS", "TARGET_P99_RATIO", "TARGET_RSS_GROWTH_MB"]

#: The pingers' p99 in every later phase, at most this many times the baseline's.
TARGET_P99_RATIO = 2.0
#: The server's RSS grows less than this (MB) under the flood.
TARGET_RSS_GROWTH_MB = 50.0
#: Every bomb is answered within this (ms).
TARGET_BOMB_MS = 100.0

#: The phases' names in the report and the JSON, the baseline first.
PHASES = ("baseline", "flooded", "during_bombs", "during_heavy_frames", "dense_frames")
