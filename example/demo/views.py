"""The demo's one page."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from demo.routing import ROHRPOST_PATH
from rohrpost.registry import HANDLERS


def index(request: HttpRequest) -> HttpResponse:
    """Render the live page; it offers every registered message type in its form."""
    return render(
        request,
        "demo/index.html",
        {"ws_path": f"/{ROHRPOST_PATH}", "handler_names": sorted(HANDLERS)},
    )
