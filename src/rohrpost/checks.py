"""Django system checks for the ``ROHRPOST`` setting (run by ``manage.py check``)."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, register

from rohrpost import conf

__all__ = ["check_settings"]


@register("rohrpost")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report every problem with ``settings.ROHRPOST`` as an error ``rohrpost.E001``."""
    from django.conf import settings

    if not hasattr(settings, "ROHRPOST"):
        return []
    return [
        Error(problem, hint="See rohrpost.conf for every key and its meaning.", id="rohrpost.E001")
        for problem in conf.problems(settings.ROHRPOST)
    ]
