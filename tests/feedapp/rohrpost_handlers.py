"""Found by the rohrpost app's autodiscovery: nothing imports this module by name."""

from __future__ import annotations

from typing import Any

from rohrpost import rohrpost_handler


@rohrpost_handler("feedapp.autodiscovered")
def autodiscovered(consumer: Any, request: dict[str, Any]) -> str:
    return "found"
